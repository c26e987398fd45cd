//! An exclusive lock on a run directory, so that two processes never train or evaluate into the
//! same directory at once (an OS file lock on `DIR/.lock`: released when the process ends, even
//! by `kill -9`, so a crash never leaves a stale lock behind).

use crate::error::{Result, TrainError};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

/// Name of the lock file inside a run directory.
pub const LOCK_FILE: &str = ".lock";

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock on the existing directory `dir`, or fails at once, naming the directory,
    /// when another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(TryLockError::WouldBlock) => Err(TrainError::Other(format!(
                "{}: another process is training or evaluating into this run directory (it \
                 holds {}); wait for it to finish, or use another --out",
                dir.display(),
                path.display()
            ))),
            Err(TryLockError::Error(e)) => Err(TrainError::io(&path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let first = DirLock::acquire(&run).unwrap();
        let e = DirLock::acquire(&run).unwrap_err().to_string();
        assert!(e.contains("another process") && e.contains("run"), "{e}");
        drop(first);
        DirLock::acquire(&run).unwrap();
    }
}
