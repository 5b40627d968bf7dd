//! Same input, same bytes: the UUID and hash seed come from the content.

use std::fs::File;

use crate::common::*;
use d2v_packer::*;
use sha2::{Digest, Sha256};

fn image(dir: &std::path::Path, name: &str, mtime: i64) -> (String, Summary) {
    let img = dir.join(name);
    let mut w = Ext4Writer::new(
        File::create(&img).unwrap(),
        Options {
            source_date_epoch: Some(1_600_000_000),
            ..Options::default()
        },
    )
    .unwrap();
    let t = Timestamp {
        sec: mtime,
        nsec: 5,
    };
    w.create(b"etc", &Metadata::new(S_IFDIR | 0o755, t), None, 0)
        .unwrap();
    let wide = b"wide";
    w.create(wide, &Metadata::new(S_IFDIR | 0o755, t), None, 0)
        .unwrap();
    for i in 0..2000 {
        let p = format!("wide/n{i}");
        w.create(p.as_bytes(), &Metadata::new(S_IFREG | 0o600, t), None, 3)
            .unwrap();
        w.write_data(b"abc").unwrap();
    }
    let mut m = Metadata::new(S_IFREG | 0o644, t);
    m.xattrs.push((b"user.k".to_vec(), vec![9; 500]));
    w.create(b"etc/x", &m, None, 10_000).unwrap();
    w.write_data(&bytes(1, 10_000)).unwrap();
    w.link(b"etc/y", b"etc/x").unwrap();
    w.create(b"etc/l", &Metadata::new(S_IFLNK | 0o777, t), Some(b"x"), 0)
        .unwrap();
    let s = w.finish().unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut File::open(&img).unwrap(), &mut h).unwrap();
    if require_tool("e2fsck") {
        assert_fsck_clean(&img);
    }
    (hex(&h.finalize()), s)
}

#[test]
fn packing_twice_gives_identical_bytes() {
    let t = scratch();
    let (a, sa) = image(t.path(), "a", 1_700_000_000);
    let (b, sb) = image(t.path(), "b", 1_700_000_000);
    assert_eq!(a, b);
    assert_eq!(sa, sb);
    let (c, sc) = image(t.path(), "c", 1_700_000_001);
    assert_ne!(a, c);
    assert_ne!(sa.uuid, sc.uuid, "the UUID follows the content");
}

#[test]
fn pack_dir_twice_gives_identical_bytes() {
    let t = scratch();
    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("d/e")).unwrap();
    for i in 0..50 {
        std::fs::write(src.join(format!("d/f{i}")), bytes(i, i as usize * 1000)).unwrap();
    }
    std::os::unix::fs::symlink("../d", src.join("d/e/up")).unwrap();
    let digest = |name: &str| {
        let img = t.path().join(name);
        pack_dir(&src, &img, Options::default());
        let mut h = Sha256::new();
        std::io::copy(&mut File::open(&img).unwrap(), &mut h).unwrap();
        hex(&h.finalize())
    };
    // The first pack reads every file and so (relatime) moves the atimes,
    // which are part of the input; after that the input stays put.
    digest("warm-up");
    assert_eq!(digest("one"), digest("two"));
}
