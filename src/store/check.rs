//! `d2v check`: verifying the whole store, and dropping what cannot be trusted.
//!
//! Four passes, each building on the one before:
//! 1. every blob is hashed and compared with its name (and stamped as
//!    verified when it matches, see [`super::verify`]);
//! 2. every layer index is rebuilt from its blob in scratch and compared
//!    byte for byte with the stored one (an index is derived data);
//! 3. every named image is read: its manifest and config must be there and
//!    intact, its layers present and intact, and the config's diff IDs must
//!    name exactly those layers (the store keeps layers uncompressed);
//! 4. every step-cache entry's layer must be present and intact.
//!
//! With `repair`, a bad blob is removed (with its index and records), a bad
//! index is replaced by the rebuilt one, an image that cannot be used loses its
//! name, and a cache entry whose layer is gone is removed; each finding says
//! what was done.

use super::gc::PruneReport;
use super::oci::{ConfigSummary, Digest};
use super::verify::hash_file;
use super::{IoContext, Result, Store, StoreError};
use std::collections::BTreeSet;
use std::path::Path;

/// What [`Store::check`] may do.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckOptions {
    /// Drop (or rebuild) what cannot be trusted.
    pub repair: bool,
}

/// One thing that is wrong in the store.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    /// What is wrong: `blob sha256:…`, `index of layer sha256:…`,
    /// `image NAME`, `cache entry KEY`, or a stray path.
    pub subject: String,
    /// How it is wrong.
    pub problem: String,
    /// What `--repair` did about it (`None` without `--repair`).
    pub action: Option<String>,
}

/// What [`Store::check`] looked at and found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CheckReport {
    /// Blobs hashed.
    pub blobs: usize,
    /// Bytes hashed.
    pub bytes: u64,
    /// Layer indexes compared with their blobs.
    pub indexes: usize,
    /// Named images checked.
    pub images: usize,
    /// Step-cache entries checked.
    pub cache_entries: usize,
    /// What is wrong, in the order found.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    fn found(
        &mut self,
        subject: impl Into<String>,
        problem: impl Into<String>,
        action: Option<&str>,
    ) {
        self.findings.push(Finding {
            subject: subject.into(),
            problem: problem.into(),
            action: action.map(str::to_string),
        });
    }
}

impl Store {
    /// Verifies the whole store (see the module documentation); with
    /// `opts.repair`, drops or rebuilds what cannot be trusted.
    pub fn check(&self, opts: CheckOptions) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let bad = self.check_blobs(opts, &mut report)?;
        self.check_indexes(opts, &bad, &mut report)?;
        self.check_images(opts, &bad, &mut report)?;
        self.check_cache(opts, &bad, &mut report)?;
        Ok(report)
    }

    /// Pass 1: every blob against its digest. Returns the bad ones.
    fn check_blobs(
        &self,
        opts: CheckOptions,
        report: &mut CheckReport,
    ) -> Result<BTreeSet<Digest>> {
        let dir = self.root().join("blobs/sha256");
        let mut bad = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).ctx("list", &dir)? {
            let entry = entry.ctx("list", &dir)?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                let action = opts.repair.then_some("removed");
                if opts.repair {
                    let _lock = self.lock()?;
                    let _ = std::fs::remove_file(&path);
                }
                report.found(
                    path.display().to_string(),
                    "not named by a sha256 digest",
                    action,
                );
                continue;
            };
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue; // pruned meanwhile
            };
            if !meta.is_file() {
                bad.insert(digest.clone());
                self.drop_blob(&digest, "is not a regular file", opts, report)?;
                continue;
            }
            let (actual, size) = match hash_file(&path) {
                Ok(hashed) => hashed,
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            report.blobs += 1;
            report.bytes += size;
            if actual == digest {
                self.record_verified(&digest, &meta);
            } else {
                bad.insert(digest.clone());
                let problem = format!("its bytes hash to {actual}");
                self.drop_blob(&digest, &problem, opts, report)?;
            }
        }
        Ok(bad)
    }

    fn drop_blob(
        &self,
        digest: &Digest,
        problem: &str,
        opts: CheckOptions,
        report: &mut CheckReport,
    ) -> Result<()> {
        let mut action = None;
        if opts.repair {
            let _lock = self.lock()?;
            let mut removed = PruneReport::default();
            self.remove_blob(digest, &mut removed);
            action = Some(match removed.failed.first() {
                None => "removed".to_string(),
                Some((path, e)) => format!("could not remove {}: {e}", path.display()),
            });
        }
        self.forget_verified(digest);
        report.findings.push(Finding {
            subject: format!("blob {digest}"),
            problem: problem.to_string(),
            action,
        });
        Ok(())
    }

    /// Pass 2: every layer index against its blob, rebuilt in scratch.
    fn check_indexes(
        &self,
        opts: CheckOptions,
        bad: &BTreeSet<Digest>,
        report: &mut CheckReport,
    ) -> Result<()> {
        let dir = self.layers_dir();
        let scratch = self.scratch_dir()?;
        for entry in std::fs::read_dir(&dir).ctx("list", &dir)? {
            let entry = entry.ctx("list", &dir)?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let digest = name
                .strip_suffix(".idx")
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
            let Some(digest) = digest else {
                // A temp file of an index build that died (or that is running now).
                continue;
            };
            if bad.contains(&digest) {
                continue; // reported (and removed) with its blob
            }
            let subject = format!("index of layer {digest}");
            if !self.has_blob(&digest) {
                if opts.repair {
                    let _ = std::fs::remove_file(&path);
                }
                report.found(
                    subject,
                    "its blob is missing",
                    opts.repair.then_some("removed"),
                );
                continue;
            }
            report.indexes += 1;
            let rebuilt = scratch.path().join(&name);
            let problem = match d2v_fuse::LayerIndex::build(&self.blob_path(&digest), &rebuilt) {
                Err(e) => Some(format!("its blob is not a readable layer: {e}")),
                Ok(_) => match (std::fs::read(&path), std::fs::read(&rebuilt)) {
                    (Ok(stored), Ok(fresh)) if stored == fresh => None,
                    (Ok(_), Ok(_)) => Some("does not match its blob".to_string()),
                    (Err(e), _) | (_, Err(e)) => Some(format!("cannot be read: {e}")),
                },
            };
            let Some(problem) = problem else {
                continue;
            };
            let action = if !opts.repair {
                None
            } else if rebuilt.is_file() {
                std::fs::rename(&rebuilt, &path).ctx("replace", &path)?;
                Some("rebuilt")
            } else {
                let _ = std::fs::remove_file(&path);
                Some("removed")
            };
            report.found(subject, problem, action);
        }
        Ok(())
    }

    /// Pass 3: every named image's manifest, config and layers.
    fn check_images(
        &self,
        opts: CheckOptions,
        bad: &BTreeSet<Digest>,
        report: &mut CheckReport,
    ) -> Result<()> {
        for desc in self.read_index()?.manifests {
            let Some(name) = desc.ref_name().map(str::to_string) else {
                continue;
            };
            report.images += 1;
            let Some(problem) = self.image_problem(&name, &desc.digest, bad) else {
                continue;
            };
            if opts.repair {
                match self.remove_image(&name) {
                    Ok(()) | Err(StoreError::ImageNotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            report.found(
                format!("image {name}"),
                problem,
                opts.repair.then_some("name removed"),
            );
        }
        Ok(())
    }

    /// What makes image `name` (manifest `digest`) unusable, if anything.
    fn image_problem(&self, name: &str, digest: &Digest, bad: &BTreeSet<Digest>) -> Option<String> {
        let image = match self.image_from_manifest(name, digest) {
            Ok(image) => image,
            Err(e) => return Some(e.to_string()),
        };
        let layers = image.layers();
        if let Some(d) = layers.iter().find(|d| bad.contains(d)) {
            return Some(format!("layer {d} is damaged"));
        }
        if let Some(d) = layers.iter().find(|d| !self.has_blob(d)) {
            return Some(format!("layer {d} is missing"));
        }
        match serde_json::from_slice::<ConfigSummary>(&image.config) {
            Err(e) => Some(format!("its config is not valid: {e}")),
            Ok(c) if c.rootfs.diff_ids != layers => Some(format!(
                "its config's diff IDs {:?} do not name its layers {:?}",
                c.rootfs.diff_ids, layers
            )),
            Ok(_) => None,
        }
    }

    /// Pass 4: every step-cache entry's layer.
    fn check_cache(
        &self,
        opts: CheckOptions,
        bad: &BTreeSet<Digest>,
        report: &mut CheckReport,
    ) -> Result<()> {
        let dir = self.root().join("d2v/cache");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for entry in entries {
            let path = entry.ctx("list", &dir)?.path();
            report.cache_entries += 1;
            let problem = match std::fs::read(&path)
                .map(|b| serde_json::from_slice::<super::CacheEntry>(&b))
            {
                Err(e) => format!("cannot be read: {e}"),
                Ok(Err(e)) => format!("is not a cache entry: {e}"),
                Ok(Ok(e)) => match &e.layer {
                    Some(l) if bad.contains(&l.digest) => {
                        format!("its layer {} is damaged", l.digest)
                    }
                    Some(l) if !self.has_blob(&l.digest) => {
                        format!("its layer {} is missing", l.digest)
                    }
                    _ => continue,
                },
            };
            if opts.repair {
                let _ = std::fs::remove_file(&path);
            }
            report.found(
                cache_subject(&path),
                problem,
                opts.repair.then_some("removed"),
            );
        }
        Ok(())
    }
}

fn cache_subject(path: &Path) -> String {
    let key = path.file_stem().unwrap_or_default().to_string_lossy();
    format!("cache entry {key}")
}
