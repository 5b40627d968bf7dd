//! Importing from an OCI image layout directory.

use super::{check_diff_ids, discarding_on_error, io_err, malformed, ImportError, Result};
use crate::store::oci::{
    Descriptor, Digest, Index, Manifest, ANNOTATION_REF_NAME, MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_INDEX,
};
use crate::store::{Image, SizedReader, Store, StoreError};
use std::path::{Path, PathBuf};

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

/// Opens a regular file of the layout (following symlinks inside the layout's
/// own tree is fine: what is read is checked against digests and sizes).
fn open_regular(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::File::open(path).map_err(io_err("open", path))?;
    let meta = file.metadata().map_err(io_err("stat", path))?;
    if !meta.is_file() {
        return Err(ImportError::Io {
            op: "read",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a regular file"),
        });
    }
    Ok(file)
}

/// Reads a document (index, manifest, config) of the layout, capped at
/// `MAX_DOCUMENT_SIZE`.
fn read_document(path: &Path) -> Result<Vec<u8>> {
    Ok(crate::store::read_document(open_regular(path)?, path)?)
}

/// Reads a small blob of the layout and checks its digest.
fn read_verified(dir: &Path, digest: &Digest) -> Result<Vec<u8>> {
    let path = blob_path(dir, digest);
    let bytes = read_document(&path)?;
    let actual = Digest::of(&bytes);
    if &actual != digest {
        return Err(StoreError::DigestMismatch {
            path,
            expected: digest.clone(),
            actual,
        }
        .into());
    }
    Ok(bytes)
}

fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_INDEX || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

/// Picks the linux/amd64 manifest of a multi-platform index.
pub(crate) fn pick_platform<'a>(
    source_name: &str,
    manifests: &'a [Descriptor],
) -> Result<&'a Descriptor> {
    manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
        })
        .or_else(|| {
            // An index without platforms (a plain layout) with a single entry.
            (manifests.len() == 1 && manifests[0].platform.is_none()).then(|| &manifests[0])
        })
        .ok_or_else(|| malformed(source_name, "the image index has no linux/amd64 manifest"))
}

pub(super) fn import(store: &Store, dir: &Path, tag: Option<&str>, name: &str) -> Result<Image> {
    let source_name = format!("oci:{}", dir.display());
    let index_path = dir.join("index.json");
    let index_bytes = read_document(&index_path)?;
    let index: Index = serde_json::from_slice(&index_bytes)
        .map_err(|e| malformed(&source_name, format!("index.json: {e}")))?;

    let mut desc = match tag {
        Some(tag) => index
            .manifests
            .iter()
            .find(|d| {
                d.annotations
                    .get(ANNOTATION_REF_NAME)
                    .is_some_and(|n| n == tag)
            })
            .ok_or_else(|| {
                let names: Vec<_> = index
                    .manifests
                    .iter()
                    .filter_map(|d| d.ref_name())
                    .collect();
                malformed(
                    &source_name,
                    format!("no image tagged {tag:?} (tags: {names:?})"),
                )
            })?
            .clone(),
        None if index.manifests.len() == 1 => index.manifests[0].clone(),
        None => {
            let names: Vec<_> = index
                .manifests
                .iter()
                .filter_map(|d| d.ref_name())
                .collect();
            return Err(malformed(
                &source_name,
                format!(
                    "the layout holds {} images; name one with oci:DIR:TAG (tags: {names:?})",
                    index.manifests.len()
                ),
            ));
        }
    };

    // Nested indexes (multi-platform images): descend to the linux/amd64 manifest.
    for _ in 0..8 {
        if !is_index(&desc.media_type) {
            break;
        }
        let bytes = read_verified(dir, &desc.digest)?;
        let nested: Index = serde_json::from_slice(&bytes)
            .map_err(|e| malformed(&source_name, format!("index {}: {e}", desc.digest)))?;
        desc = pick_platform(&source_name, &nested.manifests)?.clone();
    }

    let manifest_bytes = read_verified(dir, &desc.digest)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| malformed(&source_name, format!("manifest {}: {e}", desc.digest)))?;
    let config = read_verified(dir, &manifest.config.digest)?;

    let layers = discarding_on_error(store, |stored| {
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            let path = blob_path(dir, &layer.digest);
            // Exactly the declared size: a blob that is a symlink to
            // /dev/zero, or longer than declared, stops one byte past it.
            let file = SizedReader::new(open_regular(&path)?, layer.size);
            let put = store.put_layer(file, Some(&layer.digest))?;
            stored.push(put.digest.clone());
            layers.push(put);
        }
        check_diff_ids(&source_name, &config, &layers)?;
        Ok::<_, ImportError>(layers)
    })?;
    let sized: Vec<_> = layers
        .iter()
        .map(crate::store::StoredLayer::layer)
        .collect();
    Ok(store.commit_image(name, &config, &sized)?)
}
