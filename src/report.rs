//! Reporters: the terminal display while a run goes, and the files people read afterwards:
//! `report.html` (+ `assets/`), `junit.xml` and `results.json`, side by side. During a run they all
//! hang off the engine's one event stream ([`reporter::Reporters`]); `amiprobe report` and
//! `report merge` render the same files from a results.json through the same [`write_one`].
//! `report compare` ([`compare`]) and `report history` ([`history`]) read several runs' results.
//!
//! The formats are a registry, [`FORMATS`]: each is a module with a [`Writer`] (its `--report` name,
//! how its file is written, and what keeps it during a run), so a new format is one file plus one
//! line there; `run`, `report` and `report merge` all take their formats from it.

pub mod baseline;
pub mod compare;
pub mod error;
pub mod history;
pub mod html;
pub mod json;
pub mod junit;
pub mod merge;
pub mod promotion;
pub mod reporter;
pub mod summary;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use self::error::{ReportError, UnknownFormat};
use crate::engine::Reporter;
use crate::results::RunResults;

/// Every report format, in the order `--report`'s help and errors list them.
pub const FORMATS: &[Format] = &[html::FORMAT, junit::FORMAT, json::FORMAT];

/// A report format: what `--report NAME` names and how its file is written.
pub trait Writer: Sync {
    /// Its name on the command line (`html`).
    fn name(&self) -> &'static str;

    /// Writes the report for `results` into `dir`, next to its results.json and cell files, and
    /// says where; `templates` overrides the built-in templates of the formats that have any.
    fn write(&self, results: &RunResults, dir: &Path, templates: Option<&Path>) -> Result<PathBuf, ReportError>;

    /// What keeps this report during a run (`listed`: asked for with `--report`, so its path is
    /// printed): by default the file rendered once, from the final results.
    fn reporter(&self, format: Format, dir: &Path, templates: Option<&Path>, _listed: bool) -> Box<dyn Reporter> {
        Box::new(reporter::ReportFile::new(format, dir, templates))
    }
}

/// A report format of [`FORMATS`], as the command line names it.
#[derive(Clone, Copy)]
pub struct Format(&'static dyn Writer);

impl Format {
    pub const fn new(writer: &'static dyn Writer) -> Format {
        Format(writer)
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    pub fn writer(self) -> &'static dyn Writer {
        self.0
    }

    /// What keeps this report during a run (see [`Writer::reporter`]).
    pub fn reporter(self, dir: &Path, templates: Option<&Path>, listed: bool) -> Box<dyn Reporter> {
        self.0.reporter(self, dir, templates, listed)
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Format) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Format {}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        FORMATS
            .iter()
            .find(|format| format.name() == s)
            .copied()
            .ok_or_else(|| UnknownFormat { name: s.to_string(), expected: names() })
    }
}

/// The formats' names as a sentence: "html, junit or json".
fn names() -> String {
    let names: Vec<&str> = FORMATS.iter().map(|format| format.name()).collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Writes the reports like [`write`] and prints each file's path, for the commands that make them.
pub fn write_and_list(
    results: &RunResults,
    dir: &Path,
    formats: &[Format],
    templates: Option<&Path>,
) -> Result<(), ReportError> {
    for file in write(results, dir, formats, templates)? {
        println!("{}", file.display());
    }
    Ok(())
}

/// Writes the reports asked for into `dir`, next to its results.json and cell files.
pub fn write(
    results: &RunResults,
    dir: &Path,
    formats: &[Format],
    templates: Option<&Path>,
) -> Result<Vec<PathBuf>, ReportError> {
    formats.iter().map(|format| write_one(*format, results, dir, templates)).collect()
}

/// Writes one report into `dir` and says where: the one renderer behind `run`, `report` and `merge`.
pub fn write_one(
    format: Format,
    results: &RunResults,
    dir: &Path,
    templates: Option<&Path>,
) -> Result<PathBuf, ReportError> {
    format.writer().write(results, dir, templates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_found_by_name_and_an_unknown_one_lists_them() {
        assert_eq!("junit".parse::<Format>().unwrap(), junit::FORMAT);
        let e = "pdf".parse::<Format>().unwrap_err().to_string();
        assert_eq!(e, "unknown report format `pdf`: expected html, junit or json");
    }
}
