//! Errors of the model format and the per-user math: every variant names the offending input so a caller can fix it.

use std::fmt;

/// An f32 in an error message: `{}` natively; in wasm32 the shortest round-tripping form from
/// `zmij` (e.g. `1e-7` instead of `0.0000001`, `2.0` instead of `2`): the same value, without
/// linking core's float formatting (~20 KB of the module) for error messages alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Float(pub f32);

impl fmt::Display for Float {
    #[cfg(not(target_arch = "wasm32"))]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }

    #[cfg(target_arch = "wasm32")]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(zmij::Buffer::new().format(self.0))
    }
}

/// Result type of the per-user math.
pub type MathResult<T> = Result<T, MathError>;

/// Why a per-user math call refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
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
    /// A user posterior was asked for with no reference pairs (docs/METHOD.md §4: no silent made-up answer).
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
    /// A row of vectors (one feature vector per row) holds NaN or ±∞.
    #[error("non-finite value in `{field}` at row {row}, column {column}")]
    NonFiniteRow {
        /// The input holding the value.
        field: &'static str,
        /// The row (the vector's index in its list).
        row: usize,
        /// The position within the vector.
        column: usize,
    },
    /// A finite value outside the range the math is defined on.
    #[error("`{field}` = {} is out of range: must be {expected}", Float(*.value))]
    OutOfRange {
        /// The input holding the value.
        field: &'static str,
        /// The offending value.
        value: f32,
        /// The admissible range, in words.
        expected: &'static str,
    },
}

/// Why an exported model (or a part of it) could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The manifest (or another JSON file of the model) is malformed.
    #[error("{origin}: {message}")]
    Manifest {
        /// The file.
        origin: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The manifest is of a format version this runtime does not read.
    #[error("{origin}: format_version {found} is not supported (this runtime reads versions 1 to {supported}); re-export the model with a matching vrf-trainer")]
    FormatVersion {
        /// The file.
        origin: String,
        /// The version found.
        found: u64,
        /// The version supported.
        supported: u32,
    },
    /// A file's SHA-256 differs from the manifest's: corrupted or replaced.
    #[error("{file}: SHA-256 mismatch (manifest {expected}, file {got}): the file is corrupted or from another export")]
    Checksum {
        /// The file.
        file: String,
        /// Digest in the manifest.
        expected: String,
        /// Digest of the bytes.
        got: String,
    },
    /// A file the runtime needs is not listed in the manifest.
    #[error("{file} is not listed in the manifest's `files`")]
    UnlistedFile {
        /// The file.
        file: String,
    },
    /// A safetensors file could not be parsed.
    #[error("{file}: {message}")]
    Safetensors {
        /// The file.
        file: &'static str,
        /// Parser message.
        message: String,
    },
    /// A tensor is missing from a safetensors file.
    #[error("{file}: tensor `{name}` is missing")]
    MissingTensor {
        /// The file.
        file: &'static str,
        /// The tensor.
        name: &'static str,
    },
    /// A tensor has the wrong shape for the manifest's dimensions.
    #[error("tensor `{name}` has shape {got:?}, the manifest's dimensions need {expected:?}")]
    TensorShape {
        /// The tensor.
        name: &'static str,
        /// Shape from the manifest.
        expected: Vec<usize>,
        /// Shape in the file.
        got: Vec<usize>,
    },
    /// A tensor is not f32.
    #[error("tensor `{name}` has dtype {dtype}, expected F32")]
    TensorDtype {
        /// The tensor.
        name: &'static str,
        /// Its dtype.
        dtype: String,
    },
    /// A model was given the other kind of input than it takes (texts to a model fitted on
    /// feature vectors, or feature vectors to one with a backbone).
    #[error("this model takes {expected}, not {given}")]
    WrongInput {
        /// What the model takes, in words (e.g. `feature vectors of dimension 16`).
        expected: String,
        /// What it was given (`texts`, `feature vectors`).
        given: &'static str,
    },
    /// The model's pair features include Δφ but no basis rewards were given.
    #[error("this model's pair features include Δφ: pass the basis rewards of both responses")]
    NeedsRewards,
    /// A user state does not fit the model.
    #[error("user state does not fit the model: {message}")]
    StateMismatch {
        /// What differs.
        message: String,
    },
    /// The per-user math refused its input.
    #[error(transparent)]
    Math(#[from] MathError),
}
