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

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
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

/// A running slirp4netns for one step; stops when dropped.
pub struct StepNetwork {
    child: Child,
    /// Closing this tells slirp4netns to exit.
    exit_w: Option<OwnedFd>,
}

impl StepNetwork {
    /// Connects the network namespace of `pid` to the outside world and
    /// returns once it is configured.
    pub fn start(pid: libc::pid_t) -> Result<StepNetwork, NetError> {
        let (ready_r, ready_w) = pipe()?;
        let (exit_r, exit_w) = pipe()?;
        let mut cmd = Command::new("slirp4netns");
        cmd.arg("--configure")
            .arg("--mtu=65520")
            .arg("--disable-host-loopback")
            .arg("--enable-sandbox")
            .arg("--enable-seccomp")
            .arg(format!("--ready-fd={}", ready_w.as_raw_fd()))
            .arg(format!("--exit-fd={}", exit_r.as_raw_fd()))
            .arg(pid.to_string())
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let keep = [ready_w.as_raw_fd(), exit_r.as_raw_fd()];
        // SAFETY: the pre_exec closure only calls fcntl (async-signal-safe) to
        // let the two pipe ends survive exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                for fd in keep {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(NetError::Missing),
            Err(e) => return Err(NetError::Failed(e.to_string())),
        };
        drop(ready_w);
        drop(exit_r);
        let mut net = StepNetwork {
            child,
            exit_w: Some(exit_w),
        };
        net.wait_ready(ready_r)?;
        Ok(net)
    }

    fn wait_ready(&mut self, ready: OwnedFd) -> Result<(), NetError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pfd = libc::pollfd {
            fd: ready.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NetError::Failed("not ready after 10 s".into()));
            }
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
            if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        let mut byte = [0u8; 1];
        let n = std::fs::File::from(ready).read(&mut byte).unwrap_or(0);
        if n == 1 && byte[0] == b'1' {
            return Ok(());
        }
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = self.child.wait();
        Err(NetError::Failed(
            err.lines().last().unwrap_or("exited").trim().to_string(),
        ))
    }
}

impl Drop for StepNetwork {
    fn drop(&mut self) {
        self.exit_w.take();
        // It exits on its own once the exit fd closes; do not wait long.
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
