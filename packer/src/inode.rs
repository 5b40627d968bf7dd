//! The on-disk inode (256 bytes: the 128-byte base plus 32 bytes of extra
//! fields for nanosecond timestamps, then in-inode extended attributes).

use crate::crc::crc32c_raw;
use crate::format::{FL_HUGE_FILE, INODE_SIZE};
use crate::le::{put_u16, put_u32};
use crate::meta::Timestamp;

/// `i_extra_isize`: the extra fields up to and including `i_projid`.
pub const EXTRA_ISIZE: u16 = 32;
/// Offset of the in-inode extended attribute area (its magic first).
pub const XATTR_OFFSET: usize = 128 + EXTRA_ISIZE as usize;
/// Bytes available for in-inode extended attributes, including the magic.
pub const XATTR_SPACE: usize = INODE_SIZE - XATTR_OFFSET;

/// One inode as written to the inode table.
#[derive(Debug, Clone)]
pub struct DiskInode {
    /// Mode with type bits.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Access time.
    pub atime: Timestamp,
    /// Change time.
    pub ctime: Timestamp,
    /// Modification time.
    pub mtime: Timestamp,
    /// Creation time.
    pub crtime: Timestamp,
    /// Hard link count.
    pub links: u16,
    /// 512-byte sectors used (data, tree and xattr blocks).
    pub sectors: u64,
    /// `i_flags`.
    pub flags: u32,
    /// The 60-byte `i_block` area (extent root, fast symlink, device number).
    pub i_block: [u8; 60],
    /// Shared extended attribute block, or 0.
    pub file_acl: u64,
    /// In-inode extended attribute area (magic + entries + values), at most [`XATTR_SPACE`].
    pub inline_xattrs: Vec<u8>,
}

impl Default for DiskInode {
    fn default() -> Self {
        DiskInode {
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            atime: Timestamp::default(),
            ctime: Timestamp::default(),
            mtime: Timestamp::default(),
            crtime: Timestamp::default(),
            links: 0,
            sectors: 0,
            flags: 0,
            i_block: [0; 60],
            file_acl: 0,
            inline_xattrs: Vec::new(),
        }
    }
}

/// Split a timestamp into the 32-bit seconds field and the `_extra` field
/// (two epoch bits, then nanoseconds << 2), as `ext4_encode_extra_time` does.
pub fn encode_time(t: Timestamp) -> (u32, u32) {
    let lo = t.sec as i32;
    let epoch = (((t.sec - lo as i64) >> 32) & 3) as u32;
    (lo as u32, epoch | (t.nsec.min(999_999_999) << 2))
}

/// The device number as `i_block` holds it: old 16-bit encoding in word 0
/// when major and minor fit a byte, otherwise the new encoding in word 1.
pub fn encode_dev(major: u32, minor: u32) -> [u8; 60] {
    let mut b = [0u8; 60];
    if major < 256 && minor < 256 {
        put_u32(&mut b, 0, (major << 8) | minor);
    } else {
        let v = (minor & 0xFF) | ((major & 0xFFF) << 8) | ((minor & !0xFF) << 12);
        put_u32(&mut b, 4, v);
    }
    b
}

impl DiskInode {
    /// Serialise inode number `ino`, checksummed under the file system's `csum_seed`.
    pub fn to_bytes(&self, ino: u32, csum_seed: u32) -> [u8; INODE_SIZE] {
        let mut b = [0u8; INODE_SIZE];
        put_u16(&mut b, 0x0, self.mode);
        put_u16(&mut b, 0x2, self.uid as u16);
        put_u32(&mut b, 0x4, self.size as u32);
        let (at, atx) = encode_time(self.atime);
        let (ct, ctx) = encode_time(self.ctime);
        let (mt, mtx) = encode_time(self.mtime);
        let (crt, crtx) = encode_time(self.crtime);
        put_u32(&mut b, 0x8, at);
        put_u32(&mut b, 0xC, ct);
        put_u32(&mut b, 0x10, mt);
        put_u16(&mut b, 0x18, self.gid as u16);
        put_u16(&mut b, 0x1A, self.links);
        let mut flags = self.flags;
        let mut blocks = self.sectors;
        if blocks >= 1 << 48 {
            flags |= FL_HUGE_FILE;
            blocks /= 8;
        }
        put_u32(&mut b, 0x1C, blocks as u32);
        put_u32(&mut b, 0x20, flags);
        b[0x28..0x64].copy_from_slice(&self.i_block);
        put_u32(&mut b, 0x68, self.file_acl as u32);
        put_u32(&mut b, 0x6C, (self.size >> 32) as u32);
        put_u16(&mut b, 0x74, (blocks >> 32) as u16);
        put_u16(&mut b, 0x76, (self.file_acl >> 32) as u16);
        put_u16(&mut b, 0x78, (self.uid >> 16) as u16);
        put_u16(&mut b, 0x7A, (self.gid >> 16) as u16);
        put_u16(&mut b, 0x80, EXTRA_ISIZE);
        put_u32(&mut b, 0x84, ctx);
        put_u32(&mut b, 0x88, mtx);
        put_u32(&mut b, 0x8C, atx);
        put_u32(&mut b, 0x90, crt);
        put_u32(&mut b, 0x94, crtx);
        debug_assert!(self.inline_xattrs.len() <= XATTR_SPACE);
        b[XATTR_OFFSET..XATTR_OFFSET + self.inline_xattrs.len()]
            .copy_from_slice(&self.inline_xattrs);
        let seed = inode_seed(csum_seed, ino, 0);
        let crc = crc32c_raw(seed, &b);
        put_u16(&mut b, 0x7C, crc as u16);
        put_u16(&mut b, 0x82, (crc >> 16) as u16);
        b
    }
}

/// The per-inode checksum seed: crc32c of the inode number and generation.
pub fn inode_seed(csum_seed: u32, ino: u32, generation: u32) -> u32 {
    crc32c_raw(
        crc32c_raw(csum_seed, &ino.to_le_bytes()),
        &generation.to_le_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(lo: u32, extra: u32) -> Timestamp {
        Timestamp {
            sec: lo as i32 as i64 + (((extra & 3) as i64) << 32),
            nsec: extra >> 2,
        }
    }

    #[test]
    fn timestamps_round_trip_before_1970_and_after_2038() {
        for sec in [
            -(1i64 << 31),
            -1,
            0,
            1,
            (1 << 31) - 1,
            1 << 31,
            4_000_000_000,
            (1 << 33) + 5,
        ] {
            let t = Timestamp {
                sec,
                nsec: 123_456_789,
            };
            let (lo, x) = encode_time(t);
            assert_eq!(decode(lo, x), t, "sec {sec}");
        }
    }

    #[test]
    fn big_device_numbers_use_the_new_encoding() {
        let b = encode_dev(259, 70000);
        assert_eq!(crate::le::get_u32(&b, 0), 0);
        let v = crate::le::get_u32(&b, 4);
        let major = (v & 0xFFF00) >> 8;
        let minor = (v & 0xFF) | ((v >> 12) & 0xFFF00);
        assert_eq!((major, minor), (259, 70000));
    }
}
