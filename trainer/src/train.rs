//! Training loops: end-to-end VRF (SPEC §3), the staged fit (SPEC §3b) and the BT baseline.
//!
//! Every batch is a deterministic function of (seed, stage, step), so a run resumed from a
//! checkpoint continues exactly where it stopped.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Result, Tensor, D};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::json;

use crate::checkpoint::{save_checkpoint, Checkpoint, TrainState};
use crate::config::{Batching, Method, Schedule};
use crate::corpus::{dedup, rows, Corpus};
use crate::data::{Dataset, Split};
use crate::eval::pairwise_accuracy;
use crate::loss;
use crate::model::{prefix, RewardModel};
use crate::optim::{lr_factor, AdamW, ParamGroup};

/// The stages a run goes through, in order.
pub fn stages(model: &RewardModel) -> Vec<&'static str> {
    let c = &model.cfg;
    match (c.method, c.train.schedule) {
        (Method::Bt, _) => vec!["bt"],
        (Method::Vrf, Schedule::EndToEnd) => vec!["e2e"],
        (Method::Vrf, Schedule::Staged) => {
            let mut s = vec!["s1", "s2"];
            if c.train.s3_epochs > 0 {
                s.push("s3");
            }
            s
        }
    }
}

/// Number of free per-user logits the model needs (stage 1 of the staged fit).
pub fn free_logit_count(cfg: &crate::config::RunConfig, ds: &Dataset) -> usize {
    if cfg.method == Method::Vrf && cfg.train.schedule == Schedule::Staged {
        ds.seen.len()
    } else {
        0
    }
}

/// A seeded RNG for one (stage, step or epoch) so batches do not depend on history.
fn rng_for(seed: u64, stage: &str, n: u64) -> ChaCha8Rng {
    let tag = stage.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    ChaCha8Rng::seed_from_u64(seed ^ tag ^ n.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

/// Host copy of detached reference-text states `[n, H]`, by unique text id.
struct RefCache {
    pos: HashMap<usize, usize>,
    h: usize,
    data: Vec<f32>,
}

impl RefCache {
    fn new(texts: &[usize], e: &Tensor) -> Result<Self> {
        let (_, h) = e.dims2()?;
        let pos = texts.iter().enumerate().map(|(i, &t)| (t, i)).collect();
        Ok(Self {
            pos,
            h,
            data: e.flatten_all()?.to_vec1::<f32>()?,
        })
    }

    /// Overwrites the rows of those `texts` that are cached with fresh states `e` `[n, H]`.
    fn update(&mut self, texts: &[usize], e: &Tensor) -> Result<()> {
        let v = e.flatten_all()?.to_vec1::<f32>()?;
        for (i, t) in texts.iter().enumerate() {
            if let Some(&p) = self.pos.get(t) {
                self.data[p * self.h..(p + 1) * self.h]
                    .copy_from_slice(&v[i * self.h..(i + 1) * self.h]);
            }
        }
        Ok(())
    }

    /// The cache as tensors for a checkpoint (`ref_cache.texts` u32 `[n]`, `ref_cache.states`).
    fn tensors(&self, dev: &candle_core::Device) -> Result<HashMap<String, Tensor>> {
        let n = self.pos.len();
        let mut texts = vec![0u32; n];
        for (&t, &p) in &self.pos {
            texts[p] = t as u32;
        }
        let mut m = HashMap::new();
        m.insert(
            "ref_cache.texts".to_string(),
            Tensor::from_vec(texts, n, dev)?,
        );
        m.insert(
            "ref_cache.states".to_string(),
            Tensor::from_vec(self.data.clone(), (n, self.h), dev)?,
        );
        Ok(m)
    }

    /// Restores a cache saved by [`RefCache::tensors`]; `None` if the checkpoint has none.
    fn from_tensors(m: &HashMap<String, Tensor>) -> Result<Option<Self>> {
        match (m.get("ref_cache.texts"), m.get("ref_cache.states")) {
            (Some(t), Some(e)) => {
                let texts: Vec<usize> = t
                    .to_vec1::<u32>()?
                    .into_iter()
                    .map(|x| x as usize)
                    .collect();
                Ok(Some(Self::new(&texts, e)?))
            }
            _ => Ok(None),
        }
    }

    /// States of `texts` `[n, H]` (all must be cached).
    fn gather(&self, texts: &[usize], dev: &candle_core::Device) -> Result<Tensor> {
        let mut out = Vec::with_capacity(texts.len() * self.h);
        for t in texts {
            let p = *self
                .pos
                .get(t)
                .ok_or_else(|| candle_core::Error::Msg(format!("text {t} is not cached")))?;
            out.extend_from_slice(&self.data[p * self.h..(p + 1) * self.h]);
        }
        Tensor::from_vec(out, (texts.len(), self.h), dev)
    }
}

/// Optimiser moments, step count and extra tensors of a checkpoint being resumed.
type Resume = (HashMap<String, Tensor>, usize, HashMap<String, Tensor>);

/// Named copies of variables (stage 2 keeps its best epoch's encoder and bases).
type Snapshot = Vec<(String, Tensor)>;

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
    /// Show a progress bar (off in tests).
    pub progress: bool,
    started: Instant,
}

/// Outcome of one training step.
struct StepOut {
    loss: Tensor,
    metrics: serde_json::Map<String, serde_json::Value>,
    acc: f64,
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
            resume_optim = Some((ck.optim, ck.optim_t, ck.extra));
        }
        Ok(Self {
            model,
            ds,
            corpus,
            run: run.to_path_buf(),
            state,
            resume_optim,
            ref_cache: None,
            progress: true,
            started: Instant::now(),
        })
    }

    /// Runs every unfinished stage; returns the final training state.
    pub fn fit(&mut self) -> anyhow::Result<TrainState> {
        for stage in stages(&self.model) {
            if self.state.finished.iter().any(|s| s == stage) {
                continue;
            }
            if self.state.stage != stage {
                self.state.stage = stage.to_string();
                self.state.step = 0;
                self.resume_optim = None;
            }
            match stage {
                "s2" => self.stage2()?,
                _ => self.gradient_stage(stage)?,
            }
            if self.state.step < self.stage_steps(stage) {
                // Interrupted on purpose (train.stop_after_steps); the checkpoint is saved.
                return Ok(self.state.clone());
            }
            self.state.finished.push(stage.to_string());
            self.state.step = 0;
            self.ref_cache = None;
            save_checkpoint(
                &self.run,
                &self.model.vars,
                None,
                &HashMap::new(),
                &self.state,
            )?;
            if self.stopped() {
                return Ok(self.state.clone());
            }
        }
        self.state.stage = "done".into();
        save_checkpoint(
            &self.run,
            &self.model.vars,
            None,
            &HashMap::new(),
            &self.state,
        )?;
        Ok(self.state.clone())
    }

    /// Whether `train.stop_after_steps` has been reached (an interruption on purpose).
    fn stopped(&self) -> bool {
        let s = self.model.cfg.train.stop_after_steps;
        s > 0 && self.state.global_step >= s
    }

    fn groups(&self, stage: &str) -> Vec<ParamGroup> {
        let v = &self.model.vars;
        let mult = self.model.cfg.train.latent_lr_mult;
        let main = v.vars_with_prefix(&[prefix::BACKBONE, prefix::HEADS]);
        let (latent, mult) = match stage {
            "s1" => (v.vars_with_prefix(&[prefix::FREE]), mult),
            "e2e" => (v.vars_with_prefix(&[prefix::ENCODER, prefix::BASES]), mult),
            // Stage 3 fine-tunes a distilled encoder: the boost meant for fresh latents would
            // undo stage 2, so everything trains at the base rate.
            "s3" => (v.vars_with_prefix(&[prefix::ENCODER, prefix::BASES]), 1.0),
            _ => (vec![], 1.0),
        };
        vec![
            ParamGroup {
                vars: main,
                lr_mult: 1.0,
            },
            ParamGroup {
                vars: latent,
                lr_mult: mult,
            },
        ]
    }

    fn steps_per_epoch(&self, stage: &str) -> usize {
        let t = &self.model.cfg.train;
        if matches!(stage, "e2e" | "s3") && t.batching == Batching::Users {
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
        let idx = &self.corpus.index;
        let texts: Vec<usize> = self
            .ds
            .seen
            .iter()
            .flat_map(|&u| {
                self.ds.users[u]
                    .refs
                    .iter()
                    .flat_map(|&i| [idx.chosen_text[i], idx.rejected_text[i]])
            })
            .collect();
        let (uniq, _) = dedup(&texts);
        let e = self
            .corpus
            .embed(&self.model, &uniq, self.model.cfg.train.eval_batch)?;
        RefCache::new(&uniq, &e)
    }

    /// Gradient steps of a stage (stage 2 counts as 0: it is not interruptible).
    fn stage_steps(&self, stage: &str) -> usize {
        if stage == "s2" {
            0
        } else {
            self.steps_per_epoch(stage) * self.epochs(stage)
        }
    }

    fn epochs(&self, stage: &str) -> usize {
        let t = &self.model.cfg.train;
        if stage == "s3" {
            t.s3_epochs
        } else {
            t.epochs
        }
    }

    /// Training triplets by prompt: every seen user's target pairs, plus reference pairs for BT
    /// (baselines also train on R_u, SPEC §5) and, where configured, for stage 1.
    fn prompt_groups(&self, stage: &str) -> Vec<Vec<usize>> {
        let use_ref = stage == "bt" || (stage == "s1" && self.model.cfg.train.s1_use_ref);
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
    fn gradient_stage(&mut self, stage: &str) -> anyhow::Result<()> {
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
        if matches!(stage, "e2e" | "s3") && t.batching == Batching::Prompts {
            // A resumed run continues with the cache it had, so it matches an uninterrupted run.
            self.ref_cache = Some(match saved_cache {
                Some(c) => c,
                None => self.build_ref_cache()?,
            });
        }
        let bar = self.bar(total as u64, stage);
        bar.set_position(self.state.step as u64);
        let mut run = Running::default();
        let mut metrics_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run.join("metrics.jsonl"))?;
        while self.state.step < total {
            let step = self.state.step;
            let (epoch, within) = (step / spe, step % spe);
            let lr = t.lr * lr_factor(step, total, t.warmup);
            let out = match stage {
                "bt" | "s1" => self.prompt_step(stage, &groups, epoch, within)?,
                _ => {
                    let (users, targets) = self.e2e_batch(stage, &groups, epoch, within, step);
                    self.vrf_step(&users, &targets, step, total)?
                }
            };
            let grads = out.loss.backward()?;
            let gnorm = opt.step(&grads, lr, t.grad_clip)?;
            let loss_v = out.loss.to_scalar::<f32>()? as f64;
            if !loss_v.is_finite() {
                anyhow::bail!("stage {stage} step {step}: loss is {loss_v}; lower the learning rate or enable clipping");
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
            writeln!(metrics_file, "{}", serde_json::Value::Object(rec.clone()))?;
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

    fn bar(&self, total: u64, stage: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let b = ProgressBar::new(total);
        let style = ProgressStyle::with_template(
            "{prefix:>4} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        b.set_style(style);
        b.set_prefix(stage.to_string());
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

    /// Prompt-grouped step (BT, stage 1): all training pairs on a few prompts.
    fn prompt_step(
        &self,
        stage: &str,
        groups: &[Vec<usize>],
        epoch: usize,
        within: usize,
    ) -> Result<StepOut> {
        let t = &self.model.cfg.train;
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.shuffle(&mut rng_for(t.seed, stage, epoch as u64));
        let chosen: Vec<usize> = order
            .iter()
            .skip(within * t.prompts_per_step)
            .take(t.prompts_per_step)
            .flat_map(|&g| groups[g].iter().copied())
            .collect();
        let idx = &self.corpus.index;
        let mut texts = Vec::with_capacity(2 * chosen.len());
        for &i in &chosen {
            texts.push(idx.chosen_text[i]);
            texts.push(idx.rejected_text[i]);
        }
        let (uniq, pos) = dedup(&texts);
        let (x, lens) = self.corpus.batch(&uniq, &self.model.device)?;
        let e = self.model.embed(&x, &lens)?;
        let phi = self.model.phi(&e)?;
        let pc: Vec<u32> = pos.iter().step_by(2).copied().collect();
        let pr: Vec<u32> = pos.iter().skip(1).step_by(2).copied().collect();
        let delta = (rows(&phi, &pc)? - rows(&phi, &pr)?)?;
        let mut m = serde_json::Map::new();
        let (loss, mu) = if stage == "bt" {
            let d = delta.squeeze(D::Minus1)?;
            (loss::bt_loss(&d)?.mean_all()?, d)
        } else {
            // Stage 1: each pair weighted by its user's free logits.
            let free = self
                .model
                .free_logits
                .as_ref()
                .ok_or_else(|| candle_core::Error::Msg("no free logits".into()))?;
            let seen_pos: HashMap<usize, u32> = self
                .ds
                .seen
                .iter()
                .enumerate()
                .map(|(i, &u)| (u, i as u32))
                .collect();
            let uidx: Vec<u32> = chosen
                .iter()
                .map(|&i| seen_pos[&self.ds.triplet_user[i]])
                .collect();
            let w = candle_nn::ops::softmax(&rows(free, &uidx)?, D::Minus1)?;
            let (mu, _) = loss::moments(&w, &delta)?;
            let lpair = loss::pair_loss(&w, &delta, self.model.cfg.loss.objective)?.mean_all()?;
            m.insert("pair_loss".into(), json!(lpair.to_scalar::<f32>()?));
            let total = self.remedies(lpair, &phi, &w, &mut m)?;
            (total, mu)
        };
        let acc = pairwise_accuracy(&mu)?;
        m.insert("pairs".into(), json!(chosen.len()));
        m.insert("texts".into(), json!(uniq.len()));
        Ok(StepOut {
            loss,
            metrics: m,
            acc,
        })
    }

    /// Adds the §3b remedy terms (correlation penalty, balancing, entropy) and their metrics.
    fn remedies(
        &self,
        mut total: Tensor,
        phi: &Tensor,
        w: &Tensor,
        m: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<Tensor> {
        let l = &self.model.cfg.loss;
        let corr = loss::phi_correlation_penalty(phi)?;
        let bal = loss::usage_balance(w)?;
        let ent = loss::weight_entropy(w)?;
        if l.lambda_phi > 0.0 {
            total = (total + (&corr * l.lambda_phi)?)?;
        }
        if l.lambda_bal > 0.0 {
            total = (total + (&bal * l.lambda_bal)?)?;
        }
        if l.lambda_ent > 0.0 {
            total = (total + (&ent * l.lambda_ent)?)?;
        }
        let k = w.dim(D::Minus1)?;
        let top = w.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let mut used = vec![false; k];
        for t in top {
            used[t as usize] = true;
        }
        m.insert("phi_corr_sq".into(), json!(corr.to_scalar::<f32>()?));
        m.insert("phi_corr".into(), json!(mean_offdiag_corr(phi)?));
        m.insert("balance".into(), json!(bal.to_scalar::<f32>()?));
        m.insert(
            "w_entropy".into(),
            json!(ent.to_scalar::<f32>()? as f64 / (k as f64).ln().max(1e-12)),
        );
        m.insert(
            "top_bases".into(),
            json!(used.iter().filter(|u| **u).count()),
        );
        Ok(total)
    }

    /// The users and target triplets of an end-to-end step: all target pairs on a few prompts
    /// (prompt batching) or a few users with sampled targets (user batching).
    fn e2e_batch(
        &self,
        stage: &str,
        groups: &[Vec<usize>],
        epoch: usize,
        within: usize,
        step: usize,
    ) -> (Vec<usize>, Vec<usize>) {
        let t = &self.model.cfg.train;
        match t.batching {
            Batching::Prompts => {
                let mut order: Vec<usize> = (0..groups.len()).collect();
                order.shuffle(&mut rng_for(t.seed, stage, epoch as u64));
                let targets: Vec<usize> = order
                    .iter()
                    .skip(within * t.prompts_per_step)
                    .take(t.prompts_per_step)
                    .flat_map(|&g| groups[g].iter().copied())
                    .collect();
                let users: Vec<usize> = targets.iter().map(|&i| self.ds.triplet_user[i]).collect();
                let (users, _) = dedup(&users);
                (users, targets)
            }
            Batching::Users => {
                let per_round = self.ds.seen.len().div_ceil(t.users_per_step);
                let mut order = self.ds.seen.clone();
                order.shuffle(&mut rng_for(t.seed, stage, (step / per_round) as u64));
                let users: Vec<usize> = order
                    .iter()
                    .skip((step % per_round) * t.users_per_step)
                    .take(t.users_per_step)
                    .copied()
                    .collect();
                let mut rng = rng_for(t.seed, &format!("{stage}-targets"), step as u64);
                let mut targets = Vec::new();
                for &u in &users {
                    let mut tg = self.ds.users[u].targets.clone();
                    tg.shuffle(&mut rng);
                    tg.truncate(t.targets_per_user);
                    targets.extend(tg);
                }
                let _ = (epoch, within);
                (users, targets)
            }
        }
    }

    /// End-to-end step (SPEC §3): encoder posterior from each user's reference pairs, L_VA on
    /// the target pairs, L_div, KL and the remedies.
    fn vrf_step(
        &mut self,
        users: &[usize],
        targets: &[usize],
        step: usize,
        total_steps: usize,
    ) -> Result<StepOut> {
        let cfg = self.model.cfg.clone();
        let idx = &self.corpus.index;
        let local: HashMap<usize, usize> = users.iter().enumerate().map(|(i, &u)| (u, i)).collect();
        let (mut ref_tr, mut ref_seg) = (vec![], vec![]);
        for (ui, &u) in users.iter().enumerate() {
            let ud = &self.ds.users[u];
            ref_tr.extend(ud.refs.iter().copied());
            ref_seg.extend(std::iter::repeat_n(ui, ud.refs.len()));
        }
        let rc: Vec<usize> = ref_tr.iter().map(|&i| idx.chosen_text[i]).collect();
        let rr: Vec<usize> = ref_tr.iter().map(|&i| idx.rejected_text[i]).collect();
        // Reference states are detached (the encoder sends no gradient into the backbone).
        let (e_c, e_r) = match &self.ref_cache {
            Some(cache) => (
                cache.gather(&rc, &self.model.device)?,
                cache.gather(&rr, &self.model.device)?,
            ),
            None => {
                let both: Vec<usize> = rc.iter().chain(rr.iter()).copied().collect();
                let (ru, rpos) = dedup(&both);
                let (rx, rl) = self.corpus.batch(&ru, &self.model.device)?;
                let er = self.model.embed(&rx, &rl)?.detach();
                let (pc, pr) = rpos.split_at(rc.len());
                (rows(&er, pc)?, rows(&er, pr)?)
            }
        };
        let feats = self.model.ref_features(&e_c, &e_r)?;
        let (mu, var) = self.model.posterior(&feats, &ref_seg, users.len())?;
        let bases = self.model.bases()?.clone();
        let w = bases.weights(&mu, &var)?;

        let texts: Vec<usize> = targets
            .iter()
            .flat_map(|&i| [idx.chosen_text[i], idx.rejected_text[i]])
            .collect();
        let (tu, tpos) = dedup(&texts);
        let (tx, tl) = self.corpus.batch(&tu, &self.model.device)?;
        let e = self.model.embed(&tx, &tl)?;
        if let Some(cache) = self.ref_cache.as_mut() {
            cache.update(&tu, &e.detach())?;
        }
        let phi = self.model.phi(&e)?;
        let tc: Vec<u32> = tpos.iter().step_by(2).copied().collect();
        let trj: Vec<u32> = tpos.iter().skip(1).step_by(2).copied().collect();
        let delta = (rows(&phi, &tc)? - rows(&phi, &trj)?)?;
        let seg32: Vec<u32> = targets
            .iter()
            .map(|&i| local[&self.ds.triplet_user[i]] as u32)
            .collect();
        let wt = rows(&w, &seg32)?;
        let lpair = loss::pair_loss(&wt, &delta, cfg.loss.objective)?.mean_all()?;
        let (mu_d, _) = loss::moments(&wt, &delta)?;
        let ldiv = bases.diversity_loss(self.state.delta.unwrap_or(cfg.loss.delta))?;
        let eps = self.noise(step, users.len())?;
        let kl = bases.kl(&mu, &var, &eps, cfg.loss.prior)?.mean_all()?;
        let beta = self.beta_at(step, total_steps);
        let mut total = lpair.clone();
        if cfg.loss.lambda_div > 0.0 {
            total = (total + (&ldiv * cfg.loss.lambda_div)?)?;
        }
        if beta > 0.0 {
            total = (total + (&kl * beta)?)?;
        }
        let mut m = serde_json::Map::new();
        total = self.remedies(total, &phi, &w, &mut m)?;
        m.insert("pair_loss".into(), json!(lpair.to_scalar::<f32>()?));
        m.insert("div".into(), json!(ldiv.to_scalar::<f32>()?));
        m.insert("kl".into(), json!(kl.to_scalar::<f32>()?));
        m.insert("beta".into(), json!(beta));
        m.insert("users".into(), json!(users.len()));
        m.insert("pairs".into(), json!(targets.len()));
        m.insert("texts".into(), json!(tu.len()));
        let acc = pairwise_accuracy(&mu_d)?;
        Ok(StepOut {
            loss: total,
            metrics: m,
            acc,
        })
    }

    /// Monte Carlo noise ε `[S, U, d]` from the run's seeded RNG (reproducible on CPU).
    fn noise(&self, step: usize, users: usize) -> Result<Tensor> {
        let c = &self.model.cfg;
        let (s, d) = (c.loss.kl_samples, c.model.d);
        let mut rng = rng_for(c.train.seed, "kl-noise", step as u64);
        let v: Vec<f32> = (0..s * users * d)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        Tensor::from_vec(v, (s, users, d), &self.model.device)
    }

    /// Stage 2: backbone and heads frozen; the encoder (and bases) learn to reproduce the
    /// stage-1 weights of each seen user from random subsets of its reference pairs. The stopping
    /// epoch is the one with the best accuracy on held-out seen users' target pairs.
    fn stage2(&mut self) -> anyhow::Result<()> {
        let cfg = self.model.cfg.clone();
        let t = &cfg.train;
        let free = self
            .model
            .free_logits
            .clone()
            .ok_or_else(|| anyhow::anyhow!("stage 2 needs stage-1 free logits"))?;
        let w_free = candle_nn::ops::softmax(&free.detach(), D::Minus1)?;
        let seen = self.ds.seen.clone();
        let mut ids: Vec<usize> = (0..seen.len()).collect();
        ids.shuffle(&mut rng_for(t.seed, "holdout", 0));
        let n_hold = ((seen.len() as f64) * t.holdout_frac).round() as usize;
        let n_hold = if seen.len() > 1 {
            n_hold.min(seen.len() - 1)
        } else {
            0
        };
        let (hold, train_ids) = ids.split_at(n_hold);
        let (hold, train_ids) = (hold.to_vec(), train_ids.to_vec());

        // Frozen backbone: embed every reference and target text of the seen users once.
        let idx = &self.corpus.index;
        let mut need = Vec::new();
        for &u in &seen {
            let ud = &self.ds.users[u];
            for &i in ud.refs.iter().chain(ud.targets.iter()) {
                need.push(idx.chosen_text[i]);
                need.push(idx.rejected_text[i]);
            }
        }
        let (uniq, _) = dedup(&need);
        let e_all = self.corpus.embed(&self.model, &uniq, t.eval_batch)?;
        let pos: HashMap<usize, u32> = uniq
            .iter()
            .enumerate()
            .map(|(i, &x)| (x, i as u32))
            .collect();
        let phi_all = self.model.phi(&e_all)?.detach();
        let ref_feats = |tr: &[usize]| -> Result<Tensor> {
            let c: Vec<u32> = tr.iter().map(|&i| pos[&idx.chosen_text[i]]).collect();
            let r: Vec<u32> = tr.iter().map(|&i| pos[&idx.rejected_text[i]]).collect();
            self.model
                .ref_features(&rows(&e_all, &c)?, &rows(&e_all, &r)?)
        };

        if self.state.delta.is_none() {
            self.state.delta = Some(self.initial_delta()?);
        }
        let delta_margin = self.state.delta.unwrap_or(cfg.loss.delta);
        let groups = vec![ParamGroup {
            vars: self
                .model
                .vars
                .vars_with_prefix(&[prefix::ENCODER, prefix::BASES]),
            lr_mult: 1.0,
        }];
        let mut opt = AdamW::new(groups, t.weight_decay);
        let spe = train_ids.len().div_ceil(t.s2_users_per_step).max(1);
        let total = spe * t.s2_epochs;
        let bar = self.bar(total as u64, "s2");
        let mut metrics_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run.join("metrics.jsonl"))?;
        let mut best: Option<(f64, usize, Snapshot)> = None;
        let snapshot = |m: &RewardModel| -> Result<Snapshot> {
            m.vars
                .vars_with_prefix(&[prefix::ENCODER, prefix::BASES])
                .into_iter()
                .map(|(n, v)| v.as_tensor().copy().map(|t| (n, t)))
                .collect::<Result<Snapshot>>()
        };
        for epoch in 0..t.s2_epochs {
            let mut order = train_ids.clone();
            order.shuffle(&mut rng_for(t.seed, "s2", epoch as u64));
            let mut ep_loss = 0.0;
            for (b, chunk) in order.chunks(t.s2_users_per_step).enumerate() {
                let step = epoch * spe + b;
                let mut rng = rng_for(t.seed, "s2-subsets", step as u64);
                let (mut tr, mut seg) = (vec![], vec![]);
                for (ui, &si) in chunk.iter().enumerate() {
                    let mut r = self.ds.users[seen[si]].refs.clone();
                    r.shuffle(&mut rng);
                    let lo = t.s2_min_refs.min(r.len());
                    let k = rand::Rng::random_range(&mut rng, lo..=r.len());
                    r.truncate(k);
                    seg.extend(std::iter::repeat_n(ui, r.len()));
                    tr.extend(r);
                }
                let feats = ref_feats(&tr)?;
                let (mu, var) = self.model.posterior(&feats, &seg, chunk.len())?;
                let logw = self.model.bases()?.log_weights(&mu, &var)?;
                let target = rows(
                    &w_free,
                    &chunk.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                )?;
                // Distillation plus the method's own terms on the encoder and bases: the
                // diversity hinge and the KL to the prior (so ablations (b)–(d) act here too).
                let bases = self.model.bases()?;
                let mut loss = loss::distill_kl(&target, &logw)?;
                if cfg.loss.lambda_div > 0.0 {
                    loss = (loss + (bases.diversity_loss(delta_margin)? * cfg.loss.lambda_div)?)?;
                }
                if cfg.loss.beta > 0.0 {
                    let eps = self.noise(step, chunk.len())?;
                    loss = (loss
                        + (bases.kl(&mu, &var, &eps, cfg.loss.prior)?.mean_all()?
                            * cfg.loss.beta)?)?;
                }
                let lr = t.s2_lr * lr_factor(step, total, t.warmup);
                let grads = loss.backward()?;
                opt.step(&grads, lr, t.grad_clip)?;
                let lv = loss.to_scalar::<f32>()? as f64;
                ep_loss += lv / spe as f64;
                bar.inc(1);
            }
            let hold_acc = if hold.is_empty() {
                f64::NAN
            } else {
                let (mut tr, mut seg, mut tg, mut tseg) = (vec![], vec![], vec![], vec![]);
                for (ui, &si) in hold.iter().enumerate() {
                    let ud = &self.ds.users[seen[si]];
                    tr.extend(ud.refs.iter().copied());
                    seg.extend(std::iter::repeat_n(ui, ud.refs.len()));
                    tg.extend(ud.targets.iter().copied());
                    tseg.extend(std::iter::repeat_n(ui as u32, ud.targets.len()));
                }
                let (mu, var) = self.model.posterior(&ref_feats(&tr)?, &seg, hold.len())?;
                let w = self.model.bases()?.weights(&mu, &var)?;
                let c: Vec<u32> = tg.iter().map(|&i| pos[&idx.chosen_text[i]]).collect();
                let r: Vec<u32> = tg.iter().map(|&i| pos[&idx.rejected_text[i]]).collect();
                let delta = (rows(&phi_all, &c)? - rows(&phi_all, &r)?)?;
                let (mu_d, _) = loss::moments(&rows(&w, &tseg)?, &delta)?;
                pairwise_accuracy(&mu_d)?
            };
            writeln!(
                metrics_file,
                "{}",
                json!({"stage": "s2", "epoch": epoch + 1, "loss": ep_loss, "holdout_acc": hold_acc,
                       "elapsed_s": self.started.elapsed().as_secs_f64()})
            )?;
            bar.set_message(format!("kl {ep_loss:.4} held-out acc {hold_acc:.3}"));
            if hold.is_empty() || best.as_ref().is_none_or(|(a, _, _)| hold_acc > *a) {
                best = Some((hold_acc, epoch + 1, snapshot(&self.model)?));
            }
        }
        bar.finish();
        if let Some((acc, ep, snap)) = best {
            for (n, t) in snap {
                self.model.vars.insert(&n, t)?;
            }
            self.state.s2_best_epoch = Some(ep);
            if self.progress {
                eprintln!("s2: kept epoch {ep} (held-out seen users' target accuracy {acc:.4})");
            }
        }
        Ok(())
    }
}

/// Mean off-diagonal Pearson correlation between the K columns of `phi` `[N, K]` (NaN if K < 2).
pub fn mean_offdiag_corr(phi: &Tensor) -> Result<f64> {
    let (n, k) = phi.dims2()?;
    if k < 2 || n < 2 {
        return Ok(f64::NAN);
    }
    let c = phi.broadcast_sub(&phi.mean_keepdim(0)?)?;
    let c = c.broadcast_div(&(c.sqr()?.sum_keepdim(0)?.sqrt()? + 1e-12)?)?;
    let corr = c.t()?.matmul(&c)?.to_vec2::<f32>()?;
    let mut s = 0.0;
    for (i, row) in corr.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            if i != j {
                s += *v as f64;
            }
        }
    }
    Ok(s / (k * (k - 1)) as f64)
}
