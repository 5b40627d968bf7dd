//! Where base images come from.
//!
//! A build names images by reference (`FROM debian:bookworm`, `COPY --from=alpine`).
//! The [`Resolver`] looks each one up in an ordered list of places: the store
//! itself, a Docker-API daemon, a registry. The order is configurable
//! ([`SourceKind::parse_order`], default `store,daemon,registry`); putting
//! `registry` before `store` means "always pull", like `docker build --pull`.
//!
//! A source that finds an image copies it into the store under the reference as
//! written *and* its normalised form (`alpine` → `docker.io/library/alpine:latest`),
//! so everything downstream (the planner, the executor, `d2v mount`) reads
//! images from the store only.

pub mod reference;

use crate::dockerfile::{BaseError, BaseImages, ImageConfig};
use crate::store::{Image, Store, StoreError};
use std::fmt;
use std::sync::Mutex;

/// A boxed error from an [`ImageSource`].
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A place images can be fetched from into the store.
pub trait ImageSource: Send + Sync {
    /// What kind of source this is.
    fn kind(&self) -> SourceKind;

    /// Copies the image `reference` into `store`, recording it under each of
    /// `names` (the reference as written and its normalised form), and returns
    /// it. `Ok(None)` means this source does not have the image (or, for a
    /// daemon, that no daemon is reachable); an `Err` is a real failure (bad
    /// credentials, a corrupted blob, ...), which stops the lookup.
    fn fetch(
        &self,
        store: &Store,
        reference: &str,
        names: &[String],
    ) -> Result<Option<Image>, SourceError>;
}

/// The kinds of place an image can come from, in [`Resolver`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// The d2v store.
    Store,
    /// A Docker-API daemon (Docker, or `podman system service`).
    Daemon,
    /// An OCI distribution registry.
    Registry,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Store => "store",
            SourceKind::Daemon => "daemon",
            SourceKind::Registry => "registry",
        })
    }
}

/// The default lookup order.
pub const DEFAULT_ORDER: &str = "store,daemon,registry";

impl SourceKind {
    /// Parses a comma-separated lookup order such as `store,registry`.
    pub fn parse_order(list: &str) -> Result<Vec<SourceKind>, String> {
        let mut out = Vec::new();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let kind = match word {
                "store" => SourceKind::Store,
                "daemon" | "docker" => SourceKind::Daemon,
                "registry" => SourceKind::Registry,
                _ => {
                    return Err(format!(
                        "unknown image source {word:?} (expected store, daemon or registry)"
                    ))
                }
            };
            if out.contains(&kind) {
                return Err(format!("image source {word:?} is listed twice"));
            }
            out.push(kind);
        }
        if out.is_empty() {
            return Err("the image source list is empty".into());
        }
        Ok(out)
    }
}

/// Errors from resolving an image reference.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No source in the lookup order has the image.
    #[error("image {reference:?} not found (looked in: {looked})")]
    NotFound {
        /// The reference as written.
        reference: String,
        /// The sources tried, e.g. `store, registry`.
        looked: String,
    },
    /// A source failed.
    #[error("{kind}: {source}")]
    Source {
        /// Which source.
        kind: SourceKind,
        /// The reference.
        reference: String,
        /// Its error.
        source: SourceError,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Looks images up in the store and, when missing, fetches them from the
/// configured sources in order.
pub struct Resolver<'a> {
    store: &'a Store,
    order: Vec<SourceKind>,
    sources: Vec<Box<dyn ImageSource + 'a>>,
    /// References already fetched in this run, so a source is asked once.
    fetched: Mutex<Vec<String>>,
}

impl<'a> Resolver<'a> {
    /// A resolver over `store` trying `order`; sources are added with
    /// [`Resolver::with_source`] (a kind in `order` without a source is skipped).
    pub fn new(store: &'a Store, order: Vec<SourceKind>) -> Resolver<'a> {
        Resolver {
            store,
            order,
            sources: Vec::new(),
            fetched: Mutex::new(Vec::new()),
        }
    }

    /// A resolver that only looks in the store.
    pub fn store_only(store: &'a Store) -> Resolver<'a> {
        Resolver::new(store, vec![SourceKind::Store])
    }

    /// Adds a source.
    pub fn with_source(mut self, source: Box<dyn ImageSource + 'a>) -> Resolver<'a> {
        self.sources.push(source);
        self
    }

    /// The store.
    pub fn store(&self) -> &'a Store {
        self.store
    }

    /// Resolves `reference` to an image in the store, fetching it if needed.
    pub fn image(&self, reference: &str) -> Result<Image, ResolveError> {
        let names = reference::store_names(reference);
        let mut looked = Vec::new();
        for kind in &self.order {
            if *kind == SourceKind::Store {
                looked.push("store".to_string());
                for name in &names {
                    match self.store.image(name) {
                        Ok(image) => return Ok(image),
                        Err(StoreError::ImageNotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                continue;
            }
            // A source earlier in the order than the store (e.g. always pull):
            // ask it once per run, then the store has the result.
            if self.fetched.lock().unwrap().iter().any(|r| r == reference) {
                if let Ok(image) = self.store.image(&names[0]) {
                    return Ok(image);
                }
            }
            for source in self.sources.iter().filter(|s| s.kind() == *kind) {
                looked.push(kind.to_string());
                match source.fetch(self.store, reference, &names) {
                    Ok(Some(image)) => {
                        self.fetched.lock().unwrap().push(reference.to_string());
                        return Ok(image);
                    }
                    Ok(None) => {}
                    Err(source) => {
                        return Err(ResolveError::Source {
                            kind: *kind,
                            reference: reference.to_string(),
                            source,
                        })
                    }
                }
            }
        }
        Err(ResolveError::NotFound {
            reference: reference.to_string(),
            looked: looked.join(", "),
        })
    }
}

/// The store alone as the front end's source of base-image configs.
impl BaseImages for Store {
    fn config(&self, name: &str) -> Result<Option<ImageConfig>, BaseError> {
        match self.image(name) {
            Ok(image) => Ok(Some(parse_config(name, &image.config)?)),
            Err(StoreError::ImageNotFound(_)) => Ok(None),
            Err(e) => Err(Box::new(e)),
        }
    }
}

fn parse_config(name: &str, config: &[u8]) -> Result<ImageConfig, String> {
    serde_json::from_slice(config)
        .map_err(|e| format!("the config of image {name:?} in the store is not valid: {e}"))
}

impl BaseImages for Resolver<'_> {
    fn config(&self, name: &str) -> Result<Option<ImageConfig>, BaseError> {
        match self.image(name) {
            Ok(image) => Ok(Some(parse_config(name, &image.config)?)),
            Err(ResolveError::NotFound { .. }) => Ok(None),
            Err(e) => Err(Box::new(e)),
        }
    }

    fn not_found(&self, name: &str) -> String {
        let order: Vec<String> = self.order.iter().map(|k| k.to_string()).collect();
        format!("image {name} not found (looked in: {})", order.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_orders() {
        assert_eq!(
            SourceKind::parse_order(DEFAULT_ORDER).unwrap(),
            vec![SourceKind::Store, SourceKind::Daemon, SourceKind::Registry]
        );
        assert_eq!(
            SourceKind::parse_order("registry, store").unwrap(),
            vec![SourceKind::Registry, SourceKind::Store]
        );
        assert!(SourceKind::parse_order("store,store").is_err());
        assert!(SourceKind::parse_order("store,cloud").is_err());
        assert!(SourceKind::parse_order("").is_err());
    }

    struct Fake(SourceKind, &'static str);

    impl ImageSource for Fake {
        fn kind(&self) -> SourceKind {
            self.0
        }
        fn fetch(
            &self,
            store: &Store,
            reference: &str,
            names: &[String],
        ) -> Result<Option<Image>, SourceError> {
            if reference != self.1 {
                return Ok(None);
            }
            let mut image = None;
            for name in names {
                image = Some(store.commit_image(
                    name,
                    br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#,
                    &[],
                )?);
            }
            Ok(image)
        }
    }

    #[test]
    fn fetches_into_the_store_under_both_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let resolver = Resolver::new(&store, vec![SourceKind::Store, SourceKind::Registry])
            .with_source(Box::new(Fake(SourceKind::Registry, "alpine")));
        resolver.image("alpine").unwrap();
        assert!(store.image("alpine").is_ok());
        assert!(store.image("docker.io/library/alpine:latest").is_ok());
        let err = resolver.image("busybox").unwrap_err();
        assert!(
            matches!(&err, ResolveError::NotFound { looked, .. } if looked == "store, registry"),
            "{err}"
        );
        // Store-only resolution finds the normalised name too.
        let only = Resolver::store_only(&store);
        assert!(only.image("docker.io/library/alpine").is_ok());
    }
}
