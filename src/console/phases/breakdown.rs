//! The arithmetic: markers and the launch's own times into phases, each present only when both of
//! its ends were seen.
//!
//! Two clocks meet here. The log's (kernel or launch agent) times the phases inside the boot to the
//! microsecond; the launch's (seconds since amiprobe began the launch: `running_s`, `ready_s`, and
//! when each console line was first seen) times what the log cannot: the firmware before the
//! kernel, and the services after the boot. They are tied by the stamped lines: a line stamped `t`
//! and first seen at `s` on the launch clock says the log's zero was at `s - t` or earlier; the
//! earliest such bound is taken: late by up to a poll on QEMU, by more where the console itself lags (EC2).

use super::markers::{Clock, Kind, Marker, Scan};
use super::{BootPhase, BootPhases, LaunchTimes, PhaseBound, PhaseClock, PhaseName, TimedBy};

/// A point of a phase: its time on the log's clock, and what showed it.
#[derive(Debug, Clone)]
struct Point {
    at: f64,
    bound: PhaseBound,
}

/// A log's markers with the means to time them.
struct Timer<'a> {
    scan: &'a Scan,
    first_seen: &'a [f64],
    /// When the log's clock read zero on the launch clock.
    zero_at: Option<f64>,
}

impl Timer<'_> {
    /// A marker's time: its stamp, else when it was seen (when the clocks are tied).
    fn point(&self, m: &Marker) -> Option<Point> {
        let (at, timed_by) = match (m.stamp, self.zero_at, self.first_seen.get(m.line - 1)) {
            (Some(at), _, _) => (at, TimedBy::Stamp),
            // Printed before the next stamped line, which may say so sooner than the seen time.
            (None, Some(zero), Some(seen)) => {
                (self.next_stamp(m.line).map_or(seen - zero, |t| t.min(seen - zero)), TimedBy::Seen)
            }
            _ => return None,
        };
        Some(Point { at, bound: PhaseBound { line: Some(m.line), text: m.text.trim().to_string(), timed_by } })
    }

    /// The stamp of the first stamped line after `line`.
    fn next_stamp(&self, line: usize) -> Option<f64> {
        self.scan.stamped.iter().find(|(l, _)| *l > line).map(|(_, at)| *at)
    }

    /// An amiprobe event at `at` on the launch clock, on the log's.
    fn event(&self, name: &str, at: Option<f64>) -> Option<Point> {
        let at = at? - self.zero_at?;
        Some(Point { at, bound: PhaseBound { line: None, text: name.to_string(), timed_by: TimedBy::Event } })
    }

    /// The first marker of these kinds, after line `after`, timed.
    fn first(&self, kinds: &[Kind], after: usize) -> Option<Point> {
        let m = self.scan.markers.iter().find(|m| kinds.contains(&m.kind) && m.line > after)?;
        self.point(m)
    }
}

/// Phases in order, kept when both ends were seen and come in order.
#[derive(Default)]
struct Phases(Vec<BootPhase>);

impl Phases {
    fn push(&mut self, name: PhaseName, from: Option<Point>, to: Option<Point>) {
        let (Some(from), Some(to)) = (from, to) else { return };
        // Ends out of order are no phase: a line seen late, or a reboot's.
        if to.at >= from.at {
            self.0.push(BootPhase {
                name,
                start_s: round(from.at),
                length_s: round(to.at - from.at),
                from: from.bound,
                to: to.bound,
            });
        }
    }
}

pub fn phases(scan: &Scan, launch: &LaunchTimes, first_seen: &[f64]) -> BootPhases {
    let timer = Timer { scan, first_seen, zero_at: zero_at(scan, first_seen) };
    let running = timer.event("machine running", launch.running_s);
    let ready = timer.event("all probes passed", launch.ready_s);
    let (clock, phases) = match scan.clock {
        Clock::Kernel => (PhaseClock::Kernel, linux(&timer, running, ready)),
        Clock::Agent => (PhaseClock::Agent, windows(&timer, running, ready)),
    };
    BootPhases { clock, zero_at_s: timer.zero_at.map(round), phases: phases.0 }
}

/// Firmware, kernel, initramfs (when one hands over to a root file system), userspace, services.
fn linux(timer: &Timer, running: Option<Point>, ready: Option<Point>) -> Phases {
    let kernel = timer.first(&[Kind::KernelStart], 0);
    let handover = timer.first(&[Kind::InitramfsStart, Kind::InitStart], 0);
    let handed_over = handover.as_ref().and_then(|h| h.bound.line);
    let initramfs = timer.scan.markers.iter().any(|m| m.kind == Kind::InitramfsStart);
    // Out of an initramfs: systemd's `Switching root` when systemd ran in it (it started there
    // too), else systemd starting after the handover.
    let switch = match handed_over {
        Some(after) if initramfs => {
            timer.first(&[Kind::SwitchRoot], after).or_else(|| timer.first(&[Kind::SystemdStart], after))
        }
        _ => None,
    };
    // The boot is over at the last of its ends that was seen (targets, cloud-init, a prompt).
    let target = timer
        .scan
        .markers
        .iter()
        .filter(|m| matches!(m.kind, Kind::Target | Kind::CloudInitFinished | Kind::LoginPrompt))
        .filter_map(|m| timer.point(m))
        .max_by(|a, b| a.at.total_cmp(&b.at));
    let mut phases = Phases::default();
    phases.push(PhaseName::Firmware, running, kernel.clone());
    phases.push(PhaseName::Kernel, kernel, handover.clone());
    match switch {
        Some(switch) => {
            phases.push(PhaseName::Initramfs, handover, Some(switch.clone()));
            phases.push(PhaseName::Userspace, Some(switch), target.clone());
        }
        // No switch seen: the init the kernel started is the userspace (the busybox image's
        // initramfs is its whole system).
        None => phases.push(PhaseName::Userspace, handover, target.clone()),
    }
    phases.push(PhaseName::ToReady, target, ready);
    phases
}

/// Windows on EC2, from EC2Launch's lines: what came before the agent, sysprep, the agent, services.
fn windows(timer: &Timer, running: Option<Point>, ready: Option<Point>) -> Phases {
    let agent_start = timer.scan.stamped.first().map(|(line, at)| Point {
        at: *at,
        bound: PhaseBound { line: Some(*line), text: "EC2Launch's first line".into(), timed_by: TimedBy::Stamp },
    });
    let done = timer.first(&[Kind::SysprepDone], 0);
    let windows_ready = timer.first(&[Kind::WindowsReady], 0);
    let mut phases = Phases::default();
    phases.push(PhaseName::WindowsStart, running, agent_start);
    phases.push(PhaseName::Sysprep, timer.first(&[Kind::SysprepRunning], 0), done.clone());
    phases.push(PhaseName::LaunchAgent, done, windows_ready.clone());
    phases.push(PhaseName::ToReady, windows_ready, ready);
    phases
}

/// When the log's clock read zero on the launch clock: the earliest bound its stamped lines give.
fn zero_at(scan: &Scan, first_seen: &[f64]) -> Option<f64> {
    scan.stamped.iter().filter_map(|(line, at)| first_seen.get(line - 1).map(|seen| seen - at)).min_by(f64::total_cmp)
}

/// Microseconds are all a kernel stamp has.
fn round(s: f64) -> f64 {
    (s * 1e6).round() / 1e6
}
