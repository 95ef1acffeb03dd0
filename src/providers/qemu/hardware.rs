//! The hardware a qemu cell varies: its size (memory and vCPUs, named or through an EC2 instance
//! type), the boot disk's bus, the network card, the firmware and extra blank disks. Each is a launch
//! field, fixed in `launch:` or a matrix axis: the things that make images fail on other hardware (an
//! fstab naming /dev/vda on an NVMe machine, a BIOS-only image on UEFI, a service that needs more
//! memory than the small size has).
//!
//! [`Hardware::of`] reads a cell's values; [`Drives`] turns disks into `-drive`/`-device` pairs on
//! their buses, so the boot disk, the extra disks and the NoCloud seed are attached the same way.

use std::ffi::OsString;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::argv::opt_value;
use super::config::{sizes_help, QemuPlan};
use crate::cell::Cell;
use crate::spec::{ByteSize, FieldPath, Problem};

/// The bus a disk is attached to, as the guest sees it: `/dev/vda`, `/dev/nvme0n1`, `/dev/sda`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DiskBus {
    /// virtio-blk (`/dev/vda`): the default.
    #[default]
    VirtioBlk,
    /// NVMe (`/dev/nvme0n1`), as on EC2's Nitro instances.
    Nvme,
    /// SCSI on virtio-scsi (`/dev/sda`).
    Scsi,
    /// SATA on the q35 machine's AHCI controller (`/dev/sda`).
    Ide,
}

/// The network card.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Nic {
    VirtioNet,
    /// Intel e1000: the default, which nearly every image has a driver for.
    #[default]
    E1000,
    E1000e,
    Rtl8139,
    Vmxnet3,
}

/// The firmware the machine starts with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Firmware {
    /// SeaBIOS: the default.
    #[default]
    Bios,
    /// OVMF (UEFI), with a variable store of the cell's own.
    Uefi,
}

/// An extra disk, blank, made for the cell and deleted with it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExtraDisk {
    /// Its size, e.g. `1G` (at least 1M).
    pub size: ByteSize,
    /// Its bus; left out, the boot disk's (`disk_bus`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<DiskBus>,
}

/// The largest extra disk: a sparse qcow2 costs nothing until written, but a typo like `1000000G`
/// is still a typo.
const MAX_DISK: u64 = 64 << 40;

impl DiskBus {
    pub fn name(self) -> &'static str {
        match self {
            DiskBus::VirtioBlk => "virtio-blk",
            DiskBus::Nvme => "nvme",
            DiskBus::Scsi => "scsi",
            DiskBus::Ide => "ide",
        }
    }
}

impl Nic {
    pub fn name(self) -> &'static str {
        match self {
            Nic::VirtioNet => "virtio-net",
            Nic::E1000 => "e1000",
            Nic::E1000e => "e1000e",
            Nic::Rtl8139 => "rtl8139",
            Nic::Vmxnet3 => "vmxnet3",
        }
    }

    /// QEMU's device model.
    pub fn device(self) -> &'static str {
        match self {
            Nic::VirtioNet => "virtio-net-pci",
            other => other.name(),
        }
    }
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

/// [`super::FIELDS`]' check of an extra disk list: each entry's keys and type, then its size.
pub fn check_disks(value: &serde_yaml::Value, at: &FieldPath) -> Vec<Problem> {
    let disks = match crate::provider::field::typed::<Vec<ExtraDisk>>(value, at) {
        Ok(disks) => disks,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();
    for (i, disk) in disks.iter().enumerate() {
        let size = disk.size.0;
        if size < 1 << 20 {
            problems.push(Problem::at(at.index(i).key("size"), format!("a disk of {size} bytes is below 1M")));
        } else if size > MAX_DISK {
            problems.push(Problem::at(
                at.index(i).key("size"),
                format!("a disk of {}G is above the limit of 64T", size >> 30),
            ));
        }
    }
    problems
}

/// The checks of a value that need the `qemu` section: a `size` it names, an `instance_type` it
/// maps. `at` is where the value was written.
pub fn check_value(plan: &QemuPlan, name: &str, value: &serde_json::Value, at: &FieldPath) -> Vec<Problem> {
    let Some(text) = value.as_str() else {
        return Vec::new();
    };
    match name {
        "size" if !plan.sizes.contains_key(text) => {
            let names: Vec<String> = plan.sizes.keys().cloned().collect();
            vec![Problem::at(at.clone(), format!("no size `{text}` in provider.qemu.sizes"))
                .help(sizes_help(&names, text))]
        }
        "instance_type" if !plan.instance_types.contains_key(text) => {
            let size = plan.sizes.keys().next().map_or("small", String::as_str);
            vec![Problem::at(at.clone(), format!("instance type `{text}` is not mapped to a size"))
                .help(format!("map it under provider.qemu.instance_types, e.g. `{text}: {size}`"))]
        }
        _ => Vec::new(),
    }
}

/// A cell's launch fields as the qemu provider reads them (the image is read apart).
#[derive(Debug, Default, Deserialize)]
struct QemuLaunch {
    size: Option<String>,
    instance_type: Option<String>,
    disk_bus: Option<DiskBus>,
    nic: Option<Nic>,
    firmware: Option<Firmware>,
    #[serde(default)]
    disks: Vec<ExtraDisk>,
}

/// Memory and vCPUs, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Size {
    /// The size's name under `provider.qemu.sizes`; none for `provider.qemu.memory` and `cpus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The instance type it stands for, when it came from `instance_type`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    pub memory_mib: u64,
    pub cpus: u32,
}

/// Why a cell's launch fields name no hardware this `provider.qemu` section knows.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    #[error("launch fields: {0}")]
    Fields(serde_json::Error),
    #[error("no size `{0}` in provider.qemu.sizes")]
    NoSize(String),
    #[error("instance type `{0}` is not mapped to a size")]
    Unmapped(String),
}

/// The hardware of one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardware {
    pub size: Size,
    pub disk_bus: DiskBus,
    pub nic: Nic,
    pub firmware: Firmware,
    pub disks: Vec<ExtraDisk>,
}

impl Hardware {
    /// The hardware a cell asks for. `size` wins over `instance_type` when a cell has both (a spec
    /// shared with ec2 can still pin a qemu size).
    pub fn of(cell: &Cell, plan: &QemuPlan) -> Result<Hardware, HardwareError> {
        let launch: QemuLaunch =
            serde_json::from_value(serde_json::Value::Object(cell.launch.clone())).map_err(HardwareError::Fields)?;
        let named = |name: &str, instance_type: Option<String>| {
            let (memory_mib, cpus) = *plan.sizes.get(name).ok_or_else(|| HardwareError::NoSize(name.to_string()))?;
            Ok::<_, HardwareError>(Size { name: Some(name.to_string()), instance_type, memory_mib, cpus })
        };
        let size = match (&launch.size, &launch.instance_type) {
            (Some(name), _) => named(name, None)?,
            (None, Some(t)) => {
                let name = plan.instance_types.get(t).ok_or_else(|| HardwareError::Unmapped(t.clone()))?;
                named(name, Some(t.clone()))?
            }
            (None, None) => Size { name: None, instance_type: None, memory_mib: plan.memory_mib, cpus: plan.cpus },
        };
        Ok(Hardware {
            size,
            disk_bus: launch.disk_bus.unwrap_or_default(),
            nic: launch.nic.unwrap_or_default(),
            firmware: launch.firmware.unwrap_or_default(),
            disks: launch.disks,
        })
    }

    /// What the report shows: the hardware the cell really had.
    pub fn facts(&self) -> serde_json::Value {
        let disks: Vec<serde_json::Value> = self
            .disks
            .iter()
            .map(|d| serde_json::json!({ "size": d.size, "bus": d.bus.unwrap_or(self.disk_bus).name() }))
            .collect();
        let mut size = serde_json::json!({
            "memory": format!("{}M", self.size.memory_mib),
            "cpus": self.size.cpus,
        });
        if let Some(map) = size.as_object_mut() {
            if let Some(name) = &self.size.name {
                map.insert("name".into(), name.clone().into());
            }
            if let Some(t) = &self.size.instance_type {
                map.insert("instance_type".into(), t.clone().into());
            }
        }
        serde_json::json!({
            "size": size,
            "disk_bus": self.disk_bus.name(),
            "nic": self.nic.name(),
            "firmware": self.firmware.name(),
            "disks": disks,
        })
    }
}

/// Ports of the q35 machine's AHCI controller a disk may take: port 2 holds QEMU's default CD-ROM.
const IDE_PORTS: [u32; 5] = [0, 1, 3, 4, 5];

/// The q35 machine has no port left for another IDE disk.
#[derive(Debug, thiserror::Error)]
#[error("too many ide disks: the q35 machine has {} ports for them", IDE_PORTS.len())]
pub struct TooManyIdeDisks;

/// Disks as QEMU options, each a `-drive` (the file, `if=none`) and a `-device` on its bus, with the
/// controllers they need added once.
#[derive(Debug, Default)]
pub struct Drives {
    pub args: Vec<OsString>,
    count: usize,
    scsi: bool,
    ide: usize,
}

impl Drives {
    /// Adds a disk. `options` go on the `-drive` (`,snapshot=on`); the boot disk comes first.
    pub fn add(
        &mut self,
        bus: DiskBus,
        file: &Path,
        format: &str,
        options: &str,
        boot: bool,
    ) -> Result<(), TooManyIdeDisks> {
        let id = format!("disk{}", self.count);
        let mut drive = OsString::from("file=");
        drive.push(opt_value(file.as_os_str()));
        drive.push(format!(",format={format},if=none,id={id}{options}"));
        let mut device = match bus {
            DiskBus::VirtioBlk => format!("virtio-blk-pci,drive={id}"),
            // NVMe needs a serial; the guest sees it in /dev/disk/by-id.
            DiskBus::Nvme => format!("nvme,drive={id},serial=amiprobe{}", self.count),
            DiskBus::Scsi => {
                if !self.scsi {
                    self.scsi = true;
                    self.args.extend(["-device".into(), "virtio-scsi-pci,id=scsi0".into()]);
                }
                format!("scsi-hd,drive={id},bus=scsi0.0")
            }
            DiskBus::Ide => {
                let port = IDE_PORTS.get(self.ide).ok_or(TooManyIdeDisks)?;
                self.ide += 1;
                format!("ide-hd,drive={id},bus=ide.{port}")
            }
        };
        if boot {
            device.push_str(",bootindex=0");
        }
        self.count += 1;
        self.args.extend(["-drive".into(), drive, "-device".into(), device.into()]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(drives: &Drives) -> Vec<String> {
        drives.args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn each_bus_gets_its_device_and_controllers_once() {
        let mut d = Drives::default();
        d.add(DiskBus::Nvme, Path::new("/i,1.qcow2"), "qcow2", ",snapshot=on", true).unwrap();
        d.add(DiskBus::Scsi, Path::new("/a.qcow2"), "qcow2", "", false).unwrap();
        d.add(DiskBus::Scsi, Path::new("/b.qcow2"), "qcow2", "", false).unwrap();
        d.add(DiskBus::Ide, Path::new("/c.qcow2"), "qcow2", "", false).unwrap();
        d.add(DiskBus::VirtioBlk, Path::new("/seed.img"), "raw", "", false).unwrap();
        assert_eq!(
            args(&d),
            [
                "-drive",
                "file=/i,,1.qcow2,format=qcow2,if=none,id=disk0,snapshot=on",
                "-device",
                "nvme,drive=disk0,serial=amiprobe0,bootindex=0",
                "-device",
                "virtio-scsi-pci,id=scsi0",
                "-drive",
                "file=/a.qcow2,format=qcow2,if=none,id=disk1",
                "-device",
                "scsi-hd,drive=disk1,bus=scsi0.0",
                "-drive",
                "file=/b.qcow2,format=qcow2,if=none,id=disk2",
                "-device",
                "scsi-hd,drive=disk2,bus=scsi0.0",
                "-drive",
                "file=/c.qcow2,format=qcow2,if=none,id=disk3",
                "-device",
                "ide-hd,drive=disk3,bus=ide.0",
                "-drive",
                "file=/seed.img,format=raw,if=none,id=disk4",
                "-device",
                "virtio-blk-pci,drive=disk4",
            ]
        );
    }

    #[test]
    fn ide_ports_run_out_with_a_reason() {
        let mut d = Drives::default();
        for _ in 0..IDE_PORTS.len() {
            d.add(DiskBus::Ide, Path::new("/x"), "raw", "", false).unwrap();
        }
        let err = d.add(DiskBus::Ide, Path::new("/x"), "raw", "", false).unwrap_err().to_string();
        assert!(err.contains("too many ide disks"), "{err}");
    }

    #[test]
    fn names_are_the_spec_words() {
        for (bus, word) in [
            (DiskBus::VirtioBlk, "virtio-blk"),
            (DiskBus::Nvme, "nvme"),
            (DiskBus::Scsi, "scsi"),
            (DiskBus::Ide, "ide"),
        ] {
            assert_eq!(serde_json::to_value(bus).unwrap(), word);
            assert_eq!(bus.name(), word);
        }
        for nic in [Nic::VirtioNet, Nic::E1000, Nic::E1000e, Nic::Rtl8139, Nic::Vmxnet3] {
            assert_eq!(serde_json::to_value(nic).unwrap(), nic.name());
        }
        assert_eq!(Nic::VirtioNet.device(), "virtio-net-pci");
        assert_eq!(serde_json::to_value(Firmware::Uefi).unwrap(), "uefi");
    }
}
