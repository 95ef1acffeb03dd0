//! `amiprobe report compare BASE NEW`: what changed since a baseline run (last night's results), cell
//! by cell: status changes, time regressions (to ready and per boot phase) and warning or error lines
//! new on the console.
//!
//! Cells are matched by a key that stays the same across nights ([`key`]), durations compared with a
//! ratio and an absolute floor so that noise is not a regression ([`diff`]), and console lines
//! compared once timestamps, addresses, ids and counters are normalised away ([`normalise`]).
//! [`Comparison`] is the typed result (`crate::results::since`): results.json keeps it, and the
//! Markdown section ([`markdown`]), `--json`, the HTML report and JUnit are rendered from it.

pub mod answers;
pub mod diff;
pub mod key;
pub mod markdown;
pub mod normalise;
pub mod screen;

use std::path::Path;

pub use crate::results::since::{CellComparison, Comparison, Thresholds};
use crate::results::{CellResult, RunResults};
pub use diff::Rules;
pub use markdown::markdown;
pub use screen::Frames;

/// Compares the runs loaded from `base_dir` and `new_dir` (console logs are read relative to them).
pub fn compare(
    base: &RunResults,
    base_dir: &Path,
    new: &RunResults,
    new_dir: &Path,
    rules: &diff::Rules,
) -> Comparison {
    // Tonight's spec says what the key is: last night's cells are keyed the same way.
    let axes = new.baseline_key.as_deref();
    let base_keys = key::keyed_by(&base.cells, axes);
    let new_keys = key::keyed_by(&new.cells, axes);
    let mut cells = Vec::new();
    let mut matched = 0;
    for (k, new_cell) in &new_keys {
        let Some((_, base_cell)) = base_keys.iter().find(|(bk, _)| bk == k) else { continue };
        matched += 1;
        let c = diff::cell(k, (base_cell, base_dir), (new_cell, new_dir), rules);
        if c.changed() {
            cells.push(c);
        }
    }
    let missing = |from: &[(String, &CellResult)], other: &[(String, &CellResult)]| {
        from.iter().filter(|(k, _)| !other.iter().any(|(o, _)| o == k)).map(|(k, _)| k.clone()).collect()
    };
    Comparison {
        base_run: base.run_id.clone(),
        base_started_at: base.started_at.clone(),
        new_run: new.run_id.clone(),
        thresholds: rules.thresholds,
        matched,
        cells,
        only_in_base: missing(&base_keys, &new_keys),
        only_in_new: missing(&new_keys, &base_keys),
    }
}

/// The comparisons of shards of one run with one baseline, joined: `None` when a shard was
/// compared with another baseline (or none was given).
pub fn join(parts: Vec<Comparison>) -> Option<Comparison> {
    let mut parts = parts.into_iter();
    let mut joined = parts.next()?;
    for part in parts {
        if part.base_run != joined.base_run {
            return None;
        }
        joined.matched += part.matched;
        joined.cells.extend(part.cells);
        joined.only_in_new.extend(part.only_in_new);
        // Each shard lacks the other shards' cells: missing from the run is missing from every shard.
        joined.only_in_base.retain(|k| part.only_in_base.contains(k));
    }
    Some(joined)
}
