//! `d2v-fuse`: serve OCI image layers without extracting them.
//!
//! Each layer is one uncompressed tar blob. [`LayerIndex::build`] reads a blob
//! once and writes a compact index beside it (path, metadata, xattrs and where
//! each file's bytes live in the blob); [`LayerIndex::open`] maps both.
//! [`MergedTree::new`] stacks layers by the OCI rules (whiteouts, opaque
//! directories, hard links), resolves paths inside the image the way the
//! kernel would ([`MergedTree::resolve`]), and [`mount`] serves the result as
//! a read-only FUSE filesystem whose reads come straight from the mmapped
//! blobs. Layer tars are read by `d2v-tar`, the reader `d2v pack --from-tar`
//! and ADD use too.
//!
//! ```no_run
//! use std::{path::Path, sync::Arc};
//! use d2v_fuse::{mount, LayerIndex, MergedTree, MountOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! LayerIndex::build(Path::new("layer.tar"), Path::new("layer.idx"))?;
//! let layer = LayerIndex::open(Path::new("layer.tar"), Path::new("layer.idx"))?;
//! let tree = Arc::new(MergedTree::new(vec![layer])?);
//! let etc = tree.lookup(tree.root(), b"etc");
//! let view = mount(tree, Path::new("/mnt/rootfs"), &MountOptions::default())?;
//! view.unmount()?;
//! # let _ = etc; Ok(()) }
//! ```

#![warn(missing_docs)]

mod fs;
pub mod index;
mod mount;
mod resolve;
pub mod tree;

pub use index::{EntryKind, EntryRef, IndexError, IndexStats, LayerIndex, Segment};
pub use mount::{is_mountpoint, mount, unmount, Mount, MountError, MountOptions};
pub use tree::{DataSegment, MergedTree, Node, TreeError, WalkEntry, ROOT_INO};
