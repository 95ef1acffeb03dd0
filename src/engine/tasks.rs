//! The cells' tasks, seen from the dispatcher: one task per cell, at most `concurrency` running at
//! once, and the stream of what they say and when they end, merged with the signals into
//! [`RunEvent`]s.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Semaphore;
use tokio::task::{self, JoinSet};

use super::cell::{self, CellContext};
use super::dispatcher::RunEvent;
use super::event::Event;
use super::signals::Signals;
use crate::cell::Cell;
use crate::results::CellResult;

pub struct CellTasks {
    tasks: JoinSet<CellResult>,
    /// Each task's cell, by its place in the results.
    places: HashMap<task::Id, usize>,
    events: UnboundedReceiver<Event>,
}

impl CellTasks {
    /// Starts a task for each cell (with its place in the results); each waits for one of
    /// `concurrency` slots, or ends "not run" if the run is interrupted first. `events` receives
    /// what `ctx`'s sender is sent, and closes once every task has ended.
    pub fn spawn(
        cells: Vec<(usize, Cell)>,
        ctx: CellContext,
        concurrency: usize,
        events: UnboundedReceiver<Event>,
    ) -> CellTasks {
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut places = HashMap::new();
        for (index, cell) in cells {
            let (ctx, slots) = (ctx.clone(), slots.clone());
            let handle = tasks.spawn(async move {
                let permit = tokio::select! {
                    biased;
                    _ = ctx.cancel.cancelled() => None,
                    p = slots.acquire_owned() => p.ok(),
                };
                match permit {
                    // Boxed: a cell's whole future is allocated only once it may run, so a thousand
                    // cells waiting for a slot cost a thousand small tasks, not a thousand running cells.
                    Some(_permit) => Box::pin(cell::run_with_retries(ctx, cell)).await,
                    None => cell::not_run(&cell),
                }
            });
            places.insert(handle.id(), index);
        }
        CellTasks { tasks, places, events }
    }

    /// The next thing that happens: a cell's event, a cell ending, or a signal; `None` once every
    /// cell has ended.
    pub async fn next(&mut self, signals: &mut Signals) -> Option<RunEvent> {
        let joined = tokio::select! {
            Some(event) = self.events.recv() => return Some(RunEvent::Cell(event)),
            name = signals.recv() => return Some(RunEvent::Signal(name)),
            joined = self.tasks.join_next_with_id() => joined?,
        };
        let (index, ended) = match joined {
            Ok((id, result)) => (self.places[&id], Ok(Box::new(result))),
            Err(e) => (self.places[&e.id()], Err(e)),
        };
        // Events sent before the cell finished are shown first.
        Some(RunEvent::CellEnded { index, ended, earlier: self.drain() })
    }

    /// The events sent and not received yet.
    pub fn drain(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }
}
