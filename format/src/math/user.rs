//! One call from a user's reference pairs to their posterior and basis weights (docs/METHOD.md §4).

use ndarray::{Array1, ArrayView2};

use super::bases::Bases;
use super::check;
use super::encoder::Encoder;
use super::posterior::{pog, NaturalParams, Posterior};
use crate::error::{MathError, MathResult};

/// A user as the runtime sees them: posterior `N(mean, diag(var))`, basis weights and uncertainty.
#[derive(Debug, Clone, PartialEq)]
pub struct UserPosterior {
    /// Posterior mean `μ_u`, `[d]`.
    pub mean: Array1<f32>,
    /// Posterior variance `σ_u²`, `[d]`.
    pub var: Array1<f32>,
    /// Basis weights `w_u`, `[K]`, summing to 1.
    pub weights: Array1<f32>,
    /// Mean of `σ_u²` over dimensions (docs/METHOD.md §4).
    pub uncertainty: f32,
}

impl UserPosterior {
    /// Weights and uncertainty of a given posterior (e.g. a cached one of a seen user).
    pub fn from_posterior(posterior: &Posterior, bases: &Bases, tau: f32) -> MathResult<Self> {
        let weights = bases.weights(posterior, tau)?;
        Ok(Self {
            mean: posterior.mean().to_owned(),
            var: posterior.var().to_owned(),
            weights,
            uncertainty: posterior.uncertainty(),
        })
    }

    /// The incremental path: running natural parameters → posterior → weights.
    pub fn from_natural(params: &NaturalParams, bases: &Bases, tau: f32) -> MathResult<Self> {
        Self::from_posterior(&params.posterior()?, bases, tau)
    }
}

/// Unseen-user inference in one pass: pair features `[M, in]` → encoder → PoG → W₂ → softmax.
pub fn infer_user(
    encoder: &Encoder,
    bases: &Bases,
    tau: f32,
    features: ArrayView2<'_, f32>,
) -> MathResult<UserPosterior> {
    check::len("bases (d)", encoder.d(), bases.d())?;
    if features.nrows() == 0 {
        return Err(MathError::EmptyReferenceSet);
    }
    let (mu, logvar) = encoder.encode(features)?;
    UserPosterior::from_posterior(&pog(mu.view(), logvar.view())?, bases, tau)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::mlp::{Linear, Mlp};
    use crate::math::testutil::{assert_close, Rng};
    use crate::math::DEFAULT_TAU;
    use ndarray::Array2;

    fn random_linear(rng: &mut Rng, out: usize, inp: usize) -> Linear {
        let scale = 1.0 / (inp as f32).sqrt();
        Linear::new(
            rng.normal_array((out, inp), scale),
            rng.normal_vec(out, 0.1),
        )
        .unwrap()
    }

    /// Encoder `2H → H → 2d` with H = 3, d = 4, and K = 5 bases.
    fn model(rng: &mut Rng) -> (Encoder, Bases) {
        let mlp = Mlp::new(random_linear(rng, 3, 6), random_linear(rng, 8, 3)).unwrap();
        let encoder = Encoder::new(mlp, 4).unwrap();
        let bases = Bases::new(
            rng.normal_array((5, 4), 1.0),
            rng.uniform_array((5, 4), -1.0, 1.0),
        )
        .unwrap();
        (encoder, bases)
    }

    #[test]
    fn one_pass_matches_the_explicit_chain_and_the_incremental_path() {
        let mut rng = Rng::new(21);
        let (encoder, bases) = model(&mut rng);
        let features = rng.normal_array((9, 6), 1.0);
        let user = infer_user(&encoder, &bases, DEFAULT_TAU, features.view()).unwrap();

        let (mu, logvar) = encoder.encode(features.view()).unwrap();
        let q = pog(mu.view(), logvar.view()).unwrap();
        assert_close(user.mean.view(), q.mean(), 1e-7);
        assert_close(user.var.view(), q.var(), 1e-7);
        assert_close(
            user.weights.view(),
            bases.weights(&q, DEFAULT_TAU).unwrap().view(),
            1e-7,
        );
        assert!((user.uncertainty - user.var.mean().unwrap()).abs() < 1e-6);
        assert!((user.weights.sum() - 1.0).abs() < 1e-6);

        let mut params = NaturalParams::empty(encoder.d());
        for row in features.rows() {
            encoder
                .accumulate(&mut params, row.insert_axis(ndarray::Axis(0)))
                .unwrap();
        }
        let inc = UserPosterior::from_natural(&params, &bases, DEFAULT_TAU).unwrap();
        assert_close(inc.mean.view(), user.mean.view(), 1e-6);
        assert_close(inc.var.view(), user.var.view(), 1e-6);
        assert_close(inc.weights.view(), user.weights.view(), 1e-6);
    }

    #[test]
    fn no_reference_pairs_is_an_error_not_a_made_up_user() {
        let mut rng = Rng::new(1);
        let (encoder, bases) = model(&mut rng);
        let none = Array2::<f32>::zeros((0, 6));
        assert_eq!(
            infer_user(&encoder, &bases, 1.0, none.view()).unwrap_err(),
            MathError::EmptyReferenceSet
        );
        let params = NaturalParams::empty(4);
        assert_eq!(
            UserPosterior::from_natural(&params, &bases, 1.0).unwrap_err(),
            MathError::EmptyReferenceSet
        );
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let mut rng = Rng::new(2);
        let (encoder, bases) = model(&mut rng);
        assert_eq!(
            infer_user(&encoder, &bases, 1.0, Array2::zeros((3, 5)).view()).unwrap_err(),
            MathError::DimensionMismatch {
                field: "features (columns)",
                expected: 6,
                got: 5
            }
        );
        let mut f = Array2::zeros((2, 6));
        f[[1, 1]] = f32::NAN;
        assert_eq!(
            infer_user(&encoder, &bases, 1.0, f.view()).unwrap_err(),
            MathError::NonFinite {
                field: "features",
                index: 7
            }
        );
        let other = Bases::new(Array2::zeros((5, 3)), Array2::zeros((5, 3))).unwrap();
        assert_eq!(
            infer_user(&encoder, &other, 1.0, Array2::zeros((3, 6)).view()).unwrap_err(),
            MathError::DimensionMismatch {
                field: "bases (d)",
                expected: 4,
                got: 3
            }
        );
    }
}
