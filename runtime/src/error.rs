//! Errors of the per-user math: every variant names the offending input so a caller can fix it.

/// Result type of the per-user math.
pub type MathResult<T> = Result<T, MathError>;

/// Why a per-user math call refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MathError {
    /// An input has the wrong length along one axis.
    #[error("dimension mismatch in `{field}`: expected {expected}, got {got}")]
    DimensionMismatch {
        /// The input (and axis) that is wrong, e.g. `features (columns)`.
        field: &'static str,
        /// The length the call needs.
        expected: usize,
        /// The length it was given.
        got: usize,
    },
    /// A user posterior was asked for with no reference pairs (SPEC §4: no silent made-up answer).
    #[error("empty reference set: a user posterior needs at least one reference pair")]
    EmptyReferenceSet,
    /// An input that must have at least one element has none.
    #[error("`{field}` must not be empty")]
    Empty {
        /// The empty input.
        field: &'static str,
    },
    /// An input holds NaN or ±∞.
    #[error("non-finite value in `{field}` at flat index {index}")]
    NonFinite {
        /// The input holding the value.
        field: &'static str,
        /// Position of the first bad value, in row-major order.
        index: usize,
    },
    /// A finite value outside the range the math is defined on.
    #[error("`{field}` = {value} is out of range: must be {expected}")]
    OutOfRange {
        /// The input holding the value.
        field: &'static str,
        /// The offending value.
        value: f32,
        /// The admissible range, in words.
        expected: &'static str,
    },
}
