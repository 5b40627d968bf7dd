//! Pack a tree with every edge, then check it with e2fsck and the kernel:
//! mount read-only and compare every path, then mount read-write, churn 10k
//! files, and check again.

use std::process::Command;

use crate::common::*;
use d2v_packer::Options;

#[test]
fn edge_tree_survives_a_kernel_mount_and_rw_churn() {
    if !require_root() || !require_tool("e2fsck") || !require_tool("setcap") {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_edge_tree(&src);
    let img = t.path().join("rootfs.ext4");
    let summary = pack_dir(
        &src,
        &img,
        Options {
            source_date_epoch: Some(1_500_000_000),
            ..Options::default()
        },
    );
    assert!(summary.files > 3000);
    assert!(summary.journal_bytes > 0);
    assert!(summary.free_bytes >= 64 << 20);
    assert_fsck_clean(&img);

    {
        let m = Mount::new(&img, "ro");
        assert_same_tree(&src, m.path());
        // The capability survives, as getcap sees it.
        let out = Command::new("getcap")
            .arg(m.path().join("usr/bin/ping"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("cap_net_raw"), "getcap: {text}");
        // A sparse file keeps its holes.
        use std::os::unix::fs::MetadataExt;
        let st = std::fs::metadata(m.path().join("var/sparse")).unwrap();
        assert!(
            st.blocks() * 512 < 1 << 20,
            "sparse file uses {} bytes",
            st.blocks() * 512
        );
    }
    {
        let m = Mount::new(&img, "rw");
        let d = m.path().join("churn");
        std::fs::create_dir(&d).unwrap();
        for i in 0..10_000 {
            std::fs::write(d.join(format!("f{i}")), i.to_string()).unwrap();
        }
        for i in 0..10_000 {
            std::fs::remove_file(d.join(format!("f{i}"))).unwrap();
        }
        std::fs::write(m.path().join("etc/new-after-churn"), vec![1u8; 1 << 20]).unwrap();
    }
    assert_fsck_clean(&img);
}

#[test]
fn debugfs_shows_the_capability_on_ping() {
    if !require_root() || !require_tool("e2fsck") || !require_tool("setcap") {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("bin/ping"), b"\x7fELF").unwrap();
    assert!(Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(src.join("bin/ping"))
        .status()
        .unwrap()
        .success());
    let img = t.path().join("img");
    pack_dir(
        &src,
        &img,
        Options {
            read_only_tight: true,
            ..Options::default()
        },
    );
    assert_fsck_clean(&img);
    let out = Command::new("debugfs")
        .arg("-R")
        .arg("ea_list /bin/ping")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("security.capability"),
        "debugfs ea_list: {text}"
    );
}
