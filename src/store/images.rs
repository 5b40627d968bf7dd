//! Named images: the `index.json` entries of the layout, their manifests and configs.

use super::oci::{
    ConfigSummary, Descriptor, Digest, Index, Manifest, ANNOTATION_REF_NAME, MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_LAYER_TAR, MEDIA_TYPE_MANIFEST,
};
use super::{IoContext, Layer, Result, Store, StoreError};
use std::path::PathBuf;

/// An image in the store, resolved from its name.
#[derive(Clone, Debug)]
pub struct Image {
    /// The name it was looked up by.
    pub name: String,
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// The config blob, byte for byte.
    pub config: Vec<u8>,
}

impl Image {
    /// The image ID: the digest of its config, as Docker shows it.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }

    /// The layer digests, bottom first.
    pub fn layers(&self) -> Vec<Digest> {
        self.manifest
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .collect()
    }

    /// The layers (digest and size), bottom first.
    pub fn layer_blobs(&self) -> Vec<Layer> {
        self.manifest.layers.iter().map(Layer::from).collect()
    }

    /// The sum of the layer sizes.
    pub fn size(&self) -> u64 {
        self.manifest.layers.iter().map(|l| l.size).sum()
    }

    /// The config as a JSON value.
    pub fn config_json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.config).map_err(|source| StoreError::Json {
            what: "image config",
            path: PathBuf::from(self.id().as_str()),
            source,
        })
    }

    /// The config parsed as an OCI image configuration.
    pub fn oci_config(&self) -> Result<oci_spec::image::ImageConfiguration> {
        serde_json::from_slice(&self.config).map_err(|source| StoreError::Json {
            what: "image config",
            path: PathBuf::from(self.id().as_str()),
            source,
        })
    }

    fn created(&self) -> Option<String> {
        serde_json::from_slice::<ConfigSummary>(&self.config)
            .ok()
            .and_then(|c| c.created)
    }
}

/// One row of `d2v images`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageSummary {
    /// The image's name.
    pub name: String,
    /// Its ID (config digest); `None` when the image is damaged.
    pub id: Option<Digest>,
    /// Sum of its (uncompressed) layer sizes.
    pub size: u64,
    /// When it was created, as the config says.
    pub created: Option<String>,
    /// Why the image cannot be used, when it cannot (a missing or damaged
    /// manifest, config or layer); `d2v check --repair` removes its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// An image's content without a name: what a source (a Docker daemon's
/// export, a stage built elsewhere) produced, its layers already stored.
#[derive(Clone, Debug)]
pub struct ExternalImage {
    /// Its ID where it was made (a Docker image ID, `sha256:…`).
    pub id: String,
    /// Its config blob.
    pub config: Vec<u8>,
    /// Its layers, bottom first.
    pub layers: Vec<Layer>,
}

/// Checks that `name` can be stored as an image name.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why| Err(StoreError::InvalidName(name.to_string(), why));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains white space or control characters");
    }
    Ok(())
}

impl Store {
    fn index_path(&self) -> PathBuf {
        self.root().join("index.json")
    }

    /// Reads the layout's `index.json`.
    pub fn read_index(&self) -> Result<Index> {
        let path = self.index_path();
        let bytes = std::fs::read(&path).ctx("read", &path)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            what: "index",
            path,
            source,
        })
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let body = serde_json::to_vec_pretty(index).expect("an index always serializes");
        self.write_atomic(&self.index_path(), &body)
    }

    /// Looks an image up by the name it was given.
    pub fn image(&self, name: &str) -> Result<Image> {
        let index = self.read_index()?;
        let desc = index
            .manifests
            .iter()
            .rev()
            .find(|d| d.ref_name() == Some(name))
            .ok_or_else(|| StoreError::ImageNotFound(name.to_string()))?;
        self.image_from_manifest(name, &desc.digest)
            .map_err(|e| StoreError::BadImage {
                name: name.to_string(),
                source: Box::new(e),
            })
    }

    /// Loads an image from its manifest digest.
    pub fn image_from_manifest(&self, name: &str, digest: &Digest) -> Result<Image> {
        let bytes = self.read_blob(digest)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                what: "manifest",
                path: self.blob_path(digest),
                source,
            })?;
        let config = self.read_blob(&manifest.config.digest)?;
        Ok(Image {
            name: name.to_string(),
            manifest_digest: digest.clone(),
            manifest,
            config,
        })
    }

    /// Every named image, in the order of `index.json`. One that cannot be
    /// read is listed with what is wrong ([`ImageSummary::damaged`]), never
    /// hiding the others.
    pub fn images(&self) -> Result<Vec<ImageSummary>> {
        let index = self.read_index()?;
        let mut out = Vec::new();
        for desc in &index.manifests {
            let Some(name) = desc.ref_name() else {
                continue;
            };
            let summary = match self.image_from_manifest(name, &desc.digest) {
                Ok(image) => ImageSummary {
                    name: name.to_string(),
                    id: Some(image.id().clone()),
                    size: image.size(),
                    created: image.created(),
                    damaged: image
                        .layers()
                        .into_iter()
                        .find(|d| !self.has_blob(d))
                        .map(|d| StoreError::MissingBlob(d).to_string()),
                },
                Err(e) => ImageSummary {
                    name: name.to_string(),
                    id: None,
                    size: 0,
                    created: None,
                    damaged: Some(e.to_string()),
                },
            };
            out.push(summary);
        }
        Ok(out)
    }

    /// Records an image made of `config` (JSON bytes) and stored uncompressed `layers`,
    /// under `name`. The layers must already be in the store; their
    /// indexes are built here if missing. Replaces any image of the same name.
    pub fn commit_image(&self, name: &str, config: &[u8], layers: &[Layer]) -> Result<Image> {
        validate_name(name)?;
        for layer in layers {
            self.ensure_layer_index(&layer.digest)?;
        }
        let config_digest = self.put_blob(config)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_MANIFEST.to_string()),
            config: Descriptor::new(MEDIA_TYPE_CONFIG, config_digest, config.len() as u64),
            layers: layers
                .iter()
                .map(|l| Descriptor::new(MEDIA_TYPE_LAYER_TAR, l.digest.clone(), l.size))
                .collect(),
            annotations: Default::default(),
            artifact_type: None,
            extra: Default::default(),
        };
        let manifest_bytes = serde_json::to_vec(&manifest).expect("a manifest always serializes");
        let manifest_digest = self.put_blob(&manifest_bytes)?;
        let mut desc = Descriptor::new(
            MEDIA_TYPE_MANIFEST,
            manifest_digest.clone(),
            manifest_bytes.len() as u64,
        );
        desc.annotations
            .insert(ANNOTATION_REF_NAME.to_string(), name.to_string());
        desc.platform = Some(super::oci::Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        });
        {
            let _lock = self.lock()?;
            let mut index = self.read_index()?;
            index.manifests.retain(|d| d.ref_name() != Some(name));
            index.manifests.push(desc);
            self.write_index(&index)?;
        }
        Ok(Image {
            name: name.to_string(),
            manifest_digest,
            manifest,
            config: config.to_vec(),
        })
    }

    /// Removes the name `name`; its blobs stay until [`Store::prune`].
    pub fn remove_image(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index.manifests.retain(|d| d.ref_name() != Some(name));
        if index.manifests.len() == before {
            return Err(StoreError::ImageNotFound(name.to_string()));
        }
        self.write_index(&index)
    }
}
