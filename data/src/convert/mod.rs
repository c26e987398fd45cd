//! Converters from the paper's published datasets to docs/METHOD.md §7 JSONL, with the paper's
//! construction and split protocols (its Appendix A.1 and Table 3), seeded and deterministic:
//! `personal_llm` (parquet or JSON lines), `tldr` (the `comparisons` JSON lines), `prism`
//! (`conversations.jsonl`). `table` reads rows from either format; `output` writes the JSONL
//! and its Table 3 statistics; `shuffle` holds the seeded draws.

pub mod error;
pub mod output;
pub mod personal_llm;
pub mod prism;
pub mod shuffle;
pub mod table;
pub mod tldr;

pub use error::ConvertError;
pub use output::{ConvertReport, SplitStats};
