//! The registry as an [`ImageSource`]: `FROM host/repo:tag` pulls on first use.

use super::{Registry, RegistryError, RegistryOptions};
use crate::source::{reference, ImageSource, SourceError, SourceKind};
use crate::store::{Image, Store};
use std::sync::{Arc, Mutex};

/// Pulls images a build names from their registries. The [`Registry`] (its
/// runtime, the Docker config) is set up on the first fetch, so builds that
/// find everything in the store never touch it.
pub struct RegistrySource {
    options: RegistryOptions,
    registry: Mutex<Option<Arc<Registry>>>,
}

impl RegistrySource {
    /// A source pulling with `options`.
    pub fn new(options: RegistryOptions) -> RegistrySource {
        RegistrySource {
            options,
            registry: Mutex::new(None),
        }
    }

    fn registry(&self) -> Result<Arc<Registry>, RegistryError> {
        let mut slot = self.registry.lock().unwrap();
        if let Some(r) = &*slot {
            return Ok(r.clone());
        }
        let r = Arc::new(Registry::new(self.options.clone())?);
        *slot = Some(r.clone());
        Ok(r)
    }
}

impl ImageSource for RegistrySource {
    fn kind(&self) -> SourceKind {
        SourceKind::Registry
    }

    /// Pulls `reference`; a registry that answers "no such manifest or
    /// repository" is `Ok(None)`, anything else that fails is an error.
    fn fetch(
        &self,
        store: &Store,
        reference: &str,
        names: &[String],
    ) -> Result<Option<Image>, SourceError> {
        // A name that is no image reference can only be a store name.
        if reference::normalize(reference).is_none() {
            return Ok(None);
        }
        match self.registry()?.pull_image(store, reference, names) {
            Ok((image, pulled)) => {
                if !self.options.quiet {
                    eprintln!("pulled {reference} ({})", pulled.reference_digest());
                }
                Ok(Some(image))
            }
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(Box::new(e)),
        }
    }
}
