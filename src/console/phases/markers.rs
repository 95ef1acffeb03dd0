//! The console lines that bound boot phases, and the clocks their times are on: the kernel's
//! `[    1.234567]` stamps (seconds since the kernel started; journald's console lines use the
//! monotonic clock, the same within a boot), cloud-init's `Up 12.34 seconds` (uptime, the same
//! clock again), and EC2Launch's `2025/07/22 21:26:53Z: ` wall-clock stamps on Windows.
//!
//! Only the first boot is read: a reboot's `Linux version` starts a new kernel clock.

use std::sync::LazyLock;

use regex::Regex;

/// What a line says about the boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Linux version ...`: the kernel starts.
    KernelStart,
    /// `Run /init as init process`: the kernel hands over to an initramfs.
    InitramfsStart,
    /// `Run /sbin/init as init process` (or another init): the kernel hands over to the root file
    /// system's init directly.
    InitStart,
    /// systemd in an initrd (dracut's) hands over to the root file system: `systemd[1]: Switching root.`
    SwitchRoot,
    /// systemd starts: `systemd[1]: systemd 252... running in system mode`. After an initramfs
    /// without systemd (Debian's initramfs-tools) this is the root file system's init.
    SystemdStart,
    /// `Reached target` multi-user, graphical or cloud-init.
    Target,
    /// `Cloud-init v. ... finished at ...`.
    CloudInitFinished,
    /// A `login:` prompt.
    LoginPrompt,
    /// EC2Launch: `Windows is being configured. SysprepState=...` (sysprep runs).
    SysprepRunning,
    /// EC2Launch: `Windows sysprep configuration complete.`
    SysprepDone,
    /// EC2Launch: `Message: Windows is Ready to use`.
    WindowsReady,
}

/// A line that bounds a phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub kind: Kind,
    /// 1-based, as in the console findings.
    pub line: usize,
    pub text: String,
    /// Its time on the log's own clock (see [`Scan::clock`]), when the line carries one.
    pub stamp: Option<f64>,
}

/// Which clock the stamps of a log are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Seconds since the kernel started.
    Kernel,
    /// Seconds since the launch agent's first line (EC2Launch's wall clock, whole seconds).
    Agent,
}

/// What a log says, read once.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    pub clock: Clock,
    pub markers: Vec<Marker>,
    /// Every stamped line of the first boot (1-based line, stamp): what ties the log's clock to the
    /// launch's through the times the lines were first seen.
    pub stamped: Vec<(usize, f64)>,
}

static KERNEL_STAMP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\[\s*(\d+\.\d+)\]\s?(.*)$").unwrap());
static AGENT_STAMP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})Z: (.*)$").unwrap());
static UPTIME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bUp (\d+(?:\.\d+)?) seconds").unwrap());

/// The patterns of the Linux markers, checked in this order (a line is one marker at most).
static LINUX: LazyLock<Vec<(Kind, Regex)>> = LazyLock::new(|| {
    [
        (Kind::KernelStart, r"^Linux version \S+"),
        (Kind::InitramfsStart, r"^Run /init as init process"),
        (Kind::InitStart, r"^Run /\S+ as init process"),
        (Kind::SwitchRoot, r"systemd\[1\]: Switching root\."),
        (Kind::SystemdStart, r"systemd\[1\]: systemd \d+.* running in system mode"),
        (
            Kind::Target,
            r"Reached target (multi-user\.target|graphical\.target|cloud-init\.target|Multi-User System|Graphical Interface|Cloud-init target)",
        ),
        (Kind::CloudInitFinished, r"Cloud-init v\. \S+ finished at "),
        // At the start of a line; other output may follow on it (the Debian image's cloud-init does).
        (Kind::LoginPrompt, r"^\S+ login:( |$)"),
    ]
    .into_iter()
    .map(|(kind, pattern)| (kind, Regex::new(pattern).unwrap()))
    .collect()
});

static WINDOWS: LazyLock<Vec<(Kind, Regex)>> = LazyLock::new(|| {
    [
        (Kind::SysprepRunning, r"Windows is being configured\. SysprepState="),
        (Kind::SysprepDone, r"^Windows sysprep configuration complete\."),
        (Kind::WindowsReady, r"^Message: Windows is Ready to use"),
    ]
    .into_iter()
    .map(|(kind, pattern)| (kind, Regex::new(pattern).unwrap()))
    .collect()
});

/// The markers and stamps of a (cleaned) console log.
pub fn scan(text: &str) -> Scan {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let agent = lines.iter().filter(|l| AGENT_STAMP.is_match(l)).count();
    let kernel = lines.iter().filter(|l| KERNEL_STAMP.is_match(l)).count();
    if agent > kernel {
        scan_agent(&lines)
    } else {
        scan_linux(&lines)
    }
}

fn scan_linux(lines: &[&str]) -> Scan {
    let mut markers: Vec<Marker> = Vec::new();
    let mut stamped = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let (mut stamp, body) = match KERNEL_STAMP.captures(line) {
            Some(c) => (c[1].parse::<f64>().ok(), c.get(2).map_or("", |m| m.as_str())),
            None => (None, *line),
        };
        let Some(kind) = LINUX.iter().find(|(_, re)| re.is_match(body)).map(|(kind, _)| *kind) else {
            if let Some(s) = stamp {
                stamped.push((i + 1, s));
            }
            continue;
        };
        // A second kernel is a reboot: its clock starts again.
        if kind == Kind::KernelStart && markers.iter().any(|m| m.kind == Kind::KernelStart) {
            break;
        }
        if kind == Kind::CloudInitFinished && stamp.is_none() {
            stamp = UPTIME.captures(body).and_then(|c| c[1].parse().ok());
        }
        if let Some(s) = stamp {
            stamped.push((i + 1, s));
        }
        markers.push(Marker { kind, line: i + 1, text: line.to_string(), stamp });
    }
    Scan { clock: Clock::Kernel, markers, stamped }
}

fn scan_agent(lines: &[&str]) -> Scan {
    let mut markers = Vec::new();
    let mut stamped = Vec::new();
    let mut zero = None;
    for (i, line) in lines.iter().enumerate() {
        let Some(c) = AGENT_STAMP.captures(line) else { continue };
        let field = |n: usize| c[n].parse::<i64>().unwrap_or(0);
        let epoch = days_from_civil(field(1), field(2), field(3)) * 86_400 + field(4) * 3600 + field(5) * 60 + field(6);
        let stamp = (epoch - *zero.get_or_insert(epoch)) as f64;
        stamped.push((i + 1, stamp));
        let body = c.get(7).map_or("", |m| m.as_str());
        if let Some((kind, _)) = WINDOWS.iter().find(|(_, re)| re.is_match(body)) {
            markers.push(Marker { kind: *kind, line: i + 1, text: line.to_string(), stamp: Some(stamp) });
        }
    }
    Scan { clock: Clock::Agent, markers, stamped }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_since_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2025, 7, 22), 20_291);
    }

    #[test]
    fn stamps_and_markers_of_a_line() {
        let scan = scan("[    0.000000] Linux version 6.1.0\nplain\n[   12.5] x\r\n[  OK  ] Reached target multi-user.target - Multi-User System.\n");
        assert_eq!(scan.clock, Clock::Kernel);
        assert_eq!(scan.stamped, [(1, 0.0), (3, 12.5)]);
        let kinds: Vec<(Kind, usize, Option<f64>)> = scan.markers.iter().map(|m| (m.kind, m.line, m.stamp)).collect();
        assert_eq!(kinds, [(Kind::KernelStart, 1, Some(0.0)), (Kind::Target, 4, None)]);
    }
}
