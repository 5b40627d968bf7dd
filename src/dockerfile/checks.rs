//! Build checks like BuildKit's linter (`docker build --check`): the rules
//! that apply to a Dockerfile on its own, with BuildKit's rule names and
//! messages, each located at file:line:col, and the `# check=` directive
//! (`skip=Rule1,Rule2` or `skip=all`, `error=true`).
//!
//! Rules that need the instruction's meaning (JSONArgsRecommended,
//! WorkdirRelativePath, MultipleInstructionsDisallowed, LegacyKeyValueFormat,
//! SecretsUsedInArgOrEnv) are raised by the dispatcher; the others by
//! [`syntax_checks`] over the instruction list.

use super::error::{Location, SourceMap};
use super::instruction::Instruction;
use serde::Serialize;
use std::fmt;

/// One check that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// BuildKit's rule name (`JSONArgsRecommended`).
    pub rule: String,
    /// BuildKit's message.
    pub message: String,
    /// Where.
    pub location: Location,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.rule, self.message)
    }
}

/// Every rule d2v knows, for `skip=` validation and documentation.
pub const RULES: &[&str] = &[
    "StageNameCasing",
    "FromAsCasing",
    "NoEmptyContinuation",
    "ConsistentInstructionCasing",
    "ReservedStageName",
    "JSONArgsRecommended",
    "MaintainerDeprecated",
    "UndefinedArgInFrom",
    "WorkdirRelativePath",
    "MultipleInstructionsDisallowed",
    "LegacyKeyValueFormat",
    "SecretsUsedInArgOrEnv",
    "ExposeProtoCasing",
];

/// The `# check=` directive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CheckConfig {
    pub(crate) skip: Vec<String>,
    pub(crate) skip_all: bool,
    pub(crate) error: bool,
}

impl CheckConfig {
    /// Parses `skip=A,B;error=true` (BuildKit's `ParseLintOptions`).
    pub(crate) fn parse(value: &str) -> Result<CheckConfig, String> {
        let mut cfg = CheckConfig::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(cfg);
        }
        for part in value.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            let v = v.trim();
            match k.trim() {
                "skip" if v == "all" => cfg.skip_all = true,
                "skip" => cfg.skip = v.split(',').map(|r| r.trim().to_string()).collect(),
                "error" => {
                    cfg.error = match v {
                        "true" | "1" | "TRUE" | "True" => true,
                        "false" | "0" | "FALSE" | "False" => false,
                        _ => return Err(format!("failed to parse check option {part:?}")),
                    }
                }
                "experimental" => {}
                _ => return Err(format!("invalid check option {k:?}")),
            }
        }
        Ok(cfg)
    }

    /// Whether `rule` runs.
    pub(crate) fn enabled(&self, rule: &str) -> bool {
        !self.skip_all && !self.skip.iter().any(|s| s == rule)
    }
}

/// Collects checks for one Dockerfile.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    pub(crate) found: Vec<Check>,
    seen: std::collections::HashSet<(String, usize, usize, String)>,
}

impl Checks {
    pub(crate) fn add(&mut self, rule: &str, location: Location, message: String) {
        let key = (
            rule.to_string(),
            location.line,
            location.col,
            message.clone(),
        );
        if self.seen.insert(key) {
            self.found.push(Check {
                rule: rule.to_string(),
                message,
                location,
            });
        }
    }
}

fn same_case(s: &str) -> bool {
    s == s.to_ascii_uppercase() || s == s.to_ascii_lowercase()
}

/// BuildKit's secret-name rule: a word (between `_`s) that is a secret
/// token, and none that marks it public.
pub(crate) fn looks_secret(key: &str) -> bool {
    const DENY: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOW: &[&str] = &["public", "file", "version"];
    let lower = key.to_ascii_lowercase();
    // BuildKit's `(?i)(?:_|^)TOKEN(?:_|$)`: a `_`-separated word is a token.
    let has = |list: &[&str]| lower.split('_').any(|w| list.contains(&w));
    has(DENY) && !has(ALLOW)
}

/// The checks that need only the instructions: casing, stage names, empty
/// continuation lines, MAINTAINER, EXPOSE protocols and undeclared ARGs in FROM.
pub(crate) fn syntax_checks(
    insts: &[Instruction],
    global_args: &[String],
    map: &SourceMap<'_>,
    out: &mut Checks,
) {
    let mut lower = 0;
    let mut upper = 0;
    let first_from = insts
        .iter()
        .position(|x| x.keyword == "FROM")
        .unwrap_or(insts.len());
    let in_stage = |i: usize| i >= first_from;
    for (n, inst) in insts.iter().enumerate() {
        if in_stage(n) && same_case(&inst.written) {
            if inst.written == inst.written.to_ascii_lowercase() {
                lower += 1;
            } else {
                upper += 1;
            }
        }
    }
    let majority_lower = lower > upper;
    for (n, inst) in insts.iter().enumerate() {
        let at = map.location(inst.pos);
        if inst.empty_continuation {
            out.add(
                "NoEmptyContinuation",
                at.clone(),
                "Empty continuation line".into(),
            );
        }
        if in_stage(n) {
            let w = &inst.written;
            let is_lower = *w == w.to_ascii_lowercase();
            if !same_case(w) || majority_lower != is_lower {
                let casing = if majority_lower {
                    "lowercase"
                } else {
                    "uppercase"
                };
                out.add(
                    "ConsistentInstructionCasing",
                    at.clone(),
                    format!(
                        "Command '{w}' should match the case of the command majority ({casing})"
                    ),
                );
            }
        }
        match inst.keyword.as_str() {
            "FROM" => from_checks(inst, global_args, map, out),
            "MAINTAINER" => out.add(
                "MaintainerDeprecated",
                at,
                "Maintainer instruction is deprecated in favor of using label".into(),
            ),
            "EXPOSE" => {
                for word in inst.args.text.split_whitespace() {
                    if let Some((_, proto)) = word.split_once('/') {
                        if proto != proto.to_ascii_lowercase() {
                            out.add(
                                "ExposeProtoCasing",
                                map.location(inst.find(0, word)),
                                format!("Defined protocol '{word}' in EXPOSE instruction should be lowercase"),
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn from_checks(inst: &Instruction, global_args: &[String], map: &SourceMap<'_>, out: &mut Checks) {
    let words: Vec<&str> = inst.args.text.split_whitespace().collect();
    if let [_, as_kw, name] = words.as_slice() {
        let from = &inst.written;
        let mismatch = (*from == from.to_ascii_uppercase() && *as_kw != as_kw.to_ascii_uppercase())
            || (*from == from.to_ascii_lowercase() && *as_kw != as_kw.to_ascii_lowercase());
        if mismatch {
            out.add(
                "FromAsCasing",
                map.location(inst.pos),
                format!("'{as_kw}' and '{from}' keywords' casing do not match"),
            );
        }
        let at = map.location(inst.find(words[0].len(), name));
        if *name != name.to_ascii_lowercase() {
            out.add(
                "StageNameCasing",
                at.clone(),
                format!("Stage name '{name}' should be lowercase"),
            );
        }
        let lower = name.to_ascii_lowercase();
        if lower == "scratch" || lower == "context" {
            out.add(
                "ReservedStageName",
                at,
                format!("Stage name should not use the same name as reserved stage \"{lower}\""),
            );
        }
    }
    // $NAME / ${NAME…} in the image and --platform must be declared globally.
    let predefined = super::args::predefined_args();
    let mut texts: Vec<&str> = inst
        .flags
        .iter()
        .filter_map(|f| f.value.as_deref())
        .collect();
    texts.extend(words.first());
    for text in texts {
        for name in referenced_vars(text) {
            let known = global_args.contains(&name) || predefined.iter().any(|(k, _)| *k == name);
            if !known {
                out.add(
                    "UndefinedArgInFrom",
                    map.location(inst.pos),
                    format!("FROM argument '{name}' is not declared"),
                );
            }
        }
    }
}

/// Variable names `$NAME` / `${NAME…}` referenced in `text` (outside single quotes).
pub(crate) fn referenced_vars(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut single = false;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '\'' => single = !single,
            '$' if !single => {
                let braced = chars.get(i + 1) == Some(&'{');
                let start = i + 1 + usize::from(braced);
                let len = chars[start..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                if len > 0 && !chars[start].is_ascii_digit() {
                    out.push(chars[start..start + len].iter().collect());
                }
                i = start + len;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_follow_buildkit() {
        for k in [
            "API_KEY",
            "password",
            "GITHUB_TOKEN",
            "secret_message",
            "AUTH",
            "db_Passwd",
        ] {
            assert!(looks_secret(k), "{k}");
        }
        for k in [
            "KEYBOARD",
            "TOKENIZER",
            "PUBLIC_KEY",
            "GPG_KEY_FILE",
            "NODE_VERSION",
            "monkey",
        ] {
            assert!(!looks_secret(k), "{k}");
        }
    }

    #[test]
    fn check_directive_parses_like_buildkit() {
        let c = CheckConfig::parse("skip=JSONArgsRecommended, StageNameCasing;error=true").unwrap();
        assert_eq!(c.skip, ["JSONArgsRecommended", "StageNameCasing"]);
        assert!(c.error);
        assert!(!c.enabled("StageNameCasing"));
        assert!(CheckConfig::parse("skip=all").unwrap().skip_all);
        assert!(CheckConfig::parse("bogus").is_err());
        assert!(CheckConfig::parse("error=maybe").is_err());
    }

    #[test]
    fn finds_referenced_variables() {
        assert_eq!(referenced_vars("${REG:-x}/img:$TAG"), ["REG", "TAG"]);
        assert_eq!(referenced_vars("'$A' \\$B $1"), Vec::<String>::new());
    }
}
