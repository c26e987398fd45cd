//! Per-user quantities of a trained run that its `eval.json` does not keep: each user's own
//! accuracy, each method's personalised reward for a user on arbitrary candidate responses, and
//! (VRF) every user's posterior.
//!
//! A [`RunScorer`] loads a finished run directory (VRF, BT or a baseline), embeds its users'
//! reference and eval texts once and computes every user's representation exactly as the
//! run's evaluation does: seen users from their trained (or cached) representation, unseen
//! users from their full reference sets through the method's own unseen-user path, with the
//! run's seed. Rewards are on the method's own scale and, for the baselines, defined up to a
//! constant per query (they are read off the method's pair margins against the query's first
//! candidate); comparing the candidates of one query is what they are for.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, D};

use crate::baselines::{self, Baseline, Batch, Embedded, Prompts};
use vrf_data::Dataset;
use vrf_trainer::checkpoint::read_json;
use vrf_trainer::config::{Method, RunConfig};
use vrf_trainer::corpus::{rows, Corpus};
use vrf_trainer::error::{Result, TrainError};
use vrf_trainer::eval::{posteriors, Features, UserPosterior};
use vrf_trainer::lock::DirLock;
use vrf_trainer::loss;
use vrf_trainer::run::{prepare_trained, Prepared, RunInfo};

/// Default number of queries whose candidate margins are computed in one batch.
pub const QUERY_CHUNK: usize = 512;

/// One user's pairwise accuracy on their eval triplets.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UserAccuracy {
    /// User id.
    pub user: String,
    /// Eval pairs ranked right (margin > 0; a tie counts as wrong, as in evaluation).
    pub correct: usize,
    /// Eval pairs.
    pub pairs: usize,
}

impl UserAccuracy {
    /// `correct / pairs` (NaN for a user without eval pairs).
    pub fn accuracy(&self) -> f64 {
        if self.pairs == 0 {
            f64::NAN
        } else {
            self.correct as f64 / self.pairs as f64
        }
    }
}

/// Candidate responses to one prompt, to be scored for one user.
#[derive(Clone, Debug)]
pub struct Query {
    /// The user (index into the run's dataset users).
    pub user: usize,
    /// The prompt.
    pub prompt: String,
    /// The candidate responses.
    pub responses: Vec<String>,
}

/// How a method scores, with every user's representation.
enum Kind {
    /// VRF: users' weights `[rows, K]` over the basis rewards, posteriors kept for analyses.
    Vrf {
        feats: Features,
        w: Tensor,
        posts: Vec<UserPosterior>,
    },
    /// BT: one reward for everyone.
    Bt { feats: Features },
    /// A baseline: the method and its users' representations `[rows, R]`.
    Baseline {
        method: Box<dyn Baseline>,
        emb: Embedded,
        reps: Tensor,
    },
}

/// A trained run ready to score (see the module documentation).
pub struct RunScorer {
    p: Prepared,
    kind: Kind,
    /// Row of each dataset user in the representations (seen users first, then unseen).
    row_of: Vec<Option<u32>>,
    /// Queries per batch of margins in [`RunScorer::rewards`] (bounds its memory).
    query_chunk: usize,
}

impl RunScorer {
    /// Loads the finished run in `dir` (its config, data and checkpoint) and computes every
    /// user's representation.
    pub fn load(dir: &Path, dev: &Device) -> Result<Self> {
        let cfg: RunConfig = read_json(&dir.join("config.json"))?;
        let _lock = DirLock::acquire(dir)?;
        let data = read_json::<RunInfo>(&dir.join("run.json"))?.data;
        let p = prepare_trained(dir, &cfg, &data, dev, "score with")?;
        let (ds, corpus, model) = (&p.ds, &p.corpus, &p.model);
        let mut row_of = vec![None; ds.users.len()];
        for (r, &u) in ds.seen.iter().chain(&ds.unseen).enumerate() {
            row_of[u] = Some(r as u32);
        }
        let refs_of = |g: &[usize]| -> Vec<Vec<usize>> {
            g.iter().map(|&u| ds.users[u].refs.clone()).collect()
        };
        let kind = match cfg.method {
            Method::Vrf | Method::Bt => {
                let feats = Features::of_users(model, corpus, ds)?;
                if cfg.method == Method::Bt {
                    Kind::Bt { feats }
                } else {
                    let (mut ws, mut posts) = (Vec::new(), Vec::new());
                    for group in [&ds.seen, &ds.unseen] {
                        if group.is_empty() {
                            continue;
                        }
                        let (mu, var, w) = posteriors(model, &feats, corpus, &refs_of(group))?;
                        let (mu, var, wv) = (
                            mu.to_vec2::<f32>()?,
                            var.to_vec2::<f32>()?,
                            w.to_vec2::<f32>()?,
                        );
                        for (i, &u) in group.iter().enumerate() {
                            let unc = var[i].iter().sum::<f32>() / var[i].len().max(1) as f32;
                            posts.push(UserPosterior {
                                id: ds.users[u].id.clone(),
                                mean: mu[i].clone(),
                                var: var[i].clone(),
                                weights: wv[i].clone(),
                                uncertainty: unc,
                            });
                        }
                        ws.push(w);
                    }
                    Kind::Vrf {
                        feats,
                        w: Tensor::cat(&ws, 0)?,
                        posts,
                    }
                }
            }
            Method::Lore | Method::Pref | Method::Pal | Method::Vpl => {
                let method = baselines::build(
                    &cfg,
                    model.vars.builder(&model.device),
                    model.hidden_size(),
                    ds.seen.len(),
                )?;
                let prompts = match method.needs_prompts() {
                    true => Some(Prompts::build(ds, &p.source)?),
                    false => None,
                };
                let emb = Embedded::new(model, ds, corpus, prompts)?;
                let flat =
                    |g: &[usize]| -> Vec<usize> { refs_of(g).into_iter().flatten().collect() };
                let mut parts = Vec::new();
                if !ds.seen.is_empty() {
                    let b = emb.batch(ds, corpus, &flat(&ds.seen), &ds.seen)?;
                    parts.push(method.seen_reps(&b)?);
                }
                if !ds.unseen.is_empty() {
                    let b = emb.batch(ds, corpus, &flat(&ds.unseen), &ds.unseen)?;
                    parts.push(method.adapt(&b, cfg.train.seed)?);
                }
                Kind::Baseline {
                    method,
                    emb,
                    reps: Tensor::cat(&parts, 0)?,
                }
            }
        };
        Ok(Self {
            p,
            kind,
            row_of,
            query_chunk: QUERY_CHUNK,
        })
    }

    /// Sets how many queries [`RunScorer::rewards`] scores per batch (at least 1); the rewards
    /// do not depend on it.
    pub fn set_query_chunk(&mut self, n: usize) {
        self.query_chunk = n.max(1);
    }

    /// The method of the run.
    pub fn method(&self) -> Method {
        self.p.model.cfg.method
    }

    /// The run's dataset.
    pub fn dataset(&self) -> &Dataset {
        &self.p.ds
    }

    /// VRF: every user's posterior (seen users, then unseen, in dataset order); `None` otherwise.
    pub fn posteriors(&self) -> Option<&[UserPosterior]> {
        match &self.kind {
            Kind::Vrf { posts, .. } => Some(posts),
            _ => None,
        }
    }

    /// VRF: the K basis means `[K][d]`; `None` otherwise.
    pub fn basis_means(&self) -> Result<Option<Vec<Vec<f32>>>> {
        match &self.kind {
            Kind::Vrf { .. } => Ok(Some(self.p.model.bases()?.means.to_vec2::<f32>()?)),
            _ => Ok(None),
        }
    }

    fn row(&self, user: usize) -> Result<u32> {
        self.row_of.get(user).copied().flatten().ok_or_else(|| {
            TrainError::Other(format!(
                "user index {user} is not a user of this run's data"
            ))
        })
    }

    /// Each of `users`' (dataset user indices) accuracy on their eval triplets, with the
    /// representation the run's evaluation uses.
    pub fn user_accuracy(&self, users: &[usize]) -> Result<Vec<UserAccuracy>> {
        let (ds, corpus) = (&self.p.ds, &self.p.corpus);
        let evals: Vec<usize> = users
            .iter()
            .flat_map(|&u| ds.users[u].evals.iter().copied())
            .collect();
        let owner: Vec<usize> = users
            .iter()
            .enumerate()
            .flat_map(|(i, &u)| std::iter::repeat_n(i, ds.users[u].evals.len()))
            .collect();
        let margins: Vec<f32> = if evals.is_empty() {
            vec![]
        } else {
            match &self.kind {
                Kind::Bt { feats } => feats.delta(corpus, &evals)?.squeeze(D::Minus1)?.to_vec1()?,
                Kind::Vrf { feats, w, .. } => {
                    let r: Vec<u32> = owner
                        .iter()
                        .map(|&i| self.row(users[i]))
                        .collect::<Result<_>>()?;
                    let delta = feats.delta(corpus, &evals)?;
                    loss::moments(&rows(w, &r)?, &delta)?.0.to_vec1()?
                }
                Kind::Baseline { method, emb, reps } => {
                    let b = emb.batch(ds, corpus, &evals, users)?;
                    let r: Vec<u32> = users.iter().map(|&u| self.row(u)).collect::<Result<_>>()?;
                    method.margins(&b, &rows(reps, &r)?)?.to_vec1()?
                }
            }
        };
        let mut out: Vec<UserAccuracy> = users
            .iter()
            .map(|&u| UserAccuracy {
                user: ds.users[u].id.clone(),
                correct: 0,
                pairs: 0,
            })
            .collect();
        for (&i, m) in owner.iter().zip(margins) {
            out[i].pairs += 1;
            if m > 0.0 {
                out[i].correct += 1;
            }
        }
        Ok(out)
    }

    /// Each query's rewards of its candidates for its user (see the module documentation for
    /// the scale), in the queries' order.
    pub fn rewards(&self, queries: &[Query]) -> Result<Vec<Vec<f64>>> {
        let model = &self.p.model;
        let chunk = model.cfg.train.eval_batch;
        // Unique (prompt, response) texts, and each query's candidates' ids among them.
        let mut id_of: HashMap<(&str, &str), usize> = HashMap::new();
        let mut texts: Vec<(String, String)> = Vec::new();
        let ids: Vec<Vec<usize>> = queries
            .iter()
            .map(|q| {
                q.responses
                    .iter()
                    .map(|r| {
                        *id_of
                            .entry((q.prompt.as_str(), r.as_str()))
                            .or_insert_with(|| {
                                texts.push((q.prompt.clone(), r.clone()));
                                texts.len() - 1
                            })
                    })
                    .collect()
            })
            .collect();
        let n_texts = texts.len();
        let cands = Corpus::from_texts(texts, &self.p.source)?;
        let all: Vec<usize> = (0..n_texts).collect();
        let e = cands.embed(model, &all, chunk)?;
        let user_rows: Vec<u32> = queries
            .iter()
            .map(|q| self.row(q.user))
            .collect::<Result<_>>()?;
        match &self.kind {
            Kind::Bt { .. } | Kind::Vrf { .. } => {
                let phi = model.phi(&e)?.to_vec2::<f32>()?;
                let w = match &self.kind {
                    Kind::Vrf { w, .. } => Some(w.to_vec2::<f32>()?),
                    _ => None,
                };
                Ok(ids
                    .iter()
                    .zip(&user_rows)
                    .map(|(c, &r)| {
                        c.iter()
                            .map(|&t| match &w {
                                Some(w) => phi[t]
                                    .iter()
                                    .zip(&w[r as usize])
                                    .map(|(p, w)| (*p as f64) * (*w as f64))
                                    .sum(),
                                None => phi[t][0] as f64,
                            })
                            .collect()
                    })
                    .collect())
            }
            Kind::Baseline { method, reps, .. } => {
                // Prompt states (PAL reads them): each prompt rendered with an empty response.
                let prompt_states = if method.needs_prompts() {
                    let mut pid: HashMap<&str, u32> = HashMap::new();
                    let mut ptexts: Vec<(String, String)> = Vec::new();
                    let prow: Vec<u32> = queries
                        .iter()
                        .map(|q| {
                            *pid.entry(q.prompt.as_str()).or_insert_with(|| {
                                ptexts.push((q.prompt.clone(), String::new()));
                                (ptexts.len() - 1) as u32
                            })
                        })
                        .collect();
                    let n = ptexts.len();
                    let pc = Corpus::from_texts(ptexts, &self.p.source)?;
                    let all: Vec<usize> = (0..n).collect();
                    Some((pc.embed(model, &all, chunk)?, prow))
                } else {
                    None
                };
                // Margins of every candidate against its query's first one, a chunk of queries
                // at a time (every text was embedded once above).
                let mut out = Vec::with_capacity(queries.len());
                for start in (0..queries.len()).step_by(self.query_chunk) {
                    let end = (start + self.query_chunk).min(queries.len());
                    let (mut chosen, mut rejected, mut user, mut prow) =
                        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                    for (qi, c) in ids[start..end].iter().enumerate() {
                        for &t in c {
                            chosen.push(t as u32);
                            rejected.push(c.first().copied().unwrap_or(t) as u32);
                            user.push(qi as u32);
                            if let Some((_, pr)) = &prompt_states {
                                prow.push(pr[start + qi]);
                            }
                        }
                    }
                    let n = chosen.len();
                    if n == 0 {
                        out.extend(ids[start..end].iter().map(|_| Vec::new()));
                        continue;
                    }
                    let b = Batch {
                        triplets: (0..n).collect(),
                        texts: all.clone(),
                        e: e.clone(),
                        chosen,
                        rejected,
                        user,
                        seen_pos: vec![],
                        n_users: end - start,
                        prompts: prompt_states.as_ref().map(|(s, _)| (s.clone(), prow)),
                    };
                    let m: Vec<f32> = method
                        .margins(&b, &rows(reps, &user_rows[start..end])?)?
                        .to_vec1()?;
                    let mut it = m.into_iter();
                    out.extend(ids[start..end].iter().map(|c| {
                        c.iter()
                            .map(|_| it.next().unwrap_or(0.0) as f64)
                            .collect::<Vec<f64>>()
                    }));
                }
                Ok(out)
            }
        }
    }
}
