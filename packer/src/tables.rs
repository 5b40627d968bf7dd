//! The fixed metadata, written once the geometry is known: the journal's
//! inode, the inode tables, the block and inode bitmaps with the group
//! descriptors, and the superblock (each with its backup in group 1).

use crate::bitmap::Bitmap;
use crate::error::PackError;
use crate::extent;
use crate::format::*;
use crate::geometry::Geometry;
use crate::group::GroupDesc;
use crate::inode::DiskInode;
use crate::journal;
use crate::layout::Ids;
use crate::meta::*;
use crate::options::Options;
use crate::stream::BlockStream;
use crate::superblock::Superblock;

/// The journal's inode (8): one extent over the journal blocks.
pub(crate) fn journal_inode(geo: &Geometry, t: Timestamp) -> DiskInode {
    let bs = BLOCK_SIZE as u64;
    let mut ext = Vec::new();
    extent::push(&mut ext, 0, geo.journal_start, geo.journal_blocks as u32);
    let (root, _) = extent::build(&ext, 0, || unreachable!("a journal fits the inode root"));
    DiskInode {
        mode: (S_IFREG | 0o600) as u16,
        links: 1,
        size: geo.journal_blocks * bs,
        sectors: geo.journal_blocks * (bs / 512),
        flags: FL_EXTENTS,
        i_block: root,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        ..DiskInode::default()
    }
}

/// Writes the inode tables of all groups, back to back.
pub(crate) fn write_inode_tables(
    stream: &mut BlockStream,
    disk: &[DiskInode],
    geo: &Geometry,
    csum_seed: u32,
) -> Result<(), PackError> {
    stream.leave_free_to(geo.itable_start)?;
    let mut chunk = Vec::with_capacity(4096 * INODE_SIZE);
    for (i, d) in disk.iter().enumerate() {
        chunk.extend_from_slice(&d.to_bytes(i as u32 + 1, csum_seed));
        if chunk.len() >= 4096 * INODE_SIZE {
            stream.push(&chunk)?;
            chunk.clear();
        }
    }
    stream.push(&chunk)?;
    Ok(())
}

/// Writes the block and inode bitmaps, the journal superblock and the group
/// descriptors (and their backup); returns the free blocks and inodes.
pub(crate) fn write_bitmaps_and_descriptors(
    stream: &mut BlockStream,
    geo: &Geometry,
    is_dir: &[bool],
    data_start: u64,
    ids: &Ids,
) -> Result<(u64, u64), PackError> {
    let bs = BLOCK_SIZE as u64;
    let backup_at = BLOCKS_PER_GROUP;
    // Used: the superblock and descriptors, then everything from the data to
    // the journal's end except the runs the stream skipped, and the backup.
    let mut used = vec![(0u64, 1 + geo.gdt_blocks)];
    let mut from = data_start;
    for &(gap_start, gap_end) in stream.gaps() {
        if gap_start > from {
            used.push((from, gap_start));
        }
        from = from.max(gap_end);
    }
    used.push((from, geo.used_end));
    if geo.backup {
        used.push((backup_at, backup_at + 1 + geo.gdt_blocks));
    }
    let ipg = geo.inodes_per_group;
    let n_inodes = is_dir.len() as u64;
    let mut descs = Vec::with_capacity(geo.groups as usize);
    let mut bitmaps = Vec::with_capacity(2 * geo.groups as usize);
    let mut inode_bitmaps = Vec::with_capacity(geo.groups as usize);
    let (mut free_blocks, mut free_inodes) = (0u64, 0u64);
    for g in 0..geo.groups {
        let gstart = g * BLOCKS_PER_GROUP;
        let gend = ((g + 1) * BLOCKS_PER_GROUP).min(geo.total);
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
        let used_inodes = n_inodes.saturating_sub(first_ino).min(ipg);
        let mut ib = Bitmap::new();
        ib.set_range(0, used_inodes as usize);
        ib.set_range(ipg as usize, BLOCKS_PER_GROUP as usize);
        let dirs = is_dir
            .iter()
            .skip(first_ino as usize)
            .take(ipg as usize)
            .filter(|&&x| x)
            .count() as u32;
        descs.push(GroupDesc {
            block_bitmap: geo.bbitmap_start + g,
            inode_bitmap: geo.ibitmap_start + g,
            inode_table: geo.itable_start + g * geo.itable_blocks,
            free_blocks: free_b as u32,
            free_inodes: (ipg - used_inodes) as u32,
            used_dirs: dirs,
            itable_unused: (ipg - used_inodes) as u32,
            block_bitmap_csum: bb.checksum(ids.csum_seed, BLOCKS_PER_GROUP as usize),
            inode_bitmap_csum: ib.checksum(ids.csum_seed, ipg as usize),
        });
        free_blocks += free_b;
        free_inodes += ipg - used_inodes;
        bitmaps.push(bb);
        inode_bitmaps.push(ib);
    }
    bitmaps.extend(inode_bitmaps);
    stream.skip_to(geo.bbitmap_start)?;
    for b in &bitmaps {
        stream.push(&b.0)?;
    }
    if geo.journal_blocks > 0 {
        stream.push(&journal::superblock(geo.journal_blocks as u32, &ids.uuid))?;
    }
    stream.flush()?;
    let mut gdt = Vec::with_capacity((geo.gdt_blocks * bs) as usize);
    for (g, d) in descs.iter().enumerate() {
        gdt.extend_from_slice(&d.to_bytes(g as u32, ids.csum_seed));
    }
    stream.write_at(&gdt, bs)?;
    if geo.backup {
        stream.write_at(&gdt, (backup_at + 1) * bs)?;
    }
    Ok((free_blocks, free_inodes))
}

/// Writes the superblock (and its backup in group 1).
pub(crate) fn write_superblocks(
    stream: &BlockStream,
    geo: &Geometry,
    opts: &Options,
    ids: &Ids,
    journal: &DiskInode,
    (free_blocks, free_inodes): (u64, u64),
) -> Result<(), PackError> {
    let has_journal = geo.journal_blocks > 0;
    let mut compat = COMPAT_EXT_ATTR | COMPAT_DIR_INDEX | COMPAT_SPARSE_SUPER2;
    if has_journal {
        compat |= COMPAT_HAS_JOURNAL;
    }
    let mut label = [0u8; 16];
    let l = opts.label.len().min(16);
    label[..l].copy_from_slice(&opts.label[..l]);
    // The journal inode's block map and size, copied for e2fsck's backup.
    let jnl_blocks = has_journal.then(|| {
        let mut jb = [0u32; 17];
        for (k, word) in jb.iter_mut().take(15).enumerate() {
            *word = crate::le::get_u32(&journal.i_block, 4 * k);
        }
        jb[15] = (journal.size >> 32) as u32;
        jb[16] = journal.size as u32;
        jb
    });
    let mut hash_seed = [0u8; 16];
    for (k, wd) in ids.hash_seed.iter().enumerate() {
        hash_seed[4 * k..4 * k + 4].copy_from_slice(&wd.to_le_bytes());
    }
    let sb = Superblock {
        inodes_count: (geo.inodes_per_group * geo.groups) as u32,
        blocks_count: geo.total,
        free_blocks,
        free_inodes: free_inodes as u32,
        blocks_per_group: BLOCKS_PER_GROUP as u32,
        inodes_per_group: geo.inodes_per_group as u32,
        time: opts.source_date_epoch.unwrap_or(0),
        feature_compat: compat,
        feature_incompat: INCOMPAT_FILETYPE
            | INCOMPAT_EXTENTS
            | INCOMPAT_64BIT
            | INCOMPAT_FLEX_BG
            | if opts.inline_data {
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
        uuid: ids.uuid,
        volume_name: label,
        journal_inum: if has_journal { JOURNAL_INO } else { 0 },
        hash_seed,
        jnl_blocks,
        log_groups_per_flex: 4,
        backup_bgs: [u32::from(geo.backup), 0],
        block_group_nr: 0,
    };
    stream.write_at(&sb.to_bytes(), 1024)?;
    if geo.backup {
        let copy = Superblock {
            block_group_nr: 1,
            ..sb
        };
        stream.write_at(&copy.to_bytes(), BLOCKS_PER_GROUP * BLOCK_SIZE as u64)?;
    }
    Ok(())
}
