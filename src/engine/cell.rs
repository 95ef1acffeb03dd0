//! One cell, start to finish: launch, wait until running, screenshots while probing, console log,
//! assertions, and cleanup, which runs whatever happened before it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::event::{Event, Phase};
use crate::capture::{self, Screenshot};
use crate::cell::Cell;
use crate::console::{self, ConsoleFinding, ConsoleWatch, FatalSign};
use crate::plan::Plan;
use crate::probe::host_key::ConsoleHostKeys;
use crate::probe::{self, Attempt, Endpoint, Probe, ProbeEnv, SshContext, TargetPolicy};
use crate::provider::{ErrorKind, Health, LaunchContext, Ledger, Machine, Provider, ProviderError};
use crate::results::{CellParams, CellResult, CellStatus, EventKind, ProbeResult, TimelineEvent, Timings};

/// After this many failed screenshots in a row, stop trying.
const MAX_SCREENSHOT_FAILURES: usize = 5;

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

/// The result being built, with the clock it is measured by.
struct Recorder {
    ctx: CellContext,
    t0: Instant,
    result: CellResult,
    /// Set when the console stayed empty and the provider knows what came last before it (the
    /// firmware's words): the cause when the cell then fails.
    silent_console: Option<String>,
    /// When the console was last read while the machine ran: a read a moment ago is as good as a
    /// final one (on EC2 each read is an API call).
    console_read_at: Option<Instant>,
    /// The console's length when its host keys were last read: read again only when it grew.
    host_keys_read_len: usize,
    /// The probes (by index) whose last attempt settled their fate (results keep no such flag).
    settled: std::collections::BTreeSet<usize>,
}

impl Recorder {
    fn now_s(&self) -> f64 {
        round_ms(self.t0.elapsed())
    }

    fn phase(&self, phase: Phase) {
        let _ = self.ctx.events.send(Event::Phase { cell: self.result.id.clone(), phase });
    }

    fn event(&mut self, kind: EventKind, message: impl Into<String>) {
        self.event_at(self.now_s(), kind, message);
    }

    /// An event that happened earlier than now (a probe attempt's start).
    fn event_at(&mut self, at_s: f64, kind: EventKind, message: impl Into<String>) {
        let event = TimelineEvent { at_s, kind, message: message.into() };
        let _ = self.ctx.events.send(Event::Timeline { cell: self.result.id.clone(), event: event.clone() });
        self.result.events.push(event);
    }

    fn error(&mut self, message: impl Into<String>) {
        let message = message.into();
        self.event(EventKind::Error, message.clone());
        self.result.errors.push(message);
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
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
    let mut earlier: Vec<crate::results::EarlierTry> = Vec::new();
    loop {
        let mut result = run_cell(ctx.clone(), cell.clone(), earlier.len() as u32).await;
        let failed = matches!(result.status, CellStatus::Failed | CellStatus::TimedOut | CellStatus::Error);
        if !failed || ctx.cancel.is_cancelled() || earlier.len() >= ctx.plan.retries as usize {
            result.flaky = result.status == CellStatus::Passed && !earlier.is_empty();
            result.earlier_tries = earlier;
            return result;
        }
        let try_dir = format!("cells/{}.try-{}", cell.id.0, earlier.len() + 1);
        let from = ctx.out_dir.join("cells").join(&cell.id.0);
        let kept = match std::fs::rename(&from, ctx.out_dir.join(&try_dir)) {
            Ok(()) => try_dir,
            // Its files are overwritten by the next try; its verdict is kept all the same.
            Err(_) => format!("cells/{}", cell.id.0),
        };
        let reason = result.reason.clone().unwrap_or_default();
        let message = format!("try {} did not pass ({reason}): trying again", earlier.len() + 1);
        let event = TimelineEvent { at_s: 0.0, kind: EventKind::Retry, message };
        let _ = ctx.events.send(Event::Timeline { cell: cell.id.0.clone(), event });
        earlier.push(crate::results::EarlierTry {
            status: result.status,
            reason: result.reason,
            dir: kept,
            started_at: result.started_at,
        });
    }
}

/// How the drive phase ended.
enum Ending {
    Finished,
    TimedOut,
    Interrupted,
    Error(String),
    /// A fatal sign on the console (with `console.stop_on_fatal`): no point probing further.
    Fatal(FatalSign),
    /// The machine stopped by itself (powered off, panicked, its process exited).
    Stopped(String),
    /// The provider found the machine unwell (a failed status check): an image failure, the reason
    /// in full.
    Unwell(String),
    /// The provider found its platform at fault, not the image (a failed system status check).
    Infrastructure(String),
}

pub async fn run_cell(ctx: CellContext, cell: Cell, try_number: u32) -> CellResult {
    let mut result = not_run(&cell);
    result.status = CellStatus::Running;
    result.started_at = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    let mut rec = Recorder {
        ctx: ctx.clone(),
        t0: Instant::now(),
        result,
        silent_console: None,
        console_read_at: None,
        host_keys_read_len: 0,
        settled: Default::default(),
    };
    let cell_dir = ctx.out_dir.join("cells").join(&cell.id.0);
    if let Err(e) = std::fs::create_dir_all(cell_dir.join("screenshots")) {
        rec.error(format!("failed to create {}: {e}", cell_dir.display()));
        rec.result.status = CellStatus::Error;
        rec.result.reason = rec.result.errors.first().cloned();
        return rec.result;
    }

    rec.phase(Phase::Launching);
    rec.event(EventKind::Launching, format!("launching {}", cell.image()));
    let launch_ctx = LaunchContext {
        run_id: ctx.run_id.clone(),
        try_number,
        cell_dir: cell_dir.clone(),
        probe_ports: ctx.plan.probes.iter().map(Probe::port).collect(),
        probe_from: ctx.probe_from.clone(),
        ledger: ctx.ledger.clone(),
        cancel: ctx.cancel.clone(),
    };
    // Not raced against Ctrl-C: a create call in flight is let finish, so that what it made is known
    // and removed (the provider starts no further call once cancelled). The run timeout still bounds
    // a hung call; what that abandons is in the ledger, and the run's final sweep finds it by tag.
    let launch = tokio::time::timeout(ctx.plan.run_timeout, ctx.provider.launch(&cell, &launch_ctx));
    tokio::pin!(launch);
    let launched = tokio::select! {
        launched = &mut launch => launched,
        _ = ctx.cancel.cancelled() => {
            rec.event(EventKind::Interrupted, "interrupted: letting the call in flight finish, then removing what it made");
            launch.await
        }
    }
    .unwrap_or_else(|_| Err(ProviderError::new("launch timed out (timeouts.run)")));
    let mut machine = match launched {
        Err(e) if e.kind == ErrorKind::Interrupted => {
            rec.event(EventKind::Cleanup, e.message);
            rec.result.status = CellStatus::Interrupted;
            rec.result.reason = Some("interrupted during launch".into());
            rec.result.timings.ended_s = Some(rec.now_s());
            return rec.result;
        }
        Err(e) => {
            rec.error(format!("launch failed: {e}"));
            rec.result.status = CellStatus::Error;
            rec.result.reason = rec.result.errors.last().cloned();
            rec.result.timings.ended_s = Some(rec.now_s());
            return rec.result;
        }
        Ok(m) => m,
    };
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

    let mut watch = ConsoleWatch::default();
    let ending = if ctx.cancel.is_cancelled() {
        Ending::Interrupted
    } else {
        drive(&mut rec, machine.as_mut(), &cell_dir, &mut watch).await
    };

    // Console log: before terminating, while the provider can still read it (not when told to hurry).
    rec.phase(Phase::CollectingConsole);
    if (ctx.plan.console_log || !ctx.plan.console.is_empty()) && !ctx.hurry.is_cancelled() {
        collect_console(&mut rec, machine.as_mut(), &cell_dir, &watch, &ending).await;
    }

    rec.phase(Phase::CleaningUp);
    let keep = ctx.keep_failed.filter(|_| image_failed(&rec, &ending) && !ctx.cancel.is_cancelled());
    let kept = match keep {
        Some(time) => match machine.keep(SystemTime::now() + time).await {
            Ok(how) => Some(vec![crate::provider::CleanupStep::ok(how)]),
            Err(e) => {
                rec.error(format!("could not keep the machine: {e}"));
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
    rec.result.cleanup = steps.into_iter().map(Into::into).collect();
    rec.result.timings.ended_s = Some(rec.now_s());
    finish(&mut rec, ending);
    rec.result
}

/// Whether what ran shows the image failing (the cells `--keep-failed` keeps): a fatal console sign,
/// the machine stopping or unwell, a failed probe or console rule, the run timeout. Not a launch or
/// an API error, nor the platform's fault.
fn image_failed(rec: &Recorder, ending: &Ending) -> bool {
    match ending {
        Ending::Fatal(_) | Ending::Stopped(_) | Ending::Unwell(_) | Ending::TimedOut => true,
        Ending::Finished => rec.result.probes.iter().any(|p| !p.passed) || rec.result.console.iter().any(|f| !f.passed),
        Ending::Interrupted | Ending::Error(_) | Ending::Infrastructure(_) => false,
    }
}

/// Reads the whole console, keeps it (cleaned for people, raw as the guest wrote it) and checks it.
async fn collect_console(
    rec: &mut Recorder,
    machine: &mut dyn Machine,
    cell_dir: &std::path::Path,
    watch: &ConsoleWatch,
    ending: &Ending,
) {
    let fresh = rec.console_read_at.is_some_and(|at| at.elapsed() < Duration::from_secs(1));
    if !fresh {
        if let Err(e) = machine.poll_console().await {
            rec.error(format!("failed to read console log: {e}"));
        }
    }
    let raw = match machine.console_log().await {
        Ok(raw) => raw,
        Err(e) => return rec.error(format!("failed to read console log: {e}")),
    };
    let text = console::clean(raw.as_bytes());
    if text.trim().is_empty() {
        rec.silent_console = machine.before_console().await;
    }
    let mut written = std::fs::write(cell_dir.join("console.log"), &text);
    if text != raw {
        written = written.and_then(|()| std::fs::write(cell_dir.join("console.raw.log"), &raw));
    }
    match written {
        Ok(()) => rec.result.console_log = Some(format!("cells/{}/console.log", rec.result.id)),
        Err(e) => rec.error(format!("failed to write console log: {e}")),
    }
    // An interrupted run proves nothing about what the console should have shown.
    if matches!(ending, Ending::Interrupted) {
        return;
    }
    let mut findings = rec.ctx.plan.console.check(&text);
    watch.stamp(&mut findings);
    // After a reboot the second boot must show the required lines too.
    if watch.rebooted() {
        for line in watch.missing_since_reboot(&rec.ctx.plan.console, &text) {
            findings.push(ConsoleFinding {
                kind: console::RuleKind::MustContain,
                rule: format!("{line} (after the reboot)"),
                passed: false,
                hits: Vec::new(),
            });
        }
    }
    let stopped_on = match ending {
        Ending::Fatal(sign) => Some(sign.line),
        _ => None,
    };
    let now = rec.now_s();
    let hits: Vec<(f64, String)> = findings
        .iter()
        .filter(|f| f.is_fatal())
        .filter_map(|f| f.hits.first().map(|h| (f, h)))
        .filter(|(_, h)| Some(h.line) != stopped_on)
        .map(|(f, h)| (h.first_seen_s.unwrap_or(now), format!("console line {} matches `{}`", h.line, f.rule)))
        .collect();
    for (at_s, message) in hits {
        rec.event_at(at_s, EventKind::ConsoleMatch, message);
    }
    rec.result.console = findings.into_iter().map(Into::into).collect();
}

/// Decides the cell's status and the one-line reason: the most telling finding, in this order:
/// fatal console signs (the cause), the machine stopping by itself or failing its status check,
/// failed probes (often the consequence), a line that never appeared, the run timeout, and last a
/// failed cleanup. What the image did is `failed`; what the platform did (API errors, a failed
/// system status check, a failed removal) is `error`.
fn finish(rec: &mut Recorder, ending: Ending) {
    let r = &mut rec.result;
    let findings: Vec<ConsoleFinding> = r.console.iter().map(ConsoleFinding::from).collect();
    let mut failed: Vec<&ConsoleFinding> = findings.iter().filter(|f| !f.passed).collect();
    failed.sort_by_key(|f| f.rank());
    let fatal = failed.iter().find(|f| f.is_fatal()).map(|f| f.reason());
    let missing = failed.iter().find(|f| !f.is_fatal()).map(|f| f.reason());
    let failed_probe = r.probes.iter().find(|p| !p.passed).map(|p| format!("probe `{}` failed: {}", p.name, p.message));
    let cleanup_failed =
        r.cleanup.iter().find(|s| !s.ok).map(|s| format!("cleanup failed: {} ({})", s.action, s.message));
    // A console that stayed empty after the provider saw the boot start (the firmware jumping to a
    // disk with no boot code) is where it went wrong: the failed probes are what followed.
    let failed_probe = match (rec.silent_console.take(), failed_probe.or(missing.clone())) {
        (Some(last), Some(symptom)) => Some(format!("the console stayed empty after {last}; {symptom}")),
        (_, failed_probe) => failed_probe,
    };
    let (status, reason) = match ending {
        Ending::Interrupted => (CellStatus::Interrupted, Some("interrupted".to_string())),
        // A machine that did not come up but panicked on its way: the panic is the news, and the
        // image's doing.
        Ending::Error(e) => match fatal {
            Some(reason) => (CellStatus::Failed, Some(reason)),
            None => (CellStatus::Error, Some(e)),
        },
        Ending::TimedOut => match fatal {
            Some(reason) => (CellStatus::Failed, Some(reason)),
            None => (
                CellStatus::TimedOut,
                Some(failed_probe.or(missing).unwrap_or_else(|| "timed out (timeouts.run)".to_string())),
            ),
        },
        Ending::Fatal(sign) => {
            let reason = fatal
                .unwrap_or_else(|| format!("console matched `{}` at line {}: {}", sign.rule, sign.line, sign.text));
            (CellStatus::Failed, Some(reason))
        }
        Ending::Stopped(why) => {
            (CellStatus::Failed, Some(fatal.unwrap_or_else(|| format!("machine stopped by itself: {why}"))))
        }
        Ending::Unwell(why) => (CellStatus::Failed, Some(fatal.unwrap_or(why))),
        // AWS's fault whatever the console showed: the image is not to blame.
        Ending::Infrastructure(why) => (CellStatus::Error, Some(why)),
        Ending::Finished => match fatal.or(failed_probe).or(missing) {
            Some(reason) => (CellStatus::Failed, Some(reason)),
            // What the image did passed; a failed removal is the API's doing.
            None => match cleanup_failed {
                Some(reason) => (CellStatus::Error, Some(reason)),
                None => (CellStatus::Passed, None),
            },
        },
    };
    r.status = status;
    r.reason = reason.map(|text| console::printable(&text));
}

/// From "created" to "done capturing": wait until running, then screenshots and probes.
async fn drive(
    rec: &mut Recorder,
    machine: &mut dyn Machine,
    cell_dir: &std::path::Path,
    watch: &mut ConsoleWatch,
) -> Ending {
    let ctx = rec.ctx.clone();
    let plan = &ctx.plan;
    let t0 = rec.t0;
    let run_deadline = t0 + plan.run_timeout;

    rec.phase(Phase::Booting);
    let remaining = run_deadline.saturating_duration_since(Instant::now());
    let running = tokio::select! {
        r = machine.wait_running(remaining) => r,
        _ = ctx.cancel.cancelled() => return Ending::Interrupted,
    };
    if let Err(e) = running {
        rec.error(format!("machine did not start: {e}"));
        return Ending::Error(format!("machine did not start: {e}"));
    }
    let running_at = Instant::now();
    rec.result.timings.running_s = Some(rec.now_s());
    rec.result.machine = machine.facts();
    let pending = rec.result.timings.launched_s.map_or(0.0, |launched| rec.now_s() - launched);
    rec.event(EventKind::Running, format!("machine running ({pending:.1}s after it was created)"));
    rec.phase(Phase::Probing);

    // Probes run as their own tasks, so a slow request never delays a screenshot.
    let (attempt_tx, mut attempt_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Attempt)>();
    let mut probes: JoinSet<()> = JoinSet::new();
    let stop_probes = ctx.cancel.child_token();
    let (host_keys_tx, host_keys) = tokio::sync::watch::channel(ConsoleHostKeys::default());
    let run_key = machine.login_key();
    let login_key = run_key.clone().and_then(|key| match key.ssh_client_key() {
        Ok(key) => Some(Arc::new(key)),
        Err(e) => {
            rec.error(e);
            None
        }
    });
    let env = Arc::new(ProbeEnv {
        policy: TargetPolicy { allowed: ctx.allow_targets.clone().unwrap_or_else(|| machine.own_addresses()) },
        meaning: machine.connect_meaning(),
        ssh: Arc::new(SshContext::new(login_key, host_keys, plan.secrets.clone())),
        password: machine.admin_password().zip(run_key),
    });
    let mut round = ProbeRound { number: 0, started: running_at };
    spawn_probes(rec, &*machine, &env, round, &mut probes, &attempt_tx, &stop_probes);

    let schedule = &plan.schedule;
    // The schedule starts again with the second boot, so that it is filmed as closely as the first.
    let mut shots_from = running_at;
    let mut next_shot = schedule.next(None);
    let mut shot_failures = 0usize;
    let mut shots_tried = 0usize;
    let mut screenshots_on = true;
    let mut probes_done_at: Option<Instant> = if probes.is_empty() { Some(running_at) } else { None };
    let mut port_open_reported = std::collections::BTreeSet::new();
    let console_poll = machine.console_poll_interval();
    let mut next_console_poll = Instant::now() + console_poll;
    // With no probes the screenshot schedule alone says how long to watch the console.
    let capture_all = plan.probes.is_empty();
    // The console's required lines are part of being ready, until the probes' last deadline: a
    // service may answer before the login prompt is printed, and EC2 serves console output late.
    let longest_within = plan.probes.iter().map(|p| p.within).max().unwrap_or_default();
    let mut lines_deadline = running_at + longest_within;

    let ending = loop {
        let shots_left = screenshots_on && next_shot.is_some();
        // Capture goes on past the stop for the schedule (a spec without probes) and for the first
        // frame: a service that already answered when "running" was seen would otherwise end the
        // cell before its first screenshot (due at once), and every cell shows at least one.
        let lines_pending = !watch.required_seen(&plan.console) && Instant::now() < lines_deadline;
        let hold = shots_left && (capture_all || shots_tried == 0) || lines_pending;
        let stop_at = probes_done_at.map(|done| done + plan.after_ready).filter(|_| !hold);
        if stop_at.is_some_and(|stop_at| Instant::now() >= stop_at) {
            break Ending::Finished;
        }
        // The schedule counts from `running`: time queued for a launch slot and time pending differ
        // from cell to cell, and would otherwise eat the early, dense phase of the schedule.
        let shot_at = next_shot.filter(|_| screenshots_on).map(|t| shots_from + t);
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => break Ending::Interrupted,
            _ = sleep_until(run_deadline) => break Ending::TimedOut,
            Some((index, attempt)) = attempt_rx.recv() => {
                record_attempt(rec, index, attempt, &mut port_open_reported);
            }
            Some(_) = probes.join_next(), if !probes.is_empty() => {
                if probes.is_empty() {
                    // Drain attempts sent just before the last task ended.
                    while let Ok((index, attempt)) = attempt_rx.try_recv() {
                        record_attempt(rec, index, attempt, &mut port_open_reported);
                    }
                    let all_passed = rec.result.probes.iter().all(|p| p.passed);
                    if all_passed && round.number == 0 {
                        rec.result.timings.ready_s = Some(rec.now_s());
                        rec.event(EventKind::Ready, "all probes passed");
                    } else if all_passed {
                        rec.event(EventKind::Ready, "all probes passed again after the reboot");
                    }
                    if all_passed && plan.reboot && round.number == 0 {
                        // The console as it is now marks where the first boot ends: the second
                        // must show the required lines again, after it.
                        rec.console_read_at = Some(Instant::now());
                        if let Some(ending) = watch_machine(rec, machine, watch, &host_keys_tx).await {
                            break ending;
                        }
                        watch.require_again();
                        rec.event(EventKind::Reboot, "rebooting the machine (reboot: true)");
                        env.ssh.forget_connections();
                        if let Err(e) = machine.reboot().await {
                            rec.error(format!("reboot failed: {e}"));
                            break Ending::Error(format!("reboot failed: {e}"));
                        }
                        round = ProbeRound { number: 1, started: Instant::now() };
                        spawn_probes(rec, &*machine, &env, round, &mut probes, &attempt_tx, &stop_probes);
                        shots_from = round.started;
                        next_shot = schedule.next(None);
                        lines_deadline = round.started + longest_within;
                        continue;
                    }
                    probes_done_at = Some(Instant::now());
                    // Read the console now rather than at the next poll if required lines are
                    // missing: they may well be there already.
                    if !watch.required_seen(&plan.console) {
                        next_console_poll = Instant::now();
                    }
                    rec.phase(Phase::Capturing);
                }
            }
            _ = sleep_until(shot_at.unwrap_or(far)), if shot_at.is_some() => {
                let taken_at = t0.elapsed();
                shots_tried += 1;
                match machine.screenshot().await {
                    Ok(bytes) => {
                        shot_failures = 0;
                        save_screenshot(rec, &bytes, taken_at, cell_dir);
                    }
                    Err(e) if e.kind == ErrorKind::Unsupported => {
                        screenshots_on = false;
                        rec.result.screenshots_note = Some(format!("screenshots unavailable: {e}"));
                    }
                    Err(e) => {
                        shot_failures += 1;
                        if shot_failures == 1 {
                            rec.error(format!("screenshot failed: {e}"));
                        }
                        if shot_failures >= MAX_SCREENSHOT_FAILURES {
                            screenshots_on = false;
                            rec.result.screenshots_note = Some(format!("screenshots stopped after {shot_failures} failures: {e}"));
                        }
                    }
                }
                // Late captures (a slow API) resume at the next slot, not in a burst.
                next_shot = schedule.next(Some(shots_from.elapsed()));
            }
            _ = sleep_until(next_console_poll) => {
                rec.console_read_at = Some(Instant::now());
                if let Some(ending) = watch_machine(rec, machine, watch, &host_keys_tx).await {
                    if screenshots_on {
                        // The screen at the moment of failure (a panic, a shell) is usually the answer.
                        if let Ok(bytes) = machine.screenshot().await {
                            save_screenshot(rec, &bytes, t0.elapsed(), cell_dir);
                        }
                    }
                    break ending;
                }
                next_console_poll = Instant::now() + console_poll;
            }
            _ = sleep_until(stop_at.unwrap_or(far)), if stop_at.is_some() => {}
        }
    };

    // Whatever was still running stops here; its last attempt says how far it got.
    drop(attempt_tx);
    stop_probes.cancel();
    while probes.join_next().await.is_some() {}
    while let Ok((index, attempt)) = attempt_rx.try_recv() {
        record_attempt(rec, index, attempt, &mut port_open_reported);
    }
    for (index, p) in rec.result.probes.iter_mut().enumerate().filter(|(_, p)| !p.passed) {
        // A probe that gave up for good (a wrong host key) did not wait for its deadline.
        let settled = rec.settled.contains(&index);
        if matches!(ending, Ending::Finished) && p.attempts_count > 0 && !settled {
            p.message = format!("{} (deadline passed after {} attempts)", p.message, p.attempts_count);
        }
    }
    let failed: Vec<(String, String)> =
        rec.result.probes.iter().filter(|p| !p.passed).map(|p| (p.name.clone(), p.message.clone())).collect();
    for (name, message) in failed {
        rec.event(EventKind::ProbeFailed, format!("probe `{name}` failed: {message}"));
    }
    ending
}

/// How long after a reboot was asked for a probe's answers are taken for the first boot's until
/// the machine has been seen down (refusing or silent); after that, it rebooted between attempts.
const DOWN_WITHIN: Duration = Duration::from_secs(120);

/// Which run of the probes this is: the first boot's (0) or the one after the reboot (1), and when
/// its deadlines start.
#[derive(Clone, Copy)]
struct ProbeRound {
    number: usize,
    started: Instant,
}

/// Starts every probe of the plan as its own task; its results go to `rec.result.probes` at
/// `round * probes + index` (a second round's are named "... (after reboot)").
fn spawn_probes(
    rec: &mut Recorder,
    machine: &dyn Machine,
    env: &Arc<ProbeEnv>,
    round: ProbeRound,
    tasks: &mut JoinSet<()>,
    attempt_tx: &tokio::sync::mpsc::UnboundedSender<(usize, Attempt)>,
    stop: &CancellationToken,
) {
    let ctx = rec.ctx.clone();
    let t0 = rec.t0;
    for (index, probe) in ctx.plan.probes.iter().enumerate() {
        let slot = round.number * ctx.plan.probes.len() + index;
        let endpoint = match (&ctx.probe_host, &probe.host) {
            (Some(host), _) | (None, Some(host)) => Ok(Endpoint { host: host.clone(), port: probe.port() }),
            (None, None) => machine.endpoint(probe.port()),
        };
        let name = match round.number {
            0 => probe.name.clone(),
            _ => format!("{} (after reboot)", probe.name),
        };
        rec.result.probes.push(ProbeResult {
            name,
            kind: probe.kind().to_string(),
            target: endpoint.as_ref().ok().map(|e| format!("{}:{}", e.host, e.port)),
            passed: false,
            first_passed_s: None,
            attempts_count: 0,
            message: "not attempted".into(),
            attempts: Vec::new(),
            last_exchange: None,
            last_ssh: None,
        });
        let endpoint = match endpoint {
            Ok(e) => e,
            Err(why) => {
                rec.result.probes[slot].message = format!("port {} can't be reached: {why}", probe.port());
                continue;
            }
        };
        let (probe, env, tx, stop) = (probe.clone(), env.clone(), attempt_tx.clone(), stop.clone());
        tasks.spawn(async move {
            let deadline = round.started + probe.within;
            let mut session = probe::Session::default();
            // Until the target first answers at all, attempts wait briefly (QEMU answers for a guest
            // that is not up yet), longer after each silent one; attempts start on a fixed cadence,
            // `interval` apart. `None` once it answered.
            let mut silent: Option<u32> = Some(0);
            // After a reboot, an answer counts once the machine was seen down: EC2's
            // RebootInstances returns at once, and the first boot may answer for a while longer.
            // The platform's own answers (the Windows password) never go down.
            let mut seen_down = round.number == 0 || matches!(probe.check, probe::Check::WindowsPassword);
            loop {
                let started = Instant::now();
                let at_s = round_ms(t0.elapsed());
                let limit = probe.attempt_limit(silent);
                let mut attempt = tokio::select! {
                    a = probe::attempt(&probe, &mut session, &endpoint, &env, at_s, limit) => a,
                    _ = stop.cancelled() => return,
                };
                if !seen_down {
                    if attempt.passed && started < round.started + DOWN_WITHIN {
                        attempt.passed = false;
                        attempt.message = format!("still answering from before the reboot: {}", attempt.message);
                    } else {
                        seen_down = true;
                    }
                }
                silent = match silent {
                    Some(n) if attempt.silent => Some(n + 1),
                    _ => None,
                };
                let done = attempt.passed || attempt.settled;
                let _ = tx.send((slot, attempt));
                let next = started + probe.interval;
                if done || next >= deadline {
                    return;
                }
                tokio::select! {
                    _ = sleep_until(next) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }
}

/// One look at the running machine: new console lines checked for fatal signs, whether it
/// stopped by itself, and whether its provider finds it unwell. Returns how the cell ends, if it must.
async fn watch_machine(
    rec: &mut Recorder,
    machine: &mut dyn Machine,
    watch: &mut ConsoleWatch,
    host_keys: &tokio::sync::watch::Sender<ConsoleHostKeys>,
) -> Option<Ending> {
    if let Err(e) = machine.poll_console().await {
        tracing::debug!("console poll failed: {e}");
    }
    if let Ok(raw) = machine.console_log().await {
        let text = console::clean(raw.as_bytes());
        // SSH probes trust the host keys the machine announces here.
        if text.len() != rec.host_keys_read_len && text.contains("-----END SSH HOST KEY") {
            rec.host_keys_read_len = text.len();
            let keys = ConsoleHostKeys::parse(&text);
            host_keys.send_if_modified(|known| std::mem::replace(known, keys.clone()) != keys);
        }
        if let Some(sign) = watch.scan(&rec.ctx.plan.console, &text, rec.now_s()) {
            if rec.ctx.plan.stop_on_fatal {
                let message = format!("console line {} matches `{}`: stopping the machine", sign.line, sign.rule);
                rec.event_at(sign.at_s, EventKind::ConsoleMatch, message);
                return Some(Ending::Fatal(sign));
            }
        }
    }
    if let Some(why) = machine.stopped().await {
        rec.event(EventKind::Error, format!("machine stopped by itself: {why}"));
        return Some(Ending::Stopped(why));
    }
    match machine.health().await? {
        Health::ImageFailure(why) => {
            rec.event(EventKind::Error, why.clone());
            Some(Ending::Unwell(why))
        }
        Health::InfrastructureError(why) => {
            rec.error(why.clone());
            Some(Ending::Infrastructure(why))
        }
    }
}

fn record_attempt(
    rec: &mut Recorder,
    index: usize,
    mut attempt: Attempt,
    port_open: &mut std::collections::BTreeSet<u16>,
) {
    let probe = &rec.ctx.plan.probes[index % rec.ctx.plan.probes.len()];
    let port = probe.port();
    let answered =
        attempt.passed || attempt.exchange.as_ref().is_some_and(|x| x.status.is_some()) || attempt.ssh.is_some();
    if answered && port_open.insert(port) {
        rec.event_at(attempt.at_s, EventKind::PortOpen, format!("port {port} answered"));
    }
    let p = &mut rec.result.probes[index];
    let name = p.name.clone();
    p.attempts_count += 1;
    p.message = attempt.message.clone();
    if attempt.exchange.is_some() {
        p.last_exchange = attempt.exchange.take().map(Into::into);
    }
    if attempt.ssh.is_some() {
        p.last_ssh = attempt.ssh.take().map(Into::into);
    }
    let first_pass = attempt.passed && !p.passed;
    let (at_s, message) = (attempt.at_s, format!("probe `{name}` passed: {}", attempt.message));
    if first_pass {
        p.passed = true;
        p.first_passed_s = Some(at_s);
    }
    if attempt.settled {
        rec.settled.insert(index);
    } else {
        rec.settled.remove(&index);
    }
    p.attempts.push(attempt.into());
    if first_pass {
        rec.event_at(at_s, EventKind::ProbePassed, message);
    }
}

fn save_screenshot(rec: &mut Recorder, bytes: &[u8], taken_at: Duration, cell_dir: &std::path::Path) {
    let index = rec.result.screenshots.len();
    let ext = match image::guess_format(bytes) {
        Ok(image::ImageFormat::Jpeg) => "jpg",
        _ => "png",
    };
    let name = format!("{:04}-{:07.1}s.{ext}", index + 1, taken_at.as_secs_f64());
    let file = cell_dir.join("screenshots").join(&name);
    match capture::store(bytes, &file) {
        Ok((width, height, hash)) => {
            let duplicate_of = rec.result.screenshots.last().and_then(|prev| {
                capture::same_picture(&prev.hash, &hash).then(|| prev.duplicate_of.unwrap_or(index - 1))
            });
            if rec.result.timings.first_screenshot_s.is_none() {
                rec.result.timings.first_screenshot_s = Some(round_ms(taken_at));
            }
            rec.result.screenshots.push(
                Screenshot {
                    path: format!("cells/{}/screenshots/{name}", rec.result.id),
                    offset_s: round_ms(taken_at),
                    width,
                    height,
                    hash,
                    duplicate_of,
                }
                .into(),
            );
            let _ = rec
                .ctx
                .events
                .send(Event::Screenshot { cell: rec.result.id.clone(), count: rec.result.screenshots.len() });
        }
        Err(e) => rec.error(e.to_string()),
    }
}
