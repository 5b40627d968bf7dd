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

use std::collections::HashMap;

use sha2::Digest;

use crate::bitmap::Bitmap;
use crate::crc::crc32c_raw;
use crate::dir::{self, DirEntry};
use crate::error::PackError;
use crate::extent::{self, Extent};
use crate::group::{GroupDesc, DESC_SIZE};
use crate::inode::{self, DiskInode, INODE_SIZE};
use crate::meta::*;
use crate::superblock::*;
use crate::writer::{
    show, Ext4Writer, Kind, Summary, INLINE_I_BLOCK, JOURNAL_INO, LOST_FOUND_INO, ROOT_INO,
};
use crate::xattr::{self, Attr};
use crate::{htree, journal, BLOCKS_PER_GROUP, BLOCK_SIZE};

/// Most inodes sharing one xattr block (the kernel's `EXT4_XATTR_REFCOUNT_MAX`).
const XATTR_REFCOUNT_MAX: u32 = 1024;
/// Inodes per inode table block.
const INODES_PER_BLOCK: u64 = (BLOCK_SIZE / INODE_SIZE) as u64;
/// Directories with more links than this report 1 (`dir_nlink`).
const LINK_MAX: u32 = 65000;
/// Smallest last group worth having, in blocks.
const MIN_LAST_GROUP: u64 = 1024;

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

/// Derive the UUID (RFC 4122 version 4 layout) and hash seed from the content digest.
fn ids(digest: &[u8]) -> ([u8; 16], [u32; 4]) {
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&digest[..16]);
    uuid[6] = (uuid[6] & 0x0F) | 0x40;
    uuid[8] = (uuid[8] & 0x3F) | 0x80;
    let mut seed = [0u32; 4];
    for (i, s) in seed.iter_mut().enumerate() {
        *s = u32::from_le_bytes(digest[16 + 4 * i..20 + 4 * i].try_into().expect("4 bytes"));
    }
    (uuid, seed)
}

/// Push `blocks` into the stream as one run and return their extents.
fn push_run(w: &mut Ext4Writer, blocks: &[Vec<u8>]) -> Result<Vec<Extent>, PackError> {
    let first = w.stream.place(blocks.len() as u64)?;
    for b in blocks {
        w.stream.push(b)?;
    }
    let mut ext = Vec::new();
    extent::push(&mut ext, 0, first, blocks.len() as u32);
    Ok(ext)
}

/// Build an extent tree, writing its blocks to the stream; returns the root
/// and the number of tree blocks.
fn push_tree(w: &mut Ext4Writer, ext: &[Extent], seed: u32) -> Result<([u8; 60], u64), PackError> {
    let build = |first: u64| {
        let mut next = first;
        extent::build(ext, seed, || {
            next += 1;
            next - 1
        })
    };
    let at = w.stream.next_block();
    let (mut root, mut blocks) = build(at);
    if w.stream.hits_hole(at, blocks.len() as u64) {
        (root, blocks) = build(w.stream.place(blocks.len() as u64)?);
    }
    for (nr, b) in &blocks {
        debug_assert_eq!(*nr, w.stream.next_block());
        w.stream.push(b)?;
    }
    Ok((root, blocks.len() as u64))
}

pub(crate) fn finish(mut w: Ext4Writer) -> Result<Summary, PackError> {
    let digest = w.hasher.clone().finalize();
    let (derived_uuid, hash_seed) = ids(&digest);
    let uuid = w.opts.uuid.unwrap_or(derived_uuid);
    let csum_seed = crc32c_raw(!0, &uuid);
    let bs = BLOCK_SIZE as u64;
    let data_start = 1 + w.gdt_reserved;
    let n_inodes = w.nodes.len();

    // Directories small enough to live in their inode (not the root or
    // lost+found, which e2fsck wants in blocks): i_block and system.data.
    let mut inline_dirs: Vec<Option<([u8; 60], Vec<u8>)>> = w
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match &n.kind {
            Kind::Dir {
                entries, parent, ..
            } if w.opts.inline_data
                && i as u32 + 1 != ROOT_INO
                && i as u32 + 1 != LOST_FOUND_INO =>
            {
                let room = xattr::max_inline_data_value(&n.attrs)?;
                dir::pack_inline(*parent, entries, room)
            }
            _ => None,
        })
        .collect();

    // Shared xattr blocks, deduplicated by content.
    let mut xblocks: Vec<(Vec<Attr>, u32)> = Vec::new();
    let mut xindex: HashMap<Vec<Attr>, usize> = HashMap::new();
    let mut node_xblock: Vec<Option<usize>> = vec![None; n_inodes];
    for (i, n) in w.nodes.iter().enumerate() {
        if n.attrs.is_empty()
            || xattr::fits_inline(&n.attrs)
            || n.inline.is_some()
            || inline_dirs[i].is_some()
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
        let nr = w.stream.place(1)?;
        let b = xattr::block(attrs, *refs, nr, csum_seed);
        w.stream.push(&b)?;
        xblock_nr.push(nr);
    }

    // Directories, symlinks and extent trees, inode by inode.
    let mut disk: Vec<DiskInode> = Vec::with_capacity(n_inodes);
    let mut counts = Summary::default();
    let mut dirs_per_ino: Vec<bool> = vec![false; n_inodes];
    for i in 0..n_inodes {
        let ino = i as u32 + 1;
        let iseed = inode::inode_seed(csum_seed, ino, 0);
        let mut d = DiskInode::default();
        let node = &w.nodes[i];
        if matches!(node.kind, Kind::Reserved) {
            disk.push(d);
            continue;
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
        if let Some(x) = node_xblock[i] {
            d.file_acl = xblock_nr[x];
            blocks += 1;
        } else {
            d.inline_xattrs = xattr::inline_area(&node.attrs);
        }
        match &node.kind {
            Kind::Reserved => unreachable!(),
            Kind::File if node.inline.is_some() => {
                let data = node.inline.as_deref().expect("checked by the guard");
                counts.files += 1;
                counts.inline_files += 1;
                counts.data_bytes += node.size;
                let head = data.len().min(INLINE_I_BLOCK);
                d.i_block[..head].copy_from_slice(&data[..head]);
                let value = data[head..].to_vec();
                d.inline_xattrs = xattr::inline_area(&xattr::with_inline_data(&node.attrs, value));
                d.flags = inode::FL_INLINE_DATA;
            }
            Kind::File => {
                counts.files += 1;
                counts.data_bytes += node.size;
                counts.data_block_bytes += node.data_blocks * bs;
                let ext = node.extents.clone();
                let data_blocks = node.data_blocks;
                let (root, tree) = push_tree(&mut w, &ext, iseed)?;
                d.i_block = root;
                d.flags = inode::FL_EXTENTS;
                blocks += data_blocks + tree;
            }
            Kind::Dir { subdirs, .. } if inline_dirs[i].is_some() => {
                let (i_block, value) = inline_dirs[i].take().expect("checked by the guard");
                counts.dirs += 1;
                counts.inline_dirs += 1;
                dirs_per_ino[i] = true;
                d.links = dir_links(*subdirs);
                d.i_block = i_block;
                d.size = (INLINE_I_BLOCK + value.len()) as u64;
                d.inline_xattrs = xattr::inline_area(&xattr::with_inline_data(&node.attrs, value));
                d.flags = inode::FL_INLINE_DATA;
            }
            Kind::Dir {
                entries,
                parent,
                subdirs,
            } => {
                counts.dirs += 1;
                dirs_per_ino[i] = true;
                d.links = dir_links(*subdirs);
                let mut all = Vec::with_capacity(entries.len() + 2);
                all.push(DirEntry {
                    name: b".".to_vec(),
                    ino,
                    file_type: 2,
                });
                all.push(DirEntry {
                    name: b"..".to_vec(),
                    ino: *parent,
                    file_type: 2,
                });
                all.extend(entries.iter().cloned());
                let mut linear = dir::pack_leaves(&all, |_| {});
                let dblocks = if linear.len() == 1 {
                    dir::seal_leaf(&mut linear[0], iseed);
                    d.flags = inode::FL_EXTENTS;
                    linear
                } else {
                    d.flags = inode::FL_EXTENTS | inode::FL_INDEX;
                    htree::build(ino, *parent, entries, &hash_seed, iseed)
                        .ok_or_else(|| PackError::DirTooLarge(format!("inode {ino}")))?
                };
                d.size = dblocks.len() as u64 * bs;
                let ext = push_run(&mut w, &dblocks)?;
                let (root, tree) = push_tree(&mut w, &ext, iseed)?;
                d.i_block = root;
                blocks += dblocks.len() as u64 + tree;
            }
            Kind::Symlink(target) => {
                counts.symlinks += 1;
                if target.len() < 60 {
                    d.i_block[..target.len()].copy_from_slice(target);
                } else {
                    let t = target.clone();
                    let ext = push_run(&mut w, &[t])?;
                    let (root, _) = push_tree(&mut w, &ext, iseed)?;
                    d.i_block = root;
                    d.flags = inode::FL_EXTENTS;
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
        disk.push(d);
    }
    let meta_end = w.stream.next_block();

    // Size the file system.
    let tight = w.opts.read_only_tight;
    let free_bytes = w.opts.free_bytes.unwrap_or(if tight {
        0
    } else {
        (64u64 << 20).max(counts.data_block_bytes / 4)
    });
    let free_blocks_wanted = free_bytes.div_ceil(bs);
    let free_inodes_wanted = w.opts.free_inodes.unwrap_or(if tight {
        0
    } else {
        (free_bytes / 16384).max(16384)
    });
    let want_inodes = n_inodes as u64 + free_inodes_wanted;
    let journal_on = w.opts.journal && !tight;
    let fixed = w.opts.size.map(|s| s / bs);
    let journal_blocks: u64 = if !journal_on {
        0
    } else if let Some(b) = w.opts.journal_bytes {
        (b / bs).clamp(1024, 32768)
    } else {
        journal::default_blocks(fixed.unwrap_or(meta_end + free_blocks_wanted)) as u64
    };
    let mut groups = want_inodes.div_ceil(BLOCKS_PER_GROUP).max(1);
    let (ipg, itb, total, run_start) = loop {
        let ipg = want_inodes
            .div_ceil(groups)
            .next_multiple_of(INODES_PER_BLOCK)
            .max(INODES_PER_BLOCK);
        if ipg > BLOCKS_PER_GROUP {
            groups += 1;
            continue;
        }
        let itb = ipg / INODES_PER_BLOCK;
        // Inode tables, bitmaps and journal go in one run, past the hole
        // for group 1's backup if they would overlap it; the blocks skipped
        // count as free space.
        let run = groups * (itb + 2) + journal_blocks;
        let start = w.stream.past_hole(meta_end, run);
        let backup_blocks = 1 + (groups * DESC_SIZE as u64).div_ceil(bs);
        let skipped_free = (start - meta_end).saturating_sub(backup_blocks);
        let needed = start + run;
        let mut total = needed + free_blocks_wanted.saturating_sub(skipped_free);
        if groups > 1 && start < BLOCKS_PER_GROUP {
            total += backup_blocks; // the backup then sits in the free space
        }
        if let Some(f) = fixed {
            if f < needed {
                return Err(PackError::TooSmall {
                    needed: needed * bs,
                    size: f * bs,
                });
            }
            total = f;
        }
        let ng = total.div_ceil(BLOCKS_PER_GROUP);
        if ng > groups {
            groups = ng;
            continue;
        }
        if fixed.is_none() {
            total = total.max((groups - 1) * BLOCKS_PER_GROUP + MIN_LAST_GROUP);
        }
        break (ipg, itb, total, start);
    };
    let gdt_blocks = (groups * DESC_SIZE as u64).div_ceil(bs);
    if gdt_blocks > w.gdt_reserved {
        return Err(PackError::TooLarge(total * bs));
    }
    // sparse_super2 with one backup, in group 1 (as mke2fs's first of two).
    let backup_at = BLOCKS_PER_GROUP;
    let backup = groups > 1 && total >= backup_at + 1 + gdt_blocks;
    let itable_start = run_start;
    let bbitmap_start = itable_start + groups * itb;
    let ibitmap_start = bbitmap_start + groups;
    let journal_start = ibitmap_start + groups;
    let used_end = journal_start + journal_blocks;

    // Journal inode.
    if journal_blocks > 0 {
        let mut ext = Vec::new();
        extent::push(&mut ext, 0, journal_start, journal_blocks as u32);
        let (root, _) = extent::build(&ext, 0, || unreachable!("a journal fits the inode root"));
        let j = &mut disk[JOURNAL_INO as usize - 1];
        let t = Timestamp::from_secs(w.opts.source_date_epoch.unwrap_or(0));
        j.mode = (S_IFREG | 0o600) as u16;
        j.links = 1;
        j.size = journal_blocks * bs;
        j.sectors = journal_blocks * (bs / 512);
        j.flags = inode::FL_EXTENTS;
        j.i_block = root;
        j.atime = t;
        j.mtime = t;
        j.ctime = t;
        j.crtime = t;
    }

    // Inode tables.
    w.stream.leave_free_to(itable_start)?;
    let ino_seed = csum_seed;
    let mut chunk = Vec::with_capacity(4096 * INODE_SIZE);
    for (i, d) in disk.iter().enumerate() {
        chunk.extend_from_slice(&d.to_bytes(i as u32 + 1, ino_seed));
        if chunk.len() >= 4096 * INODE_SIZE {
            w.stream.push(&chunk)?;
            chunk.clear();
        }
    }
    w.stream.push(&chunk)?;

    // Bitmaps and descriptors.
    let mut used = vec![(0u64, 1 + gdt_blocks)];
    let mut from = data_start;
    for &(gap_start, gap_end) in w.stream.gaps() {
        if gap_start > from {
            used.push((from, gap_start));
        }
        from = from.max(gap_end);
    }
    used.push((from, used_end));
    if backup {
        used.push((backup_at, backup_at + 1 + gdt_blocks));
    }
    let mut descs = Vec::with_capacity(groups as usize);
    let mut bbitmaps = Vec::with_capacity(groups as usize);
    let mut ibitmaps = Vec::with_capacity(groups as usize);
    let mut free_blocks_total = 0u64;
    let mut free_inodes_total = 0u64;
    for g in 0..groups {
        let gstart = g * BLOCKS_PER_GROUP;
        let gend = ((g + 1) * BLOCKS_PER_GROUP).min(total);
        let mut bb = Bitmap::new();
        let mut used_here = 0;
        for &(s, e) in &used {
            let (s, e) = (s.max(gstart), e.min(gend));
            if s < e {
                bb.set_range((s - gstart) as usize, (e - gstart) as usize);
                used_here += e - s;
            }
        }
        bb.set_range((gend - gstart) as usize, BLOCKS_PER_GROUP as usize);
        let free_b = (gend - gstart) - used_here;
        let first_ino = g * ipg;
        let used_inodes = (n_inodes as u64).saturating_sub(first_ino).min(ipg);
        let mut ib = Bitmap::new();
        ib.set_range(0, used_inodes as usize);
        ib.set_range(ipg as usize, BLOCKS_PER_GROUP as usize);
        let dirs = dirs_per_ino
            .iter()
            .skip(first_ino as usize)
            .take(ipg as usize)
            .filter(|&&x| x)
            .count() as u32;
        descs.push(GroupDesc {
            block_bitmap: bbitmap_start + g,
            inode_bitmap: ibitmap_start + g,
            inode_table: itable_start + g * itb,
            free_blocks: free_b as u32,
            free_inodes: (ipg - used_inodes) as u32,
            used_dirs: dirs,
            itable_unused: (ipg - used_inodes) as u32,
            block_bitmap_csum: bb.checksum(csum_seed, BLOCKS_PER_GROUP as usize),
            inode_bitmap_csum: ib.checksum(csum_seed, ipg as usize),
        });
        free_blocks_total += free_b;
        free_inodes_total += ipg - used_inodes;
        bbitmaps.push(bb);
        ibitmaps.push(ib);
    }
    w.stream.skip_to(bbitmap_start)?;
    for b in bbitmaps.iter().chain(ibitmaps.iter()) {
        w.stream.push(&b.0)?;
    }
    if journal_blocks > 0 {
        w.stream
            .push(&journal::superblock(journal_blocks as u32, &uuid))?;
    }
    w.stream.flush()?;
    let mut gdt = Vec::with_capacity((gdt_blocks * bs) as usize);
    for (g, d) in descs.iter().enumerate() {
        gdt.extend_from_slice(&d.to_bytes(g as u32, csum_seed));
    }
    w.stream.write_at(&gdt, bs)?;
    if backup {
        w.stream.write_at(&gdt, (backup_at + 1) * bs)?;
    }

    // Superblock.
    let mut compat = COMPAT_EXT_ATTR | COMPAT_DIR_INDEX | COMPAT_SPARSE_SUPER2;
    if journal_blocks > 0 {
        compat |= COMPAT_HAS_JOURNAL;
    }
    let mut label = [0u8; 16];
    let l = w.opts.label.len().min(16);
    label[..l].copy_from_slice(&w.opts.label[..l]);
    let jnl_blocks = (journal_blocks > 0).then(|| {
        let j = &disk[JOURNAL_INO as usize - 1];
        let mut jb = [0u32; 17];
        for (k, word) in jb.iter_mut().take(15).enumerate() {
            *word = crate::le::get_u32(&j.i_block, 4 * k);
        }
        jb[15] = (j.size >> 32) as u32;
        jb[16] = j.size as u32;
        jb
    });
    let sb = Superblock {
        inodes_count: (ipg * groups) as u32,
        blocks_count: total,
        free_blocks: free_blocks_total,
        free_inodes: free_inodes_total as u32,
        blocks_per_group: BLOCKS_PER_GROUP as u32,
        inodes_per_group: ipg as u32,
        time: w.opts.source_date_epoch.unwrap_or(0),
        feature_compat: compat,
        feature_incompat: INCOMPAT_FILETYPE
            | INCOMPAT_EXTENTS
            | INCOMPAT_64BIT
            | INCOMPAT_FLEX_BG
            | if w.opts.inline_data {
                INCOMPAT_INLINE_DATA
            } else {
                0
            },
        feature_ro_compat: RO_COMPAT_SPARSE_SUPER
            | RO_COMPAT_LARGE_FILE
            | RO_COMPAT_HUGE_FILE
            | RO_COMPAT_DIR_NLINK
            | RO_COMPAT_EXTRA_ISIZE
            | RO_COMPAT_METADATA_CSUM,
        uuid,
        volume_name: label,
        journal_inum: if journal_blocks > 0 { JOURNAL_INO } else { 0 },
        hash_seed: {
            let mut s = [0u8; 16];
            for (k, wd) in hash_seed.iter().enumerate() {
                s[4 * k..4 * k + 4].copy_from_slice(&wd.to_le_bytes());
            }
            s
        },
        jnl_blocks,
        log_groups_per_flex: 4,
        backup_bgs: [u32::from(backup), 0],
        block_group_nr: 0,
    };
    w.stream.write_at(&sb.to_bytes(), 1024)?;
    if backup {
        let copy = Superblock {
            block_group_nr: 1,
            ..sb
        };
        w.stream.write_at(&copy.to_bytes(), backup_at * bs)?;
    }
    w.stream.file().set_len(total * bs)?;

    let _ = ROOT_INO;
    let _ = show;
    counts.hard_links = w.hard_links;
    counts.image_bytes = total * bs;
    counts.journal_bytes = journal_blocks * bs;
    counts.free_bytes = free_blocks_total * bs;
    counts.free_inodes = free_inodes_total;
    // Inode table space for free inodes is headroom, like free blocks.
    counts.free_inode_table_bytes = free_inodes_total * INODE_SIZE as u64;
    counts.overhead_bytes = counts.image_bytes.saturating_sub(
        counts.data_block_bytes
            + counts.journal_bytes
            + counts.free_bytes
            + counts.free_inode_table_bytes,
    );
    counts.uuid = uuid;
    Ok(counts)
}
