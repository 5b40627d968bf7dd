//! Errors with a place: file, line, column, the instruction, and the source
//! line with a caret under the column.

use serde::Serialize;
use std::fmt;

/// A place in a Dockerfile (1-based line and column, column in characters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The Dockerfile's path as given to the planner.
    pub file: String,
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// Maps byte offsets in a Dockerfile to [`Location`]s and source lines.
#[derive(Debug, Clone)]
pub(crate) struct SourceMap<'a> {
    pub(crate) file: String,
    pub(crate) text: &'a str,
    /// Byte offset of the start of each line (shared: the map is cloned per stage).
    line_starts: std::sync::Arc<Vec<usize>>,
}

impl<'a> SourceMap<'a> {
    /// A map of `text`, shown as `file` in locations.
    pub(crate) fn new(file: String, text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceMap {
            file,
            text,
            line_starts: std::sync::Arc::new(starts),
        }
    }

    /// The location of byte offset `pos` (clamped to the text).
    pub(crate) fn location(&self, pos: usize) -> Location {
        let mut pos = pos.min(self.text.len());
        while !self.text.is_char_boundary(pos) {
            pos -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= pos);
        let line_start = self.line_starts[line - 1];
        Location {
            file: self.file.clone(),
            line,
            col: self.text[line_start..pos].chars().count() + 1,
        }
    }

    /// The text of 1-based `line`, without its newline.
    pub(crate) fn line_text(&self, line: usize) -> Option<&'a str> {
        let start = *self.line_starts.get(line.checked_sub(1)?)?;
        let end = self
            .line_starts
            .get(line)
            .map_or(self.text.len(), |next| next - 1);
        let l = &self.text[start..end];
        Some(l.strip_suffix('\r').unwrap_or(l))
    }

    /// An error at byte offset `pos`, naming `instruction`.
    pub(crate) fn error(
        &self,
        pos: usize,
        instruction: Option<&str>,
        message: impl Into<String>,
    ) -> FrontendError {
        let location = self.location(pos);
        self.error_at(location, instruction, message)
    }

    /// An error at `location`, naming `instruction`.
    pub(crate) fn error_at(
        &self,
        location: Location,
        instruction: Option<&str>,
        message: impl Into<String>,
    ) -> FrontendError {
        let source_line = self.line_text(location.line).map(str::to_string);
        FrontendError {
            location: Some(location),
            instruction: instruction.map(str::to_ascii_uppercase),
            message: message.into(),
            source_line,
        }
    }
}

/// A problem in a Dockerfile or the plan options.
///
/// `Display` renders it the way a compiler would:
///
/// ```text
/// Dockerfile:3:6: EXPOSE: invalid port "80x"
///   3 | EXPOSE 80x
///     |      ^
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FrontendError {
    /// Where the problem is, when it is in the file.
    pub location: Option<Location>,
    /// The instruction (upper case) it is in, when there is one.
    pub instruction: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The source line at `location`, for the caret rendering.
    pub source_line: Option<String>,
}

impl FrontendError {
    /// An error with no place in the file (bad options, missing target).
    pub fn general(message: impl Into<String>) -> Self {
        FrontendError {
            location: None,
            instruction: None,
            message: message.into(),
            source_line: None,
        }
    }
}

impl fmt::Display for FrontendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        if let Some(inst) = &self.instruction {
            write!(f, "{inst}: ")?;
        }
        f.write_str(&self.message)?;
        if let (Some(loc), Some(line)) = (&self.location, &self.source_line) {
            let num = loc.line.to_string();
            let pad = " ".repeat(num.len());
            // Tabs keep their width so the caret lines up under them.
            let lead: String = line
                .chars()
                .take(loc.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n {num} | {line}\n {pad} | {lead}^")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_instruction_and_caret() {
        let map = SourceMap::new("Dockerfile".into(), "FROM scratch\nEXPOSE 80x\n");
        let err = map.error(20, Some("expose"), "invalid port \"80x\"");
        assert_eq!(
            err.to_string(),
            "Dockerfile:2:8: EXPOSE: invalid port \"80x\"\n 2 | EXPOSE 80x\n   |        ^"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let map = SourceMap::new("F".into(), "LABEL é=1 x");
        assert_eq!(map.location(10).col, 10);
    }
}
