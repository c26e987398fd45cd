//! Uncertainty robustness (the paper's Fig. 3b): unseen users binned by VRF's posterior
//! uncertainty (mean σ²), every method's accuracy per bin, and whether σ² predicts error
//! (accuracy by uncertainty decile, Spearman ρ between σ² and a user's error rate).

use serde::Serialize;

use super::{agg, Ms, RunAnalysis};
use crate::score::UserAccuracy;

/// Names of the three tercile bins, low to high uncertainty.
pub const TERCILES: [&str; 3] = ["low", "mid", "high"];

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
