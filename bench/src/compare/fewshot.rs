//! The few-shot curve for unseen users (the paper's Fig. 3a): accuracy with k ∈ {0, 1, 3, 5, 9}
//! random reference pairs per user (the draws every method's evaluation shares), and with all.
//! BT, which reads no reference pairs, has its unseen accuracy at every k; k = 0 is VRF's
//! population prior (cold start), absent for methods without one.

use serde::Serialize;

use super::{agg, Ms, RunAnalysis};
use vrf_trainer::eval::EvalReport;

/// The reference-set sizes of the curve.
pub const KS: [usize; 5] = [0, 1, 3, 5, 9];

/// One method's few-shot curve on one α (mean ± std over seeds).
#[derive(Clone, Debug, Serialize)]
pub struct FewShotRow {
    /// Method name.
    pub method: String,
    /// Dirichlet α of the benchmark.
    pub alpha: f64,
    /// (k, unseen accuracy with k reference pairs) for each k of [`KS`] (NaN where users have
    /// fewer reference pairs).
    pub points: Vec<(usize, Ms)>,
    /// Unseen accuracy with every reference pair.
    pub all: Ms,
}

/// A run's unseen accuracy with k reference pairs per user (NaN where it has no such point);
/// BT, which ignores reference pairs, has its unseen accuracy at any k.
pub fn accuracy_at(r: &EvalReport, k: usize) -> f64 {
    if r.method == "bt" && r.few_shot.is_empty() {
        return r.unseen_accuracy;
    }
    r.few_shot
        .iter()
        .find(|(kk, _)| *kk == k)
        .map_or(f64::NAN, |(_, a)| *a)
}

/// The rows of one α from its runs (grouped by method).
pub fn rows(alpha: f64, runs: &[Vec<RunAnalysis>]) -> Vec<FewShotRow> {
    runs.iter()
        .filter_map(|rs| {
            let first = rs.first()?;
            let points = KS
                .iter()
                .map(|&k| {
                    let v: Vec<f64> = rs.iter().map(|r| accuracy_at(&r.report, k)).collect();
                    (k, agg::ms(&v))
                })
                .collect();
            let all: Vec<f64> = rs.iter().map(|r| r.report.unseen_accuracy).collect();
            Some(FewShotRow {
                method: first.method.clone(),
                alpha,
                points,
                all: agg::ms(&all),
            })
        })
        .collect()
}
