//! The probes of a running machine, each its own task so that a slow request never delays a
//! screenshot: they send their attempts here, where they go into the cell's result.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::recorder::Recorder;
use crate::probe::schedule::{self, Flow};
use crate::probe::{self, Attempt, Endpoint, Probe, ProbeEnv, Target};
use crate::provider::Machine;
use crate::results::{EventKind, ProbeResult};

/// How long after a reboot was asked for a probe's answers are taken for the first boot's until
/// the machine has been seen down (refusing or silent); after that, it rebooted between attempts.
const DOWN_WITHIN: Duration = Duration::from_secs(120);

/// Which run of the probes this is: the first boot's (0) or the one after the reboot (1), and when
/// its deadlines start.
#[derive(Clone, Copy)]
pub struct ProbeRound {
    pub number: usize,
    pub started: Instant,
}

/// What the probes' tasks have to say.
pub enum ProbeNews {
    /// An attempt, for the probe result at this index.
    Attempt(usize, Box<Attempt>),
    /// A task ended.
    Ended,
}

/// The probes' tasks of the current round, and where their attempts arrive.
pub struct ProbeRun {
    tasks: JoinSet<()>,
    attempts_tx: UnboundedSender<(usize, Attempt)>,
    attempts_rx: UnboundedReceiver<(usize, Attempt)>,
    /// Stops every task (a child of the run's cancellation).
    stop: CancellationToken,
    env: Arc<ProbeEnv>,
    pub round: ProbeRound,
    /// The ports already reported open in the timeline.
    port_open_reported: BTreeSet<u16>,
}

impl ProbeRun {
    /// Starts the first boot's probes, their deadlines counted from `started`.
    pub fn start(
        rec: &mut Recorder,
        machine: &dyn Machine,
        env: Arc<ProbeEnv>,
        stop: CancellationToken,
        started: Instant,
    ) -> ProbeRun {
        let (attempts_tx, attempts_rx) = unbounded_channel();
        let round = ProbeRound { number: 0, started };
        let mut run = ProbeRun {
            tasks: JoinSet::new(),
            attempts_tx,
            attempts_rx,
            stop,
            env,
            round,
            port_open_reported: BTreeSet::new(),
        };
        run.spawn(rec, machine);
        run
    }

    /// Starts the probes again after the reboot, their deadlines counted from now (returned).
    pub fn after_reboot(&mut self, rec: &mut Recorder, machine: &dyn Machine) -> Instant {
        self.round = ProbeRound { number: 1, started: Instant::now() };
        self.spawn(rec, machine);
        self.round.started
    }

    /// Drops the SSH connections kept open: the machine they lead to is about to reboot.
    pub fn forget_connections(&self) {
        self.env.ssh.forget_connections();
    }

    /// Whether every task of the round has ended.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The next attempt, or the next task ending (attempts first).
    pub async fn next(&mut self) -> ProbeNews {
        tokio::select! {
            biased;
            Some((index, attempt)) = self.attempts_rx.recv() => ProbeNews::Attempt(index, Box::new(attempt)),
            Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => ProbeNews::Ended,
        }
    }

    pub fn record(&mut self, rec: &mut Recorder, index: usize, attempt: Attempt) {
        record_attempt(rec, index, attempt, &mut self.port_open_reported);
    }

    /// Records the attempts sent and not received yet.
    pub fn drain(&mut self, rec: &mut Recorder) {
        while let Ok((index, attempt)) = self.attempts_rx.try_recv() {
            record_attempt(rec, index, attempt, &mut self.port_open_reported);
        }
    }

    /// Stops whatever still runs (its last attempt says how far it got) and puts each failed probe
    /// in the timeline. `finished`: the cell ran its course, so an unsettled probe ran out of time.
    pub async fn stop(mut self, rec: &mut Recorder, finished: bool) {
        drop(self.attempts_tx);
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        while let Ok((index, attempt)) = self.attempts_rx.try_recv() {
            record_attempt(rec, index, attempt, &mut self.port_open_reported);
        }
        for (index, p) in rec.result.probes.iter_mut().enumerate().filter(|(_, p)| !p.passed) {
            // A probe that gave up for good (a wrong host key) did not wait for its deadline.
            let settled = rec.settled.contains(&index);
            if finished && p.attempts_count > 0 && !settled {
                p.message = format!("{} (deadline passed after {} attempts)", p.message, p.attempts_count);
            }
        }
        let failed: Vec<(String, String)> =
            rec.result.probes.iter().filter(|p| !p.passed).map(|p| (p.name.clone(), p.message.clone())).collect();
        for (name, message) in failed {
            rec.event(EventKind::ProbeFailed, format!("probe `{name}` failed: {message}"));
        }
    }

    /// Starts every probe of the plan as its own task; its results go to `rec.result.probes` at
    /// `round * probes + index` (a second round's are named "... (after reboot)").
    fn spawn(&mut self, rec: &mut Recorder, machine: &dyn Machine) {
        let ctx = rec.ctx.clone();
        for (index, probe) in ctx.plan.probes.iter().enumerate() {
            let slot = self.round.number * ctx.plan.probes.len() + index;
            let target = target(probe, machine, ctx.probe_host.as_ref());
            rec.result.probes.push(not_attempted(probe, self.round, target.as_ref().ok()));
            let target = match target {
                Ok(target) => target,
                Err(why) => {
                    rec.result.probes[slot].message = why;
                    continue;
                }
            };
            let task = ProbeTask {
                probe: probe.clone(),
                target,
                env: self.env.clone(),
                round: self.round,
                t0: rec.t0,
                slot,
                attempts: self.attempts_tx.clone(),
                stop: self.stop.clone(),
            };
            self.tasks.spawn(task.run());
        }
    }
}

/// A probe's result before its first attempt.
/// Where the probe's attempts go: `--probe-host` or the probe's `host`, else where the machine says
/// the port is; the machine's agent for a command through it. Else why it can't be reached.
fn target(probe: &Probe, machine: &dyn Machine, probe_host: Option<&String>) -> Result<Target, String> {
    let Some(port) = probe.port() else {
        return machine.agent().map(Target::Agent).ok_or_else(|| "this machine has no agent channel".to_string());
    };
    match probe_host.or(probe.host.as_ref()) {
        Some(host) => Ok(Target::Port(Endpoint { host: host.clone(), port })),
        None => machine.endpoint(port).map(Target::Port).map_err(|why| format!("port {port} can't be reached: {why}")),
    }
}

fn not_attempted(probe: &Probe, round: ProbeRound, target: Option<&Target>) -> ProbeResult {
    let name = match round.number {
        0 => probe.name.clone(),
        _ => format!("{} (after reboot)", probe.name),
    };
    ProbeResult {
        name,
        kind: probe.kind().to_string(),
        target: target.map(Target::shown),
        passed: false,
        first_passed_s: None,
        attempts_count: 0,
        message: "not attempted".into(),
        attempts: Vec::new(),
        last_exchange: None,
        last_ssh: None,
    }
}

/// One probe's task: its attempts on the probe's cadence (see [`schedule`]) until one passes or
/// settles, or the deadline.
struct ProbeTask {
    probe: Probe,
    target: Target,
    env: Arc<ProbeEnv>,
    round: ProbeRound,
    /// The cell's clock.
    t0: Instant,
    /// Where its attempts go in the cell's probe results.
    slot: usize,
    attempts: UnboundedSender<(usize, Attempt)>,
    stop: CancellationToken,
}

impl ProbeTask {
    async fn run(self) {
        let deadline = self.round.started + self.probe.within;
        // After a reboot, a pass counts if its attempt started once the machine was seen down (the
        // start of the first attempt that did not pass: refused, closed or silent), or DOWN_WITHIN
        // after the reboot: EC2's RebootInstances returns at once, and the first boot may answer
        // for a while longer. Attempts end out of order, so it is their starts that are compared:
        // an attempt that started before the machine was seen down may still be the first boot's.
        // The platform's own answers (the Windows password) never go down.
        let always = self.round.number == 0 || matches!(self.probe.check, probe::Check::WindowsPassword);
        let mut down_since: Option<f64> = always.then_some(f64::NEG_INFINITY);
        let down_within = self.round.started + DOWN_WITHIN;
        let judge = |mut attempt: Attempt| {
            let started = self.t0 + Duration::from_secs_f64(attempt.at_s);
            if attempt.passed {
                if !down_since.is_some_and(|down| attempt.at_s >= down) && started < down_within {
                    attempt.passed = false;
                    attempt.message = format!("still answering from before the reboot: {}", attempt.message);
                }
            } else if down_since.is_none() {
                down_since = Some(attempt.at_s);
            }
            let done = attempt.passed || attempt.settled;
            let _ = self.attempts.send((self.slot, attempt));
            if done {
                Flow::Stop
            } else {
                Flow::Continue
            }
        };
        tokio::select! {
            _ = schedule::run(&self.probe, &self.target, &self.env, self.t0, deadline, judge) => {}
            _ = self.stop.cancelled() => {}
        }
    }
}

fn record_attempt(rec: &mut Recorder, index: usize, mut attempt: Attempt, port_open: &mut BTreeSet<u16>) {
    let probe = &rec.ctx.plan.probes[index % rec.ctx.plan.probes.len()];
    let answered =
        attempt.passed || attempt.exchange.as_ref().is_some_and(|x| x.status.is_some()) || attempt.ssh.is_some();
    if let (true, Some(port)) = (answered, probe.port()) {
        if port_open.insert(port) {
            rec.event_at(attempt.at_s, EventKind::PortOpen, format!("port {port} answered"));
        }
    }
    if attempt.settled {
        rec.settled.insert(index);
    } else {
        rec.settled.remove(&index);
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
    p.attempts.push(attempt.into());
    if first_pass {
        rec.event_at(at_s, EventKind::ProbePassed, message);
    }
}
