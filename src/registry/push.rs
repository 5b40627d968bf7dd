//! Pushing: store blobs and a manifest to a registry, and store images as
//! gzip-compressed OCI images.

use super::client::{client_error, retry, Target};
use super::progress::Progress;
use super::{Registry, RegistryError, Result};
use crate::store::oci::{
    Descriptor, Digest, Manifest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST,
};
use crate::store::{Compression, IoContext, Store, StoreError};
use futures_util::{Stream, StreamExt, TryStreamExt};
use oci_client::errors::OciDistributionError;
use oci_client::Reference;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio_util::io::ReaderStream;

/// What a push did.
#[derive(Clone, Debug)]
pub struct PushReport {
    /// The reference pushed to.
    pub reference: String,
    /// The digest of the manifest pushed (pull `REPO@DIGEST` for exactly it).
    pub digest: Digest,
    /// The manifest pushed, byte for byte.
    pub manifest_bytes: Vec<u8>,
    /// Blobs uploaded.
    pub uploaded: Vec<Digest>,
    /// Blobs the registry already had, not uploaded again.
    pub existing: Vec<Digest>,
}

impl Registry {
    /// Pushes `manifest` to `reference` (a tag or digest reference). Its config
    /// and layers must be blobs in `store` (by their digests as the manifest
    /// names them); those the registry lacks are uploaded first (a HEAD tells),
    /// then the manifest, serialised as given, with its `mediaType` (OCI image
    /// manifest when unset) as content type.
    pub fn push_manifest(
        &self,
        store: &Store,
        manifest: &Manifest,
        reference: &str,
    ) -> Result<PushReport> {
        self.push_with(store, manifest, reference, &HashMap::new())
    }

    /// [`Registry::push_manifest`], taking blobs from `files` (digest → file)
    /// before the store.
    pub(super) fn push_with(
        &self,
        store: &Store,
        manifest: &Manifest,
        reference: &str,
        files: &HashMap<Digest, PathBuf>,
    ) -> Result<PushReport> {
        let target = self.target(reference)?;
        // Where each blob is here; one that is nowhere here must be in the
        // registry already (push_blob checks).
        let mut blobs: Vec<(Descriptor, Option<Upload>)> = Vec::new();
        for desc in manifest.layers.iter().chain([&manifest.config]) {
            if blobs.iter().any(|(d, _)| d.digest == desc.digest) {
                continue;
            }
            let path = match files.get(&desc.digest) {
                Some(p) => Some(Upload::Fresh(p.clone())),
                None if store.has_blob(&desc.digest) => {
                    Some(Upload::Stored(store.blob_path(&desc.digest)))
                }
                None => None,
            };
            blobs.push((desc.clone(), path));
        }
        let manifest_bytes = serde_json::to_vec(manifest).expect("a manifest serializes");
        let content_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| MEDIA_TYPE_MANIFEST.to_string());
        let quiet = self.options.quiet;
        let total = blobs.iter().map(|(d, _)| d.size).sum();
        let progress = Arc::new(Progress::new(
            "pushing",
            reference,
            blobs.len(),
            total,
            quiet,
        ));

        self.block_on(async {
            target
                .client
                .store_auth_if_needed(target.reference.resolve_registry(), &target.auth)
                .await;
            let outcomes = futures_util::stream::iter(blobs.iter().map(|(desc, path)| {
                let (target, progress) = (&target, progress.clone());
                async move {
                    let what = format!("blob {}", desc.digest);
                    let uploaded = retry(&what, quiet, || {
                        push_blob(target, desc, path.as_ref(), progress.clone())
                    })
                    .await?;
                    Ok::<_, RegistryError>((desc.digest.clone(), uploaded))
                }
            }))
            .buffer_unordered(self.jobs())
            .try_collect::<Vec<_>>()
            .await?;

            let body = &manifest_bytes;
            let content_type: http::HeaderValue = content_type
                .parse()
                .map_err(|_| RegistryError::Config(format!("bad media type {content_type:?}")))?;
            retry("manifest", quiet, || {
                let (target, content_type) = (&target, &content_type);
                async move {
                    target
                        .client
                        .push_manifest_raw(&target.reference, body.clone(), content_type.clone())
                        .await
                        .map_err(|e| client_error(reference, "push manifest", e))
                }
            })
            .await?;
            let (uploaded, existing): (Vec<_>, Vec<_>) =
                outcomes.into_iter().partition(|(_, up)| *up);
            Ok(PushReport {
                reference: reference.to_string(),
                digest: Digest::of(&manifest_bytes),
                manifest_bytes: manifest_bytes.clone(),
                uploaded: uploaded.into_iter().map(|(d, _)| d).collect(),
                existing: existing.into_iter().map(|(d, _)| d).collect(),
            })
        })
    }

    /// Pushes the store image `name` to `reference` as an OCI image whose
    /// layers are gzip-compressed (what every client reads); see
    /// [`Registry::push_gzipped`].
    pub fn push_image(&self, store: &Store, name: &str, reference: &str) -> Result<PushReport> {
        let image = store.image(name)?;
        let mut manifest = image.manifest.clone();
        let config = &image.manifest.config;
        manifest.config = Descriptor::new(MEDIA_TYPE_CONFIG, config.digest.clone(), config.size);
        manifest.annotations = Default::default();
        self.push_gzipped(store, &manifest, reference)
    }

    /// Pushes `manifest`, whose layers are uncompressed tar blobs in the store
    /// (the config may be any blob there), with every layer gzip-compressed.
    /// A layer whose recorded gzip form (what it was pulled as, or last pushed
    /// as) the registry already has, or can mount from another repository, is
    /// not compressed or sent again; a layer compressed here has its gzip form
    /// recorded for the next push.
    pub fn push_gzipped(
        &self,
        store: &Store,
        manifest: &Manifest,
        reference: &str,
    ) -> Result<PushReport> {
        let target = self.target(reference)?;
        // Held while they are read, whatever `d2v rm` and prune do meanwhile.
        let held: Vec<Digest> = manifest.layers.iter().map(|l| l.digest.clone()).collect();
        store.hold(&held)?;
        let scratch = store.scratch_dir()?;
        let mut files = HashMap::new();
        let mut layers = Vec::new();
        let mut compressed_here = Vec::new();
        for desc in &manifest.layers {
            if let Some((gz, size, Compression::Gzip)) = store.compressed_form(&desc.digest) {
                let source = store.compressed_source(&desc.digest);
                if self.block_on(exists_or_mount(&target, &gz, source.as_deref()))? {
                    layers.push(Descriptor::new(MEDIA_TYPE_LAYER_GZIP, gz, size));
                    continue;
                }
            }
            let path = scratch.path().join(format!("{}.gz", desc.digest.hex()));
            let (gz, size) = gzip_file(&store.blob_path(&desc.digest), &desc.digest, &path)?;
            files.insert(gz.clone(), path);
            layers.push(Descriptor::new(MEDIA_TYPE_LAYER_GZIP, gz.clone(), size));
            compressed_here.push((desc.digest.clone(), gz, size));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_MANIFEST.to_string()),
            layers,
            ..manifest.clone()
        };
        let report = self.push_with(store, &manifest, reference, &files)?;
        let repository = target.repository();
        for (layer, gz, size) in compressed_here {
            store.record_compressed_form(
                &layer,
                &gz,
                size,
                Compression::Gzip,
                Some(&repository),
            )?;
        }
        Ok(report)
    }
}

/// Whether the registry has blob `digest` in `target`'s repository.
async fn blob_exists(target: &Target, digest: &Digest) -> Result<bool> {
    target
        .client
        .store_auth_if_needed(target.reference.resolve_registry(), &target.auth)
        .await;
    target
        .client
        .blob_exists(&target.reference, digest.as_str())
        .await
        .map_err(|e| client_error(&target.name, "check blob", e))
}

/// Whether `target`'s repository has blob `digest`, mounting it from
/// `source` (`registry/repo`, where a record says it is) when that is another
/// repository of the same registry. A refused mount is no error: the blob is
/// then uploaded as usual.
async fn exists_or_mount(target: &Target, digest: &Digest, source: Option<&str>) -> Result<bool> {
    if blob_exists(target, digest).await? {
        return Ok(true);
    }
    let registry = target.reference.registry();
    let Some(repo) = source
        .and_then(|s| s.strip_prefix(registry))
        .and_then(|s| s.strip_prefix('/'))
        .filter(|repo| *repo != target.reference.repository())
    else {
        return Ok(false);
    };
    let from = Reference::with_tag(registry.to_string(), repo.to_string(), "latest".into());
    match target
        .client
        .mount_blob(&target.reference, &from, digest.as_str())
        .await
    {
        Ok(()) => Ok(blob_exists(target, digest).await?),
        Err(_) => Ok(false),
    }
}

/// Where a blob to upload is.
enum Upload {
    /// A store blob: hashed as it streams (see [`Verified`]).
    Stored(PathBuf),
    /// A file this push just wrote and hashed (a gzip form, an artifact).
    Fresh(PathBuf),
}

/// Uploads one blob unless the registry has it; returns whether it was
/// uploaded. A blob the registry lacks and that is not here (`None`) is
/// missing from the store.
async fn push_blob(
    target: &Target,
    desc: &Descriptor,
    upload: Option<&Upload>,
    progress: Arc<Progress>,
) -> Result<bool> {
    if blob_exists(target, &desc.digest).await? {
        progress.blob_done(desc.digest.as_str(), desc.size, "exists, skipped");
        return Ok(false);
    }
    let upload = upload.ok_or_else(|| StoreError::MissingBlob(desc.digest.clone()))?;
    let (Upload::Stored(path) | Upload::Fresh(path)) = upload;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|error| RegistryError::Transfer {
            reference: target.name.clone(),
            context: format!("open {}", path.display()),
            error,
        })?;
    let counter = progress.clone();
    let refused = Arc::new(OnceLock::new());
    let body = ReaderStream::with_capacity(file, 1 << 20);
    let body = match upload {
        Upload::Stored(_) => Verified {
            inner: body,
            hasher: Sha256::new(),
            size: 0,
            digest: desc.digest.clone(),
            declared: desc.size,
            refused: refused.clone(),
            ended: false,
        }
        .boxed(),
        Upload::Fresh(_) => body.boxed(),
    };
    let stream = body
        .map_err(OciDistributionError::IoError)
        .inspect_ok(move |chunk| counter.add(chunk.len()));
    let pushed = target
        .client
        .push_blob_stream(
            &target.reference,
            stream.boxed(),
            desc.digest.as_str(),
            Some(desc.size),
        )
        .await;
    if let Some(message) = refused.get() {
        return Err(RegistryError::Verification {
            reference: target.name.clone(),
            what: "blob",
            digest: desc.digest.to_string(),
            message: message.clone(),
        });
    }
    pushed.map_err(|e| client_error(&target.name, "upload blob", e))?;
    progress.blob_done(desc.digest.as_str(), desc.size, "pushed");
    Ok(true)
}

/// An upload body that hashes what it sends and ends in an error instead of
/// its last byte when the bytes are not the blob its digest names (or not
/// its declared size), so that a damaged store blob never reaches a registry.
/// The reason is left in `refused`.
struct Verified<S> {
    inner: S,
    hasher: Sha256,
    size: u64,
    digest: Digest,
    declared: u64,
    refused: Arc<OnceLock<String>>,
    ended: bool,
}

impl<S> Verified<S> {
    fn refuse(&self, why: String) -> Option<io::Result<bytes::Bytes>> {
        let message =
            format!("refusing to upload it: the store's copy {why} (run `d2v check --repair`)");
        let _ = self.refused.set(message.clone());
        Some(Err(io::Error::new(io::ErrorKind::InvalidData, message)))
    }
}

impl<S: Stream<Item = io::Result<bytes::Bytes>> + Unpin> Stream for Verified<S> {
    type Item = io::Result<bytes::Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        Poll::Ready(
            match futures_util::ready!(std::pin::Pin::new(&mut this.inner).poll_next(cx)) {
                Some(Ok(chunk)) => {
                    this.size += chunk.len() as u64;
                    if this.size > this.declared {
                        this.ended = true;
                        this.refuse(format!(
                            "is longer than the declared {} bytes",
                            this.declared
                        ))
                    } else {
                        this.hasher.update(&chunk);
                        Some(Ok(chunk))
                    }
                }
                Some(Err(e)) => Some(Err(e)),
                None => {
                    this.ended = true;
                    let actual =
                        Digest::from_sha256(std::mem::take(&mut this.hasher).finalize().into());
                    if actual != this.digest || this.size != this.declared {
                        this.refuse(format!("hashes to {actual} ({} bytes)", this.size))
                    } else {
                        None
                    }
                }
            },
        )
    }
}

/// Hashes and counts what is written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Gzips the store's layer `src` into `dest` on every core (deterministically:
/// see [`super::pgzip`]); returns the digest and size of the result. The
/// layer is hashed as it is compressed: one whose bytes are not its digest
/// `layer` is refused (it would be pushed under diff IDs it does not have).
fn gzip_file(src: &Path, layer: &Digest, dest: &Path) -> Result<(Digest, u64)> {
    let mut input = std::fs::File::open(src).ctx("open", src)?;
    let out = std::fs::File::create(dest).ctx("create", dest)?;
    let mut hashing = HashingWriter {
        inner: io::BufWriter::with_capacity(1 << 20, out),
        hasher: Sha256::new(),
        size: 0,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let read = super::pgzip::compress(&mut input, &mut hashing, threads).ctx("compress", src)?;
    hashing.flush().ctx("write", dest)?;
    let actual = Digest::from_sha256(read);
    if &actual != layer {
        return Err(StoreError::Damaged {
            digest: layer.clone(),
            actual,
        }
        .into());
    }
    Ok((
        Digest::from_sha256(hashing.hasher.finalize().into()),
        hashing.size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(
        bytes: &'static [u8],
        digest: Digest,
        declared: u64,
    ) -> (Vec<io::Result<bytes::Bytes>>, Option<String>) {
        let refused = Arc::new(OnceLock::new());
        let chunks = bytes.chunks(3).map(|c| Ok(bytes::Bytes::from_static(c)));
        let verified = Verified {
            inner: futures_util::stream::iter(chunks),
            hasher: Sha256::new(),
            size: 0,
            digest,
            declared,
            refused: refused.clone(),
            ended: false,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let items = rt.block_on(verified.collect::<Vec<_>>());
        (items, refused.get().cloned())
    }

    #[test]
    fn an_upload_ends_in_an_error_unless_its_bytes_are_its_digest() {
        let good = b"the blob's bytes";
        let (items, refused) = upload(good, Digest::of(good), good.len() as u64);
        assert!(items.iter().all(|i| i.is_ok()) && refused.is_none());

        let (items, refused) = upload(good, Digest::of(b"other"), good.len() as u64);
        assert!(items.last().unwrap().is_err(), "the last item is the error");
        assert!(refused.unwrap().contains(Digest::of(good).as_str()));

        let (items, refused) = upload(good, Digest::of(good), 4);
        assert_eq!(
            items.iter().filter(|i| i.is_ok()).count(),
            1,
            "stops past 4 bytes"
        );
        assert!(refused
            .unwrap()
            .contains("longer than the declared 4 bytes"));
    }
}
