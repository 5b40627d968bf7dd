//! Pulling: a manifest (through indexes and manifest lists), its config and its
//! blobs into the store, every one checked against its digest.

use super::client::{client_error, retry, Target};
use super::manifest::{fetch_manifest, parse_document, Document};
use super::progress::Progress;
use super::{verification, Registry, RegistryError, Result};
use crate::store::oci::{
    Descriptor, Digest, Manifest, MAX_DOCUMENT_SIZE, MEDIA_TYPE_CONFIG, MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST,
};
use crate::store::{Image, SizedReader, Store, StoreError, StoredLayer};
use futures_util::{StreamExt, TryStreamExt as _};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use tokio_util::io::{StreamReader, SyncIoBridge};

/// The manifest media types d2v asks registries for.
const ACCEPT: &[&str] = &[
    MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
];

/// Nested indexes followed at most.
const MAX_INDEX_DEPTH: usize = 4;

/// A manifest whose config and blobs are now in the store.
#[derive(Clone, Debug)]
pub struct PulledManifest {
    /// The digest of the (platform) manifest, as the registry names it.
    pub digest: Digest,
    /// The digest of the index or manifest list the reference named, if it
    /// named one (then [`PulledManifest::digest`] is the linux/amd64 entry's).
    pub index_digest: Option<Digest>,
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest, byte for byte as the registry sent it.
    pub manifest_bytes: Vec<u8>,
    /// The config blob (also stored in the store).
    pub config: Vec<u8>,
    /// One entry per `manifest.layers` entry, in order.
    pub blobs: Vec<PulledBlob>,
}

impl PulledManifest {
    /// The digest the reference resolved to: the index's when it named one,
    /// else the manifest's (what `docker pull` prints as the digest).
    pub fn reference_digest(&self) -> &Digest {
        self.index_digest.as_ref().unwrap_or(&self.digest)
    }
}

/// One blob of a pulled manifest and where the store keeps it.
#[derive(Clone, Debug)]
pub struct PulledBlob {
    /// The manifest's descriptor of it.
    pub descriptor: Descriptor,
    /// How it is stored: a layer (tar, gzip or zstd media types) is stored
    /// uncompressed, so `stored.digest` is its diff ID and `stored.compressed`
    /// its registry digest; any other blob is stored as it is
    /// (`stored.digest == descriptor.digest`).
    pub stored: StoredLayer,
}

/// Whether `media_type` is an image layer (stored uncompressed, indexed).
fn is_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

/// Refuses manifests that are not container images, before any layer moves.
fn require_image(reference: &str, manifest: &Manifest) -> Result<()> {
    let config = manifest.config.media_type.as_str();
    if config == MEDIA_TYPE_CONFIG || config == MEDIA_TYPE_DOCKER_CONFIG {
        return Ok(());
    }
    let kind = manifest.artifact_type.as_deref().unwrap_or(config);
    Err(RegistryError::Unsupported {
        reference: reference.to_string(),
        message: format!("is not a container image (an artifact of type {kind})"),
    })
}

fn malformed(target: &Target, what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Unsupported {
        reference: target.name.clone(),
        message: format!("malformed {what}: {e}"),
    }
}

impl Registry {
    /// Pulls the image `reference` into `store` and names it `names` (the
    /// reference as written and its normalised form, see
    /// [`crate::source::reference::store_names`]; the reference itself when
    /// empty). Indexes and manifest lists resolve to their linux/amd64 entry.
    /// Every layer is checked against its compressed digest and the config's
    /// diff IDs before any name is written.
    pub fn pull_image(
        &self,
        store: &Store,
        reference: &str,
        names: &[String],
    ) -> Result<(Image, PulledManifest)> {
        let target = self.target(reference)?;
        let pulled = self.block_on(self.fetch(store, &target, require_image))?;
        let layers: Vec<StoredLayer> = pulled.blobs.iter().map(|b| b.stored.clone()).collect();
        if let Err(e) = crate::import::check_diff_ids(reference, &pulled.config, &layers) {
            // Nothing names them: they go now, not at the next prune.
            let mut stored: Vec<Digest> = layers.into_iter().map(|l| l.digest).collect();
            stored.push(pulled.manifest.config.digest.clone());
            let _ = store.discard(&stored);
            return Err(e.into());
        }
        let sized: Vec<_> = layers.iter().map(StoredLayer::layer).collect();
        let own = [reference.to_string()];
        let names = if names.is_empty() { &own[..] } else { names };
        let mut image = None;
        for name in names {
            image = Some(store.commit_image(name, &pulled.config, &sized)?);
        }
        Ok((image.expect("at least one name"), pulled))
    }

    /// Pulls the manifest `reference` (through an index to its linux/amd64
    /// entry) with its config and every blob it lists into `store`, naming
    /// nothing. Layers (tar/gzip/zstd media types) are stored uncompressed
    /// and indexed, any other blob as it is; see [`PulledBlob`]. The store's
    /// `d2v prune` removes these blobs unless something comes to refer to them.
    pub fn pull_manifest(&self, store: &Store, reference: &str) -> Result<PulledManifest> {
        let target = self.target(reference)?;
        self.block_on(self.fetch(store, &target, |_, _| Ok(())))
    }

    async fn fetch(
        &self,
        store: &Store,
        target: &Target,
        accept: fn(&str, &Manifest) -> Result<()>,
    ) -> Result<PulledManifest> {
        let quiet = self.options.quiet;
        let (digest, index_digest, manifest_bytes, manifest) =
            resolve_manifest(target, quiet).await?;
        accept(&target.name, &manifest)?;

        let config = retry("config", quiet, || fetch_config(target, &manifest.config)).await?;
        let stored = store.put_blob(&config)?;
        debug_assert_eq!(stored, manifest.config.digest);

        // Declared sizes are untrusted: they may add up past u64.
        let total = manifest
            .layers
            .iter()
            .fold(0u64, |sum, l| sum.saturating_add(l.size));
        let progress = Arc::new(Progress::new(
            "pulling",
            &target.name,
            manifest.layers.len(),
            total,
            quiet,
        ));
        progress.say(&format!(
            "pulling {} ({} blobs, {:.1} MiB, manifest {digest})",
            target.name,
            manifest.layers.len(),
            total as f64 / (1 << 20) as f64
        ));
        // A blob listed twice (identical empty layers) is fetched once.
        let mut unique: Vec<&Descriptor> = Vec::new();
        for desc in &manifest.layers {
            if !unique.iter().any(|d| d.digest == desc.digest) {
                unique.push(desc);
            }
        }
        let fetched = futures_util::stream::iter(unique.into_iter().map(|desc| {
            let progress = progress.clone();
            async move {
                let what = format!("blob {}", desc.digest);
                let stored = retry(&what, quiet, || {
                    fetch_blob(target, store, desc, progress.clone())
                })
                .await?;
                if let Some((compressed, size, compression)) = &stored.compressed {
                    // Where this form lives, so a push to the same registry
                    // can mount it instead of uploading it.
                    store.record_compressed_form(
                        &stored.digest,
                        compressed,
                        *size,
                        *compression,
                        Some(&target.repository()),
                    )?;
                }
                progress.blob_done(desc.digest.as_str(), desc.size, "pulled");
                Ok::<_, RegistryError>((desc.digest.clone(), stored))
            }
        }))
        .buffer_unordered(self.jobs())
        .collect::<Vec<_>>()
        .await;
        // Every transfer has ended (each is bounded by its declared size and
        // by the first write error); if one failed, none of them is kept.
        let (fetched, failed): (Vec<_>, Vec<_>) = fetched.into_iter().partition(|r| r.is_ok());
        let fetched: HashMap<Digest, StoredLayer> = fetched.into_iter().flatten().collect();
        if let Some(Err(e)) = failed.into_iter().next() {
            let mut stored: Vec<Digest> = fetched.into_values().map(|l| l.digest).collect();
            stored.push(manifest.config.digest.clone());
            let _ = store.discard(&stored);
            return Err(e);
        }
        let blobs = manifest
            .layers
            .iter()
            .map(|desc| PulledBlob {
                descriptor: desc.clone(),
                stored: fetched[&desc.digest].clone(),
            })
            .collect();

        Ok(PulledManifest {
            digest,
            index_digest,
            manifest,
            manifest_bytes,
            config,
            blobs,
        })
    }
}

/// Fetches the manifest `target` names, descending indexes to linux/amd64.
/// Returns (manifest digest, index digest, manifest bytes, manifest).
async fn resolve_manifest(
    target: &Target,
    quiet: bool,
) -> Result<(Digest, Option<Digest>, Vec<u8>, Manifest)> {
    let mut reference = target.reference.clone();
    let mut index_digest = None;
    for _ in 0..MAX_INDEX_DEPTH {
        let current = &reference;
        let bytes = retry("manifest", quiet, || {
            fetch_manifest(target, current, ACCEPT)
        })
        .await?;
        let digest = Digest::of(&bytes);
        if let Some(wanted) = reference.digest() {
            if wanted != digest.as_str() {
                return Err(RegistryError::Verification {
                    reference: target.name.clone(),
                    what: "manifest",
                    digest: wanted.to_string(),
                    message: format!("the registry sent content with digest {digest}"),
                });
            }
        }
        match parse_document(&bytes).map_err(|e| malformed(target, "manifest", e))? {
            Document::Index(index) => {
                let entry =
                    crate::import::pick_platform(&target.name, &index.manifests).map_err(|_| {
                        RegistryError::Unsupported {
                            reference: target.name.clone(),
                            message: "the image index has no linux/amd64 manifest".into(),
                        }
                    })?;
                index_digest.get_or_insert(digest);
                reference = reference.clone_with_digest(entry.digest.to_string());
            }
            Document::Manifest(manifest) => return Ok((digest, index_digest, bytes, *manifest)),
        }
    }
    Err(malformed(target, "index", "indexes nested too deeply"))
}

/// A blob stream as a blocking reader that ends where the registry's body
/// ends: the client's own digest check (which reports the digest of nothing
/// when read past its end) is dropped, since d2v hashes what arrives itself.
struct Body<R>(R);

impl<R: Read> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if super::is_digest_error(&e) => Ok(0),
            other => other,
        }
    }
}

/// Opens blob `desc` as a blocking reader of exactly its declared size
/// (see [`SizedReader`]); the body counts toward `progress`.
async fn open_blob(
    target: &Target,
    desc: &Descriptor,
    progress: Option<Arc<Progress>>,
) -> Result<SizedReader<Body<impl Read + Send + 'static>>> {
    let stream = target
        .client
        .pull_blob_stream(&target.reference, desc.digest.as_str())
        .await
        .map_err(|e| client_error(&target.name, "fetch blob", e))?;
    let stream = stream.inspect_ok(move |chunk| {
        if let Some(p) = &progress {
            p.add(chunk.len())
        }
    });
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    Ok(SizedReader::new(Body(reader), desc.size))
}

/// Fetches a config blob whole: at most [`MAX_DOCUMENT_SIZE`] bytes, exactly
/// its declared size, and matching its digest.
async fn fetch_config(target: &Target, desc: &Descriptor) -> Result<Vec<u8>> {
    if desc.size > MAX_DOCUMENT_SIZE {
        return Err(RegistryError::Unsupported {
            reference: target.name.clone(),
            message: format!(
                "the manifest declares a config of {} bytes; at most {MAX_DOCUMENT_SIZE} are accepted",
                desc.size
            ),
        });
    }
    let mut reader = open_blob(target, desc, None).await?;
    let name = target.name.clone();
    let config = tokio::task::spawn_blocking(move || {
        let mut config = Vec::new();
        reader.read_to_end(&mut config).map(|_| config)
    })
    .await
    .expect("the config task does not panic")
    .map_err(|error| RegistryError::Transfer {
        reference: name,
        context: format!("fetch config {}", desc.digest),
        error,
    })?;
    let actual = Digest::of(&config);
    if actual != desc.digest {
        return Err(RegistryError::Verification {
            reference: target.name.clone(),
            what: "config",
            digest: desc.digest.to_string(),
            message: format!(
                "the registry sent {} bytes with digest {actual}",
                config.len()
            ),
        });
    }
    Ok(config)
}

/// Streams one blob into the store: a layer through [`Store::put_layer`]
/// (uncompressed, indexed), anything else as it is; both check the digest,
/// and the stream must be exactly the declared size.
async fn fetch_blob(
    target: &Target,
    store: &Store,
    desc: &Descriptor,
    progress: Arc<Progress>,
) -> Result<StoredLayer> {
    let mut reader = open_blob(target, desc, Some(progress)).await?;
    let store = store.clone();
    let digest = desc.digest.clone();
    let layer = is_layer(&desc.media_type);
    let stored = tokio::task::spawn_blocking(move || {
        if layer {
            return store.put_layer(reader, Some(&digest));
        }
        let mut blob = store.blob_writer()?;
        if let Err(e) = std::io::copy(&mut reader, &mut blob) {
            let path = blob.path().to_path_buf();
            return Err(match blob.write_error() {
                Some(_) => StoreError::Write { path, source: e },
                None => StoreError::Io {
                    op: "download blob",
                    path: digest.as_str().into(),
                    source: e,
                },
            });
        }
        let (digest, size) = blob.commit_sized(Some(&digest))?;
        Ok(StoredLayer {
            digest,
            size,
            compressed: None,
        })
    })
    .await
    .expect("the blob task does not panic");
    stored.map_err(|e| verification(&target.name, "blob", &desc.digest, e))
}
