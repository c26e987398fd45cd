//! Active questions: which pair, if the user answered it, would tell the most about them.
//!
//! A question is a pair `(a, b)`. Its answer adds one observation to the user's product of
//! Gaussians: the encoder's Gaussian of `(a ≻ b)` with probability `p = P(a ≻ b)` under the
//! current posterior (docs/METHOD.md Eq. 8), else that of `(b ≻ a)`. The value of the question is
//! the expected information gain `p·KL(q_ab ‖ q) + (1 − p)·KL(q_ba ‖ q)`: how far, in nats, the
//! answer is expected to move the posterior (its mean as well as its spread).

use ndarray::ArrayView1;

use super::check;
use super::posterior::{NaturalParams, Posterior};
use crate::error::MathResult;

/// `KL(a ‖ b)` between diagonal Gaussians, in nats (accumulated in `f64`).
pub fn kl_diag(a: &Posterior, b: &Posterior) -> MathResult<f32> {
    check::len("posterior (d)", a.d(), b.d())?;
    let kl: f64 = a
        .mean()
        .iter()
        .zip(a.var().iter())
        .zip(b.mean().iter().zip(b.var().iter()))
        .map(|((&ma, &va), (&mb, &vb))| {
            let (ma, va, mb, vb) = (f64::from(ma), f64::from(va), f64::from(mb), f64::from(vb));
            0.5 * ((va + (ma - mb).powi(2)) / vb - 1.0 + (vb / va).ln())
        })
        .sum();
    Ok(kl as f32)
}

/// What asking one question is expected to give.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuestionValue {
    /// `P(a ≻ b)` under the current posterior (or the population, before any observation).
    pub p_first: f32,
    /// Expected information gain in nats: `p·KL(q_ab ‖ q) + (1 − p)·KL(q_ba ‖ q)`.
    pub information_gain: f32,
    /// Expected uncertainty (mean posterior variance, docs/METHOD.md §4) after the answer.
    pub expected_uncertainty: f32,
}

/// The value of a question for a user with evidence `current`, whose posterior is `reference`
/// (before the first observation: a population stand-in), given the two observations its
/// answer can add, `(μ, ℓ)` of `a ≻ b` and of `b ≻ a`, and `p_first = P(a ≻ b)`.
pub fn question_value(
    current: &NaturalParams,
    reference: &Posterior,
    p_first: f32,
    ab: (ArrayView1<'_, f32>, ArrayView1<'_, f32>),
    ba: (ArrayView1<'_, f32>, ArrayView1<'_, f32>),
) -> MathResult<QuestionValue> {
    question_value_with_prior(current, None, reference, p_first, ab, ba)
}

/// [`question_value`] for a model with a population prior: the posteriors after either answer
/// include the prior factor (docs/METHOD.md §2).
pub fn question_value_with_prior(
    current: &NaturalParams,
    prior: Option<&Posterior>,
    reference: &Posterior,
    p_first: f32,
    ab: (ArrayView1<'_, f32>, ArrayView1<'_, f32>),
    ba: (ArrayView1<'_, f32>, ArrayView1<'_, f32>),
) -> MathResult<QuestionValue> {
    check::finite_scalar("p_first", p_first)?;
    let after = |(mu, logvar): (ArrayView1<'_, f32>, ArrayView1<'_, f32>)| {
        let mut p = current.clone();
        p.observe(mu, logvar)?;
        p.posterior_with_prior(prior)
    };
    let (q_ab, q_ba) = (after(ab)?, after(ba)?);
    let p = f64::from(p_first.clamp(0.0, 1.0));
    let gain = p * f64::from(kl_diag(&q_ab, reference)?)
        + (1.0 - p) * f64::from(kl_diag(&q_ba, reference)?);
    let unc = p * f64::from(q_ab.uncertainty()) + (1.0 - p) * f64::from(q_ba.uncertainty());
    Ok(QuestionValue {
        p_first: p as f32,
        information_gain: gain as f32,
        expected_uncertainty: unc as f32,
    })
}

/// The index of the most valuable question (the first one on ties); `None` when there is none.
pub fn best_question(values: &[QuestionValue]) -> Option<usize> {
    super::argmax(values.iter().map(|v| v.information_gain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, Array1};

    fn gauss(mean: &[f32], var: &[f32]) -> Posterior {
        Posterior::new(arr1(mean), arr1(var)).unwrap()
    }

    #[test]
    fn kl_is_zero_on_itself_and_matches_the_closed_form() {
        let a = gauss(&[0.5, -1.0], &[0.25, 2.0]);
        assert!(kl_diag(&a, &a).unwrap().abs() < 1e-7);
        let b = gauss(&[0.0, 0.0], &[1.0, 1.0]);
        // Σ ½(σ² + μ² − 1 − ln σ²) against N(0, 1).
        let want: f64 = [(0.5f64, 0.25f64), (-1.0, 2.0)]
            .iter()
            .map(|(m, v)| 0.5 * (v + m * m - 1.0 - v.ln()))
            .sum();
        assert!((f64::from(kl_diag(&a, &b).unwrap()) - want).abs() < 1e-6);
    }

    #[test]
    fn a_sharper_observation_is_worth_more_and_a_certain_answer_counts_one_side() {
        let mut current = NaturalParams::empty(2);
        current
            .observe(arr1(&[0.0, 0.0]).view(), arr1(&[0.0, 0.0]).view())
            .unwrap();
        let reference = current.posterior().unwrap();
        let (mu, vague, sharp) = (arr1(&[1.0, -1.0]), arr1(&[3.0, 3.0]), arr1(&[-3.0, -3.0]));
        let neg = mu.mapv(|v| -v);
        let value = |p: f32, ab: (&Array1<f32>, &Array1<f32>), ba: (&Array1<f32>, &Array1<f32>)| {
            question_value(
                &current,
                &reference,
                p,
                (ab.0.view(), ab.1.view()),
                (ba.0.view(), ba.1.view()),
            )
        };
        let v_vague = value(0.5, (&mu, &vague), (&neg, &vague)).unwrap();
        let v_sharp = value(0.5, (&mu, &sharp), (&neg, &sharp)).unwrap();
        assert!(v_sharp.information_gain > v_vague.information_gain);
        assert!(v_sharp.expected_uncertainty < v_vague.expected_uncertainty);
        assert_eq!(best_question(&[v_vague, v_sharp]), Some(1));
        // p = 1: only the first answer counts, whatever the second would have done.
        let far = arr1(&[50.0, 50.0]);
        let one = value(1.0, (&mu, &sharp), (&far, &sharp)).unwrap();
        let mut p = current.clone();
        p.observe(mu.view(), sharp.view()).unwrap();
        let want = kl_diag(&p.posterior().unwrap(), &reference).unwrap();
        assert!((one.information_gain - want).abs() < 1e-6);
        assert!(value(f32::NAN, (&mu, &sharp), (&neg, &sharp)).is_err());
    }
}
