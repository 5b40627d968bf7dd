//! `pack_tar`: the shared tar fixture set packs into images the kernel sees
//! as the fixtures say (the same trees `d2v mount` shows), and a POSIX tar of
//! the edge tree (made by GNU tar with xattrs) packs into the same tree.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use crate::common::*;
use d2v_packer::{Ext4Writer, Options};
use d2v_tar::fixtures::{self, lines, Expect, Tar, View};

/// What the kernel shows under `root`, as fixture views (lost+found left out).
fn views(root: &Path) -> Vec<View> {
    let mut out = Vec::new();
    let mut todo = vec![(root.to_path_buf(), Vec::new())];
    while let Some((p, rel)) = todo.pop() {
        let st = std::fs::symlink_metadata(&p).unwrap();
        let ft = st.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "chr"
        } else if ft.is_block_device() {
            "blk"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "file"
        };
        let mut v = View::new(kind, &rel);
        v.mode = st.mode() & 0o7777;
        v.uid = st.uid();
        v.gid = st.gid();
        v.mtime = (st.mtime(), st.mtime_nsec() as u32);
        v.dev = d2v_packer::source::dev_split(st.rdev());
        if !matches!(kind, "chr" | "blk") {
            v.dev = (0, 0);
        }
        v.xattrs = xattr::list(&p)
            .unwrap()
            .map(|n| (n.as_bytes().to_vec(), xattr::get(&p, &n).unwrap().unwrap()))
            .collect();
        match kind {
            "file" => {
                v.data = std::fs::read(&p).unwrap();
                v.nlink = st.nlink() as u32;
            }
            "symlink" => {
                v.target = std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            }
            "dir" => {
                for e in std::fs::read_dir(&p).unwrap() {
                    let name = e.unwrap().file_name();
                    if rel.is_empty() && name == "lost+found" {
                        continue;
                    }
                    let mut r = rel.clone();
                    if !r.is_empty() {
                        r.push(b'/');
                    }
                    r.extend_from_slice(name.as_bytes());
                    todo.push((p.join(&name), r));
                }
            }
            _ => {}
        }
        out.push(v);
    }
    out
}

fn pack_bytes(bytes: &[u8], img: &Path) -> Result<(), d2v_packer::PackError> {
    let mut w = Ext4Writer::new(File::create(img).unwrap(), Options::default())?;
    d2v_packer::source::pack_tar(bytes, &mut w, 0)?;
    w.finish().map(|_| ())
}

#[test]
fn the_shared_tar_fixtures_pack_as_extracted() {
    if !require_root() || !require_tool("e2fsck") {
        return;
    }
    let t = scratch();
    let img = t.path().join("img");
    for f in fixtures::all() {
        match (&f.expect, pack_bytes(&f.bytes, &img)) {
            (Expect::Tree(want), Ok(())) => {
                assert_fsck_clean(&img);
                let m = Mount::new(&img, "ro");
                assert_eq!(lines(views(m.path())), lines(want.clone()), "{}", f.name);
            }
            (Expect::Tree(_), Err(e)) => panic!("{}: {e}", f.name),
            (Expect::Error(text), Err(e)) => {
                assert!(e.to_string().contains(text), "{}: {e}", f.name)
            }
            (Expect::Error(_), Ok(())) => panic!("{}: packed", f.name),
        }
    }
}

#[test]
fn legal_duplicates_pack_with_the_later_entry_winning() {
    // Issue 12 items 12 and 13: main said "x: already exists".
    if !require_tool("e2fsck") {
        return;
    }
    let t = scratch();
    let img = t.path().join("img");
    let mut tar = Tar::new();
    tar.file(b"f", b"one").file(b"f", b"two");
    tar.dir(b"x").file(b"x/y", b"gone").file(b"x", b"file wins");
    pack_bytes(&tar.end(), &img).unwrap();
    assert_fsck_clean(&img);
    // debugfs pads inline data with NULs.
    let cat = |p: &str| {
        debugfs(&img, &format!("cat {p}"))
            .trim_end_matches('\0')
            .to_string()
    };
    assert_eq!(cat("/f"), "two");
    assert_eq!(cat("/x"), "file wins");
}

#[test]
fn a_tar_cut_inside_a_header_or_with_bad_pax_values_is_an_error() {
    // Issue 12 item 12: main packed these silently.
    let t = scratch();
    let img = t.path().join("img");
    let mut tar = Tar::new();
    tar.file(b"a", b"x").file(b"b", b"y");
    let whole = tar.end();
    let e = pack_bytes(&whole[..1024 + 100], &img).unwrap_err();
    assert!(e.to_string().contains("truncated tar"), "{e}");
    for (key, value) in [(&b"uid"[..], &b"4294967296"[..]), (b"mtime", b"soon")] {
        let mut tar = Tar::new();
        tar.pax(&[(key, value)]).file(b"f", b"x");
        let e = pack_bytes(&tar.end(), &img).unwrap_err();
        assert!(e.to_string().contains("tar entry \"f\""), "{e}");
    }
    let mut tar = Tar::new();
    tar.file(b"a/../../b", b"x");
    let e = pack_bytes(&tar.end(), &img).unwrap_err();
    assert!(e.to_string().contains("a/../../b"), "names the entry: {e}");
}

#[test]
fn gnu_posix_tar_of_the_edge_tree_packs_to_the_same_tree() {
    if !require_root()
        || !require_tool("e2fsck")
        || !require(d2v_testkit::have_tool("tar"), "GNU tar")
        || !require_tool("setcap")
    {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_edge_tree(&src);
    // tar cannot carry sockets.
    std::fs::remove_file(src.join("var/sock")).unwrap();
    set_mtime(&src.join("var"), 1_600_000_000, 42);
    let tarball = t.path().join("tree.tar");
    let st = Command::new("tar")
        .args([
            "--format=posix",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "--sparse",
            "-cf",
        ])
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let img = t.path().join("img");
    let mut w = Ext4Writer::new(File::create(&img).unwrap(), Options::default()).unwrap();
    d2v_packer::source::pack_tar_file(&File::open(&tarball).unwrap(), &mut w, 0, &mut |_| {})
        .unwrap();
    w.finish().unwrap();
    assert_fsck_clean(&img);
    let m = Mount::new(&img, "ro");
    assert_same_tree(&src, m.path());
    // GNU sparse (pax 1.0) entries keep their holes.
    use std::os::unix::fs::MetadataExt;
    let st = std::fs::metadata(m.path().join("var/sparse")).unwrap();
    assert!(
        st.blocks() * 512 < 1 << 20,
        "sparse file uses {} bytes",
        st.blocks() * 512
    );
    drop(m);
    // The same archive as a plain stream packs to the same bytes.
    let img2 = t.path().join("img2");
    let mut w = Ext4Writer::new(File::create(&img2).unwrap(), Options::default()).unwrap();
    let stream = std::io::BufReader::new(File::open(&tarball).unwrap());
    d2v_packer::source::pack_tar(stream, &mut w, 0).unwrap();
    w.finish().unwrap();
    assert!(
        std::fs::read(&img).unwrap() == std::fs::read(&img2).unwrap(),
        "file and stream packs differ"
    );
}

#[test]
fn tar_entries_without_parents_get_implied_directories() {
    if !require_tool("e2fsck") {
        return;
    }
    let t = scratch();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "a/b/c/file", &b"hello"[..]).unwrap();
    let data = b.into_inner().unwrap();
    let img = t.path().join("img");
    // Read back with ext4-view, which does not know inline data.
    let opts = Options {
        inline_data: false,
        ..Options::default()
    };
    let mut w = Ext4Writer::new(File::create(&img).unwrap(), opts).unwrap();
    d2v_packer::source::pack_tar(&data[..], &mut w, 1_234_567).unwrap();
    w.finish().unwrap();
    assert_fsck_clean(&img);
    let fs = ext4_view::Ext4::load_from_path(&img).unwrap();
    assert_eq!(fs.read("/a/b/c/file").unwrap(), b"hello");
    assert_eq!(fs.metadata("/a/b").unwrap().modified().seconds(), 1_234_567);
}

#[test]
fn attributes_that_do_not_fit_are_named() {
    // Issue 12 item 15: main's message had an empty attribute name.
    let t = scratch();
    let img = t.path().join("img");
    let big = vec![b'v'; 3000];
    let mut tar = Tar::new();
    tar.pax(&[
        (b"SCHILY.xattr.user.small", b"s"),
        (b"SCHILY.xattr.user.big-one", &big[..]),
        (b"SCHILY.xattr.user.big-two", &big[..2000]),
    ])
    .file(b"f", b"x");
    let e = pack_bytes(&tar.end(), &img).unwrap_err().to_string();
    assert!(e.contains("f: extended attribute user.big-one"), "{e}");
}
