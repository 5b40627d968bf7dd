//! Inline data (`INCOMPAT_INLINE_DATA`): files of 1 to 128 bytes and small
//! directories live in their inode. Judged by e2fsck, read back without
//! root through debugfs, and with root through a loop mount, then written
//! by the kernel (files grow out of the inode, directories into blocks, 10k
//! files come and go) and judged again.

use std::fs::File;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use d2v_packer::*;

/// File sizes around the inline boundaries: i_block (60) and i_block plus
/// the 68-byte `system.data` value a 256-byte inode has room for (128).
const SIZES: [usize; 10] = [0, 1, 59, 60, 61, 68, 127, 128, 129, 4096];

/// Whether `path` in `img` has `EXT4_INLINE_DATA_FL`, per `debugfs stat`.
fn is_inline(img: &Path, path: &str) -> bool {
    let out = debugfs(img, &format!("stat {path}"));
    let flags = out
        .split_whitespace()
        .skip_while(|w| *w != "Flags:")
        .nth(1)
        .unwrap_or_else(|| panic!("no flags for {path}: {out}"));
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap();
    flags & 0x1000_0000 != 0
}

fn meta(mode: u32) -> Metadata {
    Metadata::new(mode, Timestamp::from_secs(1_700_000_000))
}

fn with_xattr(mode: u32, name: &str, value: &[u8]) -> Metadata {
    let mut m = meta(mode);
    m.xattrs.push((name.as_bytes().to_vec(), value.to_vec()));
    m
}

/// Names of the given length, distinct by index.
fn names(n: usize, len: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:0len$}")).collect()
}

/// Everything the boundary test writes: (path, metadata, content) for files,
/// and (path, entry names) for directories.
fn build(w: &mut Ext4Writer) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut file = |w: &mut Ext4Writer, path: &str, m: Metadata, data: Vec<u8>| {
        w.create(path.as_bytes(), &m, None, data.len() as u64)
            .unwrap();
        w.write_data(&data).unwrap();
        files.push((path.to_string(), data));
    };
    w.create(b"f", &meta(S_IFDIR | 0o755), None, 0).unwrap();
    for (i, n) in SIZES.into_iter().enumerate() {
        file(
            w,
            &format!("f/{n}"),
            meta(S_IFREG | 0o644),
            bytes(i as u64, n),
        );
    }
    // A small xattr leaves 44 bytes for system.data: 104 fit, 105 do not.
    let small = || with_xattr(S_IFREG | 0o644, "user.x", b"v");
    file(w, "f/x104", small(), bytes(20, 104));
    file(w, "f/x105", small(), bytes(21, 105));
    // A capability next to inline data, as on a small setcap'd script.
    let cap = [
        1u8, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let capm = with_xattr(S_IFREG | 0o755, "security.capability", &cap);
    file(w, "f/cap61", capm, bytes(22, 61));
    // Xattrs that spill to a block keep the data out of the inode too.
    let big = with_xattr(S_IFREG | 0o644, "user.big", &bytes(23, 1000));
    file(w, "f/bigxattr10", big, bytes(24, 10));

    let dir = |w: &mut Ext4Writer, path: &str, entries: &[String]| {
        w.create(path.as_bytes(), &meta(S_IFDIR | 0o755), None, 0)
            .unwrap();
        for e in entries {
            let p = format!("{path}/{e}");
            w.create(p.as_bytes(), &meta(S_IFREG | 0o644), None, 0)
                .unwrap();
        }
    };
    dir(w, "d-empty", &[]);
    // 8-byte names take 16 bytes: 3 fill i_block's 56, 4 more fit the 68
    // of system.data, 8 do not fit at all.
    dir(w, "d-three", &names(3, 8));
    dir(w, "d-seven", &names(7, 8));
    dir(w, "d-eight", &names(8, 8));
    w.create(b"d-sub", &meta(S_IFDIR | 0o700), None, 0).unwrap();
    w.create(b"d-sub/inner", &meta(S_IFDIR | 0o700), None, 0)
        .unwrap();
    files
}

#[test]
fn boundary_sizes_and_small_dirs_are_inline_and_fsck_clean() {
    if !require_tool("e2fsck") || !require_tool("debugfs") {
        return;
    }
    let t = scratch();
    let img = t.path().join("img");
    let mut w = Ext4Writer::new(File::create(&img).unwrap(), Options::default()).unwrap();
    let files = build(&mut w);
    let s = w.finish().unwrap();
    assert_fsck_clean(&img);
    assert!(debugfs(&img, "stats").contains("inline_data"));

    let inline_files = ["1", "59", "60", "61", "68", "127", "128", "x104", "cap61"];
    for (path, data) in &files {
        let name = path.trim_start_matches("f/");
        let want = inline_files.contains(&name);
        assert_eq!(is_inline(&img, path), want, "{path} inline");
        // debugfs 1.47 pads inline files under 60 bytes to 60 on output.
        let out = Command::new("debugfs")
            .args(["-R", &format!("cat {path}")])
            .arg(&img)
            .output()
            .unwrap()
            .stdout;
        assert!(
            out.len() >= data.len() && out[..data.len()] == data[..],
            "{path}"
        );
        assert!(out[data.len()..].iter().all(|&b| b == 0), "{path} tail");
    }
    assert_eq!(s.inline_files, inline_files.len() as u64);

    for (d, want) in [
        ("d-empty", true),
        ("d-three", true),
        ("d-seven", true),
        ("d-eight", false),
        ("d-sub", true),
        ("d-sub/inner", true),
        ("lost+found", false),
    ] {
        assert_eq!(is_inline(&img, d), want, "{d} inline");
    }
    // The root and lost+found stay in blocks; the others above are inline.
    assert_eq!(s.inline_dirs, 5);
    let ls = debugfs(&img, "ls -l d-seven");
    for n in names(7, 8) {
        assert!(ls.contains(&n), "{n} missing from d-seven: {ls}");
    }
    let stat = debugfs(&img, "stat d-seven");
    assert!(
        stat.contains("Size: 128"),
        "d-seven spills into system.data: {stat}"
    );

    // Without inline data: the same tree, no flag, no feature.
    let img2 = t.path().join("img2");
    let opts = Options {
        inline_data: false,
        ..Options::default()
    };
    let mut w = Ext4Writer::new(File::create(&img2).unwrap(), opts).unwrap();
    build(&mut w);
    let s2 = w.finish().unwrap();
    assert_fsck_clean(&img2);
    assert!(!debugfs(&img2, "stats").contains("inline_data"));
    assert!(!is_inline(&img2, "f/1") && !is_inline(&img2, "d-three"));
    assert_eq!((s2.inline_files, s2.inline_dirs), (0, 0));
    assert!(s2.image_bytes >= s.image_bytes);
}

#[test]
fn inline_tree_mounts_compares_and_survives_rw_churn() {
    if !require_root() || !require_tool("e2fsck") {
        return;
    }
    let t = scratch();
    let src = t.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for (i, n) in SIZES.into_iter().enumerate() {
        std::fs::write(src.join(format!("f{n}")), bytes(i as u64, n)).unwrap();
    }
    xattr::set(src.join("f61"), "user.note", b"inline and an xattr").unwrap();
    xattr::set(src.join("f1"), "trusted.t", &bytes(9, 40)).unwrap();
    for d in ["empty", "small", "spill"] {
        std::fs::create_dir(src.join(d)).unwrap();
    }
    for n in names(2, 4) {
        std::fs::write(src.join("small").join(n), b"x").unwrap();
    }
    for n in names(6, 8) {
        std::fs::write(src.join("spill").join(n), b"y").unwrap();
    }
    xattr::set(src.join("small"), "user.dir", b"d").unwrap();
    std::os::unix::fs::symlink("f60", src.join("link")).unwrap();
    let img = t.path().join("img");
    let s = pack_dir(&src, &img, Options::default());
    // f1..f128 (7) and the 8 one-byte files in small/ and spill/.
    assert_eq!((s.inline_files, s.inline_dirs), (15, 3), "{s:?}");
    assert_fsck_clean(&img);
    {
        let m = Mount::new(&img, "ro");
        assert_same_tree(&src, m.path());
    }
    {
        let m = Mount::new(&img, "rw");
        let p = m.path();
        // Files grow out of the inode, shrink, and new small ones appear.
        let mut grown = bytes(1, 60);
        grown.extend(bytes(2, 5000));
        std::fs::write(p.join("f60"), &grown).unwrap();
        // f1's 40-byte xattr leaves room for 68 bytes inline: 101 move out.
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(p.join("f1"))
            .unwrap()
            .write_all(&[7u8; 100])
            .unwrap();
        std::fs::write(p.join("f128"), b"shorter").unwrap();
        std::fs::write(p.join("empty/new"), b"n").unwrap();
        // Inline directories grow into blocks.
        for i in 0..200 {
            std::fs::write(p.join(format!("small/grow-{i:04}")), i.to_string()).unwrap();
        }
        std::fs::remove_file(p.join("spill/00000000")).unwrap();
        // 10k files come and go.
        let churn = p.join("spill/churn");
        std::fs::create_dir(&churn).unwrap();
        for i in 0..10_000 {
            std::fs::write(churn.join(format!("f{i}")), i.to_string()).unwrap();
        }
        for i in 0..10_000 {
            std::fs::remove_file(churn.join(format!("f{i}"))).unwrap();
        }
        std::fs::remove_dir(&churn).unwrap();
    }
    assert_fsck_clean(&img);
    let m = Mount::new(&img, "ro");
    let p = m.path();
    assert_eq!(std::fs::read(p.join("f60")).unwrap().len(), 5060);
    assert_eq!(std::fs::read(p.join("f128")).unwrap(), b"shorter");
    assert_eq!(std::fs::read_dir(p.join("small")).unwrap().count(), 202);
    assert_eq!(std::fs::read_dir(p.join("spill")).unwrap().count(), 5);
    assert_eq!(
        xattr::get(p.join("f61"), "user.note").unwrap().as_deref(),
        Some(&b"inline and an xattr"[..])
    );
    assert_eq!(std::fs::read(p.join("f59")).unwrap(), bytes(2, 59));
    let f1 = std::fs::read(p.join("f1")).unwrap();
    assert_eq!((f1.len(), f1[0], f1[100]), (101, bytes(1, 1)[0], 7));
}
