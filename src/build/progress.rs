//! Build progress: BuildKit-like step lines, CACHED markers, time per step, RUN
//! output (streamed in `plain`, a tail on failure in `auto`), JSON events for machines.
//!
//! Stages build in parallel, so in `plain` mode every output line is printed
//! whole, prefixed with its step's label (`[build 2/5] …`): a step's partial
//! line waits in its own buffer until its newline (or the step's end).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How progress is shown (`--progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// `plain` when stderr is not a terminal; on a terminal, step lines with RUN
    /// output shown only for a failing step.
    #[default]
    Auto,
    /// Every line of every step's output.
    Plain,
    /// One JSON object per event on stderr.
    Json,
    /// Nothing but errors.
    Quiet,
}

/// What happened to a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepStatus {
    /// Reused from the step cache.
    Cached,
    /// Executed.
    Done,
    /// Failed.
    Failed,
}

/// Prints build progress to stderr. Shared by the stages that build at once.
pub struct Progress {
    mode: ProgressMode,
    started: Instant,
    out: Mutex<()>,
}

/// A step in progress (from [`Progress::step_start`] to [`Progress::step_end`]).
pub struct StepRun {
    label: String,
    started: Instant,
    tail: Vec<u8>,
    /// Output after the last newline, not printed yet (`plain`).
    partial: Vec<u8>,
}

/// A line longer than this is printed in pieces rather than held back.
const MAX_PARTIAL: usize = 16 * 1024;

const TAIL_BYTES: usize = 64 * 1024;

impl Progress {
    /// A progress printer in `mode`.
    pub fn new(mode: ProgressMode) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let mode = match mode {
            ProgressMode::Auto if !tty => ProgressMode::Plain,
            m => m,
        };
        Progress {
            mode,
            started: Instant::now(),
            out: Mutex::new(()),
        }
    }

    fn line(&self, text: &str) {
        let _guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!("{text}");
    }

    fn json(&self, value: serde_json::Value) {
        self.line(&value.to_string());
    }

    /// A note line (warnings).
    pub fn note(&self, text: &str) {
        match self.mode {
            ProgressMode::Json => self.json(serde_json::json!({"event": "note", "text": text})),
            ProgressMode::Quiet => {}
            _ => self.line(text),
        }
    }

    /// A step begins: `label` like `[build 2/5]`, `text` the instruction.
    pub fn step_start(&self, label: &str, text: &str) -> StepRun {
        match self.mode {
            ProgressMode::Json => {
                self.json(serde_json::json!({"event": "step", "step": label, "text": text}))
            }
            ProgressMode::Plain | ProgressMode::Auto => {
                self.line(&format!("=> {label} {}", one_line(text)))
            }
            ProgressMode::Quiet => {}
        }
        StepRun {
            label: label.to_string(),
            started: Instant::now(),
            tail: Vec::new(),
            partial: Vec::new(),
        }
    }

    /// Output of a running step.
    pub fn output(&self, run: &mut StepRun, bytes: &[u8]) {
        run.tail.extend_from_slice(bytes);
        if run.tail.len() > TAIL_BYTES * 2 {
            run.tail.drain(..run.tail.len() - TAIL_BYTES);
        }
        match self.mode {
            ProgressMode::Plain => {
                let lines = take_lines(&mut run.partial, bytes);
                if !lines.is_empty() {
                    self.prefixed(&run.label, &lines);
                }
            }
            ProgressMode::Json => self.json(serde_json::json!({
                "event": "output",
                "step": run.label,
                "data": String::from_utf8_lossy(bytes),
            })),
            _ => {}
        }
    }

    /// Prints `bytes` line by line, each prefixed with `label`, in one write.
    fn prefixed(&self, label: &str, bytes: &[u8]) {
        let out = prefix_lines(label, bytes);
        let _guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::io::stderr().write_all(&out);
    }

    /// The step ended.
    pub fn step_end(&self, mut run: StepRun, status: StepStatus) {
        if self.mode == ProgressMode::Plain && !run.partial.is_empty() {
            let rest = std::mem::take(&mut run.partial);
            self.prefixed(&run.label, &rest);
        }
        let secs = run.started.elapsed().as_secs_f64();
        let label = &run.label;
        match self.mode {
            ProgressMode::Json => self.json(serde_json::json!({
                "event": "step_end",
                "step": label,
                "status": format!("{status:?}").to_lowercase(),
                "seconds": secs,
            })),
            ProgressMode::Plain | ProgressMode::Auto => {
                let mut text = match status {
                    StepStatus::Cached => format!("   {label} CACHED"),
                    StepStatus::Done => format!("   {label} done {secs:.1}s"),
                    StepStatus::Failed => format!("   {label} FAILED after {secs:.1}s"),
                };
                // On a terminal the output was held back: show the failing step's tail.
                if self.mode == ProgressMode::Auto
                    && status == StepStatus::Failed
                    && !run.tail.is_empty()
                {
                    let tail = String::from_utf8_lossy(&run.tail);
                    let lines: Vec<&str> = tail.lines().collect();
                    for l in &lines[lines.len().saturating_sub(40)..] {
                        text.push_str("\n   | ");
                        text.push_str(l);
                    }
                }
                self.line(&text);
            }
            ProgressMode::Quiet => {}
        }
    }

    /// The whole build finished.
    pub fn finish(&self, summary: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        match self.mode {
            ProgressMode::Json => {
                self.json(serde_json::json!({"event": "done", "summary": summary, "seconds": secs}))
            }
            ProgressMode::Quiet => {}
            _ => self.line(&format!(
                "{summary} in {}",
                fmt_duration(self.started.elapsed())
            )),
        }
    }
}

/// Appends `bytes` to a step's pending output and takes what is complete:
/// whole lines, or everything when the pending line grew past [`MAX_PARTIAL`].
fn take_lines(partial: &mut Vec<u8>, bytes: &[u8]) -> Vec<u8> {
    partial.extend_from_slice(bytes);
    let complete = match partial.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if partial.len() > MAX_PARTIAL => partial.len(),
        None => 0,
    };
    partial.drain(..complete).collect()
}

/// Every line of `bytes` (the last one may lack its newline) as
/// `label line\n`.
fn prefix_lines(label: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 32);
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(label.as_bytes());
        out.push(b' ');
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    let mut s = first.to_string();
    if text.lines().nth(1).is_some() {
        s.push_str(" …");
    }
    if s.chars().count() > 100 {
        s = s.chars().take(99).collect::<String>() + "…";
    }
    s
}

fn fmt_duration(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_into_whole_prefixed_lines() {
        let mut partial = Vec::new();
        assert!(take_lines(&mut partial, b"hel").is_empty());
        let got = take_lines(&mut partial, b"lo\nwor");
        assert_eq!(prefix_lines("[a 2/3]", &got), b"[a 2/3] hello\n");
        assert_eq!(partial, b"wor");
        let got = take_lines(&mut partial, b"ld\r\nx\ny\n");
        assert_eq!(
            prefix_lines("[b 1/2]", &got),
            b"[b 1/2] world\n[b 1/2] x\n[b 1/2] y\n"
        );
        assert!(partial.is_empty());
        let long = vec![b'z'; MAX_PARTIAL + 1];
        assert_eq!(take_lines(&mut partial, &long).len(), MAX_PARTIAL + 1);
    }
}
