//! From "created" to "done capturing": wait until the machine runs, then probe it, film it and
//! watch its console until the cell has seen enough (or must stop).
//!
//! The driver is a small state machine: [`boot`] waits for `running`; then [`Driver`] is either
//! [`Stage::Probing`] (a round of probes runs; when `reboot: true`, a second round follows the
//! reboot) or [`Stage::Capturing`] (the probes are over; screenshots and console reads go on for
//! `after_ready`). Each wake-up ([`Wake`]) is handled by one method.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::console_log;
use super::error::CellError;
use super::probes::{ProbeNews, ProbeRun};
use super::recorder::Recorder;
use super::screenshots::Shots;
use crate::console::ConsoleWatch;
use crate::engine::event::Phase;
use crate::engine::verdict::Ending;
use crate::plan::Plan;
use crate::probe::host_key::ConsoleHostKeys;
use crate::probe::{ProbeEnv, SshContext, TargetPolicy};
use crate::provider::Machine;
use crate::results::EventKind;

/// Drives a created machine until the cell ends; says how.
pub async fn drive(rec: &mut Recorder, machine: &mut dyn Machine, cell_dir: &Path, watch: &mut ConsoleWatch) -> Ending {
    let running_at = match boot(rec, machine).await {
        Ok(at) => at,
        Err(ending) => return ending,
    };
    let mut driver = Driver::new(rec, machine, cell_dir, watch, running_at);
    let ending = driver.watch().await;
    // Whatever was still running stops here.
    driver.probes.stop(driver.rec, matches!(ending, Ending::Finished)).await;
    ending
}

/// Waits until the machine runs (or the run's timeout, or an interruption); returns when it ran.
async fn boot(rec: &mut Recorder, machine: &mut dyn Machine) -> Result<Instant, Ending> {
    let cancel = rec.ctx.cancel.clone();
    rec.phase(Phase::Booting);
    let run_deadline = rec.t0 + rec.ctx.plan.run_timeout;
    let remaining = run_deadline.saturating_duration_since(Instant::now());
    let running = tokio::select! {
        r = machine.wait_running(remaining) => r,
        _ = cancel.cancelled() => return Err(Ending::Interrupted),
    };
    if let Err(e) = running {
        let error = CellError::DidNotStart(e);
        rec.error(&error);
        return Err(Ending::Error(error));
    }
    let running_at = Instant::now();
    rec.result.timings.running_s = Some(rec.now_s());
    rec.result.machine = machine.facts();
    let pending = rec.result.timings.launched_s.map_or(0.0, |launched| rec.now_s() - launched);
    rec.event(EventKind::Running, format!("machine running ({pending:.1}s after it was created)"));
    rec.phase(Phase::Probing);
    Ok(running_at)
}

/// Where the watching of a running machine stands.
enum Stage {
    /// A round of probes runs (the first boot's, or the second's after the reboot).
    Probing,
    /// Every probe of the last round ended at `since`: capture goes on for `after_ready`, or for
    /// as long as the screenshot schedule or the console's required lines hold it.
    Capturing { since: Instant },
}

/// What woke the driver.
enum Wake {
    Cancelled,
    TimedOut,
    Probe(ProbeNews),
    ShotDue,
    ConsoleDue,
    /// The time to stop came: checked again at the top of the loop.
    StopDue,
}

struct Driver<'a> {
    rec: &'a mut Recorder,
    machine: &'a mut dyn Machine,
    cell_dir: &'a Path,
    watch: &'a mut ConsoleWatch,
    plan: Arc<Plan>,
    cancel: CancellationToken,
    run_deadline: Instant,
    stage: Stage,
    probes: ProbeRun,
    shots: Shots,
    /// The host keys the console announced, for the SSH probes.
    host_keys: watch::Sender<ConsoleHostKeys>,
    console_poll: Duration,
    next_console_poll: Instant,
    /// The console's required lines are part of being ready until the probes' last deadline (from
    /// the round's start): a service may answer before the login prompt is printed, and EC2 serves
    /// console output late.
    lines_deadline: Instant,
}

impl<'a> Driver<'a> {
    fn new(
        rec: &'a mut Recorder,
        machine: &'a mut dyn Machine,
        cell_dir: &'a Path,
        watch: &'a mut ConsoleWatch,
        running_at: Instant,
    ) -> Driver<'a> {
        let ctx = rec.ctx.clone();
        let (host_keys, keys_seen) = watch::channel(ConsoleHostKeys::default());
        let env = probe_env(rec, machine, keys_seen);
        let probes = ProbeRun::start(rec, machine, env, ctx.cancel.child_token(), running_at);
        let stage = if probes.is_empty() { Stage::Capturing { since: running_at } } else { Stage::Probing };
        let console_poll = machine.console_poll_interval();
        Driver {
            shots: Shots::new(ctx.plan.clone(), running_at),
            lines_deadline: running_at + longest_within(&ctx.plan),
            run_deadline: rec.t0 + ctx.plan.run_timeout,
            next_console_poll: Instant::now() + console_poll,
            console_poll,
            plan: ctx.plan,
            cancel: ctx.cancel,
            rec,
            machine,
            cell_dir,
            watch,
            stage,
            probes,
            host_keys,
        }
    }

    /// Handles wake-ups until the cell ends.
    async fn watch(&mut self) -> Ending {
        loop {
            let stop_at = self.stop_at();
            if stop_at.is_some_and(|stop_at| Instant::now() >= stop_at) {
                return Ending::Finished;
            }
            let wake = self.next_wake(stop_at).await;
            if let Some(ending) = self.handle(wake).await {
                return ending;
            }
        }
    }

    /// When the cell has seen enough: `after_ready` after the probes ended, unless something holds
    /// it. Capture goes on past the stop for the schedule (a spec without probes) and for the first
    /// frame: a service that already answered when "running" was seen would otherwise end the cell
    /// before its first screenshot (due at once), and every cell shows at least one.
    fn stop_at(&self) -> Option<Instant> {
        let lines_pending = !self.watch.required_seen(&self.plan.console) && Instant::now() < self.lines_deadline;
        // With no probes the screenshot schedule alone says how long to watch the console.
        let capture_all = self.plan.probes.is_empty();
        let hold = self.shots.left() && (capture_all || self.shots.tried == 0) || lines_pending;
        match self.stage {
            Stage::Capturing { since } if !hold => Some(since + self.plan.after_ready),
            _ => None,
        }
    }

    async fn next_wake(&mut self, stop_at: Option<Instant>) -> Wake {
        let shot_at = self.shots.due_at();
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Wake::Cancelled,
            _ = sleep_until(self.run_deadline) => Wake::TimedOut,
            news = self.probes.next() => Wake::Probe(news),
            _ = sleep_until(shot_at.unwrap_or(far)), if shot_at.is_some() => Wake::ShotDue,
            _ = sleep_until(self.next_console_poll) => Wake::ConsoleDue,
            _ = sleep_until(stop_at.unwrap_or(far)), if stop_at.is_some() => Wake::StopDue,
        }
    }

    async fn handle(&mut self, wake: Wake) -> Option<Ending> {
        match wake {
            Wake::Cancelled => Some(Ending::Interrupted),
            Wake::TimedOut => Some(Ending::TimedOut),
            Wake::Probe(ProbeNews::Attempt(index, attempt)) => {
                // The platform refused the probe's call: no later attempt can pass, and the image
                // is not to blame.
                let refused = (attempt.platform && attempt.settled).then(|| attempt.message.clone());
                self.probes.record(self.rec, index, *attempt);
                let refused = refused.map(|why| format!("probe `{}`: {why}", self.rec.result.probes[index].name));
                refused.map(|why| {
                    self.rec.error(&why);
                    Ending::Infrastructure(why)
                })
            }
            Wake::Probe(ProbeNews::Ended) if self.probes.is_empty() => self.round_over().await,
            Wake::Probe(ProbeNews::Ended) | Wake::StopDue => None,
            Wake::ShotDue => {
                self.shots.take(self.rec, self.machine, self.cell_dir).await;
                None
            }
            Wake::ConsoleDue => self.read_console().await,
        }
    }

    /// The last probe of a round ended: the machine is ready (or not), and then reboots (the first
    /// round, with `reboot: true`) or the cell captures until it stops.
    async fn round_over(&mut self) -> Option<Ending> {
        // Attempts sent just before the last task ended.
        self.probes.drain(self.rec);
        let all_passed = self.rec.result.probes.iter().all(|p| p.passed);
        let first_round = self.probes.round.number == 0;
        if all_passed && first_round {
            self.rec.result.timings.ready_s = Some(self.rec.now_s());
            self.rec.event(EventKind::Ready, "all probes passed");
        } else if all_passed {
            self.rec.event(EventKind::Ready, "all probes passed again after the reboot");
        }
        if all_passed && self.plan.reboot && first_round {
            return self.reboot().await;
        }
        self.stage = Stage::Capturing { since: Instant::now() };
        // Read the console now rather than at the next poll if required lines are missing: they
        // may well be there already.
        if !self.watch.required_seen(&self.plan.console) {
            self.next_console_poll = Instant::now();
        }
        self.rec.phase(Phase::Capturing);
        None
    }

    /// Reboots the machine and starts the second round of probes, filmed like the first.
    async fn reboot(&mut self) -> Option<Ending> {
        // The console as it is now marks where the first boot ends: the second must show the
        // required lines again, after it.
        self.rec.console_read_at = Some(Instant::now());
        if let Some(ending) = console_log::look(self.rec, self.machine, self.watch, &self.host_keys).await {
            return Some(ending);
        }
        self.watch.require_again();
        self.rec.event(EventKind::Reboot, "rebooting the machine (reboot: true)");
        self.probes.forget_connections();
        if let Err(e) = self.machine.reboot().await {
            let error = CellError::Reboot(e);
            self.rec.error(&error);
            return Some(Ending::Error(error));
        }
        let started = self.probes.after_reboot(self.rec, self.machine);
        self.shots.restart(started);
        self.lines_deadline = started + longest_within(&self.plan);
        None
    }

    /// A console poll: a look at the machine, which may end the cell.
    async fn read_console(&mut self) -> Option<Ending> {
        self.rec.console_read_at = Some(Instant::now());
        if let Some(ending) = console_log::look(self.rec, self.machine, self.watch, &self.host_keys).await {
            self.shots.last_look(self.rec, self.machine, self.cell_dir).await;
            return Some(ending);
        }
        self.next_console_poll = Instant::now() + self.console_poll;
        None
    }
}

/// The longest of the probes' deadlines.
fn longest_within(plan: &Plan) -> Duration {
    plan.probes.iter().map(|p| p.within).max().unwrap_or_default()
}

/// What the probes need of the machine: which addresses they may contact, what a connection means,
/// the run's login key and the host keys the console announces (`keys_seen`).
fn probe_env(rec: &mut Recorder, machine: &dyn Machine, keys_seen: watch::Receiver<ConsoleHostKeys>) -> Arc<ProbeEnv> {
    let ctx = rec.ctx.clone();
    let run_key = machine.login_key();
    let login_key = run_key.clone().and_then(|key| match key.ssh_client_key() {
        Ok(key) => Some(Arc::new(key)),
        Err(e) => {
            rec.error(CellError::LoginKey(e.to_string()));
            None
        }
    });
    Arc::new(ProbeEnv {
        policy: TargetPolicy { allowed: ctx.allow_targets.clone().unwrap_or_else(|| machine.own_addresses()) },
        meaning: machine.connect_meaning(),
        ssh: Arc::new(SshContext::new(login_key, keys_seen, ctx.plan.secrets.clone())),
        password: machine.admin_password().zip(run_key),
    })
}
