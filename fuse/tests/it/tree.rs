//! The merged tree against an on-disk OCI reference extraction.

use crate::common::*;
use d2v_fuse::{EntryKind, MergedTree};

#[test]
fn merged_tree_matches_reference_extraction() {
    if !require_root_and(&["tar", "setcap"]) {
        return;
    }
    let f = fixture();
    let tree = tree(&f.blobs);
    let actual = scan_tree(&tree);
    assert!(actual.len() > 10_000, "fixture too small: {}", actual.len());
    assert_same(&f.expected, &actual);
}

#[test]
fn whiteouts_opaque_dirs_and_replacements_follow_oci_rules() {
    if !require_root_and(&["tar", "setcap"]) {
        return;
    }
    let blobs = &fixture().blobs;
    let t = tree(blobs);
    let find = |path: &str| -> Option<u64> {
        let mut ino = t.root();
        for c in path.split('/') {
            ino = t.lookup(ino, c.as_bytes())?;
        }
        Some(ino)
    };
    assert!(find("data/gone").is_none());
    assert!(find("data/hidden").is_none());
    assert!(find("data/a").is_none());
    assert!(find("opq/one").is_none() && find("opq/two").is_none());
    assert!(find("opq/three").is_some());
    assert!(find("many/f00007").is_none() && find("many/f00008").is_some());
    assert_eq!(t.children(find("many").unwrap()).len(), 9_999);
    assert_eq!(
        t.get(find("etc/dir_to_file").unwrap()).unwrap().kind,
        EntryKind::File
    );
    assert_eq!(
        t.get(find("etc/file_to_dir").unwrap()).unwrap().kind,
        EntryKind::Dir
    );
    // The surviving name of the layer-0 hard-link group keeps layer-0 data.
    let b = find("data/b").unwrap();
    assert_eq!(t.get(b).unwrap().nlink, 1);
    let mut buf = [0u8; 64];
    let n = t.read_at(b, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hard-linked data from layer 0\n");
    // Hard links share one inode.
    assert_eq!(find("data/x"), find("data/y"));
    assert_eq!(t.get(find("data/x").unwrap()).unwrap().nlink, 2);
    assert_eq!(find("data/z"), find("data/z2"));
    // Implied parents are 0755 root:root.
    let implied = t.get(find("implied/deep").unwrap()).unwrap();
    assert_eq!(
        (implied.kind, implied.mode, implied.uid),
        (EntryKind::Dir, 0o755, 0)
    );
    // No whiteout entry is visible anywhere.
    assert!(t
        .walk()
        .all(|w| !w.path.split(|&c| c == b'/').any(|c| c.starts_with(b".wh."))));
    // Directory children come out sorted by name bytes.
    let names: Vec<&[u8]> = t.children(find("data").unwrap()).map(|(n, _)| n).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn inode_numbers_are_deterministic() {
    if !require_root_and(&["tar", "setcap"]) {
        return;
    }
    let blobs = &fixture().blobs;
    let a: Vec<_> = tree(blobs).walk().collect();
    let b: Vec<_> = MergedTree::new(blobs.iter().map(|p| index(p)).collect())
        .unwrap()
        .walk()
        .collect();
    assert_eq!(a, b);
    assert_eq!(a[0].ino, 1);
    assert!(a
        .windows(2)
        .all(|w| w[0].path < w[1].path || !w[1].path.starts_with(&w[0].path)));
}

#[test]
fn paths_resolve_inside_the_tree_like_the_kernel_would() {
    use d2v_tar::fixtures::Tar;
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    t.dir(b"usr").dir(b"usr/sbin").symlink(b"sbin", b"usr/sbin");
    t.dir(b"etc")
        .file(b"etc/passwd", b"root:x:0:0::/root:/bin/sh\n");
    t.symlink(b"etc/abs", b"/etc/passwd")
        .symlink(b"up", b"../../../etc");
    t.symlink(b"loop-a", b"loop-b")
        .symlink(b"loop-b", b"loop-a");
    let blob = dir.path().join("l.tar");
    std::fs::write(&blob, t.end()).unwrap();
    let t = tree(&[blob]);
    // Where pack puts the init: under the directory the symlink names.
    assert_eq!(t.resolve_for_create(b"sbin/d2v-init"), b"usr/sbin/d2v-init");
    assert_eq!(
        t.resolve_for_create(b"etc/d2v/config.json"),
        b"etc/d2v/config.json"
    );
    let passwd = t
        .lookup(t.lookup(t.root(), b"etc").unwrap(), b"passwd")
        .unwrap();
    assert_eq!(
        t.resolve(b"etc/abs"),
        Some((b"etc/passwd".to_vec(), passwd))
    );
    // `..` stops at the root, as in a chroot.
    assert_eq!(
        t.resolve(b"up/passwd"),
        Some((b"etc/passwd".to_vec(), passwd))
    );
    assert_eq!(t.resolve(b"loop-a"), None);
    assert_eq!(t.resolve(b"missing"), None);
    assert_eq!(
        t.read_file(b"etc/abs", 1 << 20).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(t.read_file(b"etc/abs", 3), None, "over the limit");
    assert_eq!(t.read_file(b"usr", 1 << 20), None, "not a file");
}
