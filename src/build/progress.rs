//! Build progress: BuildKit-like step lines, CACHED markers, time per step, RUN
//! output (streamed in `plain`, a tail on failure in `auto`), JSON events for machines.

use std::io::{IsTerminal, Write};
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

/// Prints build progress to stderr.
pub struct Progress {
    mode: ProgressMode,
    tty: bool,
    started: Instant,
    step_started: Instant,
    tail: Vec<u8>,
    current: String,
}

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
            tty,
            started: Instant::now(),
            step_started: Instant::now(),
            tail: Vec::new(),
            current: String::new(),
        }
    }

    fn json(&self, value: serde_json::Value) {
        let _ = writeln!(std::io::stderr(), "{value}");
    }

    /// A note line (warnings, stage starts).
    pub fn note(&mut self, text: &str) {
        match self.mode {
            ProgressMode::Json => self.json(serde_json::json!({"event": "note", "text": text})),
            ProgressMode::Quiet => {}
            _ => eprintln!("{text}"),
        }
    }

    /// A step begins: `label` like `[build 2/5]`, `text` the instruction.
    pub fn step_start(&mut self, label: &str, text: &str) {
        self.step_started = Instant::now();
        self.tail.clear();
        self.current = format!("{label} {}", one_line(text));
        match self.mode {
            ProgressMode::Json => {
                self.json(serde_json::json!({"event": "step", "step": label, "text": text}))
            }
            ProgressMode::Plain => eprintln!("=> {}", self.current),
            ProgressMode::Auto => {
                eprint!("=> {}", self.current);
                let _ = std::io::stderr().flush();
            }
            ProgressMode::Quiet => {}
        }
    }

    /// Output of the running step.
    pub fn output(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > TAIL_BYTES * 2 {
            self.tail.drain(..self.tail.len() - TAIL_BYTES);
        }
        match self.mode {
            ProgressMode::Plain => {
                let _ = std::io::stderr().write_all(bytes);
            }
            ProgressMode::Json => self.json(
                serde_json::json!({"event": "output", "data": String::from_utf8_lossy(bytes)}),
            ),
            _ => {}
        }
    }

    /// The step ended.
    pub fn step_end(&mut self, status: StepStatus) {
        let secs = self.step_started.elapsed().as_secs_f64();
        match self.mode {
            ProgressMode::Json => self.json(serde_json::json!({
                "event": "step_end",
                "status": format!("{status:?}").to_lowercase(),
                "seconds": secs,
            })),
            ProgressMode::Plain => match status {
                StepStatus::Cached => eprintln!("   CACHED"),
                StepStatus::Done => eprintln!("   done {secs:.1}s"),
                StepStatus::Failed => eprintln!("   FAILED after {secs:.1}s"),
            },
            ProgressMode::Auto => {
                let mark = match status {
                    StepStatus::Cached => " CACHED".to_string(),
                    StepStatus::Done => format!(" {secs:.1}s"),
                    StepStatus::Failed => format!(" FAILED after {secs:.1}s"),
                };
                eprintln!("{mark}");
                if status == StepStatus::Failed && !self.tail.is_empty() {
                    let text = String::from_utf8_lossy(&self.tail);
                    let lines: Vec<&str> = text.lines().collect();
                    let from = lines.len().saturating_sub(40);
                    for line in &lines[from..] {
                        eprintln!("   | {line}");
                    }
                }
            }
            ProgressMode::Quiet => {}
        }
        let _ = self.tty;
    }

    /// The whole build finished.
    pub fn finish(&mut self, summary: &str) {
        let secs = self.started.elapsed().as_secs_f64();
        match self.mode {
            ProgressMode::Json => {
                self.json(serde_json::json!({"event": "done", "summary": summary, "seconds": secs}))
            }
            ProgressMode::Quiet => {}
            _ => eprintln!("{summary} in {}", fmt_duration(self.started.elapsed())),
        }
    }
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
