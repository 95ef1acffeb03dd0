//! What the engine tells its reporters while it runs: one stream, fanned out by the dispatcher.

use crate::results::{CellResult, NotRemoved, TimelineEvent};

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
    RunStarted {
        run_id: String,
        cells: usize,
        out_dir: String,
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
    CellFinished(Box<CellResult>),
    /// The run ends with a resource it created and could not confirm removed.
    NotRemoved(NotRemoved),
    /// A signal arrived; `message` says what happens now.
    Interrupt {
        count: u32,
        message: String,
    },
}
