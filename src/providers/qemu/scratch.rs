//! What a cell's VM needs made in the cell's directory, and the options attaching it: the UEFI
//! variable store (a copy per cell, the firmware writes to it), extra blank disks (`qemu-img
//! create`) and the NoCloud seed (`seed.rs`), after the image's own options (`argv.rs`).
//! [`Scratch`] lists these files so that they go with the cell.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use tokio::process::Command;

use super::argv::{image_args, opt_value, ArgsError};
use super::config::QemuImagePlan;
use super::hardware::{Drives, Firmware, Hardware, TooManyIdeDisks};
use super::seed::{self, SeedError};
use super::QemuProvider;
use crate::cell::Cell;
use crate::provider::{lifecycle, LaunchContext, RunKey};

/// The firmware files Debian's `ovmf` package installs: the 4M pair first (what current Debian and
/// Ubuntu ship), then the older 2M pair. Code and variables must come from the same pair.
const OVMF_PAIRS: [(&str, &str); 2] = [
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
];

/// Why there is no UEFI firmware to boot with.
#[derive(Debug, thiserror::Error)]
pub enum OvmfError {
    #[error("provider.qemu.ovmf: {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error(
        "firmware: uefi needs OVMF: no OVMF_CODE(_4M).fd with its OVMF_VARS under /usr/share/OVMF \
         (install the ovmf package: scripts/install-deps qemu; or set provider.qemu.ovmf)"
    )]
    NotInstalled,
}

/// Why a cell's files or their options could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(transparent)]
    Ovmf(#[from] OvmfError),
    #[error("failed to copy {}: {source}", .from.display())]
    CopyVars { from: PathBuf, source: std::io::Error },
    #[error("failed to make {} writable: {source}", .path.display())]
    VarsMode { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Image(#[from] ArgsError),
    #[error("failed to run qemu-img: {0}")]
    QemuImg(std::io::Error),
    #[error("qemu-img create {} failed: {stderr}", .file.display())]
    CreateDisk { file: PathBuf, stderr: String },
    #[error(transparent)]
    Drives(#[from] TooManyIdeDisks),
    /// The run's key could not be made (`provider::key` says why).
    #[error("{0}")]
    Key(String),
    #[error(transparent)]
    Seed(#[from] SeedError),
}

/// Files a cell made in its directory (seed, extra disks, UEFI variables): removed with the cell,
/// by `terminate`, or when the launch that made them fails or its machine is dropped.
#[derive(Debug, Default)]
pub struct Scratch(Vec<PathBuf>);

impl Scratch {
    fn add(&mut self, file: PathBuf) -> PathBuf {
        self.0.push(file.clone());
        file
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every file; the ones that could not be removed, with why.
    pub fn remove(&mut self) -> Vec<String> {
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

impl QemuProvider {
    /// The UEFI firmware: `provider.qemu.ovmf`, else the first pair Debian's `ovmf` installs.
    pub(super) fn ovmf(&self) -> Result<(PathBuf, PathBuf), OvmfError> {
        if let Some((code, vars)) = &self.plan.ovmf {
            if let Some(missing) = [code, vars].into_iter().find(|file| !file.is_file()) {
                return Err(OvmfError::Missing(missing.clone()));
            }
            return Ok((code.clone(), vars.clone()));
        }
        OVMF_PAIRS
            .iter()
            .map(|(code, vars)| (PathBuf::from(code), PathBuf::from(vars)))
            .find(|(code, vars)| code.is_file() && vars.is_file())
            .ok_or(OvmfError::NotInstalled)
    }

    /// The options a cell's hardware and image add, the same on every start attempt: firmware, the
    /// image, the boot disk, extra disks and the NoCloud seed, each file made in the cell's directory
    /// and listed in `scratch`. With them the run's key, whose public half the seed carries.
    pub(super) async fn hardware_args(
        &self,
        cell: &Cell,
        ctx: &LaunchContext,
        image: &QemuImagePlan,
        hardware: &Hardware,
        scratch: &mut Scratch,
    ) -> Result<(Vec<OsString>, Option<Arc<RunKey>>), ScratchError> {
        let mut args: Vec<OsString> = Vec::new();
        if hardware.firmware == Firmware::Uefi {
            args.extend(self.uefi_args(&ctx.cell_dir, scratch)?);
        }
        let mut drives = Drives::default();
        image_args(&mut args, &mut drives, image, hardware.disk_bus)?;
        self.extra_disks(&ctx.cell_dir, hardware, &mut drives, scratch).await?;
        // A named key pair is EC2's and has no meaning here: the seed then has no key.
        let key = lifecycle::login_key(&self.run_key, &self.launch, ctx)
            .await
            .map_err(|e| ScratchError::Key(e.to_string()))?
            .run_key();
        let seed_file = scratch.add(ctx.cell_dir.join("nocloud-seed.img"));
        seed::Seed {
            instance_id: format!("amiprobe-{}-{}", ctx.run_id, cell.id),
            hostname: seed::hostname(&cell.id.0),
            user_data: self.launch.user_data.as_deref(),
            public_key: key.as_ref().map(|k| k.public.as_str()),
        }
        .write(&seed_file)?;
        // On the cell's bus, so an image with only that bus's driver still finds it.
        drives.add(hardware.disk_bus, &seed_file, "raw", "", false)?;
        args.extend(drives.args);
        Ok((args, key))
    }

    /// The firmware's code, read-only, and a variable store of the cell's own.
    fn uefi_args(&self, cell_dir: &Path, scratch: &mut Scratch) -> Result<[OsString; 4], ScratchError> {
        let (code, vars) = self.ovmf()?;
        // The variable store is written by the firmware: each cell its own copy, never the template.
        let own_vars = scratch.add(cell_dir.join("OVMF_VARS.fd"));
        std::fs::copy(&vars, &own_vars).map_err(|source| ScratchError::CopyVars { from: vars.clone(), source })?;
        // The copy keeps the template's mode, and a read-only template (a store path) would give
        // the firmware a variable store it can't write.
        std::fs::set_permissions(
            &own_vars,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .map_err(|source| ScratchError::VarsMode { path: own_vars.clone(), source })?;
        let mut code_arg = OsString::from("if=pflash,format=raw,unit=0,readonly=on,file=");
        code_arg.push(opt_value(code.as_os_str()));
        let mut vars_arg = OsString::from("if=pflash,format=raw,unit=1,file=");
        vars_arg.push(opt_value(own_vars.as_os_str()));
        Ok(["-drive".into(), code_arg, "-drive".into(), vars_arg])
    }

    /// The cell's extra blank disks, made with `qemu-img` and added to `drives` on their buses.
    async fn extra_disks(
        &self,
        cell_dir: &Path,
        hardware: &Hardware,
        drives: &mut Drives,
        scratch: &mut Scratch,
    ) -> Result<(), ScratchError> {
        for (i, disk) in hardware.disks.iter().enumerate() {
            let file = scratch.add(cell_dir.join(format!("disk-{i}.qcow2")));
            let made = Command::new(qemu_img(&self.plan.binary))
                .args(["create", "-q", "-f", "qcow2"])
                .arg(&file)
                .arg(disk.size.0.to_string())
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(ScratchError::QemuImg)?;
            if !made.status.success() {
                let stderr = String::from_utf8_lossy(&made.stderr).trim().to_string();
                return Err(ScratchError::CreateDisk { file, stderr });
            }
            let bus = disk.bus.unwrap_or(hardware.disk_bus);
            drives.add(bus, &file, "qcow2", ",discard=unmap", false)?;
        }
        Ok(())
    }
}

/// `qemu-img` beside the QEMU binary when that is a path, else on PATH.
fn qemu_img(binary: &str) -> PathBuf {
    let beside = Path::new(binary).parent().filter(|d| !d.as_os_str().is_empty()).map(|d| d.join("qemu-img"));
    beside.filter(|p| p.is_file()).unwrap_or_else(|| PathBuf::from("qemu-img"))
}
