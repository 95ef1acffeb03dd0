//! `amiprobe report compare BASE NEW`: the comparison of two results directories, printed as the
//! Markdown section "Since last night" or as JSON, and with `--write` kept in NEW's results and
//! reports. Exits 0; 1 with `--fail-on-regression` when a cell regressed (or NEW's reports could not
//! be written again); 2 when either directory cannot be read or the thresholds make no sense.

use std::path::Path;

use crate::exit::Outcome;
use crate::report::compare::normalise::Ignored;
use crate::report::compare::Comparison;
use crate::report::compare::{self, Frames, Rules, Thresholds};
use crate::report::{self, baseline, html, json, junit, Format};
use crate::results::RunResults;

/// How to compare and what to say, from the command line.
pub struct Options {
    pub thresholds: Thresholds,
    pub ignore_line: Vec<String>,
    pub json: bool,
    pub fail_on_regression: bool,
    pub write: bool,
}

pub fn compare(base: &Path, new: &Path, options: &Options) -> Outcome {
    let Options { thresholds, json: as_json, fail_on_regression, write, .. } = *options;
    if !(thresholds.ratio.is_finite() && thresholds.ratio >= 0.0) {
        eprintln!("error: --ratio must be a number of 0 or more, not {}", thresholds.ratio);
        return Outcome::UsageError;
    }
    let ignored = match Ignored::new(&options.ignore_line) {
        Ok(ignored) => ignored,
        Err(e) => {
            eprintln!("error: --ignore-line: {e}");
            return Outcome::UsageError;
        }
    };
    let loaded = json::load(base).and_then(|b| json::load(new).map(|n| (b, n)));
    let (base_results, new_results) = match loaded {
        Ok(both) => both,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::UsageError;
        }
    };
    let frames = if write { Frames::Copy } else { Frames::Leave };
    let rules = Rules { thresholds, ignored: &ignored, frames };
    let comparison = compare::compare(&base_results, base, &new_results, new, &rules);
    if as_json {
        match serde_json::to_string_pretty(&comparison) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: failed to encode the comparison: {e}");
                return Outcome::Failed;
            }
        }
    } else {
        print!("{}", compare::markdown(&comparison));
    }
    let regressed = comparison.regressed();
    if write {
        if let Err(e) = keep(new_results, comparison, new) {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
    }
    if fail_on_regression && regressed {
        Outcome::Failed
    } else {
        Outcome::Passed
    }
}

/// `--write`: the comparison kept in `dir`'s results, and the reports it has written again.
fn keep(mut results: RunResults, comparison: Comparison, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    baseline::write(&comparison, dir)?;
    results.since_last_night = Some(comparison);
    results.write(dir)?;
    let formats: Vec<Format> = [(html::FORMAT, "report.html"), (junit::FORMAT, "junit.xml")]
        .into_iter()
        .filter(|(_, file)| dir.join(file).exists())
        .map(|(format, _)| format)
        .collect();
    report::write_and_list(&results, dir, &formats, None)?;
    Ok(())
}
