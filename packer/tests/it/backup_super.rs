//! The backup superblock and group descriptors at the start of group 1
//! (`sparse_super2`, `s_backup_bgs = [1, 0]`): file data copied by range
//! is split around them, e2fsck accepts the image from either superblock,
//! and a single-group image has none.

use std::fs::File;
use std::io::Write;
use std::process::Command;

use crate::common::*;
use d2v_packer::*;
use sha2::{Digest, Sha256};

/// Run `e2fsck -fn` from the backup at block 32768; true if it is clean.
fn fsck_from_backup(img: &std::path::Path) -> bool {
    let out = Command::new("e2fsck")
        .args(["-fn", "-b", "32768", "-B", "4096"])
        .arg(img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    out.status.success() && !text.contains("wrong") && !text.contains("fix?")
}

#[test]
fn data_copied_across_group_1_skips_the_backup_and_reads_back() {
    if !require_tool("e2fsck") || !require_tool("debugfs") {
        return;
    }
    let t = scratch();
    // 140 MiB: streamed from block 129 on, it runs past block 32768.
    let src_path = t.path().join("src.bin");
    let mut src = File::create(&src_path).unwrap();
    let mut h = Sha256::new();
    for i in 0..140u64 {
        let chunk = bytes(i + 1, 1 << 20);
        h.update(&chunk);
        src.write_all(&chunk).unwrap();
    }
    drop(src);
    let want = hex(&h.finalize());
    let len = 140u64 << 20;

    let img = t.path().join("img");
    let opts = Options {
        journal: false,
        free_bytes: Some(0),
        ..Options::default()
    };
    let mut w = Ext4Writer::new(File::create(&img).unwrap(), opts).unwrap();
    let meta = Metadata::new(S_IFREG | 0o644, Timestamp::from_secs(1_700_000_000));
    w.create(b"big", &meta, None, len).unwrap();
    w.copy_range(&File::open(&src_path).unwrap(), 0, 0, len)
        .unwrap();
    w.create(b"after", &meta, None, 5000).unwrap();
    w.write_data(&bytes(7, 5000)).unwrap();
    w.finish().unwrap();
    assert_fsck_clean(&img);
    assert!(fsck_from_backup(&img), "e2fsck from the backup superblock");
    let stats = debugfs(&img, "stats");
    assert!(stats.contains("Backup block groups:      1"), "{stats}");

    let out = t.path().join("out");
    std::fs::create_dir(&out).unwrap();
    debugfs_rdump(&img, &out);
    let mut h = Sha256::new();
    std::io::copy(&mut File::open(out.join("big")).unwrap(), &mut h).unwrap();
    assert_eq!(hex(&h.finalize()), want, "content of the copied file");
    assert_eq!(std::fs::read(out.join("after")).unwrap(), bytes(7, 5000));
    // The extent that reached the backup resumes after its reserved blocks.
    let ex = debugfs(&img, "ex big");
    assert!(ex.contains("32767"), "an extent ends at block 32767: {ex}");
}

#[test]
fn a_single_group_image_has_no_backup() {
    if !require_tool("e2fsck") || !require_tool("debugfs") {
        return;
    }
    let t = scratch();
    let img = t.path().join("img");
    let mut w = Ext4Writer::new(File::create(&img).unwrap(), Options::default()).unwrap();
    let meta = Metadata::new(S_IFREG | 0o644, Timestamp::from_secs(0));
    w.create(b"f", &meta, None, 3).unwrap();
    w.write_data(b"abc").unwrap();
    let s = w.finish().unwrap();
    assert!(s.image_bytes <= 128 << 20);
    assert_fsck_clean(&img);
    assert!(!debugfs(&img, "stats").contains("Backup block groups"));
}
