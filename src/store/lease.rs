//! Leases: the blobs a running d2v process has written or is using, which
//! `d2v prune` must not remove.
//!
//! containerd protects in-flight content with leases; d2v keeps one lease per
//! process and open store, a file `d2v/leases/<pid>-<start>-<n>` listing blob
//! digests, one per line. The protocol (every step under the store lock):
//!
//! * a writer records a blob in its lease *before* renaming it into `blobs/`,
//!   or before relying on a copy that is already there;
//! * a user of a stored blob (a cache hit, a layer about to be mounted)
//!   records it after checking that it is there;
//! * [`Store::prune`](super::Store::prune) reads the leases of live processes
//!   first, then the cache entries and names, and keeps everything they name.
//!
//! So a blob is always reachable from a name, a cache entry or a live lease
//! from the moment it appears until it is committed. A lease lives as long as
//! its process (the file is removed when the store handle is dropped; the
//! lease of a process that was killed is removed by the next prune, which
//! recognises a dead process by its pid and start time).

use super::oci::Digest;
use super::{IoContext, Result};
use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static LEASE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// This process's lease on one store.
#[derive(Debug)]
pub(super) struct Lease {
    path: PathBuf,
    inner: Mutex<(File, HashSet<Digest>)>,
}

impl Lease {
    /// Creates an empty lease file in `dir`.
    pub(super) fn create(dir: &Path) -> Result<Lease> {
        let pid = std::process::id();
        let start = process_start(pid).unwrap_or(0);
        let n = LEASE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{pid}-{start}-{n}"));
        let file = File::options()
            .create_new(true)
            .append(true)
            .open(&path)
            .ctx("create lease", &path)?;
        Ok(Lease {
            path,
            inner: Mutex::new((file, HashSet::new())),
        })
    }

    /// Adds `digests` to the lease. The caller holds the store lock.
    pub(super) fn add<'a>(&self, digests: impl IntoIterator<Item = &'a Digest>) -> Result<()> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (file, held) = &mut *guard;
        let mut lines = String::new();
        for d in digests {
            if held.insert(d.clone()) {
                lines.push_str(d.hex());
                lines.push('\n');
            }
        }
        if !lines.is_empty() {
            file.write_all(lines.as_bytes())
                .ctx("write lease", &self.path)?;
        }
        Ok(())
    }

    /// Drops `digest` from what this process says it holds (the file keeps
    /// the line; the next write is not needed for correctness, only the
    /// in-memory set is used to skip duplicates). Used when this process
    /// removes the blob itself.
    pub(super) fn forget(&self, digest: &Digest) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.1.remove(digest);
    }

    /// The lease file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the lease directory holds.
#[derive(Debug, Default)]
pub(super) struct Leases {
    /// Blobs named by the leases of live processes.
    pub held: BTreeSet<Digest>,
    /// Lease files of processes that are gone.
    pub dead: Vec<PathBuf>,
}

/// Reads every lease in `dir` but `skip`. A lease that cannot be read counts
/// as live and empty.
pub(super) fn read_leases(dir: &Path, skip: Option<&Path>) -> Result<Leases> {
    let mut out = Leases::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for entry in entries {
        let entry = entry.ctx("list", dir)?;
        if skip == Some(entry.path().as_path()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut parts = name.split('-');
        let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
        let start = parts.next().and_then(|s| s.parse::<u64>().ok());
        let (Some(pid), Some(start)) = (pid, start) else {
            continue;
        };
        if !is_alive(pid, start) {
            out.dead.push(entry.path());
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        out.held.extend(
            text.lines()
                .filter_map(|hex| format!("sha256:{hex}").parse::<Digest>().ok()),
        );
    }
    Ok(out)
}

/// Whether process `pid` is still the one that started at `start` (clock
/// ticks since boot; 0 when it could not be read, then any running process
/// with the pid counts).
pub(super) fn is_alive(pid: u32, start: u64) -> bool {
    process_start(pid).is_some_and(|now| start == 0 || now == start)
}

/// Whether a process `pid` is running (a zombie is not: it has exited and
/// only waits to be reaped).
pub(super) fn is_running(pid: u32) -> bool {
    process_start(pid).is_some()
}

/// The start time of running process `pid` (field 22 of `/proc/PID/stat`),
/// or `None` when there is no such process or it is a zombie.
pub(super) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_dead_leases_are_found() {
        let me = std::process::id();
        let start = process_start(me).expect("own start time");
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start + 1), "a reused pid is another process");

        let dir = tempfile::tempdir().unwrap();
        let lease = Lease::create(dir.path()).unwrap();
        let d = Digest::of(b"x");
        lease.add([&d, &d]).unwrap();
        std::fs::write(dir.path().join(format!("{me}-{}-0", start + 1)), "zz\n").unwrap();
        let leases = read_leases(dir.path(), None).unwrap();
        assert_eq!(leases.held, BTreeSet::from([d]));
        assert_eq!(leases.dead.len(), 1);
        let text = std::fs::read_to_string(lease.path()).unwrap();
        assert_eq!(text.lines().count(), 1, "a digest is written once");
        let path = lease.path().to_path_buf();
        drop(lease);
        assert!(!path.exists());
    }
}
