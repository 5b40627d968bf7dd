//! The store's inter-process lock (an exclusive `flock` on `d2v/lock`).

use super::{IoContext, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
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
            // SAFETY: flock on a file descriptor we own; the kernel releases it when the fd closes.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).ctx("lock", path);
            }
        }
        Ok(StoreLock { _file: file })
    }
}
