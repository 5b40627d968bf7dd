//! The d2v store: an OCI image layout directory plus what OCI has no place for.
//!
//! ```text
//! $D2V_HOME/
//!   oci-layout, index.json        the OCI layout; index.json names images by
//!   blobs/sha256/<hex>            `org.opencontainers.image.ref.name`
//!   d2v/lock                      flock guarding every change to the store
//!   d2v/layers/<hex>.idx          the layer index of each (uncompressed) layer blob
//!   d2v/compressed/<hex>.json     the compressed form a layer arrived in (or was last
//!                                 pushed as) and the repository holding it, for pushing
//!   d2v/cache/<key>.json          the step cache: what each build step produced
//!   d2v/tmp/<pid>-<n>/            per-process scratch; renamed into place when complete
//! ```
//!
//! Every layer is kept as one uncompressed tar blob, so a layer's digest is its
//! diff ID and the store's images are ordinary OCI images that skopeo and umoci
//! read. Blobs are written to scratch, hashed while written, and renamed into
//! place only when complete; `index.json` is replaced atomically. So an
//! interrupted write leaves at most unreferenced scratch that [`Store::prune`]
//! removes, never a blob or a name that a later run would trust.

mod base_images;
mod blobs;
mod cache;
mod cache_share;
mod gc;
mod images;
mod layers;
mod lock;
pub mod oci;

pub use blobs::BlobWriter;
pub use cache::{CacheEntry, CacheKey};
pub use cache_share::{CacheConfig, MEDIA_TYPE_CACHE_CONFIG};
pub use gc::PruneReport;
pub use images::{validate_name, Image, ImageSummary};
pub use layers::{Compression, StoredLayer};
pub use lock::StoreLock;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// An open d2v store (a path: cloning it is cheap).
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

static SCRATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// The store location: `$D2V_HOME`, else `/var/lib/d2v` for root, else `$XDG_DATA_HOME/d2v`
    /// (or `~/.local/share/d2v`).
    pub fn default_root() -> PathBuf {
        if let Some(home) = std::env::var_os("D2V_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home);
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
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
        let store = Store { root: root.into() };
        for dir in [
            store.root.join("blobs/sha256"),
            store.layers_dir(),
            store.root.join("d2v/compressed"),
            store.root.join("d2v/tmp"),
        ] {
            std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        }
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

    /// The path of the blob with `digest` (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Whether the store has the blob with `digest`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Reads a (small) blob whole, checking its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob(digest.clone()))
            }
            Err(e) => return Err(e).ctx("read", &path),
        };
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

    /// The directory holding layer indexes.
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("d2v/layers")
    }

    /// The path of the index of layer `digest`.
    pub fn layer_index_path(&self, digest: &Digest) -> PathBuf {
        self.layers_dir().join(format!("{}.idx", digest.hex()))
    }

    /// Builds the index of a stored layer blob if it does not exist yet.
    pub fn ensure_layer_index(&self, digest: &Digest) -> Result<()> {
        let index = self.layer_index_path(digest);
        if index.is_file() {
            return Ok(());
        }
        let blob = self.blob_path(digest);
        if !blob.is_file() {
            return Err(StoreError::MissingBlob(digest.clone()));
        }
        d2v_fuse::LayerIndex::build(&blob, &index).map_err(|source| StoreError::LayerIndex {
            digest: digest.clone(),
            source,
        })?;
        Ok(())
    }

    /// Opens a stored layer with its index (building the index if it is missing).
    pub fn open_layer(&self, digest: &Digest) -> Result<d2v_fuse::LayerIndex> {
        self.ensure_layer_index(digest)?;
        d2v_fuse::LayerIndex::open(&self.blob_path(digest), &self.layer_index_path(digest)).map_err(
            |source| StoreError::LayerIndex {
                digest: digest.clone(),
                source,
            },
        )
    }

    /// A fresh scratch directory for this process, removed when the guard drops.
    pub fn scratch_dir(&self) -> Result<tempfile::TempDir> {
        let n = SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{}-{n}-", std::process::id());
        let parent = self.root.join("d2v/tmp");
        tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&parent)
            .ctx("create scratch directory in", &parent)
    }

    /// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        write_atomic(path, bytes)
    }
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
