//! The generator: prompt pool, responses per prompt, users and their preference pairs.

use super::render::{render_response, Style};
use super::scorers::{ScorerStats, N_SCORERS};
use super::words::{CONTEXTS, QUESTION_KINDS, TOPICS};
use super::{SynthConfig, SynthError};
use crate::{Split, Triplet};
use rand::seq::index;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Dirichlet, Distribution};

/// Number of distinct template prompts (topics × question kinds × contexts).
pub(super) fn prompt_pool_size() -> usize {
    TOPICS.len() * QUESTION_KINDS.len() * CONTEXTS.len()
}

/// The prompt with the given pool index, and its topic index.
fn prompt_at(i: usize) -> (String, usize) {
    let c = i % CONTEXTS.len();
    let q = (i / CONTEXTS.len()) % QUESTION_KINDS.len();
    let t = i / (CONTEXTS.len() * QUESTION_KINDS.len());
    (
        format!(
            "{}{}",
            CONTEXTS[c],
            QUESTION_KINDS[q].replace("{t}", TOPICS[t].0)
        ),
        t,
    )
}

/// One prompt of the pool and its responses.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthPrompt {
    /// The prompt text.
    pub text: String,
    /// Whether the prompt belongs to the eval pool.
    pub eval: bool,
    /// The rendered responses (distinct).
    pub responses: Vec<String>,
    /// Normalised scorer vectors of the responses.
    pub scores: Vec<[f64; N_SCORERS]>,
}

/// The generator's output.
#[derive(Debug, Clone)]
pub struct Synthetic {
    /// The settings used.
    pub config: SynthConfig,
    /// All triplets: per user, ref then target then eval rows; seen users first.
    pub triplets: Vec<Triplet>,
    /// Each user's true scorer weights.
    pub user_weights: Vec<(String, Vec<f64>)>,
    /// Normalisation of the scorers over all generated responses.
    pub stats: ScorerStats,
    /// The prompt pool (train prompts first, then eval prompts).
    pub prompts: Vec<SynthPrompt>,
}

/// A ChaCha stream keyed by (seed, tag), so each part of the output has its own RNG.
pub(super) fn rng_for(seed: u64, tag: u64) -> ChaCha8Rng {
    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    ChaCha8Rng::seed_from_u64(splitmix(seed ^ splitmix(tag)))
}

const TAG_PROMPTS: u64 = 1;
const TAG_USERS: u64 = 2;
/// Only read in [`super::PairMode::Random`], so best-worst output is what it was before pair modes.
const TAG_PAIRS: u64 = 3;
const TAG_RESPONSES: u64 = 1 << 32;

fn user_id(prefix: char, i: usize, n: usize) -> String {
    let width = n.saturating_sub(1).to_string().len().max(4);
    format!("{prefix}{i:0width$}")
}

/// Generates the benchmark for a config (deterministic in the config).
pub fn generate(cfg: &SynthConfig) -> Result<Synthetic, SynthError> {
    cfg.validate()?;
    // Prompt pools.
    let mut rng = rng_for(cfg.seed, TAG_PROMPTS);
    let chosen = index::sample(
        &mut rng,
        prompt_pool_size(),
        cfg.train_prompts + cfg.eval_prompts,
    )
    .into_vec();
    let mut prompts: Vec<SynthPrompt> = Vec::with_capacity(chosen.len());
    let mut topics = Vec::with_capacity(chosen.len());
    for (k, &pi) in chosen.iter().enumerate() {
        let (text, topic) = prompt_at(pi);
        let mut rrng = rng_for(cfg.seed, TAG_RESPONSES + k as u64);
        let mut responses: Vec<String> = Vec::with_capacity(cfg.responses_per_prompt);
        let mut tries = 0;
        while responses.len() < cfg.responses_per_prompt {
            let style = Style::draw(&mut rrng);
            let r = render_response(&mut rrng, topic, &style);
            tries += 1;
            if !responses.contains(&r) || tries > 1000 {
                responses.push(r);
            }
        }
        prompts.push(SynthPrompt {
            text,
            eval: k >= cfg.train_prompts,
            responses,
            scores: Vec::new(),
        });
        topics.push(topic);
    }
    // Scorer normalisation over every generated response.
    let stats = ScorerStats::fit(
        prompts
            .iter()
            .flat_map(|p| p.responses.iter().map(String::as_str)),
        cfg.quality_weight,
    );
    for p in &mut prompts {
        p.scores = p.responses.iter().map(|r| stats.score(r)).collect();
    }
    // Users.
    let mut rng = rng_for(cfg.seed, TAG_USERS);
    let mut pair_rng = rng_for(cfg.seed, TAG_PAIRS);
    let dirichlet = Dirichlet::new([cfg.alpha; N_SCORERS])
        .map_err(|e| SynthError::Config(format!("Dirichlet: {e}")))?;
    let n_seen = cfg.seen_users;
    let n_unseen = cfg.unseen_users;
    let mut triplets = Vec::new();
    let mut user_weights = Vec::with_capacity(n_seen + n_unseen);
    let train_pool: Vec<usize> = (0..cfg.train_prompts).collect();
    let eval_pool: Vec<usize> = (cfg.train_prompts..cfg.train_prompts + cfg.eval_prompts).collect();
    for u in 0..n_seen + n_unseen {
        let seen = u < n_seen;
        let id = if seen {
            user_id('s', u, n_seen)
        } else {
            user_id('n', u - n_seen, n_unseen)
        };
        let w: [f64; N_SCORERS] = dirichlet.sample(&mut rng);
        let n_target = if seen { cfg.target_per_user } else { 0 };
        let n_eval = if seen {
            cfg.seen_eval_per_user
        } else {
            cfg.unseen_eval_per_user
        };
        let train =
            index::sample(&mut rng, train_pool.len(), cfg.ref_per_user + n_target).into_vec();
        let eval = index::sample(&mut rng, eval_pool.len(), n_eval).into_vec();
        let rows = train
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                (
                    train_pool[p],
                    if i < cfg.ref_per_user {
                        Split::Ref
                    } else {
                        Split::Target
                    },
                )
            })
            .chain(eval.iter().map(|&p| (eval_pool[p], Split::Eval)));
        for (p, split) in rows {
            let pr = &prompts[p];
            let (c, r) = cfg
                .pairs
                .pick(&pr.scores, &w, &mut pair_rng)
                .ok_or_else(|| SynthError::Degenerate {
                    user: id.clone(),
                    prompt: pr.text.clone(),
                })?;
            triplets.push(Triplet {
                user: id.clone(),
                prompt: pr.text.clone(),
                chosen: pr.responses[c].clone(),
                rejected: pr.responses[r].clone(),
                split,
            });
        }
        user_weights.push((id, w.to_vec()));
    }
    Ok(Synthetic {
        config: cfg.clone(),
        triplets,
        user_weights,
        stats,
        prompts,
    })
}

pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::small;
    use crate::Dataset;
    use std::collections::HashSet;

    #[test]
    fn deterministic_per_seed() {
        let a = generate(&small()).unwrap();
        let b = generate(&small()).unwrap();
        assert_eq!(a.triplets, b.triplets);
        assert_eq!(a.user_weights, b.user_weights);
        let c = generate(&SynthConfig { seed: 1, ..small() }).unwrap();
        assert_ne!(a.triplets, c.triplets);
        assert_ne!(a.user_weights, c.user_weights);
    }

    #[test]
    fn counts_per_user_and_split() {
        let cfg = small();
        let s = generate(&cfg).unwrap();
        let ds = Dataset::from_triplets(s.triplets.clone()).unwrap();
        assert_eq!(ds.seen.len(), cfg.seen_users);
        assert_eq!(ds.unseen.len(), cfg.unseen_users);
        for &u in &ds.seen {
            let u = &ds.users[u];
            assert!(u.id.starts_with('s'));
            assert_eq!((u.refs.len(), u.targets.len(), u.evals.len()), (9, 36, 45));
        }
        for &u in &ds.unseen {
            let u = &ds.users[u];
            assert!(u.id.starts_with('n'));
            assert_eq!((u.refs.len(), u.targets.len(), u.evals.len()), (9, 0, 9));
        }
        assert_eq!(s.user_weights.len(), 11);
        for (_, w) in &s.user_weights {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9 && w.iter().all(|&x| x >= 0.0));
        }
    }

    #[test]
    fn prompts_disjoint_and_pairs_valid() {
        let s = generate(&small()).unwrap();
        let eval: HashSet<&str> = s
            .prompts
            .iter()
            .filter(|p| p.eval)
            .map(|p| p.text.as_str())
            .collect();
        let train: HashSet<&str> = s
            .prompts
            .iter()
            .filter(|p| !p.eval)
            .map(|p| p.text.as_str())
            .collect();
        assert_eq!(eval.len(), 60);
        assert_eq!(train.len(), 120);
        assert!(eval.is_disjoint(&train));
        let ds = Dataset::from_triplets(s.triplets.clone()).unwrap();
        for u in &ds.users {
            let mut ps = HashSet::new();
            for &i in u.refs.iter().chain(&u.targets) {
                assert!(train.contains(ds.triplets[i].prompt.as_str()));
                assert!(
                    ps.insert(ds.triplets[i].prompt.as_str()),
                    "train prompts of a user are distinct"
                );
            }
            let mut ps = HashSet::new();
            for &i in &u.evals {
                assert!(eval.contains(ds.triplets[i].prompt.as_str()));
                assert!(ps.insert(ds.triplets[i].prompt.as_str()));
            }
        }
        for t in &s.triplets {
            assert_ne!(t.chosen, t.rejected);
        }
        for p in &s.prompts {
            let uniq: HashSet<&String> = p.responses.iter().collect();
            assert_eq!(uniq.len(), p.responses.len());
        }
        // Oracle rankers agree with every label.
        let rep = s.sanity();
        assert_eq!(rep.oracle, 1.0);
    }
}
