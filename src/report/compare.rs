//! `amiprobe report compare BASE NEW`: what changed since a baseline run (last night's results), cell
//! by cell: status changes, time regressions (to ready and per boot phase) and warning or error lines
//! new on the console.
//!
//! Cells are matched by a key that stays the same across nights ([`key`]), durations compared with a
//! ratio and an absolute floor so that noise is not a regression ([`diff`]), and console lines
//! compared once timestamps, addresses, ids and counters are normalised away ([`normalise`]).
//! [`Comparison`] is the typed result: the Markdown section and `--json` are both rendered from it.

pub mod diff;
pub mod key;
pub mod normalise;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::results::{CellStatus, PhaseName, RunResults};

/// What makes a duration a regression: longer than `base * (1 + ratio)` and by more than `floor_s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Thresholds {
    /// The relative growth ignored as noise (0.25: a quarter longer).
    pub ratio: f64,
    /// The absolute growth ignored as noise, in seconds.
    pub floor_s: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { ratio: 0.25, floor_s: 2.0 }
    }
}

impl Thresholds {
    /// `new` is slower than `base` beyond both the ratio and the floor.
    pub fn regressed(&self, base: f64, new: f64) -> bool {
        new > base * (1.0 + self.ratio) && new - base > self.floor_s
    }
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Comparison {
    /// The baseline run's id.
    pub base_run: String,
    /// The run compared with it.
    pub new_run: String,
    pub thresholds: Thresholds,
    /// How many cells were matched by key.
    pub matched: usize,
    /// The matched cells in which something changed, in the new run's order.
    pub cells: Vec<CellComparison>,
    /// Keys of the baseline's cells the new run does not have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_in_base: Vec<String>,
    /// Keys of the new run's cells the baseline does not have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_in_new: Vec<String>,
}

/// What changed in one matched cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CellComparison {
    /// The key the cells were matched by ([`key::cell_key`]).
    pub key: String,
    pub base_id: String,
    pub new_id: String,
    /// Absent when the status is the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slower: Vec<TimeRegression>,
    /// Warning or error lines of the new console whose normalised form the baseline's console lacks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_console_lines: Vec<ConsoleLine>,
    /// Why the consoles were not compared (a log missing or unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_note: Option<String>,
}

impl CellComparison {
    /// Something in it is worse than in the baseline (what `--fail-on-regression` fails on).
    pub fn regressed(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.change == Change::NewlyFailing)
            || !self.slower.is_empty()
            || !self.new_console_lines.is_empty()
    }

    fn changed(&self) -> bool {
        self.status.is_some() || !self.slower.is_empty() || !self.new_console_lines.is_empty()
    }
}

/// A cell whose status is not the baseline's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusChange {
    pub change: Change,
    pub base: CellStatus,
    pub new: CellStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Passed in the baseline; failed, errored or timed out now.
    NewlyFailing,
    /// Did not pass in the baseline; passes now.
    Fixed,
    /// Any other change (failed to error, not run, interrupted).
    Other,
}

/// A duration longer than the baseline's beyond the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TimeRegression {
    pub measure: Measure,
    pub base_s: f64,
    pub new_s: f64,
}

/// What was timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Measure {
    /// `timings.ready_s`: from the launch to all probes passing.
    Ready,
    /// One phase of `boot_phases`.
    Phase { name: PhaseName },
}

impl Measure {
    pub fn label(self) -> &'static str {
        match self {
            Measure::Ready => "to ready",
            Measure::Phase { name } => name.label(),
        }
    }
}

/// A console line new tonight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConsoleLine {
    /// 1-based, in the new cell's console log.
    pub line: usize,
    pub text: String,
    /// What it was compared by.
    pub normalised: String,
}

impl Comparison {
    /// Any matched cell regressed.
    pub fn regressed(&self) -> bool {
        self.cells.iter().any(CellComparison::regressed)
    }

    /// The Markdown section "Since last night".
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "## Since last night\n\nRun `{}` against `{}`: {} cells matched, {} changed \
             (slower means over {}% and over {} s longer).\n",
            self.new_run,
            self.base_run,
            self.matched,
            self.cells.len(),
            self.thresholds.ratio * 100.0,
            self.thresholds.floor_s,
        );
        if self.cells.is_empty() {
            out.push_str("\nNothing changed.\n");
        }
        for cell in &self.cells {
            out.push_str(&cell.markdown());
        }
        for (what, keys) in [("Only in the baseline", &self.only_in_base), ("New cells", &self.only_in_new)] {
            if !keys.is_empty() {
                let list: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                out.push_str(&format!("\n{what}: {}\n", list.join(", ")));
            }
        }
        out
    }
}

impl CellComparison {
    fn markdown(&self) -> String {
        let mut out = format!("\n### `{}` (`{}`)\n\n", self.new_id, self.key);
        if let Some(s) = &self.status {
            let what = match s.change {
                Change::NewlyFailing => "newly failing",
                Change::Fixed => "fixed",
                Change::Other => "status changed",
            };
            out.push_str(&format!("- **{what}**: {} -> {}\n", status_word(s.base), status_word(s.new)));
        }
        for t in &self.slower {
            out.push_str(&format!(
                "- slower {}: {:.1} s -> {:.1} s (+{:.1} s)\n",
                t.measure.label(),
                t.base_s,
                t.new_s,
                t.new_s - t.base_s
            ));
        }
        for l in &self.new_console_lines {
            out.push_str(&format!("- new console line {}: `{}`\n", l.line, l.text.replace('`', "'")));
        }
        if let Some(note) = &self.console_note {
            out.push_str(&format!("- console not compared: {note}\n"));
        }
        out
    }
}

fn status_word(s: CellStatus) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Compares the runs loaded from `base_dir` and `new_dir` (console logs are read relative to them).
pub fn compare(
    base: &RunResults,
    base_dir: &Path,
    new: &RunResults,
    new_dir: &Path,
    thresholds: Thresholds,
    ignored: &normalise::Ignored,
) -> Comparison {
    let base_keys = key::keyed(&base.cells);
    let new_keys = key::keyed(&new.cells);
    let mut cells = Vec::new();
    let mut matched = 0;
    for (k, new_cell) in &new_keys {
        let Some((_, base_cell)) = base_keys.iter().find(|(bk, _)| bk == k) else { continue };
        matched += 1;
        let c = diff::cell(k, (base_cell, base_dir), (new_cell, new_dir), thresholds, ignored);
        if c.changed() {
            cells.push(c);
        }
    }
    let missing = |from: &[(String, &crate::results::CellResult)], other: &[(String, &crate::results::CellResult)]| {
        from.iter().filter(|(k, _)| !other.iter().any(|(o, _)| o == k)).map(|(k, _)| k.clone()).collect()
    };
    Comparison {
        base_run: base.run_id.clone(),
        new_run: new.run_id.clone(),
        thresholds,
        matched,
        cells,
        only_in_base: missing(&base_keys, &new_keys),
        only_in_new: missing(&new_keys, &base_keys),
    }
}
