//! `pack_tar`: a POSIX tar of the edge tree (made by GNU tar with xattrs)
//! packs into an image the kernel sees as the same tree.

mod common;

use std::fs::File;
use std::process::Command;

use common::*;
use d2v_packer::{Ext4Writer, Options};

#[test]
fn gnu_posix_tar_of_the_edge_tree_packs_to_the_same_tree() {
    if !have_root()
        || !have_tool("e2fsck")
        || !have(
            "GNU tar",
            Command::new("tar").arg("--version").output().is_ok(),
        )
        || !have("setcap", Command::new("setcap").arg("-v").output().is_ok())
    {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_edge_tree(&src);
    // tar cannot carry sockets.
    std::fs::remove_file(src.join("var/sock")).unwrap();
    set_times(&src.join("var"), 1_600_000_000, 42);
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
    if !have_tool("e2fsck") {
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
