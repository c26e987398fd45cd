//! Output: the triplets as JSONL and the `*.synth_meta.json` side-file next to them.

use super::scorers::{ScorerStats, SCORER_NAMES};
use super::{SynthConfig, SynthError, Synthetic};
use crate::{write_atomic, DataError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Contents of the `*.synth_meta.json` file written next to the JSONL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthMeta {
    /// The settings used.
    pub config: SynthConfig,
    /// Scorer names, in weight order.
    pub scorers: Vec<String>,
    /// Scorer normalisation.
    pub stats: ScorerStats,
    /// Each user's true weights over the scorers.
    pub user_weights: Vec<(String, Vec<f64>)>,
}

/// Path of the metadata file written next to a JSONL file: `<stem>.synth_meta.json`.
pub fn meta_path(jsonl: &Path) -> PathBuf {
    crate::sibling(jsonl, "synth_meta.json")
}

impl Synthetic {
    /// The metadata (config, scorer normalisation, true user weights).
    pub fn meta(&self) -> SynthMeta {
        SynthMeta {
            config: self.config.clone(),
            scorers: SCORER_NAMES.iter().map(|s| s.to_string()).collect(),
            stats: self.stats.clone(),
            user_weights: self.user_weights.clone(),
        }
    }

    /// Writes the triplets to `jsonl` and the metadata to [`meta_path`]`(jsonl)`, both atomically.
    pub fn write(&self, jsonl: impl AsRef<Path>) -> Result<PathBuf, SynthError> {
        let jsonl = jsonl.as_ref();
        crate::write_jsonl(jsonl, &self.triplets)?;
        let meta = meta_path(jsonl);
        let json = serde_json::to_string_pretty(&self.meta()).map_err(DataError::from)?;
        write_atomic(&meta, json.as_bytes()).map_err(|source| DataError::Io {
            path: meta.clone(),
            cause: source,
        })?;
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{generate, small};

    #[test]
    fn write_produces_jsonl_and_meta() {
        let dir = tempfile::tempdir().unwrap();
        let s = generate(&small()).unwrap();
        let path = dir.path().join("synth.jsonl");
        let meta = s.write(&path).unwrap();
        assert_eq!(meta, dir.path().join("synth.synth_meta.json"));
        assert_eq!(crate::read_jsonl(&path).unwrap(), s.triplets);
        let m: SynthMeta = serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
        assert_eq!(m.user_weights.len(), s.user_weights.len());
        for ((ua, wa), (ub, wb)) in m.user_weights.iter().zip(&s.user_weights) {
            assert_eq!(ua, ub);
            assert!(wa
                .iter()
                .zip(wb)
                .all(|(a, b)| (a - b).abs() <= 1e-15 * b.abs().max(1e-300)));
        }
        assert_eq!(m.config, small());
    }
}
