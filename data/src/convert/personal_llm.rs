//! PersonalLLM (Zollo et al., 2024): prompts with eight responses scored by ten reward models.
//! The paper's protocol (its Appendix A.1, Table 3): z-normalise each reward model's scores,
//! draw users w ~ Dirichlet(α·1₁₀), score each response by w·s, and pair each prompt's highest-
//! with its lowest-scoring response; seen users get 9 ref + 36 target training prompts and 45
//! eval prompts from the test file, unseen users 9 ref training prompts and 9 eval test prompts.

use super::error::{ConvertError, Result};
use super::output::{self, ConvertReport, Skips, SplitStats};
use super::shuffle::Draw;
use super::table::{read_rows, Row};
use crate::{sibling, Split, Triplet};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Dirichlet, Distribution};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The ten reward models whose scores PersonalLLM publishes, in column order.
pub const REWARD_MODELS: [&str; 10] = [
    "gemma_2b",
    "gemma_7b",
    "mistral_raft",
    "mistral_ray",
    "mistral_weqweasdas",
    "llama3_sfairx",
    "oasst_deberta_v3",
    "beaver_7b",
    "oasst_pythia_7b",
    "oasst_pythia_1b",
];

/// Responses per prompt in the published table (`response_1` … `response_8`).
pub const RESPONSES: usize = 8;

/// The protocol's knobs; the defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonalLlmOptions {
    /// Dirichlet concentration α of the user weights (the paper: 0.1, 1, 10).
    pub alpha: f64,
    /// Seed of the users and of the prompt draws.
    pub seed: u64,
    /// Seen users.
    pub seen_users: usize,
    /// Unseen users.
    pub unseen_users: usize,
    /// Reference pairs per user (seen and unseen).
    pub n_ref: usize,
    /// Target pairs per seen user.
    pub n_target: usize,
    /// Eval pairs per seen user (from the test file).
    pub seen_eval: usize,
    /// Eval pairs per unseen user (from the test file).
    pub unseen_eval: usize,
}

impl Default for PersonalLlmOptions {
    fn default() -> Self {
        Self {
            alpha: 0.1,
            seed: 0,
            seen_users: 1000,
            unseen_users: 1000,
            n_ref: 9,
            n_target: 36,
            seen_eval: 45,
            unseen_eval: 9,
        }
    }
}

/// One prompt with its scored responses (raw scores, reward-model order).
#[derive(Debug, Clone)]
struct Prompt {
    prompt: String,
    responses: Vec<(String, [f64; 10])>,
}

/// The side file `<stem>.user_weights.json`: each user's true weights and the normalisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserWeights {
    /// Reward-model names, in weight order.
    pub reward_models: Vec<String>,
    /// Per reward model, the mean and standard deviation used for z-normalisation (train file).
    pub z_mean: Vec<f64>,
    /// See `z_mean`.
    pub z_std: Vec<f64>,
    /// `(user id, weights)`.
    pub user_weights: Vec<(String, Vec<f64>)>,
}

/// Path of the true-weights side file next to the JSONL output.
pub fn weights_path(out: &Path) -> PathBuf {
    sibling(out, "user_weights.json")
}

fn read_prompts(path: &Path, skips: &mut Skips) -> Result<Vec<Prompt>> {
    let rows = read_rows(path)?;
    let mut prompts = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(p) = read_prompt(row, skips)? {
            prompts.push(p);
        }
    }
    if prompts.is_empty() {
        return Err(ConvertError::Protocol(format!(
            "{}: no prompt has two scored responses",
            path.display()
        )));
    }
    Ok(prompts)
}

/// A response with a null text or a null score is unscored; a missing column is an error.
fn read_prompt(row: &Row, skips: &mut Skips) -> Result<Option<Prompt>> {
    let f = row.fields();
    let prompt = f.str("prompt")?.to_string();
    let mut responses = Vec::new();
    for k in 1..=RESPONSES {
        let col = format!("response_{k}");
        if !row.fields.contains_key(&col) {
            return Err(row.error(&col, "missing column"));
        }
        let text = f.opt_str(&col)?;
        let mut scores = [0.0; 10];
        let mut scored = true;
        for (s, rm) in scores.iter_mut().zip(REWARD_MODELS) {
            let c = format!("response_{k}_{rm}");
            if !row.fields.contains_key(&c) {
                return Err(row.error(&c, "missing column"));
            }
            match f.opt_f64(&c)? {
                Some(x) => *s = x,
                None => scored = false,
            }
        }
        match text {
            Some(t) if scored && !t.trim().is_empty() => responses.push((t.to_string(), scores)),
            _ => skips.add("response without text or without all ten scores", || {
                format!("{} {col}", row.place())
            }),
        }
    }
    if responses.len() < 2 {
        skips.add("prompt with fewer than two scored responses", || {
            row.place()
        });
        return Ok(None);
    }
    Ok(Some(Prompt { prompt, responses }))
}

/// Mean and (population) standard deviation of each reward model over the train responses.
fn z_stats(train: &[Prompt]) -> Result<(Vec<f64>, Vec<f64>)> {
    let all: Vec<&[f64; 10]> = train
        .iter()
        .flat_map(|p| p.responses.iter().map(|r| &r.1))
        .collect();
    let n = all.len() as f64;
    let mut mean = vec![0.0; 10];
    let mut std = vec![0.0; 10];
    for m in 0..10 {
        mean[m] = all.iter().map(|s| s[m]).sum::<f64>() / n;
        std[m] = (all.iter().map(|s| (s[m] - mean[m]).powi(2)).sum::<f64>() / n).sqrt();
        if std[m] <= 1e-12 {
            return Err(ConvertError::Protocol(format!(
                "reward model {} has constant scores in the train file: cannot z-normalise",
                REWARD_MODELS[m]
            )));
        }
    }
    Ok((mean, std))
}

/// The best-vs-worst pair of `p` under composite weights `w` on z-scores; `None` on a tie.
fn pair<'a>(p: &'a Prompt, w: &[f64], mean: &[f64], std: &[f64]) -> Option<(&'a str, &'a str)> {
    let score = |s: &[f64; 10]| -> f64 { (0..10).map(|m| w[m] * (s[m] - mean[m]) / std[m]).sum() };
    let scored: Vec<f64> = p.responses.iter().map(|r| score(&r.1)).collect();
    let (mut hi, mut lo) = (0, 0);
    for (i, &s) in scored.iter().enumerate() {
        if s > scored[hi] {
            hi = i;
        }
        if s < scored[lo] {
            lo = i;
        }
    }
    if scored[hi] - scored[lo] <= 1e-12 || p.responses[hi].0 == p.responses[lo].0 {
        return None;
    }
    Some((&p.responses[hi].0, &p.responses[lo].0))
}

/// `n` (prompt, chosen, rejected) of distinct random prompts whose best and worst responses do
/// not tie under `w` (fewer only when the prompts run out).
fn draw_pairs<'a>(
    prompts: &'a [Prompt],
    draw: &mut Draw,
    rng: &mut ChaCha8Rng,
    n: usize,
    w: &[f64],
    mean: &[f64],
    std: &[f64],
) -> Vec<(&'a str, &'a str, &'a str)> {
    draw.take(rng, n, |i| {
        let p = &prompts[i];
        pair(p, w, mean, std).map(|(c, r)| (p.prompt.as_str(), c, r))
    })
}

/// Converts the published `train` and `test` tables into triplets, the report and the true weights.
pub fn convert(
    train: &Path,
    test: &Path,
    opt: &PersonalLlmOptions,
) -> Result<(Vec<Triplet>, ConvertReport, UserWeights)> {
    if !(opt.alpha > 0.0 && opt.alpha.is_finite()) {
        return Err(ConvertError::Protocol(format!(
            "--alpha must be positive, got {}",
            opt.alpha
        )));
    }
    if opt.n_ref == 0 || opt.seen_users == 0 {
        return Err(ConvertError::Protocol(
            "need at least one seen user and one reference pair per user".into(),
        ));
    }
    let mut skips = Skips::default();
    let train_p = read_prompts(train, &mut skips)?;
    let test_p = read_prompts(test, &mut skips)?;
    let (mean, std) = z_stats(&train_p)?;
    let dirichlet = Dirichlet::new([opt.alpha; 10])
        .map_err(|e| ConvertError::Protocol(format!("Dirichlet({}): {e}", opt.alpha)))?;
    let mut rng = ChaCha8Rng::seed_from_u64(opt.seed);
    let mut train_draw = Draw::new(train_p.len());
    let mut test_draw = Draw::new(test_p.len());
    let mut triplets = Vec::new();
    let mut weights = Vec::new();
    let users = (0..opt.seen_users)
        .map(|i| (format!("s{i:04}"), true))
        .chain((0..opt.unseen_users).map(|i| (format!("u{i:04}"), false)));
    for (user, seen) in users {
        let w: [f64; 10] = dirichlet.sample(&mut rng);
        let n_train = opt.n_ref + if seen { opt.n_target } else { 0 };
        let n_eval = if seen { opt.seen_eval } else { opt.unseen_eval };
        let draws = [
            (&train_p, &mut train_draw, n_train, train),
            (&test_p, &mut test_draw, n_eval, test),
        ];
        for (side, (prompts, draw, n, file)) in draws.into_iter().enumerate() {
            let picked = draw_pairs(prompts, draw, &mut rng, n, &w, &mean, &std);
            if picked.len() < n {
                return Err(ConvertError::Protocol(format!(
                    "{}: user {user} needs {n} prompts without a tied best and worst response, \
                     only {} have one",
                    file.display(),
                    picked.len()
                )));
            }
            for (j, (prompt, c, r)) in picked.into_iter().enumerate() {
                let split = match (side, j < opt.n_ref) {
                    (0, true) => Split::Ref,
                    (0, false) => Split::Target,
                    _ => Split::Eval,
                };
                triplets.push(output::triplet(&user, prompt, c, r, split));
            }
        }
        weights.push((user, w.to_vec()));
    }
    let report = ConvertReport {
        dataset: "personal-llm".into(),
        options: serde_json::to_value(opt).unwrap_or_default(),
        stats: SplitStats::of(&triplets),
        skipped: skips,
    };
    let uw = UserWeights {
        reward_models: REWARD_MODELS.iter().map(|s| s.to_string()).collect(),
        z_mean: mean,
        z_std: std,
        user_weights: weights,
    };
    Ok((triplets, report, uw))
}
