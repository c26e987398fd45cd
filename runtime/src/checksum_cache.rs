//! Files whose SHA-256 was verified, remembered by path and file stamp (size, modification and
//! change times, inode, device): a multi-GB graph is hashed on its first load (≈ 1 GB/s, seconds
//! for Qwen3-0.6B) and not on every restart. A file written or replaced since (another stamp), or
//! whose manifest digest differs from the one recorded, is hashed again; the cache cannot see
//! bit rot that leaves the stamp alone. A model loaded from the cache says so
//! ([`crate::VrfModel::checksums`]), so nothing is skipped silently.
//!
//! The cache is best effort: an unreadable or unwritable cache file only means hashing again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use vrf_format::manifest::FileEntry;

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
    /// (same path, stamp and digest: see [`FileStamp`]).
    VerifiedEarlier,
    /// Not checked (`with_verify_checksums(false)`).
    NotVerified,
}

/// What identifies one version of a file on disk: size, modification and change times, inode and
/// device. Any write changes the change time, and replacing the file changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    bytes: u64,
    mtime_ns: u128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
}

impl FileStamp {
    /// The stamp of `meta` (`None` where the platform gives no modification time).
    pub fn of(meta: &std::fs::Metadata) -> Option<Self> {
        let mtime_ns = meta
            .modified()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos();
        #[cfg(unix)]
        let (ctime_ns, ino, dev) = {
            use std::os::unix::fs::MetadataExt;
            (
                i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
                meta.ino(),
                meta.dev(),
            )
        };
        #[cfg(not(unix))]
        let (ctime_ns, ino, dev) = (0, 0, 0);
        Some(Self {
            bytes: meta.len(),
            mtime_ns,
            ctime_ns,
            ino,
            dev,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    stamp: FileStamp,
    sha256: String,
    /// Insertion counter, to drop the oldest records.
    seq: u64,
}

/// A cache file of verified files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumCache {
    path: PathBuf,
}

/// The cache key of `file`: its canonical path.
fn key(file: &Path) -> Option<String> {
    Some(std::fs::canonicalize(file).ok()?.display().to_string())
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

    /// Whether `file` was hashed before to `entry`'s digest and is, by its stamp, the same
    /// file version now.
    pub fn contains(&self, file: &Path, entry: &FileEntry) -> bool {
        let (Some(key), Some(stamp)) = (
            key(file),
            std::fs::metadata(file)
                .ok()
                .as_ref()
                .and_then(FileStamp::of),
        ) else {
            return false;
        };
        self.read().get(&key).is_some_and(|r| {
            r.stamp == stamp && stamp.bytes == entry.bytes && r.sha256 == entry.sha256
        })
    }

    /// Records that `file` hashed to `entry`, with the stamp its open handle had before and
    /// after the hashing (unchanged, or the caller records nothing); a later version of the file
    /// has another stamp, so it is never vouched for by this record.
    pub fn record(&self, file: &Path, entry: &FileEntry, stamp: FileStamp) {
        let Some(key) = key(file) else {
            return;
        };
        if stamp.bytes != entry.bytes {
            return;
        }
        let mut records = self.read();
        let seq = records.values().map(|r| r.seq + 1).max().unwrap_or(0);
        records.insert(
            key,
            Record {
                stamp,
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
            let _ = vrf_format::fsutil::write_atomic(&self.path, &bytes);
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
        let stamp = || FileStamp::of(&std::fs::metadata(&f).unwrap()).unwrap();
        assert!(!cache.contains(&f, &entry));
        cache.record(&f, &entry, stamp());
        assert!(cache.contains(&f, &entry));
        // Another manifest's digest for the same file is not vouched for.
        assert!(!cache.contains(&f, &FileEntry::of(b"weighTs")));
        // Same size, new content, the old mtime put back: the change time still moves on.
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"weighTs").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(!cache.contains(&f, &entry));
        // A stamp taken before a change does not vouch for the changed file.
        let before = stamp();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"weights").unwrap();
        cache.record(&f, &entry, before);
        assert!(!cache.contains(&f, &entry));
        // A garbled cache file means hashing again, not an error.
        std::fs::write(cache.path(), b"{not json").unwrap();
        assert!(!cache.contains(&f, &entry));
    }
}
