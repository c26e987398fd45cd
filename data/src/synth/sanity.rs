//! The sanity fit: eval accuracies of reference rankers that see the true scorers.

use super::generate::dot;
use super::scorers::N_SCORERS;
use super::Synthetic;
use crate::{Split, Triplet};
use serde::{Deserialize, Serialize};

impl Synthetic {
    /// Accuracies of reference rankers with perfect scorer features, computed from the texts.
    pub fn sanity(&self) -> SanityReport {
        let weights: std::collections::HashMap<&str, &[f64]> = self
            .user_weights
            .iter()
            .map(|(u, w)| (u.as_str(), w.as_slice()))
            .collect();
        let diff = |t: &Triplet| -> [f64; N_SCORERS] {
            let c = self.stats.score(&t.chosen);
            let r = self.stats.score(&t.rejected);
            std::array::from_fn(|j| c[j] - r[j])
        };
        let train: Vec<[f64; N_SCORERS]> = self
            .triplets
            .iter()
            .filter(|t| t.split != Split::Eval)
            .map(diff)
            .collect();
        let eval: Vec<([f64; N_SCORERS], &[f64])> = self
            .triplets
            .iter()
            .filter(|t| t.split == Split::Eval)
            .map(|t| (diff(t), weights[t.user.as_str()]))
            .collect();
        let uniform = vec![1.0 / N_SCORERS as f64; N_SCORERS];
        let mut mean_w = vec![0.0; N_SCORERS];
        for (_, w) in &self.user_weights {
            for j in 0..N_SCORERS {
                mean_w[j] += w[j] / self.user_weights.len() as f64;
            }
        }
        let fitted = fit_global(&train);
        let acc = |f: &dyn Fn(&[f64; N_SCORERS], &[f64]) -> f64| {
            let ok = eval.iter().filter(|(d, w)| f(d, w) > 0.0).count();
            ok as f64 / eval.len().max(1) as f64
        };
        SanityReport {
            eval_pairs: eval.len(),
            uniform: acc(&|d, _| dot(d, &uniform)),
            mean_weight: acc(&|d, _| dot(d, &mean_w)),
            fitted_global: acc(&|d, _| dot(d, &fitted)),
            oracle: acc(&|d, w| dot(d, w)),
            fitted_weights: fitted,
        }
    }
}

/// Eval-pair accuracies of rankers that see the true normalised scorers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityReport {
    /// Number of eval pairs.
    pub eval_pairs: usize,
    /// One global ranker with uniform weights over the scorers.
    pub uniform: f64,
    /// One global ranker with the mean user weight.
    pub mean_weight: f64,
    /// One global ranker fitted by logistic regression on the ref + target pairs.
    pub fitted_global: f64,
    /// Each user's true weights (perfect personalisation).
    pub oracle: f64,
    /// The fitted global weights.
    pub fitted_weights: Vec<f64>,
}

/// Logistic regression without intercept on pair differences (full-batch gradient descent).
fn fit_global(diffs: &[[f64; N_SCORERS]]) -> Vec<f64> {
    let mut w = vec![1.0 / N_SCORERS as f64; N_SCORERS];
    if diffs.is_empty() {
        return w;
    }
    let n = diffs.len() as f64;
    for _ in 0..500 {
        let mut g = [0.0; N_SCORERS];
        for d in diffs {
            let z = dot(d, &w);
            let p = 1.0 / (1.0 + (-z).exp());
            for j in 0..N_SCORERS {
                g[j] += (p - 1.0) * d[j] / n;
            }
        }
        for j in 0..N_SCORERS {
            w[j] -= 0.5 * g[j];
        }
    }
    w
}
