//! Writing blobs: hashed while written into scratch, renamed into place when
//! complete, and leased to this process from that moment (see [`super::lease`]).

use super::oci::Digest;
use super::{IoContext, Result, Store, StoreError};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// A blob being written. Nothing is visible in the store until [`BlobWriter::commit`].
pub struct BlobWriter {
    file: io::BufWriter<File>,
    tmp: tempfile::TempPath,
    hasher: Sha256,
    size: u64,
    store: Store,
    /// The first write error, so that a copy loop reading from a stream
    /// can stop at once instead of draining its source (see
    /// [`BlobWriter::write_error`]).
    failed: Option<io::ErrorKind>,
}

impl BlobWriter {
    pub(super) fn new(store: &Store) -> Result<BlobWriter> {
        let dir = store.scratch_parent();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{}-blob-", std::process::id()))
            .tempfile_in(&dir)
            .ctx("create temp file in", &dir)?;
        let (file, tmp) = tmp.into_parts();
        Ok(BlobWriter {
            file: io::BufWriter::with_capacity(1 << 20, file),
            tmp,
            hasher: Sha256::new(),
            size: 0,
            store: store.clone(),
            failed: None,
        })
    }

    /// The scratch file's path.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The kind of the first write that failed (ENOSPC, EIO, ...), if any:
    /// a reader feeding this writer must give up then, not read on.
    pub fn write_error(&self) -> Option<io::ErrorKind> {
        self.failed
    }

    /// Finishes the blob: flushes, checks the digest against `expected` when given,
    /// and renames it into `blobs/sha256/`. Returns its digest.
    pub fn commit(self, expected: Option<&Digest>) -> Result<Digest> {
        let (digest, _size) = self.commit_sized(expected)?;
        Ok(digest)
    }

    /// Like [`BlobWriter::commit`], also returning the size.
    pub fn commit_sized(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        let write_err = |source| StoreError::Write {
            path: self.tmp.to_path_buf(),
            source,
        };
        let file = self
            .file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all().map(|()| file))
            .map_err(write_err)?;
        let digest = Digest::from_sha256(self.hasher.finalize().into());
        if let Some(expected) = expected {
            if expected != &digest {
                return Err(StoreError::DigestMismatch {
                    path: self.tmp.to_path_buf(),
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        let dest = self.store.blob_path(&digest);
        {
            // Leased before it appears, so no prune can take it before it is named.
            let _lock = self.store.lock()?;
            self.store.lease()?.add([&digest])?;
            if dest.exists() {
                // Same content already stored; the scratch file is dropped.
                return Ok((digest, self.size));
            }
            self.tmp
                .persist(&dest)
                .map_err(|e| e.error)
                .ctx("rename blob into", &dest)?;
        }
        // Hashed while written: stamp it as verified (see super::verify).
        if let Ok(meta) = file.metadata() {
            self.store.record_verified(&digest, &meta);
        }
        Ok((digest, self.size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf).inspect_err(|e| {
            self.failed.get_or_insert(e.kind());
        })?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush().inspect_err(|e| {
            self.failed.get_or_insert(e.kind());
        })
    }
}
