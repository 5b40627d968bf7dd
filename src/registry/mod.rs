//! OCI distribution registries: pulling images into the store, pushing store
//! images and VM artifacts out.
//!
//! The protocol is spoken by [`oci_client`]; this module decides what to fetch
//! and where it goes. The rest of d2v is synchronous, so a [`Registry`] owns a
//! small tokio runtime and every public function blocks.
//!
//! * [`Registry::pull_image`] (`d2v pull`, and `FROM` through
//!   [`RegistrySource`]): resolves a tag or digest, descends an OCI index or a
//!   Docker manifest list to linux/amd64, downloads the layers in parallel
//!   (bounded, retried on transient errors, progress on stderr), stores them
//!   uncompressed through [`Store::put_layer`] (which checks each layer's
//!   compressed digest), checks the config's diff IDs, and only then names the
//!   image. A failed pull leaves no name, at most unreferenced blobs that
//!   `d2v prune` removes.
//! * [`Registry::push_image`] (`d2v push`): gzip-compresses the store's
//!   uncompressed layers (or reuses a recorded compressed form the registry
//!   already has) and pushes an OCI image manifest.
//! * [`Registry::push_vm_artifact`] (`d2v pack --push`): the ext4 image and its
//!   `vm.json` as an OCI 1.1 artifact.
//! * [`Registry::push_manifest`] and [`Registry::pull_manifest`]: the generic
//!   pieces the two above are built on, for anything else that wants to move
//!   store blobs through a registry (the step cache).
//!
//! Connection rules follow Docker: HTTPS everywhere except loopback
//! registries (`localhost`, 127.0.0.0/8, `::1`) and those named with
//! `--insecure-registry`, which are spoken to in plain HTTP. Credentials come
//! from `--registry-auth` or the `auths` of the Docker config file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`); see
//! [`Credentials`].

mod artifact;
mod auth;
mod client;
mod manifest;
mod pgzip;
mod progress;
mod pull;
mod push;
mod source;

pub use artifact::{
    ARTIFACT_TYPE_VM, MEDIA_TYPE_EMPTY, MEDIA_TYPE_ROOTFS_EXT4, MEDIA_TYPE_VM_CONFIG,
};
pub use auth::{AuthEntry, Credentials};
pub use client::{is_loopback, Registry, RegistryOptions};
pub use pull::{PulledBlob, PulledManifest};
pub use push::PushReport;
pub use source::RegistrySource;

use crate::store::oci::Digest;
use crate::store::StoreError;

/// Errors from talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The reference is not a valid image reference.
    #[error("{0}")]
    Reference(String),
    /// The registry refused the credentials (or wants some).
    #[error(
        "{reference}: authentication to {registry} failed: {message} \
         (check --registry-auth or the auths in the Docker config.json)"
    )]
    Unauthorized {
        /// The reference being pulled or pushed.
        reference: String,
        /// The registry host.
        registry: String,
        /// What the registry said.
        message: String,
    },
    /// The registry does not have the manifest (or repository).
    #[error("{reference}: not found in the registry: {message}")]
    NotFound {
        /// The reference.
        reference: String,
        /// What the registry said.
        message: String,
    },
    /// A blob or manifest does not hash to the digest that names it.
    #[error("{reference}: {what} {digest} failed verification: {message}")]
    Verification {
        /// The reference.
        reference: String,
        /// `manifest`, `config` or `layer`.
        what: &'static str,
        /// The digest it should have.
        digest: String,
        /// What did not match.
        message: String,
    },
    /// The content is of a kind d2v does not handle (no linux/amd64 manifest,
    /// an artifact where an image was expected, ...).
    #[error("{reference}: {message}")]
    Unsupported {
        /// The reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// Any other failure of a registry request.
    #[error("{reference}: {context}: {}", chain(.error))]
    Client {
        /// The reference.
        reference: String,
        /// What was being done.
        context: String,
        /// The client's error (its causes are part of this error's message).
        error: oci_client::errors::OciDistributionError,
    },
    /// Reading or streaming a blob failed (network or local I/O).
    #[error("{reference}: {context}: {}", chain(.error))]
    Transfer {
        /// The reference.
        reference: String,
        /// What was being done.
        context: String,
        /// The error (its causes are part of this error's message).
        error: std::io::Error,
    },
    /// Bad registry options or Docker config (credentials, hosts).
    #[error("{0}")]
    Config(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A pulled image is inconsistent (config diff IDs against its layers).
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
}

/// A `Result` with a [`RegistryError`].
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    /// Whether trying again may help: connection failures, time-outs, 5xx and
    /// 429 answers, broken transfers. Digest mismatches and refusals are final.
    pub fn is_transient(&self) -> bool {
        use oci_client::errors::OciDistributionError as E;
        match self {
            RegistryError::Client { error, .. } => match error {
                E::RequestError(e) => {
                    e.is_timeout() || e.is_connect() || e.is_body() || e.is_request()
                }
                E::ServerError { code, .. } => *code >= 500 || *code == 429,
                E::IoError(_) => true,
                _ => false,
            },
            RegistryError::Transfer { error, .. } => is_transient_io(error),
            // A read from the network that broke (a local write failure is
            // StoreError::Write, final).
            RegistryError::Store(StoreError::Io { source, .. }) => is_transient_io(source),
            _ => false,
        }
    }
}

/// An error and its causes on one line, each cause once (HTTP client errors
/// repeat their URL at every level).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// Whether a failed transfer may go better next time: not when the content
/// was wrong (its digest, or a size other than declared).
fn is_transient_io(e: &std::io::Error) -> bool {
    !is_digest_error(e) && crate::store::SizeError::find(e).is_none()
}

/// Whether an I/O error carries the client's digest verification failure.
fn is_digest_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>())
}

/// Converts the store's digest mismatch into a verification error naming the reference.
fn verification(
    reference: &str,
    what: &'static str,
    digest: &Digest,
    e: StoreError,
) -> RegistryError {
    match e {
        StoreError::DigestMismatch {
            expected, actual, ..
        } => RegistryError::Verification {
            reference: reference.to_string(),
            what,
            digest: digest.to_string(),
            message: format!("expected {expected}, got {actual}"),
        },
        StoreError::Io { source, .. } if is_digest_error(&source) => RegistryError::Verification {
            reference: reference.to_string(),
            what,
            digest: digest.to_string(),
            message: source.to_string(),
        },
        other => other.into(),
    }
}
