//! One run's conversation with init over the channel: answer its hello with
//! the run request and the clock, relay stdin (with `-i`) and the entrypoint's
//! stdout and stderr byte for byte, show init's messages (errors always,
//! progress with `--debug`), turn d2v's stop signals into a stop request and,
//! after the stop timeout, a kill, and return the exit code init reports.

use super::{signals, terminal, RunError};
use d2v_runtime::config::RunRequest;
use d2v_runtime::proto::{self, Decoder, Frame, Kind, Level};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the session behaves.
#[derive(Debug, Clone)]
pub struct Session {
    /// What init is told at boot.
    pub request: RunRequest,
    /// `--debug`: show init's progress lines.
    pub debug: bool,
    /// Between the stop request and SIGKILL in the guest.
    pub stop_timeout: Duration,
    /// When `d2v run` started, for `--debug`'s timeline.
    pub t0: Instant,
}

impl Session {
    /// With `--debug`, one line of the host's timeline.
    pub fn mark(&self, what: &str) {
        if self.debug {
            eprintln!("d2v: [{:.3} s] {what}", self.t0.elapsed().as_secs_f64());
        }
    }
}

/// How long init gets after reporting the exit code to sync and power off.
const POWER_OFF_GRACE: Duration = Duration::from_secs(10);
/// How long the kernel and init get to say hello (Debian's kernel under a
/// loaded TCG host takes tens of seconds).
const HELLO_TIMEOUT: Duration = Duration::from_secs(120);

type Writer = Arc<Mutex<UnixStream>>;

fn send(w: &Writer, kind: Kind, payload: &[u8]) -> std::io::Result<()> {
    let mut s = w.lock().unwrap_or_else(|e| e.into_inner());
    s.write_all(&proto::frame(kind, payload))
}

fn now_payload() -> [u8; 12] {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    proto::clock_payload(d.as_secs() as i64, d.subsec_nanos())
}

/// Copies the host's stdin into Stdin frames, then sends StdinEof.
fn forward_stdin(w: Writer) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; proto::MAX_DATA];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if send(&w, Kind::Stdin, &buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = send(&w, Kind::StdinEof, &[]);
    });
}

/// Acts on one frame from init; returns the exit code when it is the report.
fn on_frame(f: Frame, s: &Session, w: &Writer, hello: &AtomicBool) -> Result<Option<i32>, String> {
    match f.kind {
        Kind::Hello => {
            hello.store(true, Ordering::SeqCst);
            s.mark("init said hello");
            let req = serde_json::to_vec(&s.request).expect("RunRequest serializes");
            send(w, Kind::Start, &req).map_err(|e| e.to_string())?;
            send(w, Kind::Clock, &now_payload()).map_err(|e| e.to_string())?;
            if s.request.stdin {
                forward_stdin(w.clone());
            }
        }
        Kind::Stdout => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&f.payload).and_then(|_| out.flush());
        }
        Kind::Stderr => {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&f.payload).and_then(|_| err.flush());
        }
        Kind::Log => match f.log().map_err(|e| e.to_string())? {
            (Level::Error, text) => eprintln!("d2v: {text}"),
            (Level::Info, text) if s.debug => eprintln!("d2v-init: {text}"),
            _ => {}
        },
        Kind::Exit => {
            s.mark("exit code received");
            let code = f.exit_code().map_err(|e| e.to_string())?;
            // Everything init sent came before this: it may power off now.
            let _ = send(w, Kind::Done, &[]);
            return Ok(Some(code));
        }
        _ => return Err(format!("unexpected {:?} frame from the guest", f.kind)),
    }
    Ok(None)
}

/// Reads frames until init's exit report or the end of the stream.
fn reader(
    mut stream: UnixStream,
    s: Session,
    w: Writer,
    hello: Arc<AtomicBool>,
) -> JoinHandle<Result<Option<i32>, String>> {
    std::thread::spawn(move || {
        let mut dec = Decoder::new(1 << 20);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            while let Some(f) = dec.next_frame().map_err(|e| e.to_string())? {
                if let Some(code) = on_frame(f, &s, &w, &hello)? {
                    return Ok(Some(code));
                }
            }
            match stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => dec.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
}

/// Runs the session on `stream` while `vmm` runs; returns init's exit code,
/// or `None` when the VM stopped without one.
pub fn run(stream: UnixStream, s: &Session, vmm: &mut Child) -> Result<Option<i32>, RunError> {
    let chan_err = |e: std::io::Error| RunError::NoChannel(e.to_string());
    let w: Writer = Arc::new(Mutex::new(stream.try_clone().map_err(chan_err)?));
    let hello = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handle = reader(stream, s.clone(), w.clone(), hello.clone());
    let (mut stops_seen, mut resizes_seen) = (signals::stops(), signals::resizes());
    let mut stop_at: Option<Instant> = None;
    let mut killed_at: Option<Instant> = None;
    while !handle.is_finished() {
        if let Ok(Some(_)) = vmm.try_wait() {
            break;
        }
        let stops = signals::stops();
        if stops > stops_seen {
            stops_seen = stops;
            let _ = send(&w, Kind::Stop, &[]);
            stop_at.get_or_insert_with(Instant::now);
        }
        let resizes = signals::resizes();
        if resizes > resizes_seen && s.request.tty {
            resizes_seen = resizes;
            if let Some((rows, cols)) = terminal::size(std::io::stdin().as_fd()) {
                let _ = send(&w, Kind::Resize, &proto::resize_payload(rows, cols));
            }
        }
        if let Some(t) = stop_at {
            if killed_at.is_none() && t.elapsed() >= s.stop_timeout {
                let _ = send(&w, Kind::Kill, &[]);
                killed_at = Some(Instant::now());
            }
        }
        let no_hello = !hello.load(Ordering::SeqCst) && started.elapsed() >= HELLO_TIMEOUT;
        if no_hello || killed_at.is_some_and(|t| t.elapsed() >= POWER_OFF_GRACE) {
            // The guest does not answer: end the VM itself.
            let _ = vmm.kill();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // When the VMM is gone its end of the socket is closed: the reader reads
    // what is left and ends.
    let code = handle
        .join()
        .map_err(|_| RunError::NoChannel("the channel reader panicked".into()))?
        .map_err(RunError::NoChannel)?;
    wait_for_power_off(vmm);
    s.mark("the VM is off");
    Ok(code)
}

/// Gives the guest time to sync and power off, then ends the VMM.
fn wait_for_power_off(vmm: &mut Child) {
    let deadline = Instant::now() + POWER_OFF_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = vmm.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = vmm.kill();
    let _ = vmm.wait();
}
