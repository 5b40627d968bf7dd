//! Garbage collection: blobs, layer indexes and scratch no name or cache entry needs.

use super::oci::{Digest, Index, Manifest, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_INDEX};
use super::{IoContext, Result, Store};
use std::collections::BTreeSet;

/// What [`Store::prune`] removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneReport {
    /// Blobs removed.
    pub blobs: usize,
    /// Bytes freed (blobs, indexes and scratch).
    pub bytes: u64,
    /// Scratch entries of dead processes removed.
    pub scratch: usize,
}

impl Store {
    /// Digests reachable from the names in `index.json`.
    pub fn reachable_blobs(&self) -> Result<BTreeSet<Digest>> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<(Digest, String)> = self
            .read_index()?
            .manifests
            .into_iter()
            .map(|d| (d.digest, d.media_type))
            .collect();
        while let Some((digest, media_type)) = todo.pop() {
            if !seen.insert(digest.clone()) || !self.has_blob(&digest) {
                continue;
            }
            let bytes = self.read_blob(&digest)?;
            if media_type == MEDIA_TYPE_INDEX || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST {
                if let Ok(index) = serde_json::from_slice::<Index>(&bytes) {
                    todo.extend(
                        index
                            .manifests
                            .into_iter()
                            .map(|d| (d.digest, d.media_type)),
                    );
                }
            } else if let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) {
                seen.insert(manifest.config.digest);
                seen.extend(manifest.layers.into_iter().map(|l| l.digest));
            }
        }
        Ok(seen)
    }

    /// Removes every blob (and its layer index) not reachable from a name or from
    /// `extra_roots` (e.g. the step cache), and scratch left by dead processes.
    pub fn prune(&self, extra_roots: &BTreeSet<Digest>) -> Result<PruneReport> {
        let _lock = self.lock()?;
        let mut keep = self.reachable_blobs()?;
        keep.extend(extra_roots.iter().cloned());
        let mut report = PruneReport::default();

        let blobs = self.root().join("blobs/sha256");
        for entry in std::fs::read_dir(&blobs).ctx("list", &blobs)? {
            let entry = entry.ctx("list", &blobs)?;
            let name = entry.file_name();
            let Ok(digest) = format!("sha256:{}", name.to_string_lossy()).parse::<Digest>() else {
                continue;
            };
            if keep.contains(&digest) {
                continue;
            }
            report.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(entry.path()).ctx("remove", &entry.path())?;
            report.blobs += 1;
            for extra in [
                self.layer_index_path(&digest),
                self.root()
                    .join("d2v/compressed")
                    .join(format!("{}.json", digest.hex())),
            ] {
                if let Ok(meta) = std::fs::metadata(&extra) {
                    report.bytes += meta.len();
                    std::fs::remove_file(&extra).ctx("remove", &extra)?;
                }
            }
        }

        let tmp = self.root().join("d2v/tmp");
        for entry in std::fs::read_dir(&tmp).ctx("list", &tmp)? {
            let entry = entry.ctx("list", &tmp)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid: Option<i32> = name.split('-').next().and_then(|p| p.parse().ok());
            let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
            if alive {
                continue;
            }
            let path = entry.path();
            report.bytes += dir_size(&path);
            if path.is_dir() {
                std::fs::remove_dir_all(&path).ctx("remove", &path)?;
            } else {
                std::fs::remove_file(&path).ctx("remove", &path)?;
            }
            report.scratch += 1;
        }
        Ok(report)
    }
}

fn dir_size(path: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
