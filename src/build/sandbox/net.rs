//! The network of a RUN step: its own network namespace with outbound access
//! through `slirp4netns`, a user-mode NAT that works the same for root and for
//! an ordinary user (it is what rootless podman uses).
//!
//! Why slirp4netns and not pasta (both are Debian packages): slirp4netns has
//! an explicit `--disable-host-loopback` that refuses connections from the
//! namespace to the host's loopback, a `--ready-fd`/`--exit-fd` lifecycle, and
//! its own sandbox (`--enable-sandbox`, `--enable-seccomp`). pasta's defaults
//! in Debian 12's version forward the gateway address to the host's loopback
//! and forward ports bound in the namespace to the host (`-T auto`), so every
//! one of those would have to be switched off, with flags that changed names
//! between versions. A step sees `tap0` with 10.0.2.100/24, gateway 10.0.2.2
//! (refused: host loopback is off) and slirp's DNS forwarder at 10.0.2.3.

use std::ffi::{CStr, CString};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::spawn::{posix_spawnp, PosixSpawnAttr, PosixSpawnFileActions};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// The address slirp4netns answers DNS on.
pub const SLIRP_DNS: &str = "10.0.2.3";

/// How long slirp4netns may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starting the step's network failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// slirp4netns is not installed.
    #[error(
        "RUN steps get their network from slirp4netns, which is not installed \
         (apt-get install slirp4netns), or use RUN --network=none"
    )]
    Missing,
    /// It failed or did not become ready.
    #[error("slirp4netns: {0}")]
    Failed(String),
}

/// The fd slirp4netns reports readiness on.
const READY_FD: i32 = 3;

/// The fd slirp4netns exits on when it closes: the read end of a pipe whose
/// only write end d2v holds, so that a d2v killed with SIGKILL (which runs
/// no clean-up) takes its slirp4netns processes with it instead of leaving
/// them to init.
const EXIT_FD: i32 = 4;

/// A running slirp4netns for one step; stops when dropped.
pub struct StepNetwork {
    pid: libc::pid_t,
    /// Its stderr, for the reason when it fails.
    err: OwnedFd,
    /// The write end of its exit pipe (close-on-exec, so no other child of
    /// d2v holds it).
    _exit: OwnedFd,
}

impl StepNetwork {
    /// Connects the network namespace of `pid` to the outside world and
    /// returns once it is configured.
    pub fn start(pid: libc::pid_t) -> Result<StepNetwork, NetError> {
        let (ready_r, ready_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (exit_r, exit_w) = pipe()?;
        // Above the fds they are dup'ed onto, so no dup2 overwrites another
        // end before it is copied.
        let (ready_w, exit_r, err_w) = (above_4(ready_w)?, above_4(exit_r)?, above_4(err_w)?);
        let args = [
            "slirp4netns".to_string(),
            "--configure".into(),
            "--mtu=65520".into(),
            "--disable-host-loopback".into(),
            "--enable-sandbox".into(),
            "--enable-seccomp".into(),
            format!("--ready-fd={READY_FD}"),
            format!("--exit-fd={EXIT_FD}"),
            pid.to_string(),
            "tap0".into(),
        ];
        let child = spawn(
            &args,
            ready_w.as_raw_fd(),
            exit_r.as_raw_fd(),
            err_w.as_raw_fd(),
        )?;
        drop(ready_w);
        drop(exit_r);
        drop(err_w);
        let mut net = StepNetwork {
            pid: child,
            err: err_r,
            _exit: exit_w,
        };
        net.wait_ready(ready_r)?;
        Ok(net)
    }

    fn wait_ready(&mut self, ready: OwnedFd) -> Result<(), NetError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NetError::Failed("not ready after 10 s".into()));
            }
            let mut pfd = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            if poll(&mut pfd, timeout) == Err(Errno::EINTR) {
                continue;
            }
            break;
        }
        let mut byte = [0u8; 1];
        let n = std::fs::File::from(ready).read(&mut byte).unwrap_or(0);
        if n == 1 && byte[0] == b'1' {
            return Ok(());
        }
        self.stop();
        let mut err = String::new();
        let _ = std::fs::File::from(
            self.err
                .try_clone()
                .map_err(|e| NetError::Failed(e.to_string()))?,
        )
        .read_to_string(&mut err);
        Err(NetError::Failed(
            err.lines().last().unwrap_or("exited").trim().to_string(),
        ))
    }

    /// Kills slirp4netns and reaps it in the background: tearing down its
    /// sandbox's mount namespace takes the kernel tens of milliseconds, which
    /// no step should wait for.
    fn stop(&mut self) {
        let pid = std::mem::take(&mut self.pid);
        if pid > 0 {
            // Our own unreaped child, so the pid cannot have been reused.
            let pid = Pid::from_raw(pid);
            let _ = kill(pid, Signal::SIGKILL);
            let reap = move || {
                // The status is not needed.
                let _ = waitpid(pid, None);
            };
            if std::thread::Builder::new()
                .name("slirp-reaper".into())
                .spawn(reap)
                .is_err()
            {
                reap();
            }
        }
    }
}

impl Drop for StepNetwork {
    fn drop(&mut self) {
        // The step is over and its namespace gone: nothing to wind down.
        self.stop();
    }
}

/// Starts `args` with `ready` as its fd 3, `exit` as its fd 4 and `err` as
/// its stderr, stdin and stdout on /dev/null, through posix_spawn: forking this large, threaded
/// process for every step (what a pre-exec hook would need) costs far more
/// than slirp4netns takes to start.
fn spawn(args: &[String], ready: RawFd, exit: RawFd, err: RawFd) -> Result<libc::pid_t, NetError> {
    let fail = |what: &str, e: Errno| NetError::Failed(format!("{what}: {}", io::Error::from(e)));
    let cargs: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()).expect("no NUL in slirp4netns arguments"))
        .collect();
    let mut actions = PosixSpawnFileActions::init().map_err(|e| fail("spawn actions", e))?;
    let dev_null = c"/dev/null";
    let none = Mode::empty();
    actions
        .add_open(0, dev_null, OFlag::O_RDONLY, none)
        .and_then(|()| actions.add_open(1, dev_null, OFlag::O_WRONLY, none))
        // dup2 clears close-on-exec on the new descriptor.
        .and_then(|()| actions.add_dup2(err, 2))
        .and_then(|()| actions.add_dup2(ready, READY_FD))
        .and_then(|()| actions.add_dup2(exit, EXIT_FD))
        .map_err(|e| fail("spawn actions", e))?;
    let attr = PosixSpawnAttr::init().map_err(|e| fail("spawn attributes", e))?;
    let envp: [&CStr; 0] = [];
    match posix_spawnp(&cargs[0], &actions, &attr, &cargs, &envp) {
        Ok(pid) => Ok(pid.as_raw()),
        Err(Errno::ENOENT) => Err(NetError::Missing),
        Err(e) => Err(fail("spawning slirp4netns", e)),
    }
}

/// `fd` moved to a number above [`EXIT_FD`] (close-on-exec kept).
fn above_4(fd: OwnedFd) -> Result<OwnedFd, NetError> {
    rustix::io::fcntl_dupfd_cloexec(&fd, EXIT_FD + 1)
        .map_err(|e| NetError::Failed(format!("dup: {e}")))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), NetError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| NetError::Failed(format!("pipe: {e}")))
}

/// The resolv.conf a step with its own network gets: the host's, with every
/// loopback nameserver (a local caching resolver the step cannot reach)
/// replaced by slirp's forwarder.
pub fn step_resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut added_slirp = false;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or("");
            let loopback = addr
                .parse::<std::net::IpAddr>()
                .map(|a| a.is_loopback())
                .unwrap_or(false);
            if loopback {
                if !added_slirp {
                    out.push_str(&format!("nameserver {SLIRP_DNS}\n"));
                    added_slirp = true;
                }
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if !out
        .lines()
        .any(|l| l.trim_start().starts_with("nameserver"))
    {
        out.push_str(&format!("nameserver {SLIRP_DNS}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_become_slirps() {
        assert_eq!(
            step_resolv_conf("search lan\nnameserver 127.0.0.53\nnameserver ::1\noptions edns0\n"),
            "search lan\nnameserver 10.0.2.3\noptions edns0\n"
        );
        assert_eq!(
            step_resolv_conf("nameserver 10.255.255.53\n"),
            "nameserver 10.255.255.53\n"
        );
        assert_eq!(step_resolv_conf(""), "nameserver 10.0.2.3\n");
    }
}
