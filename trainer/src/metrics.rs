//! Metrics shared by training, the losses and evaluation: pairwise accuracy and the correlation
//! of the K basis rewards (the λ_φ penalty and the collapse diagnostic use one computation).

use candle_core::{DType, Result, Tensor};

/// Added to each centred column's norm before dividing by it.
///
/// 1e-6 rather than a vanishing 1e-12: the correlation is differentiated inside the λ_φ penalty,
/// and for a constant (dead) basis reward the norm is 0, so ε alone bounds 1/‖c‖ and with it the
/// gradient. A varying column's norm (≥ √N·std) dwarfs it, so correlations move only in the
/// last f32 digits; a constant column gets correlation 0 with every other, not NaN.
pub const CORR_EPS: f64 = 1e-6;

/// Fraction of pairs with μ_Δ > 0 (the chosen response scores higher); NaN for no pairs.
///
/// A tie (μ_Δ = 0) counts as wrong: a model that scores both responses alike has not ranked them.
pub fn pairwise_accuracy(mu_d: &Tensor) -> Result<f64> {
    if mu_d.elem_count() == 0 {
        return Ok(f64::NAN);
    }
    Ok(mu_d
        .gt(0.0)?
        .to_dtype(DType::F32)?
        .mean_all()?
        .to_scalar::<f32>()? as f64)
}

/// Pearson correlations `[K, K]` between the K columns of `phi` `[N, K]`, with their
/// off-diagonal mask; `None` when there is no pair of columns or of rows (K < 2 or N < 2).
fn column_correlation(phi: &Tensor) -> Result<Option<(Tensor, Tensor)>> {
    let (n, k) = phi.dims2()?;
    if k < 2 || n < 2 {
        return Ok(None);
    }
    let c = phi.broadcast_sub(&phi.mean_keepdim(0)?)?;
    let norm = (c.sqr()?.sum_keepdim(0)?.sqrt()? + CORR_EPS)?;
    let c = c.broadcast_div(&norm)?;
    let corr = c.t()?.matmul(&c)?; // diagonal ≈ 1
    let off = (Tensor::eye(k, phi.dtype(), phi.device())?.neg()? + 1.0)?;
    Ok(Some((corr, off)))
}

/// Mean squared off-diagonal correlation of the basis rewards `phi` `[N, K]`, differentiable
/// (the λ_φ penalty); 0 when K < 2 or N < 2.
pub fn mean_sq_offdiag_corr(phi: &Tensor) -> Result<Tensor> {
    match column_correlation(phi)? {
        None => Tensor::zeros((), phi.dtype(), phi.device()),
        Some((corr, off)) => {
            let k = phi.dim(1)?;
            (corr * off)?.sqr()?.sum_all()? / (k * (k - 1)) as f64
        }
    }
}

/// Mean off-diagonal Pearson correlation of the basis rewards `phi` `[N, K]` (the collapse
/// diagnostic); NaN when K < 2 or N < 2.
pub fn mean_offdiag_corr(phi: &Tensor) -> Result<f64> {
    match column_correlation(phi)? {
        None => Ok(f64::NAN),
        Some((corr, off)) => {
            let k = phi.dim(1)?;
            let s = (corr * off)?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            Ok(s / (k * (k - 1)) as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn cols(v: &[[f32; 2]]) -> Tensor {
        Tensor::from_vec(v.concat(), (v.len(), 2), &Device::Cpu).unwrap()
    }

    fn scalar(t: &Tensor) -> f64 {
        t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    }

    #[test]
    fn correlated_columns_give_one() -> Result<()> {
        let phi = cols(&[[1.0, 2.0], [2.0, 4.0], [-1.0, -2.0], [0.5, 1.0]]);
        assert!((mean_offdiag_corr(&phi)? - 1.0).abs() < 1e-5);
        assert!((scalar(&mean_sq_offdiag_corr(&phi)?) - 1.0).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn anticorrelated_columns_give_minus_one() -> Result<()> {
        let phi = cols(&[[1.0, -1.0], [2.0, -2.0], [-1.0, 1.0], [0.5, -0.5]]);
        assert!((mean_offdiag_corr(&phi)? + 1.0).abs() < 1e-5);
        // Squared: anticorrelation is penalised like correlation.
        assert!((scalar(&mean_sq_offdiag_corr(&phi)?) - 1.0).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn uncorrelated_columns_give_zero() -> Result<()> {
        let phi = cols(&[[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]);
        assert!(mean_offdiag_corr(&phi)?.abs() < 1e-6);
        assert!(scalar(&mean_sq_offdiag_corr(&phi)?).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn constant_column_is_uncorrelated_not_nan() -> Result<()> {
        let phi = cols(&[[1.0, 3.0], [2.0, 3.0], [-1.0, 3.0]]);
        assert_eq!(mean_offdiag_corr(&phi)?, 0.0);
        assert_eq!(scalar(&mean_sq_offdiag_corr(&phi)?), 0.0);
        Ok(())
    }

    #[test]
    fn degenerate_shapes() -> Result<()> {
        let one_col = Tensor::new(&[[1f32], [2.0], [3.0]], &Device::Cpu)?;
        assert!(mean_offdiag_corr(&one_col)?.is_nan());
        assert_eq!(scalar(&mean_sq_offdiag_corr(&one_col)?), 0.0);
        let one_row = cols(&[[1.0, 2.0]]);
        assert!(mean_offdiag_corr(&one_row)?.is_nan());
        assert_eq!(scalar(&mean_sq_offdiag_corr(&one_row)?), 0.0);
        Ok(())
    }

    #[test]
    fn accuracy_counts_ties_as_wrong() -> Result<()> {
        let mu = Tensor::new(&[1f32, -0.5, 0.0, 2.0], &Device::Cpu)?;
        assert_eq!(pairwise_accuracy(&mu)?, 0.5);
        let none = Tensor::zeros(0, DType::F32, &Device::Cpu)?;
        assert!(pairwise_accuracy(&none)?.is_nan());
        Ok(())
    }
}
