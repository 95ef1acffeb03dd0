//! Errors in a spec, each with its file, line, column and field path, printed like a compiler would.

use std::fmt;
use std::path::{Path, PathBuf};

use super::locate::Position;
use super::path::FieldPath;

/// One problem found in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub position: Option<Position>,
    pub path: Option<FieldPath>,
    /// A lowercase fragment: "unknown key `expct`".
    pub message: String,
    pub help: Option<String>,
}

/// A problem found after deserializing, before it has been given a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: FieldPath,
    pub message: String,
    pub help: Option<String>,
    /// Point at the key (`tcp:`) rather than at its value.
    pub at_key: bool,
}

impl Problem {
    pub fn at(path: FieldPath, message: impl Into<String>) -> Self {
        Problem { path, message: message.into(), help: None, at_key: false }
    }

    pub fn at_key(path: FieldPath, message: impl Into<String>) -> Self {
        Problem { path, message: message.into(), help: None, at_key: true }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Everything wrong with one spec file, reported together.
#[derive(Debug, Clone)]
pub struct SpecError {
    pub diagnostics: Vec<Diagnostic>,
    /// The file's text, to show the offending lines.
    pub source: Option<String>,
}

impl SpecError {
    pub fn single(file: &Path, message: impl Into<String>) -> Self {
        SpecError {
            diagnostics: vec![Diagnostic {
                file: file.to_path_buf(),
                position: None,
                path: None,
                message: message.into(),
                help: None,
            }],
            source: None,
        }
    }
}

/// Errors printed in full; a spec with more (a generated one, usually) gets a count of the rest.
const MAX_SHOWN: usize = 50;

/// Characters of a source line shown around the column: enough for any hand-written line.
const LINE_WINDOW: usize = 100;

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().take(MAX_SHOWN).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &d.path {
                Some(path) => writeln!(f, "error: {path}: {}", d.message)?,
                None => writeln!(f, "error: {}", d.message)?,
            }
            match d.position {
                Some(pos) => {
                    writeln!(f, "  --> {}:{}:{}", d.file.display(), pos.line, pos.column)?;
                    let line = self.source.as_deref().and_then(|s| s.lines().nth(pos.line.saturating_sub(1)));
                    if let Some(line) = line {
                        let (shown, column) = excerpt(line, pos.column);
                        let gutter = pos.line.to_string().len();
                        writeln!(f, "{:gutter$} |", "")?;
                        writeln!(f, "{} | {}", pos.line, shown)?;
                        let pad: String = shown
                            .chars()
                            .take(column.saturating_sub(1))
                            .map(|c| if c == '\t' { '\t' } else { ' ' })
                            .collect();
                        writeln!(f, "{:gutter$} | {pad}^", "")?;
                    }
                }
                None => writeln!(f, "  --> {}", d.file.display())?,
            }
            if let Some(help) = &d.help {
                writeln!(f, "  = help: {help}")?;
            }
        }
        let n = self.diagnostics.len();
        if n > MAX_SHOWN {
            writeln!(f, "\n... and {} more", n - MAX_SHOWN)?;
        }
        if n > 1 {
            writeln!(f, "\n{n} errors in spec")?;
        }
        Ok(())
    }
}

/// The part of a long line around `column`, and the column within it: a 1 MiB line is not printed
/// once per error.
fn excerpt(line: &str, column: usize) -> (String, usize) {
    if line.chars().count() <= LINE_WINDOW {
        return (line.to_string(), column);
    }
    let start = column.saturating_sub(LINE_WINDOW / 2 + 1);
    let mut shown: String = line.chars().skip(start).take(LINE_WINDOW).collect();
    let mut column = column - start;
    if start > 0 {
        shown.insert_str(0, "...");
        column += 3;
    }
    if line.chars().count() > start + LINE_WINDOW {
        shown.push_str("...");
    }
    (shown, column)
}

impl std::error::Error for SpecError {}
