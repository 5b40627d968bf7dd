//! The image config a build produces, in the JSON shape Docker and
//! `skopeo inspect --config` use, plus the value parsers for the config
//! instructions (ports, signals, durations).
//!
//! The OCI image spec's `config` object has no place for Docker's
//! `Healthcheck`, `OnBuild` and `Shell`, so [`ImageConfig`] keeps them next to
//! the OCI fields; [`ImageConfig::to_oci`] drops them for OCI-only consumers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Docker's default `PATH`, added to images whose base sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The shell for shell-form commands when no SHELL instruction set one.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into()]
}

/// An image's config blob (OCI image config plus Docker's extensions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time (RFC 3339); the planner leaves it unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author, set by the deprecated MAINTAINER instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (`amd64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// The execution parameters for containers (and d2v's init).
    #[serde(default)]
    pub config: ContainerConfig,
    /// The layers' diff IDs; the planner knows none yet.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per instruction, as Docker records them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            created: None,
            author: None,
            architecture: "amd64".into(),
            os: "linux".into(),
            config: ContainerConfig::default(),
            rootfs: RootFs::default(),
            history: Vec::new(),
        }
    }
}

/// The `config` object of an image config, with Docker's extra fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// USER: `name`, `uid`, `name:group` or `uid:gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// EXPOSE: `port/proto` keys.
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// ENV, in order, as `KEY=VALUE`.
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub env: Option<Vec<String>>,
    /// ENTRYPOINT as argv.
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD as argv.
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub cmd: Option<Vec<String>>,
    /// VOLUME paths.
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// WORKDIR (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// LABEL pairs.
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub labels: Option<BTreeMap<String, String>>,
    /// STOPSIGNAL as written (`SIGTERM`, `9`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// HEALTHCHECK (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// ONBUILD triggers, as written (Docker extension).
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub on_build: Option<Vec<String>>,
    /// SHELL (Docker extension).
    #[serde(default, skip_serializing_if = "none_or_empty")]
    pub shell: Option<Vec<String>>,
}

/// Docker writes its lists and maps with `omitempty`: an empty one is left out.
fn none_or_empty<T: IsEmpty>(v: &Option<T>) -> bool {
    v.as_ref().is_none_or(IsEmpty::is_empty)
}

/// Collections [`none_or_empty`] looks into.
trait IsEmpty {
    fn is_empty(&self) -> bool;
}

impl<T> IsEmpty for Vec<T> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

impl<K, V> IsEmpty for BTreeMap<K, V> {
    fn is_empty(&self) -> bool {
        BTreeMap::is_empty(self)
    }
}

/// The `{}` value of Docker's set-like maps (ports, volumes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// HEALTHCHECK settings; durations in nanoseconds as Docker stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", argv…]` or `["CMD-SHELL", command]`.
    #[serde(default)]
    pub test: Vec<String>,
    /// Time between checks, ns (0: inherit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// Time before a check is considered hung, ns (0: inherit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// Start-up grace period, ns (0: inherit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Time between checks during the start period, ns (0: inherit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// Consecutive failures before unhealthy (0: inherit).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The `rootfs` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Uncompressed layer digests, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// One `history` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When the step ran (RFC 3339); unset in plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction, in Docker's `created_by` form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Free text (`buildkit.dockerfile.v0` for Dockerfile steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step changed only the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

impl ImageConfig {
    /// Reads a Docker or OCI image config blob (unknown fields are ignored).
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The OCI view of this config (Healthcheck, OnBuild and Shell dropped).
    pub fn to_oci(&self) -> Result<oci_spec::image::ImageConfiguration, serde_json::Error> {
        serde_json::from_value(serde_json::to_value(self)?)
    }

    /// Reads an OCI image config (which has no Docker extensions).
    pub fn from_oci(oci: &oci_spec::image::ImageConfiguration) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::to_value(oci)?)
    }

    /// The value of `key` in Env, if set.
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.config.env.as_ref()?.iter().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            (k == key).then_some(v)
        })
    }
}

/// Sets `key=value` in an env list, replacing an earlier value in place as
/// Docker does (order of first definition is kept).
pub(crate) fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    for kv in env.iter_mut() {
        if kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key {
            *kv = entry;
            return;
        }
    }
    env.push(entry);
}

/// Expands an EXPOSE word (`80`, `80/udp`, `8000-8002/tcp`,
/// `[ip:][host:]port`) into Docker's `port/proto` keys, one per port.
pub fn parse_port_spec(spec: &str) -> Result<Vec<String>, String> {
    let bad = || format!("invalid port {spec:?}");
    let (port, proto) = match spec.rsplit_once('/') {
        Some((port, proto)) => (port, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto {proto:?} in port {spec:?}"));
    }
    // Host parts of `ip:host:container` mean nothing in an image; Docker
    // exposes the container port.
    let port = port.rsplit(':').next().unwrap_or(port);
    let parse = |s: &str| s.parse::<u16>().map_err(|_| bad());
    let (start, end) = match port.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(port)?;
            (p, p)
        }
    };
    if start > end {
        return Err(format!("invalid port range {port:?}: start is after end"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Linux signal names Docker accepts (without the `SIG` prefix).
const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN",
    "RTMAX",
];

/// Checks a STOPSIGNAL value the way Docker's `signal.ParseSignal` does: a
/// non-zero number, or a signal name with or without `SIG`, any case.
pub fn validate_signal(raw: &str) -> Result<(), String> {
    if let Ok(n) = raw.parse::<i64>() {
        return if n == 0 {
            Err(format!("invalid signal: {raw}"))
        } else {
            Ok(())
        };
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let known = SIGNALS.contains(&name)
        || name
            .strip_prefix("RTMIN+")
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (1..=15).contains(&n))
        || name
            .strip_prefix("RTMAX-")
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (1..=14).contains(&n));
    if known {
        Ok(())
    } else {
        Err(format!("invalid signal: {raw}"))
    }
}

/// Parses a Go duration (`30s`, `1m30s`, `1.5h`, `500ms`, `0`) into ns.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {s:?}");
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(total.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_expand_to_single_ports() {
        assert_eq!(
            parse_port_spec("8000-8002/udp").unwrap(),
            vec!["8000/udp", "8001/udp", "8002/udp"]
        );
        assert_eq!(parse_port_spec("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), vec!["53/udp"]);
        assert!(parse_port_spec("80x").is_err());
        assert!(parse_port_spec("70000").is_err());
        assert!(parse_port_spec("90-80").is_err());
        assert!(parse_port_spec("80/icmp").is_err());
    }

    #[test]
    fn signals_accept_names_and_numbers() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-1", "sigkill"] {
            assert!(validate_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["0", "SIGFOO", "RTMIN+16", ""] {
            assert!(validate_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_follow_go_syntax() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn oci_round_trip_keeps_standard_fields() {
        let mut c = ImageConfig::default();
        c.config.env = Some(vec!["A=1".into()]);
        c.config.shell = Some(vec!["/bin/bash".into()]);
        let oci = c.to_oci().unwrap();
        let back = ImageConfig::from_oci(&oci).unwrap();
        assert_eq!(back.config.env, c.config.env);
        assert_eq!(back.config.shell, None);
    }
}
