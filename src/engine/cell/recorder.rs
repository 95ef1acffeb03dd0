//! The result a cell is building, with the clock it is measured by: every timeline event and error
//! goes into the result and out to the dispatcher at once.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

use super::CellContext;
use crate::console::ConsoleFinding;
use crate::engine::event::{Event, Phase};
use crate::provider::CleanupStep;
use crate::results::{CellResult, EventKind, TimelineEvent};

pub struct Recorder {
    pub ctx: CellContext,
    pub t0: Instant,
    pub result: CellResult,
    /// Set when the console stayed empty and the provider knows what came last before it (the
    /// firmware's words): the cause when the cell then fails.
    pub silent_console: Option<String>,
    /// When the console was last read while the machine ran: a read a moment ago is as good as a
    /// final one (on EC2 each read is an API call).
    pub console_read_at: Option<Instant>,
    /// The console's length when its host keys were last read: read again only when it grew.
    pub host_keys_read_len: usize,
    /// The probes (by index) whose last attempt settled them: trying again could not help (a host
    /// key that doesn't match), so they did not wait for their deadline.
    pub settled: BTreeSet<usize>,
    /// What the console showed and how the cleanup went, as found: the verdict's evidence
    /// (`result` holds the same in results.json's words).
    pub findings: Vec<ConsoleFinding>,
    pub cleanup: Vec<CleanupStep>,
}

impl Recorder {
    pub fn new(ctx: CellContext, result: CellResult) -> Recorder {
        Recorder {
            ctx,
            t0: Instant::now(),
            result,
            silent_console: None,
            console_read_at: None,
            host_keys_read_len: 0,
            settled: BTreeSet::new(),
            findings: Vec::new(),
            cleanup: Vec::new(),
        }
    }

    pub fn now_s(&self) -> f64 {
        round_ms(self.t0.elapsed())
    }

    pub fn phase(&self, phase: Phase) {
        let _ = self.ctx.events.send(Event::Phase { cell: self.result.id.clone(), phase });
    }

    pub fn event(&mut self, kind: EventKind, message: impl Into<String>) {
        self.event_at(self.now_s(), kind, message);
    }

    /// An event that happened earlier than now (a probe attempt's start).
    pub fn event_at(&mut self, at_s: f64, kind: EventKind, message: impl Into<String>) {
        let event = TimelineEvent { at_s, kind, message: message.into() };
        let _ = self.ctx.events.send(Event::Timeline { cell: self.result.id.clone(), event: event.clone() });
        self.result.events.push(event);
    }

    pub fn error(&mut self, error: impl Display) {
        let message = error.to_string();
        self.event(EventKind::Error, message.clone());
        self.result.errors.push(message);
    }
}

pub fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
