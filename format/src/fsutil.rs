//! File-system helpers: atomic writes so a crash never leaves a half-written file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, a rename,
/// then an fsync of the directory, so after a crash `path` holds the old or the new bytes.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] for content produced piece by piece: `fill` writes into a buffered temporary
/// file, so a multi-GB file never has to be held in memory whole.
pub fn write_atomic_with(
    path: impl AsRef<Path>,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let path = path.as_ref();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        {
            // Closed before the rename.
            step("create", &tmp)?;
            let f = std::fs::File::create(&tmp)?;
            step("write", &tmp)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            fill(&mut w)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            step("fsync", &tmp)?;
            f.sync_all()?;
        }
        rename(&tmp, path)?;
        // The rename itself is durable only once the directory entry is on disk.
        step("fsync", &dir)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Renames `from` to `to` (one fault-injection step).
pub fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    step("rename", to)?;
    std::fs::rename(from, to)
}

/// Puts the finished directory `tmp` in place of `dest` without a moment where neither exists
/// intact: `dest` moves aside to `dest.old`, `tmp` takes its name, then the old copy goes (a
/// crash in between leaves the old copy at `dest.old`, which the caller's error names).
pub fn replace_dir(tmp: &Path, dest: &Path) -> std::io::Result<()> {
    let mut old = dest.as_os_str().to_owned();
    old.push(".old");
    let old = PathBuf::from(old);
    if dest.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        rename(dest, &old)?;
        if let Err(e) = rename(tmp, dest) {
            // Put the previous directory back before reporting.
            let _ = std::fs::rename(&old, dest);
            return Err(e);
        }
        let _ = std::fs::remove_dir_all(&old);
    } else {
        rename(tmp, dest)?;
    }
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => Ok(()),
    }
}

/// Removes a scratch directory when dropped (a no-op once it has been renamed into place), so
/// an error part-way through building a directory leaves nothing partial behind.
#[derive(Debug)]
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One step of a write: fails when a test armed [`fault`] for it; otherwise nothing.
fn step(what: &str, path: &Path) -> std::io::Result<()> {
    #[cfg(feature = "fault-injection")]
    {
        fault::check(what, path)
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = (what, path);
        Ok(())
    }
}

/// Fault injection for tests (feature `fault-injection`): arm it with `n`, and the n-th write
/// step from then on (create, write, fsync or rename, counted process-wide) fails with an I/O
/// error, as a full or read-only disk would.
#[cfg(feature = "fault-injection")]
pub mod fault {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNTDOWN: AtomicUsize = AtomicUsize::new(0);
    static STEPS: AtomicUsize = AtomicUsize::new(0);

    /// Makes the `n`-th write step from now fail (`n` ≥ 1); 0 disarms.
    pub fn fail_at(n: usize) {
        STEPS.store(0, Ordering::SeqCst);
        COUNTDOWN.store(n, Ordering::SeqCst);
    }

    /// Write steps taken since the last [`fail_at`].
    pub fn steps() -> usize {
        STEPS.load(Ordering::SeqCst)
    }

    /// Whether the armed fault has not fired yet.
    pub fn armed() -> bool {
        COUNTDOWN.load(Ordering::SeqCst) > 0
    }

    pub(super) fn check(what: &str, path: &Path) -> std::io::Result<()> {
        STEPS.fetch_add(1, Ordering::SeqCst);
        let left = COUNTDOWN.load(Ordering::SeqCst);
        if left == 0 {
            return Ok(());
        }
        COUNTDOWN.store(left - 1, Ordering::SeqCst);
        if left == 1 {
            return Err(std::io::Error::other(format!(
                "injected fault at {what} of {}",
                path.display()
            )));
        }
        Ok(())
    }
}

/// Flushes a directory's entries (renames, new files) to disk; a no-op where directories cannot
/// be opened (not Unix).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
