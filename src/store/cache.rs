//! The step cache: what a build step produced, keyed by its [`CacheKey`].
//!
//! One small JSON file per entry under `d2v/cache/`, written atomically. An entry
//! names the layer the step made (if any) and the image config after the step; a
//! hit is trusted only when the layer blob is still in the store. The file's mtime
//! is the entry's last use, which `d2v prune --cache-budget` evicts by.

use super::oci::Digest;
use super::{IoContext, Layer, Result, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// A step's cache key: a SHA-256 over everything the step's result depends on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CacheKey(pub String);

impl CacheKey {
    /// Derives a key from its parts, in order (each part length-prefixed).
    pub fn derive<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> CacheKey {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        CacheKey(hex::encode(h.finalize()))
    }

    /// The key as hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a cached step produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The key.
    pub key: CacheKey,
    /// The layer the step added, or none for steps that add no layer.
    pub layer: Option<Layer>,
    /// The step as written, for `d2v cache ls`.
    pub description: String,
    /// When the entry was made (RFC 3339).
    pub created: String,
    /// Any step-specific result the executor wants back on a hit.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub extra: serde_json::Value,
}

impl Store {
    fn cache_dir(&self) -> PathBuf {
        self.root().join("d2v/cache")
    }

    fn cache_path(&self, key: &CacheKey) -> PathBuf {
        self.cache_dir().join(format!("{}.json", key.0))
    }

    /// The entry for `key`, if there is one whose layer is still stored. Marks it used.
    pub fn cache_get(&self, key: &CacheKey) -> Result<Option<CacheEntry>> {
        let path = self.cache_path(key);
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(None);
        };
        let Ok(entry) = serde_json::from_slice::<CacheEntry>(&bytes) else {
            return Ok(None);
        };
        if let Some(Layer { digest, .. }) = &entry.layer {
            // Held from now on, so a concurrent prune or trim cannot take it.
            match self.hold(std::slice::from_ref(digest)) {
                Ok(()) => {}
                Err(StoreError::MissingBlob(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        // Touch: the mtime is the last use.
        let _ = std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Ok(Some(entry))
    }

    /// Records `entry` (its layer must already be stored).
    pub fn cache_put(&self, entry: &CacheEntry) -> Result<()> {
        let dir = self.cache_dir();
        std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        let body = serde_json::to_vec_pretty(entry).expect("a cache entry serializes");
        self.write_atomic(&self.cache_path(&entry.key), &body)
    }

    /// Every cache entry with its last-use time, oldest first.
    pub fn cache_entries(&self) -> Result<Vec<(CacheEntry, std::time::SystemTime)>> {
        let dir = self.cache_dir();
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        for e in rd {
            let e = e.ctx("list", &dir)?;
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            let Ok(entry) = serde_json::from_slice::<CacheEntry>(&bytes) else {
                continue;
            };
            let used = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            out.push((entry, used));
        }
        out.sort_by_key(|(e, used)| (*used, e.key.clone()));
        Ok(out)
    }

    /// Layers the cache refers to (roots for [`Store::prune`]).
    pub fn cache_roots(&self) -> Result<BTreeSet<Digest>> {
        Ok(self
            .cache_entries()?
            .into_iter()
            .filter_map(|(e, _)| e.layer.map(|l| l.digest))
            .collect())
    }

    /// Evicts least recently used entries until the layers only the cache holds
    /// fit in `budget` bytes. Returns how many entries were evicted.
    pub fn cache_trim(&self, budget: u64) -> Result<usize> {
        let named = self.reachable_blobs()?;
        let entries = self.cache_entries()?;
        let cost = |e: &CacheEntry| match &e.layer {
            Some(l) if !named.contains(&l.digest) => l.size,
            _ => 0,
        };
        let mut total: u64 = entries.iter().map(|(e, _)| cost(e)).sum();
        let mut evicted = 0;
        for (entry, _) in &entries {
            if total <= budget {
                break;
            }
            let path = self.cache_path(&entry.key);
            std::fs::remove_file(&path).ctx("remove", &path)?;
            total -= cost(entry);
            evicted += 1;
        }
        Ok(evicted)
    }

    /// Removes every cache entry.
    pub fn cache_clear(&self) -> Result<usize> {
        let mut n = 0;
        for (entry, _) in self.cache_entries()? {
            let path = self.cache_path(&entry.key);
            std::fs::remove_file(&path).ctx("remove", &path)?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_derivation_separates_parts() {
        let a = CacheKey::derive([b"ab".as_slice(), b"c".as_slice()]);
        let b = CacheKey::derive([b"a".as_slice(), b"bc".as_slice()]);
        assert_ne!(a, b);
        assert_eq!(a, CacheKey::derive([b"ab".as_slice(), b"c".as_slice()]));
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn entries_round_trip_and_missing_layers_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = store.put_blob(b"not really a tar").unwrap();
        let key = CacheKey::derive([b"RUN true".as_slice()]);
        let entry = CacheEntry {
            key: key.clone(),
            layer: Some((layer.clone(), 16).into()),
            description: "RUN true".into(),
            created: "2026-01-01T00:00:00Z".into(),
            extra: serde_json::Value::Null,
        };
        store.cache_put(&entry).unwrap();
        assert_eq!(store.cache_get(&key).unwrap(), Some(entry));
        assert!(store.cache_roots().unwrap().contains(&layer));
        std::fs::remove_file(store.blob_path(&layer)).unwrap();
        assert_eq!(
            store.cache_get(&key).unwrap(),
            None,
            "a hit needs its layer"
        );
        assert_eq!(store.cache_trim(0).unwrap(), 1);
        assert!(store.cache_entries().unwrap().is_empty());
    }
}
