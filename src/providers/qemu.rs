//! The `qemu` provider: the same spec on a local VM, headless, with no cloud account.
//!
//! Each cell is one `qemu-system-x86_64` process: serial console to a file in the cell's directory, QMP
//! on a unix socket for status, screenshots and shutdown, and user-mode networking with `restrict=on`
//! (the guest reaches nothing) plus a host forward on 127.0.0.1 for every probed port.
//!
//! The hardware is a cell's launch fields (`hardware.rs`): a size (memory and vCPUs, named or by EC2
//! instance type), the disk bus, the network card, BIOS or UEFI (OVMF, a variable store per cell),
//! extra blank disks. Every cell also gets a NoCloud seed (`seed.rs`), a small FAT volume labelled
//! `cidata` with the spec's user data and the run's public key, as cloud-init on EC2 would get them
//! from the metadata service. What a cell made in its directory (seed, disks, variable store) is
//! deleted with it. The image itself is never written to: `snapshot=on` sends the guest's writes to
//! a temporary overlay, whatever the format.
//!
//! A guest that stops by itself is noticed: a panic reaches QEMU through a `pvpanic` device and
//! pauses the VM (its last screen stays for a screenshot), a poweroff or reboot ends QEMU
//! (`-no-reboot`); [`Machine::stopped`] tells the engine either way, and cleanup of a QEMU that has
//! already exited is not a failure.
//!
//! No QEMU process outlives its cell: it runs in its own process group (a terminal Ctrl-C reaches
//! amiprobe, which shuts it down in order), dies with amiprobe (`PR_SET_PDEATHSIG`), is killed when
//! its handle is dropped (a panicking task), and is listed in the run's ledger.
//!
//! This file holds [`QemuProvider`]: preflight, a launch read as its steps, and the removal of what a
//! run left. The steps live beside it, one concern a file:
//! - `accel.rs`: `accel: auto` resolved once per run, with the KVM proof (`kvm.rs`: a `hlt` on a
//!   vCPU, then the first image booted under KVM), skipped without a usable `/dev/kvm`;
//!   `kvm_cache.rs`: its answer remembered for the host's boot in amiprobe's cache directory, and
//!   where each run's answer came from (preflight's warning);
//! - `scratch.rs`: the files a cell makes in its directory (UEFI variables, extra disks, the seed of
//!   `seed.rs`) and the options attaching them; `argv.rs`: the rest of QEMU's command line;
//! - `process.rs`: one start of QEMU (isolated, its stderr's tail kept, QMP connected over `qmp.rs`)
//!   and why a QEMU stopped; `machine.rs`: the running `QemuMachine` the engine drives;
//! - `config.rs` the `provider.qemu` section, `hardware.rs` the launch fields, `firmware.rs` what
//!   SeaBIOS says, `kind.rs` the registry's entry, `resource.rs` the ledger's entry, `sweep.rs` the
//!   end-of-run sweep.

mod accel;
mod argv;
mod config;
mod firmware;
mod guest_agent;
mod hardware;
mod kind;
mod kvm;
mod kvm_cache;
mod machine;
mod process;
mod qmp;
mod resource;
mod scratch;
mod seed;
mod sweep;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::cell::Cell;
use crate::provider::field::schema_of;
use crate::provider::key::OnceKey;
use crate::provider::lifecycle;
use crate::provider::{
    Checked, CleanupStep, Field, LaunchContext, LaunchPlan, Ledger, Machine, Provider, ProviderError, Resource, RunKey,
    RunSettings,
};
use accel::AccelChoice;
pub use config::{Accel, DiskFormat, OvmfSpec, QemuImage, QemuImagePlan, QemuPlan, QemuSize, QemuSpec};
pub use hardware::{DiskBus, ExtraDisk, Firmware, Nic};
use hardware::{Hardware, HardwareError};
pub use kind::KIND;
use machine::QemuMachine;
use process::{StartError, Started};
use resource::QemuProcess;
use scratch::{OvmfError, Scratch, ScratchError};

/// What a qemu cell can set, fixed in `launch:` or as a matrix axis: the image (a name under
/// `provider.qemu.images` or a disk path) and the hardware it runs on.
pub static FIELDS: &[Field] = &[
    Field { check: crate::spec::check_plain_image, ..Field::plain::<String>("image", true) },
    Field::plain::<String>("size", false),
    Field::plain::<String>("instance_type", false),
    Field::plain::<DiskBus>("disk_bus", false),
    Field::plain::<Nic>("nic", false),
    Field::plain::<Firmware>("firmware", false),
    Field {
        name: "disks",
        list_valued: true,
        required: false,
        check: hardware::check_disks,
        schema: schema_of::<Vec<ExtraDisk>>,
    },
];

/// How often a cell's QEMU is started before giving up, when each start finds a forwarded host port
/// taken (another program bound it between our choice and QEMU's bind).
const LAUNCH_ATTEMPTS: usize = 5;

pub struct QemuProvider {
    plan: QemuPlan,
    launch: LaunchPlan,
    /// `auto` resolved once per run (`accel.rs`): the accelerator, and how `auto` chose it.
    accel: OnceCell<AccelChoice>,
    /// QEMU's (major, minor) version, learnt by `preflight`.
    version: std::sync::OnceLock<(u32, u32)>,
    /// The first line of `qemu --version`, learnt by `preflight`: part of the key under which
    /// `accel: auto`'s answer is remembered (`kvm_cache.rs`).
    banner: std::sync::OnceLock<String>,
    /// The run's key (`key_pair: ephemeral`): its public half goes into every cell's seed.
    run_key: OnceKey,
}

/// What preflight finds wrong before any cell starts.
#[derive(Debug, thiserror::Error)]
enum PreflightError {
    #[error("failed to run {binary}: {source} (install qemu-system-x86: scripts/install-deps qemu)")]
    NoQemu { binary: String, source: std::io::Error },
    #[error("{0} --version failed")]
    Version(String),
    #[error("image `{image}`: {} does not exist (build it with scripts/build-test-image)", .file.display())]
    MissingFile { image: String, file: PathBuf },
    #[error("image `{0}` is neither a name under provider.qemu.images nor a disk file")]
    UnknownImage(String),
    #[error(transparent)]
    Hardware(#[from] HardwareError),
    #[error(transparent)]
    Ovmf(#[from] OvmfError),
}

/// Why a cell's QEMU did not come up.
#[derive(Debug, thiserror::Error)]
enum LaunchError {
    #[error("interrupted before starting qemu")]
    Interrupted,
    #[error(transparent)]
    Hardware(#[from] HardwareError),
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    #[error("failed to create a socket directory: {0}")]
    Sockets(std::io::Error),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("gave up after {} attempts: {last}", LAUNCH_ATTEMPTS)]
    GaveUp { last: StartError },
}

impl From<PreflightError> for ProviderError {
    fn from(e: PreflightError) -> ProviderError {
        ProviderError::new(e.to_string())
    }
}

impl From<LaunchError> for ProviderError {
    fn from(e: LaunchError) -> ProviderError {
        match e {
            LaunchError::Interrupted => ProviderError::interrupted(e.to_string()),
            _ => ProviderError::new(e.to_string()),
        }
    }
}

/// What a cell's launch makes ready before QEMU starts, the same for every start attempt.
struct Prepared {
    /// The cell's id, as its ledger entry names it.
    cell: String,
    /// QEMU's `-name`, `amiprobe-RUN-CELL`: how the sweep finds it.
    name: String,
    accel: &'static str,
    hardware: Hardware,
    /// The options the cell's firmware, image and disks add (`scratch.rs`).
    disk_args: Vec<OsString>,
    /// Files made in the cell's directory; they go with the cell, also when the launch fails.
    scratch: Scratch,
    /// The QMP socket's own directory, removed with the machine.
    sockets: tempfile::TempDir,
    qmp_path: PathBuf,
    /// The guest agent's socket, beside QMP's, when a probe runs commands through it.
    agent_path: Option<PathBuf>,
    /// The raw serial stream: it stays in the cell's directory even if amiprobe is killed; the
    /// engine writes the cell's console.log from it at the end.
    console_path: PathBuf,
    /// SeaBIOS's messages (`firmware.rs`); `None` under UEFI, where OVMF speaks on the console.
    firmware_log: Option<PathBuf>,
    login_key: Option<Arc<RunKey>>,
}

impl QemuProvider {
    pub fn new(plan: QemuPlan, run: RunSettings) -> Self {
        let os = run.launch.os;
        QemuProvider {
            plan,
            launch: run.launch,
            accel: OnceCell::new(),
            version: std::sync::OnceLock::new(),
            banner: std::sync::OnceLock::new(),
            run_key: OnceKey::new(os),
        }
    }

    /// Runs `qemu --version`: QEMU is there, and which options it knows.
    async fn learn_version(&self) -> Result<(), PreflightError> {
        let binary = &self.plan.binary;
        let version = Command::new(binary)
            .arg("--version")
            .output()
            .await
            .map_err(|source| PreflightError::NoQemu { binary: binary.clone(), source })?;
        if !version.status.success() {
            return Err(PreflightError::Version(binary.clone()));
        }
        let stdout = String::from_utf8_lossy(&version.stdout);
        if let Some(v) = parse_version(&stdout) {
            let _ = self.version.set(v);
        }
        if let Some(banner) = stdout.lines().next().map(str::trim).filter(|line| !line.is_empty()) {
            let _ = self.banner.set(banner.to_string());
        }
        Ok(())
    }

    /// A cell's image files exist and its hardware is known; `true` when it boots UEFI.
    fn check_cell(&self, cell: &Cell) -> Result<bool, PreflightError> {
        let files: Vec<&PathBuf> = match self.plan.images.get(cell.image()) {
            Some(QemuImagePlan::Kernel { kernel, initrd, .. }) => {
                std::iter::once(kernel).chain(initrd.iter()).collect()
            }
            Some(QemuImagePlan::Disk { path, .. }) => vec![path],
            None => vec![],
        };
        if let Some(file) = files.into_iter().find(|file| !file.is_file()) {
            return Err(PreflightError::MissingFile { image: cell.image().to_string(), file: file.clone() });
        }
        if !self.plan.images.contains_key(cell.image()) && !Path::new(&cell.image()).is_file() {
            return Err(PreflightError::UnknownImage(cell.image().to_string()));
        }
        let hardware = Hardware::of(cell, &self.plan)?;
        Ok(hardware.firmware == Firmware::Uefi)
    }

    /// Launch, step 1: the cell's hardware and accelerator, its files and the options they add, and
    /// where QMP, the console and the firmware will write.
    async fn prepare(&self, cell: &Cell, ctx: &LaunchContext) -> Result<Prepared, LaunchError> {
        let image = self.plan.image(cell.image());
        let hardware = Hardware::of(cell, &self.plan)?;
        let accel = self.accel(&image).await;
        let mut scratch = Scratch::default();
        let (disk_args, login_key) = self.hardware_args(cell, ctx, &image, &hardware, &mut scratch).await?;
        let sockets = tempfile::Builder::new().prefix("amiprobe-qmp-").tempdir().map_err(LaunchError::Sockets)?;
        let qmp_path = sockets.path().join("qmp.sock");
        let agent_path = ctx.agent.then(|| sockets.path().join("agent.sock"));
        let firmware_log = (hardware.firmware == Firmware::Bios).then(|| ctx.cell_dir.join(firmware::LOG));
        Ok(Prepared {
            cell: cell.id.0.clone(),
            name: format!("amiprobe-{}-{}", ctx.run_id, cell.id),
            accel,
            hardware,
            disk_args,
            scratch,
            sockets,
            qmp_path,
            agent_path,
            console_path: ctx.cell_dir.join("serial.log"),
            firmware_log,
            login_key,
        })
    }

    /// Launch, step 2: QEMU started and its QMP connected, started again with other host ports when
    /// QEMU found one taken.
    async fn start_with_retries(&self, ctx: &LaunchContext, prepared: &Prepared) -> Result<Started, LaunchError> {
        let mut attempt = 1;
        loop {
            if ctx.cancel.is_cancelled() {
                return Err(LaunchError::Interrupted);
            }
            match self.start(ctx, prepared).await {
                Err(e) if e.port_taken() && attempt < LAUNCH_ATTEMPTS => attempt += 1,
                Err(last) if last.port_taken() => return Err(LaunchError::GaveUp { last }),
                started => return started.map_err(LaunchError::from),
            }
        }
    }
}

/// Kills the QEMU a ledger entry names, if it still runs as that cell's.
fn kill_leftover(pid: u32, cell: &str) -> CleanupStep {
    // Only a process that still names this cell: a pid whose QEMU is gone may be reused.
    if pid == 0 || !sweep::names_cell(pid, cell) {
        return CleanupStep::ok(format!("qemu {pid} of cell {cell} was already gone"));
    }
    // SAFETY: kill(2) of the QEMU we started (its process group id is its pid).
    let rc = unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    if rc == 0 {
        CleanupStep::ok(format!("killed qemu {pid} of cell {cell}"))
    } else {
        CleanupStep::failed(format!("kill qemu {pid} of cell {cell}"), std::io::Error::last_os_error().to_string())
    }
}

#[async_trait]
impl Provider for QemuProvider {
    async fn preflight(&self, cells: &[Cell]) -> Result<Checked, ProviderError> {
        self.learn_version().await?;
        let mut uefi = false;
        for cell in cells {
            uefi |= self.check_cell(cell)?;
        }
        if uefi {
            self.ovmf().map_err(PreflightError::from)?;
        }
        let mut warnings = Vec::new();
        if let Some(first) = cells.first() {
            warnings.extend(self.accel_choice(&self.plan.image(first.image())).await.warning());
        }
        Ok(Checked { warnings, ..Checked::default() })
    }

    async fn launch(&self, cell: &Cell, ctx: &LaunchContext) -> Result<Box<dyn Machine>, ProviderError> {
        let prepared = self.prepare(cell, ctx).await?;
        let started = self.start_with_retries(ctx, &prepared).await?;
        Ok(Box::new(QemuMachine::new(started, prepared, ctx.ledger.clone())))
    }

    async fn remove_leftovers(&self, leftovers: Vec<Resource>, ledger: &Ledger) -> Vec<CleanupStep> {
        lifecycle::own::<QemuProcess>(&leftovers)
            .map(|(resource, process)| lifecycle::removed(ledger, resource, kill_leftover(process.pid, &process.cell)))
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_banner() {
        assert_eq!(parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)\n"), Some((10, 0)));
        assert_eq!(parse_version("QEMU emulator version 5.2.0\n"), Some((5, 2)));
        assert_eq!(parse_version("something else"), None);
    }
}
