//! The qemu provider's end-of-run sweep: QEMU processes are "tagged" with the run id through their
//! `-name amiprobe-RUN-CELL`, so any left running (whatever lost track of them) are found in /proc.

use super::resource;
use crate::provider::{CleanupStep, Ledger};

/// A QEMU process's arguments, when `pid` is one.
fn qemu_args(pid: u32) -> Option<Vec<String>> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    args.first().is_some_and(|a| a.contains("qemu-system")).then_some(args)
}

/// The `-name` QEMU was started with (`amiprobe-RUN-CELL`).
fn name_of(args: &[String]) -> Option<&str> {
    args.windows(2).find(|w| w[0] == "-name").map(|w| w[1].as_str())
}

/// Whether `pid` is still the QEMU of `cell` (and not a reused pid).
pub fn names_cell(pid: u32, cell: &str) -> bool {
    qemu_args(pid).is_some_and(|args| name_of(&args).is_some_and(|n| n.starts_with("amiprobe-") && n.ends_with(cell)))
}

/// Kills every QEMU process whose command line names this run, and takes it off the ledger.
pub fn sweep(run_id: &str, ledger: &Ledger) -> Vec<CleanupStep> {
    let tag = format!("amiprobe-{run_id}-");
    let mut steps = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return steps;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Some(args) = qemu_args(pid) else {
            continue;
        };
        let Some(name) = name_of(&args).map(str::to_string) else {
            continue;
        };
        if !name.starts_with(&tag) {
            continue;
        }
        // SAFETY: kill(2) of a process that names this run; SIGKILL, as its cell is long gone.
        let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let action = format!("kill qemu {pid} ({name}, found by the run's name)");
        steps.push(if rc == 0 {
            CleanupStep::ok(action)
        } else {
            CleanupStep::failed(action, std::io::Error::last_os_error().to_string())
        });
        ledger.retain(|r| resource::of(r).is_none_or(|process| process.pid != pid));
    }
    steps
}
