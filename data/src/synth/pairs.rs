//! Pair selection: which two of a prompt's responses form a user's preference pair.

use super::scorers::N_SCORERS;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How each user's pair on a prompt is drawn from its responses, ranked by the user's composite
/// score `w_u · s(y)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PairMode {
    /// The highest- vs the lowest-scoring response (docs/METHOD.md §6): the widest margin per prompt.
    #[default]
    BestWorst,
    /// Two distinct responses drawn at random among the pairs whose composite scores differ,
    /// the higher-scoring one chosen: smaller margins, a harder benchmark.
    Random,
}

/// The user's composite score of each response.
fn composite(scores: &[[f64; N_SCORERS]], w: &[f64]) -> Vec<f64> {
    scores.iter().map(|s| super::generate::dot(s, w)).collect()
}

/// Indices of the highest- and lowest-scoring responses under weights `w` (first on ties);
/// `None` when all tie.
fn best_and_worst(scores: &[[f64; N_SCORERS]], w: &[f64]) -> Option<(usize, usize)> {
    let comp = composite(scores, w);
    let mut hi = 0;
    let mut lo = 0;
    for (i, &c) in comp.iter().enumerate() {
        if c > comp[hi] {
            hi = i;
        }
        if c < comp[lo] {
            lo = i;
        }
    }
    (comp[hi] > comp[lo]).then_some((hi, lo))
}

/// (chosen, rejected) drawn uniformly among the unordered pairs of distinct responses whose
/// composite scores differ (the same law as redrawing on a tie, without an unbounded loop);
/// `None` when all tie.
fn random_pair(
    scores: &[[f64; N_SCORERS]],
    w: &[f64],
    rng: &mut ChaCha8Rng,
) -> Option<(usize, usize)> {
    let comp = composite(scores, w);
    let n = comp.len();
    let candidates: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .filter(|&(i, j)| comp[i] != comp[j])
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let (i, j) = candidates[rng.random_range(0..candidates.len())];
    Some(if comp[i] > comp[j] { (i, j) } else { (j, i) })
}

impl PairMode {
    /// Indices (chosen, rejected) of the user's pair among `scores`; `None` when all responses
    /// tie. `rng` is only read by [`PairMode::Random`], so best-worst output does not depend on it.
    pub(super) fn pick(
        self,
        scores: &[[f64; N_SCORERS]],
        w: &[f64],
        rng: &mut ChaCha8Rng,
    ) -> Option<(usize, usize)> {
        match self {
            PairMode::BestWorst => best_and_worst(scores, w),
            PairMode::Random => random_pair(scores, w, rng),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{generate, small, SynthConfig, SynthMeta, Synthetic};
    use std::collections::HashMap;

    fn random() -> SynthConfig {
        SynthConfig {
            pairs: PairMode::Random,
            ..small()
        }
    }

    /// Each triplet's (chosen, rejected) composite scores under its user's true weights and
    /// all composite scores of its prompt.
    fn composites(s: &Synthetic) -> Vec<(f64, f64, Vec<f64>)> {
        let w: HashMap<&str, &[f64]> = s
            .user_weights
            .iter()
            .map(|(u, w)| (u.as_str(), w.as_slice()))
            .collect();
        let prompts: HashMap<&str, _> = s.prompts.iter().map(|p| (p.text.as_str(), p)).collect();
        s.triplets
            .iter()
            .map(|t| {
                let p = prompts[t.prompt.as_str()];
                let comp = composite(&p.scores, w[t.user.as_str()]);
                let at = |text: &str| p.responses.iter().position(|r| r == text).unwrap();
                (comp[at(&t.chosen)], comp[at(&t.rejected)], comp)
            })
            .collect()
    }

    #[test]
    fn best_worst_pairs_are_the_extremes() {
        // Best-worst output is what it was before pair modes: the extremes of each prompt.
        let s = generate(&small()).unwrap();
        for (c, r, comp) in composites(&s) {
            let hi = comp.iter().cloned().fold(f64::MIN, f64::max);
            let lo = comp.iter().cloned().fold(f64::MAX, f64::min);
            assert_eq!((c, r), (hi, lo));
        }
        // And byte for byte: FNV-1a of the JSONL that the generator wrote before pair modes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        s.write(&path).unwrap();
        let fnv = std::fs::read(&path)
            .unwrap()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        assert_eq!(fnv, 0x7e10_d3fd_2306_e07b);
    }

    #[test]
    fn random_pairs_are_deterministic_distinct_and_ordered() {
        let a = generate(&random()).unwrap();
        let b = generate(&random()).unwrap();
        assert_eq!(a.triplets, b.triplets);
        let c = generate(&SynthConfig {
            seed: 1,
            ..random()
        })
        .unwrap();
        assert_ne!(a.triplets, c.triplets);
        // Same prompts, users and responses as best-worst; only the pairs differ.
        let bw = generate(&small()).unwrap();
        assert_eq!(a.user_weights, bw.user_weights);
        assert_eq!(a.prompts, bw.prompts);
        assert_ne!(a.triplets, bw.triplets);
        let mut not_extreme = 0;
        for (t, (c, r, comp)) in a.triplets.iter().zip(composites(&a)) {
            assert_ne!(t.chosen, t.rejected);
            assert!(c > r, "chosen must score higher for its user");
            let hi = comp.iter().cloned().fold(f64::MIN, f64::max);
            let lo = comp.iter().cloned().fold(f64::MAX, f64::min);
            not_extreme += usize::from((c, r) != (hi, lo));
        }
        assert!(not_extreme > a.triplets.len() / 2, "{not_extreme}");
        assert_eq!(a.sanity().oracle, 1.0);
    }

    #[test]
    fn ties_are_skipped_and_all_ties_degenerate() {
        let scores = [[0.0; N_SCORERS], [1.0; N_SCORERS], [0.0; N_SCORERS]];
        let w = [0.1; N_SCORERS];
        let mut rng = crate::synth::generate::rng_for(0, 0);
        for _ in 0..50 {
            let (c, r) = PairMode::Random.pick(&scores, &w, &mut rng).unwrap();
            assert_eq!(c, 1);
            assert!(r == 0 || r == 2);
        }
        let flat = [[0.5; N_SCORERS]; 3];
        assert_eq!(PairMode::Random.pick(&flat, &w, &mut rng), None);
        assert_eq!(PairMode::BestWorst.pick(&flat, &w, &mut rng), None);
    }

    #[test]
    fn meta_round_trips_the_mode_and_old_files_parse() {
        let dir = tempfile::tempdir().unwrap();
        let s = generate(&random()).unwrap();
        let meta = s.write(dir.path().join("synth.jsonl")).unwrap();
        let text = std::fs::read_to_string(&meta).unwrap();
        assert!(text.contains("\"pairs\": \"random\""), "{text}");
        let m: SynthMeta = serde_json::from_str(&text).unwrap();
        assert_eq!(m.config, random());
        // A meta file written before pair modes has no `pairs` field: best-worst.
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["config"].as_object_mut().unwrap().remove("pairs");
        let old: SynthMeta = serde_json::from_value(v).unwrap();
        assert_eq!(old.config.pairs, PairMode::BestWorst);
        let cfg: SynthConfig = serde_json::from_str("{\"pairs\": \"best-worst\"}").unwrap();
        assert_eq!(cfg, SynthConfig::default());
    }
}
