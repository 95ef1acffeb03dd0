//! The engine: runs a plan's cells in parallel on a provider and gathers their results.
//!
//! Like nextest's runner, one dispatcher (`dispatcher::Dispatcher`) owns the run's state (its
//! results, its ledger, the cancellation tokens, the count of signals) and handles one event at a
//! time: something a cell task said, a cell task ending, a signal. [`run`] only sets up, feeds it the
//! events of each stage (the provider's preflight, the cells, the last removals) and finishes. Each
//! cell runs as its own task (`cell`, its watching of the machine in `cell::driver`); the verdict on
//! a cell is one pure function (`verdict`). Everything the engine has to say goes out as one stream of [`Event`]s to one
//! [`Reporter`] (in a run, `report::reporter::Reporters`, which hands each event to the terminal and
//! to every report file in turn); the engine prints nothing and writes no report (only each cell's
//! own files: screenshots, console logs).
//! Ctrl-C (or SIGTERM, SIGHUP) escalates: the first stops capturing and cleans up in order, the second
//! cleans up without waiting for confirmations, the third gives the run up at once
//! ([`RunEnd::Abandoned`]: the caller exits without waiting for anything). Every run, interrupted or
//! not, ends by removing what the ledger still holds and sweeping what carries the run's id; whatever
//! is not confirmed gone is named in `not_removed`. The events after which the results are worth
//! keeping (run started, cell finished, run finished or aborted) carry them, so the results' journal
//! has every finished cell as soon as it ends and even a killed run leaves its partial results.

mod cell;
mod cleanup;
mod dispatcher;
mod event;
pub mod promotion;
mod signals;
mod tasks;
mod verdict;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

pub use cell::CellContext;
pub use event::{Event, Phase};
pub use signals::Signals;

use crate::plan::Plan;
use crate::provider::{Identity, Provider};
use crate::results::RunResults;
use dispatcher::{Dispatcher, Flow, RunEvent};
use tasks::CellTasks;

/// Receives the engine's events: the terminal display, each report file, and the fan-out over them.
pub trait Reporter: Send {
    fn event(&mut self, event: &Event);
}

pub struct RunOptions {
    pub run_id: String,
    /// Who the provider's credentials belong to, checked before the run (`Provider::identity`).
    pub identity: Option<Identity>,
    pub out_dir: PathBuf,
    pub concurrency: usize,
    pub shard: Option<String>,
    pub allow_targets: Option<Vec<ipnet::IpNet>>,
    pub probe_host: Option<String>,
    /// `--probe-from`: what a security group made for the run opens the probed ports to.
    pub probe_from: Vec<ipnet::IpNet>,
    /// Run what the preflight finds possible instead of refusing the whole run.
    pub skip_impossible: bool,
    /// `--keep-failed`: failed cells' machines stay this long for debugging.
    pub keep_failed: Option<std::time::Duration>,
    /// `--rerun-failed`: only some of the plan's cells run, so no image's verdict is whole and
    /// nothing is promoted.
    pub rerun: bool,
}

/// How a run ended, for the caller to turn into an exit code.
#[derive(Debug)]
pub enum RunEnd {
    /// The run is over and its removals are done: passed, failed, refused, or interrupted and
    /// cleaned up. The final results (also sent as `RunFinished`).
    Finished(RunResults),
    /// The third signal: the run was given up at once, its results already sent as `RunAborted`.
    /// Cell tasks and removals may still be running: the caller exits now without waiting for them
    /// (QEMU processes die with the process; cloud resources carry the run's tags for `sweep`).
    Abandoned(RunResults),
}

/// Runs every cell of the plan and says how the run ended (its results also sent to `reporter` as
/// they grow).
pub async fn run(
    plan: Plan,
    provider: Arc<dyn Provider>,
    options: RunOptions,
    signals: &mut Signals,
    reporter: &mut dyn Reporter,
) -> RunEnd {
    let plan = Arc::new(plan);
    let mut dispatcher = Dispatcher::start(&plan, &options, reporter);
    let checked = tokio::select! {
        checked = provider.preflight(&plan.cells) => Some(checked),
        // Interrupted before anything was created: every cell ends "not run". The first signal
        // can't give the run up.
        name = signals.recv() => {
            dispatcher.handle_event(RunEvent::Signal(name));
            None
        }
    };
    let Some(cells) = dispatcher.preflight_done(checked, &plan, options.skip_impossible) else {
        return RunEnd::Finished(dispatcher.into_results());
    };

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let ctx = dispatcher.cell_context(&plan, &provider, &options, events_tx);
    let mut tasks = CellTasks::spawn(cells, ctx, options.concurrency, events_rx);
    while let Some(event) = tasks.next(signals).await {
        if dispatcher.handle_event(event) == Flow::Abandon {
            return RunEnd::Abandoned(dispatcher.into_results());
        }
    }
    dispatcher.pass_on(tasks.drain());

    // Signals still count while the last removals run: a third one gives the run up at once.
    let ledger = dispatcher.ledger().clone();
    let removals = cleanup::remove_what_is_left(provider.as_ref(), &options.run_id, &ledger);
    tokio::pin!(removals);
    let steps = loop {
        tokio::select! {
            steps = &mut removals => break steps,
            name = signals.recv() => {
                if dispatcher.handle_event(RunEvent::Signal(name)) == Flow::Abandon {
                    return RunEnd::Abandoned(dispatcher.into_results());
                }
            }
        }
    };
    if promote(&mut dispatcher, provider.as_ref(), &options, signals).await == Flow::Abandon {
        return RunEnd::Abandoned(dispatcher.into_results());
    }
    RunEnd::Finished(dispatcher.finish(steps))
}

/// The verdict acted on (`on_pass`), once the cells ended and the last removals are done; a signal
/// meanwhile lets the write in flight finish and starts no other (a third gives the run up).
async fn promote(
    dispatcher: &mut Dispatcher<'_>,
    provider: &dyn Provider,
    options: &RunOptions,
    signals: &mut Signals,
) -> Flow {
    let withheld = promotion::withheld(dispatcher.results(), dispatcher.cancel().is_cancelled(), options.rerun);
    let request = promotion::request(dispatcher.results(), withheld, dispatcher.cancel());
    let promoting = promotion::promote(provider, request, withheld);
    tokio::pin!(promoting);
    let promotions = loop {
        tokio::select! {
            promotions = &mut promoting => break promotions,
            name = signals.recv() => {
                if dispatcher.handle_event(RunEvent::Signal(name)) == Flow::Abandon {
                    return Flow::Abandon;
                }
            }
        }
    };
    dispatcher.promoted(promotions);
    Flow::Continue
}
