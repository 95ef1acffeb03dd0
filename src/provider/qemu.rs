//! The `qemu` provider: the same spec on a local VM, headless, with no cloud account.
//!
//! Each cell is one `qemu-system-x86_64` process: serial console to a file in the cell's directory, QMP
//! on a unix socket for status, screenshots and shutdown, and user-mode networking with `restrict=on`
//! (the guest reaches nothing) plus a host forward on 127.0.0.1 for every probed port.
//!
//! A guest that stops by itself is noticed: a panic reaches QEMU through a `pvpanic` device and
//! pauses the VM (its last screen stays for a screenshot), a poweroff or reboot ends QEMU
//! (`-no-reboot`); [`Machine::stopped`] tells the engine either way, and cleanup of a QEMU that has
//! already exited is not a failure.
//!
//! No QEMU process outlives its cell: it runs in its own process group (a terminal Ctrl-C reaches
//! amiprobe, which shuts it down in order), dies with amiprobe (`PR_SET_PDEATHSIG`), is killed when
//! its handle is dropped (a panicking task), and is listed in the run's ledger.

mod config;
mod qmp;
mod sweep;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStderr, Command};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::{
    Checked, CleanupStep, Field, LaunchContext, LaunchPlan, Ledger, Machine, Provider, ProviderError, Resource,
};
use crate::cell::Cell;
use crate::probe::{ConnectMeaning, Endpoint};
use crate::spec::{FieldPath, Problem};
pub use config::{Accel, QemuImage, QemuImagePlan, QemuPlan, QemuSpec};
use qmp::{Qmp, QmpError, QmpEvent};

/// What a qemu cell can set, fixed in `launch:` or as a matrix axis: the image, a name under
/// `provider.qemu.images` or a disk path.
pub static FIELDS: &[Field] = &[Field::plain::<String>("image", true)];

/// What of the generic launch settings QEMU can't do yet: user data (no NoCloud seed is written).
pub fn check_launch(launch: &LaunchPlan, path: &FieldPath, problems: &mut Vec<Problem>) {
    if launch.user_data.is_some() {
        problems.push(Problem::at(path.key("user_data"), "the qemu provider has no user data"));
    }
}

/// QEMU says this when a forwarded host port is taken; we pick other ports and start again.
const PORT_TAKEN: &str = "Could not set up host forwarding rule";
const LAUNCH_ATTEMPTS: usize = 5;
/// `stopped()` runs about once a second: a QEMU that does not answer a status query this fast is busy,
/// not stopped; the next poll asks again.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// The stderr kept for error messages: the end is where QEMU says why it stopped.
const STDERR_TAIL: usize = 4096;

pub struct QemuProvider {
    plan: QemuPlan,
    /// `auto` resolved once per run, by a real boot.
    accel: OnceCell<&'static str>,
    /// QEMU's (major, minor) version, learnt by `preflight`.
    version: std::sync::OnceLock<(u32, u32)>,
}

impl QemuProvider {
    pub fn new(plan: QemuPlan) -> Self {
        QemuProvider { plan, accel: OnceCell::new(), version: std::sync::OnceLock::new() }
    }

    /// `-action` arrived in QEMU 6.0; before it, a guest panic paused the VM anyway.
    fn panic_pauses_args(&self) -> &'static [&'static str] {
        match self.version.get() {
            Some(&(major, _)) if major < 6 => &[],
            _ => &["-action", "panic=pause"],
        }
    }

    async fn accel(&self, probe_image: &QemuImagePlan) -> &'static str {
        *self
            .accel
            .get_or_init(|| async {
                match self.plan.accel {
                    Accel::Tcg => "tcg",
                    Accel::Kvm => "kvm",
                    Accel::Auto => {
                        if kvm_boots(&self.plan, probe_image).await {
                            "kvm"
                        } else {
                            "tcg"
                        }
                    }
                }
            })
            .await
    }
}

/// `/dev/kvm` existing is not enough: on some hosts guests die at once with "KVM internal error".
/// Boot the image for real for a few seconds and require console output and a live process.
async fn kvm_boots(plan: &QemuPlan, image: &QemuImagePlan) -> bool {
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return false;
    }
    let Ok(dir) = tempfile::Builder::new().prefix("amiprobe-kvm-").tempdir() else {
        return false;
    };
    let serial = dir.path().join("serial.log");
    let mut cmd = Command::new(&plan.binary);
    cmd.args(["-accel", "kvm", "-m", &plan.memory_mib.to_string(), "-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(["-nic", "none", "-monitor", "none"]);
    if image_args(&mut cmd, image).is_err() {
        return false;
    }
    let Ok(mut child) = isolate(&mut cmd).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true).spawn()
    else {
        return false;
    };
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut booted = false;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break; // died: KVM does not work here
        }
        if std::fs::metadata(&serial).map(|m| m.len() > 200).unwrap_or(false) {
            booted = true;
            sleep(Duration::from_millis(1500)).await;
            booted &= matches!(child.try_wait(), Ok(None));
            break;
        }
        sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill().await;
    booted
}

/// `-kernel`, `-initrd` and `-append` take their value whole (a comma is just a comma); a disk goes
/// into a `-drive` option string.
fn image_args(cmd: &mut Command, image: &QemuImagePlan) -> Result<(), ProviderError> {
    match image {
        QemuImagePlan::Kernel { kernel, initrd, append } => {
            cmd.arg("-kernel").arg(kernel);
            if let Some(initrd) = initrd {
                cmd.arg("-initrd").arg(initrd);
            }
            if let Some(append) = append {
                cmd.arg("-append").arg(append);
            }
        }
        QemuImagePlan::Disk(disk) => {
            let format = DiskFormat::of_file(disk)?;
            // snapshot=on: the image under test is never written to. An explicit format: left to
            // guess, QEMU warns, and a raw disk that starts like another format would be misread.
            let mut drive = OsString::from("file=");
            drive.push(opt_value(disk.as_os_str()));
            drive.push(format!(",format={},if=virtio,snapshot=on", format.name()));
            cmd.arg("-drive").arg(drive);
        }
    }
    Ok(())
}

/// A value inside a QEMU option string (`-drive file=...,if=virtio`): a literal comma is written `,,`.
fn opt_value(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// A disk image's format, told by its first bytes, as QEMU's `format=` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiskFormat {
    Qcow2,
    Vmdk,
    Raw,
}

impl DiskFormat {
    fn detect(header: &[u8]) -> DiskFormat {
        if header.starts_with(b"QFI\xfb") {
            DiskFormat::Qcow2
        } else if header.starts_with(b"KDMV") || header.starts_with(b"# Disk DescriptorFile") {
            // A sparse extent, or the text descriptor of a split or flat image.
            DiskFormat::Vmdk
        } else {
            DiskFormat::Raw
        }
    }

    fn of_file(path: &Path) -> Result<DiskFormat, ProviderError> {
        let mut header = Vec::with_capacity(64);
        std::fs::File::open(path)
            .and_then(|f| f.take(64).read_to_end(&mut header))
            .map_err(|e| ProviderError::new(format!("failed to read disk image {}: {e}", path.display())))?;
        Ok(DiskFormat::detect(&header))
    }

    fn name(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Raw => "raw",
        }
    }
}

/// Own process group (the terminal's Ctrl-C is ours to handle) and death with the parent.
fn isolate(cmd: &mut Command) -> &mut Command {
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

fn free_port() -> Result<u16, ProviderError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ProviderError::new(format!("failed to find a free port: {e}")))
}

#[async_trait]
impl Provider for QemuProvider {
    async fn preflight(&self, cells: &[Cell]) -> Result<Checked, ProviderError> {
        let version = Command::new(&self.plan.binary).arg("--version").output().await.map_err(|e| {
            ProviderError::new(format!(
                "failed to run {}: {e} (install qemu-system-x86: scripts/install-deps qemu)",
                self.plan.binary
            ))
        })?;
        if !version.status.success() {
            return Err(ProviderError::new(format!("{} --version failed", self.plan.binary)));
        }
        if let Some(v) = parse_version(&String::from_utf8_lossy(&version.stdout)) {
            let _ = self.version.set(v);
        }
        for cell in cells {
            let files: Vec<&PathBuf> = match self.plan.images.get(cell.image()) {
                Some(QemuImagePlan::Kernel { kernel, initrd, .. }) => {
                    std::iter::once(kernel).chain(initrd.iter()).collect()
                }
                Some(QemuImagePlan::Disk(disk)) => vec![disk],
                None => vec![],
            };
            for file in files {
                if !file.is_file() {
                    return Err(ProviderError::new(format!(
                        "image `{}`: {} does not exist (build it with scripts/build-test-image)",
                        cell.image(),
                        file.display()
                    )));
                }
            }
            if !self.plan.images.contains_key(cell.image()) && !Path::new(&cell.image()).is_file() {
                return Err(ProviderError::new(format!(
                    "image `{}` is neither a name under provider.qemu.images nor a disk file",
                    cell.image()
                )));
            }
        }
        let mut warnings = Vec::new();
        if let Some(first) = cells.first() {
            let accel = self.accel(&self.plan.image(first.image())).await;
            if self.plan.accel == Accel::Auto && accel == "tcg" {
                warnings.push("qemu: KVM unavailable or not working here; using TCG (slower)".to_string());
            }
        }
        Ok(Checked { warnings, impossible: Vec::new() })
    }

    async fn launch(&self, cell: &Cell, ctx: &LaunchContext) -> Result<Box<dyn Machine>, ProviderError> {
        let image = self.plan.image(cell.image());
        let accel = self.accel(&image).await;
        let sockets = tempfile::Builder::new()
            .prefix("amiprobe-qmp-")
            .tempdir()
            .map_err(|e| ProviderError::new(format!("failed to create a socket directory: {e}")))?;
        let qmp_path = sockets.path().join("qmp.sock");
        // The raw serial stream stays in the cell's directory even if amiprobe is killed; the engine
        // writes the cell's console.log from it at the end.
        let console_path = ctx.cell_dir.join("serial.log");

        let mut last_error = String::new();
        for _ in 0..LAUNCH_ATTEMPTS {
            if ctx.cancel.is_cancelled() {
                return Err(ProviderError::interrupted("interrupted before starting qemu"));
            }
            let mut forwards = BTreeMap::new();
            for port in &ctx.probe_ports {
                forwards.insert(*port, free_port()?);
            }
            let mut cmd = Command::new(&self.plan.binary);
            let mut qmp_arg = OsString::from("unix:");
            qmp_arg.push(opt_value(qmp_path.as_os_str()));
            qmp_arg.push(",server=on,wait=off");
            // `-serial file:` takes the rest of its value as the path, commas and all.
            let mut serial_arg = OsString::from("file:");
            serial_arg.push(&console_path);
            cmd.arg("-name")
                .arg(opt_value(OsStr::new(&format!("amiprobe-{}-{}", ctx.run_id, cell.id))))
                .args(["-machine", "q35", "-accel", accel])
                .args(["-m", &self.plan.memory_mib.to_string(), "-smp", &self.plan.cpus.to_string()])
                .args(["-display", "none", "-vga", "std", "-no-reboot", "-monitor", "none"])
                // A guest panic reaches QEMU through pvpanic and pauses the VM: its screen stays.
                .args(["-device", "pvpanic"])
                .args(self.panic_pauses_args())
                .arg("-serial")
                .arg(serial_arg)
                .arg("-qmp")
                .arg(qmp_arg);
            let mut netdev = "user,id=n0,restrict=on".to_string();
            for (guest, host) in &forwards {
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            }
            cmd.args(["-netdev", &netdev, "-device", "e1000,netdev=n0"]);
            image_args(&mut cmd, &image)?;
            let command_line = format!(
                "{} {}",
                self.plan.binary,
                cmd.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
            );

            let mut child = isolate(&mut cmd)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| ProviderError::new(format!("failed to start {}: {e}", self.plan.binary)))?;
            let pid = child.id().unwrap_or_default();
            let resource = Resource::Process { pid, cell: cell.id.0.clone() };
            ctx.ledger.record(resource.clone());
            let mut stderr = StderrTail::start(child.stderr.take());

            match connect_qmp(&mut child, &mut stderr, &qmp_path).await {
                Ok(qmp) => {
                    return Ok(Box::new(QemuMachine {
                        child,
                        qmp,
                        stderr,
                        exit: None,
                        waited_for_exit: false,
                        stopped: None,
                        resource,
                        ledger: ctx.ledger.clone(),
                        forwards,
                        console_path,
                        _sockets: sockets,
                        command_line,
                        accel,
                        screenshot_seq: 0,
                    }));
                }
                Err(e) => {
                    let _ = child.kill().await;
                    ctx.ledger.removed(&resource);
                    let _ = std::fs::remove_file(&qmp_path);
                    if !e.contains(PORT_TAKEN) {
                        return Err(ProviderError::new(e));
                    }
                    last_error = e;
                }
            }
        }
        Err(ProviderError::new(format!("gave up after {LAUNCH_ATTEMPTS} attempts: {last_error}")))
    }

    async fn remove_leftovers(&self, leftovers: Vec<Resource>, ledger: &Ledger) -> Vec<CleanupStep> {
        let mut steps = Vec::new();
        for resource in leftovers {
            let Resource::Process { pid, cell } = &resource else {
                continue;
            };
            // Only a process that still names this cell: a pid whose QEMU is gone may be reused.
            let step = if *pid != 0 && sweep::names_cell(*pid, cell) {
                // SAFETY: kill(2) of the QEMU we started (its process group id is its pid).
                let rc = unsafe { libc::kill(-(*pid as i32), libc::SIGKILL) };
                if rc == 0 {
                    CleanupStep::ok(format!("killed qemu {pid} of cell {cell}"))
                } else {
                    CleanupStep::failed(
                        format!("kill qemu {pid} of cell {cell}"),
                        std::io::Error::last_os_error().to_string(),
                    )
                }
            } else {
                CleanupStep::ok(format!("qemu {pid} of cell {cell} was already gone"))
            };
            if step.ok {
                ledger.removed(&resource);
            }
            steps.push(step);
        }
        steps
    }

    async fn sweep_run(&self, run_id: &str, ledger: &Ledger) -> Vec<CleanupStep> {
        sweep::sweep(run_id, ledger)
    }
}

/// "QEMU emulator version 10.0.2 (Debian ...)" -> (10, 0).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("version ")? + "version ".len()..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Waits for QEMU's QMP socket; if QEMU exits first, its stderr says why.
async fn connect_qmp(child: &mut Child, stderr: &mut StderrTail, socket: &Path) -> Result<Qmp, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("qemu exited at start ({status}): {}", stderr.finished().await.trim()));
        }
        if socket.exists() {
            if let Ok(qmp) = Qmp::connect(socket).await {
                return Ok(qmp);
            }
        }
        if Instant::now() > deadline {
            return Err("qemu did not open its qmp socket within 15s".into());
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// The last few KiB QEMU wrote to stderr, read as it comes: an unread pipe would fill up and stall
/// QEMU, and the end says why it exited.
struct StderrTail {
    text: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl StderrTail {
    fn start(pipe: Option<ChildStderr>) -> StderrTail {
        let text = Arc::new(Mutex::new(Vec::new()));
        let reader = pipe.map(|mut pipe| {
            let text = text.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                    let mut text = text.lock().unwrap_or_else(|e| e.into_inner());
                    text.extend_from_slice(&buf[..n]);
                    let excess = text.len().saturating_sub(STDERR_TAIL);
                    text.drain(..excess);
                }
            })
        });
        StderrTail { text, reader }
    }

    /// Everything kept, once QEMU has closed stderr (it exited); waits briefly for the last bytes.
    async fn finished(&mut self) -> String {
        if let Some(reader) = self.reader.as_mut() {
            if timeout(Duration::from_secs(1), reader).await.is_ok() {
                self.reader = None;
            }
        }
        String::from_utf8_lossy(&self.text.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Drop for StderrTail {
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            reader.abort();
        }
    }
}

struct QemuMachine {
    child: Child,
    qmp: Qmp,
    stderr: StderrTail,
    /// How the QEMU process ended, once it has.
    exit: Option<ExitStatus>,
    waited_for_exit: bool,
    /// Why the VM stopped by itself, once seen: a stop is for good.
    stopped: Option<String>,
    resource: Resource,
    ledger: Ledger,
    /// Guest port -> host port on 127.0.0.1.
    forwards: BTreeMap<u16, u16>,
    console_path: PathBuf,
    _sockets: tempfile::TempDir,
    command_line: String,
    accel: &'static str,
    screenshot_seq: u64,
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

/// What QMP events say about a VM that stopped: a panic, or the kind of shutdown.
fn reason_from_events(events: &[QmpEvent]) -> Option<String> {
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
fn reason_from_status(status: &str) -> Option<String> {
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

#[async_trait]
impl Machine for QemuMachine {
    fn facts(&self) -> serde_json::Value {
        serde_json::json!({
            "pid": self.child.id(),
            "accel": self.accel,
            "command_line": self.command_line,
            "forwards": self.forwards.iter().map(|(g, h)| (g.to_string(), format!("127.0.0.1:{h}"))).collect::<BTreeMap<_, _>>(),
        })
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

    fn endpoint(&self, guest_port: u16) -> Result<Endpoint, String> {
        self.forwards
            .get(&guest_port)
            .map(|host| Endpoint { host: "127.0.0.1".into(), port: *host })
            .ok_or_else(|| format!("guest port {guest_port} is not forwarded"))
    }

    fn own_addresses(&self) -> Vec<ipnet::IpNet> {
        // Every forward listens on 127.0.0.1; nothing else is this machine.
        vec![ipnet::IpNet::from(std::net::IpAddr::from([127, 0, 0, 1]))]
    }

    fn connect_meaning(&self) -> ConnectMeaning {
        ConnectMeaning::MaybeProxy
    }

    async fn screenshot(&mut self) -> Result<Vec<u8>, ProviderError> {
        // A panicked guest is paused, not gone: its last screen can still be taken.
        if let Some(status) = self.exit_status() {
            return Err(ProviderError::new(format!("no screen to capture: qemu has exited ({status})")));
        }
        self.screenshot_seq += 1;
        let file = self._sockets.path().join(format!("shot-{}.png", self.screenshot_seq));
        let args = serde_json::json!({ "filename": file.to_string_lossy(), "format": "png" });
        let result = match self.qmp.execute("screendump", args).await {
            Ok(_) => Ok(()),
            // QEMU before 7.1 has no PNG: take PPM, which `capture` converts.
            Err(QmpError::Command { desc, .. }) if desc.contains("format") => {
                let args = serde_json::json!({ "filename": file.to_string_lossy() });
                self.qmp.execute("screendump", args).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
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

    async fn terminate(&mut self, hurry: bool) -> Vec<CleanupStep> {
        let mut steps = Vec::new();
        if let Some(status) = self.exit_status() {
            steps.push(CleanupStep::ok(format!("qemu had already exited ({status})")));
            self.ledger.removed(&self.resource);
            return steps;
        }
        if !hurry {
            if self.qmp.is_closed() {
                // QMP closed by QEMU itself: it is exiting, not ours to tell.
                if let Some(status) = self.exit_status_soon().await {
                    steps.push(CleanupStep::ok(format!("qemu had already exited ({status})")));
                    self.ledger.removed(&self.resource);
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
                    self.ledger.removed(&self.resource);
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
                steps.push(CleanupStep::failed("kill qemu", e.to_string()));
                return steps;
            }
        }
        self.ledger.removed(&self.resource);
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commas_in_option_values_are_doubled() {
        assert_eq!(opt_value(OsStr::new("/tmp/a,b/c,,d.qcow2")), OsString::from("/tmp/a,,b/c,,,,d.qcow2"));
        assert_eq!(opt_value(OsStr::new("/plain/path")), OsString::from("/plain/path"));
        // Not UTF-8: bytes pass through untouched.
        let odd = OsStr::from_bytes(b"/tmp/\xff,x");
        assert_eq!(opt_value(odd).as_bytes(), b"/tmp/\xff,,x");
    }

    #[test]
    fn disk_format_comes_from_the_magic_bytes() {
        assert_eq!(DiskFormat::detect(b"QFI\xfb\x00\x00\x00\x03"), DiskFormat::Qcow2);
        assert_eq!(DiskFormat::detect(b"KDMV\x01\x00\x00\x00"), DiskFormat::Vmdk);
        assert_eq!(DiskFormat::detect(b"# Disk DescriptorFile\nversion=1\n"), DiskFormat::Vmdk);
        assert_eq!(DiskFormat::detect(b"\xeb\x63\x90MBR"), DiskFormat::Raw);
        assert_eq!(DiskFormat::detect(b""), DiskFormat::Raw);
        assert_eq!(DiskFormat::detect(b"QFI"), DiskFormat::Raw);
    }

    #[test]
    fn drive_argument_names_format_and_quotes_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("a,b.qcow2");
        std::fs::write(&disk, b"QFI\xfb\x00\x00\x00\x03rest").unwrap();
        let mut cmd = Command::new("qemu-system-x86_64");
        image_args(&mut cmd, &QemuImagePlan::Disk(disk.clone())).unwrap();
        let args: Vec<String> = cmd.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let quoted = disk.display().to_string().replace(',', ",,");
        assert_eq!(args, ["-drive".to_string(), format!("file={quoted},format=qcow2,if=virtio,snapshot=on")]);

        let missing = image_args(&mut Command::new("x"), &QemuImagePlan::Disk(dir.path().join("nope.img")));
        assert!(missing.unwrap_err().message.contains("failed to read disk image"));
    }

    #[test]
    fn kernel_paths_and_command_line_are_passed_whole() {
        let image = QemuImagePlan::Kernel {
            kernel: PathBuf::from("/k,1/vmlinuz"),
            initrd: Some(PathBuf::from("/k,1/initrd.img")),
            append: Some("console=ttyS0 a=b,c".into()),
        };
        let mut cmd = Command::new("qemu-system-x86_64");
        image_args(&mut cmd, &image).unwrap();
        let args: Vec<String> = cmd.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-kernel", "/k,1/vmlinuz", "-initrd", "/k,1/initrd.img", "-append", "console=ttyS0 a=b,c"]);
    }

    #[test]
    fn versions_are_read_from_the_banner() {
        assert_eq!(parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)\n"), Some((10, 0)));
        assert_eq!(parse_version("QEMU emulator version 5.2.0\n"), Some((5, 2)));
        assert_eq!(parse_version("something else"), None);
    }

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
