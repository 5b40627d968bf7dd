//! d2v: turn a Dockerfile into a bootable Firecracker microVM root filesystem.
//!
//! The `d2v` binary is a thin CLI over these modules:
//!
//! * [`store`]: the OCI image layout store (blobs, index, refs, layer indexes, step cache).
//! * [`import`]: getting base images in (`oci:`, `docker-archive:`, `docker-daemon:`, `rootfs:`).
//! * [`source`]: where base images are looked up: store, Docker daemon, registry.
//! * [`daemon`]: a Docker-API daemon as an image source and stage builder.
//! * [`build`]: the build executor's machinery (RUN sandbox, layer diff, COPY/ADD).
//! * [`compression`]: compressed input told by its magic bytes, and undone.
//! * [`dockerfile`]: the Dockerfile front end (parse, expand, plan, image config).
//! * [`mount`]: `d2v mount`'s server, an image's merged tree over FUSE.
//! * [`pack`]: an image of the store packed into a bootable ext4 image.
//! * [`runtime_config`]: the runtime config written into images for `d2v-init`.
//! * [`run`]: `d2v run`, booting an image under QEMU or Firecracker; the embedded init.
//! * [`units`]: sizes as written on a command line and as printed.
//! * [`userns`]: user namespaces: where RUN steps' ids live, and rootless d2v.

pub mod build;
pub mod compression;
pub mod daemon;
pub mod dockerfile;
pub mod import;
pub mod mount;
pub mod pack;
pub mod registry;
pub mod run;
pub mod runtime_config;
pub mod source;
pub mod store;
pub mod timefmt;
pub mod units;
pub mod userns;
