//! Stage 2 of the staged fit (docs/METHOD.md §3b): backbone and heads frozen, the encoder (and bases) learn
//! to reproduce each seen user's stage-1 weights from random subsets of its reference pairs.

use candle_core::{Tensor, D};
use rand::seq::SliceRandom;
use serde_json::json;

use super::{rng_for, MetricsLog, Stage, Trainer};
use crate::config::{Objective, StageTwoPool};
use crate::corpus::rows;
use crate::encoder::Prior;
use crate::error::{Result, TrainError};
use crate::eval::{group_accuracy, posteriors, user_posterior, Features};
use crate::loss;
use crate::model::{prefix, RewardModel};
use crate::optim::{lr_factor, AdamW, ParamGroup};

/// Named copies of variables (stage 2 keeps its best epoch's encoder and bases).
type Snapshot = Vec<(String, Tensor)>;

/// A copy of the encoder's and bases' variables.
fn snapshot(m: &RewardModel) -> candle_core::Result<Snapshot> {
    m.vars
        .vars_with_prefix(&[prefix::ENCODER, prefix::BASES])
        .into_iter()
        .map(|(n, v)| v.as_tensor().copy().map(|t| (n, t)))
        .collect()
}

/// Puts a [`snapshot`] back into the model's variables.
fn restore(m: &RewardModel, snap: &Snapshot) -> candle_core::Result<()> {
    for (n, t) in snap {
        m.vars.insert(n, t.clone())?;
    }
    Ok(())
}

impl Trainer<'_> {
    /// Runs stage 2. The stopping epoch is the one with the best accuracy on held-out seen
    /// users' target pairs; its encoder and bases are kept. With a population prior, the
    /// prior's precision is then scaled by the factor the held-out users of
    /// `train.s2_calib_folds` folds choose ([`Trainer::calibrate_prior`]).
    pub(super) fn stage2(&mut self) -> Result<()> {
        let cfg = self.model.cfg.clone();
        let t = &cfg.train;
        let free = self
            .model
            .free_logits
            .clone()
            .ok_or_else(|| TrainError::Other("stage 2 needs stage-1 free logits".into()))?;
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

        // Frozen backbone: embed every reference and target text of the seen users once.
        let f = Features::embed(
            &self.model,
            self.corpus,
            seen.iter().flat_map(|&u| {
                let ud = &self.ds.users[u];
                ud.refs.iter().chain(ud.targets.iter()).copied()
            }),
        )?;

        if self.state.delta.is_none() {
            self.state.delta = Some(self.initial_delta()?);
        }
        // Fold j holds out the j-th block of `n_hold` shuffled seen users. Folds 1… train an
        // encoder only to score the prior's factors on their held-out users; fold 0's encoder
        // is the one kept, so it does not depend on how many folds score the prior.
        let folds = if cfg.model.prior && n_hold > 0 {
            t.s2_calib_folds.clamp(1, seen.len() / n_hold)
        } else {
            1
        };
        let split = |j: usize| {
            let hold: Vec<usize> = ids[j * n_hold..(j + 1) * n_hold].to_vec();
            let train: Vec<usize> = ids.iter().copied().filter(|i| !hold.contains(i)).collect();
            (hold, train)
        };
        let mut scale_scores = vec![0.0; PRIOR_SCALES.len()];
        if folds > 1 {
            let start = snapshot(&self.model)?;
            for j in 1..folds {
                let (hold, train) = split(j);
                let hold_users: Vec<usize> = hold.iter().map(|&si| seen[si]).collect();
                let draws = HoldoutDraws::new(self, &hold_users, cfg.model.prior);
                self.train_encoder(&f, &w_free, &seen, &train, &draws, false)?;
                for (sum, s) in scale_scores.iter_mut().zip(self.prior_scores(&f, &draws)?) {
                    *sum += s;
                }
                restore(&self.model, &start)?;
            }
        }
        let (hold, train_ids) = split(0);
        let hold_users: Vec<usize> = hold.iter().map(|&si| seen[si]).collect();
        let draws = HoldoutDraws::new(self, &hold_users, cfg.model.prior);
        if let Some((acc, ep)) = self.train_encoder(&f, &w_free, &seen, &train_ids, &draws, true)? {
            self.state.s2_best_epoch = Some(ep);
            if self.progress {
                eprintln!(
                    "s2: kept epoch {ep} (held-out seen users' target accuracy {acc:.4}, mean over k)"
                );
            }
        }
        if cfg.model.prior && !hold.is_empty() {
            for (sum, s) in scale_scores.iter_mut().zip(self.prior_scores(&f, &draws)?) {
                *sum += s;
            }
            let a = self.calibrate_prior(&scale_scores)?;
            self.state.s2_prior_scale = Some(a);
            if self.progress {
                eprintln!(
                    "s2: population prior's precision × {a} (held-out seen users of {folds} fold(s), k = 0…|R|)"
                );
            }
        }
        Ok(())
    }

    /// Trains the encoder and bases on the seen users at positions `train_ids` of `seen`, and
    /// keeps the epoch with the best score on `draws`' held-out users (every epoch when there
    /// are none). Returns that score and epoch. `main`: the kept fit, with a progress bar and
    /// metrics lines.
    fn train_encoder(
        &mut self,
        f: &Features,
        w_free: &Tensor,
        seen: &[usize],
        train_ids: &[usize],
        draws: &HoldoutDraws,
        main: bool,
    ) -> Result<Option<(f64, usize)>> {
        let cfg = self.model.cfg.clone();
        let t = &cfg.train;
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
        let bar = if main {
            self.bar(total as u64, Stage::Stage2)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut log = if main {
            Some(MetricsLog::open(&self.run)?)
        } else {
            None
        };
        let has_hold = !draws.targets.is_empty();
        let mut best: Option<(f64, usize, Snapshot)> = None;
        for epoch in 0..t.s2_epochs {
            let mut order = train_ids.to_vec();
            order.shuffle(&mut rng_for(t.seed, Stage::Stage2.as_str(), epoch as u64));
            let mut ep_loss = 0.0;
            for (b, chunk) in order.chunks(t.s2_users_per_step).enumerate() {
                let step = epoch * spe + b;
                let mut rng = rng_for(t.seed, "s2-subsets", step as u64);
                let subsets: Vec<Vec<usize>> = chunk
                    .iter()
                    .map(|&si| {
                        let user = &self.ds.users[seen[si]];
                        // Subset sizes follow inference (1..=|R_u|); the pairs may also come
                        // from the user's target pairs, which shows the encoder more subsets.
                        let mut r = user.refs.clone();
                        let n = r.len();
                        if t.s2_pool == StageTwoPool::All {
                            r.extend(user.targets.iter().copied());
                        }
                        r.shuffle(&mut rng);
                        // With a population prior the empty subset (cold start) is trained too.
                        let lo = if cfg.model.prior {
                            0
                        } else {
                            t.s2_min_refs.min(n)
                        };
                        let k = rand::Rng::random_range(&mut rng, lo..=n);
                        r.truncate(k);
                        r
                    })
                    .collect();
                let (mu, var) = user_posterior(&self.model, f, self.corpus, &subsets)?;
                let logw = self.model.bases()?.log_weights(&mu, &var)?;
                let target = rows(w_free, &chunk.iter().map(|&i| i as u32).collect::<Vec<_>>())?;
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
                if cfg.loss.lambda_var > 0.0 {
                    let users: Vec<usize> = chunk.iter().map(|&si| seen[si]).collect();
                    let (keep, err) = self.subset_errors(f, &users, &subsets, &logw)?;
                    loss = (loss
                        + (loss::variance_tracking(&var, &keep, &err)? * cfg.loss.lambda_var)?)?;
                }
                let lr = t.s2_lr * lr_factor(step, total, t.warmup);
                let grads = loss.backward()?;
                opt.step(&grads, lr, t.grad_clip)?;
                let lv = loss.to_scalar::<f32>()? as f64;
                ep_loss += lv / spe as f64;
                bar.inc(1);
            }
            let hold_acc = if has_hold {
                draws.score(&self.model, f, self.corpus)?
            } else {
                f64::NAN
            };
            if let Some(log) = log.as_mut() {
                log.write(
                    &json!({"stage": Stage::Stage2, "epoch": epoch + 1, "loss": ep_loss,
                                  "holdout_acc": hold_acc,
                                  "elapsed_s": self.started.elapsed().as_secs_f64()}),
                )?;
            }
            bar.set_message(format!("kl {ep_loss:.4} held-out acc {hold_acc:.3}"));
            if !has_hold || best.as_ref().is_none_or(|(a, _, _)| hold_acc > *a) {
                best = Some((hold_acc, epoch + 1, snapshot(&self.model)?));
            }
        }
        bar.finish();
        Ok(match best {
            Some((acc, ep, snap)) => {
                restore(&self.model, &snap)?;
                Some((acc, ep))
            }
            None => None,
        })
    }

    /// Each user's mean Eq. 8 loss on their pairs (reference and target) outside the subset their
    /// posterior came from, under that posterior's weights (no gradient): the error σ² is trained
    /// to track. Returns the positions in `users` that have such pairs, and their errors.
    fn subset_errors(
        &self,
        f: &Features,
        users: &[usize],
        subsets: &[Vec<usize>],
        logw: &Tensor,
    ) -> Result<(Vec<u32>, Vec<f64>)> {
        let mut pairs = Vec::new();
        let mut owner = Vec::new();
        for (i, (&u, sub)) in users.iter().zip(subsets).enumerate() {
            let ud = &self.ds.users[u];
            for &p in ud.refs.iter().chain(&ud.targets) {
                if !sub.contains(&p) {
                    pairs.push(p);
                    owner.push(i as u32);
                }
            }
        }
        if pairs.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let w = rows(&logw.detach().exp()?, &owner)?;
        let per_pair =
            loss::pair_loss(&w, &f.delta(self.corpus, &pairs)?, Objective::Va)?.to_vec1::<f32>()?;
        let mut sum = vec![0.0f64; users.len()];
        let mut n = vec![0usize; users.len()];
        for (&o, &l) in owner.iter().zip(&per_pair) {
            sum[o as usize] += f64::from(l);
            n[o as usize] += 1;
        }
        let keep: Vec<u32> = (0..users.len() as u32)
            .filter(|&i| n[i as usize] > 0)
            .collect();
        let err = keep
            .iter()
            .map(|&i| (sum[i as usize] / n[i as usize] as f64).max(1e-6))
            .collect();
        Ok((keep, err))
    }

    /// The held-out score ([`HoldoutDraws::score`]) of each factor of [`PRIOR_SCALES`] on the
    /// learned prior's precision; the prior is left as it was.
    fn prior_scores(&mut self, f: &Features, draws: &HoldoutDraws) -> Result<Vec<f64>> {
        let Some(prior) = self.learned_prior()? else {
            return Ok(vec![0.0; PRIOR_SCALES.len()]);
        };
        let name = format!("{}prior.log_var", prefix::ENCODER);
        let mut out = Vec::with_capacity(PRIOR_SCALES.len());
        for a in PRIOR_SCALES {
            self.model
                .vars
                .insert(&name, prior.raw_log_var_scaled(a)?)?;
            out.push(draws.score(&self.model, f, self.corpus)?);
        }
        self.model.vars.insert(&name, prior.log_var)?;
        Ok(out)
    }

    /// A copy of the learned prior (its log-variance variable changes with each factor tried;
    /// the mean is not touched), or `None` without one.
    fn learned_prior(&self) -> Result<Option<Prior>> {
        Ok(match self.model.encoder.as_ref().and_then(|e| e.prior()) {
            Some(p) => Some(Prior {
                mean: p.mean.clone(),
                log_var: p.log_var.copy()?,
            }),
            None => None,
        })
    }

    /// Scales the learned prior's precision by the factor in [`PRIOR_SCALES`] with the best
    /// summed held-out score `scores` (one per factor, [`Trainer::prior_scores`] over the
    /// folds): held-out seen users, whom the encoder scoring them never trained on, at k = 0, 1,
    /// 3, 5 and all of their reference pairs. The encoder, trained on the other seen users'
    /// subsets, is surer of them than of new users; this is the one number that says how much a
    /// new user's first answers should count against the population. Returns the factor.
    fn calibrate_prior(&mut self, scores: &[f64]) -> Result<f64> {
        let Some(prior) = self.learned_prior()? else {
            return Ok(1.0);
        };
        let mut best: Option<(f64, f64)> = None;
        for (&a, &score) in PRIOR_SCALES.iter().zip(scores) {
            // Ties keep the learned prior (a = 1 comes first among equals by distance).
            let better = best.is_none_or(|(s, b)| {
                score > s + 1e-9 || (score > s - 1e-9 && a.ln().abs() < b.ln().abs())
            });
            if better {
                best = Some((score, a));
            }
        }
        let a = best.map_or(1.0, |(_, a)| a);
        let name = format!("{}prior.log_var", prefix::ENCODER);
        self.model
            .vars
            .insert(&name, prior.raw_log_var_scaled(a)?)?;
        Ok(a)
    }
}

/// Held-out seen users' reference pairs cut to k = 0 (with a prior), 1, 3, 5 and all (one fixed
/// shuffle per user), and their target pairs: the few-shot score stage 2 keeps its epoch and its
/// prior by, so neither is chosen for users who gave all their answers only.
struct HoldoutDraws {
    by_k: Vec<Vec<Vec<usize>>>,
    targets: Vec<Vec<usize>>,
}

impl HoldoutDraws {
    fn new(trainer: &Trainer<'_>, users: &[usize], with_empty: bool) -> Self {
        let mut rng = rng_for(trainer.model.cfg.train.seed, "s2-prior-draws", 0);
        let shuffled: Vec<Vec<usize>> = users
            .iter()
            .map(|&u| {
                let mut r = trainer.ds.users[u].refs.clone();
                r.shuffle(&mut rng);
                r
            })
            .collect();
        let by_k = [0, 1, 3, 5, usize::MAX]
            .iter()
            .filter(|&&k| k > 0 || with_empty)
            .map(|&k| {
                shuffled
                    .iter()
                    .map(|r| r[..k.min(r.len())].to_vec())
                    .collect()
            })
            .collect();
        let targets = users
            .iter()
            .map(|&u| trainer.ds.users[u].targets.clone())
            .collect();
        Self { by_k, targets }
    }

    /// Mean target accuracy over the draws' k.
    fn score(
        &self,
        model: &RewardModel,
        f: &Features,
        corpus: &crate::corpus::Corpus,
    ) -> Result<f64> {
        let mut score = 0.0;
        for refs in &self.by_k {
            let (_, _, w) = posteriors(model, f, corpus, refs)?;
            score += group_accuracy(f, corpus, &self.targets, &w)?;
        }
        Ok(score / self.by_k.len() as f64)
    }
}

/// Factors tried on the learned prior's precision after stage 2 ([`Trainer::calibrate_prior`]).
const PRIOR_SCALES: [f64; 8] = [0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0];
