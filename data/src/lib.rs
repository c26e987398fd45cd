//! VRF preference data: triplets in the JSONL format of docs/METHOD.md §7 grouped by user
//! ([`Dataset`]), the embedded synthetic benchmark ([`synth`], docs/METHOD.md §6), the
//! converters of the published datasets ([`convert`], feature `convert`) and frozen feature
//! tables ([`features`]: a vector per text, to fit on precomputed embeddings).
#![warn(missing_docs)]

#[cfg(feature = "convert")]
pub mod convert;
mod dataset;
pub mod features;
pub mod synth;

pub use dataset::{
    parse_jsonl, read_jsonl, sibling, to_jsonl, write_atomic, write_jsonl, DataError, Dataset,
    DatasetSummary, PromptGroup, Skipped, Split, TextIndex, Triplet, UserData, IDENTICAL_PAIR,
};
pub use features::{FeatureError, FeatureKey, FeatureTable};
