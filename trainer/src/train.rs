//! Training loops: end-to-end VRF (docs/METHOD.md §3), the staged fit (docs/METHOD.md §3b) and the BT baseline.
//!
//! Every batch is a deterministic function of (seed, stage, step), so a run resumed from a
//! checkpoint continues exactly where it stopped. The stage type and a fit's outcome are in
//! `train/stage.rs`, one gradient step in `train/step.rs`, stage 2 (frozen backbone) in
//! `train/stage2.rs`, the reference-state cache in `train/refcache.rs`, the optional causal-LM
//! pretraining step in `train/pretrain.rs`.

pub mod archetypes;
mod pretrain;
pub mod refcache;
mod stage;
mod stage2;
mod step;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::json;

use crate::checkpoint::{save_checkpoint, Checkpoint, TrainState};
use crate::config::{Batching, Method, Schedule, StageOneUsers};
use crate::corpus::{dedup, Corpus};
use crate::error::{Result, TrainError};
use crate::eval::pair_texts;
use crate::model::{prefix, RewardModel};
use crate::optim::{lr_factor, AdamW, ParamGroup};
use refcache::RefCache;
pub use stage::{check_position, FitOutcome, Stage, Stop, DONE};
use vrf_data::{Dataset, Split};

/// Number of free per-user logits the model needs (stage 1 of the staged fit).
pub fn free_logit_count(cfg: &crate::config::RunConfig, ds: &Dataset) -> usize {
    if cfg.method == Method::Vrf && cfg.train.schedule == Schedule::Staged {
        ds.seen.len()
    } else {
        0
    }
}

/// A seeded RNG for one (stage, step or epoch) so batches do not depend on history.
fn rng_for(seed: u64, tag: &str, n: u64) -> ChaCha8Rng {
    let tag = tag.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    ChaCha8Rng::seed_from_u64(seed ^ tag ^ n.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

/// Optimiser moments, step count and extra tensors of a checkpoint being resumed.
type Resume = (HashMap<String, Tensor>, usize, HashMap<String, Tensor>);

/// `RUN/metrics.jsonl`, appended to one JSON record a line.
struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    fn open(run: &Path) -> Result<Self> {
        let path = run.join("metrics.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { path, file })
    }

    fn write(&mut self, rec: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{rec}").map_err(|e| TrainError::io(&self.path, e))
    }

    /// On resume, keeps only the records of the work the checkpoint holds: steps up to its
    /// global step, stage 2's epochs if stage 2 finished; a line torn by a crash is dropped.
    /// So a resumed run's log equals an uninterrupted run's (no repeated or half-written steps).
    fn trim(run: &Path, state: &TrainState) -> Result<()> {
        let path = run.join("metrics.jsonl");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let s2_done = state.finished.iter().any(|f| f == Stage::Stage2.as_str());
        let kept: String = text
            .lines()
            .filter(|l| {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
                    return false;
                };
                match v.get("global_step").and_then(|g| g.as_u64()) {
                    Some(g) => g as usize <= state.global_step,
                    None => s2_done,
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        if kept.len() != text.len() {
            vrf_data::write_atomic(&path, kept.as_bytes()).map_err(|e| TrainError::io(&path, e))?;
        }
        Ok(())
    }
}

/// Running averages of step metrics, for the progress line.
#[derive(Default)]
struct Running {
    loss: f64,
    acc: f64,
    n: f64,
}

impl Running {
    fn push(&mut self, loss: f64, acc: f64) {
        // Exponential average: recent steps matter, early noise fades.
        let a = if self.n < 20.0 {
            1.0 / (self.n + 1.0)
        } else {
            0.05
        };
        self.loss += a * (loss - self.loss);
        self.acc += a * (acc - self.acc);
        self.n += 1.0;
    }
}

/// Fits a model in `run` (creating checkpoints, `metrics.jsonl`), resuming from `resume`.
pub struct Trainer<'a> {
    /// The model being trained.
    pub model: RewardModel,
    ds: &'a Dataset,
    corpus: &'a Corpus,
    run: PathBuf,
    state: TrainState,
    resume_optim: Option<Resume>,
    ref_cache: Option<RefCache>,
    /// Frozen backbone states of the training texts (stage `s1h`).
    frozen: Option<RefCache>,
    /// Show a progress bar (off in tests).
    pub progress: bool,
    started: Instant,
}

impl<'a> Trainer<'a> {
    /// A trainer; `resume` (a loaded checkpoint) restores weights, optimiser and position.
    pub fn new(
        model: RewardModel,
        ds: &'a Dataset,
        corpus: &'a Corpus,
        run: &Path,
        resume: Option<Checkpoint>,
    ) -> Result<Self> {
        let mut state = TrainState::default();
        let mut resume_optim = None;
        if let Some(ck) = resume {
            for (name, t) in &ck.weights {
                model.vars.insert(name, t.clone())?;
            }
            state = ck.state;
            MetricsLog::trim(run, &state)?;
            resume_optim = Some((ck.optim, ck.optim_t, ck.extra));
        }
        let t = Self {
            model,
            ds,
            corpus,
            run: run.to_path_buf(),
            state,
            resume_optim,
            ref_cache: None,
            frozen: None,
            progress: true,
            started: Instant::now(),
        };
        t.check_resumed_state()?;
        Ok(t)
    }

    /// A resumed position must belong to this configuration: known stage names, a step inside
    /// its stage. A hand-edited or foreign `state.json` is refused, saying what to delete.
    fn check_resumed_state(&self) -> Result<()> {
        let seq = Stage::sequence(&self.model.cfg);
        check_position(&self.state, &seq, |s| self.stage_steps(s)).map_err(|what| {
            TrainError::Other(format!(
                "{}: {what}; it does not belong to this run's configuration (delete {} to \
                 start the run afresh)",
                self.run.join("checkpoint/state.json").display(),
                self.run.join("checkpoint").display()
            ))
        })
    }

    /// Runs every unfinished stage: [`FitOutcome::Finished`] with the final training state, or
    /// [`FitOutcome::Stopped`] where `train.stop_after_steps` stopped it (checkpoint saved).
    pub fn fit(&mut self) -> Result<FitOutcome<TrainState>> {
        for stage in Stage::sequence(&self.model.cfg) {
            if self.state.finished.iter().any(|s| s == stage.as_str()) {
                continue;
            }
            if self.state.stage != stage.as_str() {
                self.state.stage = stage.as_str().to_string();
                self.state.step = 0;
                self.resume_optim = None;
            }
            match stage {
                Stage::Stage2 => self.stage2()?,
                _ => self.gradient_stage(stage)?,
            }
            if self.state.step < self.stage_steps(stage) {
                // Stopped mid-stage (train.stop_after_steps); the checkpoint is saved.
                return Ok(FitOutcome::Stopped(self.stop(stage)));
            }
            if stage == Stage::Stage1 && self.model.cfg.train.s1_users == StageOneUsers::Vectors {
                // Before the stage-end checkpoint, so a resumed run never converts twice.
                self.users_onto_archetypes()?;
            }
            self.state.finished.push(stage.as_str().to_string());
            self.state.step = 0;
            self.ref_cache = None;
            self.frozen = None;
            self.save_stage_end()?;
            if self.stopped() {
                return Ok(FitOutcome::Stopped(self.stop(stage)));
            }
        }
        self.state.stage = DONE.into();
        self.save_stage_end()?;
        Ok(FitOutcome::Finished(self.state.clone()))
    }

    /// Saves weights and state between stages (no optimiser: the next stage starts afresh).
    fn save_stage_end(&self) -> Result<()> {
        save_checkpoint(
            &self.run,
            &self.model.vars,
            None,
            &HashMap::new(),
            &self.state,
        )?;
        Ok(())
    }

    /// Whether `train.stop_after_steps` has been reached (a stop on purpose).
    fn stopped(&self) -> bool {
        let s = self.model.cfg.train.stop_after_steps;
        s > 0 && self.state.global_step >= s
    }

    fn stop(&self, stage: Stage) -> Stop {
        Stop {
            run: self.run.clone(),
            stage,
            global_step: self.state.global_step,
        }
    }

    fn groups(&self, stage: Stage) -> Vec<ParamGroup> {
        let v = &self.model.vars;
        let mult = self.model.cfg.train.latent_lr_mult;
        let main = v.vars_with_prefix(&[prefix::BACKBONE, prefix::HEADS]);
        let (latent, mult) = match stage {
            Stage::Stage1 | Stage::Stage1Heads => (v.vars_with_prefix(&[prefix::FREE]), mult),
            Stage::EndToEnd => (v.vars_with_prefix(&[prefix::ENCODER, prefix::BASES]), mult),
            // Stage 3 fine-tunes a distilled encoder: the boost meant for fresh latents would
            // undo stage 2, so everything trains at the base rate.
            Stage::Stage3 => (v.vars_with_prefix(&[prefix::ENCODER, prefix::BASES]), 1.0),
            Stage::Bt | Stage::Stage2 | Stage::Pretrain => (vec![], 1.0),
        };
        // Pretraining touches the backbone only (the heads get no gradient there); `s1h` the
        // heads only (the backbone is frozen, its states cached).
        let main = match stage {
            Stage::Pretrain => v.vars_with_prefix(&[prefix::BACKBONE]),
            Stage::Stage1Heads => v.vars_with_prefix(&[prefix::HEADS]),
            _ => main,
        };
        vec![
            ParamGroup {
                vars: self.model.trainable(main),
                lr_mult: 1.0,
            },
            ParamGroup {
                vars: latent,
                lr_mult: mult,
            },
        ]
    }

    fn steps_per_epoch(&self, stage: Stage) -> usize {
        let t = &self.model.cfg.train;
        if stage.uses_encoder() && t.batching == Batching::Users {
            // An epoch shows as many target pairs as the data has.
            let targets: usize = self
                .ds
                .seen
                .iter()
                .map(|&u| self.ds.users[u].targets.len())
                .sum();
            return targets
                .div_ceil(t.users_per_step * t.targets_per_user)
                .max(1);
        }
        self.prompt_groups(stage)
            .len()
            .div_ceil(t.prompts_per_step)
            .max(1)
    }

    /// Detached states of every seen user's reference texts, refreshed whenever a step embeds
    /// one of them (prompt batching; the encoder's inputs carry no gradient either way).
    fn build_ref_cache(&self) -> Result<RefCache> {
        let refs = self
            .ds
            .seen
            .iter()
            .flat_map(|&u| self.ds.users[u].refs.iter().copied());
        let (uniq, _) = dedup(&pair_texts(self.corpus, refs));
        let e = self
            .corpus
            .embed(&self.model, &uniq, self.model.cfg.train.eval_batch)?;
        RefCache::new(&uniq, &e)
    }

    /// Gradient steps of a stage (stage 2 counts as 0: it is not interruptible).
    fn stage_steps(&self, stage: Stage) -> usize {
        match stage {
            Stage::Stage2 => 0,
            Stage::Stage3 => self.steps_per_epoch(stage) * self.model.cfg.train.s3_epochs,
            Stage::Pretrain => self.steps_per_epoch(stage) * self.model.cfg.train.lm_epochs,
            Stage::Stage1Heads => self.steps_per_epoch(stage) * self.model.cfg.train.s1_head_epochs,
            _ => self.steps_per_epoch(stage) * self.model.cfg.train.epochs,
        }
    }

    /// Training triplets by prompt: every seen user's target pairs, plus reference pairs for BT
    /// (baselines also train on R_u, docs/METHOD.md §5) and, where configured, for stage 1.
    fn prompt_groups(&self, stage: Stage) -> Vec<Vec<usize>> {
        let use_ref = matches!(stage, Stage::Bt | Stage::Pretrain)
            || (matches!(stage, Stage::Stage1 | Stage::Stage1Heads)
                && self.model.cfg.train.s1_use_ref);
        let splits: &[Split] = if use_ref {
            &[Split::Ref, Split::Target]
        } else {
            &[Split::Target]
        };
        self.ds
            .prompt_groups(splits)
            .into_iter()
            .map(|g| {
                g.triplets
                    .into_iter()
                    .filter(|&i| self.ds.users[self.ds.triplet_user[i]].is_seen())
                    .collect::<Vec<_>>()
            })
            .filter(|g| !g.is_empty())
            .collect()
    }

    /// A stage trained by gradient steps over the backbone (e2e, s1, s3, bt).
    fn gradient_stage(&mut self, stage: Stage) -> Result<()> {
        let cfg = self.model.cfg.clone();
        let t = &cfg.train;
        let spe = self.steps_per_epoch(stage);
        let total = self.stage_steps(stage);
        let mut opt = AdamW::new(self.groups(stage), t.weight_decay);
        let mut saved_cache = None;
        if let Some((m, tt, extra)) = self.resume_optim.take() {
            opt.load_state(&m, tt);
            saved_cache = RefCache::from_tensors(&extra)?;
        }
        if self.state.delta.is_none() {
            self.state.delta = Some(self.initial_delta()?);
        }
        let groups = self.prompt_groups(stage);
        if stage == Stage::Stage1Heads {
            // The backbone is frozen here: embed every training text once.
            let (uniq, _) = dedup(&pair_texts(self.corpus, groups.iter().flatten().copied()));
            let e = self.corpus.embed(&self.model, &uniq, t.eval_batch)?;
            self.frozen = Some(RefCache::new(&uniq, &e)?);
        }
        if stage.uses_encoder() && t.batching == Batching::Prompts {
            // A resumed run continues with the cache it had, so it matches an uninterrupted run.
            self.ref_cache = Some(match saved_cache {
                Some(c) => c,
                None => self.build_ref_cache()?,
            });
        }
        let bar = self.bar(total as u64, stage);
        bar.set_position(self.state.step as u64);
        let mut run = Running::default();
        let mut log = MetricsLog::open(&self.run)?;
        while self.state.step < total {
            let step = self.state.step;
            let (epoch, within) = (step / spe, step % spe);
            let lr = t.lr * lr_factor(step, total, t.warmup);
            let out = if stage.uses_encoder() {
                let (users, targets) = self.e2e_batch(stage, &groups, epoch, within, step);
                self.vrf_step(&users, &targets, step, total)?
            } else if stage == Stage::Pretrain {
                self.lm_step(&groups, epoch, within)?
            } else {
                self.prompt_step(stage, &groups, epoch, within)?
            };
            let mut grads = out.loss.backward()?;
            self.model.finish_backward(&mut grads)?;
            let gnorm = opt.step(&grads, lr, t.grad_clip)?;
            let loss_v = out.loss.to_scalar::<f32>()? as f64;
            if !loss_v.is_finite() {
                return Err(TrainError::NonFinite {
                    stage: stage.to_string(),
                    step,
                    loss: loss_v,
                });
            }
            run.push(loss_v, out.acc);
            self.state.step += 1;
            self.state.global_step += 1;
            let mut rec = out.metrics;
            rec.insert("stage".into(), json!(stage));
            rec.insert("step".into(), json!(step + 1));
            rec.insert("global_step".into(), json!(self.state.global_step));
            rec.insert("lr".into(), json!(lr));
            rec.insert("loss".into(), json!(loss_v));
            rec.insert("acc".into(), json!(out.acc));
            rec.insert("grad_norm".into(), json!(gnorm));
            rec.insert(
                "elapsed_s".into(),
                json!(self.started.elapsed().as_secs_f64()),
            );
            log.write(&serde_json::Value::Object(rec.clone()))?;
            let diag = match (
                rec.get("top_bases"),
                rec.get("w_entropy"),
                rec.get("phi_corr"),
            ) {
                (Some(a), Some(b), Some(c)) => format!(
                    " top={} H(w)={:.2} ρφ={:.2}",
                    a,
                    b.as_f64().unwrap_or(f64::NAN),
                    c.as_f64().unwrap_or(f64::NAN)
                ),
                _ => String::new(),
            };
            bar.set_message(format!("loss {:.4} acc {:.3}{diag}", run.loss, run.acc));
            bar.inc(1);
            let stop = self.stopped() && self.state.step < total;
            if stop
                || (t.checkpoint_every > 0
                    && self.state.step.is_multiple_of(t.checkpoint_every)
                    && self.state.step < total)
            {
                let extra = self
                    .ref_cache
                    .as_ref()
                    .map(|c| c.tensors(&self.model.device))
                    .transpose()?
                    .unwrap_or_default();
                save_checkpoint(&self.run, &self.model.vars, Some(&opt), &extra, &self.state)?;
            }
            if stop {
                break;
            }
        }
        bar.finish();
        Ok(())
    }

    /// Stage 1 with user vectors ends here: the vectors' archetypes become the basis rewards
    /// (`heads.l2` ← A·`heads.l2`) and each user's simplex weights its free logits.
    fn users_onto_archetypes(&mut self) -> Result<()> {
        let free = self
            .model
            .free_logits
            .as_ref()
            .ok_or_else(|| TrainError::Other("stage 1 needs free per-user vectors".into()))?;
        let u: Vec<Vec<f64>> = free
            .to_vec2::<f32>()?
            .into_iter()
            .map(|r| r.into_iter().map(f64::from).collect())
            .collect();
        let k = self.model.cfg.model.k;
        let ar = archetypes::archetypes(&u, k, self.model.cfg.train.seed);
        let dev = &self.model.device;
        let flat: Vec<f32> = ar.a.iter().flatten().map(|&x| x as f32).collect();
        let a = Tensor::from_vec(flat, (k, k), dev)?;
        let l2 = &self.model.heads.l2;
        let (weight, bias) = archetypes::rotate_output(&a, l2.weight(), l2.bias())?;
        self.model.vars.insert("heads.l2.weight", weight)?;
        if let Some(bias) = bias {
            self.model.vars.insert("heads.l2.bias", bias)?;
        }
        // Logits whose softmax is the fitted weights (a floor keeps them finite).
        let logits: Vec<f32> =
            ar.w.iter()
                .flatten()
                .map(|&w| w.max(1e-3).ln() as f32)
                .collect();
        let logits = Tensor::from_vec(logits, (u.len(), k), dev)?;
        self.model.vars.insert(crate::model::prefix::FREE, logits)?;
        let rec = json!({
            "stage": Stage::Stage1,
            "global_step": self.state.global_step,
            "archetypes_rel_error": ar.rel_error,
            "archetype_usage": ar.usage,
        });
        MetricsLog::open(&self.run)?.write(&rec)?;
        if self.progress {
            eprintln!(
                "stage 1 user vectors → {k} archetypes: relative error {:.3}, users per archetype {:?}",
                ar.rel_error, ar.usage
            );
        }
        Ok(())
    }

    fn bar(&self, total: u64, stage: Stage) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let b = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{prefix:>4} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        b.set_style(style);
        b.set_prefix(stage.as_str());
        b
    }

    /// δ for the diversity hinge: the configured margin, or (remedy) a multiple of the bases'
    /// initial mean pairwise W₂²/d so the hinge acts from the first step.
    fn initial_delta(&self) -> Result<f64> {
        let l = &self.model.cfg.loss;
        match (&self.model.bases, l.delta_auto) {
            (Some(b), true) => {
                let p = b.pairwise_w2_over_d()?;
                if p.elem_count() == 0 {
                    return Ok(l.delta);
                }
                Ok(l.delta_auto_scale * p.mean_all()?.to_scalar::<f32>()? as f64)
            }
            _ => Ok(l.delta),
        }
    }

    /// β at a step: 0 during the KL warm-up, then a linear ramp of equal length (remedy).
    fn beta_at(&self, step: usize, total: usize) -> f64 {
        let l = &self.model.cfg.loss;
        if l.kl_warmup <= 0.0 {
            return l.beta;
        }
        let w = l.kl_warmup * total as f64;
        let s = step as f64;
        if s < w {
            0.0
        } else {
            l.beta * ((s - w) / w.max(1.0)).min(1.0)
        }
    }

    /// Monte Carlo noise ε `[S, U, d]` from the run's seeded RNG (reproducible on CPU).
    fn noise(&self, step: usize, users: usize) -> Result<Tensor> {
        let c = &self.model.cfg;
        let (s, d) = (c.loss.kl_samples, c.model.d);
        let mut rng = rng_for(c.train.seed, "kl-noise", step as u64);
        let v: Vec<f32> = (0..s * users * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        Ok(Tensor::from_vec(v, (s, users, d), &self.model.device)?)
    }
}
