//! `amiprobe report compare BASE NEW`: the comparison of two results directories, printed as the
//! Markdown section "Since last night" or as JSON, and with `--write` kept in NEW's results and
//! reports. The flags win over the `baseline:` settings NEW's spec had (kept in its results.json).
//! Exits 0; 1 when a cell regressed and `--fail-on-regression` (or the spec) says that fails, or
//! when NEW's files could not be written; 2 when either directory cannot be read or the settings
//! make no sense.

use std::path::{Path, PathBuf};

use crate::exit::Outcome;
use crate::report::compare::settings::{settle, Flags, SettingsError};
use crate::report::compare::{self, Comparison, Frames, Rules};
use crate::report::error::{ReportError, ResultsError};
use crate::report::{self, baseline, html, json, junit, Format};
use crate::results::RunResults;

/// How to compare and what to say, from the command line.
pub struct Options {
    pub flags: Flags,
    pub json: bool,
    pub write: bool,
}

/// Why the comparison could not be made or kept.
#[derive(Debug, thiserror::Error)]
enum CompareError {
    #[error("{0}")]
    Load(#[from] ResultsError),
    #[error("{0}")]
    Settings(#[from] SettingsError),
    #[error("failed to encode the comparison: {0}")]
    Encode(serde_json::Error),
    #[error("failed to write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Report(#[from] ReportError),
}

impl CompareError {
    fn outcome(&self) -> Outcome {
        match self {
            CompareError::Load(_) | CompareError::Settings(_) => Outcome::UsageError,
            CompareError::Encode(_) | CompareError::Write { .. } | CompareError::Report(_) => Outcome::Failed,
        }
    }
}

pub fn compare(base: &Path, new: &Path, options: &Options) -> Outcome {
    match compare_and_tell(base, new, options) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: {e}");
            e.outcome()
        }
    }
}

fn compare_and_tell(base: &Path, new: &Path, options: &Options) -> Result<Outcome, CompareError> {
    let base_results = json::load(base)?;
    let new_results = json::load(new)?;
    let settings = settle(&options.flags, new_results.baseline.as_ref())?;
    let frames = if options.write { Frames::Copy } else { Frames::Leave };
    let rules = Rules { thresholds: settings.thresholds, ignored: &settings.ignored, frames };
    let comparison = compare::compare(&base_results, base, &new_results, new, &rules);
    if options.json {
        println!("{}", serde_json::to_string_pretty(&comparison).map_err(CompareError::Encode)?);
    } else {
        print!("{}", compare::markdown(&comparison));
    }
    let regressed = comparison.regressed();
    if options.write {
        // On stderr with --json: stdout stays one JSON document.
        for file in keep(new_results, comparison, new)? {
            match options.json {
                true => eprintln!("{}", file.display()),
                false => println!("{}", file.display()),
            }
        }
    }
    Ok(if settings.fail_on_regression && regressed { Outcome::Failed } else { Outcome::Passed })
}

/// `--write`: the comparison kept in `dir`'s results, and the reports it has written again; the
/// files written.
fn keep(mut results: RunResults, comparison: Comparison, dir: &Path) -> Result<Vec<PathBuf>, CompareError> {
    baseline::write(&comparison, dir).map_err(|source| CompareError::Write { path: dir.to_path_buf(), source })?;
    results.since_last_night = Some(comparison);
    results.write(dir).map_err(|source| CompareError::Write { path: dir.join(json::RESULTS), source })?;
    let formats: Vec<Format> = [(html::FORMAT, "report.html"), (junit::FORMAT, "junit.xml")]
        .into_iter()
        .filter(|(_, file)| dir.join(file).exists())
        .map(|(format, _)| format)
        .collect();
    let mut files = vec![dir.join(baseline::MARKDOWN_FILE), dir.join(json::RESULTS)];
    files.extend(report::write(&results, dir, &formats, None)?);
    Ok(files)
}
