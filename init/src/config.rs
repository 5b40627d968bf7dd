//! The runtime config init reads from `/etc/d2v/config.json` and the per-boot
//! settings it reads from the kernel command line. The format is documented in
//! `docs/runtime-config.md`; d2v writes it with serde (`d2v::runtime_config`).

use crate::json::Value;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Guest network settings (eth0).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Network {
    /// `ADDRESS/PREFIX`, e.g. `10.0.2.15/24`.
    pub address: String,
    /// Default gateway, when any.
    pub gateway: Option<String>,
    /// Interface MTU, when not the driver's default.
    pub mtu: Option<u32>,
    /// DNS servers for /etc/resolv.conf.
    pub dns: Vec<String>,
}

/// What init runs and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub workdir: String,
    pub stop_signal: String,
    pub hostname: String,
    pub network: Option<Network>,
    pub write_hosts: bool,
    pub write_resolv_conf: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            user: String::new(),
            uid: None,
            gid: None,
            workdir: String::new(),
            stop_signal: String::new(),
            hostname: String::new(),
            network: None,
            write_hosts: true,
            write_resolv_conf: true,
        }
    }
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Arr(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(ToString::to_string)
                    .ok_or_else(|| alloc::format!("\"{key}\" must be an array of strings"))
            })
            .collect(),
        _ => Err(alloc::format!("\"{key}\" must be an array of strings")),
    }
}

fn string(v: &Value, key: &str) -> Result<String, String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::Str(s) => Ok(s.clone()),
        _ => Err(alloc::format!("\"{key}\" must be a string")),
    }
}

fn uint(v: &Value, key: &str) -> Result<Option<u32>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Num(n) if *n >= 0.0 && *n <= u32::MAX as f64 && *n == (*n as u32) as f64 => {
            Ok(Some(*n as u32))
        }
        _ => Err(alloc::format!("\"{key}\" must be a non-negative integer")),
    }
}

fn boolean(v: &Value, key: &str) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(alloc::format!("\"{key}\" must be true or false")),
    }
}

fn network(v: &Value) -> Result<Option<Network>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Obj(_) => {
            let address = string(v.get("address").unwrap_or(&Value::Null), "network.address")?;
            if address.is_empty() {
                return Err("\"network.address\" is required".to_string());
            }
            let gateway = string(v.get("gateway").unwrap_or(&Value::Null), "network.gateway")?;
            Ok(Some(Network {
                address,
                gateway: (!gateway.is_empty()).then_some(gateway),
                mtu: uint(v.get("mtu").unwrap_or(&Value::Null), "network.mtu")?,
                dns: strings(v.get("dns").unwrap_or(&Value::Null), "network.dns")?,
            }))
        }
        _ => Err("\"network\" must be an object".to_string()),
    }
}

impl Config {
    /// Reads a config document; unknown keys are ignored (newer d2v versions
    /// may add fields), wrongly typed known keys are errors.
    pub fn from_json(doc: &Value) -> Result<Config, String> {
        if !matches!(doc, Value::Obj(_)) {
            return Err("the config must be a JSON object".to_string());
        }
        let mut c = Config::default();
        c.apply(doc, false)?;
        Ok(c)
    }

    /// Applies a document's keys over this config. For an override
    /// (`is_override`), `env` is appended (later entries win, like `docker run
    /// -e`) and a new `user` drops the pack-time uid/gid.
    pub fn apply(&mut self, doc: &Value, is_override: bool) -> Result<(), String> {
        let Value::Obj(members) = doc else {
            return Err("the override must be a JSON object".to_string());
        };
        for (k, v) in members {
            match k.as_str() {
                "entrypoint" => self.entrypoint = strings(v, k)?,
                "cmd" => self.cmd = strings(v, k)?,
                "env" if is_override => self.env.extend(strings(v, k)?),
                "env" => self.env = strings(v, k)?,
                "user" => {
                    self.user = string(v, k)?;
                    if is_override {
                        self.uid = None;
                        self.gid = None;
                    }
                }
                "uid" => self.uid = uint(v, k)?,
                "gid" => self.gid = uint(v, k)?,
                "workdir" => self.workdir = string(v, k)?,
                "stop_signal" => self.stop_signal = string(v, k)?,
                "hostname" => self.hostname = string(v, k)?,
                "network" => self.network = network(v)?,
                "write_hosts" => self.write_hosts = boolean(v, k)?,
                "write_resolv_conf" => self.write_resolv_conf = boolean(v, k)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// ENTRYPOINT followed by CMD: the child's argv.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint
            .iter()
            .chain(self.cmd.iter())
            .cloned()
            .collect()
    }
}

/// What init takes from the kernel command line (`/proc/cmdline`). The kernel
/// keeps dotted parameters away from init's argv and environment, so these are
/// read from /proc.
#[derive(Debug, Default, PartialEq)]
pub struct Cmdline {
    /// Decoded JSON of `d2v.run=<base64url>`: per-boot overrides.
    pub run_override: Option<Vec<u8>>,
    /// `d2v.debug`: print boot timestamps.
    pub debug: bool,
    /// `d2v.exit_port=0x501`: write the exit code to QEMU's isa-debug-exit.
    pub exit_port: Option<u16>,
    /// `d2v.grace_ms=N`: how long leftovers get between SIGTERM and SIGKILL.
    pub grace_ms: Option<u64>,
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
    /// Parses a kernel command line. Returns an error for a `d2v.run=` value that
    /// is not base64.
    pub fn parse(text: &str) -> Result<Cmdline, String> {
        let mut c = Cmdline::default();
        for word in text.split_ascii_whitespace() {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            match k {
                "d2v.run" => {
                    let bytes = crate::base64::decode(v.as_bytes())
                        .ok_or_else(|| "d2v.run= is not valid base64".to_string())?;
                    c.run_override = Some(bytes);
                }
                "d2v.debug" => c.debug = v.is_empty() || v == "1" || v == "on",
                "d2v.exit_port" => c.exit_port = parse_u64(v).map(|p| p as u16),
                "d2v.grace_ms" => c.grace_ms = parse_u64(v),
                "root" => c.root = Some(v.to_string()),
                "rootfstype" => c.rootfstype = Some(v.to_string()),
                "init" => c.init = Some(v.to_string()),
                _ => {}
            }
        }
        Ok(c)
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
    use crate::json::parse;
    use alloc::vec;

    const IMAGE: &[u8] = br#"{
        "entrypoint": ["/app/prog"], "cmd": ["7"], "env": ["A=1", "PATH=/bin"],
        "user": "app", "uid": 1000, "gid": 1000, "workdir": "/srv",
        "stop_signal": "SIGQUIT", "exposed_ports": ["8080/tcp"], "labels": {"x": "y"},
        "volumes": ["/data"], "hostname": "box", "write_hosts": true,
        "write_resolv_conf": false, "future_field": {"ignored": [1]}
    }"#;

    #[test]
    fn reads_every_field_of_an_image_config() {
        let c = Config::from_json(&parse(IMAGE).unwrap()).unwrap();
        assert_eq!(c.argv(), vec!["/app/prog", "7"]);
        assert_eq!(c.env, vec!["A=1", "PATH=/bin"]);
        assert_eq!(
            (c.user.as_str(), c.uid, c.gid),
            ("app", Some(1000), Some(1000))
        );
        assert_eq!(c.workdir, "/srv");
        assert_eq!(signal_number(&c.stop_signal), Some(libc::SIGQUIT));
        assert_eq!(c.hostname, "box");
        assert!(c.write_hosts && !c.write_resolv_conf);
        assert_eq!(c.network, None);
    }

    #[test]
    fn overrides_replace_entrypoint_cmd_user_and_append_env() {
        let mut c = Config::from_json(&parse(IMAGE).unwrap()).unwrap();
        let o = br#"{"entrypoint":["/bin/sh","-c"],"cmd":["echo hi"],"env":["A=2"],"user":"0:0",
            "network":{"address":"10.0.2.15/24","gateway":"10.0.2.2","mtu":1400,"dns":["10.0.2.3"]}}"#;
        c.apply(&parse(o).unwrap(), true).unwrap();
        assert_eq!(c.argv(), vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.env, vec!["A=1", "PATH=/bin", "A=2"]);
        assert_eq!((c.user.as_str(), c.uid, c.gid), ("0:0", None, None));
        let n = c.network.unwrap();
        assert_eq!(n.address, "10.0.2.15/24");
        assert_eq!(n.gateway.as_deref(), Some("10.0.2.2"));
        assert_eq!(n.mtu, Some(1400));
        assert_eq!(n.dns, vec!["10.0.2.3"]);
    }

    #[test]
    fn wrongly_typed_fields_are_errors() {
        for bad in [
            &br#"{"cmd":"echo"}"#[..],
            br#"{"uid":-1}"#,
            br#"{"entrypoint":[1]}"#,
            br#"{"network":{"gateway":"1.2.3.4"}}"#,
            br#"[]"#,
        ] {
            assert!(Config::from_json(&parse(bad).unwrap()).is_err());
        }
    }

    #[test]
    fn decodes_the_kernel_command_line() {
        // base64url of {"cmd":["a b"]}
        let c = Cmdline::parse(
            "console=ttyS0 root=/dev/vda d2v.run=eyJjbWQiOlsiYSBiIl19 d2v.debug d2v.exit_port=0x501 d2v.grace_ms=500",
        )
        .unwrap();
        assert_eq!(c.run_override.as_deref(), Some(&br#"{"cmd":["a b"]}"#[..]));
        assert!(c.debug);
        assert_eq!(c.exit_port, Some(0x501));
        assert_eq!(c.grace_ms, Some(500));
        assert_eq!(c.root.as_deref(), Some("/dev/vda"));
        assert!(Cmdline::parse("d2v.run=***").is_err());
        assert_eq!(Cmdline::parse("quiet").unwrap(), Cmdline::default());
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
