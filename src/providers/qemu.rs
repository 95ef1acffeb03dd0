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

mod config;
mod firmware;
mod hardware;
mod kind;
mod kvm;
mod qmp;
mod resource;
mod seed;
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

use crate::cell::Cell;
use crate::provider::field::schema_of;
use crate::provider::key::OnceKey;
use crate::provider::{
    Checked, CleanupStep, ConnectMeaning, Endpoint, Field, Health, LaunchContext, LaunchPlan, Ledger, Machine,
    Provider, ProviderError, Resource, RunSettings, Unreachable,
};
use crate::spec::KeyPair;
pub use config::{Accel, DiskFormat, OvmfSpec, QemuImage, QemuImagePlan, QemuPlan, QemuSize, QemuSpec};
pub use hardware::{DiskBus, ExtraDisk, Firmware, Nic};
use hardware::{Drives, Hardware};
pub use kind::KIND;
use qmp::{Qmp, QmpError, QmpEvent};
use resource::QemuProcess;

/// What a qemu cell can set, fixed in `launch:` or as a matrix axis: the image (a name under
/// `provider.qemu.images` or a disk path) and the hardware it runs on.
pub static FIELDS: &[Field] = &[
    Field::plain::<String>("image", true),
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

/// The firmware files Debian's `ovmf` package installs: the 4M pair first (what current Debian and
/// Ubuntu ship), then the older 2M pair. Code and variables must come from the same pair.
const OVMF_PAIRS: [(&str, &str); 2] = [
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
];

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
    launch: LaunchPlan,
    /// `auto` resolved once per run (`kvm_works`): the accelerator, and why not KVM.
    accel: OnceCell<(&'static str, Option<String>)>,
    /// QEMU's (major, minor) version, learnt by `preflight`.
    version: std::sync::OnceLock<(u32, u32)>,
    /// The run's key (`key_pair: ephemeral`): its public half goes into every cell's seed.
    run_key: OnceKey,
}

impl QemuProvider {
    pub fn new(plan: QemuPlan, run: RunSettings) -> Self {
        let os = run.launch.os;
        QemuProvider {
            plan,
            launch: run.launch,
            accel: OnceCell::new(),
            version: std::sync::OnceLock::new(),
            run_key: OnceKey::new(os),
        }
    }

    /// The UEFI firmware: `provider.qemu.ovmf`, else the first pair Debian's `ovmf` installs.
    fn ovmf(&self) -> Result<(PathBuf, PathBuf), ProviderError> {
        if let Some((code, vars)) = &self.plan.ovmf {
            for file in [code, vars] {
                if !file.is_file() {
                    return Err(ProviderError::new(format!("provider.qemu.ovmf: {} does not exist", file.display())));
                }
            }
            return Ok((code.clone(), vars.clone()));
        }
        OVMF_PAIRS
            .iter()
            .map(|(code, vars)| (PathBuf::from(code), PathBuf::from(vars)))
            .find(|(code, vars)| code.is_file() && vars.is_file())
            .ok_or_else(|| {
                ProviderError::new(
                    "firmware: uefi needs OVMF: no OVMF_CODE(_4M).fd with its OVMF_VARS under /usr/share/OVMF \
                     (install the ovmf package: scripts/install-deps qemu; or set provider.qemu.ovmf)",
                )
            })
    }

    /// `-action` arrived in QEMU 6.0; before it, a guest panic paused the VM anyway.
    fn panic_pauses_args(&self) -> &'static [&'static str] {
        match self.version.get() {
            Some(&(major, _)) if major < 6 => &[],
            _ => &["-action", "panic=pause"],
        }
    }

    async fn accel(&self, first: &QemuImagePlan) -> &'static str {
        self.accel_and_why(first).await.0
    }

    async fn accel_and_why(&self, first: &QemuImagePlan) -> &(&'static str, Option<String>) {
        self.accel
            .get_or_init(|| async {
                match self.plan.accel {
                    Accel::Tcg => ("tcg", None),
                    Accel::Kvm => ("kvm", None),
                    Accel::Auto => {
                        let started = Instant::now();
                        let works = kvm_works(&self.plan, first).await;
                        tracing::debug!("kvm proof: {works:?} in {:?}", started.elapsed());
                        match works {
                            Ok(()) => ("kvm", None),
                            Err(why) => ("tcg", Some(why)),
                        }
                    }
                }
            })
            .await
    }
}

/// How long a guest under KVM may take to say anything on its console: a working KVM boots a
/// kernel to its first lines in well under a second; TCG would take about this long.
const KVM_FIRST_WORDS: Duration = Duration::from_secs(3);
/// How long a guest that spoke must then stay alive: KVM that fails does so at once.
const KVM_ALIVE: Duration = Duration::from_millis(300);

/// Whether KVM runs guests here, proved cheapest first: a `hlt` on a vCPU (no /dev/kvm, or no
/// usable one, is known in microseconds), then the run's first image booted under KVM until its
/// console speaks. The second step is needed: some hosts run a `hlt` and even the firmware, yet hang
/// the kernel (nested virtualization without the CPU features QEMU asks for), and only a real boot
/// tells. It ends as soon as the guest speaks, so a working host pays a fraction of a second.
async fn kvm_works(plan: &QemuPlan, image: &QemuImagePlan) -> Result<(), String> {
    tokio::task::spawn_blocking(|| kvm::prove(Duration::from_secs(2)).works)
        .await
        .map_err(|e| format!("kvm proof failed: {e}"))??;
    let dir = tempfile::Builder::new()
        .prefix("amiprobe-kvm-")
        .tempdir()
        .map_err(|e| format!("failed to create a directory: {e}"))?;
    let serial = dir.path().join("serial.log");
    let mut serial_arg = OsString::from("file:");
    serial_arg.push(&serial);
    let mut args: Vec<OsString> = Vec::new();
    let mut drives = Drives::default();
    image_args(&mut args, &mut drives, image, DiskBus::VirtioBlk).map_err(|e| e.message)?;
    let mut cmd = Command::new(&plan.binary);
    cmd.args(["-machine", "q35", "-accel", "kvm", "-m", &plan.memory_mib.to_string()])
        .args(["-display", "none", "-no-reboot", "-nic", "none", "-monitor", "none"])
        .arg("-serial")
        .arg(serial_arg)
        .args(args)
        .args(drives.args);
    let mut child = isolate(&mut cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("failed to start {}: {e}", plan.binary))?;
    let deadline = Instant::now() + KVM_FIRST_WORDS;
    let result = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("qemu under kvm exited at once ({status})"));
        }
        if std::fs::metadata(&serial).is_ok_and(|m| m.len() > 0) {
            sleep(KVM_ALIVE).await;
            break match child.try_wait() {
                Ok(None) => Ok(()),
                _ => Err("qemu under kvm died right after the guest started".to_string()),
            };
        }
        if Instant::now() > deadline {
            break Err(format!("a guest under kvm said nothing in {}s", KVM_FIRST_WORDS.as_secs()));
        }
        sleep(Duration::from_millis(20)).await;
    };
    let _ = child.kill().await;
    result
}

impl QemuProvider {
    /// The options a cell's hardware and image add, the same on every start attempt: firmware, the
    /// image, the boot disk, extra disks and the NoCloud seed, each file made in the cell's directory
    /// and listed in `scratch`.
    async fn hardware_args(
        &self,
        cell: &Cell,
        ctx: &LaunchContext,
        image: &QemuImagePlan,
        hardware: &Hardware,
        scratch: &mut Scratch,
    ) -> Result<Vec<OsString>, ProviderError> {
        let mut args: Vec<OsString> = Vec::new();
        if hardware.firmware == Firmware::Uefi {
            let (code, vars) = self.ovmf()?;
            // The variable store is written by the firmware: each cell its own copy, never the template.
            let own_vars = scratch.add(ctx.cell_dir.join("OVMF_VARS.fd"));
            std::fs::copy(&vars, &own_vars)
                .map_err(|e| ProviderError::new(format!("failed to copy {}: {e}", vars.display())))?;
            // The copy keeps the template's mode, and a read-only template (a store path) would give
            // the firmware a variable store it can't write.
            std::fs::set_permissions(
                &own_vars,
                <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
            )
            .map_err(|e| ProviderError::new(format!("failed to make {} writable: {e}", own_vars.display())))?;
            let mut code_arg = OsString::from("if=pflash,format=raw,unit=0,readonly=on,file=");
            code_arg.push(opt_value(code.as_os_str()));
            let mut vars_arg = OsString::from("if=pflash,format=raw,unit=1,file=");
            vars_arg.push(opt_value(own_vars.as_os_str()));
            args.extend(["-drive".into(), code_arg, "-drive".into(), vars_arg]);
        }
        let mut drives = Drives::default();
        image_args(&mut args, &mut drives, image, hardware.disk_bus)?;
        for (i, disk) in hardware.disks.iter().enumerate() {
            let file = scratch.add(ctx.cell_dir.join(format!("disk-{i}.qcow2")));
            let made = Command::new(qemu_img(&self.plan.binary))
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&file)
                .arg(disk.size.0.to_string())
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|e| ProviderError::new(format!("failed to run qemu-img: {e}")))?;
            if !made.status.success() {
                return Err(ProviderError::new(format!(
                    "qemu-img create {} failed: {}",
                    file.display(),
                    String::from_utf8_lossy(&made.stderr).trim()
                )));
            }
            let bus = disk.bus.unwrap_or(hardware.disk_bus);
            drives.add(bus, &file, "qcow2", ",discard=unmap", false).map_err(ProviderError::new)?;
        }
        let key = match self.launch.key_pair {
            KeyPair::Ephemeral => Some(
                self.run_key
                    .get(&ctx.run_id, self.launch.keep_private_key, &ctx.cell_dir)
                    .await
                    .map_err(ProviderError::new)?,
            ),
            KeyPair::Existing(_) => None,
        };
        let seed_file = scratch.add(ctx.cell_dir.join("nocloud-seed.img"));
        seed::Seed {
            instance_id: format!("amiprobe-{}-{}", ctx.run_id, cell.id),
            hostname: seed::hostname(&cell.id.0),
            user_data: self.launch.user_data.as_deref(),
            public_key: key.as_ref().map(|k| k.public.as_str()),
        }
        .write(&seed_file)
        .map_err(ProviderError::new)?;
        // On the cell's bus, so an image with only that bus's driver still finds it.
        drives.add(hardware.disk_bus, &seed_file, "raw", "", false).map_err(ProviderError::new)?;
        args.extend(drives.args);
        Ok(args)
    }
}

/// `qemu-img` beside the QEMU binary when that is a path, else on PATH.
fn qemu_img(binary: &str) -> PathBuf {
    let beside = Path::new(binary).parent().filter(|d| !d.as_os_str().is_empty()).map(|d| d.join("qemu-img"));
    beside.filter(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("qemu-img"))
}

/// Files a cell made in its directory (seed, extra disks, UEFI variables): removed with the cell,
/// by `terminate`, or when the launch that made them fails or its machine is dropped.
#[derive(Debug, Default)]
struct Scratch(Vec<PathBuf>);

impl Scratch {
    fn add(&mut self, file: PathBuf) -> PathBuf {
        self.0.push(file.clone());
        file
    }

    /// Removes every file; the ones that could not be removed, with why.
    fn remove(&mut self) -> Vec<String> {
        let mut failed = Vec::new();
        for file in self.0.drain(..) {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => failed.push(format!("{}: {e}", file.display())),
            }
        }
        failed
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `-kernel`, `-initrd` and `-append` take their value whole (a comma is just a comma); a boot disk
/// goes first into `drives`, on `bus`.
fn image_args(
    args: &mut Vec<OsString>,
    drives: &mut Drives,
    image: &QemuImagePlan,
    bus: DiskBus,
) -> Result<(), ProviderError> {
    match image {
        QemuImagePlan::Kernel { kernel, initrd, append } => {
            args.extend(["-kernel".into(), kernel.into()]);
            if let Some(initrd) = initrd {
                args.extend(["-initrd".into(), initrd.into()]);
            }
            if let Some(append) = append {
                args.extend(["-append".into(), append.into()]);
            }
        }
        QemuImagePlan::Disk { path, format } => {
            let format = match format {
                Some(f) => *f,
                None => format_of_file(path)?,
            };
            // snapshot=on: the image under test is never written to, whatever its format (QEMU
            // puts a temporary qcow2 overlay over it). An explicit format: left to guess, QEMU
            // warns, and a raw disk that starts like another format would be misread.
            drives.add(bus, path, format.name(), ",snapshot=on", true).map_err(ProviderError::new)?;
        }
    }
    Ok(())
}

/// A value inside a QEMU option string (`-drive file=...,if=virtio`): a literal comma is written `,,`.
pub(crate) fn opt_value(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

/// A disk image's format, told by its first bytes.
fn format_of_file(path: &Path) -> Result<DiskFormat, ProviderError> {
    let mut header = Vec::with_capacity(64);
    std::fs::File::open(path)
        .and_then(|f| f.take(64).read_to_end(&mut header))
        .map_err(|e| ProviderError::new(format!("failed to read disk image {}: {e}", path.display())))?;
    Ok(DiskFormat::detect(&header))
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
        let mut uefi = false;
        for cell in cells {
            let files: Vec<&PathBuf> = match self.plan.images.get(cell.image()) {
                Some(QemuImagePlan::Kernel { kernel, initrd, .. }) => {
                    std::iter::once(kernel).chain(initrd.iter()).collect()
                }
                Some(QemuImagePlan::Disk { path, .. }) => vec![path],
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
            let hardware = Hardware::of(cell, &self.plan).map_err(ProviderError::new)?;
            uefi |= hardware.firmware == Firmware::Uefi;
        }
        if uefi {
            self.ovmf()?;
        }
        let mut warnings = Vec::new();
        if let Some(first) = cells.first() {
            if let (_, Some(why)) = self.accel_and_why(&self.plan.image(first.image())).await {
                warnings.push(format!("qemu: KVM unavailable or not working here ({why}); using TCG (slower)"));
            }
        }
        Ok(Checked { warnings, impossible: Vec::new() })
    }

    async fn launch(&self, cell: &Cell, ctx: &LaunchContext) -> Result<Box<dyn Machine>, ProviderError> {
        let image = self.plan.image(cell.image());
        let hardware = Hardware::of(cell, &self.plan).map_err(ProviderError::new)?;
        let accel = self.accel(&image).await;
        // Everything made in the cell's directory goes with the cell, also when this launch fails.
        let mut scratch = Scratch::default();
        let fixed = self.hardware_args(cell, ctx, &image, &hardware, &mut scratch).await?;
        let sockets = tempfile::Builder::new()
            .prefix("amiprobe-qmp-")
            .tempdir()
            .map_err(|e| ProviderError::new(format!("failed to create a socket directory: {e}")))?;
        let qmp_path = sockets.path().join("qmp.sock");
        // The raw serial stream stays in the cell's directory even if amiprobe is killed; the engine
        // writes the cell's console.log from it at the end.
        let console_path = ctx.cell_dir.join("serial.log");
        let firmware_log = (hardware.firmware == Firmware::Bios).then(|| ctx.cell_dir.join(firmware::LOG));

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
                .args(["-m", &hardware.size.memory_mib.to_string(), "-smp", &hardware.size.cpus.to_string()])
                .args(["-display", "none", "-vga", "std", "-no-reboot", "-monitor", "none"])
                // A guest panic reaches QEMU through pvpanic and pauses the VM: its screen stays.
                .args(["-device", "pvpanic"])
                .args(self.panic_pauses_args())
                .arg("-serial")
                .arg(serial_arg)
                .args(firmware_log.as_deref().map(firmware::args).unwrap_or_default())
                .arg("-qmp")
                .arg(qmp_arg);
            let mut netdev = "user,id=n0,restrict=on".to_string();
            for (guest, host) in &forwards {
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            }
            cmd.args(["-netdev", &netdev, "-device", &format!("{},netdev=n0", hardware.nic.device())]);
            cmd.args(&fixed);
            let command_line = format!(
                "{} {}",
                self.plan.binary,
                cmd.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
            );

            let login_key = match self.launch.key_pair {
                KeyPair::Ephemeral => {
                    Some(self.run_key.get(&ctx.run_id, false, &ctx.cell_dir).await.map_err(ProviderError::new)?)
                }
                KeyPair::Existing(_) => None,
            };
            let mut child = isolate(&mut cmd)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| ProviderError::new(format!("failed to start {}: {e}", self.plan.binary)))?;
            let pid = child.id().unwrap_or_default();
            let resource = QemuProcess { pid, cell: cell.id.0.clone() }.recorded();
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
                        firmware_log,
                        _sockets: sockets,
                        command_line,
                        accel,
                        hardware: hardware.facts(),
                        scratch,
                        screenshot_seq: 0,
                        login_key,
                        resets_allowed_until: None,
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
            let Some(QemuProcess { pid, cell }) = resource::of(&resource) else {
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
            steps.push(step.of(&resource));
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

/// How long after a reboot asked for resets are let happen: the firmware's own reset comes within
/// moments of the first; a guest that reboots by itself later is caught as before.
const REBOOT_GRACE: Duration = Duration::from_secs(10);

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
    /// SeaBIOS's messages (`firmware.rs`); `None` under UEFI, where OVMF speaks on the console.
    firmware_log: Option<PathBuf>,
    _sockets: tempfile::TempDir,
    command_line: String,
    accel: &'static str,
    /// [`Hardware::facts`]: what the cell really had.
    hardware: Value,
    scratch: Scratch,
    screenshot_seq: u64,
    login_key: Option<Arc<crate::provider::RunKey>>,
    /// After a reboot asked for (`reboot: true`): until then a reset resets instead of ending QEMU.
    resets_allowed_until: Option<Instant>,
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

    fn login_key(&self) -> Option<Arc<crate::provider::RunKey>> {
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
        if !self.ledger.remaining().contains(&self.resource) && !self.scratch.0.is_empty() {
            let count = self.scratch.0.len();
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

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn the_boot_disk_names_its_format_on_its_bus_and_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("a,b.qcow2");
        std::fs::write(&disk, b"QFI\xfb\x00\x00\x00\x03rest").unwrap();
        let quoted = disk.display().to_string().replace(',', ",,");
        for (format, bus, device) in [
            (None, DiskBus::VirtioBlk, "virtio-blk-pci,drive=disk0,bootindex=0"),
            // A format given wins over the magic bytes: a raw disk may start like anything.
            (Some(DiskFormat::Raw), DiskBus::Nvme, "nvme,drive=disk0,serial=amiprobe0,bootindex=0"),
            (Some(DiskFormat::Vmdk), DiskBus::Ide, "ide-hd,drive=disk0,bus=ide.0,bootindex=0"),
        ] {
            let (mut args, mut drives) = (Vec::new(), Drives::default());
            let image = QemuImagePlan::Disk { path: disk.clone(), format };
            image_args(&mut args, &mut drives, &image, bus).unwrap();
            assert!(args.is_empty());
            let name = format.unwrap_or(DiskFormat::Qcow2).name();
            assert_eq!(
                strings(&drives.args),
                [
                    "-drive".to_string(),
                    format!("file={quoted},format={name},if=none,id=disk0,snapshot=on"),
                    "-device".to_string(),
                    device.to_string()
                ]
            );
        }
        let missing = QemuImagePlan::Disk { path: dir.path().join("nope.img"), format: None };
        let err = image_args(&mut Vec::new(), &mut Drives::default(), &missing, DiskBus::VirtioBlk).unwrap_err();
        assert!(err.message.contains("failed to read disk image"));
    }

    #[test]
    fn kernel_paths_and_command_line_are_passed_whole() {
        let image = QemuImagePlan::Kernel {
            kernel: PathBuf::from("/k,1/vmlinuz"),
            initrd: Some(PathBuf::from("/k,1/initrd.img")),
            append: Some("console=ttyS0 a=b,c".into()),
        };
        let (mut args, mut drives) = (Vec::new(), Drives::default());
        image_args(&mut args, &mut drives, &image, DiskBus::Nvme).unwrap();
        assert_eq!(
            strings(&args),
            ["-kernel", "/k,1/vmlinuz", "-initrd", "/k,1/initrd.img", "-append", "console=ttyS0 a=b,c"]
        );
        assert!(drives.args.is_empty());
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
