//! `vrf-bench compare`: every method side by side on the synthetic benchmark at several
//! Dirichlet concentrations α, over several seeds — the paper's Table 1 and Figs. 3–4 as one
//! command.
//!
//! For each α the benchmark is generated into `OUT/alpha-<α>/data.jsonl` (as `fit` does) and
//! every (method, seed) is fitted into `OUT/alpha-<α>/<method>-seed<S>` by
//! [`crate::experiment::run_rows`], so `--shard I/N` splits the fits over processes and
//! `--resume` reuses finished ones. The analyses then load each finished run with
//! [`crate::score::RunScorer`]:
//!
//! - [`table`]: Table 1 (seen / unseen / overall per α, mean ± std over seeds, with the
//!   reference rankers) and the costs (training time, adaptation time per unseen user);
//! - [`fewshot`]: the unseen users' few-shot curve, k ∈ {1, 3, 5, 9};
//! - [`headroom`]: the few-shot ceiling per k and each method's headroom captured at each k;
//! - [`uncertainty`]: unseen users binned by VRF's posterior uncertainty, every method's
//!   accuracy per bin and decile, and Spearman ρ between σ² and error;
//! - [`best_of_n`]: best-of-8 picks scored with the users' true utilities (regret, true-best
//!   rate, win rate over BT);
//! - [`figures`]: SVG and PNG figures.
//!
//! Everything is written to `OUT/compare.md`, `OUT/compare.json` and `OUT/figures/`.

pub mod best_of_n;
pub mod fewshot;
pub mod figures;
pub mod headroom;
pub mod table;
pub mod uncertainty;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;

use crate::experiment::{run_rows, Plan, Variant};
use crate::reference::{self, ReferenceReport};
use crate::score::{Query, RunScorer, UserAccuracy};
use best_of_n::{BestOfNRow, Picks};
use fewshot::FewShotRow;
use headroom::HeadroomRow;
use table::{AccuracyRow, CostRow};
use uncertainty::UncertaintyRow;
use vrf_data::synth::{generate, SynthConfig, SynthMeta, Synthetic};
use vrf_data::Dataset;
use vrf_trainer::checkpoint::{write_atomic, write_json};
use vrf_trainer::config::{BackboneSource, Method, RunConfig};
use vrf_trainer::error::{Result, TrainError};
use vrf_trainer::eval::EvalReport;
use vrf_trainer::train::FitOutcome;

/// Mean and sample standard deviation over seeds (NaN when no seed has the value).
pub type Ms = (f64, f64);

/// Why the comparison could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompareError {
    /// Nothing to compare.
    #[error("compare needs at least one {0}")]
    Empty(&'static str),
    /// An α that the generator cannot use.
    #[error("α must be a positive number, got {0}")]
    Alpha(f64),
    /// The same α twice (their run directories would be shared).
    #[error("α = {0} is listed twice")]
    DuplicateAlpha(f64),
    /// The data has no `*.synth_meta.json` side-file (true utilities unknown).
    #[error("{0}: no synth meta side-file beside the data; delete the data to regenerate it")]
    NoMeta(PathBuf),
    /// An eval prompt is not in the benchmark regenerated from the side-file's config.
    #[error("eval prompt {0:?} is not in the benchmark regenerated from its config; the data was made by another generator version — delete it to regenerate")]
    UnknownPrompt(String),
    /// A user has no true weights in the side-file.
    #[error("user {0} has no true weights in the synth meta side-file")]
    UnknownUser(String),
    /// Drawing or writing a figure failed.
    #[error("figure {path}: {message}")]
    Figure {
        /// The figure file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// What to compare and where.
#[derive(Clone, Debug)]
pub struct ComparePlan {
    /// Output directory.
    pub out: PathBuf,
    /// Methods (each a table row); BT is the best-of-N opponent, VRF gives the uncertainty.
    pub methods: Vec<Method>,
    /// Dirichlet concentrations of the benchmark.
    pub alphas: Vec<f64>,
    /// Training seeds.
    pub seeds: Vec<u64>,
    /// The run configuration (its method is replaced by each of `methods`).
    pub base: RunConfig,
    /// The benchmark's settings (its α is replaced by each of `alphas`).
    pub synth: SynthConfig,
    /// Fit on each benchmark's own feature table of this source instead of a backbone.
    pub feature_source: Option<crate::reference::feature_table::Source>,
    /// Reuse finished runs and continue interrupted ones.
    pub resume: bool,
    /// `(i, n)`: fit only share i of n of each α's (method, seed) jobs, then stop (a final call
    /// with `resume` and no shard analyses everything).
    pub shard: Option<(usize, usize)>,
    /// Progress bars and per-run reports.
    pub verbose: bool,
    /// Fits run at once (see [`crate::experiment::Plan::jobs`]).
    pub jobs: usize,
}

/// How [`run`] ended.
#[derive(Debug)]
pub enum CompareOutcome {
    /// Everything fitted and analysed.
    Done(Box<CompareReport>),
    /// This shard's fits are done; nothing was analysed.
    Sharded,
    /// A fit stopped as configured (`train.stop_after_steps`); `--resume` continues it.
    Stopped(String),
}

/// All tables of a comparison; written to `OUT/compare.json`.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    /// Methods compared.
    pub methods: Vec<String>,
    /// Benchmark αs.
    pub alphas: Vec<f64>,
    /// Training seeds.
    pub seeds: Vec<u64>,
    /// Table 1: accuracy per method and α.
    pub accuracy: Vec<AccuracyRow>,
    /// The reference rankers per α.
    pub reference: Vec<(f64, ReferenceReport)>,
    /// Few-shot curves of unseen users.
    pub few_shot: Vec<FewShotRow>,
    /// Unseen headroom captured per k against the few-shot ceiling (benchmark data only).
    pub headroom_per_k: Vec<HeadroomRow>,
    /// Accuracy by VRF's uncertainty.
    pub uncertainty: Vec<UncertaintyRow>,
    /// Training and adaptation time.
    pub cost: Vec<CostRow>,
    /// Best-of-N alignment (methods, then the reference pickers).
    pub best_of_n: Vec<BestOfNRow>,
    /// Figure files written, relative to the output directory.
    pub figures: Vec<String>,
    /// Remarks (skipped analyses and why).
    pub notes: Vec<String>,
}

/// One point of a training curve: (step, loss, step accuracy).
pub type CurvePoint = (f64, f64, f64);

/// A VRF run's preference space: users' posterior means, σ and dominant basis, and the bases.
#[derive(Clone, Debug, Default)]
pub struct Space {
    /// Posterior means of seen users.
    pub seen: Vec<Vec<f32>>,
    /// Posterior means of unseen users.
    pub unseen: Vec<Vec<f32>>,
    /// √(mean σ²) of each seen user, then each unseen user.
    pub sigma: Vec<f64>,
    /// Dominant basis (argmax weight) of each seen user, then each unseen user.
    pub top: Vec<usize>,
    /// Basis means `[K][d]`.
    pub bases: Vec<Vec<f32>>,
}

/// What one finished run contributes to the analyses.
#[derive(Clone, Debug)]
pub struct RunAnalysis {
    /// Method name.
    pub method: String,
    /// Training seed.
    pub seed: u64,
    /// The run's `eval.json`.
    pub report: EvalReport,
    /// Training seconds (the last `elapsed_s` of `metrics.jsonl`).
    pub train_seconds: f64,
    /// Each unseen user's accuracy (dataset order of unseen users).
    pub unseen: Vec<UserAccuracy>,
    /// VRF: each unseen user's uncertainty (mean σ²), same order.
    pub sigma2: Option<Vec<f64>>,
    /// Best-of-N picks (None when the data has no true utilities).
    pub picks: Option<Picks>,
    /// Training curve from `metrics.jsonl`.
    pub curve: Vec<CurvePoint>,
    /// VRF: the preference space.
    pub space: Option<Space>,
}

/// Helpers that summarise per-seed values.
pub mod agg {
    use super::Ms;

    /// Mean ± sample std of the finite values.
    pub fn ms(xs: &[f64]) -> Ms {
        crate::experiment::mean_std(xs)
    }

    /// Column-wise [`ms`] of per-seed rows of `n` values.
    pub fn columns(rows: &[Vec<f64>], n: usize) -> Vec<Ms> {
        (0..n)
            .map(|j| {
                ms(&rows
                    .iter()
                    .map(|r| r.get(j).copied().unwrap_or(f64::NAN))
                    .collect::<Vec<_>>())
            })
            .collect()
    }
}

/// `OUT/alpha-<α>`.
pub fn alpha_dir(out: &Path, alpha: f64) -> PathBuf {
    out.join(format!("alpha-{alpha}"))
}

/// The benchmark of one α in `dir/data.jsonl`, generated once.
fn ensure_data(dir: &Path, synth: &SynthConfig, alpha: f64) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let p = dir.join("data.jsonl");
    if !p.exists() {
        let cfg = SynthConfig {
            alpha,
            ..synth.clone()
        };
        generate(&cfg)?.write(&p)?;
    }
    Ok(p)
}

fn validate(plan: &ComparePlan) -> Result<()> {
    if plan.methods.is_empty() {
        return Err(CompareError::Empty("method").into());
    }
    if plan.alphas.is_empty() {
        return Err(CompareError::Empty("α").into());
    }
    if plan.seeds.is_empty() {
        return Err(CompareError::Empty("seed").into());
    }
    for (i, &a) in plan.alphas.iter().enumerate() {
        if !(a.is_finite() && a > 0.0) {
            return Err(CompareError::Alpha(a).into());
        }
        if plan.alphas[..i].contains(&a) {
            return Err(CompareError::DuplicateAlpha(a).into());
        }
    }
    plan.base.validate()?;
    Ok(())
}

/// Fits what is missing and, unless sharded, analyses every run and writes `compare.md`,
/// `compare.json` and the figures (see the module documentation).
pub fn run(plan: &ComparePlan, dev: &Device) -> Result<CompareOutcome> {
    validate(plan)?;
    let mut methods: Vec<Method> = Vec::new();
    for m in &plan.methods {
        if !methods.contains(m) {
            methods.push(*m);
        }
    }
    let mut fitted = Vec::new();
    for &alpha in &plan.alphas {
        let dir = alpha_dir(&plan.out, alpha);
        let data = ensure_data(&dir, &plan.synth, alpha)?;
        let mut base = plan.base.clone();
        if let Some(source) = plan.feature_source {
            let table = crate::reference::feature_table::ensure_table(&data, source)?;
            let path = table.to_str().ok_or_else(|| {
                TrainError::Other(format!("{}: not a UTF-8 path", table.display()))
            })?;
            base.backbone = BackboneSource::Features {
                path: path.to_string(),
            };
        }
        let variants: Vec<Variant> = methods
            .iter()
            .map(|m| {
                let mut c = base.clone();
                c.method = *m;
                Variant::new(m.name(), c)
            })
            .collect();
        let p = Plan {
            out: dir,
            data,
            seeds: plan.seeds.clone(),
            resume: plan.resume || plan.shard.is_some(),
            verbose: plan.verbose,
            shard: plan.shard,
            jobs: plan.jobs,
        };
        match run_rows(&p, &variants, dev)? {
            FitOutcome::Finished(rows) => fitted.push((alpha, p, variants, rows)),
            FitOutcome::Stopped(stop) => return Ok(CompareOutcome::Stopped(stop.to_string())),
        }
    }
    if plan.shard.is_some() {
        return Ok(CompareOutcome::Sharded);
    }
    let mut report = CompareReport {
        methods: methods.iter().map(|m| m.name().to_string()).collect(),
        alphas: plan.alphas.clone(),
        seeds: plan.seeds.clone(),
        accuracy: vec![],
        reference: vec![],
        few_shot: vec![],
        headroom_per_k: vec![],
        uncertainty: vec![],
        cost: vec![],
        best_of_n: vec![],
        figures: vec![],
        notes: vec![],
    };
    let mut fig = figures::FigureData::default();
    for (alpha, p, variants, rows) in &fitted {
        let alpha = *alpha;
        if plan.verbose {
            eprintln!("== analysing α = {alpha}");
        }
        let ds = Dataset::load(&p.data)?;
        let truth = Truth::load(&p.data, &ds)?;
        let mut runs: Vec<Vec<RunAnalysis>> = Vec::new();
        for (v, row) in variants.iter().zip(rows) {
            let mut per_seed = Vec::new();
            for ((&seed, r), &secs) in plan.seeds.iter().zip(&row.runs).zip(&row.seconds) {
                let dir = p.out.join(format!("{}-seed{seed}", v.id));
                per_seed.push(analyse(&dir, r.clone(), secs, &ds, truth.as_ref(), dev)?);
            }
            runs.push(per_seed);
        }
        report.accuracy.extend(table::accuracy_rows(alpha, &runs));
        report.cost.extend(table::cost_rows(alpha, &runs));
        report.few_shot.extend(fewshot::rows(alpha, &runs));
        let unc = uncertainty::rows(alpha, &runs);
        if unc.is_empty() {
            report.notes.push(format!(
                "α = {alpha}: no VRF run, so no uncertainty analysis."
            ));
        }
        report.uncertainty.extend(unc);
        match &truth {
            Some(t) => {
                report.best_of_n.extend(best_of_n::rows(alpha, &runs));
                report.best_of_n.extend(t.reference_rows(alpha));
                if !methods.contains(&Method::Bt) {
                    report
                        .notes
                        .push(format!("α = {alpha}: no BT run, so no best-of-N win rate."));
                }
            }
            None => report.notes.push(format!(
                "α = {alpha}: the data has no synth meta side-file, so no best-of-N."
            )),
        }
        if let Some(r) = reference::for_data(&p.data)? {
            report
                .headroom_per_k
                .extend(headroom::rows(alpha, &runs, &r));
            report.reference.push((alpha, r));
        }
        fig.add(alpha, &runs);
    }
    let fig_dir = plan.out.join("figures");
    let (files, notes) = figures::write_all(&fig_dir, &fig, &report)?;
    report.figures = files
        .iter()
        .map(|f| f.strip_prefix(&plan.out).unwrap_or(f).display().to_string())
        .collect();
    report.notes.extend(notes);
    write_json(&plan.out.join("compare.json"), &report)?;
    write_atomic(
        &plan.out.join("compare.md"),
        table::markdown(&report).as_bytes(),
    )?;
    Ok(CompareOutcome::Done(Box::new(report)))
}

/// The benchmark's truth for best-of-N: every eval prompt's candidates and each user's queries
/// with their true utilities.
struct Truth {
    /// One query per (user, eval triplet), seen users first, in dataset order.
    queries: Vec<Query>,
    /// Whether each query's user is seen.
    seen: Vec<bool>,
    /// True utility of each query's candidates.
    utilities: Vec<Vec<f64>>,
    /// Utilities by the population's mean true weights (the "true global" picker).
    global_rewards: Vec<Vec<f64>>,
}

impl Truth {
    /// From the side-file beside `data` (the candidates regenerated from its config); `None`
    /// without one.
    fn load(data: &Path, ds: &Dataset) -> Result<Option<Self>> {
        let Some(meta) = reference::load_meta(data)? else {
            return Ok(None);
        };
        let synth = generate(&meta.config)?;
        Ok(Some(Self::build(ds, &meta, &synth)?))
    }

    fn build(ds: &Dataset, meta: &SynthMeta, synth: &Synthetic) -> Result<Self> {
        let prompt_of: HashMap<&str, usize> = synth
            .prompts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.eval)
            .map(|(i, p)| (p.text.as_str(), i))
            .collect();
        let weights: HashMap<&str, &Vec<f64>> = meta
            .user_weights
            .iter()
            .map(|(u, w)| (u.as_str(), w))
            .collect();
        let n_users = meta.user_weights.len().max(1) as f64;
        let dim = meta.user_weights.first().map_or(0, |(_, w)| w.len());
        let mut global = vec![0.0; dim];
        for (_, w) in &meta.user_weights {
            for (g, x) in global.iter_mut().zip(w) {
                *g += x / n_users;
            }
        }
        let dot = |w: &[f64], s: &[f64]| -> f64 { w.iter().zip(s).map(|(a, b)| a * b).sum() };
        let mut t = Truth {
            queries: vec![],
            seen: vec![],
            utilities: vec![],
            global_rewards: vec![],
        };
        for &u in ds.seen.iter().chain(&ds.unseen) {
            let user = &ds.users[u];
            let w = weights
                .get(user.id.as_str())
                .ok_or_else(|| CompareError::UnknownUser(user.id.clone()))?;
            for &i in &user.evals {
                let prompt = &ds.triplets[i].prompt;
                let &pi = prompt_of
                    .get(prompt.as_str())
                    .ok_or_else(|| CompareError::UnknownPrompt(prompt.clone()))?;
                let sp = &synth.prompts[pi];
                t.queries.push(Query {
                    user: u,
                    prompt: prompt.clone(),
                    responses: sp.responses.clone(),
                });
                t.seen.push(user.is_seen());
                t.utilities
                    .push(sp.scores.iter().map(|s| dot(w, s)).collect());
                t.global_rewards
                    .push(sp.scores.iter().map(|s| dot(&global, s)).collect());
            }
        }
        Ok(t)
    }

    /// The reference pickers: a uniformly random pick (expected values) and the population's
    /// mean true weights ("true global", not personalised).
    fn reference_rows(&self, alpha: f64) -> Vec<BestOfNRow> {
        let global = Picks::new(&self.seen, &self.global_rewards, &self.utilities);
        // A random pick's expected regret and true-best rate per query.
        let mut random = Picks::default();
        let mut best_hits = Vec::new();
        for (u, &s) in self.utilities.iter().zip(&self.seen) {
            if u.is_empty() {
                continue;
            }
            let best = u.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mean = u.iter().sum::<f64>() / u.len() as f64;
            random.seen.push(s);
            random.utility.push(mean);
            random.regret.push(best - mean);
            best_hits
                .push(u.iter().filter(|&&x| x >= best - 1e-12).count() as f64 / u.len() as f64);
        }
        let mut rows = vec![
            best_of_n::row("true-global (reference)", alpha, &[(0, &global)], &[]),
            best_of_n::row("random pick (reference)", alpha, &[(0, &random)], &[]),
        ];
        let rate = best_hits.iter().sum::<f64>() / best_hits.len().max(1) as f64;
        rows[1].best_rate = (rate, 0.0);
        rows
    }
}

/// Loads run `dir` and computes its per-user numbers, best-of-N picks and training curve.
fn analyse(
    dir: &Path,
    report: EvalReport,
    train_seconds: f64,
    ds: &Dataset,
    truth: Option<&Truth>,
    dev: &Device,
) -> Result<RunAnalysis> {
    let scorer = RunScorer::load(dir, dev)?;
    let unseen = scorer.user_accuracy(&ds.unseen)?;
    let picks = match truth {
        Some(t) => match scorer.rewards(&t.queries) {
            Ok(rewards) => Some(Picks::new(&t.seen, &rewards, &t.utilities)),
            // A run on an external feature table can score only the texts it has rows for.
            Err(TrainError::Features(e)) => {
                eprintln!(
                    "warning: {}: no best-of-N (the feature table lacks the generator's \
                     candidate responses; --feature-source tables have them): {e}",
                    dir.display()
                );
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    let (mut sigma2, mut space) = (None, None);
    if let Some(posts) = scorer.posteriors() {
        let by_id: HashMap<&str, &vrf_trainer::eval::UserPosterior> =
            posts.iter().map(|p| (p.id.as_str(), p)).collect();
        let get = |u: usize| by_id.get(ds.users[u].id.as_str()).copied();
        sigma2 = Some(
            ds.unseen
                .iter()
                .map(|&u| get(u).map_or(f64::NAN, |p| p.uncertainty as f64))
                .collect(),
        );
        let mut s = Space {
            bases: scorer.basis_means()?.unwrap_or_default(),
            ..Default::default()
        };
        for (group, seen) in [(&ds.seen, true), (&ds.unseen, false)] {
            for p in group.iter().filter_map(|&u| get(u)) {
                if seen {
                    s.seen.push(p.mean.clone());
                } else {
                    s.unseen.push(p.mean.clone());
                }
                s.sigma.push((p.uncertainty as f64).max(0.0).sqrt());
                s.top.push(
                    best_of_n::pick_best(&p.weights.iter().map(|&x| x as f64).collect::<Vec<_>>())
                        .unwrap_or(0),
                );
            }
        }
        space = Some(s);
    }
    Ok(RunAnalysis {
        method: scorer.method().name().to_string(),
        seed: report.seed,
        report,
        train_seconds,
        unseen,
        sigma2,
        picks,
        curve: read_curve(&dir.join("metrics.jsonl")),
        space,
    })
}

/// The training steps of a `metrics.jsonl` (records with a loss and a step accuracy):
/// (step number, loss, accuracy); empty when the file is missing.
pub fn read_curve(path: &Path) -> Vec<CurvePoint> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let loss = v.get("loss")?.as_f64()?;
            let acc = v.get("acc")?.as_f64()?;
            Some((loss, acc))
        })
        .enumerate()
        .map(|(i, (l, a))| ((i + 1) as f64, l, a))
        .collect()
}
