//! Personalised rewards, moment matching over the bases (docs/METHOD.md Eq. 7) and the
//! variance-attenuated Bradley–Terry probability and loss (docs/METHOD.md Eq. 8, MacKay's approximation).

use ndarray::{Array1, ArrayView1, ArrayView2};

use super::check;
use crate::error::{MathError, MathResult};

/// How far `Σ w_k` may stray from 1 (f32 softmax outputs are within ~1e-6 of it).
const SIMPLEX_TOL: f32 = 1e-4;

/// Logistic sigmoid, without overflow for large `|x|`.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + libm::expf(-x))
    } else {
        let e = libm::expf(x);
        e / (1.0 + e)
    }
}

/// `softplus(x) = ln(1 + eˣ)`, without overflow for large `x` or loss of precision for very negative `x`.
pub fn softplus(x: f32) -> f32 {
    x.max(0.0) + libm::log1pf(libm::expf(-x.abs()))
}

/// Personalised rewards `r = φ·w` for basis rewards `phi [N, K]` and weights `w [K]` (docs/METHOD.md Eq. 3).
pub fn personalised_rewards(
    w: ArrayView1<'_, f32>,
    phi: ArrayView2<'_, f32>,
) -> MathResult<Array1<f32>> {
    check_weights(w)?;
    check::len("phi (columns = K)", w.len(), phi.ncols())?;
    check::finite("phi", phi)?;
    // f64 accumulation: scores do not depend on the platform's f32 summation order (wasm parity).
    Ok(phi
        .rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .zip(&w)
                .map(|(p, w)| f64::from(*p) * f64::from(*w))
                .sum::<f64>() as f32
        })
        .collect())
}

/// Moments `(μ_Δ, σ_Δ²)` of the basis-reward differences `delta [K]` under weights `w [K]`
/// (docs/METHOD.md Eq. 7): `μ_Δ = Σ w_k Δ_k`, `σ_Δ² = Σ w_k (Δ_k − μ_Δ)²`.
pub fn moments(w: ArrayView1<'_, f32>, delta: ArrayView1<'_, f32>) -> MathResult<(f32, f32)> {
    check_weights(w)?;
    check::len("delta", w.len(), delta.len())?;
    check::finite("delta", delta)?;
    // Two-pass in f64: the variance is a sum of non-negative terms, so it cannot go negative.
    let pairs = || {
        w.iter()
            .zip(delta.iter())
            .map(|(&w, &d)| (f64::from(w), f64::from(d)))
    };
    let mean: f64 = pairs().map(|(w, d)| w * d).sum();
    let var: f64 = pairs().map(|(w, d)| w * (d - mean).powi(2)).sum();
    Ok((mean as f32, var as f32))
}

/// MacKay's attenuated logit `z = μ_Δ / sqrt(1 + π·σ_Δ²/8)`.
pub fn mackay_z(mu_delta: f32, var_delta: f32) -> MathResult<f32> {
    check::finite_scalar("mu_delta", mu_delta)?;
    check::finite_scalar("var_delta", var_delta)?;
    if var_delta < 0.0 {
        return Err(MathError::OutOfRange {
            field: "var_delta",
            value: var_delta,
            expected: ">= 0",
        });
    }
    let kappa = (1.0 + std::f64::consts::PI * f64::from(var_delta) / 8.0)
        .sqrt()
        .recip();
    Ok((f64::from(mu_delta) * kappa) as f32)
}

/// Preference probability `sigmoid(z)` from the moments (docs/METHOD.md §4).
pub fn preference_probability_from_moments(mu_delta: f32, var_delta: f32) -> MathResult<f32> {
    Ok(sigmoid(mackay_z(mu_delta, var_delta)?))
}

/// Probability that the chosen response is preferred, from weights `w [K]` and basis-reward
/// differences `delta [K]`.
pub fn preference_probability(
    w: ArrayView1<'_, f32>,
    delta: ArrayView1<'_, f32>,
) -> MathResult<f32> {
    let (mu, var) = moments(w, delta)?;
    preference_probability_from_moments(mu, var)
}

/// [`preference_probability`] with a calibration temperature: `σ(z / T)` with `z` Eq. 8's
/// attenuated logit (docs/METHOD.md §4; `T` is fitted on training users at evaluation).
pub fn calibrated_preference_probability(
    w: ArrayView1<'_, f32>,
    delta: ArrayView1<'_, f32>,
    temperature: f32,
) -> MathResult<f32> {
    check::positive("temperature", temperature)?;
    let (mu, var) = moments(w, delta)?;
    Ok(sigmoid(mackay_z(mu, var)? / temperature))
}

/// Variance-attenuated BT loss `−log sigmoid(z) = softplus(−z)` from the moments (docs/METHOD.md Eq. 8).
pub fn va_loss_from_moments(mu_delta: f32, var_delta: f32) -> MathResult<f32> {
    Ok(softplus(-mackay_z(mu_delta, var_delta)?))
}

/// Variance-attenuated BT loss of one pair from weights `w [K]` and differences `delta [K]`.
pub fn va_loss(w: ArrayView1<'_, f32>, delta: ArrayView1<'_, f32>) -> MathResult<f32> {
    let (mu, var) = moments(w, delta)?;
    va_loss_from_moments(mu, var)
}

/// Weights must be a point of the simplex: finite, non-negative, summing to 1.
fn check_weights(w: ArrayView1<'_, f32>) -> MathResult<()> {
    check::non_empty("weights", w.len())?;
    check::finite("weights", w)?;
    if let Some(&value) = w.iter().find(|v| **v < 0.0) {
        return Err(MathError::OutOfRange {
            field: "weights",
            value,
            expected: ">= 0",
        });
    }
    let sum = w.sum();
    if (sum - 1.0).abs() > SIMPLEX_TOL {
        return Err(MathError::OutOfRange {
            field: "weights (sum)",
            value: sum,
            expected: "1 (±1e-4)",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::math::testutil::Rng;
    use ndarray::{array, Array2};
    use std::f64::consts::PI;

    fn var_at(w: &Array1<f32>, delta: &Array1<f32>) -> f64 {
        f64::from(moments(w.view(), delta.view()).unwrap().1)
    }

    #[test]
    fn moments_hand_computed() {
        // w = [¼, ¾], Δ = [2, −2]: μ = −1, σ² = ¼·9 + ¾·1 = 3.
        let (mu, var) = moments(array![0.25, 0.75].view(), array![2.0, -2.0].view()).unwrap();
        assert!(
            (mu + 1.0).abs() < 1e-7 && (var - 3.0).abs() < 1e-6,
            "{mu} {var}"
        );
    }

    #[test]
    fn variance_is_zero_at_simplex_vertices() {
        let mut rng = Rng::new(11);
        for _ in 0..20 {
            let delta = rng.normal_vec(8, 3.0);
            for k in 0..8 {
                let mut w = Array1::zeros(8);
                w[k] = 1.0;
                let (mu, var) = moments(w.view(), delta.view()).unwrap();
                assert_eq!(mu, delta[k]);
                assert_eq!(var, 0.0, "σ_Δ² at vertex {k}");
            }
        }
    }

    #[test]
    fn variance_is_concave_with_hessian_minus_two_delta_delta_t() {
        let mut rng = Rng::new(5);
        let k = 6;
        for _ in 0..200 {
            let delta = rng.normal_vec(k, 2.0);
            let w = rng.simplex(k);
            // A direction inside the simplex's plane (Σ v = 0), scaled to stay inside it.
            let g = rng.normal_vec(k, 1.0);
            let v = &g - g.mean().unwrap();
            let h = 0.9 * w.iter().copied().fold(f32::MAX, f32::min)
                / v.iter().map(|x| x.abs()).fold(0.0, f32::max);
            let (wp, wm) = (&w + &(&v * h), &w - &(&v * h));
            let second = var_at(&wp, &delta) - 2.0 * var_at(&w, &delta) + var_at(&wm, &delta);
            // Use the step actually taken in f32 for the prediction.
            let step: f64 = (&wp - &w)
                .iter()
                .zip(delta.iter())
                .map(|(s, d)| f64::from(*s) * f64::from(*d))
                .sum();
            let want = -2.0 * step * step;
            assert!(second <= 5e-6, "second difference {second} is not ≤ 0");
            assert!(
                (second - want).abs() <= 2e-3 * want.abs() + 5e-6,
                "second difference {second} vs −2(Δᵀv)² = {want}"
            );
        }
        // Jensen: σ_Δ² at a midpoint is at least the mean of the endpoints' values.
        for _ in 0..200 {
            let delta = rng.normal_vec(k, 2.0);
            let (a, b) = (rng.simplex(k), rng.simplex(k));
            let mid = (&a + &b) * 0.5;
            assert!(var_at(&mid, &delta) >= 0.5 * (var_at(&a, &delta) + var_at(&b, &delta)) - 1e-5);
        }
    }

    /// `∫ σ(x) N(x; μ, σ²) dx` by the trapezoid rule over ±12 standard deviations, in f64.
    fn exact_gaussian_logistic(mu: f64, var: f64) -> f64 {
        let sig = |x: f64| {
            if x >= 0.0 {
                1.0 / (1.0 + (-x).exp())
            } else {
                x.exp() / (1.0 + x.exp())
            }
        };
        let s = var.sqrt();
        let n = 4800;
        let (mut num, mut den) = (0.0, 0.0);
        for i in 0..=n {
            let e = -12.0 + 24.0 * f64::from(i) / f64::from(n);
            let wt = if i == 0 || i == n { 0.5 } else { 1.0 } * (-0.5 * e * e).exp();
            num += wt * sig(mu + s * e);
            den += wt;
        }
        num / den
    }

    #[test]
    fn mackay_is_close_to_the_exact_gaussian_logistic_integral() {
        let vars = [
            0.0, 0.01, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0,
            30.0, 50.0, 100.0, 1e3, 1e4,
        ];
        let mut worst = (0.0_f64, 0.0, 0.0);
        let mut worst_wide = 0.0_f64;
        for i in -160..=160 {
            let mu = f64::from(i) * 0.05; // μ_Δ ∈ [−8, 8]
            for &var in &vars {
                let approx =
                    f64::from(preference_probability_from_moments(mu as f32, var as f32).unwrap());
                let err = (approx - exact_gaussian_logistic(mu, var)).abs();
                if var == 0.0 {
                    assert!(
                        err < 1e-6,
                        "σ_Δ² = 0 must be plain sigmoid: μ={mu} err={err}"
                    );
                }
                if mu.abs() <= 4.0 && err > worst.0 {
                    worst = (err, mu, var);
                }
                worst_wide = worst_wide.max(err);
            }
        }
        // docs/METHOD.md §8's bound holds for |μ_Δ| ≤ 4 (max ≈ 0.0086 at μ = ±4, σ² ≈ 4); the gap grows
        // with |μ_Δ| (≈ 0.013 at |μ| = 6, ≈ 0.015 at |μ| = 8), so the grid is stated here.
        assert!(
            worst.0 < 0.011,
            "MacKay error {} at μ={} σ²={}",
            worst.0,
            worst.1,
            worst.2
        );
        assert!(worst_wide < 0.016, "MacKay error {worst_wide} over |μ| ≤ 8");
    }

    /// Central finite differences of the implemented loss in (μ_Δ, σ_Δ²).
    fn fd_grads(mu: f32, var: f32) -> (f64, f64) {
        let l = |m: f32, v: f32| f64::from(va_loss_from_moments(m, v).unwrap());
        let hm = 1e-2_f32;
        let hv = 1e-2 * var.max(1.0);
        let dmu = (l(mu + hm, var) - l(mu - hm, var)) / f64::from(2.0 * hm);
        let dvar = (l(mu, var + hv) - l(mu, var - hv)) / f64::from(2.0 * hv);
        (dmu, dvar)
    }

    /// docs/METHOD.md §8's closed forms: ∂L/∂μ_Δ = −(1−σ(z))κ, ∂L/∂σ_Δ² = (1−σ(z))·μ_Δ·(π/16)·κ³.
    fn closed_form_grads(mu: f64, var: f64) -> (f64, f64) {
        let kappa = (1.0 + PI * var / 8.0).powf(-0.5);
        let one_minus_sig = 1.0 / (1.0 + (mu * kappa).exp());
        (
            -one_minus_sig * kappa,
            one_minus_sig * mu * (PI / 16.0) * kappa.powi(3),
        )
    }

    #[test]
    fn va_loss_gradients_match_closed_forms() {
        for mu in [-4.0_f32, -1.5, -0.3, 0.0, 0.3, 1.5, 4.0] {
            for var in [0.05_f32, 0.5, 1.0, 4.0, 16.0, 100.0, 1e4] {
                let (fd_mu, fd_var) = fd_grads(mu, var);
                let (cf_mu, cf_var) = closed_form_grads(f64::from(mu), f64::from(var));
                assert!(
                    (fd_mu - cf_mu).abs() <= 1e-3 * cf_mu.abs() + 2e-5,
                    "∂/∂μ at ({mu},{var}): {fd_mu} vs {cf_mu}"
                );
                assert!(
                    (fd_var - cf_var).abs() <= 1e-2 * cf_var.abs() + 2e-6,
                    "∂/∂σ² at ({mu},{var}): {fd_var} vs {cf_var}"
                );
            }
        }
    }

    #[test]
    fn va_loss_gradients_vanish_as_variance_grows() {
        let vars = [100.0_f32, 1e3, 1e4, 1e5, 1e6];
        for mu in [-3.0_f32, -0.5, 0.5, 3.0] {
            let g: Vec<(f64, f64)> = vars.iter().map(|&v| fd_grads(mu, v)).collect();
            for pair in g.windows(2) {
                assert!(
                    pair[1].0.abs() < pair[0].0.abs(),
                    "|∂L/∂μ| not shrinking for μ={mu}: {g:?}"
                );
                assert!(
                    pair[1].1.abs() < pair[0].1.abs(),
                    "|∂L/∂σ²| not shrinking for μ={mu}: {g:?}"
                );
            }
            let (last_mu, last_var) = g[g.len() - 1];
            assert!(
                last_mu.abs() < 2e-3 && last_var.abs() < 1e-8,
                "μ={mu}: {g:?}"
            );
            // The sign of ∂L/∂σ² follows μ_Δ: extra uncertainty hurts right answers, helps wrong ones.
            assert_eq!(g[0].1 > 0.0, mu > 0.0);
        }
    }

    #[test]
    fn probability_and_loss_are_consistent_and_stable() {
        let w = array![0.2, 0.3, 0.5];
        let delta = array![1.0, -0.5, 2.0];
        let p = preference_probability(w.view(), delta.view()).unwrap();
        let l = va_loss(w.view(), delta.view()).unwrap();
        assert!((l + p.ln()).abs() < 1e-6, "loss {l} vs −ln p {}", -p.ln());
        let (mu, var) = moments(w.view(), delta.view()).unwrap();
        assert_eq!(p, preference_probability_from_moments(mu, var).unwrap());
        // A one-hot weight has no variance: plain Bradley–Terry on that basis.
        let onehot = array![0.0, 0.0, 1.0];
        assert!(
            (preference_probability(onehot.view(), delta.view()).unwrap() - sigmoid(2.0)).abs()
                < 1e-7
        );
        // Attenuation never flips the side of ½.
        for m in [-5.0_f32, -0.1, 0.1, 5.0] {
            for v in [0.0_f32, 1.0, 1e6] {
                let p = preference_probability_from_moments(m, v).unwrap();
                assert_eq!(p > 0.5, m > 0.0, "p={p} for μ={m} σ²={v}");
            }
        }
        // Far tails: no overflow to ∞ / NaN, loss ≈ |z| for very wrong answers.
        assert!((va_loss_from_moments(-200.0, 0.0).unwrap() - 200.0).abs() < 1e-4);
        let tiny = va_loss_from_moments(200.0, 0.0).unwrap();
        assert!((0.0..1e-30).contains(&tiny), "{tiny}");
        assert_eq!(
            sigmoid(-200.0),
            (-200.0_f32).exp() / (1.0 + (-200.0_f32).exp())
        );
        assert!(sigmoid(-1000.0) == 0.0 && sigmoid(1000.0) == 1.0);
        assert!((softplus(-20.0) - 2.061_153_6e-9).abs() < 1e-15);
    }

    #[test]
    fn personalised_rewards_are_weighted_basis_rewards() {
        let w = array![0.25, 0.75];
        let phi = array![[1.0, 2.0], [-4.0, 0.0], [0.0, 0.0]];
        assert_eq!(
            personalised_rewards(w.view(), phi.view()).unwrap(),
            array![1.75, -1.0, 0.0]
        );
    }

    #[test]
    fn bad_weights_and_shapes_are_rejected() {
        let delta = array![1.0, 2.0];
        assert!(matches!(
            moments(array![0.5, 0.6].view(), delta.view()),
            Err(MathError::OutOfRange {
                field: "weights (sum)",
                ..
            })
        ));
        assert!(matches!(
            moments(array![1.5, -0.5].view(), delta.view()),
            Err(MathError::OutOfRange {
                field: "weights",
                ..
            })
        ));
        assert_eq!(
            moments(array![0.5, f32::NAN].view(), delta.view()).unwrap_err(),
            MathError::NonFinite {
                field: "weights",
                index: 1
            }
        );
        assert_eq!(
            moments(array![0.2, 0.3, 0.5].view(), delta.view()).unwrap_err(),
            MathError::DimensionMismatch {
                field: "delta",
                expected: 3,
                got: 2
            }
        );
        assert_eq!(
            va_loss(array![0.5, 0.5].view(), array![1.0, f32::INFINITY].view()).unwrap_err(),
            MathError::NonFinite {
                field: "delta",
                index: 1
            }
        );
        assert_eq!(
            personalised_rewards(array![0.5, 0.5].view(), Array2::zeros((4, 3)).view())
                .unwrap_err(),
            MathError::DimensionMismatch {
                field: "phi (columns = K)",
                expected: 2,
                got: 3
            }
        );
        assert!(matches!(
            personalised_rewards(array![].view(), Array2::zeros((4, 0)).view()),
            Err(MathError::Empty { .. })
        ));
        assert!(matches!(
            mackay_z(1.0, -0.5),
            Err(MathError::OutOfRange {
                field: "var_delta",
                ..
            })
        ));
        assert_eq!(
            mackay_z(f32::NAN, 0.0).unwrap_err(),
            MathError::NonFinite {
                field: "mu_delta",
                index: 0
            }
        );
    }
}
