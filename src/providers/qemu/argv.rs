//! QEMU's command line for a cell: the machine, its size, console, QMP socket and network with the
//! port forwards (the same on every start but for the host ports), and the image's own options
//! (`-kernel`, or the boot disk in its format). Values inside option strings are quoted the way
//! QEMU's option syntax wants them ([`opt_value`]).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::config::{DiskFormat, QemuImagePlan};
use super::firmware;
use super::hardware::{DiskBus, Drives, TooManyIdeDisks};
use super::{Prepared, QemuProvider};

/// Why the image's options could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("failed to read disk image {}: {source}", .path.display())]
    ReadImage { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Drives(#[from] TooManyIdeDisks),
}

impl QemuProvider {
    /// The command that starts a cell's QEMU, with `forwards` (guest port -> host port on 127.0.0.1).
    pub(super) fn vm_command(&self, prepared: &Prepared, forwards: &BTreeMap<u16, u16>) -> Command {
        let mut cmd = Command::new(&self.plan.binary);
        let mut qmp_arg = OsString::from("unix:");
        qmp_arg.push(opt_value(prepared.qmp_path.as_os_str()));
        qmp_arg.push(",server=on,wait=off");
        // `-serial file:` takes the rest of its value as the path, commas and all.
        let mut serial_arg = OsString::from("file:");
        serial_arg.push(&prepared.console_path);
        let size = &prepared.hardware.size;
        cmd.arg("-name")
            .arg(opt_value(OsStr::new(&prepared.name)))
            .args(["-machine", "q35", "-accel", prepared.accel])
            .args(["-m", &size.memory_mib.to_string(), "-smp", &size.cpus.to_string()])
            .args(["-display", "none", "-vga", "std", "-no-reboot", "-monitor", "none"])
            // A guest panic reaches QEMU through pvpanic and pauses the VM: its screen stays.
            .args(["-device", "pvpanic"])
            .args(self.panic_pauses_args())
            .arg("-serial")
            .arg(serial_arg)
            .args(prepared.firmware_log.as_deref().map(firmware::args).unwrap_or_default())
            .arg("-qmp")
            .arg(qmp_arg);
        let mut netdev = "user,id=n0,restrict=on".to_string();
        for (guest, host) in forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        let nic = format!("{},netdev=n0", prepared.hardware.nic.device());
        cmd.args(["-netdev", &netdev, "-device", &nic]);
        cmd.args(&prepared.disk_args);
        if let Some(socket) = &prepared.agent_path {
            cmd.args(super::guest_agent::GuestAgent::qemu_args(socket));
        }
        cmd
    }

    /// `-action` arrived in QEMU 6.0; before it, a guest panic paused the VM anyway.
    fn panic_pauses_args(&self) -> &'static [&'static str] {
        match self.version.get() {
            Some(&(major, _)) if major < 6 => &[],
            _ => &["-action", "panic=pause"],
        }
    }
}

/// The command line as the report shows it.
pub fn command_line(binary: &str, cmd: &Command) -> String {
    let args: Vec<String> = cmd.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    format!("{binary} {}", args.join(" "))
}

/// `-kernel`, `-initrd` and `-append` take their value whole (a comma is just a comma); a boot disk
/// goes first into `drives`, on `bus`.
pub fn image_args(
    args: &mut Vec<OsString>,
    drives: &mut Drives,
    image: &QemuImagePlan,
    bus: DiskBus,
) -> Result<(), ArgsError> {
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
            drives.add(bus, path, format.name(), ",snapshot=on", true)?;
        }
    }
    Ok(())
}

/// A value inside a QEMU option string (`-drive file=...,if=virtio`): a literal comma is written `,,`.
pub fn opt_value(value: &OsStr) -> OsString {
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
fn format_of_file(path: &Path) -> Result<DiskFormat, ArgsError> {
    let mut header = Vec::with_capacity(64);
    std::fs::File::open(path)
        .and_then(|f| f.take(64).read_to_end(&mut header))
        .map_err(|source| ArgsError::ReadImage { path: path.to_path_buf(), source })?;
    Ok(DiskFormat::detect(&header))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(err.to_string().contains("failed to read disk image"));
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
}
