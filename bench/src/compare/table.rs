//! Table 1 (seen / unseen / overall accuracy per α, mean ± std over seeds, with the reference
//! rankers), the costs (the paper's Fig. 3d: adaptation time per unseen user, and training
//! time), and the markdown of every table of a comparison.

use serde::Serialize;

use vrf_trainer::eval::UncertaintyReport;
use vrf_trainer::metrics::Calibration;

use super::{agg, CompareReport, Ms, RunAnalysis};

/// One method's accuracy on one α (fractions; mean ± std over seeds).
#[derive(Clone, Debug, Serialize)]
pub struct AccuracyRow {
    /// Method name.
    pub method: String,
    /// Dirichlet α of the benchmark.
    pub alpha: f64,
    /// Seeds averaged.
    pub seeds: usize,
    /// Seen users.
    pub seen: Ms,
    /// Unseen users.
    pub unseen: Ms,
    /// Macro-average of the two.
    pub overall: Ms,
    /// Expected calibration error of unseen users' `P(y_c ≻ y_r)` (15 equal-mass bins).
    pub ece: Ms,
    /// Log-loss of those probabilities, nats.
    pub log_loss: Ms,
    /// VRF: Spearman ρ(σ², error) over unseen users with k drawn from 1…|R|.
    pub rho_mixed_k: Ms,
    /// VRF: ECE with the temperature fitted on seen users (what its exported model serves).
    pub tempered_ece: Ms,
    /// VRF: Spearman ρ(predicted error, error) in the same mixed-k draw.
    pub rho_predicted_error: Ms,
    /// VRF: Spearman ρ(−k, error) in the same draw: what the number of answers alone predicts.
    pub rho_answers: Ms,
    /// Reliability diagram of the first seed: (mean predicted probability, observed frequency)
    /// per equal-mass bin.
    pub reliability: Vec<(f64, f64)>,
}

/// One method's costs on one α (mean ± std over seeds).
#[derive(Clone, Debug, Serialize)]
pub struct CostRow {
    /// Method name.
    pub method: String,
    /// Dirichlet α of the benchmark.
    pub alpha: f64,
    /// Training wall-clock seconds.
    pub train_seconds: Ms,
    /// Seconds to infer all unseen users, divided by their number.
    pub adapt_seconds_per_user: Ms,
}

/// Mean ± std over seeds of a calibration figure (NaN where a run has none).
fn cal(rs: &[RunAnalysis], g: fn(&Calibration) -> f32) -> Ms {
    let v: Vec<f64> = rs
        .iter()
        .map(|r| {
            r.report
                .calibration
                .as_ref()
                .map_or(f64::NAN, |c| f64::from(g(c)))
        })
        .collect();
    agg::ms(&v)
}

/// Mean ± std over seeds of an uncertainty figure (VRF only; NaN elsewhere).
fn unc(rs: &[RunAnalysis], g: fn(&UncertaintyReport) -> Option<f32>) -> Ms {
    let v: Vec<f64> = rs
        .iter()
        .map(|r| {
            r.report
                .uncertainty
                .as_ref()
                .and_then(g)
                .map_or(f64::NAN, f64::from)
        })
        .collect();
    agg::ms(&v)
}

/// Table 1's rows of one α.
pub fn accuracy_rows(alpha: f64, runs: &[Vec<RunAnalysis>]) -> Vec<AccuracyRow> {
    runs.iter()
        .filter_map(|rs| {
            let first = rs.first()?;
            let f = |g: fn(&RunAnalysis) -> f64| agg::ms(&rs.iter().map(g).collect::<Vec<_>>());
            Some(AccuracyRow {
                method: first.method.clone(),
                alpha,
                seeds: rs.len(),
                seen: f(|r| r.report.seen_accuracy),
                unseen: f(|r| r.report.unseen_accuracy),
                overall: f(|r| r.report.overall_accuracy),
                ece: cal(rs, |c| c.ece),
                log_loss: cal(rs, |c| c.log_loss),
                rho_mixed_k: unc(rs, |u| u.spearman_mixed_k),
                tempered_ece: unc(rs, |u| u.tempered_calibration.as_ref().map(|c| c.ece)),
                rho_predicted_error: unc(rs, |u| u.predicted_error_spearman_mixed_k),
                rho_answers: unc(rs, |u| u.answers_spearman_mixed_k),
                reliability: first
                    .report
                    .calibration
                    .as_ref()
                    .map(|c| {
                        c.reliability
                            .iter()
                            .map(|&(p, o, _)| (f64::from(p), f64::from(o)))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The cost rows of one α.
pub fn cost_rows(alpha: f64, runs: &[Vec<RunAnalysis>]) -> Vec<CostRow> {
    runs.iter()
        .filter_map(|rs| {
            let first = rs.first()?;
            let f = |g: fn(&RunAnalysis) -> f64| agg::ms(&rs.iter().map(g).collect::<Vec<_>>());
            Some(CostRow {
                method: first.method.clone(),
                alpha,
                train_seconds: f(|r| r.report.cost.train_seconds.unwrap_or(r.train_seconds)),
                adapt_seconds_per_user: f(|r| {
                    r.report.cost.adapt_seconds_per_user.unwrap_or(f64::NAN)
                }),
            })
        })
        .collect()
}

pub use crate::experiment::fmt_ms;

fn pct(x: Option<f64>) -> String {
    match x {
        Some(v) if !v.is_nan() => format!("{:.2}", 100.0 * v),
        _ => "–".into(),
    }
}

/// Display name of a method id.
pub fn label(method: &str) -> String {
    match method {
        "vrf" => "VRF".into(),
        "bt" => "BT".into(),
        "lore" => "LoRe".into(),
        "pref" => "PReF".into(),
        "pal" => "PAL-B".into(),
        "vpl" => "VPL".into(),
        other => other.into(),
    }
}

/// Every table of a comparison as markdown (`compare.md`).
pub fn markdown(r: &CompareReport) -> String {
    let alphas = &r.alphas;
    let seeds: Vec<String> = r.seeds.iter().map(|s| s.to_string()).collect();
    let mut s = format!(
        "# Method comparison\n\nMethods {}; α ∈ {{{}}}; seeds {{{}}}. Accuracies in %, mean ± std over seeds.\n\n",
        r.methods.iter().map(|m| label(m)).collect::<Vec<_>>().join(", "),
        alphas.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
        seeds.join(", ")
    );

    // Table 1.
    s += "## Table 1: pairwise accuracy\n\n| method |";
    for a in alphas {
        s += &format!(" α={a} seen | α={a} unseen | α={a} overall |");
    }
    s += "\n|---|";
    s += &"---|---|---|".repeat(alphas.len());
    s += "\n";
    for m in &r.methods {
        s += &format!("| {} |", label(m));
        for a in alphas {
            match r.accuracy.iter().find(|x| &x.method == m && x.alpha == *a) {
                Some(x) => {
                    for v in [x.seen, x.unseen, x.overall] {
                        s += &format!(" {} |", fmt_ms(v, 100.0, 2));
                    }
                }
                None => s += " – | – | – |",
            }
        }
        s += "\n";
    }
    // Reference rankers (deterministic: one value per α).
    let mut ids: Vec<(String, String)> = Vec::new();
    for (_, rep) in &r.reference {
        for k in &rep.rankers {
            if !ids.iter().any(|(i, _)| i == &k.id) {
                ids.push((k.id.clone(), k.label.clone()));
            }
        }
    }
    for (id, _) in &ids {
        s += &format!("| *ref: {id}* |");
        for a in alphas {
            match r
                .reference
                .iter()
                .find(|(x, _)| x == a)
                .and_then(|(_, rep)| rep.get(id))
            {
                Some(k) => {
                    s += &format!(
                        " {} | {} | {} |",
                        pct(k.seen),
                        pct(k.unseen),
                        pct(k.overall)
                    )
                }
                None => s += " – | – | – |",
            }
        }
        s += "\n";
    }
    if !ids.is_empty() {
        s += "\nReference rankers (fitted on training rows only; see `vrf-bench reference`): ";
        s += &ids
            .iter()
            .map(|(i, l)| format!("`{i}`: {l}"))
            .collect::<Vec<_>>()
            .join("; ");
        s += ".\n";
    }

    // Calibration.
    s += "\n## Calibration of unseen users' preference probabilities\n\nExpected calibration error (15 equal-mass bins, each pair counted in both orientations) and log-loss (nats) of P(y_c ≻ y_r) on unseen users' eval pairs (VRF: Eq. 8's variance-attenuated probability; the others: σ of the reward margin), and, for VRF, the ECE with the temperature fitted on seen users (the probability its exported model serves), and Spearman ρ with a user's error rate, k drawn uniformly from 1…|R| per user, of the user's σ², of the error the model's own probabilities predict (mean min(P, 1 − P) over the user's pairs) and, as the reference σ² has to beat, of −k (the number of answers alone). Mean ± std over seeds.\n\n| method | α | ECE | log-loss | ECE, T from seen users | ρ(σ², error), mixed k | ρ(predicted error, error), mixed k | ρ(−k, error), mixed k |\n|---|---|---|---|---|---|---|---|\n";
    for x in &r.accuracy {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            label(&x.method),
            x.alpha,
            fmt_ms(x.ece, 1.0, 3),
            fmt_ms(x.log_loss, 1.0, 3),
            fmt_ms(x.tempered_ece, 1.0, 3),
            fmt_ms(x.rho_mixed_k, 1.0, 2),
            fmt_ms(x.rho_predicted_error, 1.0, 2),
            fmt_ms(x.rho_answers, 1.0, 2)
        );
    }

    // Few-shot.
    s += "\n## Few-shot accuracy of unseen users (Fig. 3a)\n\nUnseen accuracy (%) with k random reference pairs per user (the mean over 5 draws, the same draws for every method), and with all of them; BT reads no reference pairs, so its row is its unseen accuracy at every k.\n\n| method | α |";
    for k in super::fewshot::KS {
        s += &format!(" k={k} |");
    }
    s += " all |\n|---|---|";
    s += &"---|".repeat(super::fewshot::KS.len() + 1);
    s += "\n";
    for x in &r.few_shot {
        s += &format!("| {} | {} |", label(&x.method), x.alpha);
        for (_, v) in &x.points {
            s += &format!(" {} |", fmt_ms(*v, 100.0, 1));
        }
        s += &format!(" {} |\n", fmt_ms(x.all, 100.0, 1));
    }

    // Headroom per k (benchmark data only).
    if !r.reference.is_empty() {
        s += &super::headroom::markdown(alphas, &r.reference, &r.headroom_per_k);
    }

    // Uncertainty.
    s += "\n## Uncertainty robustness (Fig. 3b)\n\n";
    if r.uncertainty.is_empty() {
        s += "Skipped: needs a VRF run.\n";
    } else {
        s += "Unseen users split into terciles by VRF's posterior uncertainty (mean σ², VRF run of the same seed); each method's accuracy (%) per tercile, and Spearman ρ between σ² and the method's per-user error rate (ρ > 0: σ² flags the users it gets wrong).\n\n| method | α | low σ² | mid σ² | high σ² | ρ(σ², error) |\n|---|---|---|---|---|---|\n";
        for x in &r.uncertainty {
            s += &format!("| {} | {} |", label(&x.method), x.alpha);
            for v in &x.terciles {
                s += &format!(" {} |", fmt_ms(*v, 100.0, 1));
            }
            s += &format!(" {} |\n", fmt_ms(x.spearman, 1.0, 3));
        }
        s += "\nAccuracy (%) by uncertainty decile (1 = most certain):\n\n| method | α |";
        for d in 1..=10 {
            s += &format!(" {d} |");
        }
        s += "\n|---|---|";
        s += &"---|".repeat(10);
        s += "\n";
        for x in &r.uncertainty {
            s += &format!("| {} | {} |", label(&x.method), x.alpha);
            for v in &x.deciles {
                s += &format!(" {} |", fmt_ms((v.0, 0.0), 100.0, 0));
            }
            s += "\n";
        }
    }

    // Costs.
    s += "\n## Cost (Fig. 3d)\n\nTraining seconds, and seconds to infer all unseen users' representations (backbone embedding excluded; batched over users, so amortised) divided by their number, in ms (BT has no per-user representation: –).\n\n| method | α | train s | adaptation ms / unseen user |\n|---|---|---|---|\n";
    for x in &r.cost {
        s += &format!(
            "| {} | {} | {} | {} |\n",
            label(&x.method),
            x.alpha,
            fmt_ms(x.train_seconds, 1.0, 1),
            fmt_ms(x.adapt_seconds_per_user, 1000.0, 3)
        );
    }

    // Best-of-N.
    s += "\n## Best-of-N alignment (Fig. 3c)\n\n";
    if r.best_of_n.is_empty() {
        s += "Skipped: the data has no true utilities.\n";
    } else {
        s += "For each user and eval prompt, each method picks the best of the prompt's candidates by its personalised reward; regret = the user's true utility of their true best − of the pick (true utility = true weights · the response's normalised scorer values), true best = how often the pick is a true best, win rate = against BT's pick on the same query (ties count half).\n\n| picker | α | queries | regret seen | regret unseen | regret all | true best % | win rate vs BT |\n|---|---|---|---|---|---|---|---|\n";
        for x in &r.best_of_n {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                label(&x.method),
                x.alpha,
                x.queries,
                fmt_ms(x.regret_seen, 1.0, 3),
                fmt_ms(x.regret_unseen, 1.0, 3),
                fmt_ms(x.regret, 1.0, 3),
                fmt_ms(x.best_rate, 100.0, 1),
                x.win_rate_vs_bt
                    .map_or("–".into(), |w| fmt_ms(w, 100.0, 1) + " %"),
            );
        }
    }

    // Figures.
    s += "\n## Figures\n\n";
    for f in &r.figures {
        if f.ends_with(".svg") {
            s += &format!("- [{f}]({f})\n");
        }
    }
    if !r.notes.is_empty() {
        s += "\n## Notes\n\n";
        for n in &r.notes {
            s += &format!("- {n}\n");
        }
    }
    s
}
