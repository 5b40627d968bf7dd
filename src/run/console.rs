//! The guest's serial console: copied to our stdout as it arrives, and scanned
//! for init's last line (`d2v-init: X exited with code N` or
//! `d2v-init: init failed with code N`), the exit code `d2v run` returns.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The exit code in one console line from init, if it is the final report.
pub fn exit_code_in(line: &str) -> Option<i32> {
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = line.strip_prefix("d2v-init: ")?;
    let (head, code) = rest.rsplit_once(" with code ")?;
    if !(head.ends_with(" exited") || head == "init failed") {
        return None;
    }
    code.trim().parse().ok()
}

/// Copies `src` to stdout until EOF; returns the last exit code init reported.
pub fn stream(mut src: impl Read + Send + 'static) -> JoinHandle<Option<i32>> {
    let code = Arc::new(Mutex::new(None));
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut line = Vec::new();
        let mut stdout = std::io::stdout();
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let _ = stdout.write_all(&buf[..n]);
            let _ = stdout.flush();
            for &b in &buf[..n] {
                if b == b'\n' {
                    if let Some(c) = exit_code_in(&String::from_utf8_lossy(&line)) {
                        *code.lock().unwrap() = Some(c);
                    }
                    line.clear();
                } else {
                    line.push(b);
                }
            }
        }
        if let Some(c) = exit_code_in(&String::from_utf8_lossy(&line)) {
            *code.lock().unwrap() = Some(c);
        }
        let c = *code.lock().unwrap();
        c
    })
}

#[cfg(test)]
mod tests {
    use super::exit_code_in;

    #[test]
    fn finds_init_exit_reports_only() {
        assert_eq!(
            exit_code_in("d2v-init: /app/prog exited with code 3\r\n"),
            Some(3)
        );
        assert_eq!(
            exit_code_in("d2v-init: /bin/sh -c x exited with code 0"),
            Some(0)
        );
        assert_eq!(
            exit_code_in("d2v-init: init failed with code 241"),
            Some(241)
        );
        assert_eq!(exit_code_in("app: exited with code 3"), None);
        assert_eq!(
            exit_code_in("d2v-init: couldn't mount proc on /proc: EPERM"),
            None
        );
    }
}
