//! `amiprobe report compare BASE NEW`: the comparison of two results directories, printed as the
//! Markdown section "Since last night" or as JSON. Exits 0; 1 with `--fail-on-regression` when a cell
//! regressed; 2 when either directory cannot be read or the thresholds make no sense.

use std::path::Path;

use crate::exit::Outcome;
use crate::report::compare::{self, Thresholds};
use crate::report::json;

pub fn compare(base: &Path, new: &Path, thresholds: Thresholds, as_json: bool, fail_on_regression: bool) -> Outcome {
    if !(thresholds.ratio.is_finite() && thresholds.ratio >= 0.0) {
        eprintln!("error: --ratio must be a number of 0 or more, not {}", thresholds.ratio);
        return Outcome::UsageError;
    }
    let loaded = json::load(base).and_then(|b| json::load(new).map(|n| (b, n)));
    let (base_results, new_results) = match loaded {
        Ok(both) => both,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::UsageError;
        }
    };
    let comparison = compare::compare(&base_results, base, &new_results, new, thresholds);
    if as_json {
        match serde_json::to_string_pretty(&comparison) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: failed to encode the comparison: {e}");
                return Outcome::Failed;
            }
        }
    } else {
        print!("{}", comparison.markdown());
    }
    if fail_on_regression && comparison.regressed() {
        Outcome::Failed
    } else {
        Outcome::Passed
    }
}
