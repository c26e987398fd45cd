//! Experiments over several runs: methods × seeds (mean ± std, docs/METHOD.md §5) and the ablation suite
//! (the paper's five ablations and the collapse remedies, docs/METHOD.md §3 and §3b), as tables.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;

use crate::compare::fewshot::{accuracy_at, KS};
use crate::reference::{self, Headroom, ReferenceReport};
use vrf_trainer::checkpoint::write_json;
use vrf_trainer::config::{Objective, Pooling, Prior, RunConfig, Schedule, StageOneUsers};
use vrf_trainer::error::Result;
use vrf_trainer::eval::{format_report, EvalReport};
use vrf_trainer::run::{fit_run, FitOptions};
use vrf_trainer::train::FitOutcome;

/// One row of an experiment: a named configuration fitted with several seeds.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Row label (method or variant name).
    pub name: String,
    /// One report per seed.
    pub runs: Vec<EvalReport>,
    /// Training wall-clock seconds per run (without data preparation and evaluation).
    pub seconds: Vec<f64>,
}

/// Mean and sample standard deviation (0 for one value) of finite values.
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    if v.len() < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    (m, var.sqrt())
}

impl Row {
    fn stat(&self, f: impl Fn(&EvalReport) -> Option<f64>) -> (f64, f64) {
        mean_std(
            &self
                .runs
                .iter()
                .map(|r| f(r).unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        )
    }

    /// Mean over seeds of overall accuracy.
    pub fn overall(&self) -> f64 {
        self.stat(|r| Some(r.overall_accuracy)).0
    }
}

/// `mean ± std` scaled by `scale` with `digits` decimals; `–` for NaN, no ± for one seed.
pub fn fmt_ms(x: (f64, f64), scale: f64, digits: usize) -> String {
    if x.0.is_nan() {
        return "–".into();
    }
    if x.1 > 0.0 {
        format!("{:.*} ± {:.*}", digits, scale * x.0, digits, scale * x.1)
    } else {
        format!("{:.*}", digits, scale * x.0)
    }
}

/// [`fmt_ms`] with two decimals, the mean signed (`+`) when `signed`.
fn pm(x: (f64, f64), scale: f64, signed: bool) -> String {
    let s = fmt_ms(x, scale, 2);
    if signed && !x.0.is_nan() && !s.starts_with('-') {
        format!("+{s}")
    } else {
        s
    }
}

/// A markdown table of rows: accuracy (%) mean ± std over seeds and the collapse diagnostics.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| run | seeds | seen | unseen | overall | gain seen | gain unseen | top bases | w entropy | φ corr | unseen k=0/1/3/5/9 | train s/run |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let c = |f: fn(&vrf_trainer::eval::Collapse) -> f64| r.stat(|x| x.collapse.as_ref().map(f));
        let fs: Vec<String> = [0usize, 1, 3, 5, 9]
            .iter()
            .map(|k| {
                let v = r
                    .stat(|x| x.few_shot.iter().find(|(kk, _)| kk == k).map(|(_, a)| *a))
                    .0;
                if v.is_nan() {
                    "–".into()
                } else {
                    format!("{:.1}", 100.0 * v)
                }
            })
            .collect();
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
            r.name,
            r.runs.len(),
            pm(r.stat(|x| Some(x.seen_accuracy)), 100.0, false),
            pm(r.stat(|x| Some(x.unseen_accuracy)), 100.0, false),
            pm(r.stat(|x| Some(x.overall_accuracy)), 100.0, false),
            pm(c(|c| c.seen_gain), 100.0, true),
            pm(c(|c| c.unseen_gain), 100.0, true),
            pm(c(|c| c.distinct_top_bases as f64), 1.0, false),
            pm(c(|c| c.weight_entropy), 1.0, false),
            pm(c(|c| c.basis_reward_correlation), 1.0, false),
            fs.join(" / "),
            mean_std(&r.seconds).0,
        );
    }
    s
}

/// A markdown table of the rows' calibration and uncertainty on unseen users (mean ± std over
/// seeds): ECE (15 equal-mass bins) and log-loss of `P(y_c ≻ y_r)`, and Spearman ρ between a
/// user's σ² and error rate at full reference sets and at k drawn from 1…|R| per user, and
/// between the error the model's own (tempered) probabilities predict and the error, at mixed k,
/// next to what the number of answers alone predicts (ρ(−k, error)).
pub fn calibration_table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| run | ECE | log-loss | ECE, temperature from seen users | T | ρ(σ², error) full | ρ(σ², error) mixed k | ρ(predicted error, error) mixed k | ρ(−k, error) mixed k | accuracy mixed k | ECE mixed k |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let cal = |f: fn(&vrf_trainer::metrics::Calibration) -> f64| {
            r.stat(|x| x.calibration.as_ref().map(f))
        };
        let unc = |f: fn(&vrf_trainer::eval::UncertaintyReport) -> Option<f64>| {
            r.stat(|x| x.uncertainty.as_ref().and_then(f))
        };
        let pm3 = |x| fmt_ms(x, 1.0, 3);
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            pm3(cal(|c| f64::from(c.ece))),
            pm3(cal(|c| f64::from(c.log_loss))),
            pm3(unc(|u| u
                .tempered_calibration
                .as_ref()
                .map(|c| f64::from(c.ece)))),
            pm3(unc(|u| Some(f64::from(u.temperature)))),
            pm3(unc(|u| u.spearman_full.map(f64::from))),
            pm3(unc(|u| u.spearman_mixed_k.map(f64::from))),
            pm3(unc(|u| u.predicted_error_spearman_mixed_k.map(f64::from))),
            pm3(unc(|u| u.answers_spearman_mixed_k.map(f64::from))),
            pm(unc(|u| Some(f64::from(u.mixed_k_accuracy))), 100.0, false),
            pm3(unc(|u| u
                .mixed_k_calibration
                .as_ref()
                .map(|c| f64::from(c.ece)))),
        );
    }
    s
}

/// How to run a set of configurations.
pub struct Plan {
    /// Output directory; each (row, seed) gets `OUT/NAME[-seedS]`.
    pub out: PathBuf,
    /// Data file.
    pub data: PathBuf,
    /// Seeds (training seeds; the data is fixed).
    pub seeds: Vec<u64>,
    /// Continue interrupted runs and skip finished ones.
    pub resume: bool,
    /// Progress bars and per-run reports.
    pub verbose: bool,
    /// `(i, n)`: fit only every n-th (variant, seed) job starting at i, so n processes can share
    /// the work; a final run with `resume` then collects every result into the table.
    pub shard: Option<(usize, usize)>,
    /// Fits run at once, each on its configuration's `train.threads` (1: one after the other;
    /// [`crate::parallel::default_jobs`] fills the machine's cores).
    pub jobs: usize,
}

/// A named configuration: `id` names its run directories, `label` its table row.
#[derive(Clone, Debug)]
pub struct Variant {
    /// Directory-safe identifier.
    pub id: String,
    /// Row label.
    pub label: String,
    /// The configuration (its seed is replaced by each of the plan's seeds).
    pub cfg: RunConfig,
}

impl Variant {
    /// A variant whose label is its id.
    pub fn new(id: &str, cfg: RunConfig) -> Self {
        Self {
            id: id.into(),
            label: id.into(),
            cfg,
        }
    }
}

/// Fits every variant for every seed into `OUT/ID-seedS` and returns the rows; with `resume`,
/// finished runs are reused, so parallel invocations over disjoint seeds can be combined. A run
/// stopped by `train.stop_after_steps` ends the plan there. Up to `plan.jobs` fits run at once,
/// each on its own thread; every fit seeds its own generators, so the results are the same as
/// one after the other, and so is the output: with several at once the first pending fit shows
/// its progress and every run's report follows in the plan's order when all are done.
pub fn run_rows(plan: &Plan, variants: &[Variant], dev: &Device) -> Result<FitOutcome<Vec<Row>>> {
    struct Job {
        row: usize,
        seed: u64,
        dir: PathBuf,
        cfg: RunConfig,
    }
    let mut jobs = Vec::new();
    let mut job = 0usize;
    for (row, v) in variants.iter().enumerate() {
        for &seed in &plan.seeds {
            job += 1;
            if let Some((i, n)) = plan.shard {
                if (job - 1) % n != i {
                    continue;
                }
            }
            let mut cfg = v.cfg.clone();
            cfg.train.seed = seed;
            let dir = plan.out.join(format!("{}-seed{seed}", v.id));
            jobs.push(Job {
                row,
                seed,
                dir,
                cfg,
            });
        }
    }
    let mut results: Vec<Option<(EvalReport, f64)>> =
        jobs.iter().map(|j| finished(&j.dir, plan.resume)).collect();
    let pending: Vec<usize> = (0..jobs.len()).filter(|&i| results[i].is_none()).collect();
    let workers = plan.jobs.clamp(1, pending.len().max(1));
    let label = |j: &Job| &variants[j.row].label;
    let header = |j: &Job| format!("== {} (seed {}) → {}", label(j), j.seed, j.dir.display());
    if plan.verbose && workers > 1 {
        eprintln!(
            "fitting {} runs, {workers} at a time: the first one's progress below, every report when all are done",
            pending.len()
        );
    }
    let outcomes = crate::parallel::map_ordered(
        workers,
        &pending,
        |&i| {
            let j = &jobs[i];
            // One progress display at a time: interleaved bars from several fits are unreadable.
            let progress = plan.verbose && (workers == 1 || i == pending[0]);
            if progress {
                eprintln!("{}", header(j));
            }
            let r = fit_run(
                &j.dir,
                &j.cfg,
                &plan.data,
                dev,
                &FitOptions {
                    resume: plan.resume,
                    progress,
                    external: Some(&crate::Baselines),
                },
            )?;
            if let FitOutcome::Finished(report) = &r {
                if plan.verbose && workers == 1 {
                    eprint!("{}", format_report(report));
                }
            }
            Ok(r)
        },
        |r: &Result<FitOutcome<EvalReport>>| matches!(r, Ok(FitOutcome::Finished(_))),
    );
    // In the plan's order: the first failure or stop is what a sequential loop would have met.
    for (&i, outcome) in pending.iter().zip(outcomes) {
        let Some(outcome) = outcome else { break };
        match outcome? {
            FitOutcome::Finished(report) => {
                if plan.verbose && workers > 1 {
                    if i != pending[0] {
                        eprintln!("{}", header(&jobs[i]));
                    }
                    eprint!("{}", format_report(&report));
                }
                results[i] = Some((report, train_seconds(&jobs[i].dir)));
            }
            FitOutcome::Stopped(stop) => return Ok(FitOutcome::Stopped(stop)),
        }
    }
    let mut rows: Vec<Row> = variants
        .iter()
        .map(|v| Row {
            name: v.label.clone(),
            runs: vec![],
            seconds: vec![],
        })
        .collect();
    for (j, r) in jobs.iter().zip(results) {
        // Every pending job has a result here: a job not started follows a failure or stop,
        // which returned above.
        let Some((report, seconds)) = r else { continue };
        rows[j.row].seconds.push(seconds);
        rows[j.row].runs.push(report);
    }
    Ok(FitOutcome::Finished(rows))
}

/// Training wall-clock seconds of a run: the last `elapsed_s` in its `metrics.jsonl`.
fn train_seconds(dir: &Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
    text.lines()
        .next_back()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v.get("elapsed_s").and_then(|x| x.as_f64()))
        .unwrap_or(f64::NAN)
}

/// The report and fit time of a finished run when resuming (training done, `eval.json` there).
fn finished(dir: &Path, resume: bool) -> Option<(EvalReport, f64)> {
    if !resume {
        return None;
    }
    let state = std::fs::read_to_string(dir.join("checkpoint").join("state.json")).ok()?;
    if !state.contains("\"done\"") {
        return None;
    }
    let report = vrf_trainer::checkpoint::read_json(&dir.join("eval.json")).ok()?;
    Some((report, train_seconds(dir)))
}

/// What `save` writes as `NAME.json`: the rows, and on the embedded benchmark the reference
/// rankers and each row's captured headroom.
#[derive(Serialize)]
struct Summary<'a> {
    rows: &'a [Row],
    reference: Option<&'a ReferenceReport>,
    headroom: Vec<(String, RowHeadroom)>,
    /// Each row's unseen headroom per k of the few-shot curve against the few-shot ceiling.
    headroom_per_k: Vec<(String, PerK)>,
}

/// A row's headroom over seeds (mean, std): seen and unseen.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RowHeadroom {
    /// Seen users: mean and sample std over seeds.
    pub seen: (f64, f64),
    /// Unseen users: mean and sample std over seeds.
    pub unseen: (f64, f64),
}

/// The headroom each run of `row` captures, summarised over seeds.
pub fn row_headroom(row: &Row, r: &ReferenceReport) -> RowHeadroom {
    let h: Vec<Headroom> = row
        .runs
        .iter()
        .map(|x| r.headroom(x.seen_accuracy, x.unseen_accuracy))
        .collect();
    let ms = |f: fn(&Headroom) -> Option<f64>| {
        mean_std(
            &h.iter()
                .map(|x| f(x).unwrap_or(f64::NAN))
                .collect::<Vec<_>>(),
        )
    };
    RowHeadroom {
        seen: ms(|x| x.seen),
        unseen: ms(|x| x.unseen),
    }
}

/// `(k, (mean, std))` over seeds for each k of [`KS`].
pub type PerK = Vec<(usize, (f64, f64))>;

/// The unseen headroom each run of `row` captures at each k of [`KS`] (few-shot accuracy at k
/// against the few-shot ceiling at k), mean and sample std over seeds; NaN where undefined.
pub fn row_headroom_per_k(row: &Row, r: &ReferenceReport) -> PerK {
    KS.iter()
        .map(|&k| {
            let h: Vec<f64> = row
                .runs
                .iter()
                .map(|x| r.headroom_at(k, accuracy_at(x, k)).unwrap_or(f64::NAN))
                .collect();
            (k, mean_std(&h))
        })
        .collect()
}

/// The reference rankers and headroom as markdown, or a note why there are none.
fn reference_section(
    headroom: &[(String, RowHeadroom)],
    per_k: &[(String, PerK)],
    reference: Option<&ReferenceReport>,
) -> String {
    let Some(r) = reference else {
        return "\nReference rankers: skipped (the data has no `*.synth_meta.json` side-file, so \
                its true scorers are unknown).\n"
            .into();
    };
    let mut s = format!(
        "\nReference rankers (linear logistic on pair differences; strengths by CV on training \
         rows only; {} seen / {} unseen eval pairs):\n\n{}",
        r.seen_pairs,
        r.unseen_pairs,
        r.table()
    );
    s += &format!(
        "\nHeadroom captured = (method − {}) / ({} − {}):\n\n| run | headroom seen | headroom unseen |\n|---|---|---|\n",
        reference::TRUE_GLOBAL,
        reference::TRUE_MAP_REF,
        reference::TRUE_GLOBAL
    );
    for (name, h) in headroom {
        s += &format!(
            "| {} | {} | {} |\n",
            name,
            pm(h.seen, 1.0, false),
            pm(h.unseen, 1.0, false)
        );
    }
    s += &format!(
        "\nFew-shot ceiling: per-user MAP on the true scorers (prior at {g}) on the same draws of k \
         reference pairs per unseen user as the few-shot curve, the mean over its draws (k = 0: {g}):\n\n{}",
        r.ceiling_table(),
        g = reference::TRUE_GLOBAL,
    );
    s += &format!(
        "\nUnseen headroom captured per k = (method at k − {g}) / (ceiling at k − {g}); – where \
         the ceiling is within 1e-9 of {g} (always at k = 0) or the run has no such point (BT, \
         which reads no reference pairs, is its unseen accuracy at every k):\n\n| run |",
        g = reference::TRUE_GLOBAL,
    );
    for k in KS {
        s += &format!(" k={k} |");
    }
    s += &format!("\n|---|{}\n", "---|".repeat(KS.len()));
    for (name, points) in per_k {
        s += &format!("| {name} |");
        for (_, h) in points {
            s += &format!(" {} |", pm(*h, 1.0, false));
        }
        s += "\n";
    }
    s
}

/// Writes `rows` as JSON (`NAME.json`) and markdown (`NAME.md`) into the plan's directory, with
/// the reference rankers and headroom when the data is the generated benchmark.
pub fn save(plan: &Plan, name: &str, rows: &[Row]) -> Result<String> {
    let reference = reference::for_data(&plan.data)?;
    let headroom: Vec<(String, RowHeadroom)> = reference
        .as_ref()
        .map(|r| {
            rows.iter()
                .map(|row| (row.name.clone(), row_headroom(row, r)))
                .collect()
        })
        .unwrap_or_default();
    let headroom_per_k: Vec<(String, PerK)> = reference
        .as_ref()
        .map(|r| {
            rows.iter()
                .map(|row| (row.name.clone(), row_headroom_per_k(row, r)))
                .collect()
        })
        .unwrap_or_default();
    let t = table(rows)
        + "\nCalibration and uncertainty on unseen users:\n\n"
        + &calibration_table(rows)
        + &reference_section(&headroom, &headroom_per_k, reference.as_ref());
    let summary = Summary {
        rows,
        reference: reference.as_ref(),
        headroom,
        headroom_per_k,
    };
    write_json(&plan.out.join(format!("{name}.json")), &summary)?;
    vrf_trainer::checkpoint::write_atomic(&plan.out.join(format!("{name}.md")), t.as_bytes())?;
    Ok(t)
}

/// Copies the fields that tell the staged defaults from docs/METHOD.md §2–3 as written (schedule, latent
/// learning-rate multiplier, λ_φ, Δφ encoder input) from `from` into `c`.
fn take_schedule(c: &mut RunConfig, from: &RunConfig) {
    c.train.schedule = from.train.schedule;
    c.train.s1_users = from.train.s1_users;
    c.train.s1_head_epochs = from.train.s1_head_epochs;
    c.train.latent_lr_mult = from.train.latent_lr_mult;
    c.loss.lambda_phi = from.loss.lambda_phi;
    c.model.enc_phi = from.model.enc_phi;
}

/// The ablation suite around `base` (a VRF config): the base, the paper's ablations (a)–(e),
/// and, for a staged base, the end-to-end fit and each remedy removed.
pub fn ablations(base: &RunConfig) -> Vec<Variant> {
    let mut v = vec![Variant {
        id: "vrf".into(),
        label: "VRF (defaults)".into(),
        cfg: base.clone(),
    }];
    let mut add = |id: &str, label: &str, f: &dyn Fn(&mut RunConfig)| {
        let mut c = base.clone();
        f(&mut c);
        if &c != base {
            v.push(Variant {
                id: id.into(),
                label: label.into(),
                cfg: c,
            });
        }
    };
    add("a-plain-bt", "(a) L_VA → plain BT", &|c| {
        c.loss.objective = Objective::Bt
    });
    add("b-no-div", "(b) no L_div", &|c| c.loss.lambda_div = 0.0);
    add("c-no-kl", "(c) no KL", &|c| c.loss.beta = 0.0);
    add("d-std-prior", "(d) MoG prior → N(0, I)", &|c| {
        c.loss.prior = Prior::StdNormal
    });
    add("e-mean-pool", "(e) PoG → mean pooling", &|c| {
        // The population prior is a factor of the product; mean pooling has none.
        c.model.pooling = Pooling::Mean;
        c.model.prior = false;
    });
    if base.train.schedule == Schedule::Staged {
        add(
            "spec-literal",
            "§2–3 as written: end to end, no remedies",
            &|c| take_schedule(c, &RunConfig::spec_literal()),
        );
        add("no-lambda-phi", "remedy off: no λ_φ in stage 1", &|c| {
            c.loss.lambda_phi = 0.0
        });
        add(
            "latent-lr-x1",
            "remedy off: free-logit learning rate ×1",
            &|c| c.train.latent_lr_mult = 1.0,
        );
        add(
            "s1-softmax",
            "stage 1 with softmax user weights instead of user vectors",
            &|c| c.train.s1_users = StageOneUsers::Softmax,
        );
        add("no-s1h", "no head-only stage after stage 1", &|c| {
            c.train.s1_head_epochs = 0
        });
        add("k8", "K = 8 (the paper's) instead of 12", &|c| {
            c.model.k = 8
        });
        add("no-enc-phi", "remedy off: no Δφ encoder input", &|c| {
            c.model.enc_phi = false
        });
        add("plus-s3", "remedy on: + 1 epoch of stage 3", &|c| {
            c.train.s3_epochs = c.train.s3_epochs.max(1)
        });
    } else {
        add("staged", "remedy: staged fit (shipped settings)", &|c| {
            take_schedule(c, &RunConfig::default())
        });
        add("lambda-phi", "remedy: λ_φ = 1", &|c| {
            c.loss.lambda_phi = 1.0
        });
        add("kl-warmup", "remedy: KL warm-up 0.3", &|c| {
            c.loss.kl_warmup = 0.3
        });
        add("delta-auto", "remedy: δ from basis spread", &|c| {
            c.loss.delta_auto = true
        });
        add("balance", "remedy: balancing + sharpening", &|c| {
            c.loss.lambda_bal = 1.0;
            c.loss.lambda_ent = 0.1;
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (s - 1.0).abs() < 1e-12);
        assert_eq!(mean_std(&[4.0]), (4.0, 0.0));
        assert_eq!(mean_std(&[f64::NAN, 2.0]), (2.0, 0.0));
        assert!(mean_std(&[]).0.is_nan());
    }

    #[test]
    fn summary_has_reference_rankers_and_headroom_only_on_the_benchmark() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.jsonl");
        let synth = vrf_data::synth::generate(&vrf_data::synth::SynthConfig {
            seen_users: 4,
            unseen_users: 3,
            train_prompts: 60,
            eval_prompts: 50,
            ..Default::default()
        })
        .unwrap();
        synth.write(&data).unwrap();
        let run = EvalReport {
            method: "vrf".into(),
            seed: 0,
            seen_accuracy: 0.95,
            unseen_accuracy: 0.9,
            overall_accuracy: 0.925,
            seen_pairs: 0,
            unseen_pairs: 0,
            seen_users: 0,
            unseen_users: 0,
            collapse: None,
            few_shot: vec![(0, 0.7), (1, 0.8), (3, 0.85), (5, 0.88), (9, 0.9)],
            truncated_texts: 0,
            cost: Default::default(),
            calibration: None,
            uncertainty: None,
        };
        let rows = vec![Row {
            name: "VRF".into(),
            runs: vec![run],
            seconds: vec![1.0],
        }];
        let mut plan = Plan {
            out: dir.path().join("out"),
            data: data.clone(),
            seeds: vec![0],
            resume: false,
            verbose: false,
            shard: None,
            jobs: 1,
        };
        let t = save(&plan, "summary", &rows).unwrap();
        assert!(
            t.contains("Reference rankers (") && t.contains("Headroom"),
            "{t}"
        );
        let json: serde_json::Value =
            vrf_trainer::checkpoint::read_json(&plan.out.join("summary.json")).unwrap();
        assert!(json["reference"]["rankers"].as_array().unwrap().len() >= 6);
        assert_eq!(json["headroom"][0][0], "VRF");
        // Headroom per k: the run's few-shot accuracy at k against the ceiling at k.
        let r = reference::for_data(&data).unwrap().unwrap();
        let per_k = &json["headroom_per_k"][0];
        assert_eq!(per_k[0], "VRF");
        let points = per_k[1].as_array().unwrap();
        assert_eq!(points.len(), KS.len());
        for (p, (k, acc)) in points.iter().zip(&rows[0].runs[0].few_shot) {
            assert_eq!(p[0].as_u64(), Some(*k as u64));
            let want = r.headroom_at(*k, *acc);
            assert_eq!(p[1][0].as_f64(), want, "k = {k}");
        }
        // k = 0: the ceiling is the global ranker, so no headroom.
        assert!(points[0][1][0].is_null());
        assert!(points.iter().any(|p| p[1][0].is_f64()), "{t}");
        assert!(
            t.contains("Few-shot ceiling") && t.contains("headroom captured per k"),
            "{t}"
        );
        // Without the side-file (user data) the section is a note.
        std::fs::remove_file(vrf_data::synth::meta_path(&data)).unwrap();
        plan.out = dir.path().join("out2");
        let t = save(&plan, "summary", &rows).unwrap();
        assert!(t.contains("skipped"), "{t}");
    }

    #[test]
    fn ablation_suites_have_unique_safe_ids_and_real_changes() {
        for base in [RunConfig::default(), RunConfig::spec_literal()] {
            let v = ablations(&base);
            let ids: std::collections::HashSet<&str> = v.iter().map(|x| x.id.as_str()).collect();
            assert_eq!(ids.len(), v.len(), "ids must be unique");
            for x in &v {
                assert!(
                    x.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                    "{}",
                    x.id
                );
                x.cfg.validate().unwrap();
            }
            assert_eq!(v[0].cfg, base);
            assert!(
                v[1..].iter().all(|x| x.cfg != base),
                "every variant must change something"
            );
            // The paper's five ablations are always there.
            for id in [
                "a-plain-bt",
                "b-no-div",
                "c-no-kl",
                "d-std-prior",
                "e-mean-pool",
            ] {
                assert!(ids.contains(id), "{id}");
            }
        }
    }
}
