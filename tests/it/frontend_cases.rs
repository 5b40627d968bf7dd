//! Table-driven front-end cases: every `testdata/dockerfiles/<case>/` holds a
//! `Dockerfile`, an optional `args` file (one `K=V` build arg per line, or
//! `--target=S`), and the expected `config.json` (the final image config) and
//! `plan.json` (the whole plan). `D2V_BLESS=1` rewrites the expectations;
//! every rewrite is reviewed by hand against Docker's documentation.

use d2v::dockerfile::{plan, BaseError, BaseImages, ImageConfig, PlanOptions};
use std::path::{Path, PathBuf};

/// Base images the cases may use: `testdata/dockerfiles/bases/<name>.json`
/// (`/` and `:` in the name become `_`).
struct TestBases(PathBuf);

impl BaseImages for TestBases {
    fn config(&self, name: &str) -> Result<Option<ImageConfig>, BaseError> {
        let file = self
            .0
            .join(format!("{}.json", name.replace(['/', ':'], "_")));
        match std::fs::read(&file) {
            Ok(bytes) => Ok(Some(ImageConfig::from_json(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/dockerfiles")
}

/// Reads a case's options from its `args` file.
pub fn case_options(dir: &Path) -> PlanOptions {
    let mut opts = PlanOptions::default();
    if let Ok(args) = std::fs::read_to_string(dir.join("args")) {
        for line in args
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            if let Some(t) = line.strip_prefix("--target=") {
                opts.target = Some(t.to_string());
            } else if let Some(p) = line.strip_prefix("--platform=") {
                opts.platform = Some(p.to_string());
            } else {
                let (k, v) = line.split_once('=').expect("args lines are K=V");
                opts.build_args.push((k.to_string(), v.to_string()));
            }
        }
    }
    opts
}

fn check(path: &Path, actual: &str, bless: bool, failures: &mut Vec<String>) {
    if bless {
        std::fs::write(path, actual).unwrap();
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{} differs:\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        )),
        Err(e) => failures.push(format!("{}: {e}", path.display())),
    }
}

#[test]
fn every_case_plans_to_its_expected_json() {
    let bless = std::env::var_os("D2V_BLESS").is_some();
    let bases = TestBases(root().join("bases"));
    let mut failures = Vec::new();
    let mut count = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(root().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let opts = case_options(&dir);
        let plan = match plan(&text, &opts, &bases) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        count += 1;
        let config = serde_json::to_string_pretty(&plan.config).unwrap() + "\n";
        check(&dir.join("config.json"), &config, bless, &mut failures);
        let full = serde_json::to_string_pretty(&plan).unwrap() + "\n";
        check(&dir.join("plan.json"), &full, bless, &mut failures);
    }
    assert!(count >= 20, "only {count} cases ran");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_error_case_renders_its_expected_message() {
    let bless = std::env::var_os("D2V_BLESS").is_some();
    let bases = TestBases(root().join("bases"));
    let mut failures = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(root().join("errors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "only {} error cases", dirs.len());
    for dir in dirs {
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let opts = case_options(&dir);
        match plan(&text, &opts, &bases) {
            Ok(_) => failures.push(format!("{}: planned without error", dir.display())),
            Err(e) => {
                assert!(
                    e.location.is_some() || opts.target.is_some() || opts.platform.is_some(),
                    "{}: no location",
                    dir.display()
                );
                check(
                    &dir.join("error.txt"),
                    &format!("{e}\n"),
                    bless,
                    &mut failures,
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The corpus: Dockerfiles in the style of popular public ones (official
/// images, multi-stage Go/C/Rust/Python/Node builds, apt and pip, users,
/// heredocs, escape directive, ONBUILD, HEALTHCHECK), each planned and its
/// image config compared with a hand-checked `config.json`.
#[test]
fn every_corpus_dockerfile_plans_to_its_expected_config() {
    let bless = std::env::var_os("D2V_BLESS").is_some();
    let bases = TestBases(root().join("bases"));
    let corpus = root().parent().unwrap().join("corpus");
    let mut failures = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 40, "only {} corpus Dockerfiles", dirs.len());
    for dir in dirs {
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let opts = case_options(&dir);
        match plan(&text, &opts, &bases) {
            Ok(p) => {
                let mut out = serde_json::to_value(&p.config).unwrap();
                // The build checks BuildKit would print, as `Rule line:col`.
                let checks: Vec<String> = p
                    .checks
                    .iter()
                    .map(|c| format!("{} {}:{}", c.rule, c.location.line, c.location.col))
                    .collect();
                out["checks"] = serde_json::json!(checks);
                let actual = serde_json::to_string_pretty(&out).unwrap() + "\n";
                check(&dir.join("config.json"), &actual, bless, &mut failures);
            }
            Err(e) => failures.push(format!("{}: {e}", dir.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
