//! The converters' error: every message names the file, and where it applies the row and column.

use std::path::PathBuf;

/// Why converting a published dataset failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A file could not be read or written (the OS message rendered once).
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS or decoder error.
        message: String,
    },
    /// A row is not what the published layout says: a missing column, a wrong type, a bad value.
    #[error("{}: row {row}, column `{column}`: {message}", path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based row (line for JSON lines, record for parquet).
        row: usize,
        /// The column (a dotted path for nested fields).
        column: String,
        /// What is wrong.
        message: String,
    },
    /// The data cannot satisfy the protocol (too few users or prompts, a bad option).
    #[error("{0}")]
    Protocol(String),
}

impl ConvertError {
    /// An I/O (or decoder) error on `path`, its message rendered once.
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        ConvertError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Result of the converters.
pub type Result<T, E = ConvertError> = std::result::Result<T, E>;
