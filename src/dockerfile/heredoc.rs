//! Here-documents in RUN, found the way BuildKit finds them.
//!
//! `parse-dockerfile` reads only one here-document per RUN, and only when it
//! is the first word (`RUN <<EOF`). BuildKit accepts any number anywhere in
//! the line (`RUN cat <<A >a && cat <<B >b`). This pre-pass finds RUN
//! here-documents itself, records them, and hands the parser a copy of the
//! text where each body is blanked and each `<<` marker is replaced by `__`.
//! Byte offsets do not move, so the parser's spans index the original text.

use super::lex::{expand_word, split_words};
use std::collections::HashMap;

/// A here-document found in a RUN line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawHeredoc {
    /// The delimiter, quotes removed.
    pub(crate) name: String,
    /// The body, every line with its newline (tabs stripped for `<<-`).
    pub(crate) content: String,
    /// False when the delimiter was quoted.
    pub(crate) expand: bool,
    /// The marker word as written (`<<EOF`, `<<-"EOF"`).
    pub(crate) word: String,
}

/// The result of the pre-pass.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// The text for the parser (same length as the input).
    pub(crate) text: String,
    /// RUN here-documents, by the byte offset of the RUN keyword.
    pub(crate) run_heredocs: HashMap<usize, Vec<RawHeredoc>>,
}

/// An unterminated here-document: the offset of its marker and its name.
#[derive(Debug)]
pub(crate) struct Unterminated {
    pub(crate) pos: usize,
    pub(crate) name: String,
}

/// Reads the `# escape=` directive the way the parser will.
pub(crate) fn escape_directive(text: &str) -> char {
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix('#') else {
            break;
        };
        let rest = rest.trim();
        if let Some((key, value)) = rest.split_once('=') {
            let key = key.trim().to_ascii_lowercase();
            if key == "escape" && value.trim() == "`" {
                return '`';
            }
            if key == "escape" || key == "syntax" || key == "check" {
                continue;
            }
        }
        break;
    }
    '\\'
}

/// One physical line: byte range without the newline, and the next line's start.
fn lines_with_offsets(text: &str) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let next = (end + 1).min(text.len());
        out.push((start, end, if end == text.len() { end } else { next }));
        start = next;
        if end == text.len() {
            break;
        }
    }
    out
}

/// Finds RUN here-documents and blanks them for the parser.
pub(crate) fn prepare(text: &str) -> Result<Prepared, Unterminated> {
    let escape = escape_directive(text);
    let lines = lines_with_offsets(text);
    let mut bytes = text.as_bytes().to_vec();
    let mut run_heredocs = HashMap::new();
    let mut i = 0;
    while i < lines.len() {
        let (start, end, _) = lines[i];
        let first = text[start..end].trim_start();
        if first.is_empty() || first.starts_with('#') {
            i += 1;
            continue;
        }
        let keyword_pos = start + (text[start..end].len() - first.len());
        // Join the logical line (escape at end of line continues it; comment
        // lines inside a continuation are dropped, as BuildKit does).
        let mut logical = String::new();
        let line_end;
        loop {
            let (s, e, _) = lines[i];
            let physical = text[s..e].trim_end_matches('\r');
            let trimmed = physical.trim_end();
            i += 1;
            if let Some(cont) = trimmed.strip_suffix(escape) {
                logical.push_str(cont);
                while i < lines.len() && text[lines[i].0..lines[i].1].trim_start().starts_with('#')
                {
                    i += 1;
                }
                if i < lines.len() {
                    continue;
                }
                line_end = e;
                break;
            } else {
                logical.push_str(physical);
            }
            line_end = e;
            break;
        }
        let mut rest = logical.trim_start();
        let mut upper = first_word_upper(rest);
        // `ONBUILD RUN <<EOF`: the parser reads that heredoc itself (one, at
        // the start); the pre-pass only skips its body.
        let in_onbuild = upper == "ONBUILD";
        if in_onbuild {
            rest = rest[upper.len()..].trim_start();
            upper = first_word_upper(rest);
        }
        let is_run = upper == "RUN" && !in_onbuild;
        if !(upper == "RUN" || upper == "COPY" || upper == "ADD") {
            continue;
        }
        let args = rest[upper.len()..].trim_start();
        let words: Vec<String> = split_words(args, '\\')
            .into_iter()
            .filter(|w| !w.starts_with("--"))
            .collect();
        if words.first().is_some_and(|w| w.starts_with('[')) {
            continue;
        }
        let mut docs = Vec::new();
        for word in &words {
            if let Some(doc) = parse_marker(word) {
                docs.push(doc);
            }
        }
        if docs.is_empty() {
            continue;
        }
        // Collect the bodies, in order, from the following lines.
        let mut heredocs = Vec::new();
        let mut marker_search = keyword_pos;
        for (word, name, chomp, expand) in docs {
            // The marker as written; not found verbatim only when a line
            // continuation splits it, and then it is left to the parser.
            let found = text[marker_search..line_end]
                .find(&word)
                .map(|p| marker_search + p);
            let marker_pos = found.unwrap_or(keyword_pos);
            marker_search = (marker_pos + word.len()).min(line_end);
            let mut content = String::new();
            let mut terminated = false;
            while i < lines.len() {
                let (s, e, next) = lines[i];
                let raw = &text[s..e];
                let mut candidate = raw.strip_suffix('\r').unwrap_or(raw);
                let mut body_line = &text[s..next];
                if chomp {
                    candidate = candidate.trim_start_matches('\t');
                    body_line = body_line.trim_start_matches('\t');
                }
                if is_run {
                    for b in &mut bytes[s..e] {
                        *b = b' ';
                    }
                }
                i += 1;
                if candidate == name {
                    terminated = true;
                    break;
                }
                content.push_str(body_line);
            }
            if !terminated {
                return Err(Unterminated {
                    pos: marker_pos,
                    name,
                });
            }
            if let (true, Some(pos), Some(lt)) = (is_run, found, word.find("<<")) {
                bytes[pos + lt] = b'_';
                bytes[pos + lt + 1] = b'_';
            }
            heredocs.push(RawHeredoc {
                name,
                content,
                expand,
                word,
            });
        }
        if is_run {
            run_heredocs.insert(keyword_pos, heredocs);
        }
    }
    // Only ASCII spaces and underscores replaced ASCII bytes or whole lines.
    let text = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Ok(Prepared { text, run_heredocs })
}

/// The first whitespace-separated word of `s`, upper-cased.
fn first_word_upper(s: &str) -> String {
    s.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

/// Recognises a here-document marker word: `[n]<<[-]delim` (BuildKit's
/// `^(\d*)<<(-?)([^<]*)$`). Returns (word, name, chomp, expand).
fn parse_marker(word: &str) -> Option<(String, String, bool, bool)> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let none: Vec<(String, String)> = Vec::new();
    let name = expand_word(rest, '\\', &none).ok()?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let expand = !rest.contains(['"', '\'']);
    Some((word.to_string(), name, chomp, expand))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_several_heredocs_and_blanks_them() {
        let text =
            "FROM scratch\nRUN cat <<A >a && cat <<-'B' >b\nline a\nA\n\tline b\n\tB\nENV X=1\n";
        let p = prepare(text).unwrap();
        assert_eq!(p.text.len(), text.len());
        let docs = &p.run_heredocs[&13];
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].name, "A");
        assert_eq!(docs[0].content, "line a\n");
        assert!(docs[0].expand);
        assert_eq!(docs[1].name, "B");
        assert_eq!(docs[1].content, "line b\n");
        assert!(!docs[1].expand);
        assert!(p.text.contains("RUN cat __A >a && cat __-'B' >b\n"));
        assert!(p.text.ends_with("ENV X=1\n"));
        assert!(!p.text.contains("line"));
    }

    #[test]
    fn unterminated_heredoc_points_at_marker() {
        let text = "FROM scratch\nRUN <<EOF\necho hi\n";
        let err = prepare(text).unwrap_err();
        assert_eq!(err.pos, 17);
        assert_eq!(err.name, "EOF");
    }

    #[test]
    fn leaves_copy_heredocs_to_the_parser() {
        let text = "FROM scratch\nCOPY <<EOF /f\nRUN x\nEOF\n";
        let p = prepare(text).unwrap();
        assert_eq!(p.text, text);
        assert!(p.run_heredocs.is_empty());
    }

    #[test]
    fn reads_backtick_escape_directive() {
        assert_eq!(escape_directive("# escape=`\nFROM x"), '`');
        assert_eq!(
            escape_directive("# syntax=docker/dockerfile:1\n#escape = `\n"),
            '`'
        );
        assert_eq!(escape_directive("FROM x\n# escape=`"), '\\');
    }
}
