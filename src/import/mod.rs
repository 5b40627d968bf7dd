//! Getting base images into the store: `d2v import SOURCE --as NAME`.
//!
//! Sources:
//! * `oci:DIR[:TAG]`: an OCI image layout (what skopeo, umoci and buildah write);
//! * `docker-archive:FILE[:REF]`: a `docker save` tarball;
//! * `rootfs:PATH`: a plain root filesystem, as a (compressed) tarball or a directory;
//! * `docker-daemon:REF`: an image held by a Docker-API daemon (Docker, or
//!   `podman system service`). Parsed here; the daemon module exports it
//!   and streams the export through [`docker_archive::read`].
//!
//! Layers are verified against their digests and stored uncompressed and indexed.
//! Every document (index, manifest, config) is capped at
//! [`MAX_DOCUMENT_SIZE`](crate::store::oci::MAX_DOCUMENT_SIZE) and every layer
//! at the size its descriptor declares, so a layout whose blob is a symlink to
//! `/dev/zero` is refused, not read for ever. A failed import removes the
//! layers it stored (unless something else holds them).

pub(crate) mod docker_archive;
mod oci_layout;
mod rootfs;

pub(crate) use oci_layout::pick_platform;

use crate::store::{Image, Store, StoreError};
use std::path::{Path, PathBuf};

/// Errors from importing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The SOURCE string is not one d2v understands.
    #[error("unknown image source {0:?}: expected oci:DIR[:TAG], docker-archive:FILE[:REF], docker-daemon:REF or rootfs:PATH")]
    UnknownSource(String),
    /// The source is malformed.
    #[error("{source_name}: {message}")]
    Malformed {
        /// The source being imported.
        source_name: String,
        /// What is wrong with it.
        message: String,
    },
    /// The store refused something.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `docker-daemon:` source, which only the daemon module can read.
    #[error("docker-daemon:{0} is read through the Docker daemon, not imported from a file")]
    NeedsDaemon(String),
    /// Reading the source failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A `Result` with an [`ImportError`].
pub type Result<T, E = ImportError> = std::result::Result<T, E>;

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImportError {
    let path = path.to_path_buf();
    move |source| ImportError::Io { op, path, source }
}

pub(crate) fn malformed(source_name: &str, message: impl Into<String>) -> ImportError {
    ImportError::Malformed {
        source_name: source_name.to_string(),
        message: message.into(),
    }
}

/// A parsed SOURCE argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An OCI layout directory and an optional tag (`ref.name`).
    OciLayout(PathBuf, Option<String>),
    /// A `docker save` tarball and an optional `RepoTags` entry.
    DockerArchive(PathBuf, Option<String>),
    /// A root filesystem tarball or directory.
    Rootfs(PathBuf),
    /// An image reference in a Docker-API daemon.
    DockerDaemon(String),
}

impl std::str::FromStr for Source {
    type Err = ImportError;
    fn from_str(s: &str) -> Result<Source> {
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| ImportError::UnknownSource(s.to_string()))?;
        if rest.is_empty() {
            return Err(ImportError::UnknownSource(s.to_string()));
        }
        // A path may itself hold colons: take the longest prefix that exists.
        let split_ref = |rest: &str| -> (PathBuf, Option<String>) {
            if Path::new(rest).exists() {
                return (PathBuf::from(rest), None);
            }
            match rest.split_once(':') {
                Some((p, r)) if !r.is_empty() => (PathBuf::from(p), Some(r.to_string())),
                _ => (PathBuf::from(rest), None),
            }
        };
        match kind {
            "oci" => {
                let (p, r) = split_ref(rest);
                Ok(Source::OciLayout(p, r))
            }
            "docker-archive" => {
                let (p, r) = split_ref(rest);
                Ok(Source::DockerArchive(p, r))
            }
            "rootfs" => Ok(Source::Rootfs(PathBuf::from(rest))),
            "docker-daemon" => Ok(Source::DockerDaemon(rest.to_string())),
            _ => Err(ImportError::UnknownSource(s.to_string())),
        }
    }
}

/// Imports `source` into `store` under `name`.
pub fn import(store: &Store, source: &Source, name: &str) -> Result<Image> {
    crate::store::validate_name(name)?;
    match source {
        Source::OciLayout(dir, tag) => oci_layout::import(store, dir, tag.as_deref(), name),
        Source::DockerArchive(file, tag) => {
            docker_archive::import(store, file, tag.as_deref(), name)
        }
        Source::Rootfs(path) => rootfs::import(store, path, name),
        Source::DockerDaemon(reference) => Err(ImportError::NeedsDaemon(reference.clone())),
    }
}

/// Runs `body`, which records in its argument the layers it stores; when it
/// fails, those layers are removed again (unless something else holds them),
/// so a failed import leaves no uncompressed blob behind.
pub(crate) fn discarding_on_error<T, E>(
    store: &Store,
    body: impl FnOnce(&mut Vec<crate::store::oci::Digest>) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let mut stored = Vec::new();
    let result = body(&mut stored);
    if result.is_err() {
        let _ = store.discard(&stored);
    }
    result
}

/// Checks that the config's `rootfs.diff_ids` name exactly the layers stored.
pub(crate) fn check_diff_ids(
    source_name: &str,
    config: &[u8],
    layers: &[crate::store::StoredLayer],
) -> Result<()> {
    let summary: crate::store::oci::ConfigSummary = serde_json::from_slice(config)
        .map_err(|e| malformed(source_name, format!("image config is not valid JSON: {e}")))?;
    let stored: Vec<_> = layers.iter().map(|l| &l.digest).collect();
    let declared: Vec<_> = summary.rootfs.diff_ids.iter().collect();
    if stored != declared {
        return Err(malformed(
            source_name,
            format!(
                "the config's rootfs.diff_ids {declared:?} do not match the layers' uncompressed digests {stored:?}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(
            "oci:/x/y:latest".parse::<Source>().unwrap(),
            Source::OciLayout("/x/y".into(), Some("latest".into()))
        );
        assert_eq!(
            "oci:/nonexistent".parse::<Source>().unwrap(),
            Source::OciLayout("/nonexistent".into(), None)
        );
        assert_eq!(
            "docker-archive:/a.tar".parse::<Source>().unwrap(),
            Source::DockerArchive("/a.tar".into(), None)
        );
        assert_eq!(
            "rootfs:/r".parse::<Source>().unwrap(),
            Source::Rootfs("/r".into())
        );
        assert_eq!(
            "docker-daemon:app:1".parse::<Source>().unwrap(),
            Source::DockerDaemon("app:1".into())
        );
        assert!("tarball:/x".parse::<Source>().is_err());
        assert!("oci:".parse::<Source>().is_err());
        assert!("/just/a/path".parse::<Source>().is_err());
    }
}
