//! The qemu provider's end-of-run sweep: QEMU processes are "tagged" with the run id through their
//! `-name amiprobe-RUN-CELL`, so any left running (whatever lost track of them) are found in /proc.

use crate::provider::{CleanupStep, Ledger, Resource};

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
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let is_qemu = args.first().is_some_and(|a| a.contains("qemu-system"));
        let Some(name) = args.windows(2).find(|w| w[0] == "-name").map(|w| w[1].clone()) else {
            continue;
        };
        if !is_qemu || !name.starts_with(&tag) {
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
        ledger.retain(|r| !matches!(r, Resource::Process { pid: p, .. } if *p == pid));
    }
    steps
}
