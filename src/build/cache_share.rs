//! `d2v build --cache-to` / `--cache-from`: sharing the step cache through a
//! registry, BuildKit's registry cache being the model. The cache travels as
//! one OCI manifest (see `d2v::store::CacheConfig`): its config lists the
//! entries, its layers are the layers they name, gzip-compressed on the way
//! (a layer the registry already has, e.g. from pushing the image, is not sent
//! again).

use crate::build::progress::Progress;
use crate::registry::{Registry, RegistryError};
use crate::store::{CacheKey, Store, StoreError, MEDIA_TYPE_CACHE_CONFIG};

/// Why a cache could not be shared.
#[derive(Debug, thiserror::Error)]
pub enum CacheShareError {
    /// The registry failed (a missing `--cache-from` cache is not an error).
    #[error("{flag} {reference}")]
    Registry {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The cache's reference.
        reference: String,
        /// The registry's error.
        #[source]
        source: Box<RegistryError>,
    },
    /// The reference holds something else than a d2v build cache.
    #[error("--cache-from {reference}: not a d2v build cache (its config is {media_type})")]
    NotACache {
        /// The reference.
        reference: String,
        /// The media type of its config.
        media_type: String,
    },
    /// The store could not take or give the entries.
    #[error("{flag} {reference}")]
    Store {
        /// `--cache-from` or `--cache-to`.
        flag: &'static str,
        /// The cache's reference.
        reference: String,
        /// The store's error.
        #[source]
        source: Box<StoreError>,
    },
}

/// How much of the cache `--cache-to` exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheMode {
    /// The steps of the target image only (BuildKit's default).
    Min,
    /// Every step of every stage built, so other stages' work (a builder
    /// stage's compile) is shared too.
    Max,
}

/// A parsed `--cache-to`/`--cache-from` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSpec {
    /// The registry reference holding the cache.
    pub reference: String,
    /// What to export (ignored for `--cache-from`).
    pub mode: CacheMode,
}

impl std::str::FromStr for CacheSpec {
    type Err = String;

    /// `REF`, or BuildKit's `type=registry,ref=REF[,mode=min|max]`.
    fn from_str(raw: &str) -> Result<CacheSpec, String> {
        if !raw.contains('=') {
            return Ok(CacheSpec {
                reference: raw.to_string(),
                mode: CacheMode::Min,
            });
        }
        let mut reference = None;
        let mut mode = CacheMode::Min;
        for part in raw.split(',') {
            match part.split_once('=') {
                Some(("type", "registry")) => {}
                Some(("type", other)) => {
                    return Err(format!(
                        "cache type {other:?} is not supported (only type=registry)"
                    ))
                }
                Some(("ref", r)) if !r.is_empty() => reference = Some(r.to_string()),
                Some(("mode", "min")) => mode = CacheMode::Min,
                Some(("mode", "max")) => mode = CacheMode::Max,
                Some(("mode", m)) => return Err(format!("cache mode {m:?}: expected min or max")),
                // BuildKit options with no meaning here.
                Some(("compression" | "oci-mediatypes" | "ignore-error" | "image-manifest", _)) => {
                }
                _ => return Err(format!("unknown cache option {part:?}")),
            }
        }
        let reference = reference.ok_or("missing ref=REF")?;
        Ok(CacheSpec { reference, mode })
    }
}

/// Pulls each `--cache-from` cache into the store's step cache. A cache that
/// does not exist yet is a warning (the first build of a pipeline has none),
/// anything else an error.
pub fn import(
    store: &Store,
    registry: &Registry,
    specs: &[CacheSpec],
    progress: &Progress,
) -> Result<(), CacheShareError> {
    for spec in specs {
        let pulled = match registry.pull_manifest(store, &spec.reference) {
            Ok(p) => p,
            Err(RegistryError::NotFound { .. }) => {
                progress.note(&format!(
                    "warning: --cache-from {}: no cache there yet",
                    spec.reference
                ));
                continue;
            }
            Err(source) => {
                return Err(CacheShareError::Registry {
                    flag: "--cache-from",
                    reference: spec.reference.clone(),
                    source: Box::new(source),
                })
            }
        };
        if pulled.manifest.config.media_type != MEDIA_TYPE_CACHE_CONFIG {
            return Err(CacheShareError::NotACache {
                reference: spec.reference.clone(),
                media_type: pulled.manifest.config.media_type.clone(),
            });
        }
        let added =
            store
                .cache_import(&pulled.config)
                .map_err(|source| CacheShareError::Store {
                    flag: "--cache-from",
                    reference: spec.reference.clone(),
                    source: Box::new(source),
                })?;
        progress.note(&format!(
            "imported {added} cache entries from {} ({})",
            spec.reference,
            pulled.digest.short()
        ));
    }
    Ok(())
}

/// Pushes the entries for the build's steps to each `--cache-to` reference.
pub fn export(
    store: &Store,
    registry: &Registry,
    specs: &[CacheSpec],
    target_steps: &[CacheKey],
    all_steps: &[CacheKey],
    progress: &Progress,
) -> Result<(), CacheShareError> {
    for spec in specs {
        let keys = match spec.mode {
            CacheMode::Min => target_steps,
            CacheMode::Max => all_steps,
        };
        let (manifest, entries) =
            store
                .cache_manifest(keys)
                .map_err(|source| CacheShareError::Store {
                    flag: "--cache-to",
                    reference: spec.reference.clone(),
                    source: Box::new(source),
                })?;
        let report = registry
            .push_gzipped(store, &manifest, &spec.reference)
            .map_err(|source| CacheShareError::Registry {
                flag: "--cache-to",
                reference: spec.reference.clone(),
                source: Box::new(source),
            })?;
        progress.note(&format!(
            "exported {entries} cache entries to {} ({}, {} blobs uploaded, {} already there)",
            spec.reference,
            report.digest.short(),
            report.uploaded.len(),
            report.existing.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_buildkit_forms() {
        let s: CacheSpec = "reg:5000/app:cache".parse().unwrap();
        assert_eq!(s.reference, "reg:5000/app:cache");
        assert_eq!(s.mode, CacheMode::Min);
        let s: CacheSpec = "type=registry,ref=reg/app:c,mode=max".parse().unwrap();
        assert_eq!(
            (s.reference.as_str(), s.mode),
            ("reg/app:c", CacheMode::Max)
        );
        assert!("type=local,dest=/x".parse::<CacheSpec>().is_err());
        assert!("type=registry".parse::<CacheSpec>().is_err());
        assert!("type=registry,ref=a,mode=all".parse::<CacheSpec>().is_err());
        assert!("type=registry,ref=a,bogus=1".parse::<CacheSpec>().is_err());
    }
}
