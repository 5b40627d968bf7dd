//! Importing from a `docker save` tarball.

use super::{check_diff_ids, discarding_on_error, io_err, malformed, Result};
use crate::store::oci::Digest;
use crate::store::{Image, Store, StoreError};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct ArchiveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Resolves `rel` inside `root` (following the archive's own symlinks) and refuses
/// anything that ends up outside it.
fn inside(source_name: &str, root: &Path, rel: &str) -> Result<PathBuf> {
    let root = root.canonicalize().map_err(io_err("resolve", root))?;
    let path = root.join(rel);
    let real = path
        .canonicalize()
        .map_err(|_| malformed(source_name, format!("{rel:?} is missing from the archive")))?;
    if !real.starts_with(&root) {
        return Err(malformed(
            source_name,
            format!("{rel:?} points outside the archive"),
        ));
    }
    Ok(real)
}

/// Reads a document of the archive, capped at `MAX_DOCUMENT_SIZE`.
fn read_document(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(io_err("read", path))?;
    Ok(crate::store::read_document(file, path)?)
}

pub(super) fn import(store: &Store, file: &Path, tag: Option<&str>, name: &str) -> Result<Image> {
    let source_name = format!("docker-archive:{}", file.display());
    let f = std::fs::File::open(file).map_err(io_err("open", file))?;
    let (config, layers) = read(store, f, &source_name, tag)?;
    Ok(store.commit_image(name, &config, &layers)?)
}

/// An image's config bytes and its layers (digest, size), bottom first.
pub(crate) type ConfigAndLayers = (Vec<u8>, Vec<crate::store::Layer>);

/// Reads a `docker save` stream (a file, or a daemon's image export as it
/// arrives) into the store's blobs: returns the chosen image's config bytes and
/// its layers (digest, size), checked against the config's diff IDs, without
/// naming the image. `tag` picks an entry by `RepoTags` when the archive holds
/// several images.
pub(crate) fn read(
    store: &Store,
    stream: impl std::io::Read,
    source_name: &str,
    tag: Option<&str>,
) -> Result<ConfigAndLayers> {
    let scratch = store.scratch_dir()?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, stream));
    archive.set_preserve_permissions(false);
    archive.set_unpack_xattrs(false);
    // tar::Archive::unpack refuses entries that would land outside `scratch`.
    archive
        .unpack(scratch.path())
        .map_err(|e| malformed(source_name, format!("not a readable tar archive: {e}")))?;

    let manifest_path = inside(source_name, scratch.path(), "manifest.json")?;
    let manifest_bytes = read_document(&manifest_path)?;
    let entries: Vec<ArchiveEntry> = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| malformed(source_name, format!("manifest.json: {e}")))?;
    let entry = match tag {
        Some(tag) => entries
            .iter()
            .find(|e| e.repo_tags.iter().flatten().any(|t| t == tag))
            .ok_or_else(|| malformed(source_name, format!("no image tagged {tag:?}")))?,
        None if entries.len() == 1 => &entries[0],
        None => {
            return Err(malformed(
                source_name,
                format!(
                    "the archive holds {} images; name one with docker-archive:FILE:REPO:TAG",
                    entries.len()
                ),
            ))
        }
    };

    let config_path = inside(source_name, scratch.path(), &entry.config)?;
    let config = read_document(&config_path)?;
    // Newer archives name the config by its digest: check it when they do.
    if let Some(hex) = entry
        .config
        .strip_prefix("blobs/sha256/")
        .or_else(|| entry.config.strip_suffix(".json"))
    {
        if let Ok(expected) = format!("sha256:{hex}").parse::<Digest>() {
            let actual = Digest::of(&config);
            if actual != expected {
                return Err(StoreError::DigestMismatch {
                    path: config_path,
                    expected,
                    actual,
                }
                .into());
            }
        }
    }

    let layers = discarding_on_error(store, |stored| {
        let mut layers = Vec::with_capacity(entry.layers.len());
        for rel in &entry.layers {
            let path = inside(source_name, scratch.path(), rel)?;
            let file = std::fs::File::open(&path).map_err(io_err("open layer", &path))?;
            let put = store.put_layer(file, None)?;
            stored.push(put.digest.clone());
            layers.push(put);
        }
        // The diff IDs in the config are what vouch for the layers of a docker archive.
        check_diff_ids(source_name, &config, &layers)?;
        Ok::<_, super::ImportError>(layers)
    })?;
    let sized = layers
        .iter()
        .map(crate::store::StoredLayer::layer)
        .collect();
    Ok((config, sized))
}
