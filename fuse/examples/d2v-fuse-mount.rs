//! Mounts a stack of layer tars read-only: `d2v-fuse-mount DIR LAYER.tar...`
//! (bottom layer first). Indexes are written beside the tars as `*.idx`.
//! Serves until unmounted (`umount DIR`) or killed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use d2v_fuse::{mount, LayerIndex, MergedTree, MountOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let Some((dir, blobs)) = args.split_first() else {
        eprintln!("usage: d2v-fuse-mount DIR LAYER.tar...");
        std::process::exit(2);
    };
    let t = Instant::now();
    let mut layers = Vec::new();
    for b in blobs {
        let idx = b.with_extension("idx");
        if !idx.exists() {
            LayerIndex::build(b, &idx)?;
        }
        layers.push(LayerIndex::open(b, &idx)?);
    }
    let tree = MergedTree::new(layers)?;
    eprintln!("{} inodes ready in {:?}", tree.len(), t.elapsed());
    let m = mount(Arc::new(tree), Path::new(dir), &MountOptions::default())?;
    eprintln!("mounted on {}", m.dir().display());
    m.wait();
    Ok(())
}
