//! The runtime config: what `docker run` would take from an image config, written
//! as JSON to `/etc/d2v/config.json` in the image (and beside it) and read by
//! `d2v-init`, plus the per-boot overrides `d2v run` passes on the kernel command
//! line. The format is documented in `docs/runtime-config.md`.
//!
//! ```
//! use d2v::runtime_config::{RuntimeConfig, RuntimeOverride};
//! let mut cfg = RuntimeConfig::default();
//! cfg.entrypoint = vec!["/bin/echo".into()];
//! cfg.cmd = vec!["hello".into()];
//! let json = cfg.to_json();
//! assert_eq!(RuntimeConfig::from_json(json.as_bytes()).unwrap(), cfg);
//! let o = RuntimeOverride::docker_run(None, vec!["bye".into()], vec![], None);
//! assert!(o.to_kernel_arg().starts_with("d2v.run="));
//! ```

use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where `d2v pack` writes the config inside the image.
pub const CONFIG_PATH_IN_IMAGE: &str = "etc/d2v/config.json";

/// Guest network settings for eth0 (QEMU user networking uses 10.0.2.15/24,
/// gateway 10.0.2.2, DNS 10.0.2.3).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkConfig {
    /// `ADDRESS/PREFIX`.
    pub address: String,
    /// Default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// MTU, when not the driver's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// DNS servers written to /etc/resolv.conf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
}

impl NetworkConfig {
    /// QEMU's user-mode network (slirp) as seen from the guest.
    pub fn qemu_user() -> NetworkConfig {
        NetworkConfig {
            address: "10.0.2.15/24".into(),
            gateway: Some("10.0.2.2".into()),
            mtu: None,
            dns: vec!["10.0.2.3".into()],
        }
    }
}

/// The image's runtime config, as `d2v-init` reads it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(default)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// USER's primary gid, resolved at pack time from /etc/passwd and /etc/group.
    #[serde(skip_serializing_if = "Option::is_none")]
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
    /// The guest hostname; empty means `d2v`.
    pub hostname: String,
    /// eth0 settings; none means only lo is brought up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkConfig>,
    /// Whether init writes /etc/hosts.
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

impl RuntimeConfig {
    /// Builds the runtime config from an OCI image config; `passwd` and `group`
    /// are the image's /etc/passwd and /etc/group, used to resolve USER to
    /// uid/gid (left unset when USER names someone they do not list).
    pub fn from_image_config(
        image: &ImageConfiguration,
        passwd: Option<&[u8]>,
        group: Option<&[u8]>,
    ) -> RuntimeConfig {
        let mut rc = RuntimeConfig::default();
        if let Some(c) = image.config() {
            rc.entrypoint = c.entrypoint().clone().unwrap_or_default();
            rc.cmd = c.cmd().clone().unwrap_or_default();
            rc.env = c.env().clone().unwrap_or_default();
            rc.user = c.user().clone().unwrap_or_default();
            rc.workdir = c.working_dir().clone().unwrap_or_default();
            rc.stop_signal = c.stop_signal().clone().unwrap_or_default();
            rc.exposed_ports = c.exposed_ports().clone().unwrap_or_default();
            rc.exposed_ports.sort();
            rc.volumes = c.volumes().clone().unwrap_or_default();
            rc.volumes.sort();
            rc.labels = c.labels().clone().unwrap_or_default().into_iter().collect();
        }
        if let Some((uid, gid)) = resolve_user(&rc.user, passwd, group) {
            rc.uid = Some(uid);
            rc.gid = Some(gid);
        }
        rc
    }

    /// The JSON written to `/etc/d2v/config.json` (pretty, stable key order).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("RuntimeConfig serializes");
        s.push('\n');
        s
    }

    /// Reads a config written by [`RuntimeConfig::to_json`] (or by hand).
    pub fn from_json(bytes: &[u8]) -> Result<RuntimeConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

fn entries(file: &[u8]) -> impl Iterator<Item = Vec<&str>> {
    std::str::from_utf8(file)
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
}

/// Resolves a Docker USER value to (uid, gid) the way runc does; `None` when a
/// name is not in the files.
pub fn resolve_user(spec: &str, passwd: Option<&[u8]>, group: Option<&[u8]>) -> Option<(u32, u32)> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
        None => (spec, None),
    };
    let user = if user.is_empty() { "root" } else { user };
    let numeric = user.parse::<u32>().ok();
    let found = passwd.and_then(|p| {
        entries(p).filter(|f| f.len() >= 4).find_map(|f| {
            let uid = f[2].parse::<u32>().ok()?;
            let gid = f[3].parse::<u32>().ok()?;
            (f[0] == user || Some(uid) == numeric).then_some((uid, gid))
        })
    });
    let (uid, mut gid) = match (found, numeric) {
        (Some(ug), _) => ug,
        (None, Some(uid)) => (uid, 0),
        (None, None) if user == "root" => (0, 0),
        (None, None) => return None,
    };
    if let Some(g) = grp {
        let numeric = g.parse::<u32>().ok();
        let found = group.and_then(|f| {
            entries(f).filter(|f| f.len() >= 3).find_map(|f| {
                let gid = f[2].parse::<u32>().ok()?;
                (f[0] == g || Some(gid) == numeric).then_some(gid)
            })
        });
        gid = found.or(numeric)?;
    }
    Some((uid, gid))
}

/// Per-boot overrides, as `docker run` flags give them. `d2v run` passes them on
/// the kernel command line as `d2v.run=<base64url(JSON)>`; init applies them over
/// the image's config: `entrypoint`/`cmd`/`user`/`workdir`/`hostname`/`network`
/// replace, `env` entries are appended (later wins).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(default)]
pub struct RuntimeOverride {
    /// Replaces ENTRYPOINT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Replaces CMD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `-e K=V`, appended to ENV.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// `--user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `--workdir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// `--hostname`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// eth0 settings for this boot (`-p` turns on QEMU user networking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkConfig>,
}

/// Why a `d2v.run=` value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// Not `d2v.run=...`.
    #[error("not a d2v.run= kernel argument")]
    NotAnOverride,
    /// Not base64url.
    #[error("d2v.run= value is not base64url")]
    Base64,
    /// Not the expected JSON.
    #[error("d2v.run= value is not an override object: {0}")]
    Json(#[from] serde_json::Error),
}

impl RuntimeOverride {
    /// The overrides `docker run [--entrypoint X] [-e K=V]... [--user U] IMAGE [ARGS]`
    /// means: `--entrypoint` replaces ENTRYPOINT and clears CMD (an empty string
    /// clears ENTRYPOINT); ARGS replace CMD.
    pub fn docker_run(
        entrypoint: Option<String>,
        args: Vec<String>,
        env: Vec<String>,
        user: Option<String>,
    ) -> RuntimeOverride {
        let cmd = if entrypoint.is_some() || !args.is_empty() {
            Some(args)
        } else {
            None
        };
        RuntimeOverride {
            entrypoint: entrypoint.map(|e| if e.is_empty() { vec![] } else { vec![e] }),
            cmd,
            env,
            user,
            ..Default::default()
        }
    }

    /// Whether there is nothing to override.
    pub fn is_empty(&self) -> bool {
        *self == RuntimeOverride::default()
    }

    /// The kernel command-line word: `d2v.run=` + unpadded base64url of the
    /// compact JSON (no spaces or quotes, so no kernel-side escaping is needed).
    pub fn to_kernel_arg(&self) -> String {
        let json = serde_json::to_vec(self).expect("RuntimeOverride serializes");
        format!("d2v.run={}", base64url(&json))
    }

    /// Decodes a word written by [`RuntimeOverride::to_kernel_arg`].
    pub fn from_kernel_arg(word: &str) -> Result<RuntimeOverride, OverrideError> {
        let b64 = word
            .strip_prefix("d2v.run=")
            .ok_or(OverrideError::NotAnOverride)?;
        let bytes = base64url_decode(b64).ok_or(OverrideError::Base64)?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64url(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= (*b as u32) << (16 - 8 * i);
        }
        for i in 0..chunk.len() + 1 {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let v = B64.iter().position(|b| b == c)? as u32;
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
    const GROUP: &[u8] = b"root:x:0:\napp:x:1001:\nstaff:x:50:app\n";

    fn image(user: &str) -> ImageConfiguration {
        let config = ConfigBuilder::default()
            .entrypoint(vec!["/app/prog".to_string()])
            .cmd(vec!["0".to_string()])
            .env(vec!["A=1".to_string()])
            .user(user.to_string())
            .working_dir("/srv".to_string())
            .stop_signal("SIGQUIT".to_string())
            .exposed_ports(vec!["8080/tcp".to_string()])
            .volumes(vec!["/data".to_string()])
            .labels(
                [("k".to_string(), "v".to_string())]
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .unwrap();
        ImageConfigurationBuilder::default()
            .config(config)
            .build()
            .unwrap()
    }

    #[test]
    fn takes_every_runtime_field_from_the_image_config() {
        let rc = RuntimeConfig::from_image_config(&image("app"), Some(PASSWD), Some(GROUP));
        assert_eq!(rc.entrypoint, ["/app/prog"]);
        assert_eq!(rc.cmd, ["0"]);
        assert_eq!(rc.env, ["A=1"]);
        assert_eq!(
            (rc.user.as_str(), rc.uid, rc.gid),
            ("app", Some(1000), Some(1001))
        );
        assert_eq!(rc.workdir, "/srv");
        assert_eq!(rc.stop_signal, "SIGQUIT");
        assert_eq!(rc.exposed_ports, ["8080/tcp"]);
        assert_eq!(rc.volumes, ["/data"]);
        assert_eq!(rc.labels.get("k").map(String::as_str), Some("v"));
        let back = RuntimeConfig::from_json(rc.to_json().as_bytes()).unwrap();
        assert_eq!(back, rc);
    }

    #[test]
    fn resolves_users_like_runc() {
        assert_eq!(
            resolve_user("app:staff", Some(PASSWD), Some(GROUP)),
            Some((1000, 50))
        );
        assert_eq!(resolve_user("", Some(PASSWD), Some(GROUP)), Some((0, 0)));
        assert_eq!(resolve_user("77:88", None, None), Some((77, 88)));
        assert_eq!(resolve_user("ghost", Some(PASSWD), Some(GROUP)), None);
        let rc = RuntimeConfig::from_image_config(&image("ghost"), Some(PASSWD), None);
        assert_eq!((rc.uid, rc.gid), (None, None));
    }

    #[test]
    fn overrides_round_trip_through_the_kernel_command_line() {
        for o in [
            RuntimeOverride::docker_run(
                Some("/bin/sh".into()),
                vec![],
                vec!["A=b c\"d".into()],
                Some("0:0".into()),
            ),
            RuntimeOverride::docker_run(None, vec!["x y".into(), "é".into()], vec![], None),
            RuntimeOverride::default(),
        ] {
            let arg = o.to_kernel_arg();
            assert!(!arg.contains(' ') && !arg.contains('"'), "{arg}");
            assert_eq!(RuntimeOverride::from_kernel_arg(&arg).unwrap(), o);
        }
        assert!(RuntimeOverride::from_kernel_arg("d2v.run=%%").is_err());
        assert!(RuntimeOverride::from_kernel_arg("root=/dev/vda").is_err());
    }

    #[test]
    fn docker_run_semantics_for_entrypoint_and_args() {
        let o = RuntimeOverride::docker_run(Some("/bin/sh".into()), vec![], vec![], None);
        assert_eq!(o.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(o.cmd, Some(vec![]), "--entrypoint clears CMD");
        let o = RuntimeOverride::docker_run(None, vec![], vec![], None);
        assert!(o.is_empty());
        let o = RuntimeOverride::docker_run(Some(String::new()), vec!["ls".into()], vec![], None);
        assert_eq!(o.entrypoint, Some(vec![]));
        assert_eq!(o.cmd, Some(vec!["ls".to_string()]));
    }
}
