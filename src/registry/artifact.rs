//! A packed VM (`rootfs.ext4` and `vm.json`) as an OCI 1.1 artifact.
//!
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json
//!   artifactType  application/vnd.d2v.vm.v1
//!   config        application/vnd.oci.empty.v1+json  ({})
//!   layers[0]     application/vnd.d2v.rootfs.ext4          title: rootfs file name
//!   layers[1]     application/vnd.d2v.vm.config.v1+json    title: vm.json
//! ```
//!
//! The `org.opencontainers.image.title` annotations let ORAS-style tools pull
//! the layers back as files.

use super::{PushReport, Registry, Result};
use crate::store::oci::{Descriptor, Manifest, MEDIA_TYPE_MANIFEST};
use crate::store::{IoContext, Store};
use std::collections::HashMap;
use std::path::Path;

/// The artifact type of a packed d2v VM.
pub const ARTIFACT_TYPE_VM: &str = "application/vnd.d2v.vm.v1";
/// The media type of the ext4 root file system image.
pub const MEDIA_TYPE_ROOTFS_EXT4: &str = "application/vnd.d2v.rootfs.ext4";
/// The media type of `vm.json` (a Firecracker `--config-file`).
pub const MEDIA_TYPE_VM_CONFIG: &str = "application/vnd.d2v.vm.config.v1+json";
/// The OCI empty descriptor's media type (an artifact's config: `{}`).
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The file-name annotation ORAS and friends use.
const ANNOTATION_TITLE: &str = "org.opencontainers.image.title";

fn titled(
    media_type: &str,
    digest: crate::store::oci::Digest,
    size: u64,
    title: &str,
) -> Descriptor {
    let mut desc = Descriptor::new(media_type, digest, size);
    desc.annotations
        .insert(ANNOTATION_TITLE.to_string(), title.to_string());
    desc
}

impl Registry {
    /// Pushes the packed image `rootfs` and its `vm_json` to `reference` as an
    /// artifact of type [`ARTIFACT_TYPE_VM`]. The ext4 image is uploaded from
    /// where it is; `vm.json` and the empty config go into `store` as blobs.
    pub fn push_vm_artifact(
        &self,
        store: &Store,
        rootfs: &Path,
        vm_json: &Path,
        reference: &str,
    ) -> Result<PushReport> {
        let (rootfs_digest, rootfs_size) = crate::store::hash_file(rootfs)?;
        let vm = std::fs::read(vm_json).ctx("read", vm_json)?;
        let vm_digest = store.put_blob(&vm)?;
        let empty = store.put_blob(b"{}")?;
        let title = rootfs
            .file_name()
            .map_or("rootfs.ext4".into(), |n| n.to_string_lossy());
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_MANIFEST.to_string()),
            config: Descriptor::new(MEDIA_TYPE_EMPTY, empty, 2),
            layers: vec![
                titled(
                    MEDIA_TYPE_ROOTFS_EXT4,
                    rootfs_digest.clone(),
                    rootfs_size,
                    &title,
                ),
                titled(MEDIA_TYPE_VM_CONFIG, vm_digest, vm.len() as u64, "vm.json"),
            ],
            annotations: Default::default(),
            artifact_type: Some(ARTIFACT_TYPE_VM.to_string()),
            extra: Default::default(),
        };
        let files = HashMap::from([(rootfs_digest, rootfs.to_path_buf())]);
        self.push_with(store, &manifest, reference, &files)
    }
}
