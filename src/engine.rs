//! The engine: runs a plan's cells in parallel on a provider and gathers their results.
//!
//! Like nextest's runner, a dispatcher owns all state and `select!`s over three sources: events from
//! cell tasks, finished cells, and signals. Everything it has to say goes out as one stream of
//! [`Event`]s to one [`Reporter`] (in a run, `report::reporter::Reporters`, which hands each event to
//! the terminal and to every report file in turn); the engine prints nothing and writes no report
//! (only each cell's own files: screenshots, console logs).
//! Ctrl-C (or SIGTERM, SIGHUP) escalates: the first stops capturing and cleans up in order, the second
//! cleans up without waiting for confirmations, the third exits at once. Every run, interrupted or
//! not, ends by removing what the ledger still holds and sweeping what carries the run's id; whatever
//! is not confirmed gone is named in `not_removed`. The events after which the results are worth
//! keeping (run started, cell finished, run finished or aborted) carry them, so the results' journal
//! has every finished cell as soon as it ends and even a killed run leaves its partial results.

mod cell;
mod event;
mod signals;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use cell::CellContext;
pub use event::{Event, Phase};
pub use signals::Signals;

use crate::plan::Plan;
use crate::provider::{CleanupStep, Ledger, Provider};
use crate::results::{CellResult, CellStatus, NotRemoved, RunResults, RunStatus, SpecInfo, SCHEMA_VERSION};

/// Receives the engine's events: the terminal display, each report file, and the fan-out over them.
pub trait Reporter: Send {
    fn event(&mut self, event: &Event);
}

pub struct RunOptions {
    pub run_id: String,
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
}

/// Runs every cell of the plan and returns the results (also sent to `reporter` as they grow).
pub async fn run(
    plan: Plan,
    provider: Arc<dyn Provider>,
    options: RunOptions,
    signals: &mut Signals,
    reporter: &mut dyn Reporter,
) -> RunResults {
    let started = Instant::now();
    let plan = Arc::new(plan);
    let mut results = RunResults {
        schema_version: SCHEMA_VERSION,
        amiprobe_version: env!("CARGO_PKG_VERSION").to_string(),
        run_id: options.run_id.clone(),
        spec: SpecInfo {
            name: plan.name.clone(),
            description: plan.description.clone(),
            file: plan.spec_file.display().to_string(),
            provider: plan.provider.name().to_string(),
        },
        shard: options.shard.clone(),
        status: RunStatus::Running,
        started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        finished_at: None,
        duration_s: 0.0,
        counts: Default::default(),
        warnings: Vec::new(),
        leftover_cleanup: Vec::new(),
        not_removed: Vec::new(),
        merged_from: Vec::new(),
        cells: plan.cells.iter().map(cell::not_run).collect(),
    };
    reporter.event(&Event::RunStarted {
        out_dir: options.out_dir.display().to_string(),
        results: snapshot(&mut results, started),
    });

    let (events_tx, mut events_rx) = mpsc::unbounded_channel();

    let ledger = Ledger::default();
    let cancel = CancellationToken::new();
    let hurry = CancellationToken::new();
    let ctx = CellContext {
        plan: plan.clone(),
        provider: provider.clone(),
        run_id: options.run_id.clone(),
        out_dir: options.out_dir.clone(),
        ledger: ledger.clone(),
        events: events_tx.clone(),
        cancel: cancel.clone(),
        hurry: hurry.clone(),
        allow_targets: options.allow_targets.clone(),
        probe_host: options.probe_host.clone(),
        probe_from: options.probe_from.clone(),
        keep_failed: options.keep_failed,
    };

    let mut interrupts = 0u32;
    let mut plan_cells: Vec<crate::cell::Cell> = plan.cells.clone();
    let preflight = tokio::select! {
        r = provider.preflight(&plan.cells) => Some(r),
        name = signals.recv() => {
            interrupt(name, &mut interrupts, &cancel, &hurry, reporter, &mut results, started, &ledger);
            None
        }
    };
    match preflight {
        // Interrupted before anything was created: every cell is "not run".
        None => {}
        Some(Ok(checked)) => {
            for w in checked.warnings {
                reporter.event(&Event::Warning(w.clone()));
                results.warnings.push(w);
            }
            if !checked.impossible.is_empty() {
                for (id, why) in &checked.impossible {
                    let message = format!("impossible: {why}");
                    reporter.event(&Event::Warning(format!("cell {id}: {message}")));
                    if let Some(cell) = results.cells.iter_mut().find(|c| c.id == *id) {
                        cell.reason = Some(message);
                    }
                }
                if !options.skip_impossible {
                    for cell in results.cells.iter_mut().filter(|c| c.reason.is_none()) {
                        cell.reason =
                            Some("not run: other cells are impossible (--skip-impossible runs the rest)".into());
                    }
                    results.status = RunStatus::Refused;
                    results.finished_at = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
                    reporter.event(&Event::RunFinished(snapshot(&mut results, started)));
                    return results;
                }
                let refused: Vec<&String> = checked.impossible.iter().map(|(id, _)| id).collect();
                plan_cells.retain(|c| !refused.contains(&&c.id.0));
            }
        }
        Some(Err(e)) => {
            let message = format!("provider check failed: {e}");
            reporter.event(&Event::Warning(message.clone()));
            for cell in &mut results.cells {
                cell.status = CellStatus::Error;
                cell.reason = Some(message.clone());
                cell.errors.push(message.clone());
            }
            results.status = RunStatus::Failed;
            results.finished_at = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
            reporter.event(&Event::RunFinished(snapshot(&mut results, started)));
            return results;
        }
    }

    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut task_cells = HashMap::new();
    for cell in plan_cells {
        let index = results.cells.iter().position(|c| c.id == cell.id.0).unwrap_or(cell.index);
        let ctx = ctx.clone();
        let cell = cell.clone();
        let slots = slots.clone();
        let handle = tasks.spawn(async move {
            let permit = tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => None,
                p = slots.acquire_owned() => p.ok(),
            };
            match permit {
                // Boxed: a cell's whole future is allocated only once it may run, so a thousand cells
                // waiting for a slot cost a thousand small tasks, not a thousand running cells.
                Some(_permit) => Box::pin(cell::run_with_retries(ctx, cell)).await,
                None => cell::not_run(&cell),
            }
        });
        task_cells.insert(handle.id(), index);
    }
    drop(events_tx);
    drop(ctx);

    loop {
        tokio::select! {
            Some(event) = events_rx.recv() => {
                // A cell that has begun is `running` in a results.json read (or written) mid-run.
                if let Event::Phase { cell, .. } = &event {
                    if let Some(c) = results.cells.iter_mut().find(|c| c.id == *cell && c.status == CellStatus::NotRun) {
                        c.status = CellStatus::Running;
                    }
                }
                reporter.event(&event);
            }
            joined = tasks.join_next_with_id() => {
                let Some(joined) = joined else { break };
                let (index, result) = match joined {
                    Ok((id, result)) => (task_cells[&id], result),
                    Err(e) => {
                        let index = task_cells[&e.id()];
                        (index, crashed(&results.cells[index], &e))
                    }
                };
                // Events sent before the cell finished are shown first.
                while let Ok(event) = events_rx.try_recv() {
                    reporter.event(&event);
                }
                results.cells[index] = result.clone();
                reporter.event(&Event::CellFinished {
                    cell: Box::new(result),
                    duration_s: round_tenth(started.elapsed()),
                    warnings: results.warnings.clone(),
                });
            }
            name = signals.recv() => {
                interrupt(name, &mut interrupts, &cancel, &hurry, reporter, &mut results, started, &ledger);
            }
        }
    }
    while let Ok(event) = events_rx.try_recv() {
        reporter.event(&event);
    }

    // Signals still count while the last removals run: a third one exits at once.
    let removals = remove_what_is_left(provider.as_ref(), &options.run_id, &ledger);
    tokio::pin!(removals);
    results.leftover_cleanup = loop {
        tokio::select! {
            steps = &mut removals => break steps.into_iter().map(Into::into).collect(),
            name = signals.recv() => {
                interrupt(name, &mut interrupts, &cancel, &hurry, reporter, &mut results, started, &ledger);
            }
        }
    };
    results.not_removed = not_removed(&ledger, &results);
    for gone in &results.not_removed {
        reporter.event(&Event::NotRemoved(gone.clone()));
    }
    // The safety net itself failed: say so, it is what stands between a lost track and a leak.
    for step in results.leftover_cleanup.iter().filter(|s| !s.ok && s.sweep) {
        let warning = format!(
            "the run's final sweep failed ({}): check with `amiprobe sweep --run-id {} --dry-run`",
            step.message, results.run_id
        );
        reporter.event(&Event::Warning(warning.clone()));
        results.warnings.push(warning);
    }

    results.status = if cancel.is_cancelled() {
        RunStatus::Interrupted
    } else if results.not_removed.is_empty() && results.cells.iter().all(|c| c.status.is_pass()) {
        RunStatus::Passed
    } else {
        RunStatus::Failed
    };
    results.finished_at = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    reporter.event(&Event::RunFinished(snapshot(&mut results, started)));
    results
}

/// The results as they stand, counted and timed, for an event that carries them.
fn snapshot(results: &mut RunResults, started: Instant) -> Box<RunResults> {
    results.recount();
    results.duration_s = round_tenth(started.elapsed());
    Box::new(results.clone())
}

fn round_tenth(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// The end of every run: what the ledger still holds (cells that could not remove their own), then
/// a sweep of everything that carries the run's id (what a cell lost track of).
async fn remove_what_is_left(provider: &dyn Provider, run_id: &str, ledger: &Ledger) -> Vec<CleanupStep> {
    let leftovers = ledger.remaining();
    let mut steps = if leftovers.is_empty() { Vec::new() } else { provider.remove_leftovers(leftovers, ledger).await };
    steps.extend(provider.sweep_run(run_id, ledger).await);
    steps
}

/// Everything still in the ledger, with the last error met removing it.
fn not_removed(ledger: &Ledger, results: &RunResults) -> Vec<NotRemoved> {
    let steps: Vec<&crate::results::CleanupStep> =
        results.cells.iter().flat_map(|c| c.cleanup.iter()).chain(results.leftover_cleanup.iter()).collect();
    ledger
        .remaining()
        .into_iter()
        .map(|resource| {
            let key = resource.key();
            let error = steps
                .iter()
                .rev()
                .find(|s| !s.ok && s.resource.as_deref() == Some(key.as_str()))
                .map_or_else(|| "not confirmed removed".to_string(), |s| s.message.clone());
            NotRemoved { resource: resource.to_string(), cell: resource.cell().to_string(), error }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn interrupt(
    signal: &str,
    count: &mut u32,
    cancel: &CancellationToken,
    hurry: &CancellationToken,
    reporter: &mut dyn Reporter,
    results: &mut RunResults,
    started: Instant,
    ledger: &Ledger,
) {
    *count += 1;
    let message = match *count {
        1 => {
            cancel.cancel();
            format!("{signal}: stopping cells, collecting console logs and cleaning up (Ctrl-C again to skip waiting)")
        }
        2 => {
            hurry.cancel();
            format!("{signal} again: cleaning up without waiting for confirmation (Ctrl-C again to exit at once)")
        }
        _ => format!(
            "{signal} a third time: exiting now; run `amiprobe sweep --run-id {}` to remove what may be left",
            results.run_id
        ),
    };
    reporter.event(&Event::Interrupt { count: *count, message });
    if *count >= 3 {
        results.status = RunStatus::Interrupted;
        for cell in results.cells.iter_mut().filter(|c| c.status == CellStatus::Running) {
            cell.status = CellStatus::Interrupted;
            cell.reason = Some("interrupted: amiprobe exited at once (third signal)".into());
        }
        results.not_removed = not_removed(ledger, results);
        results.finished_at = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
        // Through the reporters like every other ending: results.json records the abort.
        reporter.event(&Event::RunAborted(snapshot(results, started)));
        // QEMU processes die with us (PR_SET_PDEATHSIG); cloud resources carry the run's tags.
        std::process::exit(crate::exit::Outcome::Interrupted.code());
    }
}

/// The result of a cell whose task panicked: what was known before, marked as an error.
fn crashed(before: &CellResult, error: &tokio::task::JoinError) -> CellResult {
    let mut result = before.clone();
    let why = if error.is_panic() { "cell task panicked" } else { "cell task was cancelled" };
    result.status = CellStatus::Error;
    result.reason = Some(why.to_string());
    result.errors.push(why.to_string());
    result
}
