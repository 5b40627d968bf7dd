//! Here-document markers, found the way BuildKit finds them: every word of
//! a RUN/COPY/ADD line (or ONBUILD of one) that reads `[n]<<[-]WORD` starts
//! one, in order, and the bodies follow the instruction line by line.

use super::lex::{expand_word, split_words};

/// A here-document of an instruction.
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
    /// The body as written (tabs kept), for ONBUILD trigger texts.
    pub(crate) raw: String,
}

/// A marker found in a line, before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub(crate) word: String,
    pub(crate) name: String,
    pub(crate) chomp: bool,
    pub(crate) expand: bool,
}

impl Marker {
    /// The here-document with its body (leading tabs removed for `<<-`).
    pub(crate) fn into_heredoc(self, content: String) -> RawHeredoc {
        let raw = content.clone();
        let content = if self.chomp {
            content
                .split_inclusive('\n')
                .map(|l| l.trim_start_matches('\t'))
                .collect()
        } else {
            content
        };
        RawHeredoc {
            name: self.name,
            content,
            raw,
            expand: self.expand,
            word: self.word,
        }
    }
}

/// Whether the instruction on `line` may have here-documents.
pub(crate) fn can_contain(line: &str) -> bool {
    let mut words = line.split_whitespace().map(str::to_ascii_uppercase);
    match words.next().as_deref() {
        Some("RUN" | "COPY" | "ADD") => true,
        Some("ONBUILD") => matches!(words.next().as_deref(), Some("RUN" | "COPY" | "ADD")),
        _ => false,
    }
}

/// The here-document markers of `line`, in order.
pub(crate) fn markers(line: &str) -> Vec<Marker> {
    split_words(line, '\\')
        .into_iter()
        .filter_map(|w| parse_marker(&w))
        .collect()
}

/// Recognises a marker word: `[n]<<[-]delim` (BuildKit's
/// `^(\d*)<<(-?)\s*([^<]*)$`).
pub(crate) fn parse_marker(word: &str) -> Option<Marker> {
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
    Some(Marker {
        word: word.to_string(),
        name,
        chomp,
        expand,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_markers_anywhere_in_the_line() {
        let m = markers("RUN cat <<A >a && cat <<-'B' >b 2<<C");
        let names: Vec<_> = m
            .iter()
            .map(|m| (m.name.as_str(), m.chomp, m.expand))
            .collect();
        assert_eq!(
            names,
            [("A", false, true), ("B", true, false), ("C", false, true)]
        );
        assert!(markers("RUN echo a<<b").is_empty());
    }

    #[test]
    fn only_run_copy_add_and_their_onbuild_forms() {
        assert!(can_contain("run x"));
        assert!(can_contain("ONBUILD COPY <<A /a"));
        assert!(!can_contain("ENV A=<<B"));
        assert!(!can_contain("ONBUILD ENV A=<<B"));
    }

    #[test]
    fn chomp_strips_leading_tabs_of_every_line() {
        let m = parse_marker("<<-EOF").unwrap();
        assert_eq!(m.into_heredoc("\t\ta\n\tb\n".into()).content, "a\nb\n");
    }
}
