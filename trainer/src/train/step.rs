//! One gradient step of a stage: its batch, loss terms and step metrics.

use std::collections::HashMap;

use candle_core::{Tensor, D};
use rand::seq::SliceRandom;
use serde_json::json;

use super::{rng_for, Stage, Trainer};
use crate::config::{Batching, StageOneUsers};
use crate::corpus::{dedup, rows};
use crate::encoder::segments;
use crate::error::{Result, TrainError};
use crate::eval::pair_texts;
use crate::loss;
use crate::metrics::{mean_offdiag_corr, pairwise_accuracy};

/// Outcome of one training step.
pub(super) struct StepOut {
    /// The loss to differentiate.
    pub(super) loss: Tensor,
    /// Step metrics for `metrics.jsonl`.
    pub(super) metrics: serde_json::Map<String, serde_json::Value>,
    /// Training-batch pairwise accuracy.
    pub(super) acc: f64,
}

/// The embedded texts of a batch of pairs, each unique text once.
struct PairBatch {
    /// Unique text ids, in embedding order.
    texts: Vec<usize>,
    /// Backbone states `[texts, H]`.
    e: Tensor,
    /// Basis rewards `[texts, K]`.
    phi: Tensor,
    /// Basis-reward differences chosen − rejected `[pairs, K]`.
    delta: Tensor,
}

impl Trainer<'_> {
    /// Embeds the chosen and rejected texts of `triplets` and takes their reward differences.
    fn pair_batch(&self, triplets: &[usize]) -> Result<PairBatch> {
        let (texts, pos) = dedup(&pair_texts(self.corpus, triplets.iter().copied()));
        let e = match &self.frozen {
            Some(cache) => cache.gather(&texts, &self.model.device)?,
            None => self.corpus.states_train(&self.model, &texts)?,
        };
        let phi = self.model.phi(&e)?;
        // `pair_texts` interleaves chosen and rejected: even positions are chosen rows.
        let chosen: Vec<u32> = pos.iter().step_by(2).copied().collect();
        let rejected: Vec<u32> = pos.iter().skip(1).step_by(2).copied().collect();
        let delta = (rows(&phi, &chosen)? - rows(&phi, &rejected)?)?;
        Ok(PairBatch {
            texts,
            e,
            phi,
            delta,
        })
    }

    /// The triplets on the prompts of step `within` of `epoch` (prompts shuffled per epoch).
    pub(super) fn prompt_batch(
        &self,
        stage: Stage,
        groups: &[Vec<usize>],
        epoch: usize,
        within: usize,
    ) -> Vec<usize> {
        let t = &self.model.cfg.train;
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.shuffle(&mut rng_for(t.seed, stage.as_str(), epoch as u64));
        order
            .iter()
            .skip(within * t.prompts_per_step)
            .take(t.prompts_per_step)
            .flat_map(|&g| groups[g].iter().copied())
            .collect()
    }

    /// Prompt-grouped step (BT, stage 1): all training pairs on a few prompts.
    pub(super) fn prompt_step(
        &self,
        stage: Stage,
        groups: &[Vec<usize>],
        epoch: usize,
        within: usize,
    ) -> Result<StepOut> {
        let chosen = self.prompt_batch(stage, groups, epoch, within);
        let PairBatch {
            texts, phi, delta, ..
        } = self.pair_batch(&chosen)?;
        let mut m = serde_json::Map::new();
        let (loss, mu) = if stage == Stage::Bt {
            let d = delta.squeeze(D::Minus1)?;
            (loss::bt_loss(&d)?.mean_all()?, d)
        } else {
            // Stage 1: each pair weighted by its user's free logits.
            let free =
                self.model.free_logits.as_ref().ok_or_else(|| {
                    TrainError::Other("stage 1 needs free per-user logits".into())
                })?;
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
            let t = &self.model.cfg.train;
            let vectors = stage == Stage::Stage1 && t.s1_users == StageOneUsers::Vectors;
            let own = rows(free, &uidx)?;
            let w = if vectors {
                own
            } else {
                candle_nn::ops::softmax(&own, D::Minus1)?
            };
            let (mu, _) = loss::moments(&w, &delta)?;
            let lpair = if vectors {
                // Free user vectors: r_u = u_uᵀφ, plain BT (no simplex, so no σ_Δ²).
                let l2 = (free.sqr()?.mean_all()? * t.s1_vector_l2)?;
                (loss::bt_loss(&mu)?.mean_all()? + l2)?
            } else {
                loss::pair_loss(&w, &delta, self.model.cfg.loss.objective)?.mean_all()?
            };
            m.insert("pair_loss".into(), json!(lpair.to_scalar::<f32>()?));
            // The diagnostics read weights on the simplex (config validation keeps the
            // balancing and entropy terms away from user vectors).
            let w_diag = if vectors {
                candle_nn::ops::softmax(&w, D::Minus1)?
            } else {
                w
            };
            let total = self.remedies(lpair, &phi, &w_diag, &mut m)?;
            (total, mu)
        };
        let acc = pairwise_accuracy(&mu)?;
        m.insert("pairs".into(), json!(chosen.len()));
        m.insert("texts".into(), json!(texts.len()));
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
    pub(super) fn e2e_batch(
        &self,
        stage: Stage,
        groups: &[Vec<usize>],
        epoch: usize,
        within: usize,
        step: usize,
    ) -> (Vec<usize>, Vec<usize>) {
        let t = &self.model.cfg.train;
        match t.batching {
            Batching::Prompts => {
                let targets = self.prompt_batch(stage, groups, epoch, within);
                let users: Vec<usize> = targets.iter().map(|&i| self.ds.triplet_user[i]).collect();
                let (users, _) = dedup(&users);
                (users, targets)
            }
            Batching::Users => {
                let per_round = self.ds.seen.len().div_ceil(t.users_per_step);
                let mut order = self.ds.seen.clone();
                order.shuffle(&mut rng_for(
                    t.seed,
                    stage.as_str(),
                    (step / per_round) as u64,
                ));
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
                (users, targets)
            }
        }
    }

    /// End-to-end step (docs/METHOD.md §3): encoder posterior from each user's reference pairs, L_VA on
    /// the target pairs, L_div, KL and the remedies.
    pub(super) fn vrf_step(
        &mut self,
        users: &[usize],
        targets: &[usize],
        step: usize,
        total_steps: usize,
    ) -> Result<StepOut> {
        let cfg = self.model.cfg.clone();
        let idx = &self.corpus.index;
        let local: HashMap<usize, usize> = users.iter().enumerate().map(|(i, &u)| (u, i)).collect();
        let refs: Vec<&[usize]> = users.iter().map(|&u| &self.ds.users[u].refs[..]).collect();
        let ref_tr: Vec<usize> = refs.concat();
        let ref_seg = segments(&refs.iter().map(|r| r.len()).collect::<Vec<_>>());
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
                let er = self.corpus.states(&self.model, &ru)?;
                let (pc, pr) = rpos.split_at(rc.len());
                (rows(&er, pc)?, rows(&er, pr)?)
            }
        };
        let feats = self.model.ref_features(&e_c, &e_r)?;
        let (mu, var) = self.model.posterior(&feats, &ref_seg, users.len())?;
        let bases = self.model.bases()?.clone();
        let w = bases.weights(&mu, &var)?;

        let PairBatch {
            texts,
            e,
            phi,
            delta,
        } = self.pair_batch(targets)?;
        if let Some(cache) = self.ref_cache.as_mut() {
            cache.update(&texts, &e.detach())?;
        }
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
        m.insert("texts".into(), json!(texts.len()));
        let acc = pairwise_accuracy(&mu_d)?;
        Ok(StepOut {
            loss: total,
            metrics: m,
            acc,
        })
    }
}
