//! Frozen feature tables: a vector per text, so a run can be fitted on precomputed embeddings
//! instead of its backbone's (docs/features.md).
//!
//! A table keys each row either by the `(prompt, response)` pair ([`FeatureKey::Pair`]) or by
//! the text the run's template renders from it ([`FeatureKey::Text`]), never both. It is read
//! from and written to JSON lines ([`jsonl`]), `.npy` with an ids file ([`npy`]) or, with the
//! feature `parquet`, parquet ([`parquet`](self::parquet)); the file's extension picks the format.

mod error;
pub mod jsonl;
pub mod npy;
#[cfg(feature = "parquet")]
pub mod parquet;

pub use error::FeatureError;

use crate::dataset::{Dataset, TextIndex};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What a row of a feature table is the vector of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FeatureKey {
    /// A prompt and one response to it.
    Pair {
        /// The prompt.
        prompt: String,
        /// The response.
        response: String,
    },
    /// The text the run's template renders from a prompt and a response.
    Text(String),
}

impl FeatureKey {
    /// How this key names a text, for messages: "`prompt` + `response`" or "`text`".
    pub fn kind(&self) -> &'static str {
        match self {
            FeatureKey::Pair { .. } => "`prompt` + `response`",
            FeatureKey::Text(_) => "`text`",
        }
    }

    /// The key shortened for messages (each text to its first ~80 characters, quoted).
    pub fn preview(&self) -> String {
        match self {
            FeatureKey::Pair { prompt, response } => {
                format!("prompt {} / response {}", short(prompt), short(response))
            }
            FeatureKey::Text(t) => format!("text {}", short(t)),
        }
    }
}

/// The first ~80 characters of `s`, quoted and escaped, with `…` when cut.
pub(crate) fn short(s: &str) -> String {
    const KEEP: usize = 80;
    match s.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// A validated table of vectors, one per key: finite, all of one positive length, keys unique.
#[derive(Debug, Clone)]
pub struct FeatureTable {
    dim: usize,
    keys: Vec<FeatureKey>,
    /// Row-major `[keys.len(), dim]`.
    values: Vec<f32>,
    origin: PathBuf,
    index: HashMap<FeatureKey, usize>,
}

impl FeatureTable {
    /// A table from rows in memory (`values` row-major, `keys.len() × dim`); `origin` names it in
    /// messages. Repeated keys with identical vectors are kept once.
    pub fn new(
        dim: usize,
        keys: Vec<FeatureKey>,
        values: Vec<f32>,
        origin: impl Into<PathBuf>,
    ) -> Result<Self, FeatureError> {
        let origin = origin.into();
        if dim == 0 {
            return Err(FeatureError::ZeroDim { path: origin });
        }
        if keys.len().checked_mul(dim) != Some(values.len()) {
            return Err(FeatureError::Shape {
                path: origin,
                keys: keys.len(),
                values: values.len(),
                dim,
            });
        }
        let mut b = Builder::new(origin, "row");
        for (i, (key, row)) in keys.into_iter().zip(values.chunks_exact(dim)).enumerate() {
            b.push(i + 1, key, row)?;
        }
        b.finish()
    }

    /// Reads a table; the extension picks the format: `.jsonl`, `.npy` (with `X.ids.jsonl`
    /// next to `X.npy`) or `.parquet` (feature `parquet`).
    pub fn read(path: impl AsRef<Path>) -> Result<Self, FeatureError> {
        let path = path.as_ref();
        match Format::of(path)? {
            Format::Jsonl => jsonl::read(path),
            Format::Npy => npy::read(path),
            #[cfg(feature = "parquet")]
            Format::Parquet => parquet::read(path),
        }
    }

    /// Writes the table atomically in the format its extension names (for `.npy`, the ids file
    /// too).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), FeatureError> {
        let path = path.as_ref();
        match Format::of(path)? {
            Format::Jsonl => jsonl::write(self, path),
            Format::Npy => npy::write(self, path),
            #[cfg(feature = "parquet")]
            Format::Parquet => parquet::write(self, path),
        }
    }

    /// Length of every vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows (unique keys).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the table has no rows (never true for a validated table).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The file the table came from (or the name given to [`FeatureTable::new`]).
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The keys, in row order.
    pub fn keys(&self) -> &[FeatureKey] {
        &self.keys
    }

    /// All vectors, row-major `[len, dim]`.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Row `i`'s vector.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// The vector of `key`, if the table has it.
    pub fn get(&self, key: &FeatureKey) -> Option<&[f32]> {
        self.index.get(key).map(|&i| self.row(i))
    }

    /// Whether rows are keyed by the rendered text (so the run's template must match the one
    /// the table was made with) rather than by `(prompt, response)`.
    pub fn text_keyed(&self) -> bool {
        matches!(self.keys.first(), Some(FeatureKey::Text(_)))
    }

    /// Row-major `[texts.len(), dim]` matrix of the vectors of `(prompt, response)` texts;
    /// `render(prompt, response)` gives the formatted text for tables keyed by `Text`.
    pub fn matrix(
        &self,
        texts: &[(String, String)],
        render: &dyn Fn(&str, &str) -> String,
    ) -> Result<Vec<f32>, FeatureError> {
        self.gather(texts, render)
            .map_err(|missing| self.missing(&texts[missing], None))
    }

    /// [`FeatureTable::matrix`] for a data set's unique texts (`index` from
    /// [`Dataset::texts`]); a missing text's error also names the data file's line using it.
    pub fn for_dataset(
        &self,
        ds: &Dataset,
        index: &TextIndex,
        render: &dyn Fn(&str, &str) -> String,
    ) -> Result<Vec<f32>, FeatureError> {
        self.gather(&index.texts, render).map_err(|missing| {
            let used = index
                .chosen_text
                .iter()
                .position(|&t| t == missing)
                .map(|i| (i, "chosen"))
                .or_else(|| {
                    index
                        .rejected_text
                        .iter()
                        .position(|&t| t == missing)
                        .map(|i| (i, "rejected"))
                });
            let place = used.map(|(i, field)| format!("{}, {field}", ds.place(i)));
            self.missing(&index.texts[missing], place)
        })
    }

    /// The vectors of `texts` in order, or the index of the first text without one.
    fn gather(
        &self,
        texts: &[(String, String)],
        render: &dyn Fn(&str, &str) -> String,
    ) -> Result<Vec<f32>, usize> {
        let text_keyed = self.text_keyed();
        let mut out = Vec::with_capacity(texts.len() * self.dim);
        for (i, (prompt, response)) in texts.iter().enumerate() {
            let key = if text_keyed {
                FeatureKey::Text(render(prompt, response))
            } else {
                FeatureKey::Pair {
                    prompt: prompt.clone(),
                    response: response.clone(),
                }
            };
            out.extend_from_slice(self.get(&key).ok_or(i)?);
        }
        Ok(out)
    }

    fn missing(
        &self,
        (prompt, response): &(String, String),
        place: Option<String>,
    ) -> FeatureError {
        FeatureError::Missing {
            path: self.origin.clone(),
            prompt: short(prompt),
            response: short(response),
            text_keyed: self.text_keyed(),
            place,
        }
    }
}

/// The on-disk formats, by extension.
enum Format {
    Jsonl,
    Npy,
    #[cfg(feature = "parquet")]
    Parquet,
}

impl Format {
    fn of(path: &Path) -> Result<Self, FeatureError> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("jsonl" | "ndjson") => Ok(Format::Jsonl),
            Some("npy") => Ok(Format::Npy),
            #[cfg(feature = "parquet")]
            Some("parquet") => Ok(Format::Parquet),
            _ => Err(FeatureError::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Collects rows as a reader parses them, checking each (length, finiteness, key kind,
/// duplicates) against the rows before it so errors name the row where the problem shows.
pub(crate) struct Builder {
    path: PathBuf,
    unit: &'static str,
    dim: Option<usize>,
    keys: Vec<FeatureKey>,
    values: Vec<f32>,
    /// `rows[i]` is row i's 1-based line or row in the file.
    rows: Vec<usize>,
    index: HashMap<FeatureKey, usize>,
}

impl Builder {
    /// An empty table read from `path`, whose rows are counted in `unit`s (`line` or `row`).
    pub(crate) fn new(path: PathBuf, unit: &'static str) -> Self {
        Self {
            path,
            unit,
            dim: None,
            keys: Vec::new(),
            values: Vec::new(),
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Adds the row at 1-based `row` of the file; a repeat of an earlier key with the same
    /// vector is dropped.
    pub(crate) fn push(
        &mut self,
        row: usize,
        key: FeatureKey,
        vector: &[f32],
    ) -> Result<(), FeatureError> {
        let unit = self.unit;
        match self.dim {
            None => {
                if vector.is_empty() {
                    return Err(FeatureError::ZeroDim {
                        path: self.path.clone(),
                    });
                }
                self.dim = Some(vector.len());
            }
            Some(d) if d != vector.len() => {
                return Err(FeatureError::Dim {
                    path: self.path.clone(),
                    unit,
                    row,
                    got: vector.len(),
                    expected: d,
                })
            }
            Some(_) => {}
        }
        if let Some(c) = vector.iter().position(|x| !x.is_finite()) {
            return Err(FeatureError::NonFinite {
                path: self.path.clone(),
                unit,
                row,
                component: c,
                value: f64::from(vector[c]),
            });
        }
        if let Some(first) = self.keys.first() {
            if std::mem::discriminant(first) != std::mem::discriminant(&key) {
                return Err(FeatureError::MixedKeys {
                    path: self.path.clone(),
                    unit,
                    row,
                    got: key.kind(),
                    first: first.kind(),
                });
            }
        }
        if let Some(&j) = self.index.get(&key) {
            let dim = vector.len();
            if self.values[j * dim..(j + 1) * dim] == *vector {
                return Ok(());
            }
            return Err(FeatureError::Duplicate {
                path: self.path.clone(),
                unit,
                row,
                first: self.rows[j],
                key: key.preview(),
            });
        }
        self.index.insert(key.clone(), self.keys.len());
        self.keys.push(key);
        self.values.extend_from_slice(vector);
        self.rows.push(row);
        Ok(())
    }

    /// The validated table (an error when no row was pushed).
    pub(crate) fn finish(self) -> Result<FeatureTable, FeatureError> {
        let Some(dim) = self.dim else {
            return Err(FeatureError::Empty { path: self.path });
        };
        Ok(FeatureTable {
            dim,
            keys: self.keys,
            values: self.values,
            origin: self.path,
            index: self.index,
        })
    }
}
