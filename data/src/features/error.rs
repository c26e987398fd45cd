//! The feature table's error: every message names the file and, where it applies, the row
//! (the line for JSON lines) and the field or component.

use std::path::PathBuf;

/// Why a feature table could not be read, written, validated or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeatureError {
    /// A file could not be read or written (the OS or decoder message rendered once).
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file's extension names no format this build reads or writes.
    #[error("{}: unknown feature-table format (expected .jsonl, .npy or .parquet{})", path.display(), if cfg!(feature = "parquet") { "" } else { "; this build has no parquet support" })]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A row is not a valid table row: not JSON, a missing key, a wrong type.
    #[error("{}: {unit} {row}, field `{field}`: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// `line` (JSON lines) or `row` (npy, parquet, in-memory tables).
        unit: &'static str,
        /// 1-based line or row.
        row: usize,
        /// The field or column.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A row's vector length differs from the first row's.
    #[error("{}: {unit} {row}: the vector has {got} components but the first row has {expected}", path.display())]
    Dim {
        /// The file.
        path: PathBuf,
        /// `line` or `row`.
        unit: &'static str,
        /// 1-based line or row.
        row: usize,
        /// This row's length.
        got: usize,
        /// The first row's length.
        expected: usize,
    },
    /// A vector holds NaN or ±infinity.
    #[error("{}: {unit} {row}: component {component} of the vector is {value} (vectors must be finite)", path.display())]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// `line` or `row`.
        unit: &'static str,
        /// 1-based line or row.
        row: usize,
        /// 0-based component index (the column for per-dimension parquet columns).
        component: usize,
        /// The value.
        value: f64,
    },
    /// The table has no rows.
    #[error("{}: the feature table has no rows", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The table's vectors have no components.
    #[error("{}: the feature vectors have zero components", path.display())]
    ZeroDim {
        /// The file.
        path: PathBuf,
    },
    /// An in-memory table's value count is not keys × dim.
    #[error("{}: {values} values do not make {keys} rows of {dim}", path.display())]
    Shape {
        /// The table's origin.
        path: PathBuf,
        /// Number of keys.
        keys: usize,
        /// Number of values.
        values: usize,
        /// The declared dimension.
        dim: usize,
    },
    /// Rows key by `text` and by `prompt` + `response` in the same table.
    #[error("{}: {unit} {row} is keyed by {got} but the first row by {first}; a table keys every row the same way", path.display())]
    MixedKeys {
        /// The file.
        path: PathBuf,
        /// `line` or `row`.
        unit: &'static str,
        /// 1-based line or row.
        row: usize,
        /// This row's key kind.
        got: &'static str,
        /// The first row's key kind.
        first: &'static str,
    },
    /// The same key appears twice with different vectors.
    #[error("{}: {unit} {row} repeats the key of {unit} {first} ({key}) with a different vector", path.display())]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// `line` or `row`.
        unit: &'static str,
        /// 1-based line or row of the repeat.
        row: usize,
        /// 1-based line or row of the first occurrence.
        first: usize,
        /// The key, shortened.
        key: String,
    },
    /// A text the data uses has no vector in the table.
    #[error("{}: no vector for {}prompt {prompt} / response {response}{}{}", path.display(), if *text_keyed { "the rendered text of " } else { "" }, place.as_ref().map(|p| format!(" (used at {p})")).unwrap_or_default(), if *text_keyed { "; a table keyed by `text` needs the template it was made with" } else { "" })]
    Missing {
        /// The table file.
        path: PathBuf,
        /// The prompt, shortened and quoted.
        prompt: String,
        /// The response, shortened and quoted.
        response: String,
        /// Whether the table is keyed by the rendered text (so the template matters).
        text_keyed: bool,
        /// Where the data uses the text (`FILE: line N, chosen`), when known.
        place: Option<String>,
    },
    /// An `.npy` file and its ids file disagree on the number of rows.
    #[error("{}: {rows} rows but its ids file {} has {ids_rows}", path.display(), ids.display())]
    RowCount {
        /// The `.npy` file.
        path: PathBuf,
        /// The ids file.
        ids: PathBuf,
        /// Rows of the array.
        rows: usize,
        /// Rows of the ids file.
        ids_rows: usize,
    },
    /// A layout this reader does not support (npy dtype or shape, parquet columns).
    #[error("{}: {message}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported and what is expected.
        message: String,
    },
}

impl FeatureError {
    /// An I/O (or decoder) error on `path`, its message rendered once.
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        FeatureError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}
