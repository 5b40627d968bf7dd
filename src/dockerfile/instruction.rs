//! One logical line split into keyword, flags and arguments, as BuildKit's
//! `splitCommand` / `extractBuilderFlags` / `parseMaybeJSON` do, with the
//! source offset of each part for error carets and build checks.

use super::heredoc::RawHeredoc;
use super::parser::{Line, Node};

/// A `--name[=value]` flag as written (quotes and escapes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Flag {
    /// The name, without `--`.
    pub(crate) name: String,
    /// The value after `=`, if any.
    pub(crate) value: Option<String>,
    /// Source offset of the `--`.
    pub(crate) pos: usize,
    /// Source offset of the value (of the `--` when there is none).
    pub(crate) value_pos: usize,
}

/// An instruction, split.
#[derive(Debug, Clone)]
pub(crate) struct Instruction {
    /// The keyword as written (`run`, `Copy`).
    pub(crate) written: String,
    /// The keyword in upper case.
    pub(crate) keyword: String,
    /// Source offset of the keyword.
    pub(crate) pos: usize,
    /// The whole logical line.
    pub(crate) line: Line,
    /// Leading `--` flags (up to a `--` word, which ends them).
    pub(crate) flags: Vec<Flag>,
    /// The rest of the line, trimmed.
    pub(crate) args: Line,
    /// Here-documents.
    pub(crate) heredocs: Vec<RawHeredoc>,
    /// Whether a blank line continued the instruction.
    pub(crate) empty_continuation: bool,
}

/// The arguments of CMD, ENTRYPOINT, RUN, SHELL, COPY, ADD, VOLUME and
/// HEALTHCHECK CMD: a JSON array of strings (exec form) or text (shell form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Form {
    /// `["a", "b"]`.
    Json(Vec<String>),
    /// Anything else.
    Shell,
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// BuildKit's `parseJSON`: a JSON array of strings, shell form for anything
/// that is not a JSON array, an error for an array of other things.
pub(crate) fn json_form(rest: &str) -> Result<Form, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(Form::Shell);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(Form::Shell);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(NOT_STRINGS.to_string()),
        })
        .collect::<Result<_, _>>()
        .map(Form::Json)
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

impl Instruction {
    /// Splits a parsed node.
    pub(crate) fn from_node(node: &Node, escape: char) -> Instruction {
        let mut inst = split(&node.line, escape);
        inst.heredocs = node.heredocs.clone();
        inst.empty_continuation = node.empty_continuation;
        inst
    }

    /// The trigger of an ONBUILD, split (its flags are its own).
    pub(crate) fn onbuild_inner(&self, escape: char) -> Instruction {
        let mut inner = split(&self.flagged_args(), escape);
        inner.heredocs = self.heredocs.clone();
        inner
    }

    /// Everything after the keyword (flags included), trimmed.
    pub(crate) fn flagged_args(&self) -> Line {
        let after = self.written.len();
        let skip = self.line.text[after..]
            .find(|c: char| !is_blank(c))
            .map_or(self.line.text.len(), |i| after + i);
        self.line.tail(skip)
    }

    /// The step's text: the logical line.
    pub(crate) fn text(&self) -> &str {
        &self.line.text
    }

    /// Source offset of byte `i` of the arguments.
    pub(crate) fn args_at(&self, i: usize) -> usize {
        self.args.source(i)
    }

    /// Source offset of `needle` in the arguments at or after byte `from`.
    pub(crate) fn find(&self, from: usize, needle: &str) -> usize {
        self.args.find_source(from, needle)
    }

    /// The arguments split on whitespace (BuildKit's
    /// `parseStringsWhitespaceDelimited`), each with its source offset.
    pub(crate) fn words(&self) -> Vec<(String, usize)> {
        let text = &self.args.text;
        let mut out = Vec::new();
        let mut cursor = 0;
        for w in text.split_whitespace() {
            let at = text[cursor..].find(w).map_or(cursor, |i| cursor + i);
            cursor = at + w.len();
            out.push((w.to_string(), self.args_at(at)));
        }
        out
    }

    /// The arguments as JSON (exec) or shell form.
    pub(crate) fn form(&self) -> Result<Form, (usize, String)> {
        json_form(&self.args.text).map_err(|m| (self.args_at(0), m))
    }
}

/// `splitCommand` + `extractBuilderFlags` on a logical line.
fn split(line: &Line, escape: char) -> Instruction {
    let text = line.text.trim_end_matches(is_blank);
    let lead = line.text.len() - line.text.trim_start_matches(is_blank).len();
    let kw_end = text[lead..].find(is_blank).map_or(text.len(), |i| lead + i);
    let written = text[lead..kw_end].to_string();
    let rest_start = text[kw_end..]
        .find(|c: char| !is_blank(c))
        .map_or(text.len(), |i| kw_end + i);
    let (flags, args_start) = extract_flags(line, rest_start, text.len(), escape);
    let args_start = text[args_start..]
        .find(|c: char| !c.is_whitespace())
        .map_or(text.len(), |i| args_start + i);
    let mut args = line.tail(args_start);
    args.text.truncate(text.len() - args_start);
    Instruction {
        keyword: written.to_ascii_uppercase(),
        written,
        pos: line.source(lead),
        line: line.clone(),
        flags,
        args,
        heredocs: Vec::new(),
        empty_continuation: false,
    }
}

/// Reads leading `--flag` words from `line.text[from..end]`; returns them and
/// where the arguments start.
fn extract_flags(line: &Line, from: usize, end: usize, escape: char) -> (Vec<Flag>, usize) {
    let text = &line.text[..end];
    let mut flags = Vec::new();
    let mut pos = from;
    loop {
        let Some(off) = text[pos..].find(|c: char| !c.is_whitespace()) else {
            return (flags, text.len());
        };
        let start = pos + off;
        if !text[start..].starts_with("--") {
            return (flags, start);
        }
        // One word: quotes group, the escape character escapes.
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut chars = text[start..].char_indices().peekable();
        let mut word_end = text.len();
        while let Some((i, c)) = chars.next() {
            match quote {
                None if c.is_whitespace() => {
                    word_end = start + i;
                    break;
                }
                None if c == '\'' || c == '"' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == escape => match chars.next() {
                    Some((_, n)) => word.push(n),
                    None => quote = None,
                },
                _ => word.push(c),
            }
        }
        if word == "--" {
            return (flags, word_end);
        }
        let body = &word[2..];
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let value_pos = match text[start..word_end].find('=') {
            Some(i) if value.is_some() => line.source(start + i + 1),
            _ => line.source(start),
        };
        flags.push(Flag {
            name,
            value,
            pos: line.source(start),
            value_pos,
        });
        pos = word_end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parser::parse;

    fn inst(text: &str) -> Instruction {
        let p = parse(text).unwrap();
        Instruction::from_node(&p.nodes[0], '\\')
    }

    #[test]
    fn splits_keyword_flags_and_arguments() {
        let i = inst("copy --from=build --chmod=\"0644\" a b\n");
        assert_eq!((i.written.as_str(), i.keyword.as_str()), ("copy", "COPY"));
        assert_eq!(i.flags.len(), 2);
        assert_eq!(i.flags[1].value.as_deref(), Some("0644"));
        assert_eq!(i.args.text, "a b");
        assert_eq!(i.flags[0].value_pos, 12);
        assert_eq!(i.args_at(0), 33);
    }

    #[test]
    fn a_double_dash_ends_the_flags() {
        let i = inst("COPY -- --weird /tmp/\n");
        assert!(i.flags.is_empty());
        assert_eq!(i.args.text, "--weird /tmp/");
        let i = inst("COPY --link -- foo /tmp/\n");
        assert_eq!(i.flags.len(), 1);
        assert_eq!(i.args.text, "foo /tmp/");
    }

    #[test]
    fn json_arrays_must_hold_strings() {
        assert_eq!(
            json_form("[\"a\", \"b\"]"),
            Ok(Form::Json(vec!["a".into(), "b".into()]))
        );
        assert_eq!(json_form("[]"), Ok(Form::Json(vec![])));
        assert!(json_form("[\"a\", 1]").is_err());
        assert!(json_form("[ \"echo\", [ \"nested\" ] ]").is_err());
        assert_eq!(json_form("[\"a\" x"), Ok(Form::Shell));
        assert_eq!(json_form("echo [1]"), Ok(Form::Shell));
    }

    #[test]
    fn onbuild_triggers_split_again() {
        let i = inst("ONBUILD  RUN --network=none echo hi\n");
        let inner = i.onbuild_inner('\\');
        assert_eq!(inner.keyword, "RUN");
        assert_eq!(inner.flags[0].name, "network");
        assert_eq!(inner.args.text, "echo hi");
        assert_eq!(inner.pos, 9);
    }
}
