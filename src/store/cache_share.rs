//! The step cache in a form that travels: an OCI manifest whose config lists
//! cache entries and whose layers are the layers they name.
//!
//! This is what `d2v build --cache-to REF` pushes and `--cache-from REF` pulls,
//! modelled on BuildKit's registry cache: a registry is the shared store, so
//! build machines reuse each other's steps without anything home-made. Keys are
//! content-derived (base image manifest, context checksums, step text and state),
//! so the same step on another machine has the same key.

use super::cache::{CacheEntry, CacheKey};
use super::oci::{Descriptor, Digest, Manifest, MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_MANIFEST};
use super::{Result, Store, StoreError};
use serde::{Deserialize, Serialize};

/// The media type of a shared cache's config blob.
pub const MEDIA_TYPE_CACHE_CONFIG: &str = "application/vnd.d2v.cache.config.v1+json";

/// The config blob of a shared cache.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// The entries, in build order.
    pub entries: Vec<CacheEntry>,
}

impl Store {
    /// Builds (and stores the config blob of) the manifest that shares the
    /// entries for `keys`. Keys with no entry are left out; each layer appears
    /// once. Returns the manifest and the number of entries it carries.
    pub fn cache_manifest(&self, keys: &[CacheKey]) -> Result<(Manifest, usize)> {
        let mut config = CacheConfig::default();
        let mut layers: Vec<Descriptor> = Vec::new();
        for key in keys {
            let Some(entry) = self.cache_get(key)? else {
                continue;
            };
            if let Some(layer) = &entry.layer {
                if !layers.iter().any(|l| l.digest == layer.digest) {
                    layers.push(Descriptor::new(
                        MEDIA_TYPE_LAYER_TAR,
                        layer.digest.clone(),
                        layer.size,
                    ));
                }
            }
            config.entries.push(entry);
        }
        let body = serde_json::to_vec(&config).expect("a cache config serializes");
        let digest = self.put_blob(&body)?;
        let n = config.entries.len();
        Ok((
            Manifest {
                schema_version: 2,
                media_type: Some(MEDIA_TYPE_MANIFEST.to_string()),
                config: Descriptor::new(MEDIA_TYPE_CACHE_CONFIG, digest, body.len() as u64),
                layers,
                annotations: Default::default(),
                artifact_type: None,
                extra: Default::default(),
            },
            n,
        ))
    }

    /// Records the entries of a shared cache's config (`bytes`) whose layers
    /// are in the store, keeping local entries of the same key. Returns how
    /// many entries were added.
    pub fn cache_import(&self, bytes: &[u8]) -> Result<usize> {
        let config: CacheConfig =
            serde_json::from_slice(bytes).map_err(|source| StoreError::Json {
                what: "shared cache config",
                path: Digest::of(bytes).as_str().into(),
                source,
            })?;
        let mut added = 0;
        for entry in &config.entries {
            if let Some(layer) = &entry.layer {
                if !self.has_blob(&layer.digest) {
                    continue;
                }
            }
            if self.cache_get(&entry.key)?.is_some() {
                continue;
            }
            self.cache_put(entry)?;
            added += 1;
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(store: &Store, text: &str, layer: Option<&[u8]>) -> CacheEntry {
        let layer = layer.map(|b| (store.put_blob(b).unwrap(), b.len() as u64).into());
        let e = CacheEntry {
            key: CacheKey::derive([text.as_bytes()]),
            layer,
            description: text.into(),
            created: "2026-01-01T00:00:00Z".into(),
            extra: serde_json::Value::Null,
        };
        store.cache_put(&e).unwrap();
        e
    }

    #[test]
    fn a_cache_manifest_round_trips_into_another_store() {
        let a_dir = tempfile::tempdir().unwrap();
        let a = Store::open(a_dir.path()).unwrap();
        let e1 = entry(&a, "RUN one", Some(b"layer one"));
        let e2 = entry(&a, "WORKDIR /x", None);
        let e3 = entry(&a, "RUN again", Some(b"layer one"));
        let missing = CacheKey::derive([b"never built".as_slice()]);
        let keys = [e1.key.clone(), e2.key.clone(), missing, e3.key.clone()];
        let (manifest, n) = a.cache_manifest(&keys).unwrap();
        assert_eq!(n, 3);
        assert_eq!(manifest.layers.len(), 1, "a shared layer is listed once");
        assert_eq!(manifest.config.media_type, MEDIA_TYPE_CACHE_CONFIG);
        let config = a.read_blob(&manifest.config.digest).unwrap();

        // Another machine: without the layer only the layerless entry lands.
        let b_dir = tempfile::tempdir().unwrap();
        let b = Store::open(b_dir.path()).unwrap();
        assert_eq!(b.cache_import(&config).unwrap(), 1);
        assert!(b.cache_get(&e1.key).unwrap().is_none());
        b.put_blob(b"layer one").unwrap();
        assert_eq!(b.cache_import(&config).unwrap(), 2);
        assert_eq!(b.cache_get(&e3.key).unwrap().unwrap().layer, e3.layer);
        assert_eq!(b.cache_import(&config).unwrap(), 0, "existing entries stay");
        assert!(b.cache_import(b"{not json").is_err());
    }
}
