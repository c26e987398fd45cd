//! Evaluation (docs/METHOD.md §5) and the collapse diagnostics (docs/METHOD.md §3b).
//!
//! Seen users are scored with the posterior from their reference set (the one cached for
//! export), unseen users with the posterior from theirs, both in one encoder pass.

use std::collections::HashMap;

use candle_core::{DType, Tensor, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::Method;
use crate::corpus::{dedup, positions, rows, Corpus};
use crate::encoder::segments;
use crate::error::{Result, TrainError};
use crate::loss;
use crate::metrics::{calibration, mean_offdiag_corr, pairwise_accuracy, spearman, Calibration};
use crate::model::RewardModel;
use vrf_data::Dataset;

/// Numbers of the collapse diagnostics (VRF only).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Collapse {
    /// Seen accuracy with uniform weights w = 1/K (same model).
    pub seen_uniform_accuracy: f64,
    /// Unseen accuracy with uniform weights.
    pub unseen_uniform_accuracy: f64,
    /// Personalisation gain for seen users: learned minus uniform accuracy.
    pub seen_gain: f64,
    /// Personalisation gain for unseen users.
    pub unseen_gain: f64,
    /// Number of distinct top bases over all evaluated users.
    pub distinct_top_bases: usize,
    /// How many users have each basis as their top basis.
    pub top_basis_histogram: Vec<usize>,
    /// Mean normalised entropy of users' weights (1 = uniform, 0 = one-hot).
    pub weight_entropy: f64,
    /// Mean pairwise correlation of the K basis rewards over eval responses.
    pub basis_reward_correlation: f64,
    /// Mean user uncertainty (mean σ²) of seen and unseen users.
    pub mean_uncertainty: f64,
    /// Staged fit: seen accuracy with the stage-1 free per-user weights instead of the encoder's
    /// (what the bases allow; the gap to `seen` is the encoder's distillation loss).
    pub seen_free_weights_accuracy: Option<f64>,
}

/// What a method spent: training time and the time to personalise an unseen user.
///
/// Wall-clock, so it differs between two runs of the same computation: every `Cost` compares
/// equal, and two reports are equal when their results are (a resumed run's report equals the
/// uninterrupted run's).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cost {
    /// Training wall-clock seconds (without data preparation and evaluation).
    pub train_seconds: Option<f64>,
    /// Seconds to infer all unseen users' representations from their full reference sets, the
    /// backbone's embedding of their texts excluded (VRF, VPL: one encoder pass; LoRe, PReF, PAL:
    /// the gradient fit, all users' independent problems solved side by side).
    pub adapt_seconds: Option<f64>,
    /// `adapt_seconds` divided by the number of unseen users.
    pub adapt_seconds_per_user: Option<f64>,
}

impl PartialEq for Cost {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The result of an evaluation; written to `DIR/eval.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EvalReport {
    /// `vrf` or `bt`.
    pub method: String,
    /// Training seed.
    pub seed: u64,
    /// Pairwise accuracy on seen users' eval triplets (fraction).
    pub seen_accuracy: f64,
    /// Pairwise accuracy on unseen users' eval triplets (fraction).
    pub unseen_accuracy: f64,
    /// Macro-average of seen and unseen.
    pub overall_accuracy: f64,
    /// Eval pairs of seen users.
    pub seen_pairs: usize,
    /// Eval pairs of unseen users.
    pub unseen_pairs: usize,
    /// Seen users evaluated.
    pub seen_users: usize,
    /// Unseen users evaluated.
    pub unseen_users: usize,
    /// Collapse diagnostics (VRF only).
    pub collapse: Option<Collapse>,
    /// Unseen accuracy with only k random reference pairs per user, the mean over
    /// [`FEW_SHOT_DRAWS`] draws: (k, accuracy).
    pub few_shot: Vec<(usize, f64)>,
    /// Texts truncated to the maximum length (from the left).
    pub truncated_texts: usize,
    /// Training and unseen-user adaptation time (absent in reports written before it existed).
    #[serde(default)]
    pub cost: Cost,
    /// Calibration of unseen users' preference probabilities `P(y_c ≻ y_r)` on their eval pairs
    /// (VRF: Eq. 8's variance-attenuated probability; the others: σ of the reward margin).
    #[serde(default)]
    pub calibration: Option<Calibration>,
    /// VRF: whether a user's uncertainty predicts their error (absent for other methods).
    #[serde(default)]
    pub uncertainty: Option<UncertaintyReport>,
}

/// Does σ² (a user's mean posterior variance) predict the user's error rate on their eval pairs?
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UncertaintyReport {
    /// Spearman ρ(σ², error) over unseen users with their full reference sets (`None` where
    /// undefined: fewer than two users, or a constant σ² or error).
    pub spearman_full: Option<f32>,
    /// Spearman ρ(σ², error) over unseen users whose k is drawn uniformly from 1…|R| (seeded):
    /// the case where the amount of information differs between users.
    pub spearman_mixed_k: Option<f32>,
    /// Unseen accuracy in that mixed-k draw.
    pub mixed_k_accuracy: f32,
    /// Calibration of the mixed-k draw's preference probabilities.
    pub mixed_k_calibration: Option<Calibration>,
    /// The temperature `T` of `P = σ(z / T)` (z: Eq. 8's attenuated logit) that minimises the
    /// log-loss on *seen* users' eval pairs: fitted on training users only.
    pub temperature: f32,
    /// Unseen users' calibration with that temperature (full reference sets).
    pub tempered_calibration: Option<Calibration>,
    /// Spearman ρ(predicted error, error) in the mixed-k draw, where a user's predicted error is
    /// the mean of `min(P, 1 − P)` over the pairs scored for them (`P` with the temperature
    /// above): what the model's own probabilities say about how often it is wrong for this
    /// user. Absent from an `eval.json` written before it existed.
    #[serde(default)]
    pub predicted_error_spearman_mixed_k: Option<f32>,
    /// Spearman ρ(−k, error) in the mixed-k draw: what the number of answers alone says about a
    /// user's error, the reference a per-user σ² has to beat to add anything. Absent from an
    /// `eval.json` written before it existed.
    #[serde(default)]
    pub answers_spearman_mixed_k: Option<f32>,
}

/// The temperature `T > 0` minimising the mean `softplus(−z/T)` of logits `z` of pairs whose
/// chosen response was preferred (golden-section search on log T in [−6, 4]); 1 for no logits.
pub fn fit_temperature(z: &[f64]) -> f64 {
    if z.is_empty() {
        return 1.0;
    }
    let loss = |log_t: f64| {
        let t = log_t.exp();
        z.iter()
            .map(|&x| {
                let v = -x / t;
                // softplus, stable on both sides.
                v.max(0.0) + (-v.abs()).exp().ln_1p()
            })
            .sum::<f64>()
    };
    let (mut a, mut b) = (-6.0f64, 4.0f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..80 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if loss(c) < loss(d) {
            b = d;
        } else {
            a = c;
        }
    }
    ((a + b) / 2.0).exp()
}

impl EvalReport {
    /// A report for `method` and `seed` on `ds` with the counts filled in and every accuracy NaN,
    /// no collapse diagnostics, no few-shot points and zero cost.
    pub fn skeleton(method: &str, seed: u64, ds: &Dataset, corpus: &Corpus) -> Self {
        let count = |g: &[usize]| g.iter().map(|&u| ds.users[u].evals.len()).sum::<usize>();
        EvalReport {
            method: method.into(),
            seed,
            seen_accuracy: f64::NAN,
            unseen_accuracy: f64::NAN,
            overall_accuracy: f64::NAN,
            seen_pairs: count(&ds.seen),
            unseen_pairs: count(&ds.unseen),
            seen_users: ds.seen.len(),
            unseen_users: ds.unseen.len(),
            collapse: None,
            few_shot: vec![],
            truncated_texts: corpus.truncated,
            cost: Cost::default(),
            calibration: None,
            uncertainty: None,
        }
    }
}

/// A seen user's cached posterior.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UserPosterior {
    /// User id.
    pub id: String,
    /// μ_u.
    pub mean: Vec<f32>,
    /// σ_u².
    pub var: Vec<f32>,
    /// w_u over the K bases.
    pub weights: Vec<f32>,
    /// Mean of σ_u².
    pub uncertainty: f32,
}

/// The chosen and rejected text ids of `triplets`, interleaved `[c₀, r₀, c₁, r₁, …]`.
pub fn pair_texts(corpus: &Corpus, triplets: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let idx = &corpus.index;
    triplets
        .into_iter()
        .flat_map(|i| [idx.chosen_text[i], idx.rejected_text[i]])
        .collect()
}

/// Frozen features of a set of texts (backbone states and basis rewards), by text id: what
/// evaluation and stage 2 (frozen backbone) compute posteriors and accuracies from.
pub struct Features {
    pos: HashMap<usize, u32>,
    e: Tensor,
    phi: Tensor,
}

impl Features {
    /// Embeds the chosen and rejected texts of `triplets`, each unique text once.
    pub fn embed(
        model: &RewardModel,
        corpus: &Corpus,
        triplets: impl IntoIterator<Item = usize>,
    ) -> Result<Self> {
        let (uniq, _) = dedup(&pair_texts(corpus, triplets));
        let e = corpus.embed(model, &uniq, model.cfg.train.eval_batch)?;
        let phi = model.phi(&e)?.detach();
        let pos = positions(&uniq);
        Ok(Self { pos, e, phi })
    }

    /// Embeds every reference and eval text of every user of `ds`.
    pub fn of_users(model: &RewardModel, corpus: &Corpus, ds: &Dataset) -> Result<Self> {
        Self::embed(
            model,
            corpus,
            ds.users
                .iter()
                .flat_map(|u| u.refs.iter().chain(u.evals.iter()).copied()),
        )
    }

    fn pair_rows(&self, corpus: &Corpus, tr: &[usize]) -> (Vec<u32>, Vec<u32>) {
        let idx = &corpus.index;
        (
            tr.iter().map(|&i| self.pos[&idx.chosen_text[i]]).collect(),
            tr.iter()
                .map(|&i| self.pos[&idx.rejected_text[i]])
                .collect(),
        )
    }

    /// Basis-reward differences φ(chosen) − φ(rejected) `[triplets, K]` of dataset triplets `tr`.
    pub fn delta(&self, corpus: &Corpus, tr: &[usize]) -> Result<Tensor> {
        let (c, r) = self.pair_rows(corpus, tr);
        Ok((rows(&self.phi, &c)? - rows(&self.phi, &r)?)?)
    }
}

/// The triplets of each user, flattened, with each triplet's user (position in `per_user`).
fn flatten_users(per_user: &[Vec<usize>]) -> (Vec<usize>, Vec<usize>) {
    let tr = per_user.concat();
    let lens: Vec<usize> = per_user.iter().map(Vec::len).collect();
    (tr, segments(&lens))
}

/// Posterior `(μ, σ²)` of a group of users from the given reference triplets per user.
pub(crate) fn user_posterior(
    model: &RewardModel,
    f: &Features,
    corpus: &Corpus,
    refs: &[Vec<usize>],
) -> Result<(Tensor, Tensor)> {
    let (tr, seg) = flatten_users(refs);
    if tr.is_empty() {
        // No pair at all: the model's prior for every user (or its error without one).
        let none = Tensor::zeros((0, 1), candle_core::DType::F32, f.e.device())?;
        return Ok(model.posterior(&none, &seg, refs.len())?);
    }
    let (c, r) = f.pair_rows(corpus, &tr);
    let feats = model.ref_features(&rows(&f.e, &c)?, &rows(&f.e, &r)?)?;
    Ok(model.posterior(&feats, &seg, refs.len())?)
}

/// Posterior `(μ, σ², w)` of a group of users from the given reference triplets per user.
pub fn posteriors(
    model: &RewardModel,
    f: &Features,
    corpus: &Corpus,
    refs: &[Vec<usize>],
) -> Result<(Tensor, Tensor, Tensor)> {
    let (mu, var) = user_posterior(model, f, corpus, refs)?;
    let w = model.bases()?.weights(&mu, &var)?;
    Ok((mu, var, w))
}

/// Accuracy of users' weights `w` `[U, K]` on their eval triplets.
pub(crate) fn group_accuracy(
    f: &Features,
    corpus: &Corpus,
    evals: &[Vec<usize>],
    w: &Tensor,
) -> Result<f64> {
    let (tr, seg) = flatten_users(evals);
    let seg: Vec<u32> = seg.into_iter().map(|u| u as u32).collect();
    let delta = f.delta(corpus, &tr)?;
    let (mu_d, _) = loss::moments(&rows(w, &seg)?, &delta)?;
    Ok(pairwise_accuracy(&mu_d)?)
}

/// Draws per k of the few-shot curve: each point is the mean accuracy over this many draws of
/// k reference pairs per user, because one draw moves the k = 1 point by 0.4–0.9 on the
/// embedded benchmark (the same draw for every seed and method, so no seed spread shows it).
pub const FEW_SHOT_DRAWS: usize = 5;

/// One point of the few-shot curve: its k and its draws (each: k reference pairs per unseen user).
#[derive(Clone, Debug)]
pub struct FewShotPoint {
    /// Reference pairs per user.
    pub k: usize,
    /// [`FEW_SHOT_DRAWS`] draws, or one where k reaches every user's reference count (every
    /// draw would hold the same sets).
    pub draws: Vec<Vec<Vec<usize>>>,
}

impl FewShotPoint {
    /// The mean of `score` over the point's draws (each: k reference pairs per unseen user).
    pub fn mean_over<E>(
        &self,
        mut score: impl FnMut(&[Vec<usize>]) -> std::result::Result<f64, E>,
    ) -> std::result::Result<f64, E> {
        let mut sum = 0.0;
        for refs in &self.draws {
            sum += score(refs)?;
        }
        Ok(sum / self.draws.len() as f64)
    }
}

/// The few-shot reference draws of `ds`'s unseen users: for each k of 1, 3, 5 and 9 up to the
/// largest reference count, [`FEW_SHOT_DRAWS`] draws of k random reference pairs of each unseen
/// user (all of a user's pairs where it has fewer). Draw j is [`reference_draws`] with seed
/// 1234 + 1000·j, so draw 0 is the single draw of earlier versions.
pub fn few_shot_draws(ds: &Dataset) -> Vec<FewShotPoint> {
    let most = ds
        .unseen
        .iter()
        .map(|&u| ds.users[u].refs.len())
        .max()
        .unwrap_or(0);
    let runs: Vec<_> = (0..FEW_SHOT_DRAWS as u64)
        .map(|j| reference_draws(ds, &ds.unseen, 1234 + 1000 * j))
        .collect();
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, (k, _))| FewShotPoint {
            k: *k,
            draws: if *k >= most {
                vec![first[i].1.clone()]
            } else {
                runs.iter().map(|r| r[i].1.clone()).collect()
            },
        })
        .collect()
}

/// [`few_shot_draws`] for any group of `users`, the RNG of each k seeded by `seed + k`.
pub fn reference_draws(ds: &Dataset, users: &[usize], seed: u64) -> Vec<(usize, Vec<Vec<usize>>)> {
    let max_refs = users
        .iter()
        .map(|&u| ds.users[u].refs.len())
        .max()
        .unwrap_or(0);
    [1usize, 3, 5, 9]
        .into_iter()
        .filter(|&kk| kk <= max_refs)
        .map(|kk| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed + kk as u64);
            let refs = users
                .iter()
                .map(|&u| {
                    let mut r = ds.users[u].refs.clone();
                    r.shuffle(&mut rng);
                    r.truncate(kk);
                    r
                })
                .collect();
            (kk, refs)
        })
        .collect()
}

/// Evaluates `model` per docs/METHOD.md §5; returns the report and the seen users' posteriors.
pub fn evaluate(
    model: &RewardModel,
    ds: &Dataset,
    corpus: &Corpus,
) -> Result<(EvalReport, Vec<UserPosterior>)> {
    let cfg = &model.cfg;
    let f = Features::of_users(model, corpus, ds)?;

    let evals_of =
        |g: &[usize]| -> Vec<Vec<usize>> { g.iter().map(|&u| ds.users[u].evals.clone()).collect() };
    let refs_of =
        |g: &[usize]| -> Vec<Vec<usize>> { g.iter().map(|&u| ds.users[u].refs.clone()).collect() };
    let mut report = EvalReport::skeleton(cfg.method.name(), cfg.train.seed, ds, corpus);
    let mut cached = Vec::new();
    match cfg.method {
        Method::Lore | Method::Pref | Method::Pal | Method::Vpl => {
            return Err(TrainError::NotEngineMethod(cfg.method.name()))
        }
        Method::Bt => {
            let acc = |g: &[usize]| -> Result<f64> {
                let tr: Vec<usize> = evals_of(g).into_iter().flatten().collect();
                Ok(pairwise_accuracy(
                    &f.delta(corpus, &tr)?.squeeze(D::Minus1)?,
                )?)
            };
            report.seen_accuracy = acc(&ds.seen)?;
            report.unseen_accuracy = acc(&ds.unseen)?;
            let tr: Vec<usize> = evals_of(&ds.unseen).into_iter().flatten().collect();
            if !tr.is_empty() {
                let margin = f.delta(corpus, &tr)?.squeeze(D::Minus1)?;
                report.calibration = calibration(&sigmoid(&margin)?);
            }
        }
        Method::Vrf => {
            let k = cfg.model.k;
            let mut tops = vec![0usize; k];
            let (mut ent_sum, mut unc_sum, mut n_users) = (0.0, 0.0, 0usize);
            let mut acc = [f64::NAN; 2];
            let mut uni = [f64::NAN; 2];
            // Each group's `(σ², w)` at its full reference sets, for the calibration below.
            let mut full: [Option<(Tensor, Tensor)>; 2] = [None, None];
            for (gi, group) in [&ds.seen, &ds.unseen].into_iter().enumerate() {
                if group.is_empty() {
                    continue;
                }
                let t0 = std::time::Instant::now();
                let (mu, var, w) = posteriors(model, &f, corpus, &refs_of(group))?;
                full[gi] = Some((var.clone(), w.clone()));
                if gi == 1 {
                    let s = t0.elapsed().as_secs_f64();
                    report.cost.adapt_seconds = Some(s);
                    report.cost.adapt_seconds_per_user = Some(s / group.len() as f64);
                }
                let evals = evals_of(group);
                acc[gi] = group_accuracy(&f, corpus, &evals, &w)?;
                let uniform =
                    Tensor::ones(w.dims(), DType::F32, w.device())?.affine(1.0 / k as f64, 0.0)?;
                uni[gi] = group_accuracy(&f, corpus, &evals, &uniform)?;
                let (mu_v, var_v, w_v) = (
                    mu.to_vec2::<f32>()?,
                    var.to_vec2::<f32>()?,
                    w.to_vec2::<f32>()?,
                );
                for (ui, &u) in group.iter().enumerate() {
                    let wu = &w_v[ui];
                    let top = wu
                        .iter()
                        .enumerate()
                        .fold(0, |b, (i, v)| if *v > wu[b] { i } else { b });
                    tops[top] += 1;
                    let h: f64 = wu
                        .iter()
                        .map(|&p| {
                            if p > 0.0 {
                                -(p as f64) * (p as f64).ln()
                            } else {
                                0.0
                            }
                        })
                        .sum();
                    ent_sum += if k > 1 { h / (k as f64).ln() } else { 0.0 };
                    let unc = var_v[ui].iter().sum::<f32>() / var_v[ui].len() as f32;
                    unc_sum += unc as f64;
                    n_users += 1;
                    if gi == 0 {
                        cached.push(UserPosterior {
                            id: ds.users[u].id.clone(),
                            mean: mu_v[ui].clone(),
                            var: var_v[ui].clone(),
                            weights: wu.clone(),
                            uncertainty: unc,
                        });
                    }
                }
            }
            report.seen_accuracy = acc[0];
            report.unseen_accuracy = acc[1];
            let free_acc = match &model.free_logits {
                Some(free) if free.dim(0)? == ds.seen.len() => {
                    let w = candle_nn::ops::softmax(free, D::Minus1)?;
                    Some(group_accuracy(&f, corpus, &evals_of(&ds.seen), &w)?)
                }
                _ => None,
            };
            // Correlation over eval responses only.
            let eval_texts: Vec<usize> = pair_texts(
                corpus,
                ds.users.iter().flat_map(|u| u.evals.iter().copied()),
            )
            .into_iter()
            .map(|t| f.pos[&t] as usize)
            .collect();
            let (eval_rows, _) = dedup(&eval_texts);
            let eval_rows: Vec<u32> = eval_rows.into_iter().map(|x| x as u32).collect();
            report.collapse = Some(Collapse {
                seen_uniform_accuracy: uni[0],
                unseen_uniform_accuracy: uni[1],
                seen_gain: acc[0] - uni[0],
                unseen_gain: acc[1] - uni[1],
                distinct_top_bases: tops.iter().filter(|&&c| c > 0).count(),
                top_basis_histogram: tops,
                weight_entropy: ent_sum / n_users.max(1) as f64,
                basis_reward_correlation: mean_offdiag_corr(&rows(&f.phi, &eval_rows)?)?,
                mean_uncertainty: unc_sum / n_users.max(1) as f64,
                seen_free_weights_accuracy: free_acc,
            });
            // Few-shot curve for unseen users: k random reference pairs each (fixed seed).
            if !ds.unseen.is_empty() {
                let evals = evals_of(&ds.unseen);
                // With a population prior, k = 0 (the prior alone: cold start) too.
                let cold = model
                    .encoder
                    .as_ref()
                    .and_then(|e| e.prior())
                    .map(|_| FewShotPoint {
                        k: 0,
                        draws: vec![vec![Vec::new(); ds.unseen.len()]],
                    });
                for point in cold.into_iter().chain(few_shot_draws(ds)) {
                    let acc = point.mean_over(|refs| -> Result<f64> {
                        let (_, _, w) = posteriors(model, &f, corpus, refs)?;
                        group_accuracy(&f, corpus, &evals, &w)
                    })?;
                    report.few_shot.push((point.k, acc));
                }
                // Calibration and σ² against error, at full reference sets (the posteriors
                // computed above; the unseen group's is there, the group not being empty) and
                // at mixed k.
                let outcomes_of = |post: &Option<(Tensor, Tensor)>, evals| match post {
                    Some((var, w)) => user_outcomes(&f, corpus, var, w, evals).map(Some),
                    None => Ok(None),
                };
                if let Some(unseen) = outcomes_of(&full[1], &evals)? {
                    report.calibration = calibration(&unseen.probabilities);
                    let mixed_refs = mixed_k_draw(ds);
                    let (_, var, w) = posteriors(model, &f, corpus, &mixed_refs)?;
                    let mixed = user_outcomes(&f, corpus, &var, &w, &evals)?;
                    let fewer: Vec<f64> = mixed_refs.iter().map(|r| -(r.len() as f64)).collect();
                    // A temperature fitted on the seen (training) users' eval pairs only (1: none).
                    let temperature = outcomes_of(&full[0], &evals_of(&ds.seen))?
                        .map_or(1.0, |seen| fit_temperature(&seen.logits));
                    let tempered: Vec<f64> = unseen
                        .logits
                        .iter()
                        .map(|&z| logistic(z / temperature))
                        .collect();
                    let rho = |x: f64| (!x.is_nan()).then_some(x as f32);
                    let predicted = mixed.predicted_error(temperature);
                    report.uncertainty = Some(UncertaintyReport {
                        spearman_full: rho(spearman(&unseen.sigma2, &unseen.error)),
                        spearman_mixed_k: rho(spearman(&mixed.sigma2, &mixed.error)),
                        mixed_k_accuracy: mixed.accuracy as f32,
                        mixed_k_calibration: calibration(&mixed.probabilities),
                        temperature: temperature as f32,
                        tempered_calibration: calibration(&tempered),
                        predicted_error_spearman_mixed_k: rho(spearman(&predicted, &mixed.error)),
                        answers_spearman_mixed_k: rho(spearman(&fewer, &mixed.error)),
                    });
                }
            }
        }
    }
    report.overall_accuracy = macro_average(report.seen_accuracy, report.unseen_accuracy);
    Ok((report, cached))
}

/// The logistic function σ(x) = 1 / (1 + e^−x).
fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// σ(x) of a margin vector `[N]`, as f64: the preference probabilities of a reward margin.
pub fn sigmoid(margin: &Tensor) -> Result<Vec<f64>> {
    Ok(margin
        .to_vec1::<f32>()?
        .into_iter()
        .map(|m| logistic(f64::from(m)))
        .collect())
}

/// What a group of users' posteriors give on their eval pairs.
struct UserOutcomes {
    /// Each user's σ² (mean posterior variance).
    sigma2: Vec<f64>,
    /// Each user's error rate on their eval pairs (NaN without pairs).
    error: Vec<f64>,
    /// Every eval pair's `P(chosen ≻ rejected)` (Eq. 8), users in order.
    probabilities: Vec<f64>,
    /// The attenuated logits behind them.
    logits: Vec<f64>,
    /// The user (index into the group) of each pair.
    user_of: Vec<usize>,
    /// Pairwise accuracy over all the pairs.
    accuracy: f64,
}

impl UserOutcomes {
    /// Each user's predicted error rate: the mean `min(P, 1 − P)` of their pairs, with
    /// `P = σ(z / T)` (NaN without pairs).
    fn predicted_error(&self, temperature: f64) -> Vec<f64> {
        let n = self.error.len();
        let (mut sum, mut count) = (vec![0f64; n], vec![0usize; n]);
        for (&u, &z) in self.user_of.iter().zip(&self.logits) {
            let p = logistic(z / temperature);
            sum[u] += p.min(1.0 - p);
            count[u] += 1;
        }
        sum.iter()
            .zip(&count)
            .map(|(&s, &c)| if c == 0 { f64::NAN } else { s / c as f64 })
            .collect()
    }
}

/// The outcomes on `evals` (per user) of users with posterior variances `var` and weights `w`
/// (one row per user).
fn user_outcomes(
    f: &Features,
    corpus: &Corpus,
    var: &Tensor,
    w: &Tensor,
    evals: &[Vec<usize>],
) -> Result<UserOutcomes> {
    let sigma2: Vec<f64> = var
        .mean(D::Minus1)?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect();
    let (tr, seg) = flatten_users(evals);
    if tr.is_empty() {
        let n = evals.len();
        return Ok(UserOutcomes {
            sigma2,
            error: vec![f64::NAN; n],
            probabilities: vec![],
            logits: vec![],
            user_of: vec![],
            accuracy: f64::NAN,
        });
    }
    let seg32: Vec<u32> = seg.iter().map(|&u| u as u32).collect();
    let (mu, v) = loss::moments(&rows(w, &seg32)?, &f.delta(corpus, &tr)?)?;
    let z = loss::attenuated_logit(&mu, &v)?;
    let probabilities = sigmoid(&z)?;
    let logits = z.to_vec1::<f32>()?.into_iter().map(f64::from).collect();
    let mu = mu.to_vec1::<f32>()?;
    let (mut wrong, mut count) = (vec![0usize; evals.len()], vec![0usize; evals.len()]);
    for (&u, &m) in seg.iter().zip(&mu) {
        count[u] += 1;
        // A tie counts as wrong, as in pairwise accuracy.
        if m <= 0.0 {
            wrong[u] += 1;
        }
    }
    let error = wrong
        .iter()
        .zip(&count)
        .map(|(&w, &c)| {
            if c == 0 {
                f64::NAN
            } else {
                w as f64 / c as f64
            }
        })
        .collect();
    let accuracy = 1.0 - wrong.iter().sum::<usize>() as f64 / mu.len() as f64;
    Ok(UserOutcomes {
        sigma2,
        error,
        probabilities,
        logits,
        user_of: seg,
        accuracy,
    })
}

/// Each unseen user's reference pairs cut to a k drawn uniformly from 1…|R_u| (a fixed seed):
/// users who differ in how much is known about them.
pub fn mixed_k_draw(ds: &Dataset) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(4321);
    ds.unseen
        .iter()
        .map(|&u| {
            let mut r = ds.users[u].refs.clone();
            r.shuffle(&mut rng);
            let k = rand::Rng::random_range(&mut rng, 1..=r.len().max(1));
            r.truncate(k);
            r
        })
        .collect()
}

/// Macro-average of the seen and unseen accuracies, ignoring a missing group.
pub fn macro_average(seen: f64, unseen: f64) -> f64 {
    match (seen.is_nan(), unseen.is_nan()) {
        (false, false) => (seen + unseen) / 2.0,
        (false, true) => seen,
        (true, false) => unseen,
        (true, true) => f64::NAN,
    }
}

/// A one-run table of the report, for the terminal.
pub fn format_report(r: &EvalReport) -> String {
    let pct = |x: f64| {
        if x.is_nan() {
            "   n/a".to_string()
        } else {
            format!("{:6.2}", 100.0 * x)
        }
    };
    let mut s = format!(
        "{:<4} seen {} ({} pairs)  unseen {} ({} pairs)  overall {}\n",
        r.method.to_uppercase(),
        pct(r.seen_accuracy),
        r.seen_pairs,
        pct(r.unseen_accuracy),
        r.unseen_pairs,
        pct(r.overall_accuracy)
    );
    if let Some(c) = &r.collapse {
        s += &format!(
            "     uniform-w seen {} unseen {}  gain seen {:+.2} unseen {:+.2} pt\n     top bases used {} {:?}  weight entropy {:.3}  basis-reward corr {:.3}  uncertainty {:.4}\n",
            pct(c.seen_uniform_accuracy),
            pct(c.unseen_uniform_accuracy),
            100.0 * c.seen_gain,
            100.0 * c.unseen_gain,
            c.distinct_top_bases,
            c.top_basis_histogram,
            c.weight_entropy,
            c.basis_reward_correlation,
            c.mean_uncertainty
        );
    }
    if let Some(fa) = r
        .collapse
        .as_ref()
        .and_then(|c| c.seen_free_weights_accuracy)
    {
        s += &format!("     seen with stage-1 free weights {}\n", pct(fa));
    }
    if !r.few_shot.is_empty() {
        let fs: Vec<String> = r
            .few_shot
            .iter()
            .map(|(k, a)| format!("k={k}: {}", pct(*a).trim()))
            .collect();
        s += &format!("     unseen few-shot {}\n", fs.join("  "));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fitted_temperature_undoes_a_known_overconfidence() {
        // Outcomes drawn from σ(x), reported as logits 2x: the log-loss is smallest at T = 2.
        let mut state = 12345u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let z: Vec<f64> = (0..20000)
            .map(|_| {
                let x = 6.0 * uniform() - 3.0;
                let chosen_first = uniform() < super::logistic(x);
                if chosen_first {
                    2.0 * x
                } else {
                    -2.0 * x
                }
            })
            .collect();
        let t = super::fit_temperature(&z);
        assert!((t - 2.0).abs() < 0.15, "{t}");
        assert_eq!(super::fit_temperature(&[]), 1.0);
    }
}
