//! How big the image is and where its fixed metadata goes, computed from a
//! few numbers and nothing else (as hcsshim's compactext4 does): no I/O, so
//! it is tested on its own.
//!
//! Once file data, directories and extent trees have streamed out (up to
//! `meta_end`), one run follows them: the inode tables of all groups, the
//! block bitmaps, the inode bitmaps and the journal, moved past group 1's
//! backup superblock if they would overlap it; then the free space asked for.

use crate::error::PackError;
use crate::format::{BLOCKS_PER_GROUP, BLOCK_SIZE, DESC_SIZE, INODES_PER_BLOCK};
use crate::journal;
use crate::options::Options;

/// Smallest last group worth having, in blocks.
const MIN_LAST_GROUP: u64 = 1024;

/// What the layout needs room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Needs {
    /// The first block after everything streamed so far.
    pub meta_end: u64,
    /// Inodes in use, the reserved ones included.
    pub inodes: u64,
    /// Bytes of file data blocks (the default free space is a quarter of it).
    pub data_block_bytes: u64,
    /// Blocks nothing may be streamed into (group 1's backup), if any.
    pub hole: Option<(u64, u64)>,
    /// Blocks reserved for group descriptors after the superblock.
    pub gdt_reserved: u64,
}

/// Where the fixed metadata goes, and how big the image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Block groups.
    pub groups: u64,
    /// Inodes per group (a multiple of the inodes per table block).
    pub inodes_per_group: u64,
    /// Inode table blocks per group.
    pub itable_blocks: u64,
    /// Image size in blocks.
    pub total: u64,
    /// First block of the inode tables (all groups', back to back).
    pub itable_start: u64,
    /// First block bitmap (one block per group).
    pub bbitmap_start: u64,
    /// First inode bitmap (one block per group).
    pub ibitmap_start: u64,
    /// First journal block.
    pub journal_start: u64,
    /// Journal blocks (0 for none).
    pub journal_blocks: u64,
    /// The block after the journal: everything from here on is free.
    pub used_end: u64,
    /// Group descriptor blocks in use.
    pub gdt_blocks: u64,
    /// Whether group 1 holds a backup superblock and descriptors.
    pub backup: bool,
}

/// Whether a run of `n` blocks at `at` overlaps `hole`.
pub(crate) fn hits_hole(hole: Option<(u64, u64)>, at: u64, n: u64) -> bool {
    hole.is_some_and(|(s, e)| n > 0 && at < e && at + n > s)
}

/// Where a run of `n` blocks wanted at `at` can go: `at`, or the end of
/// `hole` if it would overlap it.
pub(crate) fn past_hole(hole: Option<(u64, u64)>, at: u64, n: u64) -> u64 {
    match hole {
        Some((_, e)) if hits_hole(hole, at, n) => e,
        _ => at,
    }
}

/// Sizes the image for `needs` as `opts` asks: free space (default max(64
/// MiB, 25% of the data)), free inodes (default one per 16 KiB free, at
/// least 16384), the journal (mke2fs's default sizes), or an exact size.
pub(crate) fn plan(needs: &Needs, opts: &Options) -> Result<Geometry, PackError> {
    let bs = BLOCK_SIZE as u64;
    let tight = opts.read_only_tight;
    let free_bytes = opts.free_bytes.unwrap_or(if tight {
        0
    } else {
        (64u64 << 20).max(needs.data_block_bytes / 4)
    });
    let free_blocks_wanted = free_bytes.div_ceil(bs);
    let free_inodes_wanted = opts.free_inodes.unwrap_or(if tight {
        0
    } else {
        (free_bytes / 16384).max(16384)
    });
    let want_inodes = needs.inodes + free_inodes_wanted;
    let fixed = opts.size.map(|s| s / bs);
    let journal_blocks: u64 = if !opts.journal || tight {
        0
    } else if let Some(b) = opts.journal_bytes {
        (b / bs).clamp(1024, 32768)
    } else {
        journal::default_blocks(fixed.unwrap_or(needs.meta_end + free_blocks_wanted)) as u64
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
        let start = past_hole(needs.hole, needs.meta_end, run);
        let backup_blocks = 1 + (groups * DESC_SIZE as u64).div_ceil(bs);
        let skipped_free = (start - needs.meta_end).saturating_sub(backup_blocks);
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
    if gdt_blocks > needs.gdt_reserved {
        return Err(PackError::TooLarge(total * bs));
    }
    let bbitmap_start = run_start + groups * itb;
    let ibitmap_start = bbitmap_start + groups;
    let journal_start = ibitmap_start + groups;
    Ok(Geometry {
        groups,
        inodes_per_group: ipg,
        itable_blocks: itb,
        total,
        itable_start: run_start,
        bbitmap_start,
        ibitmap_start,
        journal_start,
        journal_blocks,
        used_end: journal_start + journal_blocks,
        gdt_blocks,
        // sparse_super2 with one backup, in group 1 (as mke2fs's first of two).
        backup: groups > 1 && total >= BLOCKS_PER_GROUP + 1 + gdt_blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image with `meta_end` blocks streamed and `inodes` inodes, and a
    /// writer that reserved descriptor room for 1 TiB (the default).
    fn needs(meta_end: u64, inodes: u64) -> Needs {
        Needs {
            meta_end,
            inodes,
            data_block_bytes: (meta_end - 129) * 4096,
            hole: Some((BLOCKS_PER_GROUP, BLOCKS_PER_GROUP + 129)),
            gdt_reserved: 128,
        }
    }

    /// The invariants every geometry keeps.
    fn check(g: &Geometry, n: &Needs) {
        assert_eq!(g.groups, g.total.div_ceil(BLOCKS_PER_GROUP), "{g:?}");
        assert_eq!(g.inodes_per_group % INODES_PER_BLOCK, 0);
        assert!(g.inodes_per_group <= BLOCKS_PER_GROUP);
        assert!(g.inodes_per_group * g.groups >= n.inodes);
        assert_eq!(g.itable_blocks * INODES_PER_BLOCK, g.inodes_per_group);
        assert!(g.itable_start >= n.meta_end);
        assert!(!hits_hole(
            n.hole,
            g.itable_start,
            g.used_end - g.itable_start
        ));
        assert!(g.used_end <= g.total);
    }

    #[test]
    fn a_small_tree_gets_one_group_free_space_inodes_and_a_journal() {
        let n = needs(300, 500);
        let g = plan(&n, &Options::default()).unwrap();
        check(&g, &n);
        // 64 MiB free (16384 blocks) and 4 MiB of journal (1024 blocks).
        assert_eq!((g.groups, g.journal_blocks), (1, 1024));
        assert_eq!(g.inodes_per_group, 16_896); // 500 + 16384, rounded up to 16 a block
        assert_eq!(g.itable_start, 300);
        assert_eq!(g.used_end, 300 + 1056 + 2 + 1024);
        assert_eq!(g.total, g.used_end + 16_384);
        assert!(!g.backup);
    }

    #[test]
    fn read_only_tight_has_no_journal_and_no_headroom() {
        let n = needs(300, 500);
        let opts = Options {
            read_only_tight: true,
            ..Options::default()
        };
        let g = plan(&n, &opts).unwrap();
        check(&g, &n);
        assert_eq!(g.journal_blocks, 0);
        assert_eq!(g.inodes_per_group, 512);
        // One group, so the last-group minimum is the whole image's.
        assert_eq!(g.total, 1024);
    }

    #[test]
    fn metadata_that_would_cover_the_backup_moves_past_it() {
        let n = needs(BLOCKS_PER_GROUP - 10, 1000);
        let g = plan(&n, &Options::default()).unwrap();
        check(&g, &n);
        assert_eq!(g.itable_start, BLOCKS_PER_GROUP + 129);
        assert!(g.backup);
        assert_eq!(g.groups, g.total.div_ceil(BLOCKS_PER_GROUP));
    }

    #[test]
    fn many_inodes_spread_over_more_groups() {
        let n = needs(1000, 100_000);
        let opts = Options {
            read_only_tight: true,
            ..Options::default()
        };
        let g = plan(&n, &opts).unwrap();
        check(&g, &n);
        assert!(g.groups >= 4, "{g:?}");
    }

    #[test]
    fn an_exact_size_is_kept_or_refused() {
        let n = needs(300, 500);
        let opts = |size| Options {
            size: Some(size),
            ..Options::default()
        };
        let g = plan(&n, &opts(256 << 20)).unwrap();
        check(&g, &n);
        assert_eq!(g.total, (256 << 20) / 4096);
        assert_eq!((g.groups, g.journal_blocks), (2, 4096));
        assert!(g.backup);
        match plan(&n, &opts(1 << 20)) {
            Err(PackError::TooSmall { needed, size }) => {
                assert_eq!(size, 1 << 20);
                assert!(needed > size);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_image_past_the_reserved_descriptors_is_refused() {
        let mut n = needs(300, 500);
        n.gdt_reserved = 1;
        let opts = Options {
            size: Some(65 << 30),
            ..Options::default()
        };
        assert!(matches!(plan(&n, &opts), Err(PackError::TooLarge(_))));
    }

    #[test]
    fn holes_are_stepped_over_only_when_hit() {
        let hole = Some((10, 20));
        assert_eq!(past_hole(hole, 0, 10), 0);
        assert_eq!(past_hole(hole, 0, 11), 20);
        assert_eq!(past_hole(hole, 19, 1), 20);
        assert_eq!(past_hole(hole, 20, 5), 20);
        assert_eq!(past_hole(None, 15, 5), 15);
        assert_eq!(past_hole(hole, 15, 0), 15);
    }
}
