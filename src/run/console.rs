//! The VMM's own output: the guest's serial console (kernel messages, init's
//! lines before the channel is up) and the VMM's stderr. Shown on d2v's
//! stderr with `--debug`; otherwise only its tail, when the VM stopped
//! without an exit code.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How much of the console is kept for a failure report.
const TAIL: usize = 16 << 10;

/// The collected console.
#[derive(Clone, Default)]
pub struct Console {
    tail: Arc<Mutex<Vec<u8>>>,
}

impl Console {
    /// Reads `src` until EOF, forwarding to stderr when `show`.
    pub fn collect(&self, mut src: impl Read + Send + 'static, show: bool) -> JoinHandle<()> {
        let tail = self.tail.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if show {
                    let mut e = std::io::stderr().lock();
                    let _ = e.write_all(&buf[..n]).and_then(|_| e.flush());
                }
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                t.extend_from_slice(&buf[..n]);
                if t.len() > 2 * TAIL {
                    let cut = t.len() - TAIL;
                    t.drain(..cut);
                }
            }
        })
    }

    /// The last lines collected, `\r` removed.
    pub fn tail(&self) -> String {
        let t = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let from = t.len().saturating_sub(TAIL);
        String::from_utf8_lossy(&t[from..]).replace('\r', "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail_of_a_long_console() {
        let c = Console::default();
        let mut data = vec![b'a'; 100 << 10];
        data.extend_from_slice(b"\r\nKernel panic - not syncing\r\n");
        c.collect(std::io::Cursor::new(data), false).join().unwrap();
        let t = c.tail();
        assert!(
            t.len() <= TAIL && t.ends_with("Kernel panic - not syncing\n"),
            "{}",
            t.len()
        );
    }
}
