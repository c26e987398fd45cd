//! Headroom per k: each method's unseen few-shot accuracy at k against the few-shot ceiling at k
//! (per-user MAP on the true scorers on the same draws, [`crate::reference::ceiling`]):
//! (method at k − true global) / (ceiling at k − true global), per seed, then mean ± std.

use serde::Serialize;

use super::fewshot::{accuracy_at, KS};
use super::{agg, Ms, RunAnalysis};
use crate::reference::ReferenceReport;

/// One method's headroom per k on one α (mean ± std over seeds).
#[derive(Clone, Debug, Serialize)]
pub struct HeadroomRow {
    /// Method name.
    pub method: String,
    /// Dirichlet α of the benchmark.
    pub alpha: f64,
    /// (k, headroom captured at k) for each k of [`KS`]; NaN where undefined (the ceiling within
    /// 1e-9 of the global ranker, always at k = 0, or no few-shot point at k).
    pub points: Vec<(usize, Ms)>,
}

/// The rows of one α from its runs (grouped by method) and that α's reference rankers.
pub fn rows(
    alpha: f64,
    runs: &[Vec<RunAnalysis>],
    reference: &ReferenceReport,
) -> Vec<HeadroomRow> {
    runs.iter()
        .filter_map(|rs| {
            let first = rs.first()?;
            let points = KS
                .iter()
                .map(|&k| {
                    let h: Vec<f64> = rs
                        .iter()
                        .map(|r| {
                            reference
                                .headroom_at(k, accuracy_at(&r.report, k))
                                .unwrap_or(f64::NAN)
                        })
                        .collect();
                    (k, agg::ms(&h))
                })
                .collect();
            Some(HeadroomRow {
                method: first.method.clone(),
                alpha,
                points,
            })
        })
        .collect()
}

/// The markdown section: the ceiling's unseen accuracy per α and k, then each method's headroom.
pub fn markdown(
    alphas: &[f64],
    reference: &[(f64, ReferenceReport)],
    rows: &[HeadroomRow],
) -> String {
    let mut s = String::from(
        "\n## Headroom per k (unseen users)\n\nThe few-shot ceiling: each unseen user's MAP ranker on the true scorers (Gaussian prior at the global true ranker, precision chosen per k by cross-validation on seen users' training pairs cut to k) fitted on the same k reference pairs as every method's few-shot point; k = 0 is the global true ranker. Unseen accuracy (%):\n\n| ceiling | α |",
    );
    let head = |s: &mut String| {
        for k in KS {
            *s += &format!(" k={k} |");
        }
        *s += &format!("\n|---|---|{}\n", "---|".repeat(KS.len()));
    };
    head(&mut s);
    for a in alphas {
        let Some((_, r)) = reference.iter().find(|(x, _)| x == a) else {
            continue;
        };
        s += &format!("| *ref: ceiling* | {a} |");
        for k in KS {
            s += &format!(
                " {} |",
                r.ceiling_at(k)
                    .map_or("–".into(), |v| format!("{:.2}", 100.0 * v))
            );
        }
        s += "\n";
    }
    s += "\nHeadroom captured at k = (method at k − true global) / (ceiling at k − true global), per seed, mean ± std; – where the ceiling is within 1e-9 of the global ranker (always at k = 0) or the method has no point at k (BT reads no reference pairs: its unseen accuracy at every k).\n\n| method | α |";
    head(&mut s);
    for x in rows {
        s += &format!("| {} | {} |", super::table::label(&x.method), x.alpha);
        for (_, v) in &x.points {
            s += &format!(" {} |", super::table::fmt_ms(*v, 1.0, 2));
        }
        s += "\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::ceiling::CeilingPoint;
    use vrf_trainer::eval::EvalReport;

    fn run(method: &str, seed: u64, unseen: f64, few_shot: Vec<(usize, f64)>) -> RunAnalysis {
        RunAnalysis {
            method: method.into(),
            seed,
            report: EvalReport {
                method: method.into(),
                seed,
                seen_accuracy: 0.9,
                unseen_accuracy: unseen,
                overall_accuracy: f64::NAN,
                seen_pairs: 0,
                unseen_pairs: 0,
                seen_users: 0,
                unseen_users: 0,
                collapse: None,
                few_shot,
                truncated_texts: 0,
                cost: Default::default(),
                calibration: None,
                uncertainty: None,
            },
            train_seconds: 1.0,
            unseen: vec![],
            sigma2: None,
            picks: None,
            curve: vec![],
            space: None,
        }
    }

    fn reference() -> ReferenceReport {
        let ceiling = [(0, 0.8), (1, 0.85), (3, 0.8), (5, 0.9), (9, 1.0)]
            .into_iter()
            .map(|(k, a)| CeilingPoint {
                k,
                unseen: Some(a),
                selection: None,
            })
            .collect();
        ReferenceReport {
            seen_pairs: 0,
            unseen_pairs: 0,
            bow_features: 0,
            rankers: vec![],
            ceiling,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn headroom_per_k_per_seed_then_mean_and_std() {
        let curve = |x: f64| vec![(1, 0.8 + x), (3, 0.85), (5, 0.8 + 2.0 * x), (9, 0.9)];
        let runs = vec![
            vec![
                run("lore", 0, 0.9, curve(0.02)),
                run("lore", 1, 0.9, curve(0.04)),
            ],
            // BT reads no reference pairs: its unseen accuracy counts at every k.
            vec![run("bt", 0, 0.82, vec![])],
        ];
        let rows = rows(0.1, &runs, &reference());
        assert_eq!(rows.len(), 2);
        let at = |r: &HeadroomRow, k: usize| r.points.iter().find(|p| p.0 == k).unwrap().1;
        let lore = &rows[0];
        // k = 0 and k = 3: the ceiling equals the global ranker, so no headroom.
        assert!(at(lore, 0).0.is_nan() && at(lore, 3).0.is_nan());
        // k = 1: 0.02 / 0.05 and 0.04 / 0.05.
        let (m, s) = at(lore, 1);
        assert!(close(m, 0.6) && close(s, 0.08f64.sqrt()), "{m} {s}");
        // k = 5: 0.04 / 0.1 and 0.08 / 0.1; k = 9: 0.1 / 0.2 for both seeds.
        assert!(close(at(lore, 5).0, 0.6));
        assert!(close(at(lore, 9).0, 0.5) && close(at(lore, 9).1, 0.0));
        let bt = &rows[1];
        assert!(close(at(bt, 1).0, 0.4) && close(at(bt, 9).0, 0.1));

        let md = markdown(&[0.1], &[(0.1, reference())], &rows);
        assert!(
            md.contains("| *ref: ceiling* | 0.1 | 80.00 | 85.00 | 80.00 | 90.00 | 100.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| BT | 0.1 | – | 0.40 | – | 0.20 | 0.10 |"),
            "{md}"
        );
    }
}
