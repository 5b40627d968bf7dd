//! Layer index: tar dialects in, typed errors for bad input, and a format
//! that refuses to be misread.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::common::*;
use d2v_fuse::{EntryKind, IndexError, LayerIndex, MergedTree};
use d2v_tar::fixtures::{self, lines, Expect, Spec, Tar, View};

fn build(dir: &Path, bytes: &[u8]) -> Result<LayerIndex, IndexError> {
    let blob = dir.join("layer.tar");
    fs::write(&blob, bytes).unwrap();
    let idx = dir.join("layer.idx");
    LayerIndex::build(&blob, &idx)?;
    LayerIndex::open(&blob, &idx)
}

/// What the merged tree of one layer shows, as fixture views.
fn views(tree: &MergedTree) -> Vec<View> {
    let mut out = Vec::new();
    for w in tree.walk() {
        let n = tree.get(w.ino).unwrap();
        let kind = match n.kind {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::CharDevice => "chr",
            EntryKind::BlockDevice => "blk",
            EntryKind::Fifo => "fifo",
        };
        let mut v = View::new(kind, &w.path);
        v.mode = n.mode;
        v.uid = n.uid;
        v.gid = n.gid;
        v.mtime = (n.mtime, n.mtime_nsec);
        v.dev = (n.rdev_major, n.rdev_minor);
        v.xattrs = tree
            .xattrs(w.ino)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        if n.kind == EntryKind::Symlink {
            v.target = tree.symlink_target(w.ino).unwrap().to_vec();
        }
        if n.kind == EntryKind::File {
            v.data = vec![0xAA; n.size as usize];
            assert_eq!(
                tree.read_at(w.ino, 0, &mut v.data).unwrap(),
                n.size as usize
            );
            v.nlink = n.nlink;
        }
        out.push(v);
    }
    out
}

#[test]
fn the_shared_tar_fixtures_index_and_compose_as_extracted() {
    let dir = tempfile::tempdir().unwrap();
    for f in fixtures::all() {
        let got = build(dir.path(), &f.bytes).map(|idx| {
            let tree = MergedTree::new(vec![idx]).unwrap();
            lines(views(&tree))
        });
        match (&f.expect, got) {
            (Expect::Tree(want), Ok(got)) => assert_eq!(got, lines(want.clone()), "{}", f.name),
            (Expect::Tree(_), Err(e)) => panic!("{}: {e}", f.name),
            (Expect::Error(text), Err(e)) => {
                assert!(matches!(e, IndexError::Tar(_)), "{}: {e}", f.name);
                assert!(e.to_string().contains(text), "{}: {e}", f.name);
            }
            (Expect::Error(_), Ok(t)) => panic!("{}: accepted: {t:#?}", f.name),
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "layer.tar" && n != "layer.idx")
            .collect();
        assert!(leftovers.is_empty(), "{}: {leftovers:?}", f.name);
    }
}

#[test]
fn a_later_file_replaces_a_directory_and_everything_under_it() {
    // Issue 12 item 13: dir x, x/y, then file x. The view shows the file.
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    t.dir(b"x").file(b"x/y", b"under").file(b"x", b"the file");
    let idx = build(dir.path(), &t.end()).unwrap();
    let tree = MergedTree::new(vec![idx]).unwrap();
    let x = tree.lookup(tree.root(), b"x").unwrap();
    assert_eq!(tree.get(x).unwrap().kind, EntryKind::File);
    assert_eq!(tree.contiguous_data(x).unwrap(), b"the file");
    assert_eq!(tree.walk().count(), 2, "x/y must be gone");
}

#[test]
fn entry_types_paths_and_metadata_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    t.dir(b"./").dir(b"./d/").file(b"./d/caf\xe9", b"latin1");
    t.symlink(b"./d/sym", b"../nowhere")
        .hardlink(b"./d/hard", b"./d/caf\xe9");
    t.entry(Spec::new(b'6', b"./d/fifo"), b"");
    let mut tty = Spec::new(b'3', b"./d/tty");
    tty.dev = (4, 64);
    tty.mode = 0o4620;
    t.entry(tty, b"");
    let idx = build(dir.path(), &t.end()).unwrap();
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
    if !require(have_tool("tar"), "GNU tar") {
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
    if !require(have_tool("tar"), "GNU tar") {
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
    let bytes = Tar::new().file(b"a", b"x").end();
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
