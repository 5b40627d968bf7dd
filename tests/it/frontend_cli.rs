//! `d2v plan` end to end: the binary, its flags, its JSON and its errors.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn d2v_plan(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_d2v"))
        .arg("plan")
        .args(args)
        .env("D2V_HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running d2v plan");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[test]
fn plan_prints_the_needed_stages_and_the_final_config() {
    let home = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch AS build\nARG V=1\nENV V=$V\n\nFROM scratch AS unused\n\nFROM build\nEXPOSE 8000-8001\nCMD [\"/app\"]\n",
    )
    .unwrap();
    let out = d2v_plan(
        home.path(),
        &["--build-arg", "V=2", ctx.path().to_str().unwrap()],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let indexes: Vec<u64> = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, vec![0, 2], "the unused stage is not planned");
    assert_eq!(plan["target"], 2);
    let config = &plan["config"]["config"];
    assert!(config["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("V=2")));
    assert_eq!(config["Cmd"], serde_json::json!(["/app"]));
    assert_eq!(
        config["ExposedPorts"],
        serde_json::json!({"8000/tcp": {}, "8001/tcp": {}})
    );
    assert_eq!(plan["config"]["os"], "linux");
    assert_eq!(plan["config"]["architecture"], "amd64");
}

#[test]
fn plan_reads_stdin_and_shows_errors_with_a_caret() {
    let home = tempfile::tempdir().unwrap();
    let out = d2v_plan(
        home.path(),
        &["-f", "-", "."],
        Some("FROM scratch\nEXPOSE 80x\n"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("<stdin>:2:8: EXPOSE: invalid port \"80x\""),
        "{err}"
    );
    assert!(err.contains(" 2 | EXPOSE 80x\n   |        ^"), "{err}");
}

#[test]
fn plan_honours_target_and_warns_about_unused_build_args() {
    let home = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let file = ctx.path().join("other.Dockerfile");
    std::fs::write(
        &file,
        "FROM scratch AS first\nENV S=first\nFROM scratch AS second\nENV S=second\n",
    )
    .unwrap();
    let out = d2v_plan(
        home.path(),
        &[
            "-f",
            file.to_str().unwrap(),
            "--target",
            "FIRST",
            "--build-arg",
            "NOBODY=1",
            ctx.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["target"], 0);
    assert!(plan["config"]["config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("S=first")));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: build arg NOBODY was not consumed"),
        "{err}"
    );
}

#[test]
fn plan_fails_on_an_unknown_target() {
    let home = tempfile::tempdir().unwrap();
    let out = d2v_plan(
        home.path(),
        &["-f", "-", "--target", "nope", "."],
        Some("FROM scratch AS a\n"),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("target stage \"nope\" could not be found")
    );
}
