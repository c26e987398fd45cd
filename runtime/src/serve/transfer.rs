//! Moving users between stores (`vrf store export` / `vrf store import`): JSONL, a header line
//! naming the model (`{"vrf_users": 1, "model_digest", "pooling", "d"}`), then one line per
//! user with their natural parameters, count and times. Each parameter is written as the
//! shortest decimal that reads back to the same `f32`, in a string (`"1.25e-3"`) and read with
//! a correctly rounded parser, so a round trip is bit-exact (JSON number parsers need not be). Import replaces a user
//! already stored under the same id, so an interrupted import can simply be run again.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use super::store::{StoreError, StoredUser, UserStore};
use vrf_format::manifest::Pooling;
use vrf_format::UserState;

/// The export format's version (the header's `vrf_users`).
const FORMAT_VERSION: u32 = 1;

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Reading or writing the file failed.
    #[error("{file}: {cause}")]
    Io {
        /// The file (`-` for stdin/stdout).
        file: String,
        /// The OS error.
        cause: std::io::Error,
    },
    /// A line is not what the format says.
    #[error("{file}, line {line}: {message}")]
    Line {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The file holds another model's users.
    #[error(
        "{file}: users of the model with digest {found}, not of this model ({expected}); \
         import them into a store of that model"
    )]
    Digest {
        /// The file.
        file: String,
        /// The digest in the file.
        found: String,
        /// This model's digest.
        expected: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The first line of an export.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    vrf_users: u32,
    model_digest: String,
    pooling: String,
    d: usize,
}

/// One user's line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    pooling: String,
    count: usize,
    a: Vec<String>,
    b: Vec<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
}

/// Writes every user of `store` (a store of the model with `digest`, `pooling` and `d`) to
/// `out` as JSONL; returns the number of users. `file` names `out` in errors.
pub fn export_users(
    store: &dyn UserStore,
    digest: &str,
    pooling: Pooling,
    d: usize,
    out: &mut dyn Write,
    file: &str,
) -> Result<u64, TransferError> {
    let io = |cause| TransferError::Io {
        file: file.to_string(),
        cause,
    };
    let header = Header {
        vrf_users: FORMAT_VERSION,
        model_digest: digest.to_string(),
        pooling: pooling.as_str().to_string(),
        d,
    };
    write_line(out, &header).map_err(io)?;
    let mut n = 0u64;
    let mut failed: Option<std::io::Error> = None;
    store
        .for_each(&mut |id, u| {
            let decimals = |x: &[f32]| x.iter().map(|v| format!("{v:e}")).collect();
            let line = Line {
                id: id.to_string(),
                pooling: u.state.pooling.as_str().to_string(),
                count: u.state.count,
                a: decimals(&u.state.a),
                b: decimals(&u.state.b),
                created_at_ms: u.created_at_ms,
                updated_at_ms: u.updated_at_ms,
            };
            if let Err(e) = write_line(out, &line) {
                failed = Some(e);
                // Stop the walk; the I/O error is reported below.
                return Err(StoreError::Backend("export stopped".into()));
            }
            n += 1;
            Ok(())
        })
        .map_err(|e| match failed.take() {
            Some(cause) => io(cause),
            None => TransferError::Store(e),
        })?;
    out.flush().map_err(io)?;
    Ok(n)
}

/// Reads an export from `input` into `store` (a store of the model with `digest`), replacing
/// users stored under the same ids; returns the number of users. A file of another model, a
/// malformed line or a state that does not fit the model is refused, naming `file` and the line
/// (users of earlier lines are already stored then; importing again is safe).
pub fn import_users(
    store: &dyn UserStore,
    digest: &str,
    input: &mut dyn BufRead,
    file: &str,
) -> Result<u64, TransferError> {
    let bad = |line: usize, message: String| TransferError::Line {
        file: file.to_string(),
        line,
        message,
    };
    let mut n = 0u64;
    let mut header_seen = false;
    for (i, text) in input.lines().enumerate() {
        let line = i + 1;
        let text = text.map_err(|cause| TransferError::Io {
            file: file.to_string(),
            cause,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        if !header_seen {
            let h: Header = serde_json::from_str(&text).map_err(|e| {
                bad(
                    line,
                    format!("not a vrf user export header ({{\"vrf_users\": 1, …}}): {e}"),
                )
            })?;
            if h.vrf_users != FORMAT_VERSION {
                return Err(bad(
                    line,
                    format!(
                        "export format version {}; this build reads version {FORMAT_VERSION}",
                        h.vrf_users
                    ),
                ));
            }
            if h.model_digest != digest {
                return Err(TransferError::Digest {
                    file: file.to_string(),
                    found: h.model_digest,
                    expected: digest.to_string(),
                });
            }
            header_seen = true;
            continue;
        }
        let l: Line = serde_json::from_str(&text).map_err(|e| bad(line, e.to_string()))?;
        if l.id.is_empty() {
            return Err(bad(line, "`id` is empty".into()));
        }
        let pooling = Pooling::from_name(&l.pooling)
            .ok_or_else(|| bad(line, format!("`pooling`: unknown pooling {:?}", l.pooling)))?;
        let f32s = |name: &str, x: &[String]| -> Result<Vec<f32>, TransferError> {
            x.iter()
                .map(|v| {
                    v.trim()
                        .parse::<f32>()
                        .map_err(|_| bad(line, format!("`{name}`: {v:?} is not a number")))
                })
                .collect()
        };
        let user = StoredUser {
            state: UserState {
                pooling,
                count: l.count,
                a: f32s("a", &l.a)?,
                b: f32s("b", &l.b)?,
            },
            created_at_ms: l.created_at_ms,
            updated_at_ms: l.updated_at_ms,
        };
        store.put(&l.id, &user).map_err(|e| match e {
            StoreError::Update(m) => bad(line, format!("user {:?}: {m}", l.id)),
            other => TransferError::Store(other),
        })?;
        n += 1;
    }
    if !header_seen {
        return Err(bad(1, "empty file: no export header".into()));
    }
    Ok(n)
}

/// `v` as one JSON line.
fn write_line(out: &mut dyn Write, v: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, v).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}
