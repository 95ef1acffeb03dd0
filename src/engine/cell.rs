//! One cell, start to finish: launch, [`driver`] (wait until running, screenshots while probing),
//! console log, cleanup (which runs whatever happened before it), and the verdict. A cell that did
//! not pass runs again as a new try while it has retries left.

mod console_log;
mod driver;
mod error;
mod probes;
mod recorder;
mod screenshots;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

pub use error::CellError;

use super::event::{Event, Phase};
use super::verdict::{self, Ending, Found};
use crate::cell::Cell;
use crate::console::ConsoleWatch;
use crate::plan::Plan;
use crate::probe::Probe;
use crate::provider::{CleanupStep, ErrorKind, LaunchContext, Ledger, Machine, Provider, ProviderError};
use crate::results::{CellParams, CellResult, CellStatus, EarlierTry, EventKind, TimelineEvent, Timings};
use recorder::{round_ms, Recorder};

/// Everything a cell task needs; cheap to clone per cell.
#[derive(Clone)]
pub struct CellContext {
    pub plan: Arc<Plan>,
    pub provider: Arc<dyn Provider>,
    pub run_id: String,
    pub out_dir: PathBuf,
    pub ledger: Ledger,
    pub events: UnboundedSender<Event>,
    /// First Ctrl-C: stop capturing and probing, collect what there is, clean up.
    pub cancel: CancellationToken,
    /// Second Ctrl-C: clean up without waiting for confirmations.
    pub hurry: CancellationToken,
    /// `--allow-targets`; None means each machine's own addresses.
    pub allow_targets: Option<Vec<ipnet::IpNet>>,
    /// `--probe-host`: probes connect here, to the guest's own port numbers.
    pub probe_host: Option<String>,
    /// `--probe-from`: where the probes come from, for a security group made for the run.
    pub probe_from: Vec<ipnet::IpNet>,
    /// `--keep-failed`: a failed cell's machine stays this long for debugging instead of going.
    pub keep_failed: Option<Duration>,
}

/// A cell that never started (interrupted while waiting for its turn).
pub fn not_run(cell: &Cell) -> CellResult {
    CellResult {
        id: cell.id.0.clone(),
        index: cell.index,
        params: CellParams::from(cell),
        status: CellStatus::NotRun,
        reason: None,
        started_at: None,
        timings: Timings::default(),
        machine: serde_json::Value::Null,
        events: Vec::new(),
        screenshots: Vec::new(),
        screenshots_note: None,
        console_log: None,
        console: Vec::new(),
        boot_phases: None,
        probes: Vec::new(),
        errors: Vec::new(),
        cleanup: Vec::new(),
        earlier_tries: Vec::new(),
        flaky: false,
    }
}

/// A cell run until it passes or its tries are spent (`retries`: that many more after the first).
/// Each try launches anew; the files of a try that did not pass move to `cells/ID.try-N` first. A
/// cell that passes after failing is flaky, and says so.
pub async fn run_with_retries(ctx: CellContext, cell: Cell) -> CellResult {
    let mut earlier: Vec<EarlierTry> = Vec::new();
    loop {
        let mut result = run_cell(ctx.clone(), cell.clone(), earlier.len() as u32).await;
        let failed = matches!(result.status, CellStatus::Failed | CellStatus::TimedOut | CellStatus::Error);
        if !failed || ctx.cancel.is_cancelled() || earlier.len() >= ctx.plan.retries as usize {
            result.flaky = result.status == CellStatus::Passed && !earlier.is_empty();
            result.earlier_tries = earlier;
            return result;
        }
        let kept = set_try_aside(&ctx.out_dir, &cell, earlier.len() + 1);
        let reason = result.reason.clone().unwrap_or_default();
        let message = format!("try {} did not pass ({reason}): trying again", earlier.len() + 1);
        let event = TimelineEvent { at_s: 0.0, kind: EventKind::Retry, message };
        let _ = ctx.events.send(Event::Timeline { cell: cell.id.0.clone(), event });
        earlier.push(EarlierTry {
            status: result.status,
            reason: result.reason,
            dir: kept,
            started_at: result.started_at,
        });
    }
}

/// Moves the files of a try that did not pass to `cells/ID.try-N`; returns where they are.
fn set_try_aside(out_dir: &Path, cell: &Cell, try_number: usize) -> String {
    let try_dir = format!("cells/{}.try-{try_number}", cell.id.0);
    let from = out_dir.join("cells").join(&cell.id.0);
    match std::fs::rename(&from, out_dir.join(&try_dir)) {
        Ok(()) => try_dir,
        // Its files are overwritten by the next try; its verdict is kept all the same.
        Err(_) => format!("cells/{}", cell.id.0),
    }
}

/// One try of a cell.
pub async fn run_cell(ctx: CellContext, cell: Cell, try_number: u32) -> CellResult {
    let mut result = not_run(&cell);
    result.status = CellStatus::Running;
    // To the millisecond: with `timings`, when each step of the cell happened, to compare with other clocks.
    result.started_at = Some(humantime::format_rfc3339_millis(SystemTime::now()).to_string());
    let mut rec = Recorder::new(ctx.clone(), result);
    let cell_dir = ctx.out_dir.join("cells").join(&cell.id.0);
    if let Err(source) = std::fs::create_dir_all(cell_dir.join("screenshots")) {
        rec.error(CellError::CreateDir { dir: cell_dir, source });
        rec.result.status = CellStatus::Error;
        rec.result.reason = rec.result.errors.first().cloned();
        return rec.result;
    }
    let Some(mut machine) = launch(&mut rec, &cell, try_number, &cell_dir).await else {
        rec.result.timings.ended_s = Some(rec.now_s());
        return rec.result;
    };

    let mut watch = ConsoleWatch::default();
    let ending = if ctx.cancel.is_cancelled() {
        Ending::Interrupted
    } else {
        driver::drive(&mut rec, machine.as_mut(), &cell_dir, &mut watch).await
    };

    // Console log: before terminating, while the provider can still read it (not when told to hurry).
    rec.phase(Phase::CollectingConsole);
    if (ctx.plan.console_log || !ctx.plan.console.is_empty()) && !ctx.hurry.is_cancelled() {
        console_log::collect(&mut rec, machine.as_mut(), &cell_dir, &watch, &ending).await;
    }

    rec.phase(Phase::CleaningUp);
    rec.cleanup = remove_or_keep(&mut rec, machine.as_mut(), &ending).await;
    rec.result.cleanup = rec.cleanup.iter().cloned().map(Into::into).collect();
    rec.result.timings.ended_s = Some(rec.now_s());
    let verdict = verdict::verdict(&found(&rec, &ending));
    rec.result.status = verdict.status;
    rec.result.reason = verdict.reason;
    rec.result
}

/// What the cell found, for its verdict.
fn found<'a>(rec: &'a Recorder, ending: &'a Ending) -> Found<'a> {
    Found {
        ending,
        console: &rec.findings,
        probes: &rec.result.probes,
        cleanup: &rec.cleanup,
        silent_console: rec.silent_console.as_deref(),
    }
}

/// Creates the cell's machine; `None` when there is none (the cell's result says why).
async fn launch(rec: &mut Recorder, cell: &Cell, try_number: u32, cell_dir: &Path) -> Option<Box<dyn Machine>> {
    let ctx = rec.ctx.clone();
    rec.phase(Phase::Launching);
    rec.event(EventKind::Launching, format!("launching {}", cell.image()));
    let launch_ctx = LaunchContext {
        run_id: ctx.run_id.clone(),
        try_number,
        cell_dir: cell_dir.to_path_buf(),
        probe_ports: ctx.plan.probes.iter().filter_map(Probe::port).collect(),
        agent: ctx.plan.probes.iter().any(Probe::through_agent),
        probe_from: ctx.probe_from.clone(),
        ledger: ctx.ledger.clone(),
        cancel: ctx.cancel.clone(),
    };
    // Not raced against Ctrl-C: a create call in flight is let finish, so that what it made is known
    // and removed (the provider starts no further call once cancelled). The run timeout still bounds
    // a hung call; what that abandons is in the ledger, and the run's final sweep finds it by tag.
    let launch = tokio::time::timeout(ctx.plan.run_timeout, ctx.provider.launch(cell, &launch_ctx));
    tokio::pin!(launch);
    let launched = tokio::select! {
        launched = &mut launch => launched,
        _ = ctx.cancel.cancelled() => {
            rec.event(EventKind::Interrupted, "interrupted: letting the call in flight finish, then removing what it made");
            launch.await
        }
    }
    .unwrap_or_else(|_| Err(ProviderError::new("launch timed out (timeouts.run)")));
    match launched {
        Err(e) if e.kind == ErrorKind::Interrupted => {
            rec.event(EventKind::Cleanup, e.message);
            rec.result.status = CellStatus::Interrupted;
            rec.result.reason = Some("interrupted during launch".into());
            None
        }
        Err(e) => {
            rec.error(CellError::Launch(e));
            rec.result.status = CellStatus::Error;
            rec.result.reason = rec.result.errors.last().cloned();
            None
        }
        Ok(machine) => {
            launched_as(rec, machine.as_ref());
            Some(machine)
        }
    }
}

/// The machine created: its facts, and the timeline's word on how its launch went.
fn launched_as(rec: &mut Recorder, machine: &dyn Machine) {
    rec.result.timings.launched_s = Some(rec.now_s());
    rec.result.machine = machine.facts();
    for note in machine.launch_notes() {
        rec.event(EventKind::CapacityFallback, note);
    }
    let queued = machine.queued().as_secs_f64();
    if queued >= 0.05 {
        rec.result.timings.queued_s = Some(round_ms(machine.queued()));
        rec.event(
            EventKind::Launched,
            format!("machine created (after {queued:.1}s queued for the provider's rate limit)"),
        );
    } else {
        rec.event(EventKind::Launched, "machine created");
    }
}

/// Removes the machine, or keeps it for debugging (`--keep-failed`, a cell whose image failed, a run
/// not interrupted); each step goes in the timeline.
async fn remove_or_keep(rec: &mut Recorder, machine: &mut dyn Machine, ending: &Ending) -> Vec<CleanupStep> {
    let ctx = rec.ctx.clone();
    let keep = ctx.keep_failed.filter(|_| verdict::image_failed(&found(rec, ending)) && !ctx.cancel.is_cancelled());
    let kept = match keep {
        Some(time) => match machine.keep(SystemTime::now() + time).await {
            Ok(how) => Some(vec![CleanupStep::ok(how)]),
            Err(e) => {
                rec.error(CellError::Keep(e));
                None
            }
        },
        None => None,
    };
    let steps = match kept {
        Some(steps) => steps,
        None => tokio::select! {
            steps = machine.terminate(ctx.hurry.is_cancelled()) => steps,
            _ = ctx.hurry.cancelled() => machine.terminate(true).await,
        },
    };
    for step in &steps {
        let message = if step.ok { step.action.clone() } else { format!("{} failed: {}", step.action, step.message) };
        rec.event(EventKind::Cleanup, message);
    }
    steps
}
