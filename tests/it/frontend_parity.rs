//! BuildKit parity of the front end, one Dockerfile per behaviour, each
//! checked against what Docker (BuildKit, Dockerfile frontend 1.x) does;
//! the expectations are written by hand from BuildKit's parser,
//! instructions and dockerfile2llb code. Also the hostile-input limits:
//! nesting depth, expanded-word size and exponential ARG/ENV growth give a
//! located error, never a crash or a hang.

use crate::harness;

use d2v::dockerfile::{plan, BaseError, BaseImages, ImageConfig, Plan, PlanOptions, StepKind};

/// One base image with an entrypoint and a cmd, as `debian:bookworm`-like images have.
struct Bases;

impl BaseImages for Bases {
    fn config(&self, name: &str) -> Result<Option<ImageConfig>, BaseError> {
        let mut c = ImageConfig::default();
        if name == "withentry" {
            c.config.entrypoint = Some(vec!["/entry.sh".into()]);
            c.config.cmd = Some(vec!["run".into()]);
        }
        Ok(Some(c))
    }
}

fn plan_ok(text: &str) -> Plan {
    plan(text, &PlanOptions::default(), &Bases).unwrap_or_else(|e| panic!("{e}"))
}

fn plan_err(text: &str) -> String {
    match plan(text, &PlanOptions::default(), &Bases) {
        Ok(_) => panic!("planned without error:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn config_json(p: &Plan) -> serde_json::Value {
    serde_json::to_value(&p.config.config).unwrap()
}

#[test]
fn an_escaped_backslash_at_the_end_of_a_line_is_not_a_continuation() {
    // Docker: WINDIR=C:\ and NEXT=1, two instructions.
    let p = plan_ok("FROM scratch\nENV WINDIR=C:\\\\\nENV NEXT=1\n");
    let env = p.config.config.env.unwrap();
    assert!(env.contains(&"WINDIR=C:\\".to_string()), "{env:?}");
    assert!(env.contains(&"NEXT=1".to_string()), "{env:?}");
    // A single trailing backslash still continues the line.
    let p = plan_ok("FROM scratch\nENV A=1 \\\n    B=2\n");
    let env = p.config.config.env.unwrap();
    assert!(env.contains(&"B=2".to_string()), "{env:?}");
}

#[test]
fn an_empty_entrypoint_clears_the_base_entrypoint() {
    // Docker accepts `ENTRYPOINT []`, drops the entrypoint and the inherited
    // cmd, and leaves both fields out of the config.
    let p = plan_ok("FROM withentry\nENTRYPOINT []\n");
    let c = config_json(&p);
    assert!(c.get("Entrypoint").is_none(), "{c}");
    assert!(c.get("Cmd").is_none(), "{c}");
    let p = plan_ok("FROM withentry\nCMD []\n");
    let c = config_json(&p);
    assert!(c.get("Cmd").is_none(), "an empty Cmd is omitted: {c}");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/entry.sh"]));
}

#[test]
fn a_double_dash_ends_the_flags() {
    let p = plan_ok("FROM scratch\nCOPY -- foo /tmp/\nCOPY --chown=1:2 -- --odd /x/\n");
    let copies: Vec<_> = p.stages[0]
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Copy(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(copies[0].sources, ["foo"]);
    assert_eq!(copies[0].dest, "/tmp/");
    assert_eq!(copies[1].sources, ["--odd"]);
    assert_eq!(copies[1].chown.as_deref(), Some("1:2"));
}

#[test]
fn json_arrays_of_non_strings_are_errors() {
    let e = plan_err("FROM scratch\nCMD [\"a\", 1]\n");
    assert!(e.starts_with("Dockerfile:2:5: CMD: when using JSON array syntax, arrays must be comprised of strings only"), "{e}");
    let e = plan_err("FROM scratch\nCMD [ \"echo\", [ \"nested\" ] ]\n");
    assert!(
        e.contains("arrays must be comprised of strings only"),
        "{e}"
    );
    let e = plan_err("FROM scratch\nRUN [\"sh\", null]\n");
    assert!(e.starts_with("Dockerfile:2:5: RUN:"), "{e}");
    // Not JSON at all: shell form, as in BuildKit.
    let p = plan_ok("FROM scratch\nCMD [\"a\" oops\n");
    assert_eq!(
        p.config.config.cmd.unwrap(),
        ["/bin/sh", "-c", "[\"a\" oops"]
    );
}

#[test]
fn onbuild_triggers_must_be_known_instructions() {
    let e = plan_err("FROM scratch\nONBUILD FOO bar\n");
    assert!(
        e.starts_with("Dockerfile:2:9: ONBUILD: unknown instruction 'FOO'"),
        "{e}"
    );
}

#[test]
fn flags_on_instructions_that_take_none_are_errors() {
    let e = plan_err("FROM scratch\nCMD --verbose\n");
    assert!(
        e.starts_with("Dockerfile:2:5: CMD: unknown flag: --verbose"),
        "{e}"
    );
}

#[test]
fn pattern_replacement_in_variables() {
    // BuildKit (Dockerfile frontend 1.10+): `/` replaces the first match, `//` all.
    let p = plan_ok(
        "FROM scratch\nARG S=foobarbaz\nENV ONE=${S/ba/fo} ALL=${S//ba/fo} GLOB=${S/b*z/X} \
         NONE=${S/q/X} ESC=${S/o\\*/X} SUFFIX=${S%%a*} PREFIX=${S##*a}\n",
    );
    let env = p.config.config.env.unwrap();
    for want in [
        "ONE=fooforbaz",
        "ALL=fooforfoz",
        "GLOB=fooX",
        "NONE=foobarbaz",
        "ESC=foobarbaz",
        "SUFFIX=foob",
        "PREFIX=z",
    ] {
        assert!(env.contains(&want.to_string()), "{want} not in {env:?}");
    }
    let e = plan_err("FROM scratch\nARG S=x\nENV A=${S/x\n");
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn chmod_takes_symbolic_modes_and_refuses_bad_ones() {
    let p = plan_ok("FROM scratch\nCOPY --chmod=u=rwx,go=rX a /a\nCOPY --chmod=755 b /b\n");
    assert_eq!(p.stages[0].steps.len(), 2);
    let e = plan_err("FROM scratch\nCOPY --chmod=u+y a /a\n");
    assert!(
        e.starts_with("Dockerfile:2:14: COPY: invalid chmod parameter"),
        "{e}"
    );
    let e = plan_err("FROM scratch\nCOPY --chmod=17777 a /a\n");
    assert!(e.contains("between 0 and 07777"), "{e}");
}

#[test]
fn mount_targets_are_relative_to_the_workdir() {
    // Issue 11 item 7: BuildKit joins a relative or empty target with the
    // WORKDIR and refuses `/`; a cache mount's id defaults to the target as written.
    let p = plan_ok(
        "FROM scratch\nWORKDIR /src\nRUN --mount=type=bind cat hello.txt\n\
         RUN --mount=type=bind,target=. true\nRUN --mount=type=bind,target=sub true\n\
         RUN --mount=type=cache,target=cache true\n",
    );
    let targets: Vec<(String, Option<String>)> = p.stages[0]
        .steps
        .iter()
        .filter_map(|s| match &s.kind {
            StepKind::Run(r) => Some((r.mounts[0].target.clone().unwrap(), r.mounts[0].id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        targets,
        [
            ("/src".to_string(), None),
            ("/src".to_string(), None),
            ("/src/sub".to_string(), None),
            ("/src/cache".to_string(), Some("cache".to_string())),
        ]
    );
    let e = plan_err("FROM scratch\nRUN --mount=type=bind,target=/ true\n");
    assert!(
        e.starts_with("Dockerfile:2:13: RUN: invalid mount target \"/\""),
        "{e}"
    );
}

fn check_rules(text: &str) -> Vec<(String, usize, usize)> {
    plan_ok(text)
        .checks
        .iter()
        .map(|c| (c.rule.clone(), c.location.line, c.location.col))
        .collect()
}

#[test]
fn build_checks_fire_with_buildkit_rule_names_and_places() {
    let text = "\
ARG VERSION=1
FROM base:$VERSION AS Builder
FROM base:$UNDECLARED as two
ENV API_TOKEN=abc
ENV legacy value
ARG DB_PASSWORD
WORKDIR relative/dir
CMD echo one
CMD [\"two\"]
ENTRYPOINT run-me
MAINTAINER someone
EXPOSE 80/TCP
run true
HEALTHCHECK CMD true
HEALTHCHECK NONE
";
    let mut got = check_rules(text);
    got.sort();
    let mut want: Vec<(String, usize, usize)> = [
        ("StageNameCasing", 2, 23),
        ("FromAsCasing", 3, 1),
        ("UndefinedArgInFrom", 3, 1),
        ("SecretsUsedInArgOrEnv", 4, 1),
        ("LegacyKeyValueFormat", 5, 1),
        ("SecretsUsedInArgOrEnv", 6, 1),
        ("WorkdirRelativePath", 7, 1),
        ("MultipleInstructionsDisallowed", 8, 1),
        ("JSONArgsRecommended", 8, 1),
        ("JSONArgsRecommended", 10, 1),
        ("MaintainerDeprecated", 11, 1),
        ("ExposeProtoCasing", 12, 8),
        ("ConsistentInstructionCasing", 13, 1),
        ("MultipleInstructionsDisallowed", 14, 1),
    ]
    .into_iter()
    .map(|(r, l, c)| (r.to_string(), l, c))
    .collect();
    want.sort();
    assert_eq!(got, want);
    let p = plan_ok(text);
    let shown = p.checks[0].to_string();
    assert!(
        shown.starts_with(
            "Dockerfile:2:23: StageNameCasing: Stage name 'Builder' should be lowercase"
        ),
        "{shown}"
    );
}

#[test]
fn the_check_directive_skips_rules_and_makes_them_errors() {
    let p = plan_ok("# check=skip=JSONArgsRecommended\nFROM scratch\nCMD echo hi\n");
    assert!(p.checks.is_empty(), "{:?}", p.checks);
    let p = plan_ok("# check=skip=all\nFROM scratch AS X\nCMD echo hi\n");
    assert!(p.checks.is_empty());
    let p = plan_ok("# check=error=true\nFROM scratch\nCMD echo hi\n");
    assert!(p.checks_are_errors);
    assert_eq!(p.checks.len(), 1);
    // A JSON-form CMD after SHELL is not flagged (BuildKit checks only without SHELL).
    let p = plan_ok("FROM scratch\nSHELL [\"/bin/bash\", \"-c\"]\nCMD echo hi\n");
    assert!(p.checks.is_empty(), "{:?}", p.checks);
    let e = plan_err("# check=bogus\nFROM scratch\n");
    assert!(e.contains("invalid check option"), "{e}");
}

#[test]
fn plan_and_build_check_print_located_warnings() {
    let d2v = harness::D2v::new();
    let dir = tempfile::tempdir().unwrap();
    let df = dir.path().join("Dockerfile");
    std::fs::write(&df, "FROM scratch\nCMD echo hi\nEXPOSE 80\n").unwrap();
    let ctx = dir.path().to_str().unwrap();
    let out = d2v.run(&["plan", ctx]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("warning: {}:2:1: JSONArgsRecommended:", df.display());
    assert!(err.contains(&want), "{err}");
    let out = d2v.run(&["build", "--check", "-t", "x", ctx]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&want) && err.contains("Check complete, 1 warning has been found!"),
        "{err}"
    );
    std::fs::write(&df, "FROM scratch\nCMD [\"hi\"]\n").unwrap();
    let out = d2v.run(&["build", "--check", "-t", "x", ctx]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&df, "# check=error=true\nFROM scratch\nCMD echo hi\n").unwrap();
    let err = d2v.fails(&["plan", ctx]);
    assert!(
        err.contains("lint violation found for rules: JSONArgsRecommended"),
        "{err}"
    );
    let err = d2v.fails(&["build", "-t", "x", ctx]);
    assert!(err.contains("lint violation found"), "{err}");
}

/// Issue 12 item 8: 15,000 nested `${a:-` must not overflow the stack.
#[test]
fn deep_nesting_is_a_located_error_in_every_instruction() {
    // On one line it is too long a line (BuildKit's 64 KiB); continued over
    // many lines it reaches the lexer, which stops at its depth limit.
    let one_line = format!(
        "FROM scratch\nENV B={}x{}\n",
        "${a:-".repeat(15_000),
        "}".repeat(15_000)
    );
    assert!(plan_err(&one_line).contains("max allowed size"));
    let chunk = "${a:-".repeat(1000);
    for inst in [
        "ENV B=",
        "ARG B=",
        "LABEL b=",
        "WORKDIR /",
        "USER ",
        "EXPOSE ",
    ] {
        let nested = vec![chunk.as_str(); 15].join("\\\n");
        let text = format!("FROM scratch\n{inst}{nested}x{}\n", "}".repeat(15_000));
        let e = plan_err(&text);
        assert!(
            e.contains("Dockerfile:2:"),
            "{inst}: {}",
            &e[..e.len().min(300)]
        );
        assert!(
            e.contains("nest more than 100 levels"),
            "{inst}: {}",
            &e[..e.len().min(300)]
        );
    }
    // Deep but within the limit is fine.
    let ok = format!(
        "FROM scratch\nENV B={}x{}\n",
        "${a:-".repeat(90),
        "}".repeat(90)
    );
    assert_eq!(
        plan_ok(&ok).config.config.env.unwrap().last().unwrap(),
        "B=x"
    );
}

/// Issue 12 item 9: `ARG A=$A$A` doubling must stop at the word limit.
#[test]
fn exponential_growth_is_a_located_error() {
    for kw in ["ARG", "ENV"] {
        let mut text = format!("FROM scratch\n{kw} A=xxxxxxxx\n");
        for _ in 0..40 {
            text.push_str(&format!("{kw} A=$A$A\n"));
        }
        let e = plan_err(&text);
        assert!(e.contains("exceeds 1 MiB"), "{kw}: {e}");
        assert!(e.starts_with("Dockerfile:"), "{kw}: {e}");
    }
    // Many big values over many steps hit the plan budget, not the memory.
    let mut text = "FROM scratch\nARG A=xxxxxxxxxxxxxxxx\n".to_string();
    for _ in 0..16 {
        text.push_str("ARG A=$A$A\n");
    }
    for i in 0..400 {
        text.push_str(&format!("ENV V{i}=$A\n"));
    }
    let e = plan_err(&text);
    assert!(e.contains("expands to more than 256 MiB"), "{e}");
}

#[test]
fn overlong_lines_and_pathological_patterns_end_quickly() {
    let e = plan_err(&format!("FROM scratch\nRUN {}\n", "x".repeat(70_000)));
    assert!(e.contains("max allowed size of 65535"), "{e}");
    // A prefix trim over a 512 KiB value is one linear regex scan.
    let text = format!(
        "FROM scratch\nARG A={}\nENV B=${{A#*y}} C=${{A%%*x}}\n",
        "x".repeat(8 * 1024)
    );
    let mut t = text.clone();
    for _ in 0..6 {
        t.push_str("ARG A=$A$A\n");
    }
    t.push_str("ENV D=${A##*y}\n");
    plan_ok(&t);
}

/// Work grows linearly with the instructions: 100,000 lines plan (a
/// quadratic step here would hang).
#[test]
fn very_long_dockerfiles_plan() {
    let mut text = String::from("FROM scratch AS a\n");
    for i in 0..50_000 {
        text.push_str("RUN true\n");
        if i % 1000 == 0 {
            text.push_str(&format!("FROM a AS s{i}\n"));
        }
    }
    text.push_str(&"run x\n".repeat(50_000));
    let p = plan_ok(&text);
    assert_eq!(
        p.checks.len(),
        50_000,
        "one casing warning per lowercase run"
    );
}
