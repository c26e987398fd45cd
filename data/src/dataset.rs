//! Preference triplets in the JSONL format of docs/METHOD.md §7, grouped by user.
//!
//! One triplet per line:
//! `{"user": "u0042", "prompt": "...", "chosen": "...", "rejected": "...", "split": "ref"}`.
//! Users with no `target` rows are unseen users; every user needs at least one `ref` row.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// Errors while reading, validating or writing preference data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error (in the message only, not `source()`, so a printed cause chain shows it once).
        cause: std::io::Error,
    },
    /// A line of a JSONL file is not a valid triplet.
    #[error("{}: line {line}: {message}", path.display())]
    Malformed {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A file holds no triplets at all.
    #[error("{}: no triplets (the file is empty or holds only blank lines)", path.display())]
    EmptyFile {
        /// The file concerned.
        path: PathBuf,
    },
    /// A dataset was built from zero triplets.
    #[error("the dataset holds no triplets")]
    NoTriplets,
    /// A triplet (not read from a file) is invalid.
    #[error("triplet {index}: {message}")]
    InvalidTriplet {
        /// 0-based index of the triplet.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// Some users have no `ref` rows, so their preferences cannot be inferred.
    #[error("{} user(s) have no `ref` triplets and cannot be inferred: {}", users.len(), preview(users))]
    NoReference {
        /// The offending user ids, sorted.
        users: Vec<String>,
    },
    /// Every triplet has `chosen == rejected`, so there is no preference to learn from.
    #[error("{origin}: all {count} triplets have chosen == rejected; there is no preference to learn from")]
    AllIdentical {
        /// The file (or "the dataset").
        origin: String,
        /// How many triplets there were.
        count: usize,
    },
    /// Training needs at least one seen user (a user with `target` rows).
    #[error("{origin}: no seen users: all {users} users lack `target` triplets, so there is nothing to train on (mark some users' training pairs \"split\": \"target\")")]
    NoSeenUsers {
        /// The file (or "the dataset").
        origin: String,
        /// How many (unseen) users there are.
        users: usize,
    },
    /// A prompt + response renders to a text that tokenises to no tokens at all.
    #[error("{place} (user {user}): the {field} response with its prompt tokenises to nothing; remove the triplet or give it text")]
    EmptyText {
        /// Where the triplet is (`FILE: line N` or `triplet N`).
        place: String,
        /// The triplet's user.
        user: String,
        /// `chosen` or `rejected`.
        field: &'static str,
    },
    /// Serialising a triplet failed (the cause is in the message only, as for `Io`).
    #[error("serialising triplets: {0}")]
    Serialize(serde_json::Error),
}

impl From<serde_json::Error> for DataError {
    fn from(e: serde_json::Error) -> Self {
        DataError::Serialize(e)
    }
}

/// A triplet left out of a [`Dataset`], and why (a counted warning, not an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Where it was (`FILE: line N` or `triplet N`).
    pub place: String,
    /// Its user.
    pub user: String,
    /// Why it was left out.
    pub reason: &'static str,
}

/// Why [`Dataset`] drops a triplet whose chosen and rejected responses are the same text.
pub const IDENTICAL_PAIR: &str = "chosen == rejected (no preference)";

fn preview(users: &[String]) -> String {
    const SHOW: usize = 5;
    let mut s = users
        .iter()
        .take(SHOW)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if users.len() > SHOW {
        s.push_str(&format!(", … ({} more)", users.len() - SHOW));
    }
    s
}

/// The file a dataset came from, or "the dataset", for messages.
fn origin_of(source: Option<&Path>) -> String {
    source.map_or_else(|| "the dataset".to_string(), |p| p.display().to_string())
}

/// Where triplet `i` is: `FILE: line N` when read from a file, else `triplet N`.
fn place_of(source: Option<&Path>, lines: &[usize], i: usize) -> String {
    match (source, lines.get(i)) {
        (Some(p), Some(l)) => format!("{}: line {l}", p.display()),
        _ => format!("triplet {i}"),
    }
}

/// Which role a triplet plays for its user (docs/METHOD.md §1, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Reference triplets `R_u`, used to infer the user.
    Ref,
    /// Target triplets `T_u`, used to train the personalised reward.
    Target,
    /// Held-out evaluation triplets.
    Eval,
}

impl Split {
    /// All splits, in file order of importance.
    pub const ALL: [Split; 3] = [Split::Ref, Split::Target, Split::Eval];

    /// The JSON spelling of the split.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Ref => "ref",
            Split::Target => "target",
            Split::Eval => "eval",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One preference triplet `(x, y_c, y_r)` of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triplet {
    /// User id (non-empty).
    pub user: String,
    /// The prompt `x`.
    pub prompt: String,
    /// The chosen (preferred) response `y_c`.
    pub chosen: String,
    /// The rejected response `y_r`.
    pub rejected: String,
    /// The split this triplet belongs to.
    pub split: Split,
}

/// Reads a JSONL file of triplets; blank lines are skipped, unknown fields ignored.
pub fn read_jsonl(path: impl AsRef<Path>) -> Result<Vec<Triplet>, DataError> {
    Ok(read_numbered(path.as_ref())?
        .into_iter()
        .map(|(_, t)| t)
        .collect())
}

/// Reads a JSONL file into `(1-based line, triplet)`, skipping a UTF-8 BOM.
fn read_numbered(path: &Path) -> Result<Vec<(usize, Triplet)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        cause: source,
    })?;
    parse_numbered(text.strip_prefix('\u{feff}').unwrap_or(&text), path)
}

/// Parses JSONL text; `path` is only used in error messages.
pub fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<Triplet>, DataError> {
    Ok(parse_numbered(text, path)?
        .into_iter()
        .map(|(_, t)| t)
        .collect())
}

/// Parses JSONL text into `(1-based line, triplet)`.
fn parse_numbered(text: &str, path: &Path) -> Result<Vec<(usize, Triplet)>, DataError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let malformed = |message: String| DataError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let t: Triplet = serde_json::from_str(line).map_err(|e| malformed(json_message(&e)))?;
        if t.user.trim().is_empty() {
            return Err(malformed("empty `user`".into()));
        }
        out.push((i + 1, t));
    }
    if out.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// serde_json's message without its own "at line 1 column N" suffix (we report the file line).
fn json_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(p) => msg[..p].to_string(),
        None => msg,
    };
    format!("{msg} (column {})", e.column())
}

/// Atomic file writes (temp file + rename), shared with the runtime.
pub use vrf_format::fsutil::write_atomic;

/// A side file next to a JSONL file: `<stem>.<suffix>` in the same directory.
pub fn sibling(jsonl: &Path, suffix: &str) -> PathBuf {
    let stem = jsonl
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    jsonl.with_file_name(format!("{stem}.{suffix}"))
}

/// Serialises triplets as JSONL (one object per line, trailing newline).
pub fn to_jsonl(triplets: &[Triplet]) -> Result<String, DataError> {
    let mut s = String::new();
    for t in triplets {
        s.push_str(&serde_json::to_string(t)?);
        s.push('\n');
    }
    Ok(s)
}

/// Writes triplets to a JSONL file atomically.
pub fn write_jsonl(path: impl AsRef<Path>, triplets: &[Triplet]) -> Result<(), DataError> {
    let path = path.as_ref();
    let s = to_jsonl(triplets)?;
    write_atomic(path, s.as_bytes()).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        cause: source,
    })
}

/// One user's triplets, as indices into [`Dataset::triplets`] (in file order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserData {
    /// The user id.
    pub id: String,
    /// Reference triplets `R_u`.
    pub refs: Vec<usize>,
    /// Target (training) triplets `T_u`.
    pub targets: Vec<usize>,
    /// Held-out evaluation triplets.
    pub evals: Vec<usize>,
}

impl UserData {
    /// Whether the user has training targets (a "seen" user).
    pub fn is_seen(&self) -> bool {
        !self.targets.is_empty()
    }

    /// The user's triplet indices of one split.
    pub fn split(&self, split: Split) -> &[usize] {
        match split {
            Split::Ref => &self.refs,
            Split::Target => &self.targets,
            Split::Eval => &self.evals,
        }
    }
}

/// Counts describing a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Number of users.
    pub users: usize,
    /// Users with at least one `target` triplet.
    pub seen_users: usize,
    /// Users without `target` triplets.
    pub unseen_users: usize,
    /// Number of triplets.
    pub triplets: usize,
    /// `ref` triplets.
    pub refs: usize,
    /// `target` triplets.
    pub targets: usize,
    /// `eval` triplets.
    pub evals: usize,
    /// `eval` triplets of seen users.
    pub seen_evals: usize,
    /// `eval` triplets of unseen users.
    pub unseen_evals: usize,
}

impl fmt::Display for DatasetSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} users ({} seen, {} unseen); {} triplets: {} ref, {} target, {} eval ({} seen, {} unseen)",
            self.users,
            self.seen_users,
            self.unseen_users,
            self.triplets,
            self.refs,
            self.targets,
            self.evals,
            self.seen_evals,
            self.unseen_evals
        )
    }
}

/// Unique `(prompt, response)` texts and, per triplet, the index of its chosen and rejected text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextIndex {
    /// Unique `(prompt, response)` pairs in order of first appearance.
    pub texts: Vec<(String, String)>,
    /// `texts[chosen_text[i]]` is triplet i's `(prompt, chosen)`.
    pub chosen_text: Vec<usize>,
    /// `texts[rejected_text[i]]` is triplet i's `(prompt, rejected)`.
    pub rejected_text: Vec<usize>,
}

/// The triplets sharing one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptGroup {
    /// The prompt.
    pub prompt: String,
    /// Indices into [`Dataset::triplets`], in file order.
    pub triplets: Vec<usize>,
}

/// A validated set of triplets grouped by user.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// All triplets, in input order.
    pub triplets: Vec<Triplet>,
    /// Users sorted by id.
    pub users: Vec<UserData>,
    /// `triplet_user[i]` is the index into `users` of triplet i's user.
    pub triplet_user: Vec<usize>,
    /// Indices into `users` of seen users (≥ 1 target row), ascending.
    pub seen: Vec<usize>,
    /// Indices into `users` of unseen users (no target rows), ascending.
    pub unseen: Vec<usize>,
    /// Where the data came from (the file), for messages; `None` when built in memory.
    pub source: Option<PathBuf>,
    /// `lines[i]` is triplet i's 1-based line in `source` (empty when built in memory).
    pub lines: Vec<usize>,
    /// Triplets left out, with the reason (e.g. chosen == rejected), in input order.
    pub skipped: Vec<Skipped>,
}

impl Dataset {
    /// Groups and validates triplets: users must be non-empty ids and each needs a `ref` row;
    /// triplets with `chosen == rejected` are left out and listed in [`Dataset::skipped`].
    pub fn from_triplets(triplets: Vec<Triplet>) -> Result<Self, DataError> {
        Self::build(triplets, None, Vec::new())
    }

    /// [`Dataset::from_triplets`] for triplets read from `source`, `lines[i]` being triplet i's line.
    fn build(
        triplets: Vec<Triplet>,
        source: Option<PathBuf>,
        lines: Vec<usize>,
    ) -> Result<Self, DataError> {
        if triplets.is_empty() {
            return Err(DataError::NoTriplets);
        }
        let origin = origin_of(source.as_deref());
        let place = |i: usize| place_of(source.as_deref(), &lines, i);
        let count = triplets.len();
        let mut skipped = Vec::new();
        let mut kept = Vec::with_capacity(count);
        let mut kept_lines = Vec::with_capacity(lines.len());
        for (i, t) in triplets.into_iter().enumerate() {
            if t.chosen == t.rejected {
                skipped.push(Skipped {
                    place: place(i),
                    user: t.user.clone(),
                    reason: IDENTICAL_PAIR,
                });
                continue;
            }
            if let Some(&l) = lines.get(i) {
                kept_lines.push(l);
            }
            kept.push(t);
        }
        if kept.is_empty() {
            return Err(DataError::AllIdentical { origin, count });
        }
        let triplets = kept;
        let lines = kept_lines;
        let mut by_user: BTreeMap<&str, UserData> = BTreeMap::new();
        for (i, t) in triplets.iter().enumerate() {
            if t.user.trim().is_empty() {
                return Err(DataError::InvalidTriplet {
                    index: i,
                    message: "empty `user`".into(),
                });
            }
            let u = by_user.entry(t.user.as_str()).or_insert_with(|| UserData {
                id: t.user.clone(),
                refs: Vec::new(),
                targets: Vec::new(),
                evals: Vec::new(),
            });
            match t.split {
                Split::Ref => u.refs.push(i),
                Split::Target => u.targets.push(i),
                Split::Eval => u.evals.push(i),
            }
        }
        let missing: Vec<String> = by_user
            .values()
            .filter(|u| u.refs.is_empty())
            .map(|u| u.id.clone())
            .collect();
        if !missing.is_empty() {
            return Err(DataError::NoReference { users: missing });
        }
        let users: Vec<UserData> = by_user.into_values().collect();
        let index: HashMap<&str, usize> = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.id.as_str(), i))
            .collect();
        let triplet_user = triplets.iter().map(|t| index[t.user.as_str()]).collect();
        let seen = (0..users.len()).filter(|&i| users[i].is_seen()).collect();
        let unseen = (0..users.len()).filter(|&i| !users[i].is_seen()).collect();
        Ok(Self {
            triplets,
            users,
            triplet_user,
            seen,
            unseen,
            source,
            lines,
            skipped,
        })
    }

    /// Reads and validates a JSONL file; messages name its lines.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let (lines, triplets) = read_numbered(path)?.into_iter().unzip();
        Self::build(triplets, Some(path.to_path_buf()), lines)
    }

    /// Where triplet `i` is: `FILE: line N` when read from a file, else `triplet N`.
    pub fn place(&self, i: usize) -> String {
        place_of(self.source.as_deref(), &self.lines, i)
    }

    /// Checks that the dataset can be trained on: an error without seen users; warnings (to
    /// print) for what will be missing from the report, e.g. no unseen users.
    pub fn check_trainable(&self) -> Result<Vec<String>, DataError> {
        let origin = origin_of(self.source.as_deref());
        if self.seen.is_empty() {
            return Err(DataError::NoSeenUsers {
                origin,
                users: self.users.len(),
            });
        }
        let mut warnings = Vec::new();
        if self.unseen.is_empty() {
            warnings.push(format!(
                "{origin}: no unseen users (every user has `target` rows): unseen-user accuracy cannot be measured"
            ));
        }
        let no_eval: Vec<String> = self
            .users
            .iter()
            .filter(|u| u.evals.is_empty())
            .map(|u| u.id.clone())
            .collect();
        if !no_eval.is_empty() {
            warnings.push(format!(
                "{origin}: {} user(s) have no `eval` triplets and are left out of the accuracy: {}",
                no_eval.len(),
                preview(&no_eval)
            ));
        }
        if !self.skipped.is_empty() {
            let places: Vec<String> = self
                .skipped
                .iter()
                .map(|s| format!("{} (user {})", s.place, s.user))
                .collect();
            warnings.push(format!(
                "skipped {} triplet(s) with {}: {}",
                self.skipped.len(),
                IDENTICAL_PAIR,
                preview(&places)
            ));
        }
        Ok(warnings)
    }

    /// Index into `users` of a user id.
    pub fn user_index(&self, id: &str) -> Option<usize> {
        self.users.binary_search_by(|u| u.id.as_str().cmp(id)).ok()
    }

    /// Counts of users and triplets.
    pub fn summary(&self) -> DatasetSummary {
        let count = |s: Split| self.triplets.iter().filter(|t| t.split == s).count();
        let evals_of = |idx: &[usize]| idx.iter().map(|&u| self.users[u].evals.len()).sum();
        DatasetSummary {
            users: self.users.len(),
            seen_users: self.seen.len(),
            unseen_users: self.unseen.len(),
            triplets: self.triplets.len(),
            refs: count(Split::Ref),
            targets: count(Split::Target),
            evals: count(Split::Eval),
            seen_evals: evals_of(&self.seen),
            unseen_evals: evals_of(&self.unseen),
        }
    }

    /// Deduplicated `(prompt, response)` texts so each unique text is embedded once.
    pub fn texts(&self) -> TextIndex {
        let n = self.triplets.len();
        let mut texts: Vec<(String, String)> = Vec::new();
        let mut chosen_text = Vec::with_capacity(n);
        let mut rejected_text = Vec::with_capacity(n);
        // Lookup only; ids come from first appearance, so the result does not depend on hashing.
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for t in &self.triplets {
            for (resp, out) in [
                (&t.chosen, &mut chosen_text),
                (&t.rejected, &mut rejected_text),
            ] {
                let id = *seen
                    .entry((t.prompt.as_str(), resp.as_str()))
                    .or_insert_with(|| {
                        texts.push((t.prompt.clone(), resp.clone()));
                        texts.len() - 1
                    });
                out.push(id);
            }
        }
        TextIndex {
            texts,
            chosen_text,
            rejected_text,
        }
    }

    /// Triplets of the given splits grouped by prompt, groups in order of first appearance.
    pub fn prompt_groups(&self, splits: &[Split]) -> Vec<PromptGroup> {
        let mut groups: Vec<PromptGroup> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, t) in self.triplets.iter().enumerate() {
            if !splits.contains(&t.split) {
                continue;
            }
            let g = *index.entry(t.prompt.as_str()).or_insert_with(|| {
                groups.push(PromptGroup {
                    prompt: t.prompt.clone(),
                    triplets: Vec::new(),
                });
                groups.len() - 1
            });
            groups[g].triplets.push(i);
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(user: &str, prompt: &str, c: &str, r: &str, split: Split) -> Triplet {
        Triplet {
            user: user.into(),
            prompt: prompt.into(),
            chosen: c.into(),
            rejected: r.into(),
            split,
        }
    }

    fn sample() -> Vec<Triplet> {
        vec![
            t("u2", "p1", "a", "b", Split::Ref),
            t("u1", "p1", "b", "a", Split::Ref),
            t("u1", "p2", "c", "d", Split::Target),
            t("u1", "p3", "e", "f", Split::Eval),
            t("u2", "p3", "e", "g", Split::Eval),
            t("u0", "p2", "d", "c", Split::Ref),
        ]
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let mut ts = sample();
        ts[0].prompt = "line\nbreak \"quoted\" ünïcode".into();
        write_jsonl(&path, &ts).unwrap();
        assert_eq!(read_jsonl(&path).unwrap(), ts);
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn blank_lines_and_unknown_fields() {
        let text = "\n{\"user\":\"u\",\"prompt\":\"p\",\"chosen\":\"c\",\"rejected\":\"r\",\"split\":\"eval\",\"extra\":[1]}\n\n";
        let ts = parse_jsonl(text, Path::new("x.jsonl")).unwrap();
        assert_eq!(ts.len(), 1);
        assert_eq!(ts[0].split, Split::Eval);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad_data.jsonl");
        let good = "{\"user\":\"u\",\"prompt\":\"p\",\"chosen\":\"c\",\"rejected\":\"r\",\"split\":\"ref\"}";
        let cases = [
            ("{not json", "line 3"),
            ("{\"user\":\"u\",\"prompt\":\"p\",\"chosen\":\"c\",\"split\":\"ref\"}", "rejected"),
            ("{\"user\":\"u\",\"prompt\":\"p\",\"chosen\":\"c\",\"rejected\":\"r\",\"split\":\"train\"}", "train"),
            ("{\"user\":\"  \",\"prompt\":\"p\",\"chosen\":\"c\",\"rejected\":\"r\",\"split\":\"ref\"}", "empty `user`"),
        ];
        for (bad, what) in cases {
            std::fs::write(&path, format!("{good}\n\n{bad}\n{good}\n")).unwrap();
            let msg = read_jsonl(&path).unwrap_err().to_string();
            assert!(msg.contains("bad_data.jsonl"), "{msg}");
            assert!(msg.contains("line 3"), "{msg}");
            assert!(msg.contains(what), "{msg}");
        }
    }

    #[test]
    fn empty_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.jsonl");
        std::fs::write(&path, "\n  \n").unwrap();
        assert!(matches!(
            read_jsonl(&path),
            Err(DataError::EmptyFile { .. })
        ));
        let missing = dir.path().join("nope.jsonl");
        let msg = read_jsonl(&missing).unwrap_err().to_string();
        assert!(msg.contains("nope.jsonl"), "{msg}");
    }

    #[test]
    fn grouping_seen_unseen() {
        let ds = Dataset::from_triplets(sample()).unwrap();
        let ids: Vec<&str> = ds.users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["u0", "u1", "u2"]);
        assert_eq!(ds.users[1].refs, [1]);
        assert_eq!(ds.users[1].targets, [2]);
        assert_eq!(ds.users[1].evals, [3]);
        assert_eq!(ds.users[2].refs, [0]);
        assert_eq!(ds.users[2].evals, [4]);
        assert_eq!(ds.seen, [1]);
        assert_eq!(ds.unseen, [0, 2]);
        assert_eq!(ds.triplet_user, [2, 1, 1, 1, 2, 0]);
        assert_eq!(ds.user_index("u2"), Some(2));
        assert_eq!(ds.user_index("zz"), None);
        let s = ds.summary();
        assert_eq!((s.users, s.seen_users, s.unseen_users), (3, 1, 2));
        assert_eq!((s.triplets, s.refs, s.targets, s.evals), (6, 3, 1, 2));
        assert_eq!((s.seen_evals, s.unseen_evals), (1, 1));
    }

    #[test]
    fn users_without_ref_rows_are_rejected() {
        let mut ts = sample();
        ts.push(t("u9", "p1", "a", "b", Split::Target));
        ts.push(t("u8", "p1", "a", "b", Split::Eval));
        let err = Dataset::from_triplets(ts).unwrap_err();
        match &err {
            DataError::NoReference { users } => assert_eq!(users, &["u8", "u9"]),
            e => panic!("unexpected {e}"),
        }
        assert!(err.to_string().contains("u8, u9"));
        assert!(matches!(
            Dataset::from_triplets(vec![]),
            Err(DataError::NoTriplets)
        ));
    }

    #[test]
    fn text_dedup_indices() {
        let ds = Dataset::from_triplets(sample()).unwrap();
        let ti = ds.texts();
        // Unique (prompt, response): (p1,a) (p1,b) (p2,c) (p2,d) (p3,e) (p3,f) (p3,g).
        assert_eq!(ti.texts.len(), 7);
        for (i, t) in ds.triplets.iter().enumerate() {
            assert_eq!(
                ti.texts[ti.chosen_text[i]],
                (t.prompt.clone(), t.chosen.clone())
            );
            assert_eq!(
                ti.texts[ti.rejected_text[i]],
                (t.prompt.clone(), t.rejected.clone())
            );
        }
        assert_eq!(ti.chosen_text[0], ti.rejected_text[1]);
        assert_eq!(ti.chosen_text[3], ti.chosen_text[4]);
    }

    #[test]
    fn prompt_groups_by_split() {
        let ds = Dataset::from_triplets(sample()).unwrap();
        let all = ds.prompt_groups(&Split::ALL);
        let got: Vec<(&str, &[usize])> = all
            .iter()
            .map(|g| (g.prompt.as_str(), g.triplets.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("p1", &[0, 1][..]),
                ("p2", &[2, 5][..]),
                ("p3", &[3, 4][..])
            ]
        );
        let train = ds.prompt_groups(&[Split::Target]);
        assert_eq!(train.len(), 1);
        assert_eq!(train[0].triplets, [2]);
    }
}
