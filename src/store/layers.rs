//! Putting layers into the store: any tar stream, compressed or not, becomes one
//! uncompressed, indexed blob.

use super::oci::Digest;
use super::{IoContext, Result, Store, StoreError};
use sha2::{Digest as _, Sha256};
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

/// A layer as the store keeps it: the digest of its uncompressed tar (its
/// diff ID, and its blob's name) and the tar's size. What images, build stages
/// and step-cache entries list; serialized as `[digest, size]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(from = "(Digest, u64)", into = "(Digest, u64)")]
pub struct Layer {
    /// Digest of the uncompressed tar.
    pub digest: Digest,
    /// Size of the uncompressed tar.
    pub size: u64,
}

impl From<(Digest, u64)> for Layer {
    fn from((digest, size): (Digest, u64)) -> Self {
        Layer { digest, size }
    }
}

impl From<Layer> for (Digest, u64) {
    fn from(layer: Layer) -> Self {
        (layer.digest, layer.size)
    }
}

impl From<&super::oci::Descriptor> for Layer {
    fn from(d: &super::oci::Descriptor) -> Self {
        Layer {
            digest: d.digest.clone(),
            size: d.size,
        }
    }
}

/// A layer stored in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLayer {
    /// Digest of the uncompressed tar (the diff ID, and the blob's name).
    pub digest: Digest,
    /// Size of the uncompressed tar.
    pub size: u64,
    /// The compressed form it arrived in, if any: (digest, size, compression).
    pub compressed: Option<(Digest, u64, Compression)>,
}

impl StoredLayer {
    /// The layer, without the form it arrived in.
    pub fn layer(&self) -> Layer {
        Layer {
            digest: self.digest.clone(),
            size: self.size,
        }
    }
}

/// The compression a layer stream arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Detects the compression from a stream's first bytes (layers come
    /// plain, gzip or zstd; anything else is stored as it is).
    pub fn sniff(head: &[u8]) -> Compression {
        match crate::compression::Format::sniff(head) {
            crate::compression::Format::Gzip => Compression::Gzip,
            crate::compression::Format::Zstd => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// Hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CompressedRecord {
    digest: Digest,
    size: u64,
    compression: Compression,
    /// The registry repository (`host/repo`) it was pulled from or pushed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<String>,
}

impl Store {
    /// Stores a layer from a tar stream that may be gzip- or zstd-compressed.
    ///
    /// `expected` is the digest of the stream as given (compressed or not), when the
    /// source names one: a mismatch is an error and nothing is stored. The layer's
    /// index is built before this returns, so a malformed tar is rejected here too.
    pub fn put_layer(&self, reader: impl Read, expected: Option<&Digest>) -> Result<StoredLayer> {
        let src_desc = PathBuf::from(expected.map_or("layer stream", |d| d.as_str()));
        let mut hashing = HashingReader {
            inner: BufReader::with_capacity(1 << 20, reader),
            hasher: Sha256::new(),
            size: 0,
        };
        let compression = {
            let head = hashing.inner.fill_buf().ctx("read", &src_desc)?;
            Compression::sniff(head)
        };
        let mut blob = self.blob_writer()?;
        let (decoded, what) = match compression {
            Compression::None => (io::copy(&mut hashing, &mut blob), "copy layer"),
            Compression::Gzip => {
                let mut dec = flate2::read::MultiGzDecoder::new(&mut hashing);
                (io::copy(&mut dec, &mut blob), "decompress gzip layer")
            }
            Compression::Zstd => (
                zstd::stream::read::Decoder::new(&mut hashing)
                    .and_then(|mut dec| io::copy(&mut dec, &mut blob)),
                "decompress zstd layer",
            ),
        };
        let decoded = match decoded {
            // The store cannot take it (ENOSPC, EIO): stop now, whatever is still coming.
            Err(source) if blob.write_error().is_some() => {
                return Err(StoreError::Write {
                    path: blob.path().to_path_buf(),
                    source,
                })
            }
            other => other.ctx(what, &src_desc),
        };
        // Whatever trails the compressed stream still counts toward its digest;
        // after a decoding error the rest is read too, so that a corrupted
        // stream is reported as the digest mismatch it is. (Sources of
        // untrusted length are bounded by their declared size; see
        // `crate::registry` and `crate::import`.)
        io::copy(&mut hashing, &mut io::sink()).ctx("read", &src_desc)?;
        let arrived = Digest::from_sha256(hashing.hasher.finalize().into());
        if let Some(expected) = expected {
            if expected != &arrived {
                return Err(StoreError::DigestMismatch {
                    path: src_desc,
                    expected: expected.clone(),
                    actual: arrived,
                });
            }
        }
        decoded?;
        let (digest, size) = blob.commit_sized(None)?;
        let compressed = match compression {
            Compression::None => None,
            c => Some((arrived, hashing.size, c)),
        };
        // A blob that is not a readable tar is not kept (nothing names it yet).
        let indexed = compressed
            .as_ref()
            .map_or(Ok(()), |(cdigest, csize, c)| {
                self.record_compressed_form(&digest, cdigest, *csize, *c, None)
            })
            .and_then(|()| self.ensure_layer_index(&digest));
        if let Err(e) = indexed {
            let _ = self.discard(std::slice::from_ref(&digest));
            return Err(e);
        }
        Ok(StoredLayer {
            digest,
            size,
            compressed,
        })
    }

    /// Records `compressed` (of `size` bytes) as the compressed form of the stored
    /// layer `layer`, replacing any earlier record: what the layer arrived in, or
    /// the form a push last sent, so a later push can find it in a registry
    /// without compressing again. `source` is the registry repository
    /// (`host/repo`) that has it, when known, for cross-repository mounts.
    pub fn record_compressed_form(
        &self,
        layer: &Digest,
        compressed: &Digest,
        size: u64,
        compression: Compression,
        source: Option<&str>,
    ) -> Result<()> {
        let record = CompressedRecord {
            digest: compressed.clone(),
            size,
            compression,
            source: source.map(str::to_string),
        };
        self.write_atomic(
            &self.compressed_record_path(layer),
            &serde_json::to_vec(&record).expect("serializes"),
        )
    }

    pub(super) fn compressed_record_path(&self, layer: &Digest) -> PathBuf {
        self.root()
            .join("d2v/compressed")
            .join(format!("{}.json", layer.hex()))
    }

    fn compressed_record(&self, layer: &Digest) -> Option<CompressedRecord> {
        let bytes = std::fs::read(self.compressed_record_path(layer)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The compressed form a stored layer arrived in (or was last pushed as).
    pub fn compressed_form(&self, layer: &Digest) -> Option<(Digest, u64, Compression)> {
        let r = self.compressed_record(layer)?;
        Some((r.digest, r.size, r.compression))
    }

    /// The registry repository (`host/repo`) known to hold the compressed form.
    pub fn compressed_source(&self, layer: &Digest) -> Option<String> {
        self.compressed_record(layer)?.source
    }
}
