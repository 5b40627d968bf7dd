//! The writer's in-memory inodes: what each is, its metadata, and where its
//! data went, until `finish` lays them out.

use crate::dir::DirEntry;
use crate::extent::Extent;
use crate::meta::Metadata;
use crate::xattr::Attr;

/// What an inode is, beyond its metadata.
#[derive(Debug)]
pub(crate) enum Kind {
    /// Reserved inode (1, 3..=10), never written.
    Reserved,
    /// Regular file.
    File,
    /// Directory with its entries (without `.` and `..`).
    Dir {
        entries: Vec<DirEntry>,
        parent: u32,
        subdirs: u32,
    },
    /// Symbolic link.
    Symlink(Vec<u8>),
    /// Device, fifo or socket.
    Special,
}

/// One inode while the image is being built.
#[derive(Debug)]
pub(crate) struct Node {
    pub meta: Metadata,
    pub attrs: Vec<Attr>,
    pub kind: Kind,
    pub links: u32,
    pub size: u64,
    pub extents: Vec<Extent>,
    pub data_blocks: u64,
    /// A regular file's whole content when it is stored in the inode.
    pub inline: Option<Vec<u8>>,
}

impl Node {
    pub(crate) fn new(meta: Metadata, attrs: Vec<Attr>, kind: Kind) -> Self {
        Node {
            meta,
            attrs,
            kind,
            links: 1,
            size: 0,
            extents: Vec::new(),
            data_blocks: 0,
            inline: None,
        }
    }
}
