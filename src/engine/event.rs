//! What the engine tells its reporters while it runs: one stream, fanned out by the dispatcher to
//! every reporter in the same order (the terminal, `results.json`, HTML, JUnit). A reporter needs
//! nothing but these events: those after which the run's results are worth keeping carry them.

use crate::results::{CellResult, NotRemoved, RunResults, TimelineEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Launching,
    Booting,
    Probing,
    Capturing,
    CollectingConsole,
    CleaningUp,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Launching => "launching",
            Phase::Booting => "waiting for running",
            Phase::Probing => "probing",
            Phase::Capturing => "capturing",
            Phase::CollectingConsole => "collecting console",
            Phase::CleaningUp => "cleaning up",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    /// The first event of every run. `results` has every cell not run yet: the results' journal
    /// exists from the first moment, so a run killed during its (possibly slow) provider check leaves one.
    RunStarted {
        out_dir: String,
        results: Box<RunResults>,
    },
    Warning(String),
    Phase {
        cell: String,
        phase: Phase,
    },
    Timeline {
        cell: String,
        event: TimelineEvent,
    },
    Screenshot {
        cell: String,
        count: usize,
    },
    /// A cell ended. Not the whole run: copying it into every event would cost the square of the
    /// cells; a reporter that needs the run keeps it from `RunStarted` and these events (the
    /// results' journal appends the cell, so a killed run leaves its partial results).
    CellFinished {
        cell: Box<CellResult>,
        /// Seconds since the run started.
        duration_s: f64,
        /// The run's warnings so far.
        warnings: Vec<String>,
    },
    /// The run ends with a resource it created and could not confirm removed.
    NotRemoved(NotRemoved),
    /// A signal arrived; `message` says what happens now.
    Interrupt {
        count: u32,
        message: String,
    },
    /// The run is over, removals done: the final results, for the summary and the report files.
    /// Sent exactly once, unless the run is aborted.
    RunFinished(Box<RunResults>),
    /// The third signal: the process exits right after this event, without waiting for anything.
    /// Only what must survive (results.json) is written; nothing slow (no HTML) is started.
    RunAborted(Box<RunResults>),
}
