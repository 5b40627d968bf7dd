//! Garbage collection: blobs, layer indexes and scratch that no name, cache
//! entry or live process needs.

use super::lease::read_leases;
use super::oci::{Digest, Index, Manifest, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_INDEX};
use super::{IoContext, Result, Store};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What [`Store::prune`] removed, and what it could not.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PruneReport {
    /// Blobs removed.
    pub blobs: usize,
    /// Bytes freed (blobs, indexes and scratch).
    pub bytes: u64,
    /// Scratch entries of dead processes removed.
    pub scratch: usize,
    /// What could not be removed, and why (prune goes on past these).
    pub failed: Vec<(PathBuf, String)>,
}

impl Store {
    /// Digests reachable from the names in `index.json`. A manifest that
    /// cannot be read keeps what can be read (it is `d2v check`'s business).
    pub fn reachable_blobs(&self) -> Result<BTreeSet<Digest>> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<(Digest, String)> = self
            .read_index()?
            .manifests
            .into_iter()
            .map(|d| (d.digest, d.media_type))
            .collect();
        while let Some((digest, media_type)) = todo.pop() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            let Ok(bytes) = self.read_blob(&digest) else {
                continue;
            };
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

    /// Everything a prune must keep right now: blobs in the leases of live
    /// processes, then the step cache's layers, then everything reachable
    /// from a name. The caller holds the store lock; leases are read first,
    /// so a process that commits a cache entry or a name and exits meanwhile
    /// is covered by one or the other.
    fn live_blobs(&self) -> Result<(BTreeSet<Digest>, Vec<PathBuf>)> {
        let leases = read_leases(&self.leases_dir(), None)?;
        let mut keep = leases.held;
        keep.extend(self.cache_roots()?);
        keep.extend(self.reachable_blobs()?);
        Ok((keep, leases.dead))
    }

    /// Removes every blob (with its layer index and records) that no name,
    /// step-cache entry or live process's lease needs, the leases of dead
    /// processes, and scratch left by dead processes (detaching any mounts
    /// they left in it). What cannot be removed is reported, not fatal.
    pub fn prune(&self) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        {
            let _lock = self.lock()?;
            let (keep, dead_leases) = self.live_blobs()?;
            let blobs = self.root().join("blobs/sha256");
            for entry in std::fs::read_dir(&blobs).ctx("list", &blobs)? {
                let entry = entry.ctx("list", &blobs)?;
                let name = entry.file_name();
                let Ok(digest) = format!("sha256:{}", name.to_string_lossy()).parse::<Digest>()
                else {
                    continue;
                };
                if !keep.contains(&digest) {
                    self.remove_blob(&digest, &mut report);
                }
            }
            for lease in dead_leases {
                if let Err(e) = std::fs::remove_file(&lease) {
                    report.failed.push((lease, e.to_string()));
                }
            }
        }
        for dir in [self.layers_dir(), self.root().join("d2v/verified")] {
            self.remove_dead_temps(&dir, &mut report);
        }
        // Scratch of dead processes needs no lock: nobody else may use it.
        let tmp = self.scratch_parent();
        for entry in std::fs::read_dir(&tmp).ctx("list", &tmp)? {
            let entry = entry.ctx("list", &tmp)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid: Option<u32> = name.split('-').next().and_then(|p| p.parse().ok());
            if pid.is_some_and(super::lease::is_running) {
                continue;
            }
            let path = entry.path();
            let size = dir_size(&path);
            match super::scratch::remove_scratch(&path) {
                Ok(()) => {
                    report.bytes += size;
                    report.scratch += 1;
                }
                Err(e) => report.failed.push((path, e.to_string())),
            }
        }
        Ok(report)
    }

    /// Removes the temp files (`NAME.PID[-N].tmp*`) that dead processes left
    /// in `dir` while writing an index or a stamp.
    fn remove_dead_temps(&self, dir: &Path, report: &mut PruneReport) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((stem, ext)) = name.rsplit_once('.') else {
                continue;
            };
            let pid = stem
                .rsplit_once('.')
                .and_then(|(_, tag)| tag.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            let Some(pid) = pid.filter(|_| ext.starts_with("tmp")) else {
                continue;
            };
            if super::lease::is_running(pid) {
                continue;
            }
            let size = entry.metadata().map_or(0, |m| m.len());
            match std::fs::remove_file(entry.path()) {
                Ok(()) => report.bytes += size,
                Err(e) => report.failed.push((entry.path(), e.to_string())),
            }
        }
    }

    /// Removes blob `digest` and what d2v keeps beside it (index, stamp,
    /// compressed-form record), adding to `report`. The caller holds the lock.
    pub(super) fn remove_blob(&self, digest: &Digest, report: &mut PruneReport) {
        let blob = self.blob_path(digest);
        let size = std::fs::symlink_metadata(&blob).map_or(0, |m| m.len());
        match std::fs::remove_file(&blob) {
            Ok(()) => {
                report.blobs += 1;
                report.bytes += size;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                report.failed.push((blob, e.to_string()));
                return;
            }
        }
        self.forget_verified(digest);
        if let Some(lease) = self.lease.get() {
            lease.forget(digest);
        }
        for extra in [
            self.layer_index_path(digest),
            self.compressed_record_path(digest),
        ] {
            if let Ok(meta) = std::fs::metadata(&extra) {
                match std::fs::remove_file(&extra) {
                    Ok(()) => report.bytes += meta.len(),
                    Err(e) => report.failed.push((extra, e.to_string())),
                }
            }
        }
    }

    /// Removes those of `digests` that nothing needs any more: what a failed
    /// import or pull stored before it failed. A blob another live process
    /// holds, a cache entry names or a name reaches stays.
    pub fn discard(&self, digests: &[Digest]) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        if digests.is_empty() {
            return Ok(report);
        }
        let _lock = self.lock()?;
        // This process's own lease must not keep them: read the others'.
        let own = self.lease.get().map(|l| l.path().to_path_buf());
        let mut keep = read_leases(&self.leases_dir(), own.as_deref())?.held;
        keep.extend(self.cache_roots()?);
        keep.extend(self.reachable_blobs()?);
        for digest in digests.iter().filter(|d| !keep.contains(d)) {
            self.remove_blob(digest, &mut report);
        }
        Ok(report)
    }
}

fn dir_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .same_file_system(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_removes_what_dead_processes_left_and_keeps_what_live_ones_hold() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Larger than any pid_max: never a running process.
        let dead = 4_194_399;
        let me = std::process::id();
        let layers = store.layers_dir();
        for name in [
            format!("ab.idx.{dead}-0.tmp"),
            format!("ab.idx.{me}-0.tmp"),
            "ab.idx".into(),
        ] {
            std::fs::write(layers.join(name), b"x").unwrap();
        }
        std::fs::create_dir_all(store.scratch_parent().join(format!("{dead}-0-x/sub"))).unwrap();
        std::fs::write(store.leases_dir().join(format!("{dead}-1-0")), "").unwrap();

        // A blob this process wrote (leased), and one nothing holds.
        let held = store.put_blob(b"held").unwrap();
        let other = Store::open(dir.path()).unwrap();
        let loose = other.put_blob(b"loose").unwrap();
        drop(other); // its lease goes with it

        let report = store.prune().unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert!(store.has_blob(&held));
        assert!(!store.has_blob(&loose));
        assert_eq!(report.scratch, 1);
        let mut left: Vec<_> = std::fs::read_dir(&layers)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["ab.idx".to_string(), format!("ab.idx.{me}-0.tmp")]);
        assert_eq!(std::fs::read_dir(store.leases_dir()).unwrap().count(), 1);
    }
}
