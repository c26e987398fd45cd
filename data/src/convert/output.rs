//! What every converter writes: the SPEC §7 JSONL, and next to it the paper's Table 3 statistics
//! of what was written (users, mean triplets per split) with the counted skips.

use super::error::{ConvertError, Result};
use crate::{sibling, write_atomic, Split, Triplet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Table 3 of the paper for one converted dataset: users per side and mean triplets per split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitStats {
    /// Seen users (users with target rows).
    pub seen_users: usize,
    /// Mean reference triplets per seen user.
    pub seen_ref: f64,
    /// Mean target triplets per seen user.
    pub seen_target: f64,
    /// Mean training triplets (ref + target) per seen user.
    pub seen_train: f64,
    /// Mean eval triplets per seen user.
    pub seen_eval: f64,
    /// Unseen users.
    pub unseen_users: usize,
    /// Mean reference triplets per unseen user.
    pub unseen_ref: f64,
    /// Mean eval triplets per unseen user.
    pub unseen_eval: f64,
    /// Triplets written.
    pub triplets: usize,
}

impl SplitStats {
    /// The statistics of a set of triplets (a user is seen when it has target rows).
    pub fn of(triplets: &[Triplet]) -> Self {
        let mut per: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
        for t in triplets {
            let c = per.entry(&t.user).or_default();
            c[t.split as usize] += 1;
        }
        let (seen, unseen): (Vec<_>, Vec<_>) = per.values().partition(|c| c[1] > 0);
        let mean = |g: &[&[usize; 3]], f: &dyn Fn(&[usize; 3]) -> usize| {
            if g.is_empty() {
                0.0
            } else {
                g.iter().map(|c| f(c) as f64).sum::<f64>() / g.len() as f64
            }
        };
        SplitStats {
            seen_users: seen.len(),
            seen_ref: mean(&seen, &|c| c[0]),
            seen_target: mean(&seen, &|c| c[1]),
            seen_train: mean(&seen, &|c| c[0] + c[1]),
            seen_eval: mean(&seen, &|c| c[2]),
            unseen_users: unseen.len(),
            unseen_ref: mean(&unseen, &|c| c[0]),
            unseen_eval: mean(&unseen, &|c| c[2]),
            triplets: triplets.len(),
        }
    }
}

/// The side file written next to a converted JSONL: the dataset, the options that made it, its
/// Table 3 statistics and what was skipped (reason → count).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConvertReport {
    /// Dataset name (`personal-llm`, `tldr`, `prism`).
    pub dataset: String,
    /// The seed and protocol options used.
    pub options: serde_json::Value,
    /// Table 3 statistics of the output.
    pub stats: SplitStats,
    /// Rows or pairs left out, by reason.
    pub skipped: Skips,
}

/// Rows, pairs or users left out by the protocol: per reason, a count and the first few places.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Skips(pub BTreeMap<String, Skip>);

/// One reason's skips.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Skip {
    /// How many.
    pub count: usize,
    /// The first few (file and row, or user).
    pub first: Vec<String>,
}

impl Skips {
    /// Counts one skip for `reason` at `place`.
    pub fn add(&mut self, reason: &str, place: impl FnOnce() -> String) {
        let s = self.0.entry(reason.to_string()).or_default();
        s.count += 1;
        if s.first.len() < 3 {
            s.first.push(place());
        }
    }

    /// Count for `reason` (0 when none).
    pub fn count(&self, reason: &str) -> usize {
        self.0.get(reason).map_or(0, |s| s.count)
    }
}

/// Path of the statistics file next to a JSONL output: `<stem>.stats.json`.
pub fn stats_path(jsonl: &Path) -> PathBuf {
    sibling(jsonl, "stats.json")
}

/// Writes `triplets` to `out` and the report to [`stats_path`], both atomically.
pub fn write(out: &Path, triplets: &[Triplet], report: &ConvertReport) -> Result<()> {
    if triplets.is_empty() {
        return Err(ConvertError::Protocol(
            "the protocol left no triplets to write".into(),
        ));
    }
    crate::write_jsonl(out, triplets).map_err(|e| ConvertError::io(out, e))?;
    write_json(&stats_path(out), report)
}

/// Writes a JSON value atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(|e| ConvertError::io(path, e))?;
    write_atomic(path, json.as_bytes()).map_err(|e| ConvertError::io(path, e))
}

/// The report as the paper's Table 3 row plus the skips, for the terminal.
pub fn table(report: &ConvertReport) -> String {
    let s = &report.stats;
    let mut out = format!(
        "| dataset | seen users | ref | target | train | eval | unseen users | ref | eval |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} |\n",
        report.dataset,
        s.seen_users,
        s.seen_ref,
        s.seen_target,
        s.seen_train,
        s.seen_eval,
        s.unseen_users,
        s.unseen_ref,
        s.unseen_eval
    );
    for (why, s) in &report.skipped.0 {
        out.push_str(&format!(
            "skipped {}: {why} (first: {})\n",
            s.count,
            s.first.join("; ")
        ));
    }
    out
}

/// One triplet.
pub fn triplet(user: &str, prompt: &str, chosen: &str, rejected: &str, split: Split) -> Triplet {
    Triplet {
        user: user.to_string(),
        prompt: prompt.to_string(),
        chosen: chosen.to_string(),
        rejected: rejected.to_string(),
        split,
    }
}
