//! Files whose SHA-256 was verified, remembered by path, size and modification time: a multi-GB
//! graph is hashed on its first load (≈ 1 GB/s, seconds for Qwen3-0.6B) and not on every
//! restart. A file whose size or mtime changed, or whose manifest digest differs from the one
//! recorded, is hashed again; a model loaded from the cache says so
//! ([`crate::VrfModel::checksums`]), so nothing is skipped silently.
//!
//! The cache is best effort: an unreadable or unwritable cache file only means hashing again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::format::FileEntry;

/// Most files remembered (the oldest records go first).
const MAX_RECORDS: usize = 256;

/// Environment variable naming the cache file (empty: no cache).
pub const CACHE_ENV: &str = "VRF_CHECKSUM_CACHE";

/// How a model's large files were checked at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checksums {
    /// Every file was hashed in this load.
    Verified,
    /// Small files were hashed; the graph files matched a record of an earlier full hash
    /// (same path, size, mtime and digest).
    VerifiedEarlier,
    /// Not checked (`with_verify_checksums(false)`).
    NotVerified,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    bytes: u64,
    mtime_ns: u128,
    sha256: String,
    /// Insertion counter, to drop the oldest records.
    seq: u64,
}

/// A cache file of verified files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumCache {
    path: PathBuf,
}

/// Size and mtime of `file`, and its canonical path (the cache key).
fn stat(file: &Path) -> Option<(String, u64, u128)> {
    let meta = std::fs::metadata(file).ok()?;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    let key = std::fs::canonicalize(file).ok()?.display().to_string();
    Some((key, meta.len(), mtime.as_nanos()))
}

impl ChecksumCache {
    /// A cache stored in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// `$VRF_CHECKSUM_CACHE` (empty: none), else `$XDG_CACHE_HOME/vrf/verified.json`, else
    /// `$HOME/.cache/vrf/verified.json`.
    pub fn default_location() -> Option<Self> {
        if let Some(p) = std::env::var_os(CACHE_ENV) {
            return (!p.is_empty()).then(|| Self::new(p));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(Self::new(base.join("vrf").join("verified.json")))
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> BTreeMap<String, Record> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Whether `file` was hashed before to `entry`'s digest and has not changed size or mtime
    /// since.
    pub fn contains(&self, file: &Path, entry: &FileEntry) -> bool {
        let Some((key, bytes, mtime_ns)) = stat(file) else {
            return false;
        };
        self.read().get(&key).is_some_and(|r| {
            r.bytes == bytes
                && r.bytes == entry.bytes
                && r.mtime_ns == mtime_ns
                && r.sha256 == entry.sha256
        })
    }

    /// Records that `file` hashed to `entry` (call only after a successful full hash).
    pub fn record(&self, file: &Path, entry: &FileEntry) {
        let Some((key, bytes, mtime_ns)) = stat(file) else {
            return;
        };
        if bytes != entry.bytes {
            return;
        }
        let mut records = self.read();
        let seq = records.values().map(|r| r.seq + 1).max().unwrap_or(0);
        records.insert(
            key,
            Record {
                bytes,
                mtime_ns,
                sha256: entry.sha256.clone(),
                seq,
            },
        );
        while records.len() > MAX_RECORDS {
            let oldest = records
                .iter()
                .min_by_key(|(_, r)| r.seq)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                records.remove(&k);
            }
        }
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(bytes) = serde_json::to_vec(&records) {
            let _ = crate::fsutil::write_atomic(&self.path, &bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_not_trusted() {
        let d = tempfile::tempdir().unwrap();
        let cache = ChecksumCache::new(d.path().join("c/verified.json"));
        let f = d.path().join("w.bin");
        std::fs::write(&f, b"weights").unwrap();
        let entry = FileEntry::of(b"weights");
        assert!(!cache.contains(&f, &entry));
        cache.record(&f, &entry);
        assert!(cache.contains(&f, &entry));
        // Another manifest's digest for the same file is not vouched for.
        assert!(!cache.contains(&f, &FileEntry::of(b"weighTs")));
        // Same size, new content: the mtime moves on.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"weighTs").unwrap();
        assert!(!cache.contains(&f, &entry));
        // A garbled cache file means hashing again, not an error.
        std::fs::write(cache.path(), b"{not json").unwrap();
        assert!(!cache.contains(&f, &entry));
    }
}
