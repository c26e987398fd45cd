//! The baselines' shared training loop and evaluation.
//!
//! Training: prompt-grouped steps like BT's (every seen-user training pair on
//! `train.prompts_per_step` prompts, prompts shuffled per epoch by the seed), `train.epochs`
//! epochs, AdamW with the run's schedule, clipping and weight decay; the backbone and the
//! method's shared parameters learn at `train.lr`, its per-seen-user parameters at
//! `train.latent_lr_mult` × that (as VRF's free user logits). The pairs are the seen users'
//! reference and target pairs (the paper trains its baselines on R_u too), except for VPL, whose
//! reference pairs are the users' context and whose targets are the target pairs. A checkpoint
//! is written at the end (baselines are not interruptible; `train.stop_after_steps` does not
//! apply to them).
//!
//! Evaluation: the same pairwise accuracy as VRF's on every user's eval triplets, seen users
//! with their trained representation, unseen users with the one their reference pairs give,
//! and the few-shot curve over 1, 3, 5, 9 reference pairs with the same draws as VRF's.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::{Baseline, BaselineError, Batch, StepInfo};
use vrf_data::{Dataset, Split};
use vrf_trainer::checkpoint::{load_checkpoint, save_checkpoint, write_json, TrainState};
use vrf_trainer::corpus::{dedup, positions, rows, Corpus, TextSource};
use vrf_trainer::error::{Result, TrainError};
use vrf_trainer::eval::{few_shot_draws, macro_average, pair_texts, EvalReport};
use vrf_trainer::metrics::pairwise_accuracy;
use vrf_trainer::model::{prefix, RewardModel};
use vrf_trainer::optim::{lr_factor, AdamW, ParamGroup};
use vrf_trainer::run::{previous_train_seconds, Prepared};
use vrf_trainer::train::refcache::RefCache;
use vrf_trainer::train::DONE;

/// The prompts of a dataset as texts of their own: each prompt rendered in the template with an
/// empty response (PAL's prompt embedding).
pub(crate) struct Prompts {
    id_of: HashMap<String, usize>,
    corpus: Corpus,
}

impl Prompts {
    /// Tokenises every unique prompt of `ds` as `(prompt, "")`.
    pub(crate) fn build(ds: &Dataset, source: &TextSource) -> Result<Self> {
        let mut id_of = HashMap::new();
        let mut texts: Vec<(String, String)> = Vec::new();
        for t in &ds.triplets {
            if !id_of.contains_key(&t.prompt) {
                id_of.insert(t.prompt.clone(), texts.len());
                texts.push((t.prompt.clone(), String::new()));
            }
        }
        let corpus = match Corpus::from_texts(texts, source) {
            Err(TrainError::Features(e @ vrf_data::FeatureError::Missing { .. })) => {
                return Err(TrainError::Other(format!(
                    "PAL-B reads a prompt embedding, the vector of (prompt, \"\") for every prompt, \
                     and the feature table has none for this one: {e}. `vrf-bench features` writes \
                     these rows (unless --prompts false), `vrf-trainer features --prompts` too; \
                     see docs/features.md"
                )))
            }
            r => r?,
        };
        Ok(Self { id_of, corpus })
    }

    fn id(&self, ds: &Dataset, triplet: usize) -> usize {
        // Every triplet's prompt was registered by `build`.
        self.id_of[&ds.triplets[triplet].prompt]
    }
}

/// Detached states of a set of texts (or prompts), by id.
struct Feats {
    pos: HashMap<usize, u32>,
    e: Tensor,
}

impl Feats {
    fn new(ids: &[usize], e: Tensor) -> Self {
        Self {
            pos: positions(ids),
            e,
        }
    }

    fn gather(&self, ids: &[usize]) -> Result<Tensor> {
        let idx: Vec<u32> = ids.iter().map(|t| self.pos[t]).collect();
        Ok(rows(&self.e, &idx)?)
    }
}

/// States `[n, H]` of the given text (or prompt) ids.
type States<'a> = &'a dyn Fn(&[usize]) -> Result<Tensor>;

/// What a batch reads its states from.
struct Sources<'a> {
    texts: States<'a>,
    prompts: Option<(&'a Prompts, States<'a>)>,
}

/// The batch of `triplets` for users `users` (dataset user ids; each triplet's user must be
/// among them), states from `src`.
fn make_batch(
    ds: &Dataset,
    corpus: &Corpus,
    triplets: &[usize],
    users: &[usize],
    src: &Sources,
) -> Result<Batch> {
    let (texts, pos) = dedup(&pair_texts(corpus, triplets.iter().copied()));
    let e = (src.texts)(&texts)?;
    let local = positions(users);
    let user = triplets
        .iter()
        .map(|&i| local[&ds.triplet_user[i]])
        .collect();
    let seen_map = positions(&ds.seen);
    let seen_pos = users
        .iter()
        .map(|u| seen_map.get(u).copied())
        .collect::<Option<Vec<u32>>>()
        .unwrap_or_default();
    let prompts = match src.prompts {
        Some((pr, states)) => {
            let ids: Vec<usize> = triplets.iter().map(|&i| pr.id(ds, i)).collect();
            let (uniq, prow) = dedup(&ids);
            Some((states(&uniq)?, prow))
        }
        None => None,
    };
    Ok(Batch {
        triplets: triplets.to_vec(),
        texts,
        e,
        chosen: pos.iter().step_by(2).copied().collect(),
        rejected: pos.iter().skip(1).step_by(2).copied().collect(),
        user,
        seen_pos,
        n_users: users.len(),
        prompts,
    })
}

/// A seeded RNG for (seed, tag, n), independent of history.
fn rng_for(seed: u64, tag: &str, n: u64) -> ChaCha8Rng {
    let h = tag.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    ChaCha8Rng::seed_from_u64(seed ^ h ^ n.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

/// The baseline of `p.model.cfg.method` on the model's variables, and its prompts where it reads
/// them.
fn method_of(p: &Prepared) -> Result<(Box<dyn Baseline>, Option<Prompts>)> {
    let model = &p.model;
    let method = super::build(
        &model.cfg,
        model.vars.builder(&model.device),
        model.hidden_size(),
        p.ds.seen.len(),
    )?;
    let prompts = match method.needs_prompts() {
        true => Some(Prompts::build(&p.ds, &p.source)?),
        false => None,
    };
    Ok((method, prompts))
}

/// Trains the baseline of run `dir` (`p.model.cfg.method`), evaluates it and writes
/// `eval.json`; with `resume`, a finished checkpoint is evaluated without retraining.
pub fn fit(dir: &Path, p: &Prepared, resume: bool, progress: bool) -> Result<EvalReport> {
    let model = &p.model;
    let (mut method, prompts) = method_of(p)?;
    if resume {
        if let Some(ck) = load_checkpoint(dir, &model.device)? {
            if ck.state.stage == DONE {
                for (name, t) in &ck.weights {
                    model.vars.insert(name, t.clone())?;
                }
                return write_eval(
                    dir,
                    p,
                    &*method,
                    prompts.as_ref(),
                    previous_train_seconds(dir),
                );
            }
        }
    }
    let t0 = Instant::now();
    train(dir, p, &mut *method, prompts.as_ref(), progress)?;
    let trained = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let report = write_eval(dir, p, &*method, prompts.as_ref(), Some(trained))?;
    if progress {
        eprintln!(
            "trained in {trained:.1} s, evaluated in {:.1} s",
            t1.elapsed().as_secs_f64()
        );
    }
    Ok(report)
}

/// Re-evaluates a finished baseline run whose weights are loaded into `p.model.vars`.
pub fn evaluate_run(dir: &Path, p: &Prepared, train_seconds: Option<f64>) -> Result<EvalReport> {
    let (method, prompts) = method_of(p)?;
    write_eval(dir, p, &*method, prompts.as_ref(), train_seconds)
}

fn write_eval(
    dir: &Path,
    p: &Prepared,
    method: &dyn Baseline,
    prompts: Option<&Prompts>,
    train_seconds: Option<f64>,
) -> Result<EvalReport> {
    let mut report = evaluate(&p.model, &p.ds, &p.corpus, method, prompts)?;
    report.cost.train_seconds = train_seconds;
    write_json(&dir.join("eval.json"), &report)?;
    Ok(report)
}

/// The training pairs by prompt: seen users' reference and target pairs (VPL: targets only).
fn groups(ds: &Dataset, targets_only: bool) -> Vec<Vec<usize>> {
    let splits: &[Split] = if targets_only {
        &[Split::Target]
    } else {
        &[Split::Ref, Split::Target]
    };
    ds.prompt_groups(splits)
        .into_iter()
        .map(|g| {
            g.triplets
                .into_iter()
                .filter(|&i| ds.users[ds.triplet_user[i]].is_seen())
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// The training loop (see the module documentation); writes `metrics.jsonl` and the final
/// checkpoint.
fn train(
    dir: &Path,
    p: &Prepared,
    method: &mut dyn Baseline,
    prompts: Option<&Prompts>,
    progress: bool,
) -> Result<()> {
    let (ds, corpus, model) = (&p.ds, &p.corpus, &p.model);
    let cfg = &model.cfg;
    let t = &cfg.train;
    let name = cfg.method.name();
    let dev = &model.device;
    method.init(ds, corpus)?;
    let groups = groups(ds, method.needs_context());
    if groups.is_empty() {
        return Err(BaselineError::NoSeenUsers(name).into());
    }
    let spe = groups.len().div_ceil(t.prompts_per_step).max(1);
    let total = spe * t.epochs;

    let own = model.vars.vars_with_prefix(&[&format!("{name}.")]);
    let user_var = method.user_var();
    let (users, shared): (Vec<_>, Vec<_>) = own
        .into_iter()
        .partition(|(n, _)| Some(n.as_str()) == user_var);
    let mut main = model.trainable(model.vars.vars_with_prefix(&[prefix::BACKBONE]));
    main.extend(shared);
    let mut opt = AdamW::new(
        vec![
            ParamGroup {
                vars: main,
                lr_mult: 1.0,
            },
            ParamGroup {
                vars: users,
                lr_mult: t.latent_lr_mult,
            },
        ],
        t.weight_decay,
    );

    // VPL's context: the seen users' reference states, detached, refreshed whenever a step
    // embeds one of those texts (as VRF's end-to-end steps do).
    let mut cache = if method.needs_context() {
        let refs = ds
            .seen
            .iter()
            .flat_map(|&u| ds.users[u].refs.iter().copied());
        let (uniq, _) = dedup(&pair_texts(corpus, refs));
        Some(RefCache::new(
            &uniq,
            &corpus.embed(model, &uniq, t.eval_batch)?,
        )?)
    } else {
        None
    };

    let log_path = dir.join("metrics.jsonl");
    let mut log = String::new();
    let bar = if progress {
        let b = ProgressBar::new(total as u64);
        if let Ok(s) = ProgressStyle::with_template(
            "{prefix:>4} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        ) {
            b.set_style(s);
        }
        b.set_prefix(name);
        b
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let embed_texts =
        |texts: &[usize]| -> Result<Tensor> { Ok(corpus.states_train(model, texts)?) };
    let embed_prompts = |ids: &[usize]| -> Result<Tensor> {
        let pr = prompts.ok_or_else(|| TrainError::Other("no prompt corpus".into()))?;
        Ok(pr.corpus.states_train(model, ids)?)
    };
    for step in 0..total {
        let (epoch, within) = (step / spe, step % spe);
        let lr = t.lr * lr_factor(step, total, t.warmup);
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.shuffle(&mut rng_for(t.seed, name, epoch as u64));
        let triplets: Vec<usize> = order
            .iter()
            .skip(within * t.prompts_per_step)
            .take(t.prompts_per_step)
            .flat_map(|&g| groups[g].iter().copied())
            .collect();
        let (users, _) = dedup(
            &triplets
                .iter()
                .map(|&i| ds.triplet_user[i])
                .collect::<Vec<_>>(),
        );
        let src = Sources {
            texts: &embed_texts,
            prompts: prompts.map(|pr| (pr, &embed_prompts as States)),
        };
        let b = make_batch(ds, corpus, &triplets, &users, &src)?;
        let context = match &cache {
            Some(c) => {
                let refs: Vec<usize> = users
                    .iter()
                    .flat_map(|&u| ds.users[u].refs.iter().copied())
                    .collect();
                let gather = |texts: &[usize]| -> Result<Tensor> { c.gather(texts, dev) };
                let csrc = Sources {
                    texts: &gather,
                    prompts: None,
                };
                Some(make_batch(ds, corpus, &refs, &users, &csrc)?)
            }
            None => None,
        };
        let at = StepInfo {
            step,
            total,
            seed: t.seed,
        };
        let out = method.train_loss(&b, context.as_ref(), at)?;
        let mut grads = out.loss.backward()?;
        model.finish_backward(&mut grads)?;
        let gnorm = opt.step(&grads, lr, t.grad_clip)?;
        let loss = out.loss.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            return Err(BaselineError::NonFinite {
                method: name,
                step,
                loss,
            }
            .into());
        }
        if let Some(c) = cache.as_mut() {
            c.update(&b.texts, &b.e.detach())?;
        }
        let acc = pairwise_accuracy(&out.margins)?;
        let mut rec = out.metrics;
        rec.insert("stage".into(), json!(name));
        rec.insert("step".into(), json!(step + 1));
        rec.insert("global_step".into(), json!(step + 1));
        rec.insert("lr".into(), json!(lr));
        rec.insert("loss".into(), json!(loss));
        rec.insert("acc".into(), json!(acc));
        rec.insert("grad_norm".into(), json!(gnorm));
        rec.insert("pairs".into(), json!(b.triplets.len()));
        rec.insert("users".into(), json!(b.n_users));
        rec.insert("elapsed_s".into(), json!(started.elapsed().as_secs_f64()));
        log += &format!("{}\n", serde_json::Value::Object(rec));
        bar.set_message(format!("loss {loss:.4} acc {acc:.3}"));
        bar.inc(1);
    }
    bar.finish();
    vrf_data::write_atomic(&log_path, log.as_bytes()).map_err(|e| TrainError::io(&log_path, e))?;
    let state = TrainState {
        stage: DONE.into(),
        step: 0,
        global_step: total,
        finished: vec![name.into()],
        ..Default::default()
    };
    save_checkpoint(dir, &model.vars, None, &HashMap::new(), &state)?;
    Ok(())
}

/// Detached states of every user's reference and eval texts and, with `prompts`, of their
/// prompts.
fn embed_users(
    model: &RewardModel,
    ds: &Dataset,
    corpus: &Corpus,
    prompts: Option<&Prompts>,
) -> Result<(Feats, Option<Feats>)> {
    let chunk = model.cfg.train.eval_batch;
    let all: Vec<usize> = ds
        .users
        .iter()
        .flat_map(|u| u.refs.iter().chain(u.evals.iter()).copied())
        .collect();
    let (uniq, _) = dedup(&pair_texts(corpus, all.iter().copied()));
    let texts = Feats::new(&uniq, corpus.embed(model, &uniq, chunk)?);
    let prompts = match prompts {
        Some(pr) => {
            let ids: Vec<usize> = all.iter().map(|&i| pr.id(ds, i)).collect();
            let (uniq, _) = dedup(&ids);
            Some(Feats::new(&uniq, pr.corpus.embed(model, &uniq, chunk)?))
        }
        None => None,
    };
    Ok((texts, prompts))
}

/// Evaluates a trained baseline (see the module documentation).
pub(crate) fn evaluate(
    model: &RewardModel,
    ds: &Dataset,
    corpus: &Corpus,
    method: &dyn Baseline,
    prompts: Option<&Prompts>,
) -> Result<EvalReport> {
    let t = &model.cfg.train;
    let (texts, prompt_feats) = embed_users(model, ds, corpus, prompts)?;
    let gather_texts = |ids: &[usize]| texts.gather(ids);
    let gather_prompts = |ids: &[usize]| -> Result<Tensor> {
        match &prompt_feats {
            Some(f) => f.gather(ids),
            None => Err(TrainError::Other("no prompt states".into())),
        }
    };
    let src = Sources {
        texts: &gather_texts,
        prompts: prompts.map(|pr| (pr, &gather_prompts as States)),
    };
    let of = |g: &[usize], f: fn(&vrf_data::UserData) -> &Vec<usize>| -> Vec<usize> {
        g.iter()
            .flat_map(|&u| f(&ds.users[u]).iter().copied())
            .collect()
    };
    let accuracy = |group: &[usize], reps: &Tensor| -> Result<f64> {
        let evals = of(group, |u| &u.evals);
        if evals.is_empty() {
            return Ok(f64::NAN);
        }
        let b = make_batch(ds, corpus, &evals, group, &src)?;
        Ok(pairwise_accuracy(&method.margins(&b, reps)?)?)
    };
    let mut report = EvalReport::skeleton(model.cfg.method.name(), t.seed, ds, corpus);
    if !ds.seen.is_empty() {
        let refs = make_batch(ds, corpus, &of(&ds.seen, |u| &u.refs), &ds.seen, &src)?;
        let reps = method.seen_reps(&refs)?;
        report.seen_accuracy = accuracy(&ds.seen, &reps)?;
    }
    if !ds.unseen.is_empty() {
        let refs = make_batch(ds, corpus, &of(&ds.unseen, |u| &u.refs), &ds.unseen, &src)?;
        let t0 = Instant::now();
        let reps = method.adapt(&refs, t.seed)?;
        let s = t0.elapsed().as_secs_f64();
        report.cost.adapt_seconds = Some(s);
        report.cost.adapt_seconds_per_user = Some(s / ds.unseen.len() as f64);
        report.unseen_accuracy = accuracy(&ds.unseen, &reps)?;
        // Calibration of σ(margin) on the unseen users' eval pairs, as for VRF and BT.
        let evals = of(&ds.unseen, |u| &u.evals);
        if !evals.is_empty() {
            let b = make_batch(ds, corpus, &evals, &ds.unseen, &src)?;
            let p = vrf_trainer::eval::sigmoid(&method.margins(&b, &reps)?)?;
            report.calibration = vrf_trainer::metrics::calibration(&p);
        }
        // Few-shot curve: k random reference pairs per unseen user, VRF's draws (mean over them).
        for point in few_shot_draws(ds) {
            let acc = point.mean_over(|refs| -> Result<f64> {
                let b = make_batch(ds, corpus, &refs.concat(), &ds.unseen, &src)?;
                let reps = method.adapt(&b, t.seed)?;
                accuracy(&ds.unseen, &reps)
            })?;
            report.few_shot.push((point.k, acc));
        }
    }
    report.overall_accuracy = macro_average(report.seen_accuracy, report.unseen_accuracy);
    Ok(report)
}

/// Detached states of every reference and eval text of a dataset (and, for methods that read
/// the prompt, of its prompts): the source of evaluation batches outside [`evaluate`], for
/// per-user analyses ([`crate::score`]).
pub(crate) struct Embedded {
    texts: Feats,
    prompts: Option<(Prompts, Feats)>,
}

impl Embedded {
    /// Embeds the reference and eval texts of every user (and their prompts, when `prompts`).
    pub(crate) fn new(
        model: &RewardModel,
        ds: &Dataset,
        corpus: &Corpus,
        prompts: Option<Prompts>,
    ) -> Result<Self> {
        let (texts, prompt_feats) = embed_users(model, ds, corpus, prompts.as_ref())?;
        Ok(Self {
            texts,
            prompts: prompts.zip(prompt_feats),
        })
    }

    /// The batch of dataset triplets `triplets` (reference or eval rows) for users `users`.
    pub(crate) fn batch(
        &self,
        ds: &Dataset,
        corpus: &Corpus,
        triplets: &[usize],
        users: &[usize],
    ) -> Result<Batch> {
        let gather_texts = |ids: &[usize]| self.texts.gather(ids);
        let gather_prompts = |ids: &[usize]| -> Result<Tensor> {
            match &self.prompts {
                Some((_, f)) => f.gather(ids),
                None => Err(TrainError::Other("no prompt states".into())),
            }
        };
        let src = Sources {
            texts: &gather_texts,
            prompts: self
                .prompts
                .as_ref()
                .map(|(pr, _)| (pr, &gather_prompts as States)),
        };
        make_batch(ds, corpus, triplets, users, &src)
    }
}
