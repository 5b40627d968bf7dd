//! The runtime config on the host: the model is `d2v-runtime`'s (shared with
//! the guest's init, which reads it with that crate's parser); here d2v builds
//! it from an OCI image config, writes it with serde as
//! `/etc/d2v/config.json`, and turns `docker run` flags into overrides. The
//! format is documented in `docs/runtime-config.md`.
//!
//! ```
//! use d2v::runtime_config::{RuntimeConfig, RuntimeConfigExt};
//! let mut cfg = RuntimeConfig::default();
//! cfg.entrypoint = vec!["/bin/echo".into()];
//! cfg.cmd = vec!["hello".into()];
//! let json = cfg.to_json();
//! assert_eq!(RuntimeConfig::parse_json(json.as_bytes()).unwrap(), cfg);
//! ```

use oci_spec::image::ImageConfiguration;

pub use d2v_runtime::config::{
    NetworkConfig, RunRequest, RuntimeConfig, RuntimeOverride, VolumeMount,
};

/// Where `d2v pack` writes the config inside the image.
pub const CONFIG_PATH_IN_IMAGE: &str = "etc/d2v/config.json";

/// Host-side constructors and serde (de)serialisation of [`RuntimeConfig`].
pub trait RuntimeConfigExt: Sized {
    /// Builds the runtime config from an OCI image config; `passwd` and
    /// `group` are the image's /etc/passwd and /etc/group, used to resolve
    /// USER to uid/gid (left unset when USER names someone they do not list).
    fn from_image_config(
        image: &ImageConfiguration,
        passwd: Option<&[u8]>,
        group: Option<&[u8]>,
    ) -> Self;
    /// The JSON written to `/etc/d2v/config.json` (pretty, stable key order).
    fn to_json(&self) -> String;
    /// Reads a config written by [`RuntimeConfigExt::to_json`] (or by hand).
    fn parse_json(bytes: &[u8]) -> Result<Self, serde_json::Error>;
}

impl RuntimeConfigExt for RuntimeConfig {
    fn from_image_config(
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

    fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("RuntimeConfig serializes");
        s.push('\n');
        s
    }

    fn parse_json(bytes: &[u8]) -> Result<RuntimeConfig, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Resolves a Docker USER value to (uid, gid) with the guest's resolver
/// (`d2v_runtime::user`, runc's rules); `None` when a name is not in the files.
pub fn resolve_user(spec: &str, passwd: Option<&[u8]>, group: Option<&[u8]>) -> Option<(u32, u32)> {
    d2v_runtime::user::resolve(spec, passwd, group)
        .ok()
        .map(|u| (u.uid, u.gid))
}

/// The overrides `docker run [--entrypoint X] [-e K=V]... [--user U] IMAGE
/// [ARGS]` means: `--entrypoint` replaces ENTRYPOINT and clears CMD (an empty
/// string clears ENTRYPOINT); ARGS replace CMD.
pub fn docker_run_overrides(
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

#[cfg(test)]
mod tests {
    use super::*;
    use d2v_runtime::json;
    use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};
    use proptest::prelude::*;

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
        let back = RuntimeConfig::parse_json(rc.to_json().as_bytes()).unwrap();
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
    fn docker_run_semantics_for_entrypoint_and_args() {
        let o = docker_run_overrides(Some("/bin/sh".into()), vec![], vec![], None);
        assert_eq!(o.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(o.cmd, Some(vec![]), "--entrypoint clears CMD");
        assert!(docker_run_overrides(None, vec![], vec![], None).is_empty());
        let o = docker_run_overrides(Some(String::new()), vec!["ls".into()], vec![], None);
        assert_eq!(o.entrypoint, Some(vec![]));
        assert_eq!(o.cmd, Some(vec!["ls".to_string()]));
    }

    // The contract: what the host writes with serde, the guest's own parser
    // reads back to the same value.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9_=/ .-]{0,12}",
            any::<String>().prop_map(|s| s.chars().take(12).collect()),
        ]
    }

    fn strings() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(text(), 0..4)
    }

    fn network() -> impl Strategy<Value = Option<NetworkConfig>> {
        prop::option::of(
            (
                "[0-9.]{1,15}/[0-9]{1,2}",
                prop::option::of(text()),
                prop::option::of(any::<u32>()),
                strings(),
            )
                .prop_map(|(address, gateway, mtu, dns)| NetworkConfig {
                    address,
                    gateway: gateway.filter(|g| !g.is_empty()),
                    mtu,
                    dns,
                }),
        )
    }

    fn config() -> impl Strategy<Value = RuntimeConfig> {
        (
            (
                strings(),
                strings(),
                strings(),
                text(),
                prop::option::of(any::<u32>()),
                prop::option::of(any::<u32>()),
            ),
            (
                text(),
                text(),
                strings(),
                prop::collection::btree_map(text(), text(), 0..3),
                strings(),
            ),
            (text(), network(), any::<bool>(), any::<bool>()),
        )
            .prop_map(|(a, b, c)| RuntimeConfig {
                entrypoint: a.0,
                cmd: a.1,
                env: a.2,
                user: a.3,
                uid: a.4,
                gid: a.5,
                workdir: b.0,
                stop_signal: b.1,
                exposed_ports: b.2,
                labels: b.3,
                volumes: b.4,
                hostname: c.0,
                network: c.1,
                write_hosts: c.2,
                write_resolv_conf: c.3,
            })
    }

    fn request() -> impl Strategy<Value = RunRequest> {
        (
            (
                prop::option::of(strings()),
                prop::option::of(strings()),
                strings(),
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(text()),
                network(),
            ),
            (
                any::<bool>(),
                any::<bool>(),
                any::<u16>(),
                any::<u16>(),
                any::<bool>(),
                prop::option::of(0u64..1 << 40),
            ),
            prop::collection::vec((text(), "/[a-z]{0,8}", any::<bool>()), 0..3),
            text(),
        )
            .prop_map(|(o, r, v, hostname)| RunRequest {
                hostname,
                overrides: RuntimeOverride {
                    entrypoint: o.0,
                    cmd: o.1,
                    env: o.2,
                    user: o.3,
                    workdir: o.4,
                    hostname: o.5,
                    network: o.6,
                },
                stdin: r.0,
                tty: r.1,
                rows: r.2,
                cols: r.3,
                debug: r.4,
                grace_ms: r.5,
                volumes: v
                    .into_iter()
                    .map(|(tag, target, read_only)| VolumeMount {
                        tag: format!("t{tag}"),
                        target,
                        read_only,
                    })
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn the_guest_reads_what_the_host_writes(c in config()) {
            let pretty = c.to_json();
            let doc = json::parse(pretty.as_bytes()).unwrap();
            prop_assert_eq!(RuntimeConfig::from_json(&doc).unwrap(), c.clone());
            let compact = serde_json::to_vec(&c).unwrap();
            prop_assert_eq!(RuntimeConfig::from_json(&json::parse(&compact).unwrap()).unwrap(), c);
        }

        #[test]
        fn the_guest_reads_the_run_request_the_host_sends(r in request()) {
            let bytes = serde_json::to_vec(&r).unwrap();
            let back = RunRequest::from_json(&json::parse(&bytes).unwrap()).unwrap();
            prop_assert_eq!(back, r);
        }
    }
}
