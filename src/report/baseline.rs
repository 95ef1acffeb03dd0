//! `run --baseline DIR`: earlier results (last night's) the run is compared with once it is over.
//! The baseline is read before anything launches (unreadable: the run does not start); the
//! comparison joins the final results (`since_last_night`) before any report is written, so that
//! results.json, report.html, junit.xml, the `--summary` and the terminal all tell it, and
//! `since-last-night.md` / `.json` are written next to them ([`super::reporter::SinceLastNight`]).

use std::path::{Path, PathBuf};

use super::compare::settings::Settings;
use super::compare::{self, Comparison, Frames, Rules};
use super::error::ResultsError;
use super::json;
use crate::results::RunResults;

/// The Markdown and JSON files the comparison is written to, in the results directory.
pub const MARKDOWN_FILE: &str = "since-last-night.md";
pub const JSON_FILE: &str = "since-last-night.json";

/// Earlier results to compare the run with, and how.
pub struct Baseline {
    dir: PathBuf,
    results: RunResults,
    settings: Settings,
}

impl Baseline {
    /// The results in `dir`, read now: a baseline that can't be read stops the run before it starts.
    pub fn load(dir: &Path, settings: Settings) -> Result<Baseline, ResultsError> {
        let results = json::load(dir)?;
        Ok(Baseline { dir: dir.to_path_buf(), results, settings })
    }

    /// A regression fails a run that otherwise passed.
    pub fn fails_on_regression(&self) -> bool {
        self.settings.fail_on_regression
    }

    /// Compares `results` (in `out_dir`) with the baseline; the frames of last screens that moved
    /// are copied into `out_dir`, so that its report shows both on its own.
    pub fn compare(&self, results: &RunResults, out_dir: &Path) -> Comparison {
        let rules =
            Rules { thresholds: self.settings.thresholds, ignored: &self.settings.ignored, frames: Frames::Copy };
        compare::compare(&self.results, &self.dir, results, out_dir, &rules)
    }
}

/// Writes `since-last-night.md` and `since-last-night.json` into `dir`.
pub fn write(comparison: &Comparison, dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join(MARKDOWN_FILE), compare::markdown(comparison))?;
    let text = serde_json::to_string_pretty(comparison).map_err(std::io::Error::other)?;
    std::fs::write(dir.join(JSON_FILE), text)
}
