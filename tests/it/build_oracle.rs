//! Differential test: the root filesystem and image config `d2v build` makes,
//! against `buildah bud --isolation chroot` (Debian's buildah) on the same
//! Dockerfile and context.
//!
//! Each `testdata/build-oracle/<case>/` is a build context with a `Dockerfile`
//! FROM `localhost/busybox:latest` or `localhost/debian:bookworm` (the
//! fixtures of `testdata/fixtures/make-fixtures.sh`, imported into both tools
//! under those names). Optional files:
//! - `case.json`: `{"build_args": {"K": "V"}, "target": "STAGE",
//!   "docker_config": {"Field": value, "_why": "..."}}` — `docker_config`
//!   holds hand-written expectations for config fields where buildah departs
//!   from Docker's documented behaviour (each must still differ from buildah's,
//!   or it is stale); `docker_nlink`: `{"path": N, "_why": "..."}`, the
//!   hard-link count Docker gives a file where buildah's differs.
//! - `Dockerfile.buildah`: the same build in syntax buildah 1.28 accepts (it
//!   has no heredocs), written as Docker documents the original to behave.
//!
//! Both images' trees are compared path by path (type, mode, owner, size,
//! content, link target, xattrs, hard-link counts) ignoring only mtimes,
//! directory sizes and the build noise named in [`noise`]; the config fields
//! in [`CONFIG_FIELDS`] are compared too.
//!
//! Every case is also built by d2v as an ordinary user (rootless: a user the
//! test creates, with a subordinate id range), and that tree must equal the
//! one d2v built as root, owners, modes and xattrs included.
//!
//! Needs root, buildah, and (for the `deb-apt` case) Debian's mirror. With
//! `CI=true` a missing tool fails the test. `D2V_ORACLE_CASES=a,b` runs only
//! the named cases.

use crate::harness;

use harness::rootless::{self, RootlessD2v};
use harness::tree::{self, Ignore};
use harness::{require_root_and, D2v};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The image config fields compared.
const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Entrypoint",
    "Cmd",
    "User",
    "WorkingDir",
    "ExposedPorts",
    "Labels",
    "StopSignal",
    "Volumes",
];

/// How long one `d2v build` may take (the apt case downloads packages).
const BUILD_TIMEOUT_SECS: u64 = 300;

/// A base image both tools know by the same name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Base {
    Busybox,
    Debian,
}

impl Base {
    const ALL: [Base; 2] = [Base::Busybox, Base::Debian];

    fn name(self) -> &'static str {
        match self {
            Base::Busybox => "localhost/busybox:latest",
            Base::Debian => "localhost/debian:bookworm",
        }
    }

    /// The fixture as an `oci:` reference.
    fn oci(self) -> String {
        let fix = harness::fixtures();
        match self {
            Base::Busybox => format!("oci:{}:latest", fix.join("busybox-oci").display()),
            Base::Debian => format!("oci:{}:bookworm", fix.join("debian-oci").display()),
        }
    }
}

/// One case directory.
struct Case {
    name: String,
    dir: PathBuf,
    build_args: Vec<(String, String)>,
    target: Option<String>,
    docker_config: Map<String, Value>,
    docker_nlink: BTreeMap<String, u64>,
    bases: Vec<Base>,
}

impl Case {
    fn load(name: &str) -> Case {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/build-oracle")
            .join(name);
        let text = std::fs::read_to_string(dir.join("Dockerfile"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let spec: Value = match std::fs::read_to_string(dir.join("case.json")) {
            Ok(s) => serde_json::from_str(&s).unwrap_or_else(|e| panic!("{name}/case.json: {e}")),
            Err(_) => Value::Object(Map::new()),
        };
        let build_args = spec["build_args"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let mut docker_config = spec["docker_config"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if !docker_config.is_empty() {
            assert!(
                docker_config.remove("_why").is_some(),
                "{name}: docker_config needs a _why"
            );
        }
        let mut docker_nlink = spec["docker_nlink"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if !docker_nlink.is_empty() {
            assert!(
                docker_nlink.remove("_why").is_some(),
                "{name}: docker_nlink needs a _why"
            );
        }
        Case {
            name: name.to_string(),
            docker_nlink: docker_nlink
                .into_iter()
                .map(|(k, v)| (k, v.as_u64().expect("docker_nlink counts are numbers")))
                .collect(),
            build_args,
            target: spec["target"].as_str().map(str::to_string),
            docker_config,
            bases: Base::ALL
                .into_iter()
                .filter(|b| text.contains(b.name()))
                .collect(),
            dir,
        }
    }

    /// The Dockerfile buildah builds.
    fn buildah_dockerfile(&self) -> PathBuf {
        let alt = self.dir.join("Dockerfile.buildah");
        if alt.is_file() {
            alt
        } else {
            self.dir.join("Dockerfile")
        }
    }

    fn tag(&self) -> String {
        format!("localhost/oracle-{}:latest", self.name)
    }
}

/// buildah on a throwaway store (vfs driver, chroot isolation) holding the bases.
struct Buildah(harness::buildah::Buildah);

impl std::ops::Deref for Buildah {
    type Target = harness::buildah::Buildah;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Buildah {
    fn new(bases: &[Base]) -> Buildah {
        let b = Buildah(harness::buildah::Buildah::new("d2v-oracle-buildah-", "vfs"));
        for base in bases {
            let id = b.ok(&["pull", "-q", &base.oci()]);
            b.ok(&["tag", id.trim(), base.name()]);
        }
        b
    }

    fn build(&self, case: &Case) {
        let mut cmd = self.cmd();
        cmd.args(["bud", "--isolation", "chroot", "--layers=false", "-q", "-t"])
            .arg(case.tag())
            .arg("-f")
            .arg(case.buildah_dockerfile());
        for (k, v) in &case.build_args {
            cmd.arg("--build-arg").arg(format!("{k}={v}"));
        }
        if let Some(t) = &case.target {
            cmd.arg("--target").arg(t);
        }
        let out = cmd.arg(&case.dir).output().expect("run buildah bud");
        assert!(
            out.status.success(),
            "{}: buildah bud failed:\n{}",
            case.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The image's rootfs (a working container's dir; with vfs it is a plain
    /// directory).
    fn rootfs(&self, tag: &str) -> PathBuf {
        let ctr = self.ok(&["from", "-q", tag]);
        PathBuf::from(self.ok(&["mount", ctr.trim()]).trim())
    }

    /// The image's OCI config object.
    fn config(&self, tag: &str) -> Map<String, Value> {
        let v: Value =
            serde_json::from_str(&self.ok(&["inspect", "--type", "image", tag])).unwrap();
        let mut config = v["OCIv1"]["config"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        // buildah stamps its own version into every image.
        if let Some(Value::Object(labels)) = config.get_mut("Labels") {
            labels.remove("io.buildah.version");
        }
        config
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        // Unmount working containers so the temp dir can go.
        let _ = self.cmd().args(["rm", "--all"]).output();
    }
}

/// Build noise: paths whose content depends on when or how often a build ran,
/// not on what it did. Each is left out of both trees.
fn noise(path: &str) -> bool {
    // apt's binary caches (pkgcache.bin, srcpkgcache.bin) embed mirror state and
    // are rebuilt on every `apt-get update`; the package lists are whatever the
    // mirror served at that second (the Dockerfiles delete them, but `partial/`
    // and `lock` stay).
    path.starts_with("var/cache/apt/")
        || path.starts_with("var/lib/apt/lists/")
        // dpkg, apt, lastlog and faillog logs carry wall-clock times.
        || path.starts_with("var/log/")
        // debconf's backups are copies from before the last run: which run wrote
        // them depends on how many debconf runs happened, not on the result.
        || (path.starts_with("var/cache/debconf/") && path.ends_with("-old"))
        // ldconfig's aux cache records inode numbers and ctimes of libraries.
        || path == "var/cache/ldconfig/aux-cache"
}

/// Paths buildah 1.28 leaves behind as bind-mount targets of RUN when the base
/// image lacks them (empty files for /etc/hosts, /etc/hostname and
/// /etc/resolv.conf, an empty /run). Docker's builder (BuildKit) leaves no such
/// trace: a RUN's mounts are not part of its layer. Dropped from buildah's tree
/// only when they are empty and d2v has no such path.
fn buildah_mount_target(path: &str, line: &str) -> bool {
    match path {
        "etc/hosts" | "etc/hostname" | "etc/resolv.conf" => line.contains(" size=0 "),
        "run" => line.starts_with("dir "),
        _ => false,
    }
}

fn describe(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut d = tree::describe(
        root,
        Ignore {
            mtime: true,
            dir_size: true,
        },
    );
    d.retain(|k, _| !noise(&String::from_utf8_lossy(k)));
    d
}

/// `line` (a [`tree::describe`] line of a regular file) with its hard-link
/// count set to `n` (describe writes `nlink=` only when above 1, right after
/// the content hash).
fn with_nlink(line: &str, n: u64) -> String {
    let mut words: Vec<String> = line
        .split(' ')
        .filter(|w| !w.starts_with("nlink="))
        .map(str::to_string)
        .collect();
    if n > 1 {
        let at = words
            .iter()
            .position(|w| w.starts_with("sha256="))
            .expect("a regular file's line")
            + 1;
        words.insert(at, format!("nlink={n}"));
    }
    words.join(" ")
}

/// Empty strings, lists and maps mean "unset" in both tools' JSON.
fn normalize(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(Value::Array(a)) if a.is_empty() => Value::Null,
        Some(Value::Object(o)) if o.is_empty() => Value::Null,
        Some(v) => v.clone(),
    }
}

/// A d2v store with the bases imported under the same names as in buildah.
fn d2v_with(bases: &[Base]) -> D2v {
    let d2v = D2v::new();
    for base in bases {
        d2v.ok(&["import", &base.oci(), "--as", base.name()]);
    }
    d2v
}

/// A rootless d2v store with the bases imported under the same names.
fn rootless_with(bases: &[Base]) -> RootlessD2v {
    let d2v = RootlessD2v::new();
    for base in bases {
        d2v.ok(&["import", &base.oci(), "--as", base.name()]);
    }
    d2v
}

/// The tree of image `tag` in the store at `home`, through `d2v mount`.
fn mounted_tree(home: &Path, tag: &str) -> BTreeMap<Vec<u8>, String> {
    let mnt = tempfile::tempdir().unwrap();
    let mnt_path = mnt.path().to_str().unwrap();
    let d2v = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_d2v"))
            .env("D2V_HOME", home)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "d2v {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    d2v(&["mount", tag, mnt_path]);
    let tree = catch_unwind(|| describe(mnt.path()));
    d2v(&["umount", mnt_path]);
    tree.unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// The `d2v build` arguments of `case`, context last.
fn build_args(case: &Case, ctx: &str) -> Vec<String> {
    let mut args: Vec<String> = ["build", "-t", &case.tag(), "--progress", "plain"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (k, v) in &case.build_args {
        args.extend(["--build-arg".to_string(), format!("{k}={v}")]);
    }
    if let Some(t) = &case.target {
        args.extend(["--target".to_string(), t.clone()]);
    }
    args.push(ctx.to_string());
    args
}

/// Builds `case` as an ordinary user and compares its tree with root's build.
fn check_rootless(d2v: &D2v, user: &RootlessD2v, case: &Case) {
    let ctx = rootless::readable_copy(&case.dir);
    let args = build_args(case, ctx.path().to_str().unwrap());
    let out = user
        .cmd()
        .args(&args)
        .output()
        .expect("run d2v as the test user");
    assert!(
        out.status.success(),
        "{}: d2v build as {} failed ({}):\n{}",
        case.name,
        rootless::USER,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let tag = case.tag();
    tree::assert_same(
        &format!("d2v as {} {}", rootless::USER, case.name),
        &mounted_tree(user.home(), &tag),
        &format!("d2v as root {}", case.name),
        &mounted_tree(d2v.home(), &tag),
    );
}

/// Builds `case` with both tools and compares the results.
fn check_case(d2v: &D2v, buildah: &Buildah, case: &Case) {
    let tag = case.tag();
    let args = build_args(case, case.dir.to_str().unwrap());
    // A hung build (a sandbox child stuck before exec) fails the case instead
    // of the whole test run; SIGKILL because d2v catches SIGTERM.
    let out = Command::new("timeout")
        .args(["--signal=KILL", &BUILD_TIMEOUT_SECS.to_string()])
        .arg(env!("CARGO_BIN_EXE_d2v"))
        .args(&args)
        .env("D2V_HOME", d2v.home())
        .output()
        .expect("run timeout d2v build");
    assert!(
        out.status.success(),
        "{}: d2v build {}:\n{}",
        case.name,
        match out.status.code() {
            Some(124) | None => format!("hung; killed after {BUILD_TIMEOUT_SECS} s"),
            _ => format!("failed ({})", out.status),
        },
        String::from_utf8_lossy(&out.stderr)
    );
    buildah.build(case);

    // Config fields.
    let ours: Value = serde_json::from_str(&d2v.ok(&["inspect", &tag])).unwrap();
    let ours = ours["config"].as_object().cloned().unwrap_or_default();
    let theirs = buildah.config(&tag);
    let mut config_diffs = Vec::new();
    for field in CONFIG_FIELDS {
        let got = normalize(ours.get(*field));
        let from_buildah = normalize(theirs.get(*field));
        let want = match case.docker_config.get(*field) {
            Some(docker) => {
                let docker = normalize(Some(docker));
                assert_ne!(
                    docker, from_buildah,
                    "{}: case.json's docker_config {field} now equals buildah's; remove it",
                    case.name
                );
                docker
            }
            None => from_buildah,
        };
        if got != want {
            config_diffs.push(format!("{field}: d2v {got} != expected {want}"));
        }
    }
    assert!(
        config_diffs.is_empty(),
        "{}: image config differs:\n{}",
        case.name,
        config_diffs.join("\n")
    );

    // Trees.
    let theirs_root = buildah.rootfs(&tag);
    let mut theirs = describe(&theirs_root);
    let mnt = tempfile::tempdir().unwrap();
    let mnt_path = mnt.path().to_str().unwrap();
    d2v.ok(&["mount", &tag, mnt_path]);
    let ours = catch_unwind(|| describe(mnt.path()));
    d2v.ok(&["umount", mnt_path]);
    let ours = ours.unwrap_or_else(|e| std::panic::resume_unwind(e));
    theirs.retain(|k, line| {
        ours.contains_key(k) || !buildah_mount_target(&String::from_utf8_lossy(k), line)
    });
    for (path, n) in &case.docker_nlink {
        let line = theirs.get_mut(path.as_bytes()).unwrap_or_else(|| {
            panic!(
                "{}: docker_nlink names {path}, not in buildah's tree",
                case.name
            )
        });
        let want = with_nlink(line, *n);
        assert_ne!(
            *line, want,
            "{}: docker_nlink {path} now equals buildah's; remove it",
            case.name
        );
        *line = want;
    }
    tree::assert_same(
        &format!("d2v {}", case.name),
        &ours,
        &format!("buildah {}", case.name),
        &theirs,
    );
}

/// Runs `names` (filtered by `D2V_ORACLE_CASES`), each in its own catch so one
/// failing case does not hide the others; panics naming all that failed.
fn run_cases(names: &[&str]) {
    if !require_root_and(&["buildah", "newuidmap", "slirp4netns"]) {
        return;
    }
    let only = std::env::var("D2V_ORACLE_CASES").ok();
    let cases: Vec<Case> = names
        .iter()
        .filter(|n| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|x| x == **n))
        })
        .map(|n| Case::load(n))
        .collect();
    if cases.is_empty() {
        eprintln!("no case selected by D2V_ORACLE_CASES");
        return;
    }
    let mut bases: Vec<Base> = cases.iter().flat_map(|c| c.bases.clone()).collect();
    bases.sort_by_key(|b| b.name());
    bases.dedup();
    let buildah = Buildah::new(&bases);
    let d2v = d2v_with(&bases);
    let user = rootless_with(&bases);
    let mut failed = Vec::new();
    for case in &cases {
        let started = std::time::Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            check_case(&d2v, &buildah, case);
            check_rootless(&d2v, &user, case);
        }));
        eprintln!(
            "case {}: {} in {:.1}s",
            case.name,
            if result.is_ok() { "same" } else { "DIFFERENT" },
            started.elapsed().as_secs_f64()
        );
        if result.is_err() {
            failed.push(case.name.clone());
        }
    }
    assert!(
        failed.is_empty(),
        "cases differing from buildah (details above): {failed:?}"
    );
}

#[test]
fn busybox_run_steps_match_buildah() {
    run_cases(&[
        "bb-run-files",
        "bb-user",
        "bb-workdir-env-arg",
        "bb-heredoc",
        "bb-links",
        "bb-multistage-target",
    ]);
}

#[test]
fn copy_steps_match_buildah() {
    run_cases(&["bb-copy-flags", "bb-copy-from-stage", "deb-user-copy"]);
}

#[test]
fn debian_builds_match_buildah() {
    run_cases(&["deb-apt", "deb-run-misc"]);
}
