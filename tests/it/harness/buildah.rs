//! buildah on a private, throwaway store: the oracle the build and mount tests
//! compare d2v against.

use std::path::Path;
use std::process::Command;

/// A buildah store of its own (chroot isolation), removed on drop.
pub struct Buildah {
    dir: tempfile::TempDir,
    driver: &'static str,
}

impl Buildah {
    /// An empty store using storage `driver` (`vfs`, `overlay`), under
    /// `$D2V_TEST_TMP` or /var/tmp: not /tmp, which overlayfs may refuse as upper.
    pub fn new(prefix: &str, driver: &'static str) -> Buildah {
        let base = std::env::var("D2V_TEST_TMP").unwrap_or_else(|_| "/var/tmp".into());
        Buildah {
            dir: tempfile::Builder::new()
                .prefix(prefix)
                .tempdir_in(base)
                .unwrap(),
            driver,
        }
    }

    /// The store's directory (free for the test's own files too).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A buildah command on this store.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("buildah");
        let d = self.dir.path();
        c.env("BUILDAH_ISOLATION", "chroot")
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .args(["--storage-driver", self.driver]);
        c
    }

    /// Runs buildah with `args`, panicking with its stderr on failure; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().expect("run buildah");
        assert!(
            out.status.success(),
            "buildah {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}
