//! Boot phases of a cell: how long the firmware, the kernel, the initramfs and the userspace took,
//! and how long the services then took to answer, read from what amiprobe already has: the console
//! log ([`markers`]: the lines that bound the phases, and their clocks) and the launch's own times
//! ([`breakdown`]: the arithmetic).
//!
//! A phase is present only when both of its ends were seen; nothing is guessed. A log without
//! kernel stamps has no kernel phase, not a zero one.

mod breakdown;
mod markers;

use serde::{Deserialize, Serialize};

/// The launch's own times (seconds since the launch began) the console cannot give.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LaunchTimes {
    /// The provider reported the machine running: the firmware starts about then.
    pub running_s: Option<f64>,
    /// All probes passed.
    pub ready_s: Option<f64>,
}

/// The boot of a cell in phases, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BootPhases {
    /// The clock of the phases' `start_s`.
    pub clock: PhaseClock,
    /// When that clock read zero, in seconds since the launch began: the earliest time a stamped
    /// console line allows, late by as much as the console reached amiprobe late (up to a poll on
    /// QEMU; EC2's console output can lag by minutes). Absent when no stamped line was seen while
    /// the machine ran (then neither the firmware phase nor the services' can be timed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zero_at_s: Option<f64>,
    pub phases: Vec<BootPhase>,
}

/// What `start_s` counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseClock {
    /// The kernel's `[    1.234567]` stamps: seconds since the kernel started.
    Kernel,
    /// The launch agent's (EC2Launch's) wall-clock stamps, whole seconds since its first line.
    Agent,
}

/// One phase: from one seen point to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BootPhase {
    pub name: PhaseName,
    /// Seconds on the log's clock (`clock`); the firmware's phase starts before zero.
    pub start_s: f64,
    /// Seconds.
    pub length_s: f64,
    /// What showed the phase's start.
    pub from: PhaseBound,
    /// What showed its end.
    pub to: PhaseBound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    /// From the machine running to the kernel's first line: firmware and boot loader.
    Firmware,
    /// From `Linux version` to the kernel starting init (`Run /init as init process`).
    Kernel,
    /// From the initramfs's `/init` to the root file system's init (systemd starting or `Switching root`).
    Initramfs,
    /// From the system's init to the boot's last end seen: `Reached target` multi-user, graphical or
    /// cloud-init, cloud-init's `finished`, a `login:` prompt.
    Userspace,
    /// Windows on EC2: from the machine running to EC2Launch's first console line.
    WindowsStart,
    /// Windows on EC2: from `Windows is being configured` to `Windows sysprep configuration complete.`
    Sysprep,
    /// Windows on EC2: from sysprep complete to `Windows is Ready to use`.
    LaunchAgent,
    /// From the boot's end to all probes passing: the services the probes wait for.
    ToReady,
}

impl PhaseName {
    /// Every phase, in the order a boot goes through them (Linux's and Windows' interleaved).
    pub const ALL: [PhaseName; 8] = [
        PhaseName::Firmware,
        PhaseName::WindowsStart,
        PhaseName::Kernel,
        PhaseName::Initramfs,
        PhaseName::Sysprep,
        PhaseName::Userspace,
        PhaseName::LaunchAgent,
        PhaseName::ToReady,
    ];

    /// How reports name it.
    pub fn label(self) -> &'static str {
        // A phase added here belongs in `ALL` too.
        match self {
            PhaseName::Firmware => "firmware and boot loader",
            PhaseName::Kernel => "kernel",
            PhaseName::Initramfs => "initramfs",
            PhaseName::Userspace => "userspace to target",
            PhaseName::WindowsStart => "firmware and Windows start",
            PhaseName::Sysprep => "sysprep",
            PhaseName::LaunchAgent => "launch agent",
            PhaseName::ToReady => "to service ready",
        }
    }
}

/// A line of the console, or an amiprobe event, that bounded a phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PhaseBound {
    /// The console line (1-based); absent for an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The line as cleaned, or the event's name.
    pub text: String,
    pub timed_by: TimedBy,
}

/// How a bound's time is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimedBy {
    /// The line's own stamp (kernel, journald, cloud-init's uptime, EC2Launch).
    Stamp,
    /// The line has no stamp: when amiprobe first saw it (late by as much as the console was), or
    /// the next stamped line's stamp when that is sooner (it was printed before that line).
    Seen,
    /// An amiprobe event (`running_s`, `ready_s`).
    Event,
}

/// The phases of a cleaned console log (see [`crate::text::clean`]). `first_seen` holds, by line
/// index, when each line was first seen in seconds since the launch began (the console watch's; may
/// be empty, or shorter than the log).
pub fn boot_phases(text: &str, launch: &LaunchTimes, first_seen: &[f64]) -> Option<BootPhases> {
    let phases = breakdown::phases(&markers::scan(text), launch, first_seen);
    (!phases.phases.is_empty()).then_some(phases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::clean;

    /// Name, start and length of each phase, rounded to the millisecond.
    fn summary(p: &BootPhases) -> Vec<(PhaseName, f64, f64)> {
        let ms = |s: f64| (s * 1000.0).round() / 1000.0;
        p.phases.iter().map(|p| (p.name, ms(p.start_s), ms(p.length_s))).collect()
    }

    /// The busybox test image's console (scripts/build-test-image), real, as the report fixture keeps it.
    const BUSYBOX: &str = include_str!("../../tests/fixtures/report/run/cells/ok/console.log");
    /// The Debian image's console (scripts/build-debian-image, bookworm.qcow2, SeaBIOS, no seed
    /// volume), real, as the guest wrote it: colour codes and all.
    const DEBIAN: &[u8] = include_bytes!("../../tests/fixtures/console/debian-bookworm-bios.raw.log");

    #[test]
    fn busybox_kernel_then_its_init_to_the_login_prompt() {
        let p = boot_phases(BUSYBOX, &LaunchTimes::default(), &[]).unwrap();
        assert_eq!(p.clock, PhaseClock::Kernel);
        assert_eq!(p.zero_at_s, None);
        // The prompt has no stamp and nothing says when it was seen: no userspace phase.
        assert_eq!(summary(&p), [(PhaseName::Kernel, 0.0, 3.135)]);
        assert_eq!(p.phases[0].from.line, Some(1));
        assert_eq!(p.phases[0].to.text, "[    3.135244] Run /init as init process");
    }

    #[test]
    fn debian_kernel_initramfs_and_systemd_to_cloud_init() {
        let p = boot_phases(&clean(DEBIAN), &LaunchTimes::default(), &[]).unwrap();
        assert_eq!(
            summary(&p),
            [
                (PhaseName::Kernel, 0.0, 3.967),
                (PhaseName::Initramfs, 3.967, 5.572),
                (PhaseName::Userspace, 9.539, 38.901),
            ]
        );
        assert!(p.phases[1].to.text.contains("systemd[1]: systemd 252"), "{:?}", p.phases[1].to);
        assert!(p.phases[2].to.text.contains("Cloud-init v. 22.4.2 finished"), "{:?}", p.phases[2].to);
        assert_eq!(p.phases[2].to.timed_by, TimedBy::Stamp);
    }

    /// A cell's `boot_phases` as results.json holds it.
    #[test]
    fn as_results_json_holds_it() {
        let p = boot_phases(BUSYBOX, &LaunchTimes::default(), &[]).unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "clock": "kernel",
                "phases": [{
                    "name": "kernel",
                    "start_s": 0.0,
                    "length_s": 3.135244,
                    "from": { "line": 1, "text": BUSYBOX.lines().next().unwrap(), "timed_by": "stamp" },
                    "to": { "line": 335, "text": "[    3.135244] Run /init as init process", "timed_by": "stamp" },
                }],
            })
        );
    }

    /// The same image under OVMF (tests/fixtures/console/debian-bookworm-uefi.raw.log, real): the
    /// prompt shares its line with a stamped cloud-init line, which is not the prompt's stamp.
    #[test]
    fn debian_under_uefi() {
        let raw = include_bytes!("../../tests/fixtures/console/debian-bookworm-uefi.raw.log");
        let p = boot_phases(&clean(raw), &LaunchTimes::default(), &[]).unwrap();
        assert_eq!(
            summary(&p),
            [
                (PhaseName::Kernel, 0.0, 5.473),
                (PhaseName::Initramfs, 5.473, 6.058),
                (PhaseName::Userspace, 11.531, 40.979),
            ]
        );
        assert_eq!(p.phases[0].from.line, Some(14));
    }

    /// The launch clock tied in through when lines were seen. The times are made up: every line of
    /// the real log taken as seen 5 s after its stamp, the unstamped ones at the last stamp's.
    #[test]
    fn the_launch_clock_times_the_firmware_the_prompt_and_the_services() {
        let text = clean(DEBIAN);
        let mut last = 0.0;
        let seen: Vec<f64> = text
            .lines()
            .map(|l| {
                if let Some(s) =
                    l.strip_prefix('[').and_then(|l| l.split(']').next()).and_then(|s| s.trim().parse::<f64>().ok())
                {
                    last = s;
                }
                last + 5.0
            })
            .collect();
        let launch = LaunchTimes { running_s: Some(0.5), ready_s: Some(60.0) };
        let p = boot_phases(&text, &launch, &seen).unwrap();
        assert_eq!(p.zero_at_s, Some(5.0));
        let s = summary(&p);
        assert_eq!(s[0], (PhaseName::Firmware, -4.5, 4.5));
        assert_eq!(s.last(), Some(&(PhaseName::ToReady, 48.44, 6.56)));
        assert_eq!(p.phases[0].from.timed_by, TimedBy::Event);
    }

    /// Made up: systemd's coloured status lines and a prompt, as a console without kernel stamps
    /// shows them (`quiet`, or a kernel without `printk.time`).
    #[test]
    fn colour_codes_and_no_kernel_stamps_give_no_phase() {
        let raw = b"\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\nLinux version 6.1.0-50-amd64\r\nRun /init as init process\r\nhost login: ";
        assert_eq!(boot_phases(&clean(raw), &LaunchTimes { running_s: Some(1.0), ready_s: Some(9.0) }, &[]), None);
    }

    /// EC2Launch v2 (tests/fixtures/ec2/windows-ec2launch-v2-ready.log: its README says what is real).
    #[test]
    fn ec2launch_v2_sysprep_then_the_agent() {
        let log = include_str!("../../tests/fixtures/ec2/windows-ec2launch-v2-ready.log");
        let p = boot_phases(log, &LaunchTimes::default(), &[]).unwrap();
        assert_eq!(p.clock, PhaseClock::Agent);
        assert_eq!(summary(&p), [(PhaseName::Sysprep, 0.0, 142.0), (PhaseName::LaunchAgent, 142.0, 4.0)]);
    }

    #[test]
    fn ec2launch_v1_has_no_sysprep_line_to_start_from() {
        let log = include_str!("../../tests/fixtures/ec2/windows-ec2launch-v1-ready.log");
        let p = boot_phases(log, &LaunchTimes::default(), &[]).unwrap();
        assert_eq!(summary(&p), [(PhaseName::LaunchAgent, 0.0, 28.0)]);
        let failed = include_str!("../../tests/fixtures/ec2/windows-ec2launch-v2-failed.log");
        assert_eq!(boot_phases(failed, &LaunchTimes::default(), &[]), None);
    }
}
