//! Feeding an [`Ext4Writer`](crate::Ext4Writer) from outside: a directory on
//! disk ([`pack_dir`]) or a tar archive ([`pack_tar_file`], [`pack_tar`]).

mod dir;
mod tar;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

pub use dir::{dev_split, metadata_of, pack_dir, pack_dir_with_progress};
pub use tar::{pack_tar, pack_tar_file, pack_tar_with_progress};

/// Files smaller than this are read and written rather than copied by range.
const SMALL_FILE: u64 = 256 << 10;

/// Whether ext4 can store an attribute of this name.
fn storable_xattr(name: &[u8]) -> bool {
    [
        &b"user."[..],
        b"trusted.",
        b"security.",
        b"system.posix_acl_access",
        b"system.posix_acl_default",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// `OsStr` helper for callers building paths from bytes.
pub fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}
