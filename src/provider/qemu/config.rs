//! The `provider.qemu` section of a spec as written, and what it resolves to: images with their
//! paths made absolute, checked before anything runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{ByteSize, FieldPath, Problem};

/// A local virtual machine under QEMU: the same spec, no cloud account.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct QemuSpec {
    /// Images the matrix `image` axis can name. A value that is not a name here is taken as a disk path.
    #[serde(default)]
    pub images: BTreeMap<String, QemuImage>,
    /// Guest memory, e.g. `256M` or `1G` (default 256M).
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Virtual CPUs (default 1).
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    /// Accelerator: `auto` proves KVM with a real boot and falls back to TCG.
    #[serde(default)]
    pub accel: Accel,
    /// The QEMU binary (default `qemu-system-x86_64` on PATH).
    #[serde(default)]
    pub binary: Option<String>,
}

fn default_memory() -> ByteSize {
    ByteSize(256 * 1024 * 1024)
}

fn default_cpus() -> u32 {
    1
}

/// A bootable image: a kernel (with optional initrd and command line) or a disk.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct QemuImage {
    /// Kernel to boot directly; relative paths are relative to the spec file.
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default)]
    pub append: Option<String>,
    /// A disk image (qcow2 or raw) to boot from instead of a kernel.
    #[serde(default)]
    pub disk: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    #[default]
    Auto,
    Tcg,
    Kvm,
}

/// The `qemu` section resolved: what the provider runs with.
#[derive(Debug, Clone)]
pub struct QemuPlan {
    pub images: BTreeMap<String, QemuImagePlan>,
    pub memory_mib: u64,
    pub cpus: u32,
    pub accel: Accel,
    pub binary: String,
}

impl QemuPlan {
    /// The image a cell's `image` value names: an entry of `images`, or a disk path.
    pub fn image(&self, value: &str) -> QemuImagePlan {
        self.images.get(value).cloned().unwrap_or_else(|| QemuImagePlan::Disk(PathBuf::from(value)))
    }
}

/// A bootable QEMU image with its paths made absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QemuImagePlan {
    Kernel { kernel: PathBuf, initrd: Option<PathBuf>, append: Option<String> },
    Disk(PathBuf),
}

impl QemuSpec {
    /// The section resolved against the spec's directory, or `None` with the problems found.
    pub fn resolve(&self, base: &Path, path: &FieldPath, problems: &mut Vec<Problem>) -> Option<QemuPlan> {
        let qemu = self;
        let before = problems.len();
        let mut images = BTreeMap::new();
        for (name, image) in &qemu.images {
            let at = path.key("images").key(name.clone());
            let abs = |p: &PathBuf| base.join(p);
            match (&image.kernel, &image.disk) {
                (Some(kernel), None) => {
                    images.insert(
                        name.clone(),
                        QemuImagePlan::Kernel {
                            kernel: abs(kernel),
                            initrd: image.initrd.as_ref().map(abs),
                            append: image.append.clone(),
                        },
                    );
                }
                (None, Some(disk)) => {
                    if image.initrd.is_some() || image.append.is_some() {
                        problems.push(Problem::at_key(at.clone(), "`initrd` and `append` need `kernel`, not `disk`"));
                    }
                    images.insert(name.clone(), QemuImagePlan::Disk(abs(disk)));
                }
                (None, None) => problems.push(Problem::at_key(at, "image has neither `kernel` nor `disk`")),
                (Some(_), Some(_)) => {
                    problems.push(Problem::at_key(at.key("disk"), "image has both `kernel` and `disk`: keep one"))
                }
            }
        }
        if qemu.memory.mebibytes() < 16 {
            problems.push(Problem::at(
                path.key("memory"),
                format!("{} MiB of memory is too little to boot", qemu.memory.mebibytes()),
            ));
        }
        if qemu.cpus == 0 {
            problems.push(Problem::at(path.key("cpus"), "cpus must be at least 1"));
        }
        (problems.len() == before).then(|| QemuPlan {
            images,
            memory_mib: qemu.memory.mebibytes(),
            cpus: qemu.cpus,
            accel: qemu.accel,
            binary: qemu.binary.clone().unwrap_or_else(|| "qemu-system-x86_64".into()),
        })
    }
}
