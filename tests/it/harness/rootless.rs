//! Running d2v as an ordinary user: a user the tests create (with a
//! subordinate id range, as `useradd` gives one on Debian), a copy of the d2v
//! binary it can execute, and a store in a directory it owns.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The user the rootless tests run d2v as.
pub const USER: &str = "d2v-rootless";

/// The test user: created once per test process.
pub struct User {
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// Its home directory.
    pub home: PathBuf,
    /// A copy of the d2v binary it can run.
    pub bin: PathBuf,
}

static USER_ONCE: OnceLock<User> = OnceLock::new();

/// The test user, created (with a subordinate id range) if missing.
pub fn user() -> &'static User {
    USER_ONCE.get_or_init(|| {
        let exists = Command::new("id")
            .arg(USER)
            .output()
            .unwrap()
            .status
            .success();
        if !exists {
            let ok = Command::new("useradd")
                .args(["--create-home", "--shell", "/bin/sh", USER])
                .status()
                .expect("useradd");
            assert!(ok.success(), "useradd {USER} failed");
        }
        let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        if !subuid.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
            let ok = Command::new("usermod")
                .args([
                    "--add-subuids",
                    "500000-565535",
                    "--add-subgids",
                    "500000-565535",
                    USER,
                ])
                .status()
                .expect("usermod");
            assert!(ok.success(), "usermod --add-subuids failed");
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, USER]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let home = PathBuf::from(format!("/home/{USER}"));
        // A copy of the binary outside the (possibly private) checkout, put
        // in place by a rename so that concurrent test processes never see a
        // half-written one (and running ones keep theirs).
        let dir = PathBuf::from("/var/tmp/d2v-rootless-bin");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("d2v");
        let tmp = dir.join(format!(".d2v-{}", std::process::id()));
        std::fs::copy(env!("CARGO_BIN_EXE_d2v"), &tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &bin).unwrap();
        User {
            uid,
            gid,
            home,
            bin,
        }
    })
}

/// A store owned by the test user and a way to run d2v against it as that user.
pub struct RootlessD2v {
    /// The store directory (`D2V_HOME`), owned by the user.
    pub home: tempfile::TempDir,
}

impl RootlessD2v {
    /// A new, empty store for the test user.
    pub fn new() -> RootlessD2v {
        let u = user();
        let home = tempfile::Builder::new()
            .prefix("d2v-rootless-home-")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::os::unix::fs::chown(home.path(), Some(u.uid), Some(u.gid)).unwrap();
        RootlessD2v { home }
    }

    /// The store path.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// A `d2v` command run as the test user with this store.
    pub fn cmd(&self) -> Command {
        let u = user();
        let mut c = Command::new("runuser");
        c.args(["-u", USER, "--", "env", "-i"])
            .arg(format!("HOME={}", u.home.display()))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin")
            .arg(format!("D2V_HOME={}", self.home.path().display()))
            .arg(&u.bin);
        c
    }

    /// Runs d2v with `args` as the user.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .expect("run d2v as the test user")
    }

    /// Runs d2v with `args` as the user and panics unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "d2v {args:?} as {USER} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for RootlessD2v {
    fn drop(&mut self) {
        // Files RUN steps wrote belong to the user's subordinate ids; root can
        // remove them, which TempDir's drop does.
    }
}

/// A copy of `dir` (a build context) the test user can read.
pub fn readable_copy(dir: &Path) -> tempfile::TempDir {
    let out = tempfile::Builder::new()
        .prefix("d2v-rootless-ctx-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", dir.display()))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let ok = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(ok.success());
    out
}
