//! Word expansion with BuildKit's rules (its `shell/lex.go`).
//!
//! BuildKit does not run a shell for ADD, COPY, ENV, EXPOSE, FROM, LABEL,
//! STOPSIGNAL, USER, VOLUME and WORKDIR: it has its own small lexer that knows
//! quotes, the escape character and `$VAR` / `${VAR}` / `${VAR:-w}` /
//! `${VAR-w}` / `${VAR:+w}` / `${VAR+w}` / `${VAR:?w}` / `${VAR#p}` /
//! `${VAR%p}` / `${VAR/p/r}` / `${VAR//p/r}`. This module is that lexer, plus
//! BuildKit's `parseWords`, which splits `KEY=VALUE` lists (ENV, LABEL, ARG)
//! while keeping quotes for the lexer to remove.
//!
//! Unlike BuildKit, the lexer bounds what a hostile Dockerfile can ask of it:
//! `${` may nest [`MAX_DEPTH`] deep and an expanded word may hold
//! [`MAX_WORD`] bytes; patterns run as linear-time regexes.

use std::fmt;

/// How deep `${…${…}…}` may nest.
pub const MAX_DEPTH: usize = 100;

/// The most bytes one expanded word may hold.
pub const MAX_WORD: usize = 1 << 20;

/// Variables visible to an expansion, looked up by name.
pub trait Vars {
    /// The value of `name`, or `None` when it is unset.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Vars for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        // Later entries win, as they would in an environment list.
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Vars for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Vars::get(self.as_slice(), name)
    }
}

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError(pub String);

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LexError {}

/// Expands `word` as one word: quotes and escapes are removed, variables
/// substituted, and spaces kept (BuildKit's `ProcessWord`).
pub fn expand_word(word: &str, escape: char, vars: &dyn Vars) -> Result<String, LexError> {
    let mut lexer = Lexer::new(word, escape, vars);
    let (result, _) = lexer.process_stop_on(None, false)?;
    Ok(result)
}

/// Expands variables in a here-document body (BuildKit's "raw" expansion
/// for COPY/ADD heredocs): quotes are kept, `\\` still escapes.
pub fn expand_heredoc(text: &str, vars: &dyn Vars) -> Result<String, LexError> {
    let mut lexer = Lexer::new(text, '\\', vars);
    lexer.skip_quotes = true;
    let (result, _) = lexer.process_stop_on(None, false)?;
    Ok(result)
}

/// Expands `text` and splits it into words on unquoted whitespace, including
/// whitespace that came from unquoted variables (BuildKit's `ProcessWords`).
pub fn expand_words(text: &str, escape: char, vars: &dyn Vars) -> Result<Vec<String>, LexError> {
    let mut lexer = Lexer::new(text, escape, vars);
    let (_, words) = lexer.process_stop_on(None, false)?;
    Ok(words)
}

/// Splits `rest` into words on whitespace outside quotes, keeping quotes and
/// escapes in the words (BuildKit's `parseWords`, used for `KEY=VALUE` lists).
pub fn split_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut pos = 0;
    loop {
        let at_end = pos >= chars.len();
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if chars[pos].is_whitespace() {
                pos += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        }
        let mut ch = chars[pos];
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if pos + 1 == chars.len() {
                    pos += 1;
                    continue;
                }
                word.push(ch);
                pos += 1;
                ch = chars[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if pos + 1 == chars.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            word.push(ch);
            pos += 1;
            ch = chars[pos];
        }
        word.push(ch);
        pos += 1;
    }
    words
}

/// Accumulates the word list of `ProcessWords`.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Vars,
    skip_quotes: bool,
    depth: usize,
}

fn too_big() -> LexError {
    LexError(format!("the expanded word exceeds {} MiB", MAX_WORD >> 20))
}

fn push_checked(out: &mut String, s: &str) -> Result<(), LexError> {
    if out.len() + s.len() > MAX_WORD {
        return Err(too_big());
    }
    out.push_str(s);
    Ok(())
}

impl<'a> Lexer<'a> {
    fn new(text: &str, escape: char, vars: &'a dyn Vars) -> Self {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            escape,
            vars,
            skip_quotes: false,
            depth: 0,
        }
    }

    /// `process_stop_on` one level deeper, within [`MAX_DEPTH`].
    fn nested(&mut self, stop: char, raw_escapes: bool) -> Result<String, LexError> {
        if self.depth >= MAX_DEPTH {
            return Err(LexError(format!(
                "variable substitutions nest more than {MAX_DEPTH} levels deep"
            )));
        }
        self.depth += 1;
        let r = self.process_stop_on(Some(stop), raw_escapes);
        self.depth -= 1;
        r.map(|(word, _)| word)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), LexError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    push_checked(&mut result, &value)?;
                    words.add_string(&value);
                }
                '\'' if !self.skip_quotes => {
                    let value = self.process_single_quote()?;
                    push_checked(&mut result, &value)?;
                    words.add_raw_string(&value);
                }
                '"' if !self.skip_quotes => {
                    let value = self.process_double_quote()?;
                    push_checked(&mut result, &value)?;
                    words.add_raw_string(&value);
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        if raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        let Some(escaped) = self.next() else {
                            break;
                        };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(LexError(format!(
                "unexpected end of statement while looking for matching {stop}"
            )));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, LexError> {
        self.next();
        let mut result = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(LexError(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    ))
                }
                Some('\'') => return Ok(result),
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, LexError> {
        self.next();
        let mut result = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(LexError(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    ))
                }
                Some('"') => {
                    self.next();
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    push_checked(&mut result, &value)?;
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }

    fn process_dollar(&mut self) -> Result<String, LexError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.vars.get(&name).unwrap_or_default().to_string());
        }
        self.next();
        match self.peek() {
            None => return Err(LexError("syntax error: missing '}'".into())),
            Some('{' | '}' | ':') => return Err(LexError("syntax error: bad substitution".into())),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err(LexError("syntax error: missing '}'".into()));
        };
        let value = self.vars.get(&name).map(str::to_string);
        let mut modifier = ch.to_string();
        let mut null_is_unset = false;
        match ch {
            '}' => return Ok(value.unwrap_or_default()),
            '/' => return self.replace(value.unwrap_or_default()),
            ':' => {
                null_is_unset = true;
                ch = self
                    .next()
                    .ok_or_else(|| LexError("syntax error: missing '}'".into()))?;
                modifier.push(ch);
            }
            _ => {}
        }
        if !matches!(ch, '+' | '-' | '?' | '#' | '%') {
            return Err(LexError(format!(
                "unsupported modifier ({modifier}) in substitution"
            )));
        }
        let raw_escapes = ch == '#' || ch == '%';
        if null_is_unset && raw_escapes {
            return Err(LexError(format!(
                "unsupported modifier ({modifier}) in substitution"
            )));
        }
        let word = self.nested('}', raw_escapes).map_err(|e| {
            if self.peek().is_none() {
                LexError("syntax error: missing '}'".into())
            } else {
                e
            }
        })?;
        let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
        match ch {
            '-' => Ok(if unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if unset { String::new() } else { word }),
            '?' => {
                if value.is_none() {
                    let msg = if word.is_empty() {
                        "is not allowed to be unset"
                    } else {
                        &word
                    };
                    Err(LexError(format!("{name}: {msg}")))
                } else if unset {
                    let msg = if word.is_empty() {
                        "is not allowed to be empty"
                    } else {
                        &word
                    };
                    Err(LexError(format!("{name}: {msg}")))
                } else {
                    Ok(value.unwrap_or_default())
                }
            }
            _ => {
                let value = value.unwrap_or_default();
                let (greedy, pattern) = match word.strip_prefix(ch) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                if ch == '#' {
                    trim_prefix(&value, pattern, greedy)
                } else {
                    trim_suffix(&value, pattern, greedy)
                }
            }
        }
    }

    /// `${VAR/pattern/replacement}` and `${VAR//pattern/replacement}`
    /// (after the first `/`), BuildKit's rules: the pattern is a glob with
    /// `*` and `?`, matched leftmost and greedily.
    fn replace(&mut self, value: String) -> Result<String, LexError> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = self.nested('/', true).map_err(|e| {
            if self.peek().is_none() {
                LexError("syntax error: missing '/' in ${}".into())
            } else {
                e
            }
        })?;
        let replacement = self.nested('}', true).map_err(|e| {
            if self.peek().is_none() {
                LexError("syntax error: missing '}'".into())
            } else {
                e
            }
        })?;
        let re = pattern_regex(&pattern, true, false)?;
        let out = if all {
            re.replace_all(&value, replacement.as_str()).into_owned()
        } else {
            match re.find(&value) {
                Some(m) => format!("{}{replacement}{}", &value[..m.start()], &value[m.end()..]),
                None => value,
            }
        };
        if out.len() > MAX_WORD {
            return Err(too_big());
        }
        Ok(out)
    }
}

/// A shell pattern as a regex (BuildKit's `convertShellPatternToRegex`):
/// `*` is `.*` (`.*?` when not `greedy`), `?` is `.`, `\*` `\?` `\\` are
/// literal, `\}` and `\/` drop the backslash; `anchored` matches at the start only.
fn pattern_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<regex::Regex, LexError> {
    let invalid = |m: String| LexError(format!("invalid pattern ({pattern}) in substitution: {m}"));
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(if greedy { ".*" } else { ".*?" }),
            '?' => out.push('.'),
            '\\' => match chars.peek() {
                Some('}' | '/') => {}
                Some(&n @ ('*' | '?' | '\\')) => {
                    chars.next();
                    out.push('\\');
                    out.push(n);
                }
                Some(n) => return Err(invalid(format!("invalid escape '\\{n}'"))),
                None => return Err(invalid("invalid escape at the end".into())),
            },
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    regex::RegexBuilder::new(&out)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| invalid(e.to_string()))
}

/// Removes the shortest (or longest, when `greedy`) prefix matching the glob.
fn trim_prefix(value: &str, pattern: &str, greedy: bool) -> Result<String, LexError> {
    let re = pattern_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Removes the shortest (or longest, when `greedy`) suffix matching the glob:
/// a prefix trim of the reversed value with the reversed pattern, as BuildKit does.
fn trim_suffix(value: &str, pattern: &str, greedy: bool) -> Result<String, LexError> {
    let reversed: String = value.chars().rev().collect();
    let out = trim_prefix(&reversed, &reverse_pattern(pattern), greedy)?;
    Ok(out.chars().rev().collect())
}

/// Reverses a pattern, keeping each `\x` escape in front of its character.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            tokens.push(format!("\\{}", chars[i + 1]));
            i += 2;
        } else {
            tokens.push(chars[i].to_string());
            i += 1;
        }
    }
    tokens.into_iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        vec![
            ("A".into(), "hello".into()),
            ("E".into(), String::new()),
            ("S".into(), "a b".into()),
            ("V".into(), "v1.2.3".into()),
        ]
    }

    fn w(s: &str) -> String {
        expand_word(s, '\\', &vars()).unwrap()
    }

    #[test]
    fn substitutes_plain_and_braced_variables() {
        assert_eq!(w("$A/${A}x"), "hello/hellox");
        assert_eq!(w("$NOPE-x"), "-x");
        assert_eq!(w("cost $"), "cost $");
    }

    #[test]
    fn applies_default_and_alternative_modifiers() {
        assert_eq!(w("${E:-d}|${E-d}|${U-d}|${U:-d}"), "d||d|d");
        assert_eq!(w("${E:+x}|${E+x}|${U+x}|${A:+x}"), "|x||x");
        assert_eq!(w("${U:-$A}"), "hello");
    }

    #[test]
    fn trims_prefix_and_suffix_patterns() {
        assert_eq!(w("${V#v}"), "1.2.3");
        assert_eq!(w("${V%.*}"), "v1.2");
        assert_eq!(w("${V%%.*}"), "v1");
        assert_eq!(w("${V##*.}"), "3");
    }

    #[test]
    fn question_modifier_fails_on_unset() {
        assert!(expand_word("${U?}", '\\', &vars()).is_err());
        assert!(expand_word("${E:?must be set}", '\\', &vars()).is_err());
        assert_eq!(w("${A?}"), "hello");
    }

    #[test]
    fn removes_quotes_and_escapes() {
        assert_eq!(w(r#""a $A" 'b $A' c\ d"#), "a hello b $A c d");
        assert_eq!(w(r#""q\"x\y""#), "q\"x\\y");
        assert_eq!(w(r"\$A"), "$A");
    }

    #[test]
    fn backtick_escape_makes_backslash_plain() {
        assert_eq!(
            expand_word(r"c:\dir `$A", '`', &vars()).unwrap(),
            r"c:\dir $A"
        );
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        assert!(expand_word("\"abc", '\\', &vars()).is_err());
        assert!(expand_word("'abc", '\\', &vars()).is_err());
        assert!(expand_word("${A", '\\', &vars()).is_err());
    }

    #[test]
    fn words_split_unquoted_variables() {
        assert_eq!(
            expand_words("x $S \"$S\"", '\\', &vars()).unwrap(),
            vec!["x", "a", "b", "a b"]
        );
    }

    #[test]
    fn split_words_keeps_quotes() {
        assert_eq!(
            split_words(r#"a="x y" b=c\ d  e='f'"#, '\\'),
            vec![r#"a="x y""#, r"b=c\ d", "e='f'"]
        );
    }
}
