//! A cell's running QEMU as the engine drives it ([`Machine`]): where the VM is (running, not yet,
//! stopped for good and why), its forwarded ports, screenshots and console over QMP and the serial
//! file, a reboot asked for, and the end: quit over QMP, a kill if it lingers, then the cell's
//! scratch files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::process::Child;
use tokio::time::{sleep, timeout, Instant};

use super::firmware;
use super::guest_agent::GuestAgent;
use super::process::{reason_from_events, reason_from_status, Started, StderrTail};
use super::qmp::{Qmp, QmpError};
use super::scratch::Scratch;
use super::Prepared;
use crate::provider::lifecycle::Tracked;
use crate::provider::{
    Agent, CleanupStep, ConnectMeaning, Endpoint, Health, Ledger, Machine, ProviderError, RunKey, Unreachable,
};

/// `stopped()` runs about once a second: a QEMU that does not answer a status query this fast is busy,
/// not stopped; the next poll asks again.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How long after a reboot asked for resets are let happen: the firmware's own reset comes within
/// moments of the first; a guest that reboots by itself later is caught as before.
const REBOOT_GRACE: Duration = Duration::from_secs(10);

pub struct QemuMachine {
    child: Child,
    qmp: Qmp,
    stderr: StderrTail,
    /// How the QEMU process ended, once it has.
    exit: Option<ExitStatus>,
    waited_for_exit: bool,
    /// Why the VM stopped by itself, once seen: a stop is for good.
    stopped: Option<String>,
    /// Its QEMU process in the run's ledger, until it is confirmed gone.
    process: Tracked,
    /// Guest port -> host port on 127.0.0.1.
    forwards: BTreeMap<u16, u16>,
    console_path: PathBuf,
    /// SeaBIOS's messages (`firmware.rs`); `None` under UEFI, where OVMF speaks on the console.
    firmware_log: Option<PathBuf>,
    _sockets: tempfile::TempDir,
    command_line: String,
    accel: &'static str,
    /// `Hardware::facts`: what the cell really had.
    hardware: Value,
    scratch: Scratch,
    screenshot_seq: u64,
    login_key: Option<Arc<RunKey>>,
    /// After a reboot asked for (`reboot: true`): until then a reset resets instead of ending QEMU.
    resets_allowed_until: Option<Instant>,
    /// The guest agent's channel, when a probe asked for it.
    agent: Option<Arc<GuestAgent>>,
}

/// Where the VM is.
enum VmState {
    Running,
    /// Stopped for good, and why.
    Stopped(String),
    /// Not running yet (or paused), not stopped either.
    NotYet,
    /// QMP did not answer in time: busy, not known to be stopped; ask again later.
    Unknown(String),
}

impl QemuMachine {
    /// The machine of a QEMU that answers on QMP.
    pub fn new(started: Started, prepared: Prepared, ledger: Ledger) -> QemuMachine {
        let Started { child, qmp, stderr, resource, forwards, command_line } = started;
        QemuMachine {
            child,
            qmp,
            stderr,
            exit: None,
            waited_for_exit: false,
            stopped: None,
            process: Tracked::new(resource, &ledger),
            forwards,
            console_path: prepared.console_path,
            firmware_log: prepared.firmware_log,
            _sockets: prepared.sockets,
            command_line,
            accel: prepared.accel,
            hardware: prepared.hardware.facts(),
            scratch: prepared.scratch,
            screenshot_seq: 0,
            login_key: prepared.login_key,
            resets_allowed_until: None,
            agent: prepared.agent_path.as_deref().map(|socket| Arc::new(GuestAgent::new(socket))),
        }
    }

    /// The QEMU process's exit status, if it has exited; never waits.
    fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// After QMP closed: QEMU is on its way out; give it a moment to be reaped (once: a QEMU that
    /// closed QMP and lives on must not slow every later call).
    async fn exit_status_soon(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() && !self.waited_for_exit {
            self.waited_for_exit = true;
            if let Ok(Ok(status)) = timeout(STATUS_TIMEOUT, self.child.wait()).await {
                self.exit = Some(status);
            }
        }
        self.exit_status()
    }

    /// Why QEMU exited: what the guest did if QMP said so (poweroff, reboot under `-no-reboot`), else
    /// the exit status and QEMU's last word on stderr.
    async fn exit_reason(&mut self, status: ExitStatus) -> String {
        self.qmp.drain().await;
        if let Some(reason) = reason_from_events(self.qmp.events()) {
            return reason;
        }
        let stderr = self.stderr.finished().await;
        match stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
            Some(last) => format!("qemu exited ({status}): {last}"),
            None => format!("qemu exited ({status})"),
        }
    }

    async fn state(&mut self) -> Result<VmState, ProviderError> {
        if let Some(reason) = &self.stopped {
            return Ok(VmState::Stopped(reason.clone()));
        }
        let state = self.query_state().await?;
        if let VmState::Stopped(reason) = &state {
            self.stopped = Some(reason.clone());
        }
        Ok(state)
    }

    async fn query_state(&mut self) -> Result<VmState, ProviderError> {
        if let Some(status) = self.exit_status() {
            return Ok(VmState::Stopped(self.exit_reason(status).await));
        }
        match self.qmp.execute_within("query-status", serde_json::json!({}), STATUS_TIMEOUT).await {
            Ok(status) => {
                let status = status.get("status").and_then(Value::as_str).unwrap_or_default();
                Ok(match reason_from_events(self.qmp.events()).or_else(|| reason_from_status(status)) {
                    Some(reason) => VmState::Stopped(reason),
                    None if status == "running" => VmState::Running,
                    None => VmState::NotYet,
                })
            }
            Err(QmpError::Closed) => match self.exit_status_soon().await {
                Some(status) => Ok(VmState::Stopped(self.exit_reason(status).await)),
                None => Err(ProviderError::new("qemu closed its qmp connection but is still running")),
            },
            Err(e @ QmpError::Timeout { .. }) => Ok(VmState::Unknown(e.to_string())),
            Err(e) => Err(ProviderError::new(e.to_string())),
        }
    }

    /// A QMP failure, said plainly when the cause is that QEMU is gone.
    async fn qmp_failure(&mut self, doing: &str, e: QmpError) -> ProviderError {
        if e == QmpError::Closed {
            if let Some(status) = self.exit_status_soon().await {
                return ProviderError::new(format!("failed to {doing}: qemu has exited ({status})"));
            }
        }
        ProviderError::new(format!("failed to {doing}: {e}"))
    }
}

#[async_trait]
impl Machine for QemuMachine {
    fn facts(&self) -> serde_json::Value {
        let mut facts = serde_json::json!({
            "pid": self.child.id(),
            "accel": self.accel,
            "command_line": self.command_line,
            "forwards": self.forwards.iter().map(|(g, h)| (g.to_string(), format!("127.0.0.1:{h}"))).collect::<BTreeMap<_, _>>(),
        });
        if let (Some(facts), Some(hardware)) = (facts.as_object_mut(), self.hardware.as_object()) {
            facts.extend(hardware.clone());
        }
        facts
    }

    async fn wait_running(&mut self, timeout_after: Duration) -> Result<(), ProviderError> {
        let deadline = Instant::now() + timeout_after;
        loop {
            let unknown = match self.state().await? {
                VmState::Running => return Ok(()),
                VmState::Stopped(reason) => return Err(ProviderError::new(format!("vm stopped: {reason}"))),
                VmState::NotYet => None,
                VmState::Unknown(why) => Some(why),
            };
            if Instant::now() > deadline {
                return Err(ProviderError::new(match unknown {
                    Some(why) => format!("vm did not start running in time ({why})"),
                    None => "vm did not start running in time".to_string(),
                }));
            }
            sleep(Duration::from_millis(100)).await;
        }
    }

    fn endpoint(&self, guest_port: u16) -> Result<Endpoint, Unreachable> {
        self.forwards
            .get(&guest_port)
            .map(|host| Endpoint { host: "127.0.0.1".into(), port: *host })
            .ok_or_else(|| Unreachable(format!("guest port {guest_port} is not forwarded")))
    }

    fn own_addresses(&self) -> Vec<ipnet::IpNet> {
        // Every forward listens on 127.0.0.1; nothing else is this machine.
        vec![ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1]))]
    }

    fn connect_meaning(&self) -> ConnectMeaning {
        ConnectMeaning::MaybeProxy
    }

    fn agent(&self) -> Option<Arc<dyn Agent>> {
        self.agent.clone().map(|agent| agent as Arc<dyn Agent>)
    }

    fn login_key(&self) -> Option<Arc<RunKey>> {
        self.login_key.clone()
    }

    async fn reboot(&mut self) -> Result<(), ProviderError> {
        // `-no-reboot` turns every reset into an exit, so that a guest rebooting by itself is seen.
        // This one is asked for: resets reset until the new boot is under way (SeaBIOS resets the
        // machine once more itself when it is entered again), then exit again.
        self.qmp
            .execute("set-action", serde_json::json!({ "reboot": "reset" }))
            .await
            .map_err(|e| ProviderError::new(format!("set-action (qemu 6.0 or later) failed: {e}")))?;
        // Set first: whatever happens next, `stopped` puts `-no-reboot` back in time.
        self.resets_allowed_until = Some(Instant::now() + REBOOT_GRACE);
        self.qmp
            .execute("system_reset", serde_json::json!({}))
            .await
            .map(|_| ())
            .map_err(|e| ProviderError::new(format!("system reset failed: {e}")))
    }

    async fn screenshot(&mut self) -> Result<Vec<u8>, ProviderError> {
        // A panicked guest is paused, not gone: its last screen can still be taken.
        if let Some(status) = self.exit_status() {
            return Err(ProviderError::new(format!("no screen to capture: qemu has exited ({status})")));
        }
        self.screenshot_seq += 1;
        // PPM, not PNG: QEMU writes a screendump on its main loop, where encoding a PNG takes tens of
        // milliseconds (a raw PPM about 2 ms) that the guest's emulated I/O waits on; `capture`
        // decodes either, and does its encoding here, on amiprobe's own threads.
        let file = self._sockets.path().join(format!("shot-{}.ppm", self.screenshot_seq));
        let args = serde_json::json!({ "filename": file.to_string_lossy() });
        let result = self.qmp.execute("screendump", args).await.map(|_| ());
        let result = match result {
            Ok(()) => std::fs::read(&file).map_err(|e| ProviderError::new(format!("failed to read screendump: {e}"))),
            Err(e) => Err(self.qmp_failure("take a screendump", e).await),
        };
        let _ = std::fs::remove_file(&file);
        result
    }

    /// The serial file QEMU wrote: readable whether QEMU still runs or not.
    async fn console_log(&mut self) -> Result<String, ProviderError> {
        match std::fs::read(&self.console_path) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => {
                Err(ProviderError::new(format!("failed to read console log {}: {e}", self.console_path.display())))
            }
        }
    }

    /// Reading the serial file costs next to nothing: look every second.
    fn console_poll_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// `Some` once the QEMU process exited (with the guest's reason from QMP events if it gave one,
    /// else the exit status), or QMP reports a guest panic, a shutdown or another final state. One
    /// `try_wait` and one local `query-status`; the answer, once `Some`, stays.
    async fn stopped(&mut self) -> Option<String> {
        if self.resets_allowed_until.is_some_and(|until| Instant::now() >= until) {
            let shutdown = serde_json::json!({ "reboot": "shutdown" });
            match self.qmp.execute_within("set-action", shutdown, STATUS_TIMEOUT).await {
                Ok(_) => self.resets_allowed_until = None,
                Err(e) => tracing::debug!("set-action failed, tried again at the next poll: {e}"),
            }
        }
        match self.state().await {
            Ok(VmState::Stopped(reason)) => Some(reason),
            Ok(VmState::Running | VmState::NotYet) => None,
            Ok(VmState::Unknown(why)) => {
                tracing::debug!("qemu status unknown: {why}");
                None
            }
            Err(e) => {
                // Busy or unreadable is not stopped; the next poll asks again.
                tracing::debug!("qemu status unknown: {e}");
                None
            }
        }
    }

    async fn before_console(&mut self) -> Option<String> {
        firmware::last_boot_words(&firmware::read(self.firmware_log.as_ref()?)?)
    }

    /// The firmware found nothing to boot: the image's fault, and nothing else will happen.
    async fn health(&mut self) -> Option<Health> {
        firmware::nothing_to_boot(&firmware::read(self.firmware_log.as_ref()?)?).map(Health::ImageFailure)
    }

    async fn terminate(&mut self, hurry: bool) -> Vec<CleanupStep> {
        let mut steps = self.stop_process(hurry).await;
        // Only once QEMU is gone (a kill that failed leaves the files to the machine's drop).
        if !self.process.held() && !self.scratch.is_empty() {
            let count = self.scratch.len();
            let failed = self.scratch.remove();
            steps.push(if failed.is_empty() {
                CleanupStep::ok(format!("removed the cell's {count} scratch files (seed, disks, firmware variables)"))
            } else {
                CleanupStep::failed("remove the cell's scratch files", failed.join("; "))
            });
        }
        steps
    }
}

impl QemuMachine {
    /// Ends the QEMU process: quit over QMP, then a kill if it lingers (or at once when hurried).
    async fn stop_process(&mut self, hurry: bool) -> Vec<CleanupStep> {
        let mut steps = Vec::new();
        if let Some(status) = self.exit_status() {
            steps.push(CleanupStep::ok(format!("qemu had already exited ({status})")));
            self.process.forget();
            return steps;
        }
        if !hurry {
            if self.qmp.is_closed() {
                // QMP closed by QEMU itself: it is exiting, not ours to tell.
                if let Some(status) = self.exit_status_soon().await {
                    steps.push(CleanupStep::ok(format!("qemu had already exited ({status})")));
                    self.process.forget();
                    return steps;
                }
            } else {
                match self.qmp.execute("quit", serde_json::json!({})).await {
                    // The connection may close before the answer arrives: that is a quit too.
                    Ok(_) | Err(QmpError::Closed) => steps.push(CleanupStep::ok("qmp quit")),
                    Err(e) => steps.push(CleanupStep::failed("qmp quit", e.to_string())),
                }
                if let Ok(Ok(status)) = timeout(Duration::from_secs(5), self.child.wait()).await {
                    self.exit = Some(status);
                    steps.push(CleanupStep::ok(format!("qemu exited ({status})")));
                    self.process.forget();
                    return steps;
                }
            }
        }
        match self.child.kill().await {
            Ok(()) => steps.push(CleanupStep::ok("qemu killed")),
            // Exited between the checks above and the kill: gone is what was wanted.
            Err(_) if self.exit_status().is_some() => {
                let status = self.exit.map(|s| s.to_string()).unwrap_or_default();
                steps.push(CleanupStep::ok(format!("qemu had already exited ({status})")));
            }
            // Left in the ledger: the run's last removals try again.
            Err(e) => {
                steps.push(CleanupStep::failed("kill qemu", e.to_string()).of(self.process.resource()));
                return steps;
            }
        }
        self.process.forget();
        steps
    }
}
