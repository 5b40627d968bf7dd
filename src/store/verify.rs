//! Knowing that a stored blob still holds the bytes its digest names.
//!
//! Hashing a whole layer on every mount, pack or build step would cost as
//! much as reading it, so d2v keeps a *stamp* per verified blob in
//! `d2v/verified/<hex>`: the blob's device, inode, size, mtime and ctime as
//! they were when its bytes were last hashed (when it was written, by
//! [`Store::verify_blob`], or by `d2v check`). Any write to the file changes
//! its ctime (which, unlike mtime, cannot be set back from user space), so a
//! blob whose stat still matches its stamp has not been written since it was
//! hashed, and one that does not match is hashed again before it is used.
//!
//! This catches a blob changed through the file system (the usual way a
//! store is damaged: a stray write, a restored backup, a tool that edits in
//! place) for the price of one `stat` per layer. It cannot see bit rot under
//! an unchanged inode; `d2v check` hashes every blob for that.

use super::oci::Digest;
use super::{IoContext, Result, Store, StoreError};
use sha2::{Digest as _, Sha256};
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The buffer used when hashing files.
const HASH_BUF: usize = 1 << 20;

/// The stat fields a stamp records, as one line of text.
fn stamp_of(meta: &Metadata) -> String {
    format!(
        "{} {} {} {}.{} {}.{}\n",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

/// The SHA-256 digest and size of everything `reader` yields.
pub fn hash_reader(mut reader: impl Read) -> io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUF];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((Digest::from_sha256(hasher.finalize().into()), size))
}

/// The digest and size of the file at `path`.
pub fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    let file = File::open(path).ctx("open", path)?;
    hash_reader(file).ctx("read", path)
}

impl Store {
    fn stamp_path(&self, digest: &Digest) -> PathBuf {
        self.root().join("d2v/verified").join(digest.hex())
    }

    /// Records that the blob `digest`, whose stat is `meta`, was just hashed
    /// and matched. A stamp that cannot be written only costs a later re-hash.
    pub(super) fn record_verified(&self, digest: &Digest, meta: &Metadata) {
        let path = self.stamp_path(digest);
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        if std::fs::write(&tmp, stamp_of(meta)).is_err() || std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// Forgets that blob `digest` was verified (it is being removed).
    pub(super) fn forget_verified(&self, digest: &Digest) {
        let _ = std::fs::remove_file(self.stamp_path(digest));
    }

    /// Whether the blob is unchanged since it was last hashed.
    fn stamp_matches(&self, digest: &Digest, meta: &Metadata) -> bool {
        std::fs::read_to_string(self.stamp_path(digest)).is_ok_and(|s| s == stamp_of(meta))
    }

    /// Checks that blob `digest` holds the bytes its digest names: free when
    /// the blob is unchanged since it was last hashed (see the module
    /// documentation), a full read otherwise. A blob that does not match is
    /// [`StoreError::Damaged`].
    pub fn verify_blob(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob(digest.clone()))
            }
            Err(e) => return Err(e).ctx("stat", &path),
        };
        if self.stamp_matches(digest, &meta) {
            return Ok(());
        }
        self.rehash_blob(digest, &meta)
    }

    /// Hashes blob `digest` (whose stat was `meta` before reading) and stamps it
    /// when it matches.
    pub(super) fn rehash_blob(&self, digest: &Digest, meta: &Metadata) -> Result<()> {
        let path = self.blob_path(digest);
        let (actual, _) = hash_file(&path)?;
        if &actual != digest {
            self.forget_verified(digest);
            return Err(StoreError::Damaged {
                digest: digest.clone(),
                actual,
            });
        }
        // The stat from before the read: a write during it shows up next time.
        self.record_verified(digest, meta);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    #[test]
    fn a_changed_blob_is_noticed_and_an_unchanged_one_is_not_reread() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = store.put_blob(&vec![7u8; 100_000]).unwrap();
        assert!(
            store.stamp_path(&digest).is_file(),
            "a written blob is stamped"
        );
        store.verify_blob(&digest).unwrap();

        // Four bytes overwritten in place.
        let mut f = File::options()
            .write(true)
            .open(store.blob_path(&digest))
            .unwrap();
        f.seek(io::SeekFrom::Start(5000)).unwrap();
        f.write_all(b"evil").unwrap();
        drop(f);
        let err = store.verify_blob(&digest).unwrap_err();
        assert!(
            matches!(&err, StoreError::Damaged { digest: d, actual } if d == &digest && actual != &digest),
            "{err}"
        );
        assert!(err.to_string().contains("d2v check"), "{err}");

        // A blob without a stamp (an older store) is hashed once, then stamped.
        let other = store.put_blob(b"other").unwrap();
        std::fs::remove_file(store.stamp_path(&other)).unwrap();
        store.verify_blob(&other).unwrap();
        assert!(store.stamp_path(&other).is_file());
    }
}
