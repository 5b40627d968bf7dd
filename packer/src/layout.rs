//! Where everything goes, decided at [`crate::Ext4Writer::finish`]:
//!
//! ```text
//! block 0            superblock (at byte 1024)
//! 1 ..               group descriptors (space reserved up front for `max_size`)
//! data_start ..      file data, streamed in as it arrived
//! ..                 xattr blocks, directories, slow symlinks, extent tree blocks
//! ..                 inode tables of all groups (flex_bg), block bitmaps, inode bitmaps
//! ..                 journal
//! ..                 free space for the VM
//! ```
//!
//! Group 1 (block 32768) starts with a backup of the superblock and the
//! descriptors (`sparse_super2`, `s_backup_bgs = [1, 0]`, like the first of
//! mke2fs's two): the stream steps over `1 + gdt reserved` blocks there, and
//! whatever it skipped is left free. Every used block is in `[0, 1 + gdt)`,
//! the backup, or `[data_start, journal end)` outside those skipped runs, so
//! the bitmaps are a few ranges. A single-group image has no backup.
//!
//! Why only one backup: a second in the last group would need that group's
//! first blocks free, but the last group usually starts inside file data
//! already streamed out, and moving its start costs up to a group (128 MiB).
//!
//! [`finish`] runs in named phases: identity (UUID and seeds), inline
//! directories, shared xattr blocks, per-inode metadata blocks, geometry
//! (pure, see `geometry.rs`), journal inode, inode tables, bitmaps and
//! descriptors, superblock, summary.

use std::collections::HashMap;

use crate::crc::crc32c_raw;
use crate::dir::{self, DirEntry};
use crate::error::PackError;
use crate::extent::{self, Extent};
use crate::format::*;
use crate::geometry::{self, Geometry, Needs};
use crate::htree;
use crate::inode::{self, DiskInode};
use crate::meta::*;
use crate::node::{Kind, Node};
use crate::options::Options;
use crate::stream::BlockStream;
use crate::summary::Summary;
use crate::tables::{
    journal_inode, write_bitmaps_and_descriptors, write_inode_tables, write_superblocks,
};
use crate::xattr::{self, Attr};

/// Everything the writer gathered, handed over to be laid out.
pub(crate) struct Built {
    pub opts: Options,
    pub stream: BlockStream,
    /// Inodes, index = inode number - 1.
    pub nodes: Vec<Node>,
    /// Digest of every entry, in order (the image's identity).
    pub digest: [u8; 32],
    /// Blocks reserved for group descriptors after the superblock.
    pub gdt_reserved: u64,
    pub hard_links: u64,
}

/// The image's identity, derived from the content digest.
pub(crate) struct Ids {
    pub uuid: [u8; 16],
    pub hash_seed: [u32; 4],
    /// Seed of every metadata checksum.
    pub csum_seed: u32,
}

impl Ids {
    /// The UUID (RFC 4122 version 4 layout, unless `uuid` overrides it) and
    /// the directory hash seed, from `digest`.
    fn derive(digest: &[u8], uuid: Option<[u8; 16]>) -> Ids {
        let mut derived = [0u8; 16];
        derived.copy_from_slice(&digest[..16]);
        derived[6] = (derived[6] & 0x0F) | 0x40;
        derived[8] = (derived[8] & 0x3F) | 0x80;
        let mut hash_seed = [0u32; 4];
        for (i, s) in hash_seed.iter_mut().enumerate() {
            *s = u32::from_le_bytes(digest[16 + 4 * i..20 + 4 * i].try_into().expect("4 bytes"));
        }
        let uuid = uuid.unwrap_or(derived);
        Ids {
            uuid,
            hash_seed,
            csum_seed: crc32c_raw(!0, &uuid),
        }
    }
}

/// A directory's link count: 2 plus its subdirectories, or 1 past
/// [`LINK_MAX`] (`dir_nlink`).
fn dir_links(subdirs: u32) -> u16 {
    let links = 2 + subdirs;
    if links >= LINK_MAX {
        1
    } else {
        links as u16
    }
}

/// Push `blocks` into the stream as one run and return their extents.
fn push_run(stream: &mut BlockStream, blocks: &[Vec<u8>]) -> Result<Vec<Extent>, PackError> {
    let first = stream.place(blocks.len() as u64)?;
    for b in blocks {
        stream.push(b)?;
    }
    let mut ext = Vec::new();
    extent::push(&mut ext, 0, first, blocks.len() as u32);
    Ok(ext)
}

/// Build an extent tree, writing its blocks to the stream; returns the root
/// and the number of tree blocks.
fn push_tree(
    stream: &mut BlockStream,
    ext: &[Extent],
    seed: u32,
) -> Result<([u8; 60], u64), PackError> {
    let build = |first: u64| {
        let mut next = first;
        extent::build(ext, seed, || {
            next += 1;
            next - 1
        })
    };
    let at = stream.next_block();
    let (mut root, mut blocks) = build(at);
    if stream.hits_hole(at, blocks.len() as u64) {
        (root, blocks) = build(stream.place(blocks.len() as u64)?);
    }
    for (nr, b) in &blocks {
        debug_assert_eq!(*nr, stream.next_block());
        stream.push(b)?;
    }
    Ok((root, blocks.len() as u64))
}

/// Lays out the metadata, writes it, and sizes the image.
pub(crate) fn finish(b: Built) -> Result<Summary, PackError> {
    let Built {
        opts,
        mut stream,
        nodes,
        digest,
        gdt_reserved,
        hard_links,
    } = b;
    let ids = Ids::derive(&digest, opts.uuid);
    let mut inline = inline_dirs(&nodes, &opts);
    let xblock = write_xattr_blocks(&mut stream, &nodes, &inline, ids.csum_seed)?;
    let mut counts = Summary::default();
    let mut disk = Vec::with_capacity(nodes.len());
    let mut is_dir = vec![false; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        let ino = i as u32 + 1;
        let d = lay_out_inode(
            &mut stream,
            node,
            ino,
            inline[i].take(),
            xblock[i],
            &ids,
            &mut counts,
        )?;
        is_dir[i] = matches!(node.kind, Kind::Dir { .. });
        disk.push(d);
    }
    let needs = Needs {
        meta_end: stream.next_block(),
        inodes: nodes.len() as u64,
        data_block_bytes: counts.data_block_bytes,
        hole: stream.hole(),
        gdt_reserved,
    };
    let geo = geometry::plan(&needs, &opts)?;
    let epoch = Timestamp::from_secs(opts.source_date_epoch.unwrap_or(0));
    if geo.journal_blocks > 0 {
        disk[JOURNAL_INO as usize - 1] = journal_inode(&geo, epoch);
    }
    write_inode_tables(&mut stream, &disk, &geo, ids.csum_seed)?;
    let (free_blocks, free_inodes) =
        write_bitmaps_and_descriptors(&mut stream, &geo, &is_dir, 1 + gdt_reserved, &ids)?;
    let journal = &disk[JOURNAL_INO as usize - 1];
    write_superblocks(
        &stream,
        &geo,
        &opts,
        &ids,
        journal,
        (free_blocks, free_inodes),
    )?;
    stream.file().set_len(geo.total * BLOCK_SIZE as u64)?;

    counts.hard_links = hard_links;
    Ok(summary(counts, &geo, free_blocks, free_inodes, ids.uuid))
}

/// Directories small enough to live in their inode (not the root or
/// lost+found, which e2fsck wants in blocks): `i_block` and `system.data`.
fn inline_dirs(nodes: &[Node], opts: &Options) -> Vec<Option<([u8; 60], Vec<u8>)>> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match &n.kind {
            Kind::Dir {
                entries, parent, ..
            } if opts.inline_data && i as u32 + 1 != ROOT_INO && i as u32 + 1 != LOST_FOUND_INO => {
                let room = xattr::max_inline_data_value(&n.attrs)?;
                dir::pack_inline(*parent, entries, room)
            }
            _ => None,
        })
        .collect()
}

/// Writes the xattr blocks of inodes whose attributes do not fit in the
/// inode, shared by identical sets (up to the kernel's refcount limit);
/// returns each inode's block.
fn write_xattr_blocks(
    stream: &mut BlockStream,
    nodes: &[Node],
    inline: &[Option<([u8; 60], Vec<u8>)>],
    csum_seed: u32,
) -> Result<Vec<Option<u64>>, PackError> {
    let mut xblocks: Vec<(Vec<Attr>, u32)> = Vec::new();
    let mut xindex: HashMap<Vec<Attr>, usize> = HashMap::new();
    let mut node_xblock: Vec<Option<usize>> = vec![None; nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if n.attrs.is_empty()
            || xattr::fits_inline(&n.attrs)
            || n.inline.is_some()
            || inline[i].is_some()
        {
            continue;
        }
        let idx = match xindex.get(&n.attrs) {
            Some(&idx) if xblocks[idx].1 < XATTR_REFCOUNT_MAX => idx,
            _ => {
                xblocks.push((n.attrs.clone(), 0));
                xindex.insert(n.attrs.clone(), xblocks.len() - 1);
                xblocks.len() - 1
            }
        };
        xblocks[idx].1 += 1;
        node_xblock[i] = Some(idx);
    }
    let mut xblock_nr = Vec::with_capacity(xblocks.len());
    for (attrs, refs) in &xblocks {
        let nr = stream.place(1)?;
        let b = xattr::block(attrs, *refs, nr, csum_seed);
        stream.push(&b)?;
        xblock_nr.push(nr);
    }
    Ok(node_xblock
        .iter()
        .map(|x| x.map(|i| xblock_nr[i]))
        .collect())
}

/// One inode's on-disk form: its metadata, and its directory blocks,
/// symlink block and extent tree streamed out now.
fn lay_out_inode(
    stream: &mut BlockStream,
    node: &Node,
    ino: u32,
    inline_dir: Option<([u8; 60], Vec<u8>)>,
    xblock: Option<u64>,
    ids: &Ids,
    counts: &mut Summary,
) -> Result<DiskInode, PackError> {
    let bs = BLOCK_SIZE as u64;
    let iseed = inode::inode_seed(ids.csum_seed, ino, 0);
    let mut d = DiskInode::default();
    if matches!(node.kind, Kind::Reserved) {
        return Ok(d);
    }
    let m = &node.meta;
    d.mode = (m.mode & 0xFFFF) as u16;
    d.uid = m.uid;
    d.gid = m.gid;
    d.atime = m.atime;
    d.mtime = m.mtime;
    d.ctime = m.ctime;
    d.crtime = m.mtime;
    d.links = node.links.min(u16::MAX as u32) as u16;
    d.size = node.size;
    let mut blocks = 0u64;
    if let Some(nr) = xblock {
        d.file_acl = nr;
        blocks += 1;
    } else {
        d.inline_xattrs = xattr::inline_area(&node.attrs);
    }
    match &node.kind {
        Kind::Reserved => unreachable!("returned above"),
        Kind::File => {
            counts.files += 1;
            counts.data_bytes += node.size;
            if let Some(data) = node.inline.as_deref() {
                counts.inline_files += 1;
                let head = data.len().min(INLINE_I_BLOCK);
                d.i_block[..head].copy_from_slice(&data[..head]);
                let value = data[head..].to_vec();
                d.inline_xattrs = xattr::inline_area(&xattr::with_inline_data(&node.attrs, value));
                d.flags = FL_INLINE_DATA;
            } else {
                counts.data_block_bytes += node.data_blocks * bs;
                let (root, tree) = push_tree(stream, &node.extents, iseed)?;
                d.i_block = root;
                d.flags = FL_EXTENTS;
                blocks += node.data_blocks + tree;
            }
        }
        Kind::Dir {
            entries,
            parent,
            subdirs,
        } => {
            counts.dirs += 1;
            d.links = dir_links(*subdirs);
            if let Some((i_block, value)) = inline_dir {
                counts.inline_dirs += 1;
                d.i_block = i_block;
                d.size = (INLINE_I_BLOCK + value.len()) as u64;
                d.inline_xattrs = xattr::inline_area(&xattr::with_inline_data(&node.attrs, value));
                d.flags = FL_INLINE_DATA;
            } else {
                blocks += dir_blocks(stream, &mut d, ino, *parent, entries, ids, iseed)?;
            }
        }
        Kind::Symlink(target) => {
            counts.symlinks += 1;
            if target.len() < 60 {
                d.i_block[..target.len()].copy_from_slice(target);
            } else {
                let ext = push_run(stream, std::slice::from_ref(target))?;
                let (root, _) = push_tree(stream, &ext, iseed)?;
                d.i_block = root;
                d.flags = FL_EXTENTS;
                blocks += 1;
            }
        }
        Kind::Special => {
            counts.specials += 1;
            let ft = m.mode & S_IFMT;
            if ft == S_IFCHR || ft == S_IFBLK {
                d.i_block = inode::encode_dev(m.rdev.0, m.rdev.1);
            }
        }
    }
    d.sectors = blocks * (bs / 512);
    Ok(d)
}

/// Streams a directory's blocks (one linear leaf, or an htree) and its
/// extent tree; returns the blocks used.
fn dir_blocks(
    stream: &mut BlockStream,
    d: &mut DiskInode,
    ino: u32,
    parent: u32,
    entries: &[DirEntry],
    ids: &Ids,
    iseed: u32,
) -> Result<u64, PackError> {
    let mut all = Vec::with_capacity(entries.len() + 2);
    all.push(DirEntry {
        name: b".".to_vec(),
        ino,
        file_type: 2,
    });
    all.push(DirEntry {
        name: b"..".to_vec(),
        ino: parent,
        file_type: 2,
    });
    all.extend(entries.iter().cloned());
    let mut linear = dir::pack_leaves(&all, |_| {});
    let dblocks = if linear.len() == 1 {
        dir::seal_leaf(&mut linear[0], iseed);
        d.flags = FL_EXTENTS;
        linear
    } else {
        d.flags = FL_EXTENTS | FL_INDEX;
        htree::build(ino, parent, entries, &ids.hash_seed, iseed)
            .ok_or_else(|| PackError::DirTooLarge(format!("inode {ino}")))?
    };
    d.size = dblocks.len() as u64 * BLOCK_SIZE as u64;
    let ext = push_run(stream, &dblocks)?;
    let (root, tree) = push_tree(stream, &ext, iseed)?;
    d.i_block = root;
    Ok(dblocks.len() as u64 + tree)
}

/// The summary: counts gathered while laying out, plus sizes.
fn summary(
    mut counts: Summary,
    geo: &Geometry,
    free_blocks: u64,
    free_inodes: u64,
    uuid: [u8; 16],
) -> Summary {
    let bs = BLOCK_SIZE as u64;
    counts.image_bytes = geo.total * bs;
    counts.journal_bytes = geo.journal_blocks * bs;
    counts.free_bytes = free_blocks * bs;
    counts.free_inodes = free_inodes;
    // Inode table space for free inodes is headroom, like free blocks.
    counts.free_inode_table_bytes = free_inodes * INODE_SIZE as u64;
    counts.overhead_bytes = counts.image_bytes.saturating_sub(
        counts.data_block_bytes
            + counts.journal_bytes
            + counts.free_bytes
            + counts.free_inode_table_bytes,
    );
    counts.uuid = uuid;
    counts
}
