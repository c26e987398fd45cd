//! Probabilistic preference bases, their W₂ distance to a user posterior and the resulting
//! weights (docs/METHOD.md Eq. 6).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use super::check;
use super::posterior::{Posterior, MAX_ABS_LOGVAR};
use crate::error::{MathError, MathResult};

/// Default softmax temperature `τ` of the basis weights.
pub const DEFAULT_TAU: f32 = 1.0;

/// `K` diagonal Gaussians `b_k = N(m_k, diag(s_k²))` in the latent space.
#[derive(Debug, Clone, PartialEq)]
pub struct Bases {
    means: Array2<f32>,
    log_var: Array2<f32>,
    // s_k = exp(½·log s_k²), computed once: every weight evaluation needs it.
    std: Array2<f32>,
}

impl Bases {
    /// Builds the bases from `means [K, d]` and `log_var [K, d]` (`log s_k²`, within ±80).
    pub fn new(means: Array2<f32>, log_var: Array2<f32>) -> MathResult<Self> {
        check::non_empty("bases.means (rows = K)", means.nrows())?;
        check::non_empty("bases.means (columns = d)", means.ncols())?;
        check::len("bases.log_var (rows = K)", means.nrows(), log_var.nrows())?;
        check::len(
            "bases.log_var (columns = d)",
            means.ncols(),
            log_var.ncols(),
        )?;
        check::finite("bases.means", means.view())?;
        check::finite("bases.log_var", log_var.view())?;
        if let Some(&value) = log_var.iter().find(|l| l.abs() > MAX_ABS_LOGVAR) {
            return Err(MathError::OutOfRange {
                field: "bases.log_var",
                value,
                expected: "within ±80",
            });
        }
        let std = log_var.mapv(|l| libm::expf(0.5 * l));
        Ok(Self {
            means,
            log_var,
            std,
        })
    }

    /// Number of bases `K`.
    pub fn k(&self) -> usize {
        self.means.nrows()
    }

    /// Latent dimension `d`.
    pub fn d(&self) -> usize {
        self.means.ncols()
    }

    /// Means `m_k`, `[K, d]`.
    pub fn means(&self) -> ArrayView2<'_, f32> {
        self.means.view()
    }

    /// Log-variances `log s_k²`, `[K, d]`.
    pub fn log_var(&self) -> ArrayView2<'_, f32> {
        self.log_var.view()
    }

    /// Standard deviations `s_k`, `[K, d]`.
    pub fn std(&self) -> ArrayView2<'_, f32> {
        self.std.view()
    }

    /// `W₂²(q, b_k) = ‖μ − m_k‖² + ‖σ − s_k‖²` for every basis, `[K]`.
    ///
    /// Saturates to `f32::MAX` only for posteriors absurdly far (~1e19) from every basis.
    pub fn w2_sq(&self, q: &Posterior) -> MathResult<Array1<f32>> {
        Ok(self
            .w2_sq_f64(q)?
            .iter()
            .map(|&w| w.min(f64::from(f32::MAX)) as f32)
            .collect())
    }

    /// The population stand-in before a user's first observation: the moment-matched Gaussian
    /// of the equal mixture of the bases (mean `avg m_k`, variance `avg(s_k² + m_k²) − mean²`).
    pub fn population(&self) -> MathResult<Posterior> {
        let k = self.k() as f64;
        let (mut mean, mut second) = (vec![0f64; self.d()], vec![0f64; self.d()]);
        for (m, l) in self.means.outer_iter().zip(self.log_var.outer_iter()) {
            for j in 0..self.d() {
                let mj = f64::from(m[j]);
                mean[j] += mj / k;
                second[j] += (libm::exp(f64::from(l[j])) + mj * mj) / k;
            }
        }
        let var = mean
            .iter()
            .zip(&second)
            .map(|(m, s)| ((s - m * m).max(f64::from(f32::MIN_POSITIVE))) as f32)
            .collect();
        Posterior::new(mean.iter().map(|&m| m as f32).collect(), var)
    }

    /// Basis weights `softmax_k(−W₂²(q, b_k) / (τ·d))`, `[K]`, summing to 1.
    pub fn weights(&self, q: &Posterior, tau: f32) -> MathResult<Array1<f32>> {
        check::finite_scalar("tau", tau)?;
        if tau <= 0.0 {
            return Err(MathError::OutOfRange {
                field: "tau",
                value: tau,
                expected: "> 0",
            });
        }
        let scale = f64::from(tau) * self.d() as f64;
        let logits: Vec<f64> = self.w2_sq_f64(q)?.iter().map(|w| -w / scale).collect();
        Ok(softmax_f64(&logits))
    }

    /// W₂² in `f64`: squares of any finite `f32` differences stay finite there, so the weights
    /// stay well defined however far the posterior is.
    fn w2_sq_f64(&self, q: &Posterior) -> MathResult<Vec<f64>> {
        check::len("posterior (d)", self.d(), q.d())?;
        let sigma = q.std();
        Ok(self
            .means
            .outer_iter()
            .zip(self.std.outer_iter())
            .map(|(m, s)| sq_dist(q.mean(), m) + sq_dist(sigma.view(), s))
            .collect())
    }
}

/// `‖a − b‖²` accumulated in `f64`.
fn sq_dist(a: ArrayView1<'_, f32>, b: ArrayView1<'_, f32>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum()
}

/// Softmax of finite logits, shifted by their maximum so no exponential overflows.
fn softmax_f64(logits: &[f64]) -> Array1<f32> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|l| libm::exp(l - max)).collect();
    // The maximum contributes exp(0) = 1, so the sum is ≥ 1.
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / total) as f32).collect()
}

/// Numerically stable softmax of a non-empty vector of finite logits.
pub fn softmax(logits: ArrayView1<'_, f32>) -> MathResult<Array1<f32>> {
    check::non_empty("logits", logits.len())?;
    check::finite("logits", logits)?;
    let l: Vec<f64> = logits.iter().map(|&x| f64::from(x)).collect();
    Ok(softmax_f64(&l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::testutil::{assert_close, Rng};
    use ndarray::array;

    fn bases() -> Bases {
        // b_0 = N([0,0], diag[1,9]), b_1 = N([1,2], diag[4,1]).
        Bases::new(
            array![[0.0, 0.0], [1.0, 2.0]],
            array![[0.0, 9.0_f32.ln()], [4.0_f32.ln(), 0.0]],
        )
        .unwrap()
    }

    #[test]
    fn population_is_the_moment_matched_mixture() {
        // Mean ([0,0] + [1,2]) / 2; variance ((1 + 0) + (4 + 1)) / 2 − 0.5² and
        // ((9 + 0) + (1 + 4)) / 2 − 1².
        let p = bases().population().unwrap();
        assert_close(p.mean(), array![0.5, 1.0].view(), 1e-6);
        assert_close(p.var(), array![2.75, 6.0].view(), 1e-5);
    }

    #[test]
    fn w2_of_identical_gaussians_is_zero() {
        let mut rng = Rng::new(3);
        let means = rng.normal_array((5, 8), 1.5);
        let log_var = rng.uniform_array((5, 8), -6.0, 6.0);
        let b = Bases::new(means.clone(), log_var.clone()).unwrap();
        for k in 0..5 {
            let q = Posterior::new(means.row(k).to_owned(), log_var.row(k).mapv(f32::exp)).unwrap();
            let w2 = b.w2_sq(&q).unwrap();
            assert!(w2[k].abs() < 1e-9, "W2²(b_{k}, b_{k}) = {}", w2[k]);
            // …and strictly positive against the other (distinct) bases.
            assert!(
                w2.iter().enumerate().all(|(j, &v)| j == k || v > 1e-3),
                "{w2}"
            );
        }
    }

    #[test]
    fn w2_hand_computed() {
        // q = N([1,2], diag[4,1]): ‖μ−m_0‖² = 1+4, σ = [2,1] vs s_0 = [1,3]: 1+4 → 10; q = b_1 → 0.
        let q = Posterior::new(array![1.0, 2.0], array![4.0, 1.0]).unwrap();
        assert_close(
            bases().w2_sq(&q).unwrap().view(),
            array![10.0, 0.0].view(),
            1e-6,
        );
        // q = N([−1, 1], diag[0.25, 4]): m_0: 1+1, σ=[0.5,2] vs [1,3]: 0.25+1 → 3.25;
        // m_1: 4+1, vs s_1 = [2,1]: 2.25+1 → 8.25.
        let q = Posterior::new(array![-1.0, 1.0], array![0.25, 4.0]).unwrap();
        assert_close(
            bases().w2_sq(&q).unwrap().view(),
            array![3.25, 8.25].view(),
            1e-6,
        );
    }

    #[test]
    fn weights_are_softmax_of_scaled_negative_w2() {
        let q = Posterior::new(array![1.0, 2.0], array![4.0, 1.0]).unwrap();
        // W₂² = [10, 0], d = 2: logits −W₂²/(τ·d).
        for tau in [1.0_f32, 2.0, 0.5] {
            let a = (-10.0 / (tau * 2.0)).exp();
            let want = array![a / (1.0 + a), 1.0 / (1.0 + a)];
            assert_close(bases().weights(&q, tau).unwrap().view(), want.view(), 1e-6);
        }
    }

    #[test]
    fn weights_are_finite_and_normalised_for_extreme_distances() {
        let b = bases();
        let cases = [
            (array![1e30_f32, -1e30], array![1.0, 1.0], 1.0_f32),
            (array![3e38_f32, 3e38], array![3e38, 1e-38], 1.0),
            (array![0.5, 0.5], array![1e30, 1e30], 1.0),
            (array![0.5, 1.0], array![1.0, 1.0], 1e-30),
            (array![0.5, 1.0], array![1.0, 1.0], 1e30),
            (array![1e20, 0.0], array![1.0, 1.0], f32::MIN_POSITIVE),
        ];
        for (mean, var, tau) in cases {
            let q = Posterior::new(mean.clone(), var.clone()).unwrap();
            let w = b.weights(&q, tau).unwrap();
            assert!(
                w.iter().all(|v| v.is_finite() && *v >= 0.0),
                "{w} for {mean} {var} τ={tau}"
            );
            assert!(
                (w.sum() - 1.0).abs() < 1e-6,
                "sum {} for {mean} {var} τ={tau}",
                w.sum()
            );
            assert!(b.w2_sq(&q).unwrap().iter().all(|v| v.is_finite()));
        }
        // A far posterior still picks the nearer basis (W₂² 2e12 vs 2e12 − 6e6) rather than NaN.
        let q = Posterior::new(array![1e6, 1e6], array![1.0, 1.0]).unwrap();
        assert_eq!(b.weights(&q, 1.0).unwrap(), array![0.0, 1.0]);
    }

    #[test]
    fn softmax_is_stable() {
        let w = softmax(array![1000.0, 1000.0, -1000.0].view()).unwrap();
        assert_close(w.view(), array![0.5, 0.5, 0.0].view(), 1e-7);
        let w = softmax(array![-3e38, -3e38].view()).unwrap();
        assert_close(w.view(), array![0.5, 0.5].view(), 1e-7);
        assert!(matches!(
            softmax(array![].view()),
            Err(MathError::Empty { .. })
        ));
        assert_eq!(
            softmax(array![0.0, f32::NAN].view()).unwrap_err(),
            MathError::NonFinite {
                field: "logits",
                index: 1
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        let q3 = Posterior::new(array![0.0, 0.0, 0.0], array![1.0, 1.0, 1.0]).unwrap();
        assert_eq!(
            bases().weights(&q3, 1.0).unwrap_err(),
            MathError::DimensionMismatch {
                field: "posterior (d)",
                expected: 2,
                got: 3
            }
        );
        let q = Posterior::new(array![0.0, 0.0], array![1.0, 1.0]).unwrap();
        for tau in [0.0, -1.0] {
            assert!(matches!(
                bases().weights(&q, tau),
                Err(MathError::OutOfRange { field: "tau", .. })
            ));
        }
        assert_eq!(
            bases().weights(&q, f32::NAN).unwrap_err(),
            MathError::NonFinite {
                field: "tau",
                index: 0
            }
        );
        assert_eq!(
            Bases::new(Array2::zeros((3, 2)), Array2::zeros((3, 4))).unwrap_err(),
            MathError::DimensionMismatch {
                field: "bases.log_var (columns = d)",
                expected: 2,
                got: 4
            }
        );
        let mut m = Array2::zeros((3, 2));
        m[[2, 1]] = f32::NAN;
        assert_eq!(
            Bases::new(m, Array2::zeros((3, 2))).unwrap_err(),
            MathError::NonFinite {
                field: "bases.means",
                index: 5
            }
        );
        assert!(matches!(
            Bases::new(Array2::zeros((1, 1)), array![[200.0]]),
            Err(MathError::OutOfRange {
                field: "bases.log_var",
                ..
            })
        ));
        assert!(matches!(
            Bases::new(Array2::zeros((0, 2)), Array2::zeros((0, 2))),
            Err(MathError::Empty { .. })
        ));
    }
}
