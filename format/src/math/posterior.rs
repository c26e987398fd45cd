//! A user's Gaussian posterior: product of Gaussians in natural parameters (docs/METHOD.md Eq. 5) and the
//! mean-pooling ablation.

use ndarray::{Array1, ArrayView1, ArrayView2, Axis};

use super::check;
use crate::error::{MathError, MathResult};

/// Largest `|ℓ|` accepted as an observation's log-variance: `exp(±80)` and sums of many such
/// precisions stay finite in `f32`. Encoders bound `ℓ` to `±LOGVAR_BOUND` (10), far inside.
pub const MAX_ABS_LOGVAR: f32 = 80.0;

/// A diagonal Gaussian `N(mean, diag(var))` over the latent space.
#[derive(Debug, Clone, PartialEq)]
pub struct Posterior {
    mean: Array1<f32>,
    var: Array1<f32>,
}

impl Posterior {
    /// Builds a posterior from `mean [d]` and `var [d]` (finite, `var > 0`), e.g. a cached one.
    pub fn new(mean: Array1<f32>, var: Array1<f32>) -> MathResult<Self> {
        check::non_empty("posterior.mean", mean.len())?;
        check::len("posterior.var", mean.len(), var.len())?;
        check::finite("posterior.mean", mean.view())?;
        check::finite("posterior.var", var.view())?;
        if let Some(&value) = var.iter().find(|v| **v <= 0.0) {
            return Err(MathError::OutOfRange {
                field: "posterior.var",
                value,
                expected: "> 0",
            });
        }
        Ok(Self { mean, var })
    }

    /// Latent dimension `d`.
    pub fn d(&self) -> usize {
        self.mean.len()
    }

    /// Mean `μ_u`.
    pub fn mean(&self) -> ArrayView1<'_, f32> {
        self.mean.view()
    }

    /// Variance `σ_u²`.
    pub fn var(&self) -> ArrayView1<'_, f32> {
        self.var.view()
    }

    /// Standard deviation `σ_u`.
    pub fn std(&self) -> Array1<f32> {
        self.var.mapv(f32::sqrt)
    }

    /// User uncertainty (docs/METHOD.md §4): the mean over dimensions of `σ_u²`.
    pub fn uncertainty(&self) -> f32 {
        (self.var.iter().map(|&v| f64::from(v)).sum::<f64>() / self.d() as f64) as f32
    }

    /// Splits into `(mean, var)`.
    pub fn into_parts(self) -> (Array1<f32>, Array1<f32>) {
        (self.mean, self.var)
    }
}

/// Running natural parameters of a product of Gaussians: `Σ exp(−ℓ_i)` and `Σ exp(−ℓ_i)·μ_i`.
///
/// Observations can arrive one at a time or in batches; the posterior is the same either way.
#[derive(Debug, Clone, PartialEq)]
pub struct NaturalParams {
    precision: Array1<f32>,
    eta: Array1<f32>,
    count: usize,
}

impl NaturalParams {
    /// No observations yet, in latent dimension `d`.
    pub fn empty(d: usize) -> Self {
        Self {
            precision: Array1::zeros(d),
            eta: Array1::zeros(d),
            count: 0,
        }
    }

    /// Restores parameters saved from [`NaturalParams::precision`], [`NaturalParams::eta`] and
    /// [`NaturalParams::count`]; the caller vouches they are consistent.
    pub fn from_parts(precision: Array1<f32>, eta: Array1<f32>, count: usize) -> Self {
        Self {
            precision,
            eta,
            count,
        }
    }

    /// Latent dimension `d`.
    pub fn d(&self) -> usize {
        self.precision.len()
    }

    /// Number of observations (reference pairs) accumulated.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Accumulated precision `λ = Σ exp(−ℓ_i)`.
    pub fn precision(&self) -> ArrayView1<'_, f32> {
        self.precision.view()
    }

    /// Accumulated precision-weighted mean `η = Σ exp(−ℓ_i)·μ_i`.
    pub fn eta(&self) -> ArrayView1<'_, f32> {
        self.eta.view()
    }

    /// Adds one observation `N(μ_i, diag(exp(ℓ_i)))`; on error nothing is changed.
    pub fn observe(
        &mut self,
        mu_i: ArrayView1<'_, f32>,
        logvar_i: ArrayView1<'_, f32>,
    ) -> MathResult<()> {
        self.observe_batch(mu_i.insert_axis(Axis(0)), logvar_i.insert_axis(Axis(0)))
    }

    /// Adds observations `μ [M, d]`, `ℓ [M, d]`; on error nothing is changed.
    pub fn observe_batch(
        &mut self,
        mu: ArrayView2<'_, f32>,
        logvar: ArrayView2<'_, f32>,
    ) -> MathResult<()> {
        check_observations(self.d(), mu, logvar)?;
        let prec = logvar.mapv(|l| libm::expf(-l));
        let precision = &self.precision + &prec.sum_axis(Axis(0));
        let eta = &self.eta + &(&prec * &mu).sum_axis(Axis(0));
        // Bounded ℓ keeps λ finite; η can still overflow for means near f32::MAX.
        check::finite("eta (precision·mu overflowed)", eta.view())?;
        check::finite("precision (overflowed)", precision.view())?;
        self.precision = precision;
        self.eta = eta;
        self.count += mu.nrows();
        Ok(())
    }

    /// Forgetting: scales the evidence by `factor` in (0, 1] (e.g. `0.5^(1/half_life)` per
    /// observation), so older observations weigh less; the mean is unchanged, the variance grows.
    pub fn decay(&mut self, factor: f32) -> MathResult<()> {
        check_decay(factor)?;
        self.precision.mapv_inplace(|v| v * factor);
        self.eta.mapv_inplace(|v| v * factor);
        Ok(())
    }

    /// The posterior `σ² = 1/λ`, `μ = η/λ`; an error when nothing was observed.
    pub fn posterior(&self) -> MathResult<Posterior> {
        self.posterior_with_prior(None)
    }

    /// The posterior under a population prior `p₀ = N(m₀, diag(s₀²))` (docs/METHOD.md §2): the
    /// prior is one more Gaussian in the product, `λ = 1/s₀² + Σ exp(−ℓ_i)`,
    /// `η = m₀/s₀² + Σ exp(−ℓ_i)·μ_i`. With no observations it is the prior itself (cold start);
    /// without a prior, no observations is an error.
    pub fn posterior_with_prior(&self, prior: Option<&Posterior>) -> MathResult<Posterior> {
        let Some(p0) = prior else {
            if self.count == 0 {
                return Err(MathError::EmptyReferenceSet);
            }
            let var = self.precision.mapv(|l| 1.0 / l);
            let mean = &self.eta / &self.precision;
            return Posterior::new(mean, var);
        };
        check::len("prior (d)", self.d(), p0.d())?;
        if self.count == 0 {
            // Exactly the prior (1/(1/s²) need not round-trip in f32).
            return Ok(p0.clone());
        }
        let prec0 = p0.var.mapv(|v| 1.0 / v);
        let precision = &self.precision + &prec0;
        let eta = &self.eta + &(&prec0 * &p0.mean);
        let var = precision.mapv(|l| 1.0 / l);
        let mean = &eta / &precision;
        Posterior::new(mean, var)
    }
}

/// A forgetting factor must lie in (0, 1].
pub(crate) fn check_decay(factor: f32) -> MathResult<()> {
    if factor.is_finite() && factor > 0.0 && factor <= 1.0 {
        Ok(())
    } else {
        Err(MathError::OutOfRange {
            field: "decay factor",
            value: factor,
            expected: "in (0, 1]",
        })
    }
}

/// Product of Gaussians of a user's reference observations `μ [M, d]`, `ℓ [M, d]` (docs/METHOD.md Eq. 5).
pub fn pog(mu: ArrayView2<'_, f32>, logvar: ArrayView2<'_, f32>) -> MathResult<Posterior> {
    pog_with_prior(mu, logvar, None)
}

/// [`pog`] with the population prior as one more factor (docs/METHOD.md §2); `M = 0` rows give
/// the prior itself when there is one.
pub fn pog_with_prior(
    mu: ArrayView2<'_, f32>,
    logvar: ArrayView2<'_, f32>,
    prior: Option<&Posterior>,
) -> MathResult<Posterior> {
    let mut params = NaturalParams::empty(prior.map_or(mu.ncols(), Posterior::d));
    if mu.nrows() > 0 {
        params.observe_batch(mu, logvar)?;
    }
    params.posterior_with_prior(prior)
}

/// Mean pooling (ablation (e)): the mean of the `μ_i` and the mean of the `σ_i² = exp(ℓ_i)`.
pub fn mean_pool(mu: ArrayView2<'_, f32>, logvar: ArrayView2<'_, f32>) -> MathResult<Posterior> {
    check_observations(mu.ncols(), mu, logvar)?;
    let (Some(mean), Some(var)) = (
        mu.mean_axis(Axis(0)),
        logvar.mapv(libm::expf).mean_axis(Axis(0)),
    ) else {
        return Err(MathError::EmptyReferenceSet);
    };
    Posterior::new(mean, var)
}

/// Shapes, finiteness and the `ℓ` range of a batch of observations in dimension `d`.
fn check_observations(
    d: usize,
    mu: ArrayView2<'_, f32>,
    logvar: ArrayView2<'_, f32>,
) -> MathResult<()> {
    check::non_empty("mu (columns)", mu.ncols())?;
    check::len("mu (columns)", d, mu.ncols())?;
    check::len("logvar (rows)", mu.nrows(), logvar.nrows())?;
    check::len("logvar (columns)", d, logvar.ncols())?;
    check::finite("mu", mu)?;
    check::finite("logvar", logvar)?;
    if let Some(&value) = logvar.iter().find(|l| l.abs() > MAX_ABS_LOGVAR) {
        return Err(MathError::OutOfRange {
            field: "logvar",
            value,
            expected: "within ±80",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::testutil::{assert_close, Rng};
    use ndarray::{array, Array2};

    fn ln(a: Array2<f32>) -> Array2<f32> {
        a.mapv(f32::ln)
    }

    #[test]
    fn spec_closed_form_product_of_gaussians() {
        // docs/METHOD.md §8: N([1,0], [1,4]) × N([3,2], [1,1]) = N([2, 1.6], [0.5, 0.8]).
        let mu = array![[1.0, 0.0], [3.0, 2.0]];
        let logvar = ln(array![[1.0, 4.0], [1.0, 1.0]]);
        let p = pog(mu.view(), logvar.view()).unwrap();
        assert_close(p.mean(), array![2.0, 1.6].view(), 1e-6);
        assert_close(p.var(), array![0.5, 0.8].view(), 1e-6);
        assert!((p.uncertainty() - 0.65).abs() < 1e-6);
    }

    #[test]
    fn the_prior_is_one_more_factor_and_the_whole_posterior_without_answers() {
        // N([1,0], [1,4]) as the prior and N([3,2], [1,1]) observed: docs/METHOD.md §8's product.
        let prior = Posterior::new(array![1.0, 0.0], array![1.0, 4.0]).unwrap();
        let mu = array![[3.0, 2.0]];
        let logvar = ln(array![[1.0, 1.0]]);
        let p = pog_with_prior(mu.view(), logvar.view(), Some(&prior)).unwrap();
        assert_close(p.mean(), array![2.0, 1.6].view(), 1e-6);
        assert_close(p.var(), array![0.5, 0.8].view(), 1e-6);
        let none = Array2::<f32>::zeros((0, 2));
        let cold = pog_with_prior(none.view(), none.view(), Some(&prior)).unwrap();
        assert_eq!(cold, prior);
        assert_eq!(
            pog(none.view(), none.view()).unwrap_err(),
            MathError::EmptyReferenceSet
        );
        // Incremental with the prior added at the end equals the batch.
        let mut np = NaturalParams::empty(2);
        np.observe(mu.row(0), logvar.row(0)).unwrap();
        assert_eq!(np.posterior_with_prior(Some(&prior)).unwrap(), p);
    }

    #[test]
    fn repeated_observation_halves_variance_and_keeps_mean() {
        let mu = array![0.3, -1.2, 4.0];
        let logvar = array![0.5, -2.0, 1.0];
        let mut np = NaturalParams::empty(3);
        np.observe(mu.view(), logvar.view()).unwrap();
        np.observe(mu.view(), logvar.view()).unwrap();
        let p = np.posterior().unwrap();
        assert_close(p.mean(), mu.view(), 1e-6);
        assert_close(p.var(), logvar.mapv(|l| 0.5 * l.exp()).view(), 1e-6);
    }

    #[test]
    fn incremental_equals_batch_in_any_order() {
        let mut rng = Rng::new(7);
        let (m, d) = (9, 16);
        let mu = rng.normal_array((m, d), 2.0);
        let logvar = rng.uniform_array((m, d), -9.0, 9.0);
        let batch = pog(mu.view(), logvar.view()).unwrap();

        // One at a time, in a shuffled order.
        let mut order: Vec<usize> = (0..m).collect();
        rng.shuffle(&mut order);
        let mut np = NaturalParams::empty(d);
        for &i in &order {
            np.observe(mu.row(i), logvar.row(i)).unwrap();
        }
        assert_eq!(np.count(), m);
        let inc = np.posterior().unwrap();
        assert_close(inc.mean(), batch.mean(), 1e-6);
        assert_close(inc.var(), batch.var(), 1e-6);

        // Both against Eq. 5 evaluated directly in f64.
        for j in 0..d {
            let lam: f64 = (0..m).map(|i| (-f64::from(logvar[[i, j]])).exp()).sum();
            let eta: f64 = (0..m)
                .map(|i| (-f64::from(logvar[[i, j]])).exp() * f64::from(mu[[i, j]]))
                .sum();
            let (var, mean) = (1.0 / lam, eta / lam);
            assert!(
                (f64::from(batch.var()[j]) - var).abs() <= 1e-6 * var.max(1.0),
                "var[{j}]"
            );
            assert!(
                (f64::from(batch.mean()[j]) - mean).abs() <= 1e-6 * mean.abs().max(1.0),
                "mean[{j}]"
            );
        }
    }

    #[test]
    fn empty_reference_set_is_an_error() {
        assert_eq!(
            NaturalParams::empty(4).posterior().unwrap_err(),
            MathError::EmptyReferenceSet
        );
        let none = Array2::<f32>::zeros((0, 4));
        assert_eq!(
            pog(none.view(), none.view()).unwrap_err(),
            MathError::EmptyReferenceSet
        );
        assert_eq!(
            mean_pool(none.view(), none.view()).unwrap_err(),
            MathError::EmptyReferenceSet
        );
    }

    #[test]
    fn bad_observations_are_rejected_and_leave_the_state_alone() {
        let mut np = NaturalParams::empty(3);
        np.observe(array![1.0, 2.0, 3.0].view(), array![0.0, 0.0, 0.0].view())
            .unwrap();
        let before = np.clone();
        assert_eq!(
            np.observe(array![1.0, 2.0].view(), array![0.0, 0.0].view())
                .unwrap_err(),
            MathError::DimensionMismatch {
                field: "mu (columns)",
                expected: 3,
                got: 2
            }
        );
        assert_eq!(
            np.observe(array![1.0, 2.0, 3.0].view(), array![0.0, 0.0].view())
                .unwrap_err(),
            MathError::DimensionMismatch {
                field: "logvar (columns)",
                expected: 3,
                got: 2
            }
        );
        assert_eq!(
            np.observe(
                array![1.0, 2.0, 3.0].view(),
                array![0.0, f32::NAN, 0.0].view()
            )
            .unwrap_err(),
            MathError::NonFinite {
                field: "logvar",
                index: 1
            }
        );
        assert_eq!(
            np.observe(
                array![f32::INFINITY, 2.0, 3.0].view(),
                array![0.0, 0.0, 0.0].view()
            )
            .unwrap_err(),
            MathError::NonFinite {
                field: "mu",
                index: 0
            }
        );
        assert!(matches!(
            np.observe(
                array![1.0, 2.0, 3.0].view(),
                array![0.0, 0.0, -100.0].view()
            ),
            Err(MathError::OutOfRange {
                field: "logvar",
                ..
            })
        ));
        assert!(matches!(
            np.observe(
                array![3e38, 2.0, 3.0].view(),
                array![-80.0, 0.0, 0.0].view()
            ),
            Err(MathError::NonFinite {
                field: "eta (precision·mu overflowed)",
                index: 0
            })
        ));
        assert_eq!(np, before);
    }

    #[test]
    fn mean_pool_averages_means_and_variances() {
        let mu = array![[1.0, 0.0], [3.0, 2.0]];
        let logvar = ln(array![[1.0, 4.0], [1.0, 1.0]]);
        let p = mean_pool(mu.view(), logvar.view()).unwrap();
        assert_close(p.mean(), array![2.0, 1.0].view(), 1e-6);
        assert_close(p.var(), array![1.0, 2.5].view(), 1e-6);
    }

    #[test]
    fn posterior_new_validates() {
        assert_eq!(
            Posterior::new(array![0.0, 0.0], array![1.0]).unwrap_err(),
            MathError::DimensionMismatch {
                field: "posterior.var",
                expected: 2,
                got: 1
            }
        );
        assert!(matches!(
            Posterior::new(array![0.0], array![0.0]),
            Err(MathError::OutOfRange {
                field: "posterior.var",
                ..
            })
        ));
        assert_eq!(
            Posterior::new(array![f32::NAN], array![1.0]).unwrap_err(),
            MathError::NonFinite {
                field: "posterior.mean",
                index: 0
            }
        );
        assert!(matches!(
            Posterior::new(array![], array![]),
            Err(MathError::Empty { .. })
        ));
    }
}
