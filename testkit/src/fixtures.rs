//! The shared base-image fixtures (Debian bookworm, busybox, … as OCI layouts
//! and docker-archives), built once per machine by
//! `testdata/fixtures/make-fixtures.sh` into `D2V_FIXTURES`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The fixtures directory (`D2V_FIXTURES`, default `/var/tmp/d2v-fixtures`);
/// runs `make-fixtures.sh` first when it is missing.
pub fn fixtures() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(
            std::env::var("D2V_FIXTURES").unwrap_or_else(|_| "/var/tmp/d2v-fixtures".into()),
        );
        if !(dir.join("debian.tar").is_file() && dir.join("busybox.tar").is_file()) {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures/make-fixtures.sh");
            let status = Command::new(&script)
                .arg(&dir)
                .status()
                .expect("run make-fixtures.sh");
            assert!(status.success(), "make-fixtures.sh failed");
        }
        dir
    })
    .clone()
}

/// The path of fixture `name` (e.g. `busybox-oci`, `debian.tar`) as a string.
pub fn fixture(name: &str) -> String {
    fixtures().join(name).to_string_lossy().into_owned()
}
