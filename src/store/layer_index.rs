//! Opening stored layers for reading: the blob verified, its index built or
//! rebuilt, and an image's layers composed into one merged tree.

use super::oci::Digest;
use super::{Result, Store, StoreError};
use d2v_fuse::{IndexError, LayerIndex, MergedTree};
use std::path::PathBuf;

impl Store {
    /// The directory holding layer indexes.
    pub fn layers_dir(&self) -> PathBuf {
        self.root().join("d2v/layers")
    }

    /// The path of the index of layer `digest`.
    pub fn layer_index_path(&self, digest: &Digest) -> PathBuf {
        self.layers_dir().join(format!("{}.idx", digest.hex()))
    }

    fn index_error(digest: &Digest) -> impl FnOnce(IndexError) -> StoreError + '_ {
        move |source| StoreError::LayerIndex {
            digest: digest.clone(),
            source,
        }
    }

    /// Builds the index of a stored layer blob if it does not exist yet.
    pub fn ensure_layer_index(&self, digest: &Digest) -> Result<()> {
        let index = self.layer_index_path(digest);
        if index.is_file() {
            return Ok(());
        }
        self.build_layer_index(digest)
    }

    /// (Re)builds the index of stored layer `digest`, replacing any there is.
    pub(super) fn build_layer_index(&self, digest: &Digest) -> Result<()> {
        let blob = self.blob_path(digest);
        if !blob.is_file() {
            return Err(StoreError::MissingBlob(digest.clone()));
        }
        LayerIndex::build(&blob, &self.layer_index_path(digest))
            .map_err(Self::index_error(digest))?;
        Ok(())
    }

    /// Opens a stored layer with its index, for reading: the layer is held
    /// (see [`Store::hold`]), its blob verified ([`Store::verify_blob`]), and
    /// its index built when missing or rebuilt when it fails its checksum.
    pub fn open_layer(&self, digest: &Digest) -> Result<LayerIndex> {
        self.hold(std::slice::from_ref(digest))?;
        self.verify_blob(digest)?;
        self.ensure_layer_index(digest)?;
        let (blob, index) = (self.blob_path(digest), self.layer_index_path(digest));
        match LayerIndex::open(&blob, &index) {
            // An index is derived data: one that fails its checks is rebuilt.
            Err(IndexError::BadIndex { .. }) => {
                self.build_layer_index(digest)?;
                LayerIndex::open(&blob, &index).map_err(Self::index_error(digest))
            }
            other => other.map_err(Self::index_error(digest)),
        }
    }

    /// The merged tree of `layers` (bottom first), each opened with
    /// [`Store::open_layer`]: what `d2v mount`, `d2v pack` and a build step
    /// read an image's file system through.
    pub fn merged_tree(&self, layers: &[Digest]) -> Result<MergedTree> {
        self.hold(layers)?;
        let indexes = layers
            .iter()
            .map(|d| self.open_layer(d))
            .collect::<Result<Vec<_>>>()?;
        Ok(MergedTree::new(indexes)?)
    }
}
