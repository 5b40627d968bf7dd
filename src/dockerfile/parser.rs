//! The Dockerfile parser: parser directives, logical lines and
//! here-documents, following BuildKit's `parser/parser.go` line by line.
//!
//! A logical line is the first physical line with its leading blanks
//! removed, joined with the lines that follow while a line ends with the
//! escape character (`\` or the `# escape=` one) that is not itself escaped:
//! `C:\\` at the end of a line ends it, as in BuildKit. Comment lines inside
//! a continuation are dropped, blank ones too (BuildKit warns about those).
//! Every byte of a logical line remembers where it came from, so errors and
//! build checks point at the right file:line:col.

use super::heredoc::{self, RawHeredoc};

/// BuildKit reads lines with a `bufio.Scanner`: one physical line may not
/// exceed 64 KiB.
pub(crate) const MAX_LINE: usize = 65_535;

/// A parse failure: byte offset in the text and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) pos: usize,
    pub(crate) message: String,
}

fn fail<T>(pos: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        pos,
        message: message.into(),
    })
}

/// A line of text assembled from pieces of the Dockerfile, with the source
/// offset of every byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Line {
    /// The text.
    pub(crate) text: String,
    /// `(start in text, start in the source)` of each contiguous piece.
    pieces: Vec<(usize, usize)>,
}

impl Line {
    fn push(&mut self, piece: &str, source_pos: usize) {
        if !piece.is_empty() {
            self.pieces.push((self.text.len(), source_pos));
            self.text.push_str(piece);
        }
    }

    /// The source offset of byte `i` of the line (the end of the last piece
    /// for `i` past the end).
    pub(crate) fn source(&self, i: usize) -> usize {
        let k = self.pieces.partition_point(|&(start, _)| start <= i);
        match k.checked_sub(1).map(|k| self.pieces[k]) {
            Some((start, src)) => src + (i - start),
            None => self.pieces.first().map_or(0, |p| p.1),
        }
    }

    /// The part of the line from byte `from` on (a char boundary).
    pub(crate) fn tail(&self, from: usize) -> Line {
        let mut out = Line::default();
        for (k, &(start, src)) in self.pieces.iter().enumerate() {
            let end = self.pieces.get(k + 1).map_or(self.text.len(), |p| p.0);
            if end <= from {
                continue;
            }
            let s = start.max(from);
            out.push(&self.text[s..end], src + (s - start));
        }
        out
    }

    /// The source offset of the first occurrence of `needle` in the text at
    /// or after byte `from`, or of `from` when there is none.
    pub(crate) fn find_source(&self, from: usize, needle: &str) -> usize {
        let from = from.min(self.text.len());
        let at = self
            .text
            .get(from..)
            .and_then(|t| t.find(needle))
            .map_or(from, |i| from + i);
        self.source(at)
    }
}

/// Parser directives at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directives {
    /// The escape character.
    pub(crate) escape: char,
    /// `# syntax=` as written.
    pub(crate) syntax: Option<String>,
    /// `# check=` as written, with its offset.
    pub(crate) check: Option<(String, usize)>,
}

/// One instruction: its logical line and here-documents.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The logical line, leading blanks removed.
    pub(crate) line: Line,
    /// The here-documents of RUN/COPY/ADD (and ONBUILD of those), in order.
    pub(crate) heredocs: Vec<RawHeredoc>,
    /// Whether a blank line continued the instruction (BuildKit's
    /// NoEmptyContinuation check).
    pub(crate) empty_continuation: bool,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) directives: Directives,
    pub(crate) nodes: Vec<Node>,
}

/// Physical lines: (start, end without the line break).
fn physical_lines(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let nl = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let mut end = nl;
        while end > start && matches!(text.as_bytes()[end - 1], b'\r' | b'\n') {
            end -= 1;
        }
        out.push((start, end));
        start = nl + 1;
    }
    out
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// BuildKit's directive regex `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
fn directive(line: &str) -> Option<(String, &str, usize)> {
    let rest = line.strip_prefix('#')?;
    let body = rest.trim_start();
    let name_len = body
        .char_indices()
        .take_while(|(i, c)| {
            if *i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    if name_len == 0 {
        return None;
    }
    let name = &body[..name_len];
    let after = body[name_len..].trim_start().strip_prefix('=')?;
    let value = after.trim();
    if value.is_empty() {
        return None;
    }
    let value_at = line.len() - after.trim_start().len();
    Some((name.to_ascii_lowercase(), value, value_at))
}

struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
    directives: Directives,
}

impl DirectiveParser {
    /// Looks at a (left-trimmed) line; returns whether it was a directive.
    fn line(&mut self, line: &str, pos: usize) -> Result<bool, ParseError> {
        if self.done {
            return Ok(false);
        }
        let Some((name, value, value_at)) = directive(line) else {
            self.done = true;
            return Ok(false);
        };
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        if self.seen.contains(&name) {
            return fail(pos, format!("only one {name} parser directive can be used"));
        }
        self.seen.push(name.clone());
        match name.as_str() {
            "escape" => match value {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                _ => {
                    return fail(
                        pos + value_at,
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    )
                }
            },
            "syntax" => self.directives.syntax = Some(value.to_string()),
            _ => self.directives.check = Some((value.to_string(), pos + value_at)),
        }
        Ok(true)
    }
}

/// Removes a trailing line continuation: the escape character, not preceded
/// by another escape character, then only spaces and tabs (BuildKit's
/// `([^\\])\\[ \t]*$|^\\[ \t]*$`). Returns the line and whether it ended the
/// logical line.
pub(crate) fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// Parses a Dockerfile (BOM already removed) into instructions.
pub(crate) fn parse(text: &str) -> Result<Parsed, ParseError> {
    let lines = physical_lines(text);
    let mut dp = DirectiveParser {
        done: false,
        seen: Vec::new(),
        directives: Directives {
            escape: '\\',
            syntax: None,
            check: None,
        },
    };
    let mut nodes = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (start, end) = lines[i];
        if end - start > MAX_LINE {
            return fail(
                start,
                format!("dockerfile line greater than max allowed size of {MAX_LINE}"),
            );
        }
        let raw = &text[start..end];
        let trimmed = raw.trim_start();
        let lead = raw.len() - trimmed.len();
        dp.line(trimmed, start + lead)?;
        i += 1;
        if is_comment(trimmed) {
            continue;
        }
        let escape = dp.directives.escape;
        let (first, mut eol) = trim_continuation(trimmed, escape);
        if eol && first.is_empty() {
            continue;
        }
        let mut line = Line::default();
        line.push(first, start + lead);
        let mut empty_continuation = false;
        while !eol && i < lines.len() {
            let (s, e) = lines[i];
            if e - s > MAX_LINE {
                return fail(
                    s,
                    format!("dockerfile line greater than max allowed size of {MAX_LINE}"),
                );
            }
            i += 1;
            let raw = &text[s..e];
            if is_comment(raw) {
                continue;
            }
            if raw.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, done) = trim_continuation(raw, escape);
            line.push(piece, s);
            eol = done;
        }
        let mut heredocs = Vec::new();
        if heredoc::can_contain(&line.text) && line.text.contains("<<") {
            for marker in heredoc::markers(&line.text) {
                let mut content = String::new();
                let mut terminated = false;
                while i < lines.len() {
                    let (s, e) = lines[i];
                    i += 1;
                    let body_line = &text[s..lines.get(i).map_or(text.len(), |l| l.0)];
                    let mut candidate = &text[s..e];
                    if marker.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == marker.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(body_line);
                }
                if !terminated {
                    let at = line.find_source(0, &marker.word);
                    return fail(
                        at,
                        format!("unterminated heredoc: no line {:?} ends it", marker.name),
                    );
                }
                heredocs.push(marker.into_heredoc(content));
            }
        }
        nodes.push(Node {
            line,
            heredocs,
            empty_continuation,
        });
    }
    if nodes.is_empty() {
        return fail(text.len(), "file with no instructions");
    }
    Ok(Parsed {
        directives: dp.directives,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(p: &Parsed) -> Vec<&str> {
        p.nodes.iter().map(|n| n.line.text.as_str()).collect()
    }

    #[test]
    fn an_escaped_escape_at_the_end_of_a_line_ends_it() {
        let p = parse("FROM scratch\nENV WINDIR=C:\\\\\nENV NEXT=1\n").unwrap();
        assert_eq!(
            texts(&p),
            ["FROM scratch", "ENV WINDIR=C:\\\\", "ENV NEXT=1"]
        );
        let p = parse("RUN a \\\n  b\\\n\n# c\n  d\n").unwrap();
        assert_eq!(texts(&p), ["RUN a   b  d"]);
        assert!(p.nodes[0].empty_continuation);
    }

    #[test]
    fn logical_lines_map_back_to_the_source() {
        let text = "FROM x\n  RUN a \\\n   b\n";
        let p = parse(text).unwrap();
        let line = &p.nodes[1].line;
        assert_eq!(line.text, "RUN a    b");
        assert_eq!(&text[line.source(0)..line.source(0) + 3], "RUN");
        let b = line.text.find('b').unwrap();
        assert_eq!(&text[line.source(b)..line.source(b) + 1], "b");
        assert_eq!(line.tail(4).text, "a    b");
        assert_eq!(line.tail(4).source(0), line.source(4));
    }

    #[test]
    fn directives_only_at_the_top() {
        let p =
            parse("# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nFROM x\n").unwrap();
        assert_eq!(p.directives.escape, '`');
        assert_eq!(p.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(p.directives.check.as_ref().unwrap().0, "skip=all");
        let p = parse("# hello\n# escape=`\nFROM x\n").unwrap();
        assert_eq!(p.directives.escape, '\\');
        assert!(parse("# escape=x\nFROM x\n").is_err());
        assert!(parse("# escape=`\n# escape=`\nFROM x\n").is_err());
    }

    #[test]
    fn heredocs_follow_their_instruction() {
        let p = parse("RUN cat <<A <<-B\na\nA\n\tb\n\tB\nENV X=1\n").unwrap();
        assert_eq!(texts(&p), ["RUN cat <<A <<-B", "ENV X=1"]);
        let docs = &p.nodes[0].heredocs;
        assert_eq!(
            (docs[0].name.as_str(), docs[0].content.as_str()),
            ("A", "a\n")
        );
        assert_eq!(
            (docs[1].name.as_str(), docs[1].content.as_str()),
            ("B", "b\n")
        );
        let e = parse("RUN <<EOF\nx\n").unwrap_err();
        assert_eq!(e.pos, 4);
    }

    #[test]
    fn long_lines_and_empty_files_are_errors() {
        assert!(parse(&format!("RUN {}\n", "x".repeat(MAX_LINE))).is_err());
        assert_eq!(
            parse("# only\n\n").unwrap_err().message,
            "file with no instructions"
        );
    }
}
