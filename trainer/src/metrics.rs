//! Metrics shared by training, the losses and evaluation: pairwise accuracy, the correlation of
//! the K basis rewards (the λ_φ penalty and the collapse diagnostic use one computation), the
//! calibration of preference probabilities, and rank correlation.

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

/// Equal-mass bins of [`calibration`].
pub const CALIBRATION_BINS: usize = 15;

/// How well preference probabilities `P(y_c ≻ y_r)` match outcomes (docs/METHOD.md §5).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
// f32 fields: they round-trip through eval.json exactly, so a reloaded report equals the one
// written (serde_json's f64 parsing may be one ulp off).
pub struct Calibration {
    /// Expected calibration error over [`CALIBRATION_BINS`] equal-mass bins.
    pub ece: f32,
    /// Mean negative log-likelihood of the observed preferences, nats.
    pub log_loss: f32,
    /// Pairs scored.
    pub pairs: usize,
    /// Reliability diagram: per bin, (mean predicted probability, observed frequency, count).
    pub reliability: Vec<(f32, f32, usize)>,
}

/// Calibration of `p[i] = P(chosen ≻ rejected)` for pairs whose chosen response was preferred.
///
/// Every pair is counted in both orientations, `(p, 1)` and `(1 − p, 0)`, so the outcomes are
/// balanced and a model that always says 1 is not called calibrated; the log-loss is the same
/// either way. Probabilities are clamped to `[1e-7, 1 − 1e-7]` for the log. `None` for no pairs.
pub fn calibration(p: &[f64]) -> Option<Calibration> {
    if p.is_empty() {
        return None;
    }
    let clamp = |x: f64| x.clamp(1e-7, 1.0 - 1e-7);
    let log_loss = p.iter().map(|&x| -clamp(x).ln()).sum::<f64>() / p.len() as f64;
    let mut pts: Vec<(f64, f64)> = p.iter().flat_map(|&x| [(x, 1.0), (1.0 - x, 0.0)]).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = pts.len();
    let mut reliability = Vec::new();
    let mut ece = 0.0;
    for b in 0..CALIBRATION_BINS {
        let (lo, hi) = (b * n / CALIBRATION_BINS, (b + 1) * n / CALIBRATION_BINS);
        if hi <= lo {
            continue;
        }
        let bin = &pts[lo..hi];
        let m = bin.len() as f64;
        let conf = bin.iter().map(|x| x.0).sum::<f64>() / m;
        let freq = bin.iter().map(|x| x.1).sum::<f64>() / m;
        ece += m / n as f64 * (conf - freq).abs();
        reliability.push((conf as f32, freq as f32, bin.len()));
    }
    Some(Calibration {
        ece: ece as f32,
        log_loss: log_loss as f32,
        pairs: p.len(),
        reliability,
    })
}

/// Ranks `1..=n` of `xs`, ties given the mean of the ranks they span (NaN ranks last).
pub fn average_ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut ranks = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            ranks[o] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's rank correlation of `x` and `y` (Pearson correlation of their average ranks);
/// NaN for fewer than two pairs or a constant variable.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    if x.len() != y.len() || x.len() < 2 {
        return f64::NAN;
    }
    let (rx, ry) = (average_ranks(x), average_ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0)
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

    #[test]
    fn spearman_with_ties_matches_hand_computation() {
        // Perfect monotone → 1, reversed → −1.
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // Ties: x ranks [1, 2.5, 2.5, 4], y ranks [1, 2, 3, 4]; Pearson of those = 0.9486833.
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!((r - 0.9486832980505138).abs() < 1e-12, "{r}");
        assert_eq!(
            average_ranks(&[5.0, 1.0, 5.0, 5.0]),
            vec![3.0, 1.0, 3.0, 3.0]
        );
        // Constant variable or too few pairs → NaN.
        assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
        assert!(spearman(&[1.0], &[1.0]).is_nan());
    }

    #[test]
    fn calibration_of_honest_and_overconfident_probabilities() {
        // Probability 0.75 on pairs of which 3 in 4 go the predicted way is calibrated (the
        // three right pairs and one wrong one, each counted in both orientations).
        // 30 repeats give 240 oriented points: 16 a bin, each bin a run of whole patterns.
        let rep = |p: [f64; 4]| p.repeat(30);
        let honest = calibration(&rep([0.75, 0.75, 0.75, 0.25])).unwrap();
        assert!(honest.ece < 1e-6, "{honest:?}");
        assert_eq!(honest.pairs, 120);
        assert_eq!(honest.reliability.len(), CALIBRATION_BINS);
        // Saying 0.875 for the same outcomes is overconfident: a gap of 0.125 in every bin but
        // the middle one, which straddles both groups (binary fractions, so 1 − p ties exactly).
        let over = calibration(&rep([0.875, 0.875, 0.875, 0.125])).unwrap();
        assert!((over.ece - 0.125 * 14.0 / 15.0).abs() < 1e-6, "{over:?}");
        assert!(over.log_loss > honest.log_loss);
        assert!(calibration(&[]).is_none());
    }
}
