//! The stages of a fit (docs/METHOD.md §3, §3b), by the names checkpoints and `metrics.jsonl` use, and how
//! a fit ends.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{Method, RunConfig, Schedule};

/// One stage of a fit; serialised (and written to `state.json` and `metrics.jsonl`) by
/// [`Stage::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// Self-supervised pretraining of the backbone: next-token prediction on the training
    /// texts, before any reward stage (`lm`; only with `train.lm_epochs > 0`).
    #[serde(rename = "lm")]
    Pretrain,
    /// The Bradley–Terry baseline: one scalar reward, prompt-grouped steps (`bt`).
    #[serde(rename = "bt")]
    Bt,
    /// End-to-end VRF: backbone, heads, encoder and bases together (`e2e`).
    #[serde(rename = "e2e")]
    EndToEnd,
    /// Staged fit, stage 1: backbone and heads with free per-user logits (`s1`).
    #[serde(rename = "s1")]
    Stage1,
    /// Staged fit, after stage 1 (optional): heads and free logits only, on frozen backbone
    /// states (`s1h`; only with `train.s1_head_epochs > 0`).
    #[serde(rename = "s1h")]
    Stage1Heads,
    /// Staged fit, stage 2: the encoder distils the stage-1 weights, backbone frozen (`s2`).
    #[serde(rename = "s2")]
    Stage2,
    /// Staged fit, stage 3 (optional): end-to-end fine-tuning of the distilled model (`s3`).
    #[serde(rename = "s3")]
    Stage3,
}

/// The state's stage name once every stage has finished.
pub const DONE: &str = "done";

impl Stage {
    /// Every stage.
    pub const ALL: [Stage; 7] = [
        Stage::Pretrain,
        Stage::Bt,
        Stage::EndToEnd,
        Stage::Stage1,
        Stage::Stage1Heads,
        Stage::Stage2,
        Stage::Stage3,
    ];

    /// The on-disk name (`bt`, `e2e`, `s1`, `s2`, `s3`); also the tag of the stage's RNG streams.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Pretrain => "lm",
            Stage::Bt => "bt",
            Stage::EndToEnd => "e2e",
            Stage::Stage1 => "s1",
            Stage::Stage1Heads => "s1h",
            Stage::Stage2 => "s2",
            Stage::Stage3 => "s3",
        }
    }

    /// The stages a run with `cfg` goes through, in order.
    pub fn sequence(cfg: &RunConfig) -> Vec<Stage> {
        let mut s = Vec::new();
        // Next-token pretraining is the backbone's: a run on external features has none.
        if cfg.train.lm_epochs > 0 && !cfg.backbone.is_features() {
            s.push(Stage::Pretrain);
        }
        match (cfg.method, cfg.train.schedule) {
            (Method::Bt, _) => s.push(Stage::Bt),
            // The comparison baselines train in their own loop (vrf_bench::baselines, through run::ExternalMethod), not in stages.
            (Method::Lore | Method::Pref | Method::Pal | Method::Vpl, _) => {}
            (Method::Vrf, Schedule::EndToEnd) => s.push(Stage::EndToEnd),
            (Method::Vrf, Schedule::Staged) => {
                s.push(Stage::Stage1);
                if cfg.train.s1_head_epochs > 0 {
                    s.push(Stage::Stage1Heads);
                }
                s.push(Stage::Stage2);
                if cfg.train.s3_epochs > 0 {
                    s.push(Stage::Stage3);
                }
            }
        }
        s
    }

    /// Whether the stage's steps infer users' weights with the encoder from their reference
    /// pairs (e2e, s3) rather than take prompt-grouped pairs (bt, s1).
    pub fn uses_encoder(self) -> bool {
        matches!(self, Stage::EndToEnd | Stage::Stage3)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a fit ended: every stage finished, or a stop configured by `train.stop_after_steps`.
#[derive(Clone, Debug, PartialEq)]
pub enum FitOutcome<T> {
    /// Every stage finished; what the caller produced from the finished fit.
    Finished(T),
    /// Stopped on purpose after the configured number of steps; the checkpoint is saved.
    Stopped(Stop),
}

/// Where a fit stopped on purpose (`train.stop_after_steps`); `--resume` continues it.
#[derive(Clone, Debug, PartialEq)]
pub struct Stop {
    /// The run directory.
    pub run: PathBuf,
    /// The stage in progress (or just finished) when the fit stopped.
    pub stage: Stage,
    /// Steps completed in all stages.
    pub global_step: usize,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: stopped after {} steps as configured (train.stop_after_steps, stage {}); resume with --resume",
            self.run.display(),
            self.global_step,
            self.stage
        )
    }
}

/// Whether a saved position can be resumed under a configuration whose stages are `seq` (with
/// `steps(stage)` steps each): known stage names, a step inside its stage. Says what is wrong.
pub fn check_position(
    state: &crate::checkpoint::TrainState,
    seq: &[Stage],
    steps: impl Fn(Stage) -> usize,
) -> Result<(), String> {
    let known = |name: &str| seq.iter().any(|s| s.as_str() == name);
    if !(state.stage.is_empty() || state.stage == DONE || known(&state.stage)) {
        return Err(format!("unknown stage {:?}", state.stage));
    }
    if let Some(f) = state.finished.iter().find(|f| !known(f)) {
        return Err(format!("unknown finished stage {f:?}"));
    }
    // Stage 2 keeps its position in its own epochs, not in `step`.
    let stepped = seq
        .iter()
        .find(|s| s.as_str() == state.stage && **s != Stage::Stage2);
    if let Some(&stage) = stepped {
        let total = steps(stage);
        if state.step > total.max(1) || state.step > state.global_step {
            return Err(format!(
                "step {} of stage {} (which has {total} steps; {} steps in all)",
                state.step, state.stage, state.global_step
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_on_disk_ones() {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["lm", "bt", "e2e", "s1", "s1h", "s2", "s3"]);
        for s in Stage::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
            assert_eq!(
                serde_json::from_str::<Stage>(&format!("\"{s}\"")).unwrap(),
                s
            );
        }
        assert!(serde_json::from_str::<Stage>(&format!("\"{DONE}\"")).is_err());
    }
}
