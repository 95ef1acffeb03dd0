//! The accelerator a run's QEMUs use: `tcg` or `kvm` as the spec says, or for `accel: auto` KVM
//! when it is proved to work here, else TCG with the reason (preflight shows it as a warning).
//! Decided once per run, by the first cell that asks.

use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::{sleep, Instant};

use super::argv::{image_args, ArgsError};
use super::config::{Accel, QemuImagePlan, QemuPlan};
use super::hardware::{DiskBus, Drives};
use super::kvm::{self, KvmError};
use super::process::isolate;
use super::QemuProvider;

/// How long a guest under KVM may take to say anything on its console: a working KVM boots a
/// kernel to its first lines in well under a second; TCG would take about this long.
const KVM_FIRST_WORDS: Duration = Duration::from_secs(3);
/// How long a guest that spoke must then stay alive: KVM that fails does so at once.
const KVM_ALIVE: Duration = Duration::from_millis(300);

/// The run's accelerator, as QEMU's `-accel` names it, and why not KVM when `auto` chose TCG.
#[derive(Debug)]
pub struct AccelChoice {
    pub name: &'static str,
    pub why_not_kvm: Option<KvmUnusable>,
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
}

impl QemuProvider {
    pub(super) async fn accel(&self, first: &QemuImagePlan) -> &'static str {
        self.accel_choice(first).await.name
    }

    /// The run's accelerator; the first call decides it, proving KVM with `first` if need be.
    pub(super) async fn accel_choice(&self, first: &QemuImagePlan) -> &AccelChoice {
        self.accel
            .get_or_init(|| async {
                let (name, why_not_kvm) = match self.plan.accel {
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
                };
                AccelChoice { name, why_not_kvm }
            })
            .await
    }
}

/// Whether KVM runs guests here, proved cheapest first: a `hlt` on a vCPU (no /dev/kvm, or no
/// usable one, is known in microseconds), then the run's first image booted under KVM until its
/// console speaks. The second step is needed: some hosts run a `hlt` and even the firmware, yet hang
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
