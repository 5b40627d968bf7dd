//! Text helpers shared by the dispatcher: `KEY=VALUE` lists and path cleaning.

use super::lex::split_words;

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
