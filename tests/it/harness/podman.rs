//! A private Podman API service (`podman system service`) as the Docker-API
//! daemon for tests: its own storage (vfs), runroot and socket in a temp dir,
//! `runc` as the runtime and `BUILDAH_ISOLATION=chroot`, so nothing depends on
//! or disturbs the host's Podman state. Stopped (process group killed, storage
//! unmounted and removed) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tools a [`Podman`] needs.
pub const TOOLS: &[&str] = &["podman", "runc"];

/// A running Podman API service.
pub struct Podman {
    dir: tempfile::TempDir,
    child: Child,
}

impl Podman {
    /// Starts the service and waits until it answers `/_ping`.
    pub fn start() -> Podman {
        let base = std::env::var("D2V_TEST_TMP").unwrap_or_else(|_| "/var/tmp".into());
        let dir = tempfile::Builder::new()
            .prefix("d2v-podman-")
            .tempdir_in(base)
            .unwrap();
        let d = dir.path();
        for sub in ["root", "run", "tmp"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // crun refuses this machine's hybrid cgroups; runc copes with them.
        std::fs::write(
            d.join("containers.conf"),
            "[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        let log = std::fs::File::create(d.join("service.log")).unwrap();
        let mut cmd = Podman::command_in(d);
        cmd.args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", d.join("api.sock").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn().expect("start podman system service");
        let podman = Podman { dir, child };
        podman.wait_ready();
        podman
    }

    fn command_in(d: &Path) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("BUILDAH_ISOLATION", "chroot")
            .env("TMPDIR", d.join("tmp"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--storage-driver", "vfs"]);
        cmd
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("curl")
                .args(["-sf", "--max-time", "2", "--unix-socket"])
                .arg(self.socket())
                .arg("http://d/_ping")
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "podman system service did not answer in 30s:\n{}",
                std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    /// `DOCKER_HOST` for this service.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Runs `podman ARGS` against this service's storage; panics on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Podman::command_in(self.dir.path())
            .args(args)
            .output()
            .expect("run podman");
        assert!(
            out.status.success(),
            "podman {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Loads OCI layout `dir:tag` into the service's storage as `name`.
    pub fn load_oci(&self, dir: &str, tag: &str, name: &str) {
        let id = self.run(&["pull", "-q", &format!("oci:{dir}:{tag}")]);
        self.run(&["tag", id.trim(), name]);
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group we created for the service.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: as above.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
        // Storage may hold mounts (vfs does not, but be sure): leave none behind.
        let root = self.dir.path().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = super::mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}
