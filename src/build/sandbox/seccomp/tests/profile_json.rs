//! `profile.rs` against Docker's own `default.json`.

use crate::build::sandbox::seccomp::bpf::{Action, ArgCmp, CmpOp};

/// `profile.rs` is a faithful transcription of Docker's `default.json`
/// (moby/profiles seccomp v0.2.3, copied to testdata): to refresh the
/// profile, replace the JSON and fix what this test reports.
#[test]
fn profile_matches_dockers_json() {
    use crate::build::sandbox::seccomp::profile::{DEFAULT_ACTION, RULES};
    use serde_json::Value;
    let text = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/seccomp/docker-default.json"
    ));
    let json: Value = serde_json::from_str(text).unwrap();
    assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(
        Action::Errno(json["defaultErrnoRet"].as_u64().unwrap() as u16),
        DEFAULT_ACTION
    );
    let caps = [
        ("CAP_DAC_READ_SEARCH", 2),
        ("CAP_SYS_MODULE", 16),
        ("CAP_SYS_RAWIO", 17),
        ("CAP_SYS_CHROOT", 18),
        ("CAP_SYS_PTRACE", 19),
        ("CAP_SYS_PACCT", 20),
        ("CAP_SYS_ADMIN", 21),
        ("CAP_SYS_BOOT", 22),
        ("CAP_SYS_NICE", 23),
        ("CAP_SYS_TIME", 25),
        ("CAP_SYS_TTY_CONFIG", 26),
        ("CAP_SYSLOG", 34),
        ("CAP_PERFMON", 38),
        ("CAP_BPF", 39),
    ];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map_or(Vec::new(), |a| {
            a.iter().map(|s| s.as_str().unwrap().to_owned()).collect()
        })
    };
    let cap_numbers = |v: &Value| -> Vec<u32> {
        strings(v)
            .iter()
            .map(|name| caps.iter().find(|(n, _)| n == name).expect(name).1)
            .collect()
    };
    let entries = json["syscalls"].as_array().unwrap();
    assert_eq!(entries.len(), RULES.len());
    for (i, (entry, rule)) in entries.iter().zip(RULES).enumerate() {
        let at = format!("syscalls[{i}] {:?}", rule.names);
        assert_eq!(strings(&entry["names"]), rule.names, "{at}");
        let action = match entry["action"].as_str().unwrap() {
            "SCMP_ACT_ALLOW" => Action::Allow,
            "SCMP_ACT_ERRNO" => Action::Errno(entry["errnoRet"].as_u64().unwrap() as u16),
            other => panic!("{at}: action {other}"),
        };
        assert_eq!(action, rule.action, "{at}");
        let args: Vec<ArgCmp> = entry["args"]
            .as_array()
            .map_or(&[][..], |a| a)
            .iter()
            .map(|a| {
                let (v, v2) = (
                    a["value"].as_u64().unwrap(),
                    a["valueTwo"].as_u64().unwrap_or(0),
                );
                let op = match a["op"].as_str().unwrap() {
                    "SCMP_CMP_EQ" => CmpOp::Eq(v),
                    "SCMP_CMP_LT" => CmpOp::Lt(v),
                    "SCMP_CMP_GT" => CmpOp::Gt(v),
                    "SCMP_CMP_MASKED_EQ" => CmpOp::MaskedEq { mask: v, value: v2 },
                    other => panic!("{at}: op {other}"),
                };
                ArgCmp::u64(a["index"].as_u64().unwrap() as u8, op)
            })
            .collect();
        // Our one change: socket's int family compared on its low half.
        let ours: Vec<ArgCmp> = rule
            .args
            .iter()
            .map(|a| ArgCmp { low32: false, ..*a })
            .collect();
        assert_eq!(args, ours, "{at}");
        assert!(
            rule.args.iter().all(|a| !a.low32) || rule.names == ["socket"],
            "{at}"
        );
        let (inc, exc) = (&entry["includes"], &entry["excludes"]);
        assert_eq!(strings(&inc["arches"]), rule.arches, "{at}");
        assert_eq!(strings(&exc["arches"]), rule.not_arches, "{at}");
        assert_eq!(cap_numbers(&inc["caps"]), rule.caps, "{at}");
        assert_eq!(cap_numbers(&exc["caps"]), rule.not_caps, "{at}");
        // minKernel: every kernel d2v runs on is newer than what it names.
        let min = inc["minKernel"].as_str().unwrap_or("0");
        assert!(["0", "4.8"].contains(&min), "{at}: minKernel {min}");
        for key in entry.as_object().unwrap().keys() {
            let known = [
                "names", "action", "errnoRet", "args", "includes", "excludes", "comment",
            ];
            assert!(known.contains(&key.as_str()), "{at}: unknown key {key}");
        }
        for cond in [inc, exc] {
            for key in cond
                .as_object()
                .map(|o| o.keys().collect())
                .unwrap_or(Vec::new())
            {
                assert!(
                    ["arches", "caps", "minKernel"].contains(&key.as_str()),
                    "{at}: {key}"
                );
            }
        }
    }
}
