//! `.dockerignore` with Docker's rules (moby/patternmatcher and
//! moby/patternmatcher/ignorefile): `#` comments, patterns cleaned with Go's
//! `filepath.Clean`, a leading `/` dropped, `!` exceptions, `*`/`?`/`[]` within
//! one path element, `**` across elements, the last matching pattern wins, and
//! a path is excluded when it or any of its parent directories is.

use std::path::Path;

use regex::Regex;
use thiserror::Error;

use super::glob;

/// A `.dockerignore` could not be read or holds an invalid pattern.
#[derive(Debug, Error)]
pub enum IgnoreError {
    /// Reading the file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The `.dockerignore` path.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A pattern is malformed.
    #[error("invalid .dockerignore pattern {0:?}")]
    BadPattern(String),
    /// A lone `!`.
    #[error("illegal exclusion pattern: \"!\"")]
    IllegalExclusion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

#[derive(Debug, Clone)]
struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: MatchType,
    regex: Option<Regex>,
}

/// A compiled `.dockerignore`: decides which context paths are left out.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parse `.dockerignore` text (the `ignorefile.ReadAll` rules).
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        Self::from_patterns(&read_lines(text))
    }

    /// Read `<context>/.dockerignore`, resolved inside the context (a
    /// symlink cannot make it read a host file); no file means nothing is ignored.
    pub fn load(context: &Path) -> Result<Self, IgnoreError> {
        let path = context.join(".dockerignore");
        let read = super::inroot::Root::open(context)
            .and_then(|root| root.read(Path::new(".dockerignore")));
        match read {
            Ok(bytes) => Self::parse(&String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(IgnoreError::Read { path, source }),
        }
    }

    /// Compile already-read patterns (each possibly `!`-prefixed).
    pub fn from_patterns<S: AsRef<str>>(lines: &[S]) -> Result<Self, IgnoreError> {
        let mut patterns = Vec::new();
        for line in lines {
            let mut p = line.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                if p.len() == 1 {
                    return Err(IgnoreError::IllegalExclusion);
                }
                p = &p[1..];
            }
            let cleaned = glob::clean(p);
            // Go checks syntax by matching against ".".
            glob::matches(&cleaned, ".").map_err(|_| IgnoreError::BadPattern(p.to_string()))?;
            let (kind, regex) = compile(&cleaned)?;
            patterns.push(Pattern {
                cleaned,
                exclusion,
                kind,
                regex,
            });
        }
        Ok(Self { patterns })
    }

    /// Keep the Dockerfile and `.dockerignore` in the context even when a
    /// pattern matches them, as the Docker CLI does when it sends the context.
    pub fn keep_build_files(mut self, dockerfile_rel: &str) -> Result<Self, IgnoreError> {
        let mut extra = Vec::new();
        for name in [".dockerignore", dockerfile_rel] {
            let name = glob::clean(name);
            if self.is_excluded(&name) {
                extra.push(format!("!{name}"));
            }
        }
        let more = Self::from_patterns(&extra)?;
        self.patterns.extend(more.patterns);
        Ok(self)
    }

    /// Whether the set has any `!` exception (walkers must then descend into
    /// excluded directories to find re-included children).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether nothing is ignored.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the context-relative, `/`-separated `path` is left out: the last
    /// pattern matching it or one of its parent directories decides.
    pub fn is_excluded(&self, path: &str) -> bool {
        let file = glob::clean(path);
        let parent = match file.rfind('/') {
            Some(i) => &file[..i],
            None => ".",
        };
        let parent_dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion can't change a match, nor an exclusion a non-match.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(&file);
            if !hit && parent != "." {
                let mut prefix = String::new();
                for (i, dir) in parent_dirs.iter().enumerate() {
                    if i > 0 {
                        prefix.push('/');
                    }
                    prefix.push_str(dir);
                    if pattern.matches(&prefix) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            MatchType::Exact => path == self.cleaned,
            MatchType::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            MatchType::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || (suffix.starts_with('/') && path == &suffix[1..])
            }
            MatchType::Regexp => self.regex.as_ref().is_some_and(|r| r.is_match(path)),
        }
    }
}

/// The `ignorefile.ReadAll` line rules: BOM, `#` comments (before trimming),
/// `!` with inner spaces, `filepath.Clean`, leading `/` dropped.
fn read_lines(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let invert = pattern.starts_with('!');
        if invert {
            pattern = pattern[1..].trim();
        }
        let mut cleaned = String::new();
        if !pattern.is_empty() {
            cleaned = glob::clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
        }
        out.push(if invert {
            format!("!{cleaned}")
        } else {
            cleaned
        });
    }
    out
}

/// patternmatcher's `compile`: the pattern as a regexp, with fast paths for
/// exact, `prefix/**` and `**/suffix` forms.
fn compile(pattern: &str) -> Result<(MatchType, Option<Regex>), IgnoreError> {
    let mut re = String::from("^");
    let mut kind = MatchType::Exact;
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        if ch == '*' {
            if chars.get(i) == Some(&'*') {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if kind == MatchType::Exact {
                        kind = MatchType::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = MatchType::Regexp;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = MatchType::Regexp;
                }
                if first {
                    kind = MatchType::Suffix;
                }
            } else {
                re.push_str("[^/]*");
                kind = MatchType::Regexp;
            }
        } else if ch == '?' {
            re.push_str("[^/]");
            kind = MatchType::Regexp;
        } else if ".+()|{}$".contains(ch) {
            re.push('\\');
            re.push(ch);
        } else if ch == '\\' {
            re.push('\\');
            if i < chars.len() {
                re.push(chars[i]);
                i += 1;
                // An escaped character can only be matched by the regexp.
                kind = MatchType::Regexp;
            }
        } else if ch == '[' || ch == ']' {
            re.push(ch);
            kind = MatchType::Regexp;
        } else {
            re.push(ch);
        }
        first = false;
    }
    if kind != MatchType::Regexp {
        return Ok((kind, None));
    }
    re.push('$');
    let regex = Regex::new(&re).map_err(|_| IgnoreError::BadPattern(pattern.to_string()))?;
    Ok((kind, Some(regex)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &str, path: &str) -> bool {
        DockerIgnore::parse(patterns).unwrap().is_excluded(path)
    }

    // Cases adapted from moby/patternmatcher's tests and Docker's docs.
    #[test]
    fn dockerignore_table() {
        let table: &[(&str, &str, bool)] = &[
            ("fileutils.go", "fileutils.go", true),
            ("*.go", "fileutils.go", true),
            ("*.go", "sub/fileutils.go", false),
            ("*/*.go", "sub/fileutils.go", true),
            ("**/*.go", "a/b/c/fileutils.go", true),
            ("**/*.go", "fileutils.go", true),
            ("**", "anything/at/all", true),
            ("**/", "file", true),
            ("**/", "dir1/file", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir", false),
            ("dir/**/file", "dir/file", true),
            ("dir/**/file", "dir/a/b/file", true),
            ("**/file", "dir/file", true),
            ("**/file", "file", true),
            ("**/dir", "a/dir/inner.txt", true),
            ("abc.def", "abcdef", false),
            ("abc?def", "abcxdef", true),
            ("abc?def", "abc/def", false),
            ("a[bc]d", "acd", true),
            ("a[^bc]d", "acd", false),
            ("a(b)c", "a(b)c", true),
            ("pkg/**/*.txt", "pkg/a/b.txt", true),
            ("/abs", "abs", true),
            ("./rel/../x", "x", true),
            ("dir", "dir/nested/file", true),
            ("temp?", "temp1/file", true),
            ("# comment", "# comment", false),
            ("*.md\n!README.md", "README.md", false),
            ("*.md\n!README.md", "CHANGES.md", true),
            ("!README.md\n*.md", "README.md", true),
            ("dir\n!dir/keep", "dir/keep", false),
            ("dir\n!dir/keep", "dir/other", true),
            ("dir/*\n!dir/keep\ndir/keep/x", "dir/keep/x", true),
            ("dir/*\n!dir/keep\ndir/keep/x", "dir/keep/y", false),
            ("  spaced  ", "spaced", true),
            ("! spaced-exception\n*", "spaced-exception", true),
            ("*\n! spaced-exception", "spaced-exception", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
        ];
        for (patterns, path, want) in table {
            assert_eq!(excluded(patterns, path), *want, "{patterns:?} on {path:?}");
        }
    }

    #[test]
    fn lone_bang_is_an_error() {
        assert!(matches!(
            DockerIgnore::from_patterns(&["!"]),
            Err(IgnoreError::IllegalExclusion)
        ));
    }

    #[test]
    fn bad_class_is_an_error() {
        assert!(DockerIgnore::parse("[").is_err());
    }

    #[test]
    fn build_files_are_kept() {
        let ig = DockerIgnore::parse("*\n").unwrap();
        assert!(ig.is_excluded("Dockerfile"));
        let ig = ig.keep_build_files("Dockerfile").unwrap();
        assert!(!ig.is_excluded("Dockerfile"));
        assert!(!ig.is_excluded(".dockerignore"));
        assert!(ig.is_excluded("src/main.rs"));
    }
}
