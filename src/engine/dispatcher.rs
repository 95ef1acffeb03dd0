//! The dispatcher: owns the run's state and handles one event at a time.
//!
//! It holds the results as they grow, the ledger of what the run created, the two cancellation
//! tokens the cells watch (stop; hurry) and the count of signals, and it is the only one to talk to
//! the reporter. Whatever happens (a cell's event, a cell ending, a signal) reaches it as a
//! [`RunEvent`]; it answers whether the run goes on ([`Flow`]).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;

use super::cell::{self, CellContext};
use super::event::Event;
use super::{cleanup, Reporter, RunOptions};
use crate::cell::Cell;
use crate::plan::Plan;
use crate::provider::{Checked, CleanupStep, Ledger, Provider, ProviderError};
use crate::results::since::BaselineRules;
use crate::results::{CellResult, CellStatus, RunResults, RunStatus, SpecInfo, SCHEMA_VERSION};

/// What reaches the dispatcher while the cells run.
#[derive(Debug)]
pub enum RunEvent {
    /// Something a cell task said (a phase, a timeline event, a screenshot).
    Cell(Event),
    /// A cell task ended: the cell's place in the results, its result (or why the task died), and
    /// the events it sent before it ended, shown first.
    CellEnded { index: usize, ended: Result<Box<CellResult>, JoinError>, earlier: Vec<Event> },
    /// SIGINT, SIGTERM or SIGHUP, by name.
    Signal(&'static str),
}

/// Whether the run goes on after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The third signal: the run is given up at once, its results already sent as `RunAborted`.
    Abandon,
}

/// The run's state, and the one place it changes.
pub struct Dispatcher<'a> {
    reporter: &'a mut dyn Reporter,
    results: RunResults,
    started: Instant,
    ledger: Ledger,
    /// First signal: cells stop capturing and probing, collect what there is, clean up.
    cancel: CancellationToken,
    /// Second signal: cells clean up without waiting for confirmations.
    hurry: CancellationToken,
    /// Signals received so far.
    interrupts: u32,
}

impl<'a> Dispatcher<'a> {
    /// The run as it starts, every cell not run yet; tells the reporter it started.
    pub fn start(plan: &Plan, options: &RunOptions, reporter: &'a mut dyn Reporter) -> Self {
        let results = RunResults {
            schema_version: SCHEMA_VERSION,
            amiprobe_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id: options.run_id.clone(),
            spec: SpecInfo {
                name: plan.name.clone(),
                description: plan.description.clone(),
                file: plan.spec_file.display().to_string(),
                provider: plan.provider.name().to_string(),
            },
            account: options.identity.clone().map(Into::into),
            shard: options.shard.clone(),
            status: RunStatus::Running,
            started_at: now_rfc3339(),
            finished_at: None,
            duration_s: 0.0,
            counts: Default::default(),
            warnings: Vec::new(),
            leftover_cleanup: Vec::new(),
            not_removed: Vec::new(),
            merged_from: Vec::new(),
            promotions: None,
            baseline: Some(BaselineRules::from(&plan.baseline)).filter(|b| *b != BaselineRules::default()),
            since_last_night: None,
            cells: plan.cells.iter().map(cell::not_run).collect(),
        };
        let mut dispatcher = Dispatcher {
            reporter,
            results,
            started: Instant::now(),
            ledger: Ledger::default(),
            cancel: CancellationToken::new(),
            hurry: CancellationToken::new(),
            interrupts: 0,
        };
        let out_dir = options.out_dir.display().to_string();
        let results = dispatcher.snapshot();
        dispatcher.reporter.event(&Event::RunStarted { out_dir, results });
        dispatcher
    }

    /// The ledger every cell records what it creates in.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The results as they stand.
    pub fn results(&self) -> &RunResults {
        &self.results
    }

    /// The token a first signal cancels.
    pub fn cancel(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// What the run's verdict promoted: a refused promotion is an error of the run, told as a warning.
    /// (The run's status is decided in [`Dispatcher::finish`], which the refusal fails.)
    pub fn promoted(&mut self, promotions: Option<crate::results::Promotions>) {
        for refusal in super::promotion::apply(&mut self.results, promotions) {
            self.reporter.event(&Event::Warning(refusal));
        }
    }

    /// Everything a cell task needs, sharing this run's ledger and cancellation tokens.
    pub fn cell_context(
        &self,
        plan: &Arc<Plan>,
        provider: &Arc<dyn Provider>,
        options: &RunOptions,
        events: UnboundedSender<Event>,
    ) -> CellContext {
        CellContext {
            plan: plan.clone(),
            provider: provider.clone(),
            run_id: options.run_id.clone(),
            out_dir: options.out_dir.clone(),
            ledger: self.ledger.clone(),
            events,
            cancel: self.cancel.clone(),
            hurry: self.hurry.clone(),
            allow_targets: options.allow_targets.clone(),
            probe_host: options.probe_host.clone(),
            probe_from: options.probe_from.clone(),
            keep_failed: options.keep_failed,
        }
    }

    /// Takes in the provider's preflight (`None`: interrupted before it answered) and returns the
    /// cells to run, each with its place in the results; `None` when the run is over already
    /// (refused, or the check itself failed), its end reported.
    pub fn preflight_done(
        &mut self,
        checked: Option<Result<Checked, ProviderError>>,
        plan: &Plan,
        skip_impossible: bool,
    ) -> Option<Vec<(usize, Cell)>> {
        let mut cells = plan.cells.clone();
        // The spec's own hints (a pattern that can't match an answer's last line), as `plan` gives them.
        for hint in plan.hints() {
            self.warning(hint);
        }
        match checked {
            // Interrupted: every cell task starts, sees the cancellation and ends "not run".
            None => {}
            Some(Ok(checked)) => {
                let refused = self.checked(checked, skip_impossible)?;
                cells.retain(|c| !refused.contains(&c.id.0));
            }
            Some(Err(e)) => {
                self.preflight_failed(&e);
                return None;
            }
        }
        Some(cells.into_iter().map(|cell| (self.place(&cell), cell)).collect())
    }

    /// The preflight's warnings and impossible cells; returns the ids of the cells not to run, or
    /// `None` when impossible cells refuse the whole run (without `--skip-impossible`).
    fn checked(&mut self, checked: Checked, skip_impossible: bool) -> Option<Vec<String>> {
        for w in checked.warnings {
            self.warning(w);
        }
        if !checked.refused.is_empty() {
            for line in &checked.refused {
                self.reporter.event(&Event::Warning(format!("refused: {line}")));
            }
            for cell in self.results.cells.iter_mut() {
                cell.reason = Some(format!("not run: {}", checked.refused.join("; ")));
            }
            self.end(RunStatus::Refused);
            return None;
        }
        for (id, why) in &checked.impossible {
            let message = format!("impossible: {why}");
            self.reporter.event(&Event::Warning(format!("cell {id}: {message}")));
            if let Some(cell) = self.results.cells.iter_mut().find(|c| c.id == *id) {
                cell.reason = Some(message);
            }
        }
        if !checked.impossible.is_empty() && !skip_impossible {
            for cell in self.results.cells.iter_mut().filter(|c| c.reason.is_none()) {
                cell.reason = Some("not run: other cells are impossible (--skip-impossible runs the rest)".into());
            }
            self.end(RunStatus::Refused);
            return None;
        }
        Some(checked.impossible.into_iter().map(|(id, _)| id).collect())
    }

    /// The provider could not check the plan: every cell is an error, nothing runs.
    fn preflight_failed(&mut self, e: &ProviderError) {
        let message = format!("provider check failed: {e}");
        self.reporter.event(&Event::Warning(message.clone()));
        for cell in &mut self.results.cells {
            cell.status = CellStatus::Error;
            cell.reason = Some(message.clone());
            cell.errors.push(message.clone());
        }
        self.end(RunStatus::Failed);
    }

    /// Where a cell's result goes in the results.
    fn place(&self, cell: &Cell) -> usize {
        self.results.cells.iter().position(|c| c.id == cell.id.0).unwrap_or(cell.index)
    }

    pub fn handle_event(&mut self, event: RunEvent) -> Flow {
        match event {
            RunEvent::Cell(event) => {
                self.cell_event(event);
                Flow::Continue
            }
            RunEvent::CellEnded { index, ended, earlier } => {
                self.cell_ended(index, ended, earlier);
                Flow::Continue
            }
            RunEvent::Signal(name) => self.interrupt(name),
        }
    }

    /// An event from a running cell, passed on to the reporter.
    fn cell_event(&mut self, event: Event) {
        // A cell that has begun is `running` in a results.json read (or written) mid-run.
        if let Event::Phase { cell, .. } = &event {
            let begun = self.results.cells.iter_mut().find(|c| c.id == *cell && c.status == CellStatus::NotRun);
            if let Some(c) = begun {
                c.status = CellStatus::Running;
            }
        }
        self.reporter.event(&event);
    }

    /// Events passed on as they are: those a cell sent just before it ended, or late ones.
    pub fn pass_on(&mut self, events: Vec<Event>) {
        for event in &events {
            self.reporter.event(event);
        }
    }

    fn cell_ended(&mut self, index: usize, ended: Result<Box<CellResult>, JoinError>, earlier: Vec<Event>) {
        let result = ended.unwrap_or_else(|e| Box::new(crashed(&self.results.cells[index], &e)));
        self.pass_on(earlier);
        self.results.cells[index] = (*result).clone();
        self.reporter.event(&Event::CellFinished {
            cell: result,
            duration_s: round_tenth(self.started.elapsed()),
            warnings: self.results.warnings.clone(),
        });
    }

    /// A signal: the first stops the cells, the second hurries their cleanup, the third gives the
    /// run up.
    fn interrupt(&mut self, signal: &str) -> Flow {
        self.interrupts += 1;
        let message = match self.interrupts {
            1 => {
                self.cancel.cancel();
                format!(
                    "{signal}: stopping cells, collecting console logs and cleaning up (Ctrl-C again to skip waiting)"
                )
            }
            2 => {
                self.hurry.cancel();
                format!("{signal} again: cleaning up without waiting for confirmation (Ctrl-C again to exit at once)")
            }
            _ => format!(
                "{signal} a third time: exiting now; run `amiprobe sweep --run-id {}` to remove what may be left",
                self.results.run_id
            ),
        };
        self.reporter.event(&Event::Interrupt { count: self.interrupts, message });
        if self.interrupts < 3 {
            return Flow::Continue;
        }
        self.abort();
        Flow::Abandon
    }

    /// The run given up at once: the cells still running are interrupted, and the results say so.
    fn abort(&mut self) {
        self.results.status = RunStatus::Interrupted;
        for cell in self.results.cells.iter_mut().filter(|c| c.status == CellStatus::Running) {
            cell.status = CellStatus::Interrupted;
            cell.reason = Some("interrupted: amiprobe exited at once (third signal)".into());
        }
        self.results.not_removed = cleanup::not_removed(&self.ledger, &self.results);
        self.results.finished_at = Some(now_rfc3339());
        // Through the reporters like every other ending: results.json records the abort.
        let results = self.snapshot();
        self.reporter.event(&Event::RunAborted(results));
    }

    /// The end of a run whose cells all ended: the last removals' steps, what is still not removed,
    /// and the run's status.
    pub fn finish(mut self, removals: Vec<CleanupStep>) -> RunResults {
        self.results.leftover_cleanup = removals.into_iter().map(Into::into).collect();
        self.results.not_removed = cleanup::not_removed(&self.ledger, &self.results);
        for gone in self.results.not_removed.clone() {
            self.reporter.event(&Event::NotRemoved(gone));
        }
        for warning in cleanup::failed_sweeps(&self.results) {
            self.warning(warning);
        }
        let refused = self.results.promotions.as_ref().is_some_and(|p| !super::promotion::refusals(p).is_empty());
        let passed =
            self.results.not_removed.is_empty() && self.results.cells.iter().all(|c| c.status.is_pass()) && !refused;
        let status = if self.cancel.is_cancelled() {
            RunStatus::Interrupted
        } else if passed {
            RunStatus::Passed
        } else {
            RunStatus::Failed
        };
        self.end(status);
        self.results
    }

    /// The results as they stand (for a run that ended before its cells ran, or was given up).
    pub fn into_results(self) -> RunResults {
        self.results
    }

    fn warning(&mut self, warning: String) {
        self.reporter.event(&Event::Warning(warning.clone()));
        self.results.warnings.push(warning);
    }

    /// The run's last event: its status, stamped and counted.
    fn end(&mut self, status: RunStatus) {
        self.results.status = status;
        self.results.finished_at = Some(now_rfc3339());
        let results = self.snapshot();
        self.reporter.event(&Event::RunFinished(results));
    }

    /// The results as they stand, counted and timed, for an event that carries them.
    fn snapshot(&mut self) -> Box<RunResults> {
        self.results.recount();
        self.results.duration_s = round_tenth(self.started.elapsed());
        Box::new(self.results.clone())
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn round_tenth(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

/// The result of a cell whose task panicked: what was known before, marked as an error.
fn crashed(before: &CellResult, error: &JoinError) -> CellResult {
    let mut result = before.clone();
    let why = if error.is_panic() { "cell task panicked" } else { "cell task was cancelled" };
    result.status = CellStatus::Error;
    result.reason = Some(why.to_string());
    result.errors.push(why.to_string());
    result
}
