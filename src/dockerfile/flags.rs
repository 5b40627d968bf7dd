//! Instruction flags (`--from=`, `--mount=`, …): which ones each instruction
//! takes, and the parsers for the structured ones.

use super::instruction::Flag;
use super::steps::{MountKind, Network, RunMount};

/// A flag after validation: name, value and the byte offset of its `--`.
#[derive(Debug, Clone)]
pub(crate) struct FlagValue {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
    pub(crate) pos: usize,
    pub(crate) value_pos: usize,
}

/// The flags each instruction accepts: (name, takes a value, repeatable).
fn allowed(instruction: &str) -> &'static [(&'static str, Option<bool>, bool)] {
    // `Some(true)`: value required; `Some(false)`: value optional (booleans);
    const COPY: &[(&str, Option<bool>, bool)] = &[
        ("from", Some(true), false),
        ("chown", Some(true), false),
        ("chmod", Some(true), false),
        ("link", Some(false), false),
        ("parents", Some(false), false),
        ("exclude", Some(true), true),
    ];
    const ADD: &[(&str, Option<bool>, bool)] = &[
        ("chown", Some(true), false),
        ("chmod", Some(true), false),
        ("link", Some(false), false),
        ("exclude", Some(true), true),
        ("checksum", Some(true), false),
        ("keep-git-dir", Some(false), false),
        ("unpack", Some(false), false),
    ];
    match instruction {
        "FROM" => &[("platform", Some(true), false)],
        "RUN" => &[
            ("mount", Some(true), true),
            ("network", Some(true), false),
            ("security", Some(true), false),
        ],
        "COPY" => COPY,
        "ADD" => ADD,
        "HEALTHCHECK" => &[
            ("interval", Some(true), false),
            ("timeout", Some(true), false),
            ("start-period", Some(true), false),
            ("start-interval", Some(true), false),
            ("retries", Some(true), false),
        ],
        _ => &[],
    }
}

/// Checks `flags` against what `instruction` accepts. On error: (offset, message).
pub(crate) fn check(instruction: &str, flags: &[Flag]) -> Result<Vec<FlagValue>, (usize, String)> {
    let table = allowed(instruction);
    let mut out: Vec<FlagValue> = Vec::new();
    for flag in flags {
        let name = flag.name.clone();
        let pos = flag.pos;
        let Some(&(_, needs_value, repeatable)) = table.iter().find(|(n, _, _)| *n == name) else {
            return Err((pos, format!("unknown flag: --{name}")));
        };
        if needs_value == Some(true) && flag.value.is_none() {
            return Err((pos, format!("missing a value on flag: --{name}")));
        }
        if !repeatable && out.iter().any(|f| f.name == name) {
            return Err((pos, format!("duplicate flag specified: --{name}")));
        }
        out.push(FlagValue {
            name,
            value: flag.value.clone(),
            pos,
            value_pos: flag.value_pos,
        });
    }
    Ok(out)
}

/// A boolean flag: present without value, or `=true`/`=false`.
pub(crate) fn boolean(flag: &FlagValue) -> Result<bool, String> {
    match flag.value.as_deref() {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(format!("expected a boolean for --{}, got {v:?}", flag.name)),
    }
}

/// Parses `--network`.
pub(crate) fn network(value: &str) -> Result<Network, String> {
    match value {
        "default" => Ok(Network::Default),
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        _ => Err(format!("unsupported network mode {value:?}")),
    }
}

/// Splits a CSV field list the way `encoding/csv` does for one record.
fn csv_fields(value: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = value.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start && !quoted => quoted = true,
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            }
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            c => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err(format!("unterminated quote in {value:?}"));
    }
    fields.push(field);
    Ok(fields)
}

/// Parses one `--mount` value (after variable expansion of its fields by
/// `expand`). `from=` is returned raw in `source_from` for stage resolution.
pub(crate) fn mount(
    value: &str,
    expand: &dyn Fn(&str) -> Result<String, String>,
) -> Result<(RunMount, Option<String>), String> {
    let mut m = RunMount {
        kind: MountKind::Bind,
        target: None,
        source: None,
        from: None,
        id: None,
        sharing: None,
        readonly: None,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
    };
    let mut from = None;
    let fields = csv_fields(value)?;
    // type= first, as BuildKit does, so the other keys know the kind.
    for field in &fields {
        if let Some(kind) = field.strip_prefix("type=") {
            m.kind = match kind.to_ascii_lowercase().as_str() {
                "bind" => MountKind::Bind,
                "cache" => MountKind::Cache,
                "tmpfs" => MountKind::Tmpfs,
                "secret" => MountKind::Secret,
                "ssh" => MountKind::Ssh,
                other => return Err(format!("unsupported mount type {other:?}")),
            };
        }
    }
    let parse_u32 = |key: &str, v: &str, radix: u32| {
        u32::from_str_radix(v, radix).map_err(|_| format!("invalid value for {key}: {v:?}"))
    };
    for field in fields {
        let (key, raw) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        let val = match &raw {
            Some(v) => Some(expand(v)?),
            None => None,
        };
        let need = || {
            val.clone()
                .ok_or_else(|| format!("mount option {key} needs a value"))
        };
        let flag_bool = |v: &Option<String>| match v.as_deref() {
            None | Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("invalid value for {key}: {v:?}")),
        };
        match key.as_str() {
            "type" | "" => {}
            "target" | "dst" | "destination" => m.target = Some(need()?),
            "source" | "src" => m.source = Some(need()?),
            "from" => from = Some(need()?),
            "id" => m.id = Some(need()?),
            "sharing" => {
                let v = need()?;
                if !matches!(v.as_str(), "shared" | "private" | "locked") {
                    return Err(format!("unsupported sharing value {v:?}"));
                }
                m.sharing = Some(v);
            }
            "ro" | "readonly" => m.readonly = Some(flag_bool(&val)?),
            "rw" | "readwrite" => m.readonly = Some(!flag_bool(&val)?),
            "required" => m.required = flag_bool(&val)?,
            "mode" => m.mode = Some(parse_u32("mode", &need()?, 8)?),
            "uid" => m.uid = Some(parse_u32("uid", &need()?, 10)?),
            "gid" => m.gid = Some(parse_u32("gid", &need()?, 10)?),
            "size" => {
                let v = need()?;
                m.size =
                    Some(ram_in_bytes(&v).ok_or_else(|| format!("invalid value for size: {v:?}"))?);
            }
            "env" => m.env = Some(need()?),
            _ => return Err(format!("unexpected key {key:?} in mount {value:?}")),
        }
    }
    if m.kind == MountKind::Secret && m.source.is_none() && m.target.is_none() && m.id.is_none() {
        return Err("invalid secret mount. one of source, target required".into());
    }
    if m.sharing.is_some() && m.kind != MountKind::Cache {
        return Err(format!("invalid cache sharing set for {:?} mount", m.kind).to_lowercase());
    }
    Ok((m, from))
}

/// A size as Docker's `units.RAMInBytes` reads it: a number and an optional
/// binary unit (`b`, `k`, `m`, `g`, `t`, `p`, with an optional `b`/`ib`).
fn ram_in_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let number: f64 = v[..split].parse().ok()?;
    let unit = v[split..].trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty()))
        .unwrap_or(&unit);
    let shift = match unit {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    let bytes = number * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cache_mount_options() {
        let id = |s: &str| Ok(s.to_string());
        let (m, from) = mount(
            "type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1000",
            &id,
        )
        .unwrap();
        assert_eq!(m.kind, MountKind::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing.as_deref(), Some("locked"));
        assert_eq!(m.mode, Some(0o755));
        assert_eq!(m.uid, Some(1000));
        assert_eq!(from, None);
        let (m, from) = mount("type=bind,from=build,source=/out,target=/in,rw", &id).unwrap();
        assert_eq!(m.readonly, Some(false));
        assert_eq!(from.as_deref(), Some("build"));
        assert!(
            mount("type=cache", &id).is_ok(),
            "an empty target is the WORKDIR"
        );
        assert!(mount("type=tmpfs,target=/t,sharing=locked", &id).is_err());
        assert!(mount("type=nfs,target=/x", &id).is_err());
        assert!(mount("target=/x,bogus=1", &id).is_err());
        assert_eq!(ram_in_bytes("64m"), Some(64 << 20));
        assert_eq!(ram_in_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(ram_in_bytes("4096"), Some(4096));
        assert_eq!(ram_in_bytes("12q"), None);
    }
}
