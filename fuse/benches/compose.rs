//! Micro-benchmark: index build and merged-tree composition for a stack shaped
//! like a Debian image (3 layers, ~10k entries, whiteouts, an opaque dir).
//! Prints medians and the ratio to the few-millisecond compose target;
//! asserts nothing. Run: `cargo bench -p d2v-fuse --bench compose`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use d2v_fuse::{LayerIndex, MergedTree};

const COMPOSE_TARGET: Duration = Duration::from_millis(5);

fn file(b: &mut tar::Builder<File>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, path, data).unwrap();
}

fn dir(b: &mut tar::Builder<File>, path: &str) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_mtime(1_700_000_000);
    b.append_data(&mut h, path, &[][..]).unwrap();
}

fn layers(work: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    // Base: 9,000 entries spread over 300 package-like directories.
    let p = work.join("base.tar");
    let mut b = tar::Builder::new(File::create(&p).unwrap());
    for d in 0..300 {
        dir(&mut b, &format!("usr/share/pkg{d:03}/"));
        for f in 0..29 {
            file(&mut b, &format!("usr/share/pkg{d:03}/file{f:02}"), b"x");
        }
    }
    b.finish().unwrap();
    out.push(p);
    // apt-get install: 800 new files, 100 replaced, 50 whiteouts.
    let p = work.join("install.tar");
    let mut b = tar::Builder::new(File::create(&p).unwrap());
    for f in 0..800 {
        file(&mut b, &format!("usr/lib/new/lib{f:04}.so"), b"y");
    }
    for d in 0..100 {
        file(&mut b, &format!("usr/share/pkg{d:03}/file00"), b"z");
    }
    for d in 100..150 {
        file(&mut b, &format!("usr/share/pkg{d:03}/.wh.file01"), b"");
    }
    b.finish().unwrap();
    out.push(p);
    // Cleanup: an opaque dir and a few hundred small changes.
    let p = work.join("cleanup.tar");
    let mut b = tar::Builder::new(File::create(&p).unwrap());
    file(&mut b, "usr/share/pkg299/.wh..wh..opq", b"");
    for f in 0..200 {
        file(&mut b, &format!("etc/conf{f:03}"), b"c");
    }
    b.finish().unwrap();
    out.push(p);
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let blobs = layers(work.path());
    let idx: Vec<PathBuf> = blobs.iter().map(|b| b.with_extension("idx")).collect();
    let build = median(
        (0..10)
            .map(|_| {
                let t = Instant::now();
                for (b, i) in blobs.iter().zip(&idx) {
                    LayerIndex::build(b, i).unwrap();
                }
                t.elapsed()
            })
            .collect(),
    );
    let mut inodes = 0;
    let compose = median(
        (0..50)
            .map(|_| {
                let t = Instant::now();
                let layers = blobs
                    .iter()
                    .zip(&idx)
                    .map(|(b, i)| LayerIndex::open(b, i).unwrap())
                    .collect();
                let tree = MergedTree::new(layers).unwrap();
                inodes = tree.len();
                t.elapsed()
            })
            .collect(),
    );
    println!("index build (3 layers): {build:?}");
    println!("open + compose ({inodes} inodes): {compose:?}");
    println!(
        "compose / {COMPOSE_TARGET:?} target ratio: {:.2}",
        compose.as_secs_f64() / COMPOSE_TARGET.as_secs_f64()
    );
}
