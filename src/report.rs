//! Reporters: the terminal display while a run goes, and the files people read afterwards:
//! `report.html` (+ `assets/`), `junit.xml` and `results.json`, side by side. During a run they all
//! hang off the engine's one event stream ([`reporter::Reporters`]); `amiprobe report` renders the same
//! files from a results.json through the same [`write_one`].

pub mod html;
pub mod json;
pub mod junit;
pub mod merge;
pub mod reporter;
pub mod summary;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::results::RunResults;

/// A report file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Junit,
    Json,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "html" => Ok(Format::Html),
            "junit" => Ok(Format::Junit),
            "json" => Ok(Format::Json),
            _ => Err(format!("unknown report format `{s}`: expected html, junit or json")),
        }
    }
}

/// Writes the reports like [`write`] and prints each file's path, for the commands that make them.
pub fn write_and_list(
    results: &RunResults,
    dir: &Path,
    formats: &[Format],
    templates: Option<&Path>,
) -> Result<(), String> {
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
) -> Result<Vec<PathBuf>, String> {
    formats.iter().map(|format| write_one(*format, results, dir, templates)).collect()
}

/// Writes one report into `dir` and says where: the one renderer behind `run`, `report` and `merge`.
pub fn write_one(
    format: Format,
    results: &RunResults,
    dir: &Path,
    templates: Option<&Path>,
) -> Result<PathBuf, String> {
    match format {
        Format::Json => {
            results.write(dir).map_err(|e| format!("failed to write results.json: {e}"))?;
            Ok(dir.join("results.json"))
        }
        Format::Junit => {
            let file = dir.join("junit.xml");
            std::fs::write(&file, junit::render(results)?)
                .map_err(|e| format!("failed to write {}: {e}", file.display()))?;
            Ok(file)
        }
        Format::Html => html::Renderer::new(templates)?.write(results, dir),
    }
}
