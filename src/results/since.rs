//! What changed since a baseline run (last night's), as results.json keeps it (`since_last_night`)
//! and `report compare --json` prints it: per matched cell, the status change, the durations that
//! regressed, the warning lines new on the console, a last screen that moved and probe answers whose
//! status or shape changed. How it is computed is `report::compare`'s; what counts as a regression
//! (what `--fail-on-regression` fails on) is said here, next to the data it reads.

use serde::{Deserialize, Serialize};

use super::{CellStatus, PhaseName};

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

/// The spec's `baseline:` as a run keeps it: `run --baseline` and `report compare` use it where the
/// command line says nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BaselineRules {
    /// The axes cells are matched by across nights; absent: every axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_s: Option<f64>,
    /// Regular expressions of console lines that are never new.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_lines: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_on_regression: bool,
}

impl BaselineRules {
    /// The rules of `results`' spec, if it had any.
    pub fn key_of(results: &super::RunResults) -> Option<&[String]> {
        results.baseline.as_ref().and_then(|b| b.key.as_deref())
    }
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Comparison {
    /// The baseline run's id.
    pub base_run: String,
    /// When the baseline run started.
    #[serde(default)]
    pub base_started_at: String,
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

impl Comparison {
    /// Any matched cell regressed.
    pub fn regressed(&self) -> bool {
        self.cells.iter().any(CellComparison::regressed)
    }

    /// What changed in the cell `id` of the new run, if anything did.
    pub fn cell(&self, id: &str) -> Option<&CellComparison> {
        self.cells.iter().find(|c| c.new_id == id)
    }
}

/// What changed in one matched cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CellComparison {
    /// The key the cells were matched by (`report::compare::key`).
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
    /// The last screenshot looks different from the baseline's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_screen: Option<ScreenChange>,
    /// Probes whose answer changed status or shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<AnswerChange>,
}

impl CellComparison {
    /// Something in it is worse than in the baseline (what `--fail-on-regression` fails on): newly
    /// failing or flaky, slower, a new warning line, or a probe's answer with another status or
    /// without something it had. A moved last screen and answers that only gained fields are shown,
    /// not counted: they change between good builds too.
    pub fn regressed(&self) -> bool {
        self.status.as_ref().is_some_and(|s| matches!(s.change, Change::NewlyFailing | Change::NewlyFlaky))
            || !self.slower.is_empty()
            || !self.new_console_lines.is_empty()
            || self.answers.iter().any(|a| a.regressed)
    }

    /// Anything differs from the baseline.
    pub fn changed(&self) -> bool {
        self.status.is_some()
            || !self.slower.is_empty()
            || !self.new_console_lines.is_empty()
            || self.last_screen.is_some()
            || !self.answers.is_empty()
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
    /// Passed at once in the baseline; passed now only after failing first (`flaky`).
    NewlyFlaky,
    /// Did not pass in the baseline (or passed only after failing); passes at once now.
    Fixed,
    /// Any other change (failed to error, not run, interrupted).
    Other,
}

impl Change {
    pub fn label(self) -> &'static str {
        match self {
            Change::NewlyFailing => "newly failing",
            Change::NewlyFlaky => "newly flaky",
            Change::Fixed => "fixed",
            Change::Other => "status changed",
        }
    }
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

/// The last screenshot moved: both frames, to be shown side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScreenChange {
    /// How many of the 256 bits of the frames' perceptual hashes differ.
    pub distance: u32,
    /// The baseline's last frame, copied next to the new results (relative to them); absent when it
    /// was not copied (`report compare` without `--write` copies nothing) or could not be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_frame: Option<String>,
    /// The new run's last frame, relative to its results.
    pub new_frame: String,
}

/// A probe whose answer is not shaped like the baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AnswerChange {
    /// The probe's name.
    pub probe: String,
    pub change: AnswerDiff,
    /// Worse than the baseline's: the probe passed last night and fails now, or the answer lost a
    /// field (or its kind of body). Another status of a probe that still passes, or one that failed
    /// and passes now, is shown, not counted.
    pub regressed: bool,
}

/// How an answer changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AnswerDiff {
    /// The HTTP status, or a command's exit status (absent: no answer, or ended by a signal).
    Status { base: Option<u32>, new: Option<u32> },
    /// The body's (or a command's output's) shape: each JSON path with its type (`$.items[]: object`),
    /// or `$: text` for what is not JSON. A type that changed is lost and gained.
    Shape {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lost: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gained: Vec<String>,
    },
}
