//! The merged tree against an on-disk OCI reference extraction.

mod common;

use common::*;
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
