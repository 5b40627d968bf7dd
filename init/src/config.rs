//! What init takes from the kernel command line, and Docker's signal names.
//! The runtime config itself is `d2v_runtime::config`, read from the image and
//! the host's run request.

use crate::channel::Transport;
use alloc::string::{String, ToString};

/// What init takes from the kernel command line (`/proc/cmdline`). The kernel
/// keeps dotted parameters away from init's argv and environment, so these are
/// read from /proc.
#[derive(Debug, Default, PartialEq)]
pub struct Cmdline {
    /// `d2v.debug`: print boot timestamps before the channel is up.
    pub debug: bool,
    /// `d2v.exit_port=0x501`: power off through QEMU's isa-debug-exit.
    pub exit_port: Option<u16>,
    /// `d2v.channel=vsock`: the host channel is vsock (Firecracker).
    pub channel: Transport,
    /// `root=`, for initrd mode.
    pub root: Option<String>,
    /// `rootfstype=`, for initrd mode.
    pub rootfstype: Option<String>,
    /// `init=`: what initrd mode execs in the new root (default `/sbin/d2v-init`).
    pub init: Option<String>,
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Cmdline {
    /// Parses a kernel command line; unknown words are ignored.
    pub fn parse(text: &str) -> Cmdline {
        let mut c = Cmdline::default();
        for word in text.split_ascii_whitespace() {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            match k {
                "d2v.debug" => c.debug = v.is_empty() || v == "1" || v == "on",
                "d2v.exit_port" => c.exit_port = parse_u64(v).map(|p| p as u16),
                "d2v.channel" if v == "vsock" => c.channel = Transport::Vsock,
                "root" => c.root = Some(v.to_string()),
                "rootfstype" => c.rootfstype = Some(v.to_string()),
                "init" => c.init = Some(v.to_string()),
                _ => {}
            }
        }
        c
    }
}

/// A signal number from a Docker STOPSIGNAL value (`SIGQUIT`, `QUIT`, `3`);
/// empty means SIGTERM.
pub fn signal_number(name: &str) -> Option<i32> {
    if name.is_empty() {
        return Some(libc::SIGTERM);
    }
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        let off = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+')?.parse().ok()?
        };
        return Some(libc::SIGRTMIN() + off);
    }
    Some(match bare {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => libc::SIGSTKFLT,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_kernel_command_line() {
        let c = Cmdline::parse(
            "console=ttyS0 root=/dev/vda d2v.debug d2v.exit_port=0x501 d2v.channel=vsock",
        );
        assert!(c.debug);
        assert_eq!(c.exit_port, Some(0x501));
        assert_eq!(c.channel, Transport::Vsock);
        assert_eq!(c.root.as_deref(), Some("/dev/vda"));
        assert_eq!(Cmdline::parse("quiet"), Cmdline::default());
    }

    #[test]
    fn names_signals_like_docker() {
        assert_eq!(signal_number("SIGQUIT"), Some(libc::SIGQUIT));
        assert_eq!(signal_number("quit"), Some(libc::SIGQUIT));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number(""), Some(libc::SIGTERM));
        assert_eq!(signal_number("SIGRTMIN+3"), Some(libc::SIGRTMIN() + 3));
        assert_eq!(signal_number("SIGNOPE"), None);
        assert_eq!(signal_number("99"), None);
    }
}
