//! What the firmware says when it finds nothing to boot.
//!
//! SeaBIOS (`firmware: bios`) prints "Boot failed: not a bootable disk" and "No bootable device." on
//! the VGA screen only, never on the serial port the console log comes from, so an image without a
//! BIOS boot loader would otherwise show nothing but a probe timing out. QEMU's debug console
//! (`isa-debugcon` on port 0x402) gets the same messages: each cell keeps them in `firmware.log`,
//! and the machine's health names them as the cell's reason. (OVMF says its part on the serial
//! console: the console's built-in "nothing to boot" rule catches it.)
//!
//! A disk with the boot signature but no BIOS boot code (a UEFI-only image: OVMF needs the
//! signature) is worse: SeaBIOS says "Booting from Hard Disk..." and jumps into zeros, and the
//! machine hangs in silence. Those last words are what the cell's reason gives when the console then
//! stays empty.

use std::ffi::OsString;
use std::path::Path;

use super::argv::opt_value;

/// The file in the cell's directory.
pub const LOG: &str = "firmware.log";

/// SeaBIOS's last word once every boot device failed.
const NOTHING_TO_BOOT: &str = "No bootable device";

/// The QEMU options that write the firmware's debug console to `path`.
pub fn args(path: &Path) -> Vec<OsString> {
    let mut chardev = OsString::from("file,id=firmware,path=");
    chardev.push(opt_value(path.as_os_str()));
    vec!["-chardev".into(), chardev, "-device".into(), "isa-debugcon,iobase=0x402,chardev=firmware".into()]
}

/// Why the machine can't boot, from the firmware log's text: its boot failures, then its verdict.
pub fn nothing_to_boot(log: &str) -> Option<String> {
    if !log.contains(NOTHING_TO_BOOT) {
        return None;
    }
    let mut failures: Vec<&str> = log.lines().map(str::trim).filter(|l| l.starts_with("Boot failed:")).collect();
    failures.dedup();
    let details = if failures.is_empty() { String::new() } else { format!(" ({})", failures.join("; ")) };
    Some(format!("the firmware found nothing to boot: {NOTHING_TO_BOOT}{details}, in {LOG}"))
}

/// The firmware's last words about booting ("Booting from Hard Disk..."), quoted, with where they
/// are kept: what happened last on a machine whose console stayed empty.
pub fn last_boot_words(log: &str) -> Option<String> {
    // "Booting from 0000:7c00" follows "Booting from Hard Disk..." once the boot sector is loaded:
    // the device is the news, the address is not.
    let is_address = |l: &str| l.strip_prefix("Booting from ").is_some_and(|a| a.contains(':') && !a.contains(' '));
    let last = log
        .lines()
        .map(str::trim)
        .rfind(|l| (l.starts_with("Booting from") && !is_address(l)) || l.starts_with("Boot failed"))?;
    // Only a boot from a disk says anything: "Booting from ROM..." is QEMU's own loader starting a
    // `kernel:` image, which may well boot without a word on the serial console.
    if ["Booting from ROM", "Booting from ca00"].iter().any(|rom| last.starts_with(rom)) {
        return None;
    }
    Some(format!("the firmware's `{last}` ({LOG})"))
}

/// The firmware log's text, unless it grew past what SeaBIOS ever writes (a guest can write the
/// debug port too): then it says nothing and is not read again and again.
pub fn read(path: &Path) -> Option<String> {
    const MOST: u64 = 1 << 20;
    let file = std::fs::File::open(path).ok()?;
    if file.metadata().ok()?.len() > MOST {
        return None;
    }
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MOST), &mut text).ok()?;
    Some(String::from_utf8_lossy(&text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_waits_for_the_last_device_and_names_the_failures() {
        let trying = "Booting from Hard Disk...\nBoot failed: not a bootable disk\n\nenter handle_18:\n  NULL\n";
        assert_eq!(nothing_to_boot(trying), None, "other devices may still boot");
        let done = format!(
            "{trying}Booting from DVD/CD...\nBoot failed: Could not read from CDROM (code 0003)\nNo bootable device.\n"
        );
        assert_eq!(
            nothing_to_boot(&done).as_deref(),
            Some(
                "the firmware found nothing to boot: No bootable device (Boot failed: not a bootable disk; Boot \
                 failed: Could not read from CDROM (code 0003)), in firmware.log"
            )
        );
    }

    #[test]
    fn the_last_boot_words_are_quoted() {
        let log = "SeaBIOS (version 1.16.3)\nBooting from ROM...\nBooting from Hard Disk...\nBooting from 0000:7c00\n";
        assert_eq!(last_boot_words(log).as_deref(), Some("the firmware's `Booting from Hard Disk...` (firmware.log)"));
        assert_eq!(last_boot_words("SeaBIOS (version 1.16.3)\n"), None);
        // A `kernel:` image starts from QEMU's option ROM: its silence proves nothing.
        assert_eq!(last_boot_words("Booting from ROM...\nBooting from ca00:0054\n"), None);
    }

    #[test]
    fn a_path_with_commas_stays_one_option_value() {
        let args = args(Path::new("/tmp/a,b/firmware.log"));
        assert_eq!(args[1], OsString::from("file,id=firmware,path=/tmp/a,,b/firmware.log"));
    }
}
