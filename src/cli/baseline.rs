//! `run --baseline DIR`: what changed since earlier results (last night's), once the run is over.
//! The baseline is read before anything launches (unreadable: exit 2, nothing created); the
//! comparison is printed after the run's summary and written next to the results as
//! `since-last-night.md` and `since-last-night.json`. With `--fail-on-regression` a regression fails
//! a run that otherwise passed.

use std::path::{Path, PathBuf};

use crate::exit::Outcome;
use crate::report::compare::normalise::Ignored;
use crate::report::compare::{self, Comparison, Thresholds};
use crate::report::error::ResultsError;
use crate::report::json;
use crate::results::RunResults;

/// The Markdown and JSON files the comparison is written to, in the results directory.
pub const MARKDOWN_FILE: &str = "since-last-night.md";
pub const JSON_FILE: &str = "since-last-night.json";

/// How the run is compared: `--regression-ratio`/`--regression-floor`, `--regression-ignore`,
/// `--fail-on-regression`.
pub struct Rules {
    pub thresholds: Thresholds,
    pub ignored: Ignored,
    pub fail_on_regression: bool,
}

/// Earlier results to compare the run with.
pub struct Baseline {
    dir: PathBuf,
    results: RunResults,
    rules: Rules,
}

impl Baseline {
    /// The results in `dir`, read now: a baseline that can't be read stops the run before it starts.
    pub fn load(dir: &Path, rules: Rules) -> Result<Baseline, ResultsError> {
        let results = json::load(dir)?;
        Ok(Baseline { dir: dir.to_path_buf(), results, rules })
    }

    /// Compares `results` (in `out_dir`) with the baseline, prints and writes the comparison, and
    /// says how the run ends: `outcome`, or failed when it regressed and that was asked to fail it.
    pub fn after(&self, results: &RunResults, out_dir: &Path, outcome: Outcome) -> Outcome {
        let rules = &self.rules;
        let comparison = compare::compare(&self.results, &self.dir, results, out_dir, rules.thresholds, &rules.ignored);
        print!("\n{}", comparison.markdown());
        if let Err(e) = write(&comparison, out_dir) {
            eprintln!("error: failed to write the comparison in {}: {e}", out_dir.display());
        }
        match outcome {
            Outcome::Passed if rules.fail_on_regression && comparison.regressed() => Outcome::Failed,
            other => other,
        }
    }
}

fn write(comparison: &Comparison, out_dir: &Path) -> std::io::Result<()> {
    std::fs::write(out_dir.join(MARKDOWN_FILE), comparison.markdown())?;
    let text = serde_json::to_string_pretty(comparison).map_err(std::io::Error::other)?;
    std::fs::write(out_dir.join(JSON_FILE), text)
}
