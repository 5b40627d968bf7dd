//! Transfer progress on stderr: a redrawn line on a terminal, one line per
//! finished blob otherwise.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Progress of one pull or push.
pub(super) struct Progress {
    verb: &'static str,
    name: String,
    total_bytes: u64,
    total_blobs: u64,
    bytes: AtomicU64,
    blobs: AtomicU64,
    tty: bool,
    quiet: bool,
    last: Mutex<Instant>,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

impl Progress {
    /// Progress of `verb`ing (`pulling`, `pushing`) `total_blobs` blobs of
    /// `total_bytes` for `name`.
    pub fn new(
        verb: &'static str,
        name: &str,
        total_blobs: usize,
        total_bytes: u64,
        quiet: bool,
    ) -> Progress {
        Progress {
            verb,
            name: name.to_string(),
            total_bytes,
            total_blobs: total_blobs as u64,
            bytes: AtomicU64::new(0),
            blobs: AtomicU64::new(0),
            tty: std::io::stderr().is_terminal(),
            quiet,
            last: Mutex::new(Instant::now()),
        }
    }

    /// `n` more bytes moved.
    pub fn add(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        if !self.tty || self.quiet {
            return;
        }
        let mut last = self.last.lock().unwrap();
        if last.elapsed() < Duration::from_millis(100) {
            return;
        }
        *last = Instant::now();
        let mut e = std::io::stderr().lock();
        let _ = write!(
            e,
            "\r\x1b[K{} {}: {}/{} blobs, {:.1}/{:.1} MiB",
            self.verb,
            self.name,
            self.blobs.load(Ordering::Relaxed),
            self.total_blobs,
            mib(self.bytes.load(Ordering::Relaxed)),
            mib(self.total_bytes)
        );
        let _ = e.flush();
    }

    /// A blob finished: `what` happened to it (`pulled`, `pushed`, `exists`).
    pub fn blob_done(&self, digest: &str, size: u64, what: &str) {
        self.blobs.fetch_add(1, Ordering::Relaxed);
        self.say(&format!(
            "  {} {what} ({:.1} MiB)",
            digest.get(..19).unwrap_or(digest),
            mib(size)
        ));
    }

    /// A line of its own (clearing a progress line on a terminal).
    pub fn say(&self, line: &str) {
        if self.quiet {
            return;
        }
        let mut e = std::io::stderr().lock();
        if self.tty {
            let _ = write!(e, "\r\x1b[K");
        }
        let _ = writeln!(e, "{line}");
    }
}
