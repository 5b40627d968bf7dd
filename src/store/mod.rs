//! The d2v store: an OCI image layout directory plus what OCI has no place for.
//!
//! ```text
//! $D2V_HOME/
//!   oci-layout, index.json        the OCI layout; index.json names images by
//!   blobs/sha256/<hex>            `org.opencontainers.image.ref.name`
//!   d2v/lock                      flock guarding every change to the store
//!   d2v/leases/<pid>-<start>-<n>  what a running process wrote or uses (see [`lease`])
//!   d2v/layers/<hex>.idx          the layer index of each (uncompressed) layer blob
//!   d2v/verified/<hex>            when a blob was last hashed (see [`Store::verify_blob`])
//!   d2v/compressed/<hex>.json     the compressed form a layer arrived in (or was last
//!                                 pushed as) and the repository holding it, for pushing
//!   d2v/cache/<key>.json          the step cache: what each build step produced
//!   d2v/tmp/<pid>-<n>-…/          per-process scratch (0700); renamed into place when complete
//! ```
//!
//! Every layer is kept as one uncompressed tar blob, so a layer's digest is its
//! diff ID and the store's images are ordinary OCI images that skopeo and umoci
//! read. Blobs are written to scratch, hashed while written, and renamed into
//! place only when complete; `index.json` is replaced atomically. So an
//! interrupted write leaves at most unreferenced scratch that [`Store::prune`]
//! removes, never a blob or a name that a later run would trust. What a running
//! process has written but not yet named is protected from a concurrent prune
//! by its lease.

mod blobs;
mod cache;
mod cache_share;
mod check;
mod gc;
mod images;
mod layer_index;
mod layers;
pub mod lease;
mod lock;
pub mod oci;
mod scratch;
mod sized;
mod verify;

pub use blobs::BlobWriter;
pub use cache::{CacheEntry, CacheKey};
pub use cache_share::{CacheConfig, MEDIA_TYPE_CACHE_CONFIG};
pub use check::{CheckOptions, CheckReport, Finding};
pub use gc::PruneReport;
pub use images::{validate_name, ExternalImage, Image, ImageSummary};
pub use layers::{Compression, Layer, StoredLayer};
pub use lock::StoreLock;
pub use scratch::remove_scratch;
pub use sized::{SizeError, SizedReader};
pub use verify::{hash_file, hash_reader};

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use oci::Digest;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation on a store path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing into the store failed (ENOSPC, EIO, ...): what was being
    /// stored is abandoned at once.
    #[error("writing {path}: {source}")]
    Write {
        /// The scratch file being written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A JSON document in the store could not be read.
    #[error("malformed {what} {path}: {source}")]
    Json {
        /// Which document.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// No image has that name.
    #[error("no image named {0:?} in the store (see `d2v images`)")]
    ImageNotFound(String),
    /// A blob's content does not hash to its digest.
    #[error("blob {path}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Where the blob came from.
        path: PathBuf,
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },
    /// A blob the store references is missing.
    #[error("missing blob {0} (the store is damaged; re-import the image)")]
    MissingBlob(Digest),
    /// A stored blob no longer holds the bytes its digest names.
    #[error(
        "blob {digest} is damaged: its bytes hash to {actual} \
         (run `d2v check --repair`, then pull, import or build the image again)"
    )]
    Damaged {
        /// The blob's name.
        digest: Digest,
        /// What its bytes hash to now.
        actual: Digest,
    },
    /// A manifest, index or config larger than d2v reads.
    #[error("{what}: larger than {limit} bytes, the most a manifest or config may have")]
    TooLarge {
        /// What was being read.
        what: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// An image whose manifest, config or layers cannot be read.
    #[error("image {name:?} is damaged: {source}")]
    BadImage {
        /// The image's name.
        name: String,
        /// What is wrong.
        source: Box<StoreError>,
    },
    /// An image name that cannot be stored.
    #[error("invalid image name {0:?}: {1}")]
    InvalidName(String, &'static str),
    /// A layer's index could not be built or opened.
    #[error("layer {digest}: {source}")]
    LayerIndex {
        /// The layer.
        digest: Digest,
        /// What went wrong.
        source: d2v_fuse::IndexError,
    },
    /// Layers could not be composed into one tree.
    #[error("couldn't compose layers: {0}")]
    Tree(#[from] d2v_fuse::TreeError),
    /// Anything else that is inconsistent in the store.
    #[error("{0}")]
    Invalid(String),
}

/// A `Result` with a [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Adds the path and operation to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// An open d2v store (a path and this process's lease on it: cloning it is
/// cheap, and clones share the lease).
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    lease: Arc<OnceLock<lease::Lease>>,
}

impl Store {
    /// The store location: `$D2V_HOME`, else `/var/lib/d2v` for root, else `$XDG_DATA_HOME/d2v`
    /// (or `~/.local/share/d2v`).
    pub fn default_root() -> PathBuf {
        if let Some(home) = std::env::var_os("D2V_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home);
        }
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/d2v");
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("d2v");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
        PathBuf::from(home).join(".local/share/d2v")
    }

    /// Opens the store at [`Store::default_root`], creating it if needed.
    pub fn open_default() -> Result<Store> {
        Store::open(Store::default_root())
    }

    /// Opens (creating if needed) the store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store {
            root: root.into(),
            lease: Arc::default(),
        };
        for dir in [
            store.root.join("blobs/sha256"),
            store.layers_dir(),
            store.root.join("d2v/compressed"),
            store.root.join("d2v/verified"),
            store.leases_dir(),
        ] {
            std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        }
        scratch::create_private_dir(&store.scratch_parent())?;
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            let _lock = store.lock()?;
            if !layout.exists() {
                store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            }
            let index = store.root.join("index.json");
            if !index.exists() {
                let body = serde_json::to_vec_pretty(&oci::Index::default())
                    .expect("an index always serializes");
                store.write_atomic(&index, &body)?;
            }
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the store's exclusive lock, waiting for other d2v processes.
    pub fn lock(&self) -> Result<StoreLock> {
        StoreLock::acquire(&self.root.join("d2v/lock"))
    }

    fn leases_dir(&self) -> PathBuf {
        self.root.join("d2v/leases")
    }

    /// This process's lease on the store, created on first use.
    fn lease(&self) -> Result<&lease::Lease> {
        if let Some(l) = self.lease.get() {
            return Ok(l);
        }
        let fresh = lease::Lease::create(&self.leases_dir())?;
        // Another thread may have won the race; then `fresh` is dropped (and removed).
        Ok(self.lease.get_or_init(|| fresh))
    }

    /// Protects the stored blobs `digests` from [`Store::prune`] for as long
    /// as this process lives (see [`lease`]); fails with
    /// [`StoreError::MissingBlob`] for one that is not stored. Call it before
    /// using blobs that no name of yours pins: a cache hit's layer, the layers
    /// of an image about to be mounted.
    pub fn hold(&self, digests: &[Digest]) -> Result<()> {
        let _lock = self.lock()?;
        if let Some(missing) = digests.iter().find(|d| !self.has_blob(d)) {
            return Err(StoreError::MissingBlob(missing.clone()));
        }
        self.lease()?.add(digests)
    }

    /// The path of the blob with `digest` (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the store has the blob with `digest`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Reads a document blob (manifest, index, config: at most
    /// [`oci::MAX_DOCUMENT_SIZE`] bytes) whole, checking its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob(digest.clone()))
            }
            Err(e) => return Err(e).ctx("read", &path),
        };
        let bytes = read_document(file, &path)?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                path,
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let mut w = self.blob_writer()?;
        std::io::Write::write_all(&mut w, bytes).ctx("write", w.path())?;
        w.commit(None)
    }

    /// Starts writing a blob of not-yet-known digest into scratch space.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        BlobWriter::new(self)
    }

    /// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        write_atomic(path, bytes)
    }
}

/// Reads a JSON document (manifest, index, config) of at most
/// [`oci::MAX_DOCUMENT_SIZE`] bytes from `reader`; `what` names it in errors.
/// Reading stops one byte past the limit.
pub fn read_document(reader: impl io::Read, what: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(oci::MAX_DOCUMENT_SIZE + 1)
        .read_to_end(&mut bytes)
        .ctx("read", what)?;
    if bytes.len() as u64 > oci::MAX_DOCUMENT_SIZE {
        return Err(StoreError::TooLarge {
            what: what.to_path_buf(),
            limit: oci::MAX_DOCUMENT_SIZE,
        });
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).ctx("create temp file in", dir)?;
    tmp.write_all(bytes).ctx("write", tmp.path())?;
    tmp.as_file().sync_all().ctx("fsync", tmp.path())?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .ctx("rename into place", path)?;
    Ok(())
}
