//! The runtime config model: what `docker run` takes from an image config
//! ([`RuntimeConfig`]), what its flags change for one run ([`RuntimeOverride`]),
//! and everything else a run tells init at boot ([`RunRequest`]). The JSON
//! format is documented in `docs/runtime-config.md`.

use crate::json::Value;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// Guest network settings for eth0 (QEMU user networking: 10.0.2.15/24,
/// gateway 10.0.2.2, DNS 10.0.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct NetworkConfig {
    /// `ADDRESS/PREFIX`.
    pub address: String,
    /// Default gateway.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub gateway: Option<String>,
    /// MTU, when not the driver's default.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub mtu: Option<u32>,
    /// DNS servers written to /etc/resolv.conf.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub dns: Vec<String>,
}

impl NetworkConfig {
    /// QEMU's user-mode network (slirp) as seen from the guest.
    pub fn qemu_user() -> NetworkConfig {
        NetworkConfig {
            address: "10.0.2.15/24".into(),
            gateway: Some("10.0.2.2".into()),
            mtu: None,
            dns: alloc::vec!["10.0.2.3".into()],
        }
    }
}

/// The image's runtime config, `/etc/d2v/config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct RuntimeConfig {
    /// ENTRYPOINT (exec form; shell form is already `["/bin/sh", "-c", "..."]`).
    pub entrypoint: Vec<String>,
    /// CMD: arguments after the entrypoint, or the command when there is none.
    pub cmd: Vec<String>,
    /// ENV, `KEY=VALUE`.
    pub env: Vec<String>,
    /// USER as written in the Dockerfile (`name`, `uid`, `name:group`, ...).
    pub user: String,
    /// USER's uid, resolved at pack time from the image's /etc/passwd.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub uid: Option<u32>,
    /// USER's primary gid, resolved at pack time.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub gid: Option<u32>,
    /// WORKDIR; empty means `/`.
    pub workdir: String,
    /// STOPSIGNAL (`SIGQUIT`, `QUIT`, `3`); empty means SIGTERM.
    pub stop_signal: String,
    /// EXPOSE, `PORT/PROTO`.
    pub exposed_ports: Vec<String>,
    /// LABELs.
    pub labels: BTreeMap<String, String>,
    /// VOLUMEs.
    pub volumes: Vec<String>,
    /// The guest hostname; empty means a run picks one (a random container ID).
    pub hostname: String,
    /// eth0 settings; none means only lo is brought up.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub network: Option<NetworkConfig>,
    /// Whether init writes /etc/hosts and /etc/hostname.
    pub write_hosts: bool,
    /// Whether init writes /etc/resolv.conf (only when DNS servers are known).
    pub write_resolv_conf: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            user: String::new(),
            uid: None,
            gid: None,
            workdir: String::new(),
            stop_signal: String::new(),
            exposed_ports: Vec::new(),
            labels: BTreeMap::new(),
            volumes: Vec::new(),
            hostname: String::new(),
            network: None,
            write_hosts: true,
            write_resolv_conf: true,
        }
    }
}

/// Per-run overrides, as `docker run` flags give them: `entrypoint`, `cmd`,
/// `user`, `workdir`, `hostname`, `network` replace; `env` entries are
/// appended (a later entry for the same key wins).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct RuntimeOverride {
    /// Replaces ENTRYPOINT.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces CMD.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub cmd: Option<Vec<String>>,
    /// `-e K=V`, appended to ENV.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub env: Vec<String>,
    /// `--user`.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub user: Option<String>,
    /// `--workdir`.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub workdir: Option<String>,
    /// `--hostname`.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub hostname: Option<String>,
    /// eth0 settings for this run.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub network: Option<NetworkConfig>,
}

/// A host directory shared into the guest (`-v HOST:GUEST[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct VolumeMount {
    /// The 9p mount tag the VMM gives the share.
    pub tag: String,
    /// Where it appears in the guest.
    pub target: String,
    /// Mounted read-only.
    #[cfg_attr(feature = "serde", serde(default))]
    pub read_only: bool,
}

/// What the host tells init at boot, over the channel, besides the image's
/// config: the overrides and how to wire the entrypoint's stdio.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct RunRequest {
    /// `docker run` flags over the image's config.
    pub overrides: RuntimeOverride,
    /// `-i`: the entrypoint's stdin comes from the host (else /dev/null).
    pub stdin: bool,
    /// `-t`: the entrypoint runs on a pseudo-terminal of this size.
    pub tty: bool,
    /// Terminal rows (with `tty`).
    pub rows: u16,
    /// Terminal columns (with `tty`).
    pub cols: u16,
    /// Shared host directories to mount.
    pub volumes: Vec<VolumeMount>,
    /// The hostname when neither the image's config nor `--hostname` names
    /// one (Docker's: the container ID's first 12 hex digits).
    pub hostname: String,
    /// Init's progress messages go to the host (shown with `--debug`).
    pub debug: bool,
    /// Between SIGTERM and SIGKILL for processes left when the main one exits.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub grace_ms: Option<u64>,
}

/// A config document's shape was wrong: which key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = core::result::Result<T, ConfigError>;

fn err<T>(msg: String) -> Result<T> {
    Err(ConfigError(msg))
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Arr(items) => items
            .iter()
            .map(|i| match i {
                Value::Str(s) => Ok(s.clone()),
                _ => err(format!("\"{key}\" must be an array of strings")),
            })
            .collect(),
        _ => err(format!("\"{key}\" must be an array of strings")),
    }
}

fn string(v: &Value, key: &str) -> Result<String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::Str(s) => Ok(s.clone()),
        _ => err(format!("\"{key}\" must be a string")),
    }
}

fn uint(v: &Value, key: &str, max: f64) -> Result<Option<u64>> {
    match v {
        Value::Null => Ok(None),
        Value::Num(n) if *n >= 0.0 && *n <= max && *n == (*n as u64) as f64 => Ok(Some(*n as u64)),
        _ => err(format!("\"{key}\" must be a non-negative integer")),
    }
}

fn u32_of(v: &Value, key: &str) -> Result<Option<u32>> {
    Ok(uint(v, key, u32::MAX as f64)?.map(|n| n as u32))
}

fn boolean(v: &Value, key: &str) -> Result<bool> {
    match v {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        _ => err(format!("\"{key}\" must be true or false")),
    }
}

fn members<'a>(v: &'a Value, what: &str) -> Result<&'a [(String, Value)]> {
    match v {
        Value::Obj(m) => Ok(m),
        _ => err(format!("{what} must be a JSON object")),
    }
}

fn labels(v: &Value) -> Result<BTreeMap<String, String>> {
    if *v == Value::Null {
        return Ok(BTreeMap::new());
    }
    members(v, "\"labels\"")?
        .iter()
        .map(|(k, v)| match v {
            Value::Str(s) => Ok((k.clone(), s.clone())),
            _ => err("\"labels\" values must be strings".to_string()),
        })
        .collect()
}

impl NetworkConfig {
    fn from_json(v: &Value) -> Result<Option<NetworkConfig>> {
        if *v == Value::Null {
            return Ok(None);
        }
        let mut n = NetworkConfig::default();
        for (k, v) in members(v, "\"network\"")? {
            match k.as_str() {
                "address" => n.address = string(v, "network.address")?,
                "gateway" => {
                    n.gateway = Some(string(v, "network.gateway")?).filter(|g| !g.is_empty())
                }
                "mtu" => n.mtu = u32_of(v, "network.mtu")?,
                "dns" => n.dns = strings(v, "network.dns")?,
                _ => {}
            }
        }
        if n.address.is_empty() {
            return err("\"network.address\" is required".to_string());
        }
        Ok(Some(n))
    }
}

impl RuntimeConfig {
    /// Reads a config document; unknown keys are ignored (newer d2v versions
    /// may add fields), wrongly typed known keys are errors.
    pub fn from_json(doc: &Value) -> Result<RuntimeConfig> {
        let mut c = RuntimeConfig::default();
        for (k, v) in members(doc, "the config")? {
            match k.as_str() {
                "entrypoint" => c.entrypoint = strings(v, k)?,
                "cmd" => c.cmd = strings(v, k)?,
                "env" => c.env = strings(v, k)?,
                "user" => c.user = string(v, k)?,
                "uid" => c.uid = u32_of(v, k)?,
                "gid" => c.gid = u32_of(v, k)?,
                "workdir" => c.workdir = string(v, k)?,
                "stop_signal" => c.stop_signal = string(v, k)?,
                "exposed_ports" => c.exposed_ports = strings(v, k)?,
                "labels" => c.labels = labels(v)?,
                "volumes" => c.volumes = strings(v, k)?,
                "hostname" => c.hostname = string(v, k)?,
                "network" => c.network = NetworkConfig::from_json(v)?,
                "write_hosts" => c.write_hosts = boolean(v, k)?,
                "write_resolv_conf" => c.write_resolv_conf = boolean(v, k)?,
                _ => {}
            }
        }
        Ok(c)
    }

    /// Applies a run's overrides: a new `user` drops the pack-time uid/gid.
    pub fn apply(&mut self, o: &RuntimeOverride) {
        if let Some(e) = &o.entrypoint {
            self.entrypoint = e.clone();
        }
        if let Some(c) = &o.cmd {
            self.cmd = c.clone();
        }
        self.env.extend(o.env.iter().cloned());
        if let Some(u) = &o.user {
            self.user = u.clone();
            self.uid = None;
            self.gid = None;
        }
        if let Some(w) = &o.workdir {
            self.workdir = w.clone();
        }
        if let Some(h) = &o.hostname {
            self.hostname = h.clone();
        }
        if let Some(n) = &o.network {
            self.network = Some(n.clone());
        }
    }

    /// ENTRYPOINT followed by CMD: the process's argv.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint
            .iter()
            .chain(self.cmd.iter())
            .cloned()
            .collect()
    }
}

fn opt_strings(v: &Value, key: &str) -> Result<Option<Vec<String>>> {
    Ok(match v {
        Value::Null => None,
        v => Some(strings(v, key)?),
    })
}

fn opt_string(v: &Value, key: &str) -> Result<Option<String>> {
    Ok(match v {
        Value::Null => None,
        v => Some(string(v, key)?),
    })
}

impl RuntimeOverride {
    /// Reads an override object.
    pub fn from_json(doc: &Value) -> Result<RuntimeOverride> {
        let mut o = RuntimeOverride::default();
        for (k, v) in members(doc, "\"overrides\"")? {
            match k.as_str() {
                "entrypoint" => o.entrypoint = opt_strings(v, k)?,
                "cmd" => o.cmd = opt_strings(v, k)?,
                "env" => o.env = strings(v, k)?,
                "user" => o.user = opt_string(v, k)?,
                "workdir" => o.workdir = opt_string(v, k)?,
                "hostname" => o.hostname = opt_string(v, k)?,
                "network" => o.network = NetworkConfig::from_json(v)?,
                _ => {}
            }
        }
        Ok(o)
    }

    /// Whether there is nothing to override.
    pub fn is_empty(&self) -> bool {
        *self == RuntimeOverride::default()
    }
}

impl VolumeMount {
    fn from_json(v: &Value) -> Result<VolumeMount> {
        let mut m = VolumeMount::default();
        for (k, v) in members(v, "a volume")? {
            match k.as_str() {
                "tag" => m.tag = string(v, "volumes.tag")?,
                "target" => m.target = string(v, "volumes.target")?,
                "read_only" => m.read_only = boolean(v, "volumes.read_only")?,
                _ => {}
            }
        }
        if m.tag.is_empty() || !m.target.starts_with('/') {
            return err("a volume needs a tag and an absolute target".to_string());
        }
        Ok(m)
    }
}

impl RunRequest {
    /// Reads a run request.
    pub fn from_json(doc: &Value) -> Result<RunRequest> {
        let mut r = RunRequest::default();
        for (k, v) in members(doc, "the run request")? {
            match k.as_str() {
                "overrides" => r.overrides = RuntimeOverride::from_json(v)?,
                "stdin" => r.stdin = boolean(v, k)?,
                "tty" => r.tty = boolean(v, k)?,
                "rows" => r.rows = uint(v, k, u16::MAX as f64)?.unwrap_or(0) as u16,
                "cols" => r.cols = uint(v, k, u16::MAX as f64)?.unwrap_or(0) as u16,
                "volumes" => match v {
                    Value::Null => {}
                    Value::Arr(items) => {
                        r.volumes = items
                            .iter()
                            .map(VolumeMount::from_json)
                            .collect::<Result<_>>()?
                    }
                    _ => return err("\"volumes\" must be an array".to_string()),
                },
                "hostname" => r.hostname = string(v, k)?,
                "debug" => r.debug = boolean(v, k)?,
                "grace_ms" => r.grace_ms = uint(v, k, u64::MAX as f64)?,
                _ => {}
            }
        }
        Ok(r)
    }
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
        let c = RuntimeConfig::from_json(&parse(IMAGE).unwrap()).unwrap();
        assert_eq!(c.argv(), vec!["/app/prog", "7"]);
        assert_eq!(c.env, vec!["A=1", "PATH=/bin"]);
        assert_eq!(
            (c.user.as_str(), c.uid, c.gid),
            ("app", Some(1000), Some(1000))
        );
        assert_eq!(c.workdir, "/srv");
        assert_eq!(c.stop_signal, "SIGQUIT");
        assert_eq!(c.exposed_ports, vec!["8080/tcp"]);
        assert_eq!(c.labels.get("x").map(String::as_str), Some("y"));
        assert_eq!(c.hostname, "box");
        assert!(c.write_hosts && !c.write_resolv_conf);
        assert_eq!(c.network, None);
    }

    #[test]
    fn overrides_replace_entrypoint_cmd_user_and_append_env() {
        let mut c = RuntimeConfig::from_json(&parse(IMAGE).unwrap()).unwrap();
        let o = br#"{"entrypoint":["/bin/sh","-c"],"cmd":["echo hi"],"env":["A=2"],"user":"0:0",
            "network":{"address":"10.0.2.15/24","gateway":"10.0.2.2","mtu":1400,"dns":["10.0.2.3"]}}"#;
        c.apply(&RuntimeOverride::from_json(&parse(o).unwrap()).unwrap());
        assert_eq!(c.argv(), vec!["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.env, vec!["A=1", "PATH=/bin", "A=2"]);
        assert_eq!((c.user.as_str(), c.uid, c.gid), ("0:0", None, None));
        let n = c.network.unwrap();
        assert_eq!(n.gateway.as_deref(), Some("10.0.2.2"));
        assert_eq!((n.mtu, n.dns), (Some(1400), vec!["10.0.2.3".to_string()]));
    }

    #[test]
    fn wrongly_typed_fields_are_errors() {
        for bad in [
            &br#"{"cmd":"echo"}"#[..],
            br#"{"uid":-1}"#,
            br#"{"entrypoint":[1]}"#,
            br#"{"network":{"gateway":"1.2.3.4"}}"#,
            br#"{"labels":{"a":1}}"#,
            br#"[]"#,
        ] {
            assert!(RuntimeConfig::from_json(&parse(bad).unwrap()).is_err());
        }
        assert!(RunRequest::from_json(
            &parse(br#"{"volumes":[{"tag":"v","target":"rel"}]}"#).unwrap()
        )
        .is_err());
        assert!(RunRequest::from_json(&parse(br#"{"rows":70000}"#).unwrap()).is_err());
    }
}
