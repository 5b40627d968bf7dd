//! Go `path/filepath.Match` semantics for COPY/ADD source globs, plus Go's
//! lexical `filepath.Clean`, which both globs and `.dockerignore` rely on.

use thiserror::Error;

/// A glob pattern was malformed (Go's `filepath.ErrBadPattern`).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("syntax error in pattern {0:?}")]
pub struct BadPattern(pub String);

/// Whether `pattern` contains glob meta characters (`*`, `?`, `[`, `\`).
pub fn has_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

/// Match `name` against `pattern` with Go's `filepath.Match` rules: `*` is any
/// run of non-`/` characters, `?` one non-`/` character, `[...]` a class
/// (`^` negates, `a-z` ranges, `\` escapes) and `\c` the literal `c`.
pub fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let bad = || BadPattern(pattern.to_string());
    let mut pat: &[char] = &pattern.chars().collect::<Vec<_>>();
    let name_chars: Vec<char> = name.chars().collect();
    let mut name: &[char] = &name_chars;
    'pattern: while !pat.is_empty() {
        let (star, chunk, rest) = scan_chunk(pat);
        pat = rest;
        if star && chunk.is_empty() {
            // A trailing star matches the rest unless it holds a separator.
            return Ok(!name.contains(&'/'));
        }
        // Try the chunk at the current position; the last chunk must
        // consume the whole name.
        if let Some(t) = match_chunk(chunk, name).map_err(|()| bad())? {
            if t.is_empty() || !pat.is_empty() {
                name = t;
                continue;
            }
        }
        if star {
            // Look for a match skipping i+1 characters (never a separator).
            let mut i = 0;
            while i < name.len() && name[i] != '/' {
                if let Some(t) = match_chunk(chunk, &name[i + 1..]).map_err(|()| bad())? {
                    if !pat.is_empty() || t.is_empty() {
                        name = t;
                        continue 'pattern;
                    }
                }
                i += 1;
            }
        }
        // Go validates the rest of the pattern before answering false.
        while !pat.is_empty() {
            let (_, chunk, rest) = scan_chunk(pat);
            pat = rest;
            match_chunk(chunk, &[]).map_err(|()| bad())?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Split off the next `*`-prefixed chunk: (leading star?, chunk, rest).
fn scan_chunk(mut pat: &[char]) -> (bool, &[char], &[char]) {
    let mut star = false;
    while pat.first() == Some(&'*') {
        pat = &pat[1..];
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pat.len() {
        match pat[i] {
            '\\' if i + 1 < pat.len() => i += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pat[..i], &pat[i..])
}

/// Match `chunk` (no `*`) at the start of `s`; the unmatched rest on success.
/// `Err(())` means the chunk is malformed.
fn match_chunk<'a>(mut chunk: &[char], mut s: &'a [char]) -> Result<Option<&'a [char]>, ()> {
    // Once `failed`, keep going only to validate the pattern's syntax.
    let mut failed = false;
    while !chunk.is_empty() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match chunk[0] {
            '[' => {
                let r = if failed { '\0' } else { s[0] };
                if !failed {
                    s = &s[1..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut n = 0;
                loop {
                    if !chunk.is_empty() && chunk[0] == ']' && n > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&'-') {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    n += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    if s[0] == '/' {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
            '\\' => {
                chunk = &chunk[1..];
                if chunk.is_empty() {
                    return Err(());
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
            c => {
                if !failed {
                    if c != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// One (possibly escaped) character of a `[...]` class.
fn get_esc(chunk: &[char]) -> Result<(char, &[char]), ()> {
    match chunk.first() {
        None | Some('-') | Some(']') => Err(()),
        Some('\\') => match chunk.get(1) {
            Some(&c) => Ok((c, &chunk[2..])),
            None => Err(()),
        },
        Some(&c) => Ok((c, &chunk[1..])),
    }
    .and_then(|(c, rest)| {
        if rest.is_empty() {
            Err(())
        } else {
            Ok((c, rest))
        }
    })
}

/// Go's lexical `filepath.Clean`: collapse `//`, drop `.`, resolve `..`
/// lexically (never above `/` for absolute paths); the empty path is `.`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cases from Go's path/filepath match_test.go.
    #[test]
    fn go_match_table() {
        let table: &[(&str, &str, Result<bool, ()>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(())),
            ("[-]", "-", Err(())),
            ("[x-]", "x", Err(())),
            ("[x-]", "-", Err(())),
            ("[x-]", "z", Err(())),
            ("[-x]", "x", Err(())),
            ("[-x]", "-", Err(())),
            ("[-x]", "a", Err(())),
            ("\\", "a", Err(())),
            ("[a-b-c]", "a", Err(())),
            ("[", "a", Err(())),
            ("[^", "a", Err(())),
            ("[^bc", "a", Err(())),
            ("a[", "a", Err(())),
            ("a[", "ab", Err(())),
            ("a[", "x", Err(())),
            ("a/b[", "x", Err(())),
            ("*x", "xxx", Ok(true)),
        ];
        for (pattern, name, want) in table {
            let got = matches(pattern, name).map_err(|_| ());
            assert_eq!(&got, want, "matches({pattern:?}, {name:?})");
        }
    }

    #[test]
    fn clean_matches_go() {
        let table = [
            ("", "."),
            ("abc", "abc"),
            ("abc/def/", "abc/def"),
            ("a//b", "a/b"),
            ("./a/./b/.", "a/b"),
            ("a/../..", ".."),
            ("../../a", "../../a"),
            ("/../a", "/a"),
            ("/", "/"),
            ("abc/def/../ghi", "abc/ghi"),
        ];
        for (input, want) in table {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }
}
