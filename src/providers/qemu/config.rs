//! The `provider.qemu` section of a spec as written, and what it resolves to: images with their
//! paths made absolute, named sizes, the instance types they stand for, and the UEFI firmware,
//! checked before anything runs.

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
    /// Accelerator: `auto` proves KVM by running a guest instruction on it and booting the first
    /// image (once per host boot, remembered in amiprobe's cache directory) and falls back to TCG.
    #[serde(default)]
    pub accel: Accel,
    /// The QEMU binary (default `qemu-system-x86_64` on PATH).
    #[serde(default)]
    pub binary: Option<String>,
    /// Named hardware sizes the `size` launch field picks from, e.g. `small: { memory: 512M, cpus: 1 }`.
    /// A cell with neither `size` nor `instance_type` gets `memory` and `cpus` above.
    #[serde(default)]
    pub sizes: BTreeMap<String, QemuSize>,
    /// EC2 instance types as sizes, e.g. `t3.micro: small`: the `instance_type` launch field of a
    /// spec shared with the ec2 provider picks the size it is mapped to here.
    #[serde(default)]
    pub instance_types: BTreeMap<String, String>,
    /// The UEFI firmware for `firmware: uefi` (default: Debian's OVMF under /usr/share/OVMF).
    #[serde(default)]
    pub ovmf: Option<OvmfSpec>,
}

/// A named size: memory and virtual CPUs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct QemuSize {
    /// Guest memory, e.g. `512M` or `2G`.
    pub memory: ByteSize,
    /// Virtual CPUs (default 1).
    #[serde(default = "default_cpus")]
    pub cpus: u32,
}

/// UEFI firmware files: the code (read-only) and the variable store template, copied per cell.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OvmfSpec {
    /// The firmware code, e.g. `/usr/share/OVMF/OVMF_CODE_4M.fd`.
    pub code: PathBuf,
    /// The variable store template, e.g. `/usr/share/OVMF/OVMF_VARS_4M.fd` (never written to).
    pub vars: PathBuf,
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
    /// A disk image to boot from instead of a kernel (qcow2, raw or vmdk). Never written to: the
    /// guest's writes go to a temporary overlay (`snapshot=on`).
    #[serde(default)]
    pub disk: Option<PathBuf>,
    /// The disk's format; left out, told by its first bytes.
    #[serde(default)]
    pub format: Option<DiskFormat>,
}

/// A disk image's format, as QEMU's `format=` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormat {
    Qcow2,
    Raw,
    Vmdk,
}

impl DiskFormat {
    /// The format told by a file's first bytes: what is neither qcow2 nor vmdk is raw.
    pub fn detect(header: &[u8]) -> DiskFormat {
        if header.starts_with(b"QFI\xfb") {
            DiskFormat::Qcow2
        } else if header.starts_with(b"KDMV") || header.starts_with(b"# Disk DescriptorFile") {
            // A sparse extent, or the text descriptor of a split or flat image.
            DiskFormat::Vmdk
        } else {
            DiskFormat::Raw
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vmdk => "vmdk",
            DiskFormat::Raw => "raw",
        }
    }
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
    /// The size of a cell that names none.
    pub memory_mib: u64,
    pub cpus: u32,
    pub accel: Accel,
    pub binary: String,
    /// Size name -> (memory in MiB, cpus).
    pub sizes: BTreeMap<String, (u64, u32)>,
    /// Instance type -> size name (every one in `sizes`).
    pub instance_types: BTreeMap<String, String>,
    /// `ovmf` with its paths made absolute; `None`: look under /usr/share/OVMF.
    pub ovmf: Option<(PathBuf, PathBuf)>,
}

impl QemuPlan {
    /// The image a cell's `image` value names: an entry of `images`, or a disk path.
    pub fn image(&self, value: &str) -> QemuImagePlan {
        self.images
            .get(value)
            .cloned()
            .unwrap_or_else(|| QemuImagePlan::Disk { path: PathBuf::from(value), format: None })
    }
}

/// A bootable QEMU image with its paths made absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QemuImagePlan {
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        append: Option<String>,
    },
    /// A disk; `format: None`: told by its first bytes at launch.
    Disk {
        path: PathBuf,
        format: Option<DiskFormat>,
    },
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
                    if image.format.is_some() {
                        problems.push(Problem::at_key(at.key("format"), "`format` is for `disk`, not `kernel`"));
                    }
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
                    images.insert(name.clone(), QemuImagePlan::Disk { path: abs(disk), format: image.format });
                }
                (None, None) => problems.push(Problem::at_key(at, "image has neither `kernel` nor `disk`")),
                (Some(_), Some(_)) => {
                    problems.push(Problem::at_key(at.key("disk"), "image has both `kernel` and `disk`: keep one"))
                }
            }
        }
        check_size(qemu.memory, qemu.cpus, path, problems);
        let mut sizes = BTreeMap::new();
        for (name, size) in &qemu.sizes {
            check_size(size.memory, size.cpus, &path.key("sizes").key(name.clone()), problems);
            sizes.insert(name.clone(), (size.memory.mebibytes(), size.cpus));
        }
        for (instance_type, size) in &qemu.instance_types {
            if !sizes.contains_key(size) {
                let names: Vec<String> = sizes.keys().cloned().collect();
                problems.push(
                    Problem::at(
                        path.key("instance_types").key(instance_type.clone()),
                        format!("no size `{size}` in sizes"),
                    )
                    .help(sizes_help(&names, size)),
                );
            }
        }
        let ovmf = qemu.ovmf.as_ref().map(|o| (base.join(&o.code), base.join(&o.vars)));
        (problems.len() == before).then(|| QemuPlan {
            images,
            memory_mib: qemu.memory.mebibytes(),
            cpus: qemu.cpus,
            accel: qemu.accel,
            binary: qemu.binary.clone().unwrap_or_else(|| "qemu-system-x86_64".into()),
            sizes,
            instance_types: qemu.instance_types.clone(),
            ovmf,
        })
    }
}

/// Memory and cpus a machine can boot with, each problem under `at`.
fn check_size(memory: ByteSize, cpus: u32, at: &FieldPath, problems: &mut Vec<Problem>) {
    if memory.mebibytes() < 16 {
        problems
            .push(Problem::at(at.key("memory"), format!("{} MiB of memory is too little to boot", memory.mebibytes())));
    }
    if cpus == 0 {
        problems.push(Problem::at(at.key("cpus"), "cpus must be at least 1"));
    }
}

/// What to say about a size name that is not in `sizes`: the nearest, or the ones there are.
pub fn sizes_help(names: &[String], wrong: &str) -> String {
    match crate::spec::nearest(wrong, names) {
        Some(near) => format!("did you mean `{near}`?"),
        None if names.is_empty() => "add it under provider.qemu.sizes, e.g. `small: { memory: 512M, cpus: 1 }`".into(),
        None => format!("the sizes under provider.qemu.sizes: {}", names.join(", ")),
    }
}
