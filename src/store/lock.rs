//! The store's inter-process lock (an exclusive `flock` on `d2v/lock`).

use super::{IoContext, Result};
use std::fs::File;
use std::path::Path;

/// Holds the store's exclusive lock until dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Blocks until the lock at `path` is ours.
    pub fn acquire(path: &Path) -> Result<StoreLock> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ctx("open lock file", path)?;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(std::io::Error::from(e)).ctx("lock", path),
            }
        }
        Ok(StoreLock { _file: file })
    }
}
