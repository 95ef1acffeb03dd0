//! The `qemu` provider: the same spec on a local VM, headless, with no cloud account.
//!
//! Each cell is one `qemu-system-x86_64` process: serial console to a file in the cell's directory, QMP
//! on a unix socket for status, screenshots and shutdown, and user-mode networking with `restrict=on`
//! (the guest reaches nothing) plus a host forward on 127.0.0.1 for every probed port.
//!
//! No QEMU process outlives its cell: it runs in its own process group (a terminal Ctrl-C reaches
//! amiprobe, which shuts it down in order), dies with amiprobe (`PR_SET_PDEATHSIG`), is killed when
//! its handle is dropped (a panicking task), and is listed in the run's ledger.

mod qmp;
mod sweep;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;
use tokio::time::{sleep, timeout, Instant};

use super::{CleanupStep, LaunchContext, Ledger, Machine, Provider, ProviderError, Resource};
use crate::plan::{Cell, Plan, QemuImagePlan, QemuPlan};
use crate::probe::{ConnectMeaning, Endpoint};
use crate::spec::Accel;
use qmp::Qmp;

/// QEMU says this when a forwarded host port is taken; we pick other ports and start again.
const PORT_TAKEN: &str = "Could not set up host forwarding rule";
const LAUNCH_ATTEMPTS: usize = 5;

pub struct QemuProvider {
    plan: QemuPlan,
    /// `auto` resolved once per run, by a real boot.
    accel: OnceCell<&'static str>,
}

impl QemuProvider {
    pub fn new(plan: QemuPlan) -> Self {
        QemuProvider { plan, accel: OnceCell::new() }
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
    image_args(&mut cmd, image);
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

fn image_args(cmd: &mut Command, image: &QemuImagePlan) {
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
            // snapshot=on: the image under test is never written to.
            cmd.arg("-drive").arg(format!("file={},if=virtio,snapshot=on", disk.display()));
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
    async fn preflight(&self, plan: &Plan) -> Result<Vec<String>, ProviderError> {
        let version = Command::new(&self.plan.binary).arg("--version").output().await.map_err(|e| {
            ProviderError::new(format!(
                "failed to run {}: {e} (install qemu-system-x86: scripts/install-deps qemu)",
                self.plan.binary
            ))
        })?;
        if !version.status.success() {
            return Err(ProviderError::new(format!("{} --version failed", self.plan.binary)));
        }
        for cell in &plan.cells {
            let files: Vec<&PathBuf> = match self.plan.images.get(&cell.image) {
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
                        cell.image,
                        file.display()
                    )));
                }
            }
            if !self.plan.images.contains_key(&cell.image) && !Path::new(&cell.image).is_file() {
                return Err(ProviderError::new(format!(
                    "image `{}` is neither a name under provider.qemu.images nor a disk file",
                    cell.image
                )));
            }
        }
        let mut warnings = Vec::new();
        if let Some(first) = plan.cells.first() {
            let accel = self.accel(&self.plan.image(&first.image)).await;
            if self.plan.accel == Accel::Auto && accel == "tcg" {
                warnings.push("qemu: KVM unavailable or not working here; using TCG (slower)".to_string());
            }
        }
        Ok(warnings)
    }

    async fn launch(&self, cell: &Cell, ctx: &LaunchContext) -> Result<Box<dyn Machine>, ProviderError> {
        let image = self.plan.image(&cell.image);
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
            let mut forwards = BTreeMap::new();
            for port in &ctx.probe_ports {
                forwards.insert(*port, free_port()?);
            }
            let mut cmd = Command::new(&self.plan.binary);
            cmd.arg("-name")
                .arg(format!("amiprobe-{}-{}", ctx.run_id, cell.id))
                .args(["-machine", "q35", "-accel", accel])
                .args(["-m", &self.plan.memory_mib.to_string(), "-smp", &self.plan.cpus.to_string()])
                .args(["-display", "none", "-vga", "std", "-no-reboot", "-monitor", "none"])
                .arg("-serial")
                .arg(format!("file:{}", console_path.display()))
                .arg("-qmp")
                .arg(format!("unix:{},server=on,wait=off", qmp_path.display()));
            let mut netdev = "user,id=n0,restrict=on".to_string();
            for (guest, host) in &forwards {
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            }
            cmd.args(["-netdev", &netdev, "-device", "e1000,netdev=n0"]);
            image_args(&mut cmd, &image);
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

            match connect_qmp(&mut child, &qmp_path).await {
                Ok(qmp) => {
                    return Ok(Box::new(QemuMachine {
                        child,
                        qmp,
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

    async fn remove_leftovers(&self, leftovers: Vec<Resource>) -> Vec<CleanupStep> {
        let mut steps = Vec::new();
        for resource in leftovers {
            if let Resource::Process { pid, cell } = resource {
                // SAFETY: plain kill(2) of a process we started; a stale pid is not reused this quickly
                // within one run, and the process group id equals the pid (setpgid(0, 0)).
                let rc = unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                steps.push(if rc == 0 {
                    CleanupStep::ok(format!("killed qemu {pid} of cell {cell}"))
                } else {
                    CleanupStep::ok(format!("qemu {pid} of cell {cell} was already gone"))
                });
            }
        }
        steps
    }

    async fn sweep_run(&self, run_id: &str, ledger: &Ledger) -> Vec<CleanupStep> {
        sweep::sweep(run_id, ledger)
    }
}

/// Waits for QEMU's QMP socket; if QEMU exits first, its stderr says why.
async fn connect_qmp(child: &mut Child, socket: &Path) -> Result<Qmp, String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            return Err(format!("qemu exited at start ({status}): {}", stderr.trim()));
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

struct QemuMachine {
    child: Child,
    qmp: Qmp,
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
            let status = self.qmp.execute("query-status", serde_json::json!({})).await.map_err(ProviderError::new)?;
            match status.get("status").and_then(|s| s.as_str()) {
                Some("running") => return Ok(()),
                Some("shutdown" | "guest-panicked" | "internal-error") => {
                    return Err(ProviderError::new(format!("vm stopped: {status}")));
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(ProviderError::new("vm did not start running in time"));
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
        self.screenshot_seq += 1;
        let file = self._sockets.path().join(format!("shot-{}.png", self.screenshot_seq));
        let args = serde_json::json!({ "filename": file.to_string_lossy(), "format": "png" });
        let result = match self.qmp.execute("screendump", args).await {
            Ok(_) => std::fs::read(&file).map_err(|e| ProviderError::new(format!("failed to read screendump: {e}"))),
            // QEMU before 7.1 has no PNG: take PPM, which `capture` converts.
            Err(e) if e.contains("format") => {
                let args = serde_json::json!({ "filename": file.to_string_lossy() });
                self.qmp.execute("screendump", args).await.map_err(ProviderError::new)?;
                std::fs::read(&file).map_err(|e| ProviderError::new(format!("failed to read screendump: {e}")))
            }
            Err(e) => Err(ProviderError::new(e)),
        };
        let _ = std::fs::remove_file(&file);
        result
    }

    async fn console_log(&mut self) -> Result<String, ProviderError> {
        match std::fs::read(&self.console_path) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(ProviderError::new(format!("failed to read console log: {e}"))),
        }
    }

    async fn terminate(&mut self, hurry: bool) -> Vec<CleanupStep> {
        let mut steps = Vec::new();
        if !hurry {
            match self.qmp.execute("quit", serde_json::json!({})).await {
                Ok(_) => steps.push(CleanupStep::ok("qmp quit")),
                // The connection may close before the answer arrives: that is a quit too.
                Err(e) if e.contains("closed") => steps.push(CleanupStep::ok("qmp quit")),
                Err(e) => steps.push(CleanupStep::failed("qmp quit", e)),
            }
            if let Ok(Ok(status)) = timeout(Duration::from_secs(5), self.child.wait()).await {
                steps.push(CleanupStep::ok(format!("qemu exited ({status})")));
                self.ledger.removed(&self.resource);
                return steps;
            }
        }
        match self.child.kill().await {
            Ok(()) => steps.push(CleanupStep::ok("qemu killed")),
            Err(e) => steps.push(CleanupStep::failed("kill qemu", e.to_string())),
        }
        self.ledger.removed(&self.resource);
        steps
    }
}
