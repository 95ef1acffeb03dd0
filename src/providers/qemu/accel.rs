//! The accelerator a run's QEMUs use: `tcg` or `kvm` as the spec says, or for `accel: auto` KVM
//! when it works here, else TCG with the reason. Decided once per run, by the first cell that asks
//! (preflight's), which shows `auto`'s answer and where it came from as a warning. Whether KVM works
//! is proved here (`kvm_works`) and remembered for the host's boot by `kvm_cache.rs`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::{sleep, Instant};

use super::argv::{image_args, ArgsError};
use super::config::{Accel, QemuImagePlan, QemuPlan};
use super::hardware::{DiskBus, Drives};
use super::kvm::{self, KvmError};
use super::kvm_cache::{self, Decision, HostKey, Memo, NotRemembered};
use super::process::isolate;
use super::QemuProvider;
use crate::provider::cache::cache_dir;

/// How long a guest under KVM may take to say anything on its console: a working KVM boots a
/// kernel to its first lines in well under a second; TCG would take about this long.
const KVM_FIRST_WORDS: Duration = Duration::from_secs(3);
/// How long a guest that spoke must then stay alive: KVM that fails does so at once.
const KVM_ALIVE: Duration = Duration::from_millis(300);

/// The run's accelerator, as QEMU's `-accel` names it, and how `auto` chose it.
#[derive(Debug)]
pub struct AccelChoice {
    pub name: &'static str,
    /// `None` when the spec named the accelerator.
    pub auto: Option<Decision>,
}

impl AccelChoice {
    /// For `accel: auto`, always a line: what it chose, why not KVM, and where the answer came from.
    pub fn warning(&self) -> Option<String> {
        self.auto.as_ref().map(|decision| format!("qemu: accel auto: {decision}"))
    }
}

/// Why `accel: auto` did not choose KVM.
#[derive(Debug, thiserror::Error)]
pub enum KvmUnusable {
    #[error(transparent)]
    Hlt(#[from] KvmError),
    #[error("kvm proof failed: {0}")]
    ProofLost(tokio::task::JoinError),
    #[error("failed to create a directory: {0}")]
    TempDir(std::io::Error),
    #[error(transparent)]
    Image(#[from] ArgsError),
    #[error("failed to start {binary}: {source}")]
    Start { binary: String, source: std::io::Error },
    #[error("qemu under kvm exited at once ({0})")]
    ExitedAtOnce(ExitStatus),
    #[error("qemu under kvm died right after the guest started")]
    DiedAfterStart,
    #[error("a guest under kvm said nothing in {}s", KVM_FIRST_WORDS.as_secs())]
    Silent,
    #[error("{} is absent", .0.display())]
    Absent(PathBuf),
    #[error("{} is not readable and writable here ({source})", .device.display())]
    NoAccess { device: PathBuf, source: std::io::Error },
    /// A reason a past run found, as it put it (`kvm_cache.rs`).
    #[error("{0}")]
    Remembered(String),
}

impl KvmUnusable {
    /// Whether the proof tells about this host's KVM, and so may be remembered for its boot: not
    /// when the proof itself could not run (no thread, no temporary directory, QEMU not started).
    pub fn conclusive(&self) -> bool {
        match self {
            KvmUnusable::Hlt(KvmError::Thread(_)) => false,
            KvmUnusable::Hlt(_) | KvmUnusable::ExitedAtOnce(_) | KvmUnusable::DiedAfterStart => true,
            KvmUnusable::Silent => true,
            KvmUnusable::ProofLost(_) | KvmUnusable::TempDir(_) | KvmUnusable::Image(_) => false,
            KvmUnusable::Start { .. } => false,
            // Told without a proof, or already remembered.
            KvmUnusable::Absent(_) | KvmUnusable::NoAccess { .. } | KvmUnusable::Remembered(_) => false,
        }
    }
}

impl QemuProvider {
    pub(super) async fn accel(&self, first: &QemuImagePlan) -> &'static str {
        self.accel_choice(first).await.name
    }

    /// The run's accelerator; the first call decides it, proving KVM with `first` if need be.
    pub(super) async fn accel_choice(&self, first: &QemuImagePlan) -> &AccelChoice {
        self.accel
            .get_or_init(|| async {
                match self.plan.accel {
                    Accel::Tcg => AccelChoice { name: "tcg", auto: None },
                    Accel::Kvm => AccelChoice { name: "kvm", auto: None },
                    Accel::Auto => {
                        let started = Instant::now();
                        let device = Path::new(kvm::DEVICE);
                        let decision =
                            kvm_cache::decide(device, self.kvm_memo(), || kvm_works(&self.plan, first)).await;
                        tracing::debug!("accel auto: {decision} (decided in {:?})", started.elapsed());
                        let name = if decision.kvm.is_ok() { "kvm" } else { "tcg" };
                        AccelChoice { name, auto: Some(decision) }
                    }
                }
            })
            .await
    }

    /// Where `accel: auto`'s answer is remembered: amiprobe's cache directory, under this host's
    /// boot, kernel and QEMU (whose banner preflight learnt).
    fn kvm_memo(&self) -> Result<Memo, NotRemembered> {
        let banner = self.banner.get().ok_or(NotRemembered::NoBanner)?;
        Ok(Memo { dir: cache_dir()?, key: HostKey::here(&self.plan.binary, banner)? })
    }
}

/// Whether KVM runs guests here, on a host with a usable /dev/kvm (`kvm_cache::decide` checks that
/// first), proved cheapest first: a `hlt` on a vCPU (a KVM that cannot run guest code at all is known
/// in well under a millisecond), then the run's first image booted under KVM until its console
/// speaks. The second step is needed: some hosts run a `hlt` and even the firmware, yet hang
/// the kernel (nested virtualization without the CPU features QEMU asks for), and only a real boot
/// tells. It ends as soon as the guest speaks, so a working host pays a fraction of a second.
async fn kvm_works(plan: &QemuPlan, image: &QemuImagePlan) -> Result<(), KvmUnusable> {
    let proof =
        tokio::task::spawn_blocking(|| kvm::prove(Duration::from_secs(2))).await.map_err(KvmUnusable::ProofLost)?;
    tracing::debug!("kvm hlt: {:?} in {:?}", proof.works, proof.took);
    proof.works?;
    let dir = tempfile::Builder::new().prefix("amiprobe-kvm-").tempdir().map_err(KvmUnusable::TempDir)?;
    let serial = dir.path().join("serial.log");
    let mut child = boot_under_kvm(plan, image, &serial)?;
    let result = first_words(&mut child, &serial).await;
    let _ = child.kill().await;
    result
}

/// QEMU booting `image` under KVM, its serial console written to `serial`, and nothing else.
fn boot_under_kvm(plan: &QemuPlan, image: &QemuImagePlan, serial: &Path) -> Result<Child, KvmUnusable> {
    let mut serial_arg = OsString::from("file:");
    serial_arg.push(serial);
    let mut args: Vec<OsString> = Vec::new();
    let mut drives = Drives::default();
    image_args(&mut args, &mut drives, image, DiskBus::VirtioBlk)?;
    let mut cmd = Command::new(&plan.binary);
    cmd.args(["-machine", "q35", "-accel", "kvm", "-m", &plan.memory_mib.to_string()])
        .args(["-display", "none", "-no-reboot", "-nic", "none", "-monitor", "none"])
        .arg("-serial")
        .arg(serial_arg)
        .args(args)
        .args(drives.args);
    isolate(&mut cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| KvmUnusable::Start { binary: plan.binary.clone(), source })
}

/// Waits for the guest's first words on `serial`, then makes sure QEMU lives on a moment longer.
async fn first_words(child: &mut Child, serial: &Path) -> Result<(), KvmUnusable> {
    let deadline = Instant::now() + KVM_FIRST_WORDS;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(KvmUnusable::ExitedAtOnce(status));
        }
        if std::fs::metadata(serial).is_ok_and(|m| m.len() > 0) {
            sleep(KVM_ALIVE).await;
            return match child.try_wait() {
                Ok(None) => Ok(()),
                _ => Err(KvmUnusable::DiedAfterStart),
            };
        }
        if Instant::now() > deadline {
            return Err(KvmUnusable::Silent);
        }
        sleep(Duration::from_millis(20)).await;
    }
}
