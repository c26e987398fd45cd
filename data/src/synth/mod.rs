//! The embedded synthetic PersonalLLM benchmark (docs/METHOD.md §6).
//!
//! Prompts come from templates (topic × question kind × context) and are split into a train pool
//! and an eval pool. Each prompt gets [`SynthConfig::responses_per_prompt`] responses rendered
//! from templates with ten independently drawn style levels and a latent quality, with synonym
//! banks and topic words for lexical variety. Ten deterministic scorers read the response
//! **text** (never the latent levels): scorer j is the z-normalised measure of style j plus
//! `quality_weight` × the z-normalised quality measure, so scorers correlate as reward models do.
//! Users are Dirichlet(α·1) mixtures of the scorers; each user's pair on a prompt is the
//! highest- vs the lowest-scoring response ([`PairMode::BestWorst`]), or, in the harder
//! [`PairMode::Random`], two random responses of different scores, the higher one chosen.
//!
//! Style levels are drawn independently per response and each measure reads markers that only its
//! own style writes, so the ten measures are (nearly) independent.
//!
//! Files by concept: `words` (word banks and templates), `render` (styles and response
//! rendering), `scorers` (the ten measures, quality, [`ScorerStats`]), `generate` (prompt pool,
//! users, [`Synthetic`]), `pairs` ([`PairMode`]: which two responses form a pair), `io` (JSONL
//! and the [`meta_path`] side-file), `sanity` ([`SanityReport`]).

use crate::DataError;
use serde::{Deserialize, Serialize};

mod generate;
mod io;
mod pairs;
mod render;
mod sanity;
mod scorers;
mod words;

pub use generate::{generate, SynthPrompt, Synthetic};
pub use io::{meta_path, SynthMeta};
pub use pairs::PairMode;
pub use sanity::SanityReport;
pub use scorers::{quality, scorers, ScorerStats, N_SCORERS, SCORER_NAMES};

use generate::prompt_pool_size;

/// Errors from the generator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// The configuration is unusable.
    #[error("invalid synthetic config: {0}")]
    Config(String),
    /// All responses of a prompt tie for a user (no preference can be formed).
    #[error("all responses of prompt {prompt:?} tie for user {user}")]
    Degenerate {
        /// The user.
        user: String,
        /// The prompt.
        prompt: String,
    },
    /// Writing the output failed.
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Generator settings (docs/METHOD.md §6; per-user sizes follow the paper's Table 3 for PersonalLLM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Users with target (training) rows.
    pub seen_users: usize,
    /// Users with only reference and eval rows.
    pub unseen_users: usize,
    /// Dirichlet concentration of user weights (0.1 very diverse, 10 near uniform).
    pub alpha: f64,
    /// RNG seed; the output is a deterministic function of the config.
    pub seed: u64,
    /// Prompts in the training pool (ref and target rows).
    pub train_prompts: usize,
    /// Prompts in the eval pool (eval rows only).
    pub eval_prompts: usize,
    /// Responses generated per prompt.
    pub responses_per_prompt: usize,
    /// Weight of the shared quality measure in every scorer.
    pub quality_weight: f64,
    /// Reference triplets per user (seen and unseen).
    pub ref_per_user: usize,
    /// Target triplets per seen user.
    pub target_per_user: usize,
    /// Eval triplets per seen user.
    pub seen_eval_per_user: usize,
    /// Eval triplets per unseen user.
    pub unseen_eval_per_user: usize,
    /// How each user's pair on a prompt is drawn (best-worst by default; absent in old files).
    pub pairs: PairMode,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            seen_users: 200,
            unseen_users: 200,
            alpha: 0.1,
            seed: 0,
            train_prompts: 300,
            eval_prompts: 100,
            responses_per_prompt: 8,
            quality_weight: 0.3,
            ref_per_user: 9,
            target_per_user: 36,
            seen_eval_per_user: 45,
            unseen_eval_per_user: 9,
            pairs: PairMode::BestWorst,
        }
    }
}

impl SynthConfig {
    /// Checks the settings against each other and the template pool.
    pub fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::Config(m));
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!("alpha must be positive, got {}", self.alpha));
        }
        if !self.quality_weight.is_finite() || self.quality_weight < 0.0 {
            return bad(format!(
                "quality_weight must be ≥ 0, got {}",
                self.quality_weight
            ));
        }
        if self.responses_per_prompt < 2 {
            return bad("responses_per_prompt must be at least 2".into());
        }
        if self.ref_per_user == 0 {
            return bad(
                "ref_per_user must be at least 1 (users are inferred from reference rows)".into(),
            );
        }
        let need_train = self.ref_per_user + self.target_per_user;
        if self.train_prompts < need_train {
            return bad(format!(
                "train_prompts = {} < ref + target per user = {need_train}",
                self.train_prompts
            ));
        }
        let need_eval = self.seen_eval_per_user.max(self.unseen_eval_per_user);
        if self.eval_prompts < need_eval {
            return bad(format!(
                "eval_prompts = {} < eval rows per user = {need_eval}",
                self.eval_prompts
            ));
        }
        let pool = prompt_pool_size();
        if self.train_prompts + self.eval_prompts > pool {
            return bad(format!(
                "train_prompts + eval_prompts = {} exceeds the {pool} distinct template prompts",
                self.train_prompts + self.eval_prompts
            ));
        }
        if self.seen_users + self.unseen_users == 0 {
            return bad("no users".into());
        }
        Ok(())
    }
}

/// A small config for the unit tests (11 users, 180 prompts).
#[cfg(test)]
fn small() -> SynthConfig {
    SynthConfig {
        seen_users: 6,
        unseen_users: 5,
        train_prompts: 120,
        eval_prompts: 60,
        ..SynthConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        for bad in [
            SynthConfig {
                alpha: 0.0,
                ..small()
            },
            SynthConfig {
                train_prompts: 10,
                ..small()
            },
            SynthConfig {
                eval_prompts: 5000,
                ..small()
            },
            SynthConfig {
                responses_per_prompt: 1,
                ..small()
            },
        ] {
            assert!(generate(&bad).is_err(), "{bad:?}");
        }
        let cfg: SynthConfig = serde_json::from_str("{\"alpha\": 1.0}").unwrap();
        assert_eq!(
            cfg,
            SynthConfig {
                alpha: 1.0,
                ..SynthConfig::default()
            }
        );
    }
}
