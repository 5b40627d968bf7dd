//! The stage graph: stage names and bases (FROM resolution with the global
//! args), the target, `--from` resolution, and the stages a target needs.

use super::error::{FrontendError, SourceMap};
use super::flags;
use super::instruction::Instruction;
use super::lex::{expand_word, Vars};
use super::steps::{Base, CopyFrom};
use super::PLATFORM;
use std::collections::BTreeSet;

/// Checks a `--platform` value: only linux/amd64 is built.
pub(crate) fn check_platform(value: &str) -> Result<(), String> {
    match value {
        "linux/amd64" | "linux/x86_64" | "amd64" => Ok(()),
        other => Err(format!(
            "unsupported platform {other:?}: d2v builds only {PLATFORM}"
        )),
    }
}

/// A FROM line: flags, the image word and the `AS` name, with offsets.
pub(crate) struct FromLine {
    pub(crate) image: (String, usize),
    pub(crate) name: Option<(String, usize)>,
}

/// Splits FROM's arguments (BuildKit: whitespace-delimited, one or three words).
pub(crate) fn from_line(inst: &Instruction) -> Result<FromLine, (usize, String)> {
    let words: Vec<&str> = inst.args.text.split_whitespace().collect();
    let image = words.first().map(|w| (w.to_string(), inst.args_at(0)));
    match (image, words.as_slice()) {
        (Some(image), [_]) => Ok(FromLine { image, name: None }),
        (Some(image), [first, as_kw, name]) if as_kw.eq_ignore_ascii_case("as") => {
            let at = inst.find(first.len() + as_kw.len(), name);
            Ok(FromLine {
                image,
                name: Some((name.to_string(), at)),
            })
        }
        _ => Err((
            inst.pos,
            "FROM requires either one or three arguments".into(),
        )),
    }
}

/// Names (lower-cased) and bases of every stage, in Dockerfile order. A FROM
/// naming an earlier stage (case-insensitively) refers to it; `scratch` is
/// the empty image; anything else is an image reference.
pub(crate) fn headers(
    froms: &[&Instruction],
    escape: char,
    global_vars: &dyn Vars,
    map: &SourceMap<'_>,
) -> Result<(Vec<Option<String>>, Vec<Base>), FrontendError> {
    let ferr = |at: usize, m: String| map.error(at, Some("FROM"), m);
    let lines = froms
        .iter()
        .map(|f| from_line(f).map_err(|(at, m)| ferr(at, m)))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<Option<String>> = lines
        .iter()
        .map(|l| l.name.as_ref().map(|(n, _)| n.to_lowercase()))
        .collect();
    let mut bases_of = Vec::new();
    // Name → the first stage with it (a second one is an error below).
    let mut by_name: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (idx, (from, line)) in froms.iter().zip(&lines).enumerate() {
        if let (Some((raw, at)), Some(name)) = (&line.name, &names[idx]) {
            // BuildKit: stage names are lower-cased and must match
            // ^[a-z][a-z0-9-_.]*$; two stages may not share one.
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return Err(ferr(
                    *at,
                    format!("invalid stage name {raw:?}: use letters, digits, '-', '_' and '.', starting with a letter"),
                ));
            }
            if by_name.contains_key(name.as_str()) {
                return Err(ferr(*at, format!("duplicate stage name {name:?}")));
            }
        }
        let fl = flags::check("FROM", &from.flags).map_err(|(at, m)| ferr(at, m))?;
        for f in &fl {
            let v = expand_word(f.value.as_deref().unwrap_or_default(), escape, global_vars)
                .map_err(|e| ferr(f.value_pos, e.0))?;
            check_platform(&v).map_err(|m| ferr(f.value_pos, m))?;
        }
        let (raw_image, image_at) = &line.image;
        let image =
            expand_word(raw_image, escape, global_vars).map_err(|e| ferr(*image_at, e.0))?;
        if image.trim().is_empty() {
            return Err(ferr(
                *image_at,
                format!("base name ({raw_image}) should not be blank after expansion"),
            ));
        }
        let lower = image.to_lowercase();
        let base = if let Some(&j) = by_name.get(lower.as_str()) {
            Base::Stage(j)
        } else if lower == "scratch" {
            Base::Scratch
        } else {
            Base::Image(image)
        };
        bases_of.push(base);
        if let Some(name) = &names[idx] {
            by_name.insert(name, idx);
        }
    }
    Ok((names, bases_of))
}

/// The Dockerfile index of `--target` (a stage name, any case, or an
/// index), or the last stage.
pub(crate) fn target_index(
    target: Option<&str>,
    names: &[Option<String>],
) -> Result<usize, FrontendError> {
    match target {
        Some(t) => names
            .iter()
            .position(|n| n.as_deref() == Some(t.to_lowercase().as_str()))
            .or_else(|| t.parse::<usize>().ok().filter(|&i| i < names.len()))
            .ok_or_else(|| {
                FrontendError::general(format!("target stage {t:?} could not be found"))
            }),
        None => Ok(names.len().saturating_sub(1)),
    }
}

/// Resolves `COPY --from` / `--mount from=` for stage `idx`.
pub(crate) fn resolve_from(
    value: &str,
    idx: usize,
    names: &[Option<String>],
) -> Result<CopyFrom, String> {
    let lower = value.to_lowercase();
    let by_name = names
        .iter()
        .position(|n| n.as_deref() == Some(lower.as_str()));
    let by_index = value.parse::<usize>().ok().filter(|_| by_name.is_none());
    match by_name.or(by_index) {
        Some(j) if j < idx => Ok(CopyFrom::Stage(j)),
        Some(j) if j == idx => Err(format!("circular dependency detected on stage: {value}")),
        Some(j) if j < names.len() => Err(format!(
            "stage {value:?} (stage {j}) is defined later; only earlier stages can be used"
        )),
        Some(_) if by_index.is_some() => Err(format!("stage index {value} does not exist")),
        _ => Ok(CopyFrom::Image(value.to_string())),
    }
}

/// The stages `target` needs: itself, its base stages and the stages its
/// steps read from (`deps`), transitively.
pub(crate) fn needed(
    target: usize,
    bases: &[Base],
    deps: impl Fn(usize) -> Vec<usize>,
) -> BTreeSet<usize> {
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !needed.insert(i) {
            continue;
        }
        if let Base::Stage(j) = bases[i] {
            todo.push(j);
        }
        todo.extend(deps(i));
    }
    needed
}
