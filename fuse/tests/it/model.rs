//! Property test: random layer stacks composed by `MergedTree` agree with a
//! tiny model of the OCI rules kept as a map of paths.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;

use d2v_fuse::{EntryKind, LayerIndex, MergedTree};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    File(u8),
    Dir(u32),
    Symlink,
    Whiteout,
    Opaque,
}

fn path_strategy() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<u8>().prop_map(Op::File),
        3 => prop::sample::select(vec![0o755u32, 0o700, 0o1777]).prop_map(Op::Dir),
        1 => Just(Op::Symlink),
        2 => Just(Op::Whiteout),
        1 => Just(Op::Opaque),
    ]
}

type Layer = BTreeMap<Vec<&'static str>, Op>;

/// A layer as a tar can hold it: no entry under a non-directory of the same
/// layer (extracting one is an error, as for `tar -x`; across layers an
/// upper entry's implied parent replaces a lower non-directory).
fn extractable(mut layer: Layer) -> Layer {
    let blocked: Vec<Vec<&'static str>> = layer
        .iter()
        .filter(|(_, op)| !matches!(op, Op::Dir(_)))
        .map(|(p, _)| p.clone())
        .collect();
    layer.retain(|p, _| {
        !blocked
            .iter()
            .any(|b| p.len() > b.len() && p.starts_with(b))
    });
    layer
}

#[derive(Debug, Clone, PartialEq)]
struct Model {
    kind: EntryKind,
    mode: u32,
    data: Vec<u8>,
}

fn is_under(p: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || (p.len() > dir.len() && p.starts_with(dir) && p[dir.len()] == b'/')
}

fn apply(model: &mut BTreeMap<Vec<u8>, Model>, layer: &Layer) {
    for (p, op) in layer {
        let parent = p[..p.len() - 1].join("/").into_bytes();
        let name = p[p.len() - 1];
        match op {
            Op::Whiteout => {
                let mut t = parent.clone();
                if !t.is_empty() {
                    t.push(b'/');
                }
                t.extend_from_slice(name.as_bytes());
                model.retain(|k, _| k != &t && !is_under(k, &t));
            }
            Op::Opaque => model.retain(|k, _| !is_under(k, &parent)),
            _ => {}
        }
    }
    for (p, op) in layer {
        let m = match op {
            Op::File(b) => Model {
                kind: EntryKind::File,
                mode: 0o644,
                data: vec![*b; *b as usize % 7],
            },
            Op::Dir(mode) => Model {
                kind: EntryKind::Dir,
                mode: *mode,
                data: vec![],
            },
            Op::Symlink => Model {
                kind: EntryKind::Symlink,
                mode: 0o777,
                data: b"target".to_vec(),
            },
            _ => continue,
        };
        for depth in 1..p.len() {
            let anc = p[..depth].join("/").into_bytes();
            match model.get(&anc) {
                Some(e) if e.kind == EntryKind::Dir => {}
                _ => {
                    model.retain(|k, _| !is_under(k, &anc));
                    let implied = Model {
                        kind: EntryKind::Dir,
                        mode: 0o755,
                        data: vec![],
                    };
                    model.insert(anc, implied);
                }
            }
        }
        let key = p.join("/").into_bytes();
        let both_dirs =
            m.kind == EntryKind::Dir && model.get(&key).is_some_and(|e| e.kind == EntryKind::Dir);
        if !both_dirs {
            model.retain(|k, _| !is_under(k, &key));
        }
        model.insert(key, m);
    }
}

fn write_layer(path: &std::path::Path, layer: &Layer) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    for (p, op) in layer {
        let parent = p[..p.len() - 1].join("/");
        let name = p[p.len() - 1];
        let join = |n: &str| {
            if parent.is_empty() {
                n.to_string()
            } else {
                format!("{parent}/{n}")
            }
        };
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1);
        match op {
            Op::File(byte) => {
                let data = vec![*byte; *byte as usize % 7];
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, join(name), &data[..]).unwrap();
            }
            Op::Dir(mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, join(name), &[][..]).unwrap();
            }
            Op::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, join(name), "target").unwrap();
            }
            Op::Whiteout => {
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, join(&format!(".wh.{name}")), &[][..])
                    .unwrap();
            }
            Op::Opaque => {
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, join(".wh..wh..opq"), &[][..])
                    .unwrap();
            }
        }
    }
    b.finish().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn merged_tree_agrees_with_model(
        layers in prop::collection::vec(
            prop::collection::btree_map(path_strategy(), op_strategy(), 0..12).prop_map(extractable), 1..4)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = BTreeMap::new();
        let mut idx = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            apply(&mut model, l);
            let blob = dir.path().join(format!("{i}.tar"));
            write_layer(&blob, l);
            let ip = blob.with_extension("idx");
            LayerIndex::build(&blob, &ip).unwrap();
            idx.push(LayerIndex::open(&blob, &ip).unwrap());
        }
        let tree = MergedTree::new(idx).unwrap();
        let mut got = BTreeMap::new();
        for w in tree.walk().skip(1) {
            let n = tree.get(w.ino).unwrap();
            let mut data = vec![0u8; n.size as usize];
            let data = match n.kind {
                EntryKind::File => { tree.read_at(w.ino, 0, &mut data).unwrap(); data }
                EntryKind::Symlink => tree.symlink_target(w.ino).unwrap().to_vec(),
                _ => vec![],
            };
            got.insert(w.path, Model { kind: n.kind, mode: n.mode, data });
        }
        let want_keys: BTreeSet<_> = model.keys().cloned().collect();
        let got_keys: BTreeSet<_> = got.keys().cloned().collect();
        prop_assert_eq!(want_keys, got_keys);
        prop_assert_eq!(model, got);
    }
}
