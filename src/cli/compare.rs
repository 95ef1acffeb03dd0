//! `amiprobe report compare BASE NEW`: the comparison of two results directories, printed as the
//! Markdown section "Since last night" or as JSON. Exits 0; 1 with `--fail-on-regression` when a cell
//! regressed; 2 when either directory cannot be read or the thresholds make no sense.

use std::path::Path;

use crate::exit::Outcome;
use crate::report::compare::normalise::Ignored;
use crate::report::compare::{self, Frames, Rules, Thresholds};
use crate::report::json;

/// How to compare and what to say, from the command line.
pub struct Options {
    pub thresholds: Thresholds,
    pub ignore_line: Vec<String>,
    pub json: bool,
    pub fail_on_regression: bool,
}

pub fn compare(base: &Path, new: &Path, options: &Options) -> Outcome {
    let Options { thresholds, json: as_json, fail_on_regression, .. } = *options;
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
    let rules = Rules { thresholds, ignored: &ignored, frames: Frames::Leave };
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
    if fail_on_regression && comparison.regressed() {
        Outcome::Failed
    } else {
        Outcome::Passed
    }
}
