//! The build executor's machinery: the pieces a Dockerfile step runs on.
//!
//! * [`sandbox`]: RUN confined as Docker confines a container, in a user
//!   namespace of its own, over a kernel overlayfs whose upper dir becomes the layer.
//! * [`entitlements`]: `--allow network.host` / `security.insecure`.
//! * [`executor`]: runs a plan's stages step by step on the store's layers.
//! * [`view`]: the read-only FUSE view of a layer stack, served by a helper process.
//! * [`layer`]: an overlay upper dir turned into a deterministic OCI layer tar.
//! * [`copy`]: COPY/ADD into an overlay's merged dir, every destination
//!   resolved inside the rootfs (`openat2(RESOLVE_IN_ROOT)`).
//! * [`dockerignore`]: Docker's `.dockerignore` rules.
//! * [`checksum`]: content checksums of COPY sources for the step cache.
//! * [`cache_share`]: the step cache shared through a registry (`--cache-to/--cache-from`).
//! * [`secret`]: `--secret` values; [`interrupt`]: Ctrl-C cancels a build.
//!
//! Each piece takes plain directory paths for the read-only lower layer, so it
//! works the same over a d2v-fuse mount and over a directory in a test.

pub mod archive;
pub mod cache_share;
pub mod checksum;
pub mod copy;
pub mod dest;
pub mod dockerignore;
pub mod entitlements;
pub mod executor;
pub mod git;
pub mod glob;
pub mod inroot;
pub mod interrupt;
pub mod layer;
pub mod overlay;
pub mod progress;
pub mod sandbox;
pub mod secret;
pub mod url;
pub mod user;
pub mod view;
