//! Input validation shared by the public entry points.

use ndarray::{ArrayView, Dimension};

use crate::error::{MathError, MathResult};

/// Errors with the first NaN/±∞ in `a`, if any.
pub(crate) fn finite<D: Dimension>(
    field: &'static str,
    a: ArrayView<'_, f32, D>,
) -> MathResult<()> {
    match a.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(MathError::NonFinite { field, index }),
        None => Ok(()),
    }
}

/// Errors if a scalar is NaN/±∞.
pub(crate) fn finite_scalar(field: &'static str, v: f32) -> MathResult<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(MathError::NonFinite { field, index: 0 })
    }
}

/// Errors unless `got == expected`.
pub(crate) fn len(field: &'static str, expected: usize, got: usize) -> MathResult<()> {
    if expected == got {
        Ok(())
    } else {
        Err(MathError::DimensionMismatch {
            field,
            expected,
            got,
        })
    }
}

/// Errors if a length is zero.
pub(crate) fn non_empty(field: &'static str, n: usize) -> MathResult<()> {
    if n == 0 {
        Err(MathError::Empty { field })
    } else {
        Ok(())
    }
}

/// `v` when finite and positive; otherwise an out-of-range error naming `field`.
pub(crate) fn positive(field: &'static str, v: f32) -> MathResult<f32> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(MathError::OutOfRange {
            field,
            value: v,
            expected: "positive",
        })
    }
}
