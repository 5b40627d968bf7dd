//! Importing a plain root filesystem (a tarball, possibly compressed, or a directory)
//! as a one-layer image with an empty config, as `docker import` does.

use super::{discarding_on_error, io_err, malformed, Result};
use crate::store::{Image, Store};
use std::path::Path;
use std::process::{Command, Stdio};

pub(super) fn import(store: &Store, path: &Path, name: &str) -> Result<Image> {
    let source_name = format!("rootfs:{}", path.display());
    let meta = std::fs::metadata(path).map_err(io_err("stat", path))?;
    let layer = if meta.is_dir() {
        // GNU tar keeps xattrs (security.capability), devices, hard links and sparse files.
        let mut child = Command::new("tar")
            .args([
                "--create",
                "--file=-",
                "--format=pax",
                "--xattrs",
                "--xattrs-include=*",
                "--numeric-owner",
                "--sparse",
                "--sort=name",
                "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
                "--one-file-system",
                "-C",
            ])
            .arg(path)
            .arg(".")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err("run tar on", path))?;
        let stdout = child.stdout.take().expect("piped");
        let stored = store.put_layer(stdout, None);
        let out = child
            .wait_with_output()
            .map_err(io_err("run tar on", path))?;
        if !out.status.success() {
            if let Ok(layer) = &stored {
                let _ = store.discard(std::slice::from_ref(&layer.digest));
            }
            return Err(malformed(
                &source_name,
                format!(
                    "tar failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        stored?
    } else {
        let file = std::fs::File::open(path).map_err(io_err("open", path))?;
        store.put_layer(file, None)?
    };
    let config = serde_json::json!({
        "created": crate::timefmt::created_now(),
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [layer.digest.as_str()] },
        "history": [{ "created": crate::timefmt::created_now(), "created_by": format!("d2v import {source_name}") }],
    });
    let bytes = serde_json::to_vec(&config).expect("serializes");
    // Nothing else vouches for the layer: it goes again if it cannot be named.
    discarding_on_error(store, |stored| {
        stored.push(layer.digest.clone());
        Ok(store.commit_image(name, &bytes, &[layer.layer()])?)
    })
}
