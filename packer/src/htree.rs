//! Hashed directories (`dir_index`): the half-MD4 name hash exactly as the
//! kernel's `fs/ext4/hash.c` computes it (unsigned-char variant), and the
//! `dx_root` / `dx_node` index blocks with their `dx_tail` checksums.

use crate::crc::crc32c_raw;
use crate::dir::{self, DirEntry};
use crate::le::{put_u16, put_u32};
use crate::BLOCK_SIZE;

/// `DX_HASH_HALF_MD4` as stored in `dx_root_info` (the superblock's
/// unsigned-hash flag makes the kernel use the unsigned variant).
pub const HASH_HALF_MD4: u8 = 1;

/// Index entries in the root block: (4096 - 32 header - 8 tail) / 8.
pub const ROOT_LIMIT: usize = (BLOCK_SIZE - 32 - 8) / 8;
/// Index entries in an interior node: (4096 - 8 fake dirent - 8 tail) / 8.
pub const NODE_LIMIT: usize = (BLOCK_SIZE - 8 - 8) / 8;

fn str2hashbuf(msg: &[u8], num: usize) -> [u32; 8] {
    let len = msg.len();
    let mut pad = (len as u32) | ((len as u32) << 8);
    pad |= pad << 16;
    let mut out = [0u32; 8];
    let mut o = 0;
    let mut num = num as isize;
    let mut val = pad;
    let take = len.min(num as usize * 4);
    for (i, &c) in msg[..take].iter().enumerate() {
        val = (c as u32).wrapping_add(val << 8);
        if i % 4 == 3 {
            out[o] = val;
            o += 1;
            val = pad;
            num -= 1;
        }
    }
    num -= 1;
    if num >= 0 {
        out[o] = val;
        o += 1;
    }
    num -= 1;
    while num >= 0 {
        out[o] = pad;
        o += 1;
        num -= 1;
    }
    out
}

fn half_md4_transform(buf: &mut [u32; 4], inp: &[u32; 8]) {
    let f = |x: u32, y: u32, z: u32| z ^ (x & (y ^ z));
    let g = |x: u32, y: u32, z: u32| (x & y).wrapping_add((x ^ y) & z);
    let h = |x: u32, y: u32, z: u32| x ^ y ^ z;
    const K2: u32 = 0o13240474631;
    const K3: u32 = 0o15666365641;
    let [mut a, mut b, mut c, mut d] = *buf;
    macro_rules! round {
        ($f:expr, $a:ident, $b:ident, $c:ident, $d:ident, $x:expr, $s:expr) => {
            $a = $a
                .wrapping_add($f($b, $c, $d))
                .wrapping_add($x)
                .rotate_left($s);
        };
    }
    round!(f, a, b, c, d, inp[0], 3);
    round!(f, d, a, b, c, inp[1], 7);
    round!(f, c, d, a, b, inp[2], 11);
    round!(f, b, c, d, a, inp[3], 19);
    round!(f, a, b, c, d, inp[4], 3);
    round!(f, d, a, b, c, inp[5], 7);
    round!(f, c, d, a, b, inp[6], 11);
    round!(f, b, c, d, a, inp[7], 19);

    round!(g, a, b, c, d, inp[1].wrapping_add(K2), 3);
    round!(g, d, a, b, c, inp[3].wrapping_add(K2), 5);
    round!(g, c, d, a, b, inp[5].wrapping_add(K2), 9);
    round!(g, b, c, d, a, inp[7].wrapping_add(K2), 13);
    round!(g, a, b, c, d, inp[0].wrapping_add(K2), 3);
    round!(g, d, a, b, c, inp[2].wrapping_add(K2), 5);
    round!(g, c, d, a, b, inp[4].wrapping_add(K2), 9);
    round!(g, b, c, d, a, inp[6].wrapping_add(K2), 13);

    round!(h, a, b, c, d, inp[3].wrapping_add(K3), 3);
    round!(h, d, a, b, c, inp[7].wrapping_add(K3), 9);
    round!(h, c, d, a, b, inp[2].wrapping_add(K3), 11);
    round!(h, b, c, d, a, inp[6].wrapping_add(K3), 15);
    round!(h, a, b, c, d, inp[1].wrapping_add(K3), 3);
    round!(h, d, a, b, c, inp[5].wrapping_add(K3), 9);
    round!(h, c, d, a, b, inp[0].wrapping_add(K3), 11);
    round!(h, b, c, d, a, inp[4].wrapping_add(K3), 15);

    buf[0] = buf[0].wrapping_add(a);
    buf[1] = buf[1].wrapping_add(b);
    buf[2] = buf[2].wrapping_add(c);
    buf[3] = buf[3].wrapping_add(d);
}

/// The (major, minor) half-MD4 hash of `name` under `seed` (the superblock's
/// `s_hash_seed`; all-zero means the default constants).
pub fn half_md4(name: &[u8], seed: &[u32; 4]) -> (u32, u32) {
    let mut buf = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    if seed.iter().any(|&w| w != 0) {
        buf = *seed;
    }
    let mut p = name;
    loop {
        let inp = str2hashbuf(p, 8);
        half_md4_transform(&mut buf, &inp);
        if p.len() <= 32 {
            break;
        }
        p = &p[32..];
    }
    let mut hash = buf[1] & !1;
    if hash == 0x7FFF_FFFF << 1 {
        hash = (0x7FFF_FFFF - 1) << 1;
    }
    (hash, buf[2])
}

fn dx_seal(blk: &mut [u8], count_off: usize, limit: usize, inode_seed: u32) {
    let count = u16::from_le_bytes([blk[count_off + 2], blk[count_off + 3]]) as usize;
    let tail = count_off + limit * 8;
    put_u32(blk, tail, 0);
    put_u32(blk, tail + 4, 0);
    let crc = crc32c_raw(inode_seed, &blk[..count_off + count * 8]);
    let crc = crc32c_raw(crc, &blk[tail..tail + 8]);
    put_u32(blk, tail + 4, crc);
}

fn put_dx_entries(blk: &mut [u8], count_off: usize, limit: usize, entries: &[(u32, u32)]) {
    put_u16(blk, count_off, limit as u16);
    put_u16(blk, count_off + 2, entries.len() as u16);
    // The first entry's hash slot holds the count/limit; only its block is stored.
    put_u32(blk, count_off + 4, entries[0].1);
    for (i, &(hash, block)) in entries.iter().enumerate().skip(1) {
        put_u32(blk, count_off + 8 * i, hash);
        put_u32(blk, count_off + 8 * i + 4, block);
    }
}

/// Blocks of an indexed directory `ino` with parent `parent` holding
/// `entries` (without `.` and `..`), in logical order, sealed. `None` when
/// the directory is too big for two index levels.
pub fn build(
    ino: u32,
    parent: u32,
    entries: &[DirEntry],
    seed: &[u32; 4],
    inode_seed: u32,
) -> Option<Vec<Vec<u8>>> {
    let mut hashed: Vec<(u32, u32, &DirEntry)> = entries
        .iter()
        .map(|e| {
            let (h, m) = half_md4(&e.name, seed);
            (h, m, e)
        })
        .collect();
    hashed.sort_by(|a, b| (a.0, a.1, &a.2.name).cmp(&(b.0, b.1, &b.2.name)));
    let mut starts = Vec::new();
    let mut leaves = dir::pack_leaves(hashed.iter().map(|h| h.2), |i| starts.push(i));
    if leaves.is_empty() {
        leaves.push(dir::empty_leaf());
        starts.push(0);
    }
    // Index entries: (hash of the first name in the leaf, with the low bit
    // set when it continues a run of equal hashes from the previous leaf).
    let leaf_index: Vec<(u32, u32)> = starts
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            let block = 1 + n as u32;
            if n == 0 {
                return (0, block);
            }
            let h = hashed[i].0;
            let collides = hashed[i - 1].0 == h;
            (if collides { h | 1 } else { h }, block)
        })
        .collect();
    let nleaves = leaves.len();
    let (root_entries, nodes, levels) = if nleaves <= ROOT_LIMIT {
        (leaf_index, Vec::new(), 0u8)
    } else {
        let mut nodes = Vec::new();
        let mut root_entries = Vec::new();
        for (k, chunk) in leaf_index.chunks(NODE_LIMIT).enumerate() {
            let node_block = (1 + nleaves + k) as u32;
            let hash = if k == 0 { 0 } else { chunk[0].0 };
            root_entries.push((hash, node_block));
            let mut blk = vec![0u8; BLOCK_SIZE];
            put_u16(&mut blk, 4, BLOCK_SIZE as u16); // fake empty dirent over the block
            let mut ents = chunk.to_vec();
            ents[0].0 = 0;
            put_dx_entries(&mut blk, 8, NODE_LIMIT, &ents);
            dx_seal(&mut blk, 8, NODE_LIMIT, inode_seed);
            nodes.push(blk);
        }
        if root_entries.len() > ROOT_LIMIT {
            return None;
        }
        (root_entries, nodes, 1u8)
    };
    let mut root = vec![0u8; BLOCK_SIZE];
    dir::put_entry(&mut root, 0, ino, 12, b".", 2);
    dir::put_entry(&mut root, 12, parent, BLOCK_SIZE - 12, b"..", 2);
    // dx_root_info at 24: reserved u32, hash_version, info_length, levels, flags.
    root[28] = HASH_HALF_MD4;
    root[29] = 8;
    root[30] = levels;
    put_dx_entries(&mut root, 32, ROOT_LIMIT, &root_entries);
    dx_seal(&mut root, 32, ROOT_LIMIT, inode_seed);
    let mut out = Vec::with_capacity(1 + nleaves + nodes.len());
    out.push(root);
    for mut l in leaves {
        dir::seal_leaf(&mut l, inode_seed);
        out.push(l);
    }
    out.extend(nodes);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_even_and_seed_dependent() {
        let (a, _) = half_md4(b"hello", &[0; 4]);
        let (b, _) = half_md4(b"hello", &[1, 2, 3, 4]);
        assert_eq!(a & 1, 0);
        assert_ne!(a, b);
        // Long names go through several transform rounds.
        let long = vec![b'x'; 255];
        let (c, _) = half_md4(&long, &[0; 4]);
        let (d, _) = half_md4(&long[..254], &[0; 4]);
        assert_ne!(c, d);
    }
}
