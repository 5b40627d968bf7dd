//! Extent trees: the root lives in the inode's 60-byte `i_block`, deeper
//! levels in 4 KiB blocks with an `ext4_extent_tail` checksum.

use crate::crc::crc32c_raw;
use crate::le::{put_u16, put_u32};
use crate::BLOCK_SIZE;

/// Extent header magic.
const MAGIC: u16 = 0xF30A;
/// Longest initialised extent, in blocks.
pub const MAX_LEN: u32 = 32768;
/// Entries in the inode root.
const ROOT_ENTRIES: usize = 4;
/// Entries in one tree block: (4096 - 12 header - 4 tail) / 12.
const BLOCK_ENTRIES: usize = (BLOCK_SIZE - 12) / 12;

/// A run of `len` blocks of a file: logical block `logical` onwards is stored
/// at physical block `physical` onwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First logical block.
    pub logical: u32,
    /// First physical block.
    pub physical: u64,
    /// Length in blocks, `1..=MAX_LEN`.
    pub len: u32,
}

/// Append `len` blocks at (`logical`, `physical`) to `list`, merging with
/// the last extent when contiguous and splitting at [`MAX_LEN`].
pub fn push(list: &mut Vec<Extent>, mut logical: u32, mut physical: u64, mut len: u32) {
    while len > 0 {
        if let Some(last) = list.last_mut() {
            if last.logical + last.len == logical
                && last.physical + last.len as u64 == physical
                && last.len < MAX_LEN
            {
                let take = len.min(MAX_LEN - last.len);
                last.len += take;
                logical += take;
                physical += take as u64;
                len -= take;
                continue;
            }
        }
        let take = len.min(MAX_LEN);
        list.push(Extent {
            logical,
            physical,
            len: take,
        });
        logical += take;
        physical += take as u64;
        len -= take;
    }
}

/// Number of tree blocks (beyond the inode root) needed for `n` extents.
#[cfg(test)]
pub fn tree_blocks(n: usize) -> usize {
    let mut total = 0;
    let mut count = n;
    while count > ROOT_ENTRIES {
        count = count.div_ceil(BLOCK_ENTRIES);
        total += count;
    }
    total
}

/// Entry of one level: first logical block and 12 serialised bytes.
type Entry = (u32, [u8; 12]);

fn header(buf: &mut [u8], entries: usize, max: usize, depth: u16) {
    put_u16(buf, 0, MAGIC);
    put_u16(buf, 2, entries as u16);
    put_u16(buf, 4, max as u16);
    put_u16(buf, 6, depth);
    put_u32(buf, 8, 0);
}

/// Build the tree for `extents` (sorted by logical block). Tree blocks are
/// numbered by `alloc`, called once per block; they come back with their
/// contents, checksummed under `inode_seed`. Returns the `i_block` root.
pub fn build(
    extents: &[Extent],
    inode_seed: u32,
    mut alloc: impl FnMut() -> u64,
) -> ([u8; 60], Vec<(u64, Vec<u8>)>) {
    let mut level: Vec<Entry> = extents
        .iter()
        .map(|e| {
            let mut b = [0u8; 12];
            put_u32(&mut b, 0, e.logical);
            put_u16(&mut b, 4, e.len as u16);
            put_u16(&mut b, 6, (e.physical >> 32) as u16);
            put_u32(&mut b, 8, e.physical as u32);
            (e.logical, b)
        })
        .collect();
    let mut depth = 0u16;
    let mut blocks = Vec::new();
    while level.len() > ROOT_ENTRIES {
        let mut next = Vec::with_capacity(level.len().div_ceil(BLOCK_ENTRIES));
        for chunk in level.chunks(BLOCK_ENTRIES) {
            let mut blk = vec![0u8; BLOCK_SIZE];
            header(&mut blk, chunk.len(), BLOCK_ENTRIES, depth);
            for (i, (_, e)) in chunk.iter().enumerate() {
                blk[12 + 12 * i..24 + 12 * i].copy_from_slice(e);
            }
            let tail = 12 + 12 * BLOCK_ENTRIES;
            let crc = crc32c_raw(inode_seed, &blk[..tail]);
            put_u32(&mut blk, tail, crc);
            let nr = alloc();
            let mut idx = [0u8; 12];
            put_u32(&mut idx, 0, chunk[0].0);
            put_u32(&mut idx, 4, nr as u32);
            put_u16(&mut idx, 8, (nr >> 32) as u16);
            next.push((chunk[0].0, idx));
            blocks.push((nr, blk));
        }
        level = next;
        depth += 1;
    }
    let mut root = [0u8; 60];
    header(&mut root, level.len(), ROOT_ENTRIES, depth);
    for (i, (_, e)) in level.iter().enumerate() {
        root[12 + 12 * i..24 + 12 * i].copy_from_slice(e);
    }
    (root, blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_merges_contiguous_runs_and_splits_long_ones() {
        let mut l = Vec::new();
        push(&mut l, 0, 100, 10);
        push(&mut l, 10, 110, 5);
        assert_eq!(
            l,
            vec![Extent {
                logical: 0,
                physical: 100,
                len: 15
            }]
        );
        push(&mut l, 20, 115, 1); // hole before: new extent
        assert_eq!(l.len(), 2);
        let mut big = Vec::new();
        push(&mut big, 0, 0, 70000);
        assert_eq!(
            big.iter().map(|e| e.len).collect::<Vec<_>>(),
            vec![32768, 32768, 4464]
        );
    }

    #[test]
    fn deep_trees_have_minimal_depth() {
        let ext: Vec<Extent> = (0..200_000u32)
            .map(|i| Extent {
                logical: 2 * i,
                physical: 10 + 2 * i as u64,
                len: 1,
            })
            .collect();
        let mut next = 1_000_000u64;
        let (root, blocks) = build(&ext, 7, || {
            next += 1;
            next
        });
        assert_eq!(blocks.len(), tree_blocks(ext.len()));
        // 200000 leaves entries -> 589 leaves -> 2 index blocks -> root depth 2.
        assert_eq!(u16::from_le_bytes([root[6], root[7]]), 2);
        assert_eq!(u16::from_le_bytes([root[2], root[3]]), 2);
    }
}
