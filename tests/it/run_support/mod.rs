//! Shared by the `run_*` boot tests: facility checks, images assembled from a
//! directory (busybox-static, the embedded `d2v-init`, `/etc/d2v/config.json`,
//! the static C probe from `testdata/run/probe.c`) and written by d2v's own
//! ext4 writer as `d2v pack` does, and `d2v run` wrappers. Needs:
//! qemu-system-x86_64, qemu-img, a kernel (`d2v kernel build`'s or Debian's
//! linux-image-amd64 in /boot), gcc, e2fsck, busybox. In CI a missing one
//! fails the test; otherwise the test is skipped with a note (`d2v_testkit::require`).

#![allow(dead_code)]

use d2v::runtime_config::{RuntimeConfig, RuntimeConfigExt};
pub use d2v_testkit::assert_fsck_clean;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// One boot at a time within a test binary: TCG is CPU-bound.
pub static BOOTS: Mutex<()> = Mutex::new(());

/// Takes the boot lock.
pub fn one_boot() -> MutexGuard<'static, ()> {
    BOOTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// What is missing for a boot test, if anything.
pub fn facilities_missing(extra: &[&str]) -> Option<String> {
    for bin in ["qemu-system-x86_64", "qemu-img", "gcc", "e2fsck", "busybox"]
        .iter()
        .chain(extra)
    {
        if !d2v_testkit::have_tool(bin) {
            return Some(format!("{bin} not found"));
        }
    }
    let has_kernel = d2v::run::kbuild::installed().is_some()
        || std::fs::read_dir("/boot")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
            })
            .unwrap_or(false);
    if !has_kernel {
        return Some("no kernel (run `d2v kernel build` or install linux-image-amd64)".into());
    }
    None
}

/// Returns from the test when a facility is missing (see
/// [`d2v_testkit::require`]: a failure in CI, a skip elsewhere).
#[macro_export]
macro_rules! require_facilities {
    ($($extra:expr),*) => {
        if let Some(why) = $crate::run_support::facilities_missing(&[$($extra),*]) {
            d2v_testkit::require(false, &why);
            return;
        }
    };
}

/// The static probe binary, built once per test process.
pub fn probe_binary() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/run/probe.c");
        let out = std::env::temp_dir().join(format!("d2v-probe-{}", std::process::id()));
        let st = Command::new("gcc")
            .args(["-static", "-Os", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("run gcc");
        assert!(st.success(), "gcc -static failed for {src:?}");
        out
    })
}

fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).is_file() {
            return p.into();
        }
    }
    panic!("busybox not found");
}

/// The image's /etc/passwd.
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n";
/// The image's /etc/group.
pub const GROUP: &str =
    "root:x:0:\nwheel:x:10:root,app\naudio:x:29:app\napp:x:1000:\nstaff:x:50:\n";

/// A root filesystem directory and the ext4 image of it.
pub struct Image {
    /// Holds both.
    pub dir: tempfile::TempDir,
    /// The ext4 image.
    pub path: PathBuf,
}

/// The root filesystem tree (also what the podman comparison imports).
pub fn build_root(root: &Path, config_json: &str, extra: &[(&str, &str)]) {
    for d in [
        "bin",
        "sbin",
        "etc/d2v",
        "dev",
        "proc",
        "sys",
        "run/lock",
        "tmp",
        "root",
        "home/app",
        "usr/local/bin",
        "www",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("run/from-image"), "kept\n").unwrap();
    std::fs::copy(busybox(), root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "sleep", "httpd", "ls", "wget", "nslookup", "date", "id", "stat",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    std::fs::copy(probe_binary(), root.join("usr/local/bin/probe")).unwrap();
    let init = root.join("sbin/d2v-init");
    std::fs::write(&init, d2v::run::init_binary()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("etc/passwd"), PASSWD).unwrap();
    std::fs::write(root.join("etc/group"), GROUP).unwrap();
    std::fs::write(root.join("etc/d2v/config.json"), config_json).unwrap();
    std::fs::write(root.join("www/index.html"), "hello from d2v\n").unwrap();
    for (path, content) in extra {
        std::fs::write(root.join(path), content).unwrap();
    }
}

/// An image of [`build_root`]'s tree with `config_json`.
pub fn build_image(config_json: &str, extra: &[(&str, &str)]) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    build_root(&root, config_json, extra);
    let img = dir.path().join("rootfs.ext4");
    let out = std::fs::File::create(&img).unwrap();
    let mut w = d2v_packer::Ext4Writer::new(out, d2v_packer::Options::default()).unwrap();
    d2v_packer::source::pack_dir(&root, &mut w).unwrap();
    w.finish().unwrap();
    Image { dir, path: img }
}

/// A runtime config as JSON.
pub fn config(f: impl FnOnce(&mut RuntimeConfig)) -> String {
    let mut c = RuntimeConfig::default();
    f(&mut c);
    c.to_json()
}

/// The probe image most tests boot: USER app with groups, WORKDIR, ENV.
pub fn probe_image() -> Image {
    build_image(
        &config(|c| {
            c.entrypoint = vec!["probe".into()];
            c.cmd = vec!["exit".into(), "0".into()];
            c.env = vec!["FOO=bar".into(), "GREETING=hello world".into()];
            c.user = "app".into();
            c.workdir = "/srv/data".into();
            c.hostname = "probe-box".into();
        }),
        &[],
    )
}

/// A finished `d2v run`.
pub struct Run {
    /// Exit code.
    pub code: Option<i32>,
    /// Its stdout, exactly.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: String,
}

impl Run {
    /// stdout as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// The `d2v` command with a private store.
pub fn d2v() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_d2v"));
    if std::env::var_os("D2V_HOME").is_none() {
        static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
        c.env(
            "D2V_HOME",
            HOME.get_or_init(|| tempfile::tempdir().unwrap()).path(),
        );
    }
    c
}

/// `d2v run --image IMAGE ARGS` with stdin from /dev/null.
pub fn d2v_run(image: &Path, args: &[&str]) -> Run {
    let _one = one_boot();
    let out = d2v()
        .arg("run")
        .arg("--image")
        .arg(image)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run d2v");
    finish(out)
}

/// Turns an `Output` into a [`Run`] (and logs it).
pub fn finish(out: Output) -> Run {
    let r = Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let shown = if r.stdout.len() > 4096 {
        format!("<{} bytes>", r.stdout.len())
    } else {
        r.out()
    };
    eprintln!("--- stdout ---\n{shown}\n--- stderr ---\n{}", r.stderr);
    r
}

/// The `probe: ` lines of an output.
pub fn probe_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("probe: ")).collect()
}
