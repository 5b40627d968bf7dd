//! Text helpers shared by the dispatcher: logical lines, line
//! continuations, `KEY=VALUE` lists and path cleaning.

use super::lex::split_words;

/// The logical line starting at `pos`: continuation lines joined, comment
/// lines inside the continuation dropped, trailing blanks trimmed.
pub(crate) fn first_line(text: &str, pos: usize, escape: char) -> String {
    join_continuations(text.get(pos..).unwrap_or_default(), escape, true)
}

/// Removes line continuations (escape + newline) and comment lines inside
/// them, as BuildKit does before handing shell forms to the shell. With
/// `stop_at_line_end`, stops at the first unescaped newline.
pub(crate) fn join_continuations(text: &str, escape: char, stop_at_line_end: bool) -> String {
    let mut out = String::new();
    let mut lines = text.split('\n').peekable();
    let mut continuing = false;
    while let Some(line) = lines.next() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if continuing && (line.trim_start().starts_with('#') || line.trim().is_empty()) {
            continue;
        }
        let trimmed = line.trim_end();
        if let Some(cont) = trimmed.strip_suffix(escape) {
            out.push_str(cont);
            continuing = true;
            continue;
        }
        out.push_str(line);
        continuing = false;
        if stop_at_line_end || lines.peek().is_none() {
            break;
        }
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// A `name_values` error: the offending word (when there is one) and why.
pub(crate) type NameValueError = (Option<String>, String);

/// Splits ENV/LABEL arguments into raw (unexpanded) pairs, BuildKit's
/// `parseNameVal`: `KEY value…` (legacy) or `K=V K2="v 2"`. An error names
/// the offending word, when there is one, for the caret.
pub(crate) fn name_values(
    rest: &str,
    escape: char,
    inst: &str,
) -> Result<Vec<(String, String)>, NameValueError> {
    let words = split_words(rest, escape);
    let Some(first) = words.first() else {
        return Err((None, format!("{inst} requires at least one argument")));
    };
    if !first.contains('=') {
        let rest = rest.trim_start();
        let split = rest.find(char::is_whitespace);
        let Some(split) = split else {
            return Err((None, format!("{inst} must have two arguments")));
        };
        return Ok(vec![(
            rest[..split].to_string(),
            rest[split..].trim_start().to_string(),
        )]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err((
                Some(w.clone()),
                format!("Syntax error - can't find = in {w:?}. Must be of the form: name=value"),
            )),
        })
        .collect()
}

/// `path.Clean` for absolute paths.
pub(crate) fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_continuations_and_drops_comment_lines() {
        let text = "apt-get update && \\\n# a comment\n    apt-get install -y curl\nNEXT";
        assert_eq!(
            join_continuations(text, '\\', true),
            "apt-get update &&     apt-get install -y curl"
        );
    }

    #[test]
    fn cleans_workdir_paths() {
        assert_eq!(clean_path("//a/./b/../c/"), "/a/c");
        assert_eq!(clean_path("/"), "/");
    }

    #[test]
    fn name_values_support_both_forms() {
        assert_eq!(
            name_values("A 1 2", '\\', "ENV").unwrap(),
            vec![("A".into(), "1 2".into())]
        );
        assert_eq!(
            name_values("A=1 B=\"x y\"", '\\', "ENV").unwrap(),
            vec![("A".into(), "1".into()), ("B".into(), "\"x y\"".into())]
        );
        assert!(name_values("A=1 B", '\\', "ENV").is_err());
        assert!(name_values("A", '\\', "ENV").is_err());
    }
}
