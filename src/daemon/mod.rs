//! A Docker-API daemon (Docker, or Podman's `podman system service`) as a
//! place images come from and, optionally, where named stages are built.
//!
//! * [`connect`]: finding the daemon (`--docker-host`, `DOCKER_HOST`, the
//!   default sockets) and checking that it answers, with a short timeout.
//! * [`images`]: inspecting an image and importing its export (`docker save`)
//!   into the store, streamed through the docker-archive importer.
//! * [`source`]: the [`ImageSource`](crate::source::ImageSource) of kind
//!   `daemon` that the build's resolver asks for base images.
//! * [`context`]: the build context as a tar, `.dockerignore` applied.
//! * [`stage`]: `d2v build --stage-builder docker`, building a named stage with
//!   the daemon's build API and taking its layers back into the store.
//!
//! The rest of d2v is synchronous: each [`Daemon`] owns a small tokio runtime
//! and exposes blocking methods.

pub mod connect;
pub mod context;
pub mod images;
pub mod source;
pub mod stage;

pub use connect::{default_host, Daemon};
pub use source::DaemonSource;
pub use stage::DockerStageBuilder;

/// Errors from talking to a Docker-API daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No daemon answers at the address.
    #[error("no Docker-API daemon is reachable at {host}: {reason}")]
    Unreachable {
        /// The address tried (`unix:///var/run/docker.sock`, `tcp://…`).
        host: String,
        /// Why it is not reachable.
        reason: String,
    },
    /// The address is not one d2v can use.
    #[error(
        "unsupported Docker host {0:?}: expected unix://PATH, tcp://HOST:PORT or a socket path"
    )]
    BadHost(String),
    /// The daemon does not have the image.
    #[error("the Docker daemon at {host} has no image {reference:?}")]
    NoSuchImage {
        /// The daemon's address.
        host: String,
        /// The reference asked for.
        reference: String,
    },
    /// The daemon answered with an error.
    #[error("Docker daemon at {host}: {what}: {message}")]
    Api {
        /// The daemon's address.
        host: String,
        /// What d2v asked for.
        what: String,
        /// The daemon's message.
        message: String,
    },
    /// Importing what the daemon sent failed.
    #[error("importing from the Docker daemon: {0}")]
    Import(Box<crate::import::ImportError>),
    /// A local file operation failed.
    #[error("{0}")]
    Io(String),
}

impl From<crate::import::ImportError> for DaemonError {
    fn from(e: crate::import::ImportError) -> Self {
        DaemonError::Import(Box::new(e))
    }
}

impl From<crate::store::StoreError> for DaemonError {
    fn from(e: crate::store::StoreError) -> Self {
        DaemonError::Import(Box::new(e.into()))
    }
}
