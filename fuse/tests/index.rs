//! Layer index: tar dialects in, typed errors for bad input, and a format
//! that refuses to be misread.

mod common;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use common::*;
use d2v_fuse::{EntryKind, IndexError, LayerIndex};

/// A raw 512-byte ustar header with arbitrary name bytes.
fn header(name: &[u8], typeflag: u8, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(1_000_000);
    h.set_entry_type(tar::EntryType::new(typeflag));
    let b = h.as_mut_bytes();
    b[..name.len()].copy_from_slice(name);
    b[157..157 + link.len()].copy_from_slice(link);
    h.set_cksum();
    *h.as_bytes()
}

fn pad(v: &mut Vec<u8>) {
    let n = v.len().next_multiple_of(512);
    v.resize(n, 0);
}

fn entry(out: &mut Vec<u8>, name: &[u8], typeflag: u8, data: &[u8], link: &[u8]) {
    out.extend_from_slice(&header(name, typeflag, data.len() as u64, link));
    out.extend_from_slice(data);
    pad(out);
}

fn pax(out: &mut Vec<u8>, records: &[(&[u8], &[u8])]) {
    let mut body = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len.to_string().len() + rest != len {
            len += 1;
        }
        body.extend_from_slice(format!("{len} ").as_bytes());
        body.extend_from_slice(k);
        body.push(b'=');
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    entry(out, b"PaxHeaders/x", b'x', &body, b"");
}

fn finish(mut v: Vec<u8>) -> Vec<u8> {
    v.extend_from_slice(&[0u8; 1024]);
    v
}

fn build(dir: &Path, bytes: &[u8]) -> Result<LayerIndex, IndexError> {
    let blob = dir.join("layer.tar");
    fs::write(&blob, bytes).unwrap();
    let idx = dir.join("layer.idx");
    LayerIndex::build(&blob, &idx)?;
    LayerIndex::open(&blob, &idx)
}

#[test]
fn truncated_tar_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = Vec::new();
    entry(&mut v, b"file", b'0', &[7u8; 1000], b"");
    let whole = finish(v);
    for cut in [300, 512 + 700] {
        let e = build(dir.path(), &whole[..cut]).unwrap_err();
        assert!(matches!(e, IndexError::Truncated { .. }), "cut {cut}: {e}");
    }
    assert!(build(dir.path(), &whole).is_ok());
}

#[test]
fn bad_header_checksum_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = Vec::new();
    entry(&mut v, b"ok", b'0', b"x", b"");
    entry(&mut v, b"corrupt", b'0', b"y", b"");
    let mut bytes = finish(v);
    bytes[1024 + 3] ^= 0x20; // flip a bit in the second header's name
    match build(dir.path(), &bytes).unwrap_err() {
        IndexError::BadChecksum { offset } => assert_eq!(offset, 1024),
        e => panic!("wrong error: {e}"),
    }
}

#[test]
fn parent_and_absolute_paths_are_rejected_naming_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    for (name, want) in [
        (&b"a/../../etc/shadow"[..], "parent"),
        (b"/etc/shadow", "absolute"),
    ] {
        let mut v = Vec::new();
        entry(&mut v, name, b'0', b"x", b"");
        let e = build(dir.path(), &finish(v)).unwrap_err();
        match (&e, want) {
            (IndexError::ParentComponent { path }, "parent")
            | (IndexError::AbsolutePath { path }, "absolute") => assert_eq!(path, name),
            _ => panic!("{name:?}: wrong error {e}"),
        }
        assert!(e.to_string().contains("etc/shadow"), "{e}");
    }
}

#[test]
fn hard_links_to_missing_or_outside_targets_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = Vec::new();
    entry(&mut v, b"present", b'0', b"x", b"");
    entry(&mut v, b"link", b'1', b"", b"absent");
    match build(dir.path(), &finish(v)).unwrap_err() {
        IndexError::HardLinkMissing { path, target } => {
            assert_eq!(
                (path.as_slice(), target.as_slice()),
                (&b"link"[..], &b"absent"[..])
            )
        }
        e => panic!("wrong error: {e}"),
    }
    let mut v = Vec::new();
    entry(&mut v, b"link", b'1', b"", b"../../etc/passwd");
    assert!(matches!(
        build(dir.path(), &finish(v)).unwrap_err(),
        IndexError::HardLinkOutside { .. }
    ));
    // A link may not come before its target either.
    let mut v = Vec::new();
    entry(&mut v, b"link", b'1', b"", b"later");
    entry(&mut v, b"later", b'0', b"x", b"");
    assert!(matches!(
        build(dir.path(), &finish(v)).unwrap_err(),
        IndexError::HardLinkMissing { .. }
    ));
}

#[test]
fn pax_records_set_path_times_ids_and_xattrs() {
    let dir = tempfile::tempdir().unwrap();
    let cap: &[u8] = &[
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let long = format!("{}/{}", "p".repeat(150), "q".repeat(150));
    let mut v = Vec::new();
    pax(
        &mut v,
        &[
            (b"path", long.as_bytes()),
            (b"mtime", b"1700000000.987654321"),
            (b"uid", b"3000000"),
            (b"gid", b"4000000"),
            (b"SCHILY.xattr.security.capability", cap),
            (b"SCHILY.xattr.user.nl", b"line\nbreak"),
            (b"LIBARCHIVE.xattr.user.a%3Db", b"AAEC/w=="),
        ],
    );
    entry(&mut v, b"ignored-short-name", b'0', b"data", b"");
    let idx = build(dir.path(), &finish(v)).unwrap();
    let e = idx.find(long.as_bytes()).expect("pax path used");
    assert_eq!(e.mtime(), (1_700_000_000, 987_654_321));
    assert_eq!((e.uid(), e.gid()), (3_000_000, 4_000_000));
    let x: Vec<(&[u8], &[u8])> = e.xattrs().collect();
    assert!(x.contains(&(&b"security.capability"[..], cap)));
    assert!(x.contains(&(&b"user.nl"[..], &b"line\nbreak"[..])));
    assert!(x.contains(&(&b"user.a=b"[..], &[0u8, 1, 2, 255][..])));
    assert_eq!(e.contiguous_data().unwrap(), b"data");
}

#[test]
fn entry_types_paths_and_metadata_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = Vec::new();
    entry(&mut v, b"./", b'5', b"", b"");
    entry(&mut v, b"./d/", b'5', b"", b"");
    entry(&mut v, b"./d/caf\xe9", b'0', b"latin1", b"");
    entry(&mut v, b"./d/sym", b'2', b"", b"../nowhere");
    entry(&mut v, b"./d/hard", b'1', b"", b"./d/caf\xe9");
    entry(&mut v, b"./d/fifo", b'6', b"", b"");
    let mut dev = header(b"./d/tty", b'3', 0, b"");
    dev[329..337].copy_from_slice(b"0000004\0");
    dev[337..345].copy_from_slice(b"0000100\0");
    dev[100..108].copy_from_slice(b"0004620\0");
    let mut h = tar::Header::from_byte_slice(&dev).clone();
    h.set_cksum();
    v.extend_from_slice(h.as_bytes());
    let idx = build(dir.path(), &finish(v)).unwrap();
    let paths: Vec<&[u8]> = idx.entries().map(|e| e.path()).collect();
    assert_eq!(
        paths,
        [
            &b""[..],
            b"d",
            b"d/caf\xe9",
            b"d/fifo",
            b"d/hard",
            b"d/sym",
            b"d/tty"
        ]
    );
    assert_eq!(idx.find(b"d").unwrap().kind(), EntryKind::Dir);
    assert_eq!(
        idx.find(b"d/sym").unwrap().symlink_target().unwrap(),
        b"../nowhere"
    );
    let hard = idx.find(b"d/hard").unwrap();
    assert_eq!(hard.hardlink_target().unwrap(), b"d/caf\xe9");
    assert_eq!(hard.contiguous_data().unwrap(), b"latin1");
    assert_eq!(
        hard.link_group(),
        idx.find(b"d/caf\xe9").unwrap().link_group()
    );
    assert!(hard.link_group().is_some());
    assert_eq!(idx.find(b"d/fifo").unwrap().kind(), EntryKind::Fifo);
    let tty = idx.find(b"d/tty").unwrap();
    assert_eq!(
        (tty.kind(), tty.rdev(), tty.mode()),
        (EntryKind::CharDevice, (4, 64), 0o4620)
    );
}

/// A 3 MiB file with data at 0, in the middle and at the very end.
fn sparse_source(dir: &Path) -> (PathBuf, Vec<u8>) {
    let src = dir.join("src");
    fs::create_dir_all(&src).unwrap();
    let p = src.join("holes");
    let mut f = fs::File::create(&p).unwrap();
    f.write_all(&[1u8; 5000]).unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(&[2u8; 70000]).unwrap();
    f.seek(SeekFrom::Start((3 << 20) - 10)).unwrap();
    f.write_all(&[3u8; 10]).unwrap();
    drop(f);
    (src, fs::read(&p).unwrap())
}

#[test]
fn every_gnu_sparse_format_reads_back_with_holes() {
    if !require(have_bin("tar"), "GNU tar") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (src, want) = sparse_source(dir.path());
    let variants: [(&str, &[&str]); 4] = [
        ("gnu", &["--sparse"]),
        ("pax", &["--sparse", "--sparse-version=0.0"]),
        ("pax", &["--sparse", "--sparse-version=0.1"]),
        ("pax", &["--sparse", "--sparse-version=1.0"]),
    ];
    for (i, (format, extra)) in variants.iter().enumerate() {
        let blob = dir.path().join(format!("sparse{i}.tar"));
        gnu_tar(&src, &blob, format, extra);
        let idx = index(&blob);
        let e = idx.find(b"holes").unwrap_or_else(|| {
            panic!(
                "{format} {extra:?}: {:?}",
                idx.entries().collect::<Vec<_>>()
            )
        });
        assert!(e.is_sparse(), "{format} {extra:?}");
        assert_eq!(e.size(), want.len() as u64);
        let stored: u64 = e.segments().map(|s| s.len).sum();
        assert!(stored < 200_000, "holes kept: {stored} bytes stored");
        let mut got = vec![0xAAu8; want.len()];
        assert_eq!(e.read_at(0, &mut got).unwrap(), want.len());
        assert!(got == want, "{format} {extra:?}: content differs");
        // An unaligned read across a data/hole boundary.
        let mut part = [0u8; 100];
        e.read_at(4950, &mut part).unwrap();
        assert_eq!(&part[..], &want[4950..5050]);
    }
}

#[test]
fn gnu_long_names_and_non_utf8_names_round_trip() {
    if !require(have_bin("tar"), "GNU tar") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let long = src.join(LONG_DIR).join(LONG_FILE);
    write(&long, b"long");
    std::os::unix::fs::symlink("t".repeat(200), src.join("longlink")).unwrap();
    write(
        &src.join(std::ffi::OsStr::from_bytes(b"\xff\xfe")),
        b"bytes",
    );
    for format in ["gnu", "pax", "ustar"] {
        if format == "ustar" {
            continue; // ustar cannot hold these names at all
        }
        let blob = dir.path().join(format!("{format}.tar"));
        gnu_tar(&src, &blob, format, &[]);
        let idx = index(&blob);
        let lp = format!("{LONG_DIR}/{LONG_FILE}");
        assert_eq!(
            idx.find(lp.as_bytes()).unwrap().contiguous_data().unwrap(),
            b"long"
        );
        assert_eq!(
            idx.find(b"longlink").unwrap().symlink_target().unwrap(),
            "t".repeat(200).as_bytes()
        );
        assert_eq!(
            idx.find(b"\xff\xfe").unwrap().contiguous_data().unwrap(),
            b"bytes"
        );
    }
}

#[test]
fn index_files_are_validated_on_open_and_written_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = Vec::new();
    entry(&mut v, b"a", b'0', b"x", b"");
    let bytes = finish(v);
    let blob = dir.path().join("layer.tar");
    fs::write(&blob, &bytes).unwrap();
    let idx = dir.path().join("layer.idx");
    let stats = LayerIndex::build(&blob, &idx).unwrap();
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.index_bytes, fs::metadata(&idx).unwrap().len());
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "temp file left behind: {names:?}");
    assert!(LayerIndex::open(&blob, &idx).is_ok());

    let mut damaged = fs::read(&idx).unwrap();
    damaged[0] ^= 1;
    let bad = dir.path().join("bad.idx");
    fs::write(&bad, &damaged).unwrap();
    assert!(matches!(
        LayerIndex::open(&blob, &bad),
        Err(IndexError::BadIndex { .. })
    ));

    let mut short = fs::read(&idx).unwrap();
    short.truncate(short.len() - 1);
    fs::write(&bad, &short).unwrap();
    assert!(matches!(
        LayerIndex::open(&blob, &bad),
        Err(IndexError::BadIndex { .. })
    ));

    // An index does not describe a different blob.
    let other = dir.path().join("other.tar");
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0u8; 512]);
    fs::write(&other, &longer).unwrap();
    assert!(matches!(
        LayerIndex::open(&other, &idx),
        Err(IndexError::BadIndex { .. })
    ));
}
