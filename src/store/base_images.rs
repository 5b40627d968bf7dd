//! The store as the Dockerfile front end's source of base-image configs.

use super::{Store, StoreError};
use crate::dockerfile::{BaseError, BaseImages, ImageConfig};

impl BaseImages for Store {
    fn config(&self, name: &str) -> Result<Option<ImageConfig>, BaseError> {
        match self.image(name) {
            Ok(image) => Ok(Some(serde_json::from_slice(&image.config).map_err(
                |e| format!("the config of image {name:?} in the store is not valid: {e}"),
            )?)),
            Err(StoreError::ImageNotFound(_)) => Ok(None),
            Err(e) => Err(Box::new(e)),
        }
    }
}
