//! Differential test: d2v's image config against `buildah bud` (Debian's
//! buildah) for Dockerfiles that need no registry.
//!
//! Each `testdata/dockerfiles/buildah/<case>/` is a build context with a
//! `Dockerfile`, an optional `args` file (`K=V` build args, `--target=S`) and
//! an optional `docker.json`: hand-written values, taken from Docker's
//! documentation, for the fields where buildah departs from Docker (each
//! with a `_why`). Every other compared field must equal buildah's.
//!
//! Needs buildah and root. With `CI=true` their absence fails the test;
//! otherwise the test is skipped with a message.

use d2v::dockerfile::{plan, NoBaseImages, PlanOptions};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const FIELDS: &[&str] = &[
    "Env",
    "Entrypoint",
    "Cmd",
    "User",
    "WorkingDir",
    "ExposedPorts",
    "Labels",
    "StopSignal",
    "Volumes",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// True when the test must stop: see [`d2v_testkit::require`].
fn facility_missing(why: &str) -> bool {
    !d2v_testkit::require(false, why)
}

/// Empty strings, lists and maps mean "unset" in both tools' JSON. So does
/// WorkingDir `/`: BuildKit's empty image (`FROM scratch`) sets it, buildah
/// leaves it empty, and both run commands in `/`.
fn normalize(field: &str, v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) if field == "WorkingDir" && s == "/" => Value::Null,
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(Value::Array(a)) if a.is_empty() => Value::Null,
        Some(Value::Object(o)) if o.is_empty() => Value::Null,
        Some(v) => v.clone(),
    }
}

struct Buildah {
    root: tempfile::TempDir,
}

impl Buildah {
    fn cmd(&self) -> Command {
        let mut c = Command::new("buildah");
        let r = self.root.path();
        c.arg("--root")
            .arg(r.join("root"))
            .arg("--runroot")
            .arg(r.join("runroot"))
            .arg("--storage-driver")
            .arg("vfs");
        c
    }

    /// Builds `dir` and returns the image's Docker config object.
    fn config(&self, dir: &Path, opts: &PlanOptions, tag: &str) -> Map<String, Value> {
        let mut bud = self.cmd();
        bud.args([
            "bud",
            "--isolation",
            "chroot",
            "--format",
            "docker",
            "--layers=false",
            "-q",
            "-t",
            tag,
            "-f",
        ])
        .arg(dir.join("Dockerfile"));
        for (k, v) in &opts.build_args {
            bud.arg("--build-arg").arg(format!("{k}={v}"));
        }
        if let Some(t) = &opts.target {
            bud.arg("--target").arg(t);
        }
        let out = bud.arg(dir).output().expect("running buildah bud");
        assert!(
            out.status.success(),
            "buildah bud {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self
            .cmd()
            .args(["inspect", "--type", "image", tag])
            .output()
            .expect("running buildah inspect");
        assert!(
            out.status.success(),
            "buildah inspect: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("buildah inspect JSON");
        let mut config = v["Docker"]["config"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        // buildah stamps its own version into every image.
        if let Some(Value::Object(labels)) = config.get_mut("Labels") {
            labels.remove("io.buildah.version");
        }
        // MAINTAINER lands in the top-level author field in both tools.
        if let Some(a) = v["Docker"].get("author") {
            config.insert("author".into(), a.clone());
        }
        config
    }
}

fn case_options(dir: &Path) -> PlanOptions {
    let mut opts = PlanOptions {
        dockerfile_path: PathBuf::from("Dockerfile"),
        ..PlanOptions::default()
    };
    if let Ok(args) = std::fs::read_to_string(dir.join("args")) {
        for line in args.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(t) = line.strip_prefix("--target=") {
                opts.target = Some(t.to_string());
            } else {
                let (k, v) = line.split_once('=').expect("K=V");
                opts.build_args.push((k.to_string(), v.to_string()));
            }
        }
    }
    opts
}

#[test]
fn image_config_matches_buildah_or_documented_docker_behaviour() {
    if !d2v_testkit::have_tool("buildah")
        && facility_missing("buildah is not installed (apt-get install buildah)")
    {
        return;
    }
    if !d2v_testkit::is_root()
        && facility_missing("the test needs root for buildah's chroot isolation")
    {
        return;
    }
    let buildah = Buildah {
        root: tempfile::tempdir().unwrap(),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/dockerfiles/buildah");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 20, "only {} differential cases", dirs.len());
    let mut failures = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let opts = case_options(dir);
        let ours = plan(&text, &opts, &NoBaseImages).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = serde_json::to_value(&ours.config).unwrap();
        let theirs = buildah.config(dir, &opts, &format!("localhost/d2v-diff-{i}"));
        let docker: Map<String, Value> = std::fs::read(dir.join("docker.json"))
            .map(|b| serde_json::from_slice(&b).expect("docker.json"))
            .unwrap_or_default();
        let mut fields: Vec<&str> = FIELDS.to_vec();
        fields.push("author");
        for field in fields {
            let ours_v = if field == "author" {
                normalize(field, ours.get("author"))
            } else {
                normalize(field, ours["config"].get(field))
            };
            let expected = match docker.get(field) {
                Some(v) => normalize(field, Some(v)),
                None => normalize(field, theirs.get(field)),
            };
            if ours_v != expected {
                failures.push(format!(
                    "{name}: {field}: d2v {ours_v}, expected {expected} ({})",
                    if docker.contains_key(field) {
                        "docker.json"
                    } else {
                        "buildah"
                    }
                ));
            }
        }
        // A hand-written expectation must still differ from buildah, or it is stale.
        for (field, v) in &docker {
            if field != "_why" && normalize(field, Some(v)) == normalize(field, theirs.get(field)) {
                failures.push(format!(
                    "{name}: docker.json {field} now equals buildah's; remove it"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
