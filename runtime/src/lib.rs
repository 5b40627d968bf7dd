//! The contract between d2v (the host) and `d2v-init` (the guest's PID 1), in
//! one `no_std + alloc` crate both link:
//!
//! * [`config`]: the image's runtime config (`/etc/d2v/config.json`), the
//!   per-run overrides `docker run` flags make, and the [`config::RunRequest`]
//!   a run sends at boot; read with this crate's own JSON parser ([`json`]),
//!   written by the host with serde (feature `serde`);
//! * [`user`]: Docker/runc's USER resolution against an image's own
//!   `/etc/passwd` and `/etc/group`;
//! * [`proto`]: the framed host–guest channel (stdio, exit code, signals,
//!   clock, terminal size) carried by virtio-console under QEMU and vsock
//!   under Firecracker.
//!
//! ```
//! use d2v_runtime::{config::RuntimeConfig, json, user};
//! let cfg = RuntimeConfig::from_json(&json::parse(br#"{"cmd":["sh"],"user":"app"}"#).unwrap()).unwrap();
//! assert_eq!(cfg.argv(), ["sh"]);
//! let u = user::resolve(&cfg.user, Some(b"app:x:1000:1000::/home/app:/bin/sh\n"), None).unwrap();
//! assert_eq!((u.uid, u.home.as_str()), (1000, "/home/app"));
//! ```

#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod config;
pub mod json;
pub mod proto;
pub mod user;
