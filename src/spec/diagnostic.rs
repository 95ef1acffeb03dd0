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

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
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
                        let gutter = pos.line.to_string().len();
                        writeln!(f, "{:gutter$} |", "")?;
                        writeln!(f, "{} | {}", pos.line, line)?;
                        let pad: String = line
                            .chars()
                            .take(pos.column.saturating_sub(1))
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
        if n > 1 {
            writeln!(f, "\n{n} errors in spec")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}
