//! The reader's fuzz target, bounded so it runs in CI: archives of the shared
//! fixture set with header fields rewritten (and the checksum fixed, so the
//! mutation reaches the parser behind it), PAX bodies and data scribbled on,
//! and cuts anywhere. Every front end must return, without panicking, and
//! the slice, file and stream readers must agree.

use std::collections::HashMap;
use std::io::Read;

use d2v_tar::fixtures::{self, seal};
use d2v_tar::header::{Header, BLOCK};
use d2v_tar::{Archive, Kind, Reader, TarError};
use proptest::prelude::*;

/// What a front end makes of an archive: every surviving path with its inode
/// entry's metadata and contents, or just "an error".
fn summary(archive: &Archive, data: impl Fn(&d2v_tar::Entry) -> Vec<u8>) -> Vec<String> {
    archive
        .members()
        .iter()
        .map(|m| {
            let e = archive.entry(m.entry);
            let i = archive.entry(m.inode);
            let body = if i.kind == Kind::File {
                data(i)
            } else {
                Vec::new()
            };
            format!(
                "{:?} {:?} {:?} {:o} {} {} {:?} {:?} {:?} {:?} {} {:?}",
                e.path,
                i.kind,
                i.link,
                i.mode,
                i.uid,
                i.gid,
                i.mtime,
                i.dev,
                i.xattrs,
                i.sparse,
                i.size,
                body
            )
        })
        .collect()
}

/// A file's contents, holes as zeros; for a huge sparse file just its stored
/// bytes (a mutated size must not make the test allocate it).
fn contents(bytes: &[u8], e: &d2v_tar::Entry) -> Vec<u8> {
    if e.size > BIG {
        return bytes[e.data_offset as usize..][..e.data_len as usize].to_vec();
    }
    let mut v = vec![0u8; e.size as usize];
    for r in e.data_runs() {
        v[r.logical as usize..][..r.len as usize]
            .copy_from_slice(&bytes[r.archive as usize..][..r.len as usize]);
    }
    v
}

/// Files larger than this are compared by their stored bytes.
const BIG: u64 = 1 << 20;

fn by_slice(bytes: &[u8]) -> Result<Vec<String>, TarError> {
    Archive::from_slice(bytes).map(|a| summary(&a, |e| contents(bytes, e)))
}

fn by_stream(bytes: &[u8]) -> Result<Vec<String>, TarError> {
    let mut r = Reader::from_read(bytes);
    let mut b = d2v_tar::Builder::default();
    let mut data = HashMap::new();
    while let Some(e) = r.next_entry()? {
        if e.kind == Kind::File {
            let mut v = Vec::new();
            if e.size > BIG {
                let mut buf = [0u8; 4096];
                loop {
                    let n = r.read_data(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    v.extend_from_slice(&buf[..n]);
                }
            } else {
                r.contents(&e)
                    .read_to_end(&mut v)
                    .map_err(|source| TarError::Io { offset: 0, source })?;
            }
            data.insert(e.header_offset, v);
        }
        b.add(e)?;
    }
    Ok(summary(&b.finish(), |e| data[&e.header_offset].clone()))
}

/// A mutation of a fixture.
#[derive(Debug, Clone)]
enum Edit {
    /// Set a byte of the n-th header block and fix its checksum.
    Header { block: usize, at: usize, byte: u8 },
    /// Write a number into a numeric header field and fix the checksum.
    Field {
        block: usize,
        field: usize,
        text: String,
    },
    /// Set any byte (headers then fail their checksum; bodies do not).
    Byte { at: usize, byte: u8 },
    /// Cut the archive.
    Cut { at: usize },
    /// Insert a PAX header with one record before the n-th header.
    Pax {
        block: usize,
        key: usize,
        value: String,
    },
}

/// The keys the reader interprets, plus one it ignores.
const KEYS: &[&str] = &[
    "path",
    "linkpath",
    "size",
    "uid",
    "gid",
    "mtime",
    "atime",
    "ctime",
    "GNU.sparse.major",
    "GNU.sparse.minor",
    "GNU.sparse.name",
    "GNU.sparse.realsize",
    "GNU.sparse.size",
    "GNU.sparse.map",
    "GNU.sparse.offset",
    "GNU.sparse.numbytes",
    "SCHILY.xattr.user.a",
    "LIBARCHIVE.xattr.user.b",
    "comment",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..64usize, 0..BLOCK, any::<u8>()).prop_map(|(block, at, byte)| Edit::Header {
            block,
            at,
            byte
        }),
        (0..64usize, 0..6usize, "[0-7 ]{0,12}|[0-9]{1,20}")
            .prop_map(|(block, field, text)| Edit::Field { block, field, text }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Byte { at, byte }),
        any::<usize>().prop_map(|at| Edit::Cut { at }),
        (
            0..64usize,
            0..KEYS.len(),
            "[0-9]{0,6}|[0-9,]{0,12}|[a-z./]{0,8}|-?[0-9]{1,3}\\.[0-9]{0,12}"
        )
            .prop_map(|(block, key, value)| Edit::Pax { block, key, value }),
    ]
}

/// Offsets of the blocks that are headers in the original archive.
fn header_blocks(bytes: &[u8]) -> Vec<usize> {
    bytes
        .chunks_exact(BLOCK)
        .enumerate()
        .filter(|(_, b)| {
            let b: &[u8; BLOCK] = (*b).try_into().unwrap();
            let h = Header::new(b);
            !h.is_zero() && h.checksum_ok()
        })
        .map(|(i, _)| i * BLOCK)
        .collect()
}

fn apply(bytes: &mut Vec<u8>, headers: &[usize], e: &Edit) {
    let reseal = |bytes: &mut Vec<u8>, off: usize| {
        let b: &mut [u8; BLOCK] = (&mut bytes[off..off + BLOCK]).try_into().unwrap();
        seal(b);
    };
    match e {
        Edit::Header { block, at, byte } if !headers.is_empty() => {
            let off = headers[block % headers.len()];
            if off + BLOCK <= bytes.len() {
                bytes[off + at] = *byte;
                reseal(bytes, off);
            }
        }
        Edit::Field { block, field, text } if !headers.is_empty() => {
            let off = headers[block % headers.len()];
            let ranges = [100..108, 108..116, 116..124, 124..136, 136..148, 329..337];
            let r = ranges[*field].clone();
            if off + BLOCK <= bytes.len() {
                let f = &mut bytes[off + r.start..off + r.end];
                f.fill(0);
                let n = text.len().min(f.len());
                f[..n].copy_from_slice(&text.as_bytes()[..n]);
                reseal(bytes, off);
            }
        }
        Edit::Byte { at, byte } if !bytes.is_empty() => {
            let n = bytes.len();
            bytes[at % n] = *byte;
        }
        Edit::Pax { block, key, value } if !headers.is_empty() => {
            let off = headers[block % headers.len()].min(bytes.len());
            let mut t = fixtures::Tar::new();
            t.pax(&[(KEYS[*key].as_bytes(), value.as_bytes())]);
            bytes.splice(off..off, t.bytes);
        }
        Edit::Cut { at } => {
            let n = bytes.len() + 1;
            bytes.truncate(at % n);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_fixtures_never_panic_and_all_readers_agree(
        pick in any::<usize>(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let set = fixtures::all();
        let mut bytes = set[pick % set.len()].bytes.clone();
        let headers = header_blocks(&bytes);
        for e in &edits {
            apply(&mut bytes, &headers, e);
        }
        let slice = by_slice(&bytes);
        let stream = by_stream(&bytes);
        let dir = tempfile_dir();
        let path = dir.join(format!("{}.tar", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let by_file = Archive::read(&mut Reader::from_file(&file).unwrap()).map(|a| summary(&a, |e| contents(&bytes, e)));
        std::fs::remove_file(&path).unwrap();
        match (&slice, &stream, &by_file) {
            (Ok(a), Ok(b), Ok(c)) => {
                prop_assert_eq!(a, b);
                prop_assert_eq!(a, c);
            }
            (Err(_), Err(_), Err(_)) => {}
            _ => prop_assert!(false, "readers disagree: slice {:?}, stream {:?}, file {:?}", slice.map(|_| ()), stream.map(|_| ()), by_file.map(|_| ())),
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = by_slice(&bytes);
        let _ = by_stream(&bytes);
    }
}

/// Cases per run: 600 in CI, more with `D2V_FUZZ_CASES=N` for a longer search.
fn cases() -> u32 {
    std::env::var("D2V_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600)
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join("d2v-tar-fuzz");
    std::fs::create_dir_all(&d).unwrap();
    d
}
