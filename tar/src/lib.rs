//! `d2v-tar`: one strict reader for every tar d2v takes from outside: OCI
//! layer blobs (the FUSE index, and so `d2v mount`, `d2v pack NAME` and
//! import), `d2v pack --from-tar`, and ADD's local archives.
//!
//! The modules mirror the format, one concept each: [`header`] (the 512-byte
//! block), [`pax`] (extended records and their values), [`sparse`] (GNU
//! sparse maps), [`path`] (entry paths and link targets), [`reader`] (headers
//! in sequence → [`Entry`]), [`source`] (where the bytes come from) and
//! [`archive`] (what extracting the entries in order leaves: later entries
//! win).
//!
//! It reads ustar, v7, GNU (long names and links, base-256 numbers, old `S`
//! sparse files with extension blocks) and PAX (`path`, `linkpath`, `size`,
//! ids, fractional times, `SCHILY.xattr.*`, `LIBARCHIVE.xattr.*`, GNU sparse
//! 0.0, 0.1 and 1.0). It refuses, naming the entry: a cut header or data, a
//! bad checksum, numbers that do not parse or do not fit (a PAX
//! `uid=4294967296` is an error, not uid 0), absolute paths and `..`
//! components (unless [`PathRule::Clean`] resolves them), NUL bytes
//! in paths, names over 255 bytes, symlink targets that are empty or over
//! 4095 bytes, hard links to anything but an earlier non-directory, entries
//! under a non-directory, unordered sparse maps. Extension headers are
//! bounded (16 MiB each, 64 MiB per entry); no untrusted size sizes an
//! allocation before the bytes are there.
//!
//! Why not the `tar` crate for layers: it splits PAX records on newlines, so
//! a binary value (a `security.capability` or ACL xattr holding a `0x0a`
//! byte) is cut short or misread; it does not read `LIBARCHIVE.xattr.*`; it
//! expands sparse files instead of reporting their runs; and it cannot say
//! where an entry's data lies without reading it, which the index (zero-copy
//! over an mmapped blob) and `pack --from-tar` (`copy_file_range` by offset)
//! both need. PAX records here are split by their length prefixes.
//!
//! ```
//! use d2v_tar::{Archive, Kind};
//! # let mut t = Vec::new();
//! # t.extend_from_slice(&{ let mut s = [0u8; 512]; s[..4].copy_from_slice(b"file");
//! #   s[100..107].copy_from_slice(b"0000644"); s[124..135].copy_from_slice(b"00000000002");
//! #   s[156] = b'0'; s[148..156].fill(b' ');
//! #   let sum: u32 = s.iter().map(|&b| b as u32).sum();
//! #   s[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes()); s });
//! # t.extend_from_slice(b"hi"); t.resize(2048, 0);
//! let archive = Archive::from_slice(&t)?;
//! for m in archive.members() {
//!     let e = archive.entry(m.inode);
//!     if e.kind == Kind::File {
//!         // The bytes are at e.data_offset..e.data_offset + e.data_len.
//!         assert_eq!(&t[e.data_offset as usize..][..e.data_len as usize], b"hi");
//!     }
//! }
//! # Ok::<(), d2v_tar::TarError>(())
//! ```

#![warn(missing_docs)]

pub mod archive;
mod contents;
pub mod entry;
pub mod error;
mod fields;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod header;
pub mod path;
pub mod pax;
pub mod reader;
pub mod source;
pub mod sparse;

pub use archive::{Archive, Builder, Member};
pub use contents::Contents;
pub use entry::{DataRun, Entry, Kind, SparseRun, Time};
pub use error::TarError;
pub use path::{normalize, PathRule};
pub use reader::Reader;
pub use source::{FileSource, ReadSource, SliceSource, Source};
