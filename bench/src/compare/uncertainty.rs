//! Uncertainty robustness (the paper's Fig. 3b): unseen users binned by VRF's posterior
//! uncertainty (mean σ²), every method's accuracy per bin, and whether σ² predicts error
//! (accuracy by uncertainty decile, Spearman ρ between σ² and a user's error rate).

use serde::Serialize;

use super::{agg, Ms, RunAnalysis};
use crate::score::UserAccuracy;

/// Names of the three tercile bins, low to high uncertainty.
pub const TERCILES: [&str; 3] = ["low", "mid", "high"];

pub use vrf_trainer::metrics::{average_ranks, spearman};

/// The bin (`0..bins`) of each value by rank: the i-th smallest of n goes to ⌊i·bins/n⌋, so bins
/// differ in size by at most one (equal values may fall in neighbouring bins; ties keep input order).
pub fn rank_bins(values: &[f64], bins: usize) -> Vec<usize> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0; n];
    for (rank, &i) in order.iter().enumerate() {
        out[i] = rank * bins.max(1) / n.max(1);
    }
    out
}

/// Pooled accuracy (Σ correct / Σ pairs) of the users in each of `bins` bins; NaN for an empty bin.
pub fn binned_accuracy(users: &[UserAccuracy], bin: &[usize], bins: usize) -> Vec<f64> {
    let mut c = vec![(0usize, 0usize); bins];
    for (u, &b) in users.iter().zip(bin) {
        if b < bins {
            c[b].0 += u.correct;
            c[b].1 += u.pairs;
        }
    }
    c.into_iter()
        .map(|(k, n)| {
            if n == 0 {
                f64::NAN
            } else {
                k as f64 / n as f64
            }
        })
        .collect()
}

/// One method's accuracy by VRF's uncertainty on one α (mean ± std over seeds).
#[derive(Clone, Debug, Serialize)]
pub struct UncertaintyRow {
    /// Method name.
    pub method: String,
    /// Dirichlet α of the benchmark.
    pub alpha: f64,
    /// Accuracy in the low / mid / high uncertainty tercile.
    pub terciles: Vec<Ms>,
    /// Accuracy in each uncertainty decile, lowest first.
    pub deciles: Vec<Ms>,
    /// Spearman ρ between VRF's σ² and the method's per-user error rate.
    pub spearman: Ms,
}

/// The rows of one α from its runs (grouped by method, each with one run per seed), binned by
/// the VRF run of the same seed; empty without a VRF run.
pub fn rows(alpha: f64, runs: &[Vec<RunAnalysis>]) -> Vec<UncertaintyRow> {
    let vrf: Vec<&RunAnalysis> = runs
        .iter()
        .flatten()
        .filter(|r| r.sigma2.is_some())
        .collect();
    if vrf.is_empty() {
        return vec![];
    }
    let mut out = Vec::new();
    for method_runs in runs {
        let (mut ter, mut dec, mut rho) = (vec![], vec![], vec![]);
        for r in method_runs {
            let Some(sigma2) = vrf
                .iter()
                .find(|v| v.seed == r.seed)
                .and_then(|v| v.sigma2.as_ref())
            else {
                continue;
            };
            if sigma2.len() != r.unseen.len() || sigma2.is_empty() {
                continue;
            }
            ter.push(binned_accuracy(&r.unseen, &rank_bins(sigma2, 3), 3));
            dec.push(binned_accuracy(&r.unseen, &rank_bins(sigma2, 10), 10));
            let err: Vec<f64> = r.unseen.iter().map(|u| 1.0 - u.accuracy()).collect();
            rho.push(spearman(sigma2, &err));
        }
        let Some(first) = method_runs.first() else {
            continue;
        };
        out.push(UncertaintyRow {
            method: first.method.clone(),
            alpha,
            terciles: agg::columns(&ter, 3),
            deciles: agg::columns(&dec, 10),
            spearman: agg::ms(&rho),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terciles_and_deciles_by_rank() {
        let v = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2];
        // Sorted: 0.1, 0.2, 0.3 | 0.5, 0.7 | 0.9 … with 6 values: ranks 0,1 → 0; 2,3 → 1; 4,5 → 2.
        assert_eq!(rank_bins(&v, 3), vec![2, 0, 1, 1, 2, 0]);
        let ten: Vec<f64> = (0..20).map(|i| (19 - i) as f64).collect();
        let b = rank_bins(&ten, 10);
        assert_eq!(b[19], 0);
        assert_eq!(b[0], 9);
        for d in 0..10 {
            assert_eq!(b.iter().filter(|&&x| x == d).count(), 2);
        }
        // Fewer values than bins: each value its own bin, some bins empty.
        assert_eq!(rank_bins(&[3.0, 1.0], 10), vec![5, 0]);
        let users = vec![
            UserAccuracy {
                user: "a".into(),
                correct: 1,
                pairs: 2,
            },
            UserAccuracy {
                user: "b".into(),
                correct: 3,
                pairs: 3,
            },
        ];
        let acc = binned_accuracy(&users, &[0, 0], 3);
        assert!((acc[0] - 0.8).abs() < 1e-12 && acc[1].is_nan() && acc[2].is_nan());
    }
}
