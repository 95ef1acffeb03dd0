//! One start of a cell's QEMU process and what it says as it ends: started isolated (its own process
//! group, killed with amiprobe and with its handle), recorded in the ledger before it runs, its
//! stderr's last words kept, its QMP socket connected; and why a QEMU stopped, read from QMP's events
//! and status.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::argv::command_line;
use super::qmp::{Qmp, QmpEvent};
use super::resource::QemuProcess;
use super::{Prepared, QemuProvider};
use crate::provider::{lock, LaunchContext, Resource};

/// QEMU says this when a forwarded host port is taken; we pick other ports and start again.
const PORT_TAKEN: &str = "Could not set up host forwarding rule";
/// The stderr kept for error messages: the end is where QEMU says why it stopped.
const STDERR_TAIL: usize = 4096;
/// How long QEMU may take to open its QMP socket.
const QMP_WITHIN: Duration = Duration::from_secs(15);

/// Why one start of QEMU did not reach a connected QMP.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("failed to find a free port: {0}")]
    FreePort(std::io::Error),
    #[error("failed to start {binary}: {source}")]
    Spawn { binary: String, source: std::io::Error },
    /// With the end of what QEMU wrote to stderr.
    #[error("qemu exited at start ({status}): {stderr}")]
    Exited { status: ExitStatus, stderr: String },
    #[error("qemu did not open its qmp socket within {}s", QMP_WITHIN.as_secs())]
    NoQmp,
}

impl StartError {
    /// QEMU could not bind a forwarded host port: another start, with other ports, may work.
    pub fn port_taken(&self) -> bool {
        // QEMU's own words on stderr: it has no other way of telling.
        matches!(self, StartError::Exited { stderr, .. } if stderr.contains(PORT_TAKEN))
    }
}

/// A QEMU that answers on QMP.
pub struct Started {
    pub child: Child,
    pub qmp: Qmp,
    pub stderr: StderrTail,
    /// Its entry in the run's ledger.
    pub resource: Resource,
    /// Guest port -> host port on 127.0.0.1.
    pub forwards: BTreeMap<u16, u16>,
    /// The command line, for the report.
    pub command_line: String,
}

impl QemuProvider {
    /// Starts the cell's QEMU once, with fresh host ports, and connects to its QMP socket. On
    /// failure, the process is killed and off the ledger.
    pub(super) async fn start(&self, ctx: &LaunchContext, prepared: &Prepared) -> Result<Started, StartError> {
        let forwards = free_ports(&ctx.probe_ports)?;
        let mut cmd = self.vm_command(prepared, &forwards);
        let command_line = command_line(&self.plan.binary, &cmd);
        let mut child = isolate(&mut cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| StartError::Spawn { binary: self.plan.binary.clone(), source })?;
        let pid = child.id().unwrap_or_default();
        let resource = QemuProcess { pid, cell: prepared.cell.clone() }.recorded();
        ctx.ledger.record(resource.clone());
        let mut stderr = StderrTail::start(child.stderr.take());
        match connect_qmp(&mut child, &mut stderr, &prepared.qmp_path).await {
            Ok(qmp) => Ok(Started { child, qmp, stderr, resource, forwards, command_line }),
            Err(e) => {
                let _ = child.kill().await;
                ctx.ledger.removed(&resource);
                let _ = std::fs::remove_file(&prepared.qmp_path);
                Err(e)
            }
        }
    }
}

/// A free host port on 127.0.0.1 for each guest port.
fn free_ports(guest_ports: &[u16]) -> Result<BTreeMap<u16, u16>, StartError> {
    let mut forwards = BTreeMap::new();
    for port in guest_ports {
        let host = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(StartError::FreePort)?;
        forwards.insert(*port, host);
    }
    Ok(forwards)
}

/// Own process group (the terminal's Ctrl-C is ours to handle) and death with the parent.
pub fn isolate(cmd: &mut Command) -> &mut Command {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.stdin(Stdio::null())
}

/// Waits for QEMU's QMP socket; if QEMU exits first, its stderr says why.
async fn connect_qmp(child: &mut Child, stderr: &mut StderrTail, socket: &Path) -> Result<Qmp, StartError> {
    let deadline = Instant::now() + QMP_WITHIN;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(StartError::Exited { status, stderr: stderr.finished().await.trim().to_string() });
        }
        if socket.exists() {
            if let Ok(qmp) = Qmp::connect(socket).await {
                return Ok(qmp);
            }
        }
        if Instant::now() > deadline {
            return Err(StartError::NoQmp);
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// The last few KiB QEMU wrote to stderr, read as it comes: an unread pipe would fill up and stall
/// QEMU, and the end says why it exited.
pub struct StderrTail {
    text: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl StderrTail {
    pub fn start(pipe: Option<ChildStderr>) -> StderrTail {
        let text = Arc::new(Mutex::new(Vec::new()));
        let reader = pipe.map(|mut pipe| {
            let text = text.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                    let mut text = lock(&text);
                    text.extend_from_slice(&buf[..n]);
                    let excess = text.len().saturating_sub(STDERR_TAIL);
                    text.drain(..excess);
                }
            })
        });
        StderrTail { text, reader }
    }

    /// Everything kept, once QEMU has closed stderr (it exited); waits briefly for the last bytes.
    pub async fn finished(&mut self) -> String {
        if let Some(reader) = self.reader.as_mut() {
            if timeout(Duration::from_secs(1), reader).await.is_ok() {
                self.reader = None;
            }
        }
        String::from_utf8_lossy(&lock(&self.text)).into_owned()
    }
}

impl Drop for StderrTail {
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            reader.abort();
        }
    }
}

/// What QMP events say about a VM that stopped: a panic, or the kind of shutdown.
pub fn reason_from_events(events: &[QmpEvent]) -> Option<String> {
    if events.iter().any(|e| e.name == "GUEST_PANICKED") {
        return Some("guest panicked".into());
    }
    let shutdown = events.iter().find(|e| e.name == "SHUTDOWN")?;
    let reason = shutdown.data.get("reason").and_then(Value::as_str).unwrap_or("unknown");
    Some(match reason {
        "guest-shutdown" => "guest powered off".into(),
        // Under `-no-reboot` a reboot ends QEMU too.
        "guest-reset" => "guest rebooted or reset".into(),
        "guest-panic" => "guest panicked".into(),
        "host-signal" => "qemu was stopped by a signal".into(),
        other => format!("vm shut down ({other})"),
    })
}

/// What `query-status` says about a VM that stopped; `None` while it runs or is about to.
pub fn reason_from_status(status: &str) -> Option<String> {
    Some(
        match status {
            "guest-panicked" => "guest panicked",
            "shutdown" => "vm shut down",
            "internal-error" => "qemu stopped on an internal error",
            "io-error" => "vm stopped on a disk i/o error",
            "watchdog" => "guest watchdog fired",
            "suspended" => "guest suspended itself",
            _ => return None,
        }
        .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str, data: Value) -> QmpEvent {
        QmpEvent { name: name.into(), data }
    }

    #[test]
    fn stop_reasons_from_events_and_status() {
        let panicked = [event("GUEST_PANICKED", json!({"action": "pause"})), event("STOP", Value::Null)];
        assert_eq!(reason_from_events(&panicked).as_deref(), Some("guest panicked"));
        let off = [event("SHUTDOWN", json!({"guest": true, "reason": "guest-shutdown"}))];
        assert_eq!(reason_from_events(&off).as_deref(), Some("guest powered off"));
        let reset = [event("SHUTDOWN", json!({"guest": true, "reason": "guest-reset"}))];
        assert_eq!(reason_from_events(&reset).as_deref(), Some("guest rebooted or reset"));
        let other = [event("SHUTDOWN", json!({"guest": false, "reason": "host-ui"}))];
        assert_eq!(reason_from_events(&other).as_deref(), Some("vm shut down (host-ui)"));
        assert_eq!(reason_from_events(&[event("RESUME", Value::Null)]), None);
        assert_eq!(reason_from_events(&[]), None);

        assert_eq!(reason_from_status("guest-panicked").as_deref(), Some("guest panicked"));
        assert_eq!(reason_from_status("internal-error").as_deref(), Some("qemu stopped on an internal error"));
        for running in ["running", "prelaunch", "paused", "inmigrate", ""] {
            assert_eq!(reason_from_status(running), None, "{running}");
        }
    }

    #[tokio::test]
    async fn stderr_tail_keeps_the_end() {
        let mut child = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 2000 ]; do echo line $i >&2; i=$((i+1)); done; echo last words >&2"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut tail = StderrTail::start(child.stderr.take());
        child.wait().await.unwrap();
        let text = tail.finished().await;
        assert!(text.len() <= STDERR_TAIL, "{}", text.len());
        assert!(text.ends_with("line 1999\nlast words\n"), "{text}");
    }
}
