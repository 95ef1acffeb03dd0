//! How close amiprobe runs to EC2's own speed limit.
//!
//!     cargo bench --bench ec2_speed -- 32       # cells (default 32, or AMIPROBE_BENCH_CELLS); 500 works
//!     AMIPROBE_BENCH_SHARE=1.0 cargo bench ...  # `rate_limits.share` (default: amiprobe's, 0.8)
//!
//! moto's EC2 (tests/support/moto_launcher.py) in a loopback-only network namespace, paced like EC2:
//! each instance is `pending` for 20-40 s, its service answers 5-25 s after it is `running` (its OS
//! boots after EC2 says running, and its network comes up with it), and it is
//! `shutting-down` for 10-30 s after TerminateInstances (`/timing`, seeded); EC2's request limits are
//! enforced server-side (`/throttle`: RunInstances 5 at once, then 2 a second) and calls take EC2's
//! time (`/latency`: RunInstances about a second, others about 50 ms). Every instance has its own
//! loopback address, where its service listens once booted: the spec's HTTP probe goes there
//! (`provider.ec2.address: public_ip`), as it would to a real machine. Until then that address drops
//! every packet, as EC2 does to an instance not up yet (`/timing`'s `drop_until_service`): a probe's
//! connect hangs there and gets through only at its kernel's next SYN retransmission after the service
//! came up, unless the probe gives up on it and connects anew sooner.
//!
//! One `amiprobe run` of N distinct cells (image x instance type x root volume size), then figures:
//! wall time against the bound EC2 itself sets, CPU and peak memory of the amiprobe process, API calls
//! per cell, calls the server throttled, screenshots per cell, and how long after its service came up
//! each cell's probe passed (its service's first `200`: what the drops cost). The bound is the latest of, over the
//! launches k in order, the earliest moment EC2's RunInstances limit allows launch k (burst 5, 2 a
//! second from the start) + that instance's boot and service time + one probe interval: no client can
//! have every cell's probe passed sooner (one RunInstances call takes one image and one instance
//! type, so distinct cells need a call each). It leaves out the preflight, RunInstances' own second
//! and the cleanup, so a ratio somewhat above 1 is the best there is.
//!
//! Figures only, nothing asserted on time. It fails loudly when the run leaks (an instance not
//! terminated, a key pair or security group left), a cell does not pass, amiprobe crashes or the
//! launcher dies: the figures of a broken run mean nothing. Needs root (a network namespace) and the
//! moto venv of `scripts/install-deps moto`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use serde_json::{json, Value};
use support::moto::{Moto, AMIS};

/// EC2's RunInstances request bucket (its published limit, and amiprobe's default): 5 at once, then 2
/// a second.
const RUN_BURST: f64 = 5.0;
const RUN_PER_S: f64 = 2.0;
/// amiprobe's default pace (`rate_limits.share: 0.8`): a RunInstances bucket of 4 that starts half
/// full, refilled at 1.6/s. The second bound is the one amiprobe holds itself to by default.
const PACED_START: f64 = 2.0;
const PACED_PER_S: f64 = 1.6;
/// The spec's probe interval: after the service is up, a probe may need up to one interval to see it.
const PROBE_INTERVAL_S: f64 = 1.0;
/// Where the instances' services listen (each on its own address).
const SERVICE_PORT: u16 = 80;

/// Instance types moto knows and the preflight accepts for its AMIs (x86_64, no boot mode asked).
const TYPES: [&str; 20] = [
    "t3.nano",
    "t3.micro",
    "t3.small",
    "t3.medium",
    "t3.large",
    "t3.xlarge",
    "t3.2xlarge",
    "m5.large",
    "m5.xlarge",
    "m5.2xlarge",
    "c5.large",
    "c5.xlarge",
    "c5.2xlarge",
    "r5.large",
    "r5.xlarge",
    "r5.2xlarge",
    "t2.micro",
    "t2.small",
    "t2.medium",
    "t2.large",
];
/// Root volume sizes, the third axis: 10 images x 20 types x 3 sizes = 600 distinct cells.
const ROOT_GB: [u32; 3] = [10, 20, 30];

/// Makes this namespace's connects retry a dropped SYN after 1 s, 3 s, 7 s …, as most clients
/// EC2 sees do: Linux 6.x first retries four times a second apart (`tcp_syn_linear_timeouts`, per
/// network namespace), which hides most of what a silent attempt costs. Says what it found.
fn exponential_syn_retries() -> &'static str {
    let knob = "/proc/sys/net/ipv4/tcp_syn_linear_timeouts";
    match std::fs::read_to_string(knob) {
        Err(_) => "exponential (no linear SYN retries on this kernel)",
        Ok(_) => {
            std::fs::write(knob, "0").expect("set tcp_syn_linear_timeouts in the bench's namespace");
            "exponential (tcp_syn_linear_timeouts set to 0 in the bench's namespace)"
        }
    }
}

fn main() {
    // `cargo bench -- 32` passes `32 --bench`: the first number is the cell count.
    let cells: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .or_else(|| std::env::var("AMIPROBE_BENCH_CELLS").ok().and_then(|v| v.parse().ok()))
        .unwrap_or(32);
    let most = AMIS.len() * TYPES.len() * ROOT_GB.len();
    assert!((1..=most).contains(&cells), "between 1 and {most} cells, not {cells}");

    let moto = Moto::start();
    let syn_retries = exponential_syn_retries();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, spec_text(cells)).expect("write spec");

    // A clean slate, then EC2's pace; /timeline counts from the reset's answer, the run starts right after.
    moto.control("/reset", json!({}));
    let epoch = Instant::now();
    moto.control(
        "/timing",
        json!({
            "boot_s": [20, 40], "service_s": [5, 25], "shutting_down_s": [10, 30], "seed": 1, "port": SERVICE_PORT,
            "drop_until_service": true,
        }),
    );
    moto.control("/throttle", json!({ "enabled": true }));
    moto.control("/latency", json!({ "RunInstances": 1.0, "*": 0.05, "jitter": 0.2 }));

    let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
    let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
    let started = Instant::now();
    let start_s = (started - epoch).as_secs_f64();
    // AMIPROBE_BENCH_WRAP="valgrind --tool=massif" runs amiprobe under a profiler (figures then are
    // the profiler's).
    let wrap: Vec<String> =
        std::env::var("AMIPROBE_BENCH_WRAP").unwrap_or_default().split_whitespace().map(str::to_string).collect();
    let program = wrap.first().cloned().unwrap_or_else(|| env!("CARGO_BIN_EXE_amiprobe").to_string());
    let wrapped =
        wrap.iter().skip(1).cloned().chain((!wrap.is_empty()).then(|| env!("CARGO_BIN_EXE_amiprobe").to_string()));
    // Reaped by wait4 (below), not Child::wait: wait4 also gives this child's own rusage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(program)
        .args(wrapped)
        .args(["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .envs(moto.env())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start amiprobe");
    let (status, usage) = wait_with_usage(child.id());
    let wall = started.elapsed();
    let tail = || tail_of(&dir.path().join("stderr"), 40);

    // The launcher must have lived through the run: its figures are the run's.
    let calls = moto.get("/calls");
    let timeline = moto.get("/timeline");
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "amiprobe ended with {status:?} (signal {:?}):\n{}",
        status.signal(),
        tail()
    );
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).unwrap_or_else(|e| panic!("results.json: {e}\n{}", tail())),
    )
    .expect("results.json is JSON");
    let run_id = results["run_id"].as_str().expect("run_id").to_string();

    let bound = bound_s(&timeline);
    let paced = bound_at(&timeline, PACED_START, PACED_PER_S);
    let calls: BTreeMap<String, u64> = serde_json::from_value(calls).expect("calls");
    let actions: BTreeMap<&str, u64> =
        calls.iter().filter(|(k, _)| !k.contains(':') && *k != "throttled").map(|(k, v)| (k.as_str(), *v)).collect();
    let screenshot_calls = actions.get("GetConsoleScreenshot").copied().unwrap_or(0);
    let other_calls: u64 = actions.iter().filter(|(k, _)| **k != "GetConsoleScreenshot").map(|(_, v)| v).sum();
    let throttled: BTreeMap<&str, u64> = calls
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("throttled:").map(|a| (a, *v)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let shots: Vec<usize> = results["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| c["screenshots"].as_array().map_or(0, Vec::len))
        .collect();
    let passed = results["counts"]["passed"].as_u64().unwrap_or(0) as usize;

    let n = cells as f64;
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    println!("ec2_speed: {cells} cells, {passed} passed (exit {:?})", status.code());
    println!("  SYN retries: {syn_retries}");
    println!(
        "  wall {:.1}s, bound {bound:.1}s (RunInstances 5 + 2/s, boot 20-40 s, service 5-25 s, probe interval {PROBE_INTERVAL_S}s): ratio {:.2}",
        wall.as_secs_f64(),
        wall.as_secs_f64() / bound
    );
    println!(
        "  bound at amiprobe's default pace (share 0.8: RunInstances 2 at once, then 1.6/s) {paced:.1}s: ratio {:.2}",
        wall.as_secs_f64() / paced
    );
    println!(
        "  amiprobe: user {:.2}s + sys {:.2}s CPU, peak RSS {:.1} MiB",
        cpu(usage.ru_utime),
        cpu(usage.ru_stime),
        usage.ru_maxrss as f64 / 1024.0
    );
    println!(
        "  API calls: {:.2} a cell besides screenshots ({other_calls}), {:.2} screenshots a cell ({screenshot_calls})",
        other_calls as f64 / n,
        screenshot_calls as f64 / n
    );
    println!("    by action: {}", list(&actions));
    println!("  throttled by the server: {} ({})", calls.get("throttled").copied().unwrap_or(0), list(&throttled));
    println!(
        "  screenshots in results.json: {:.2} a cell (min {}, max {})",
        shots.iter().sum::<usize>() as f64 / n,
        shots.iter().min().unwrap_or(&0),
        shots.iter().max().unwrap_or(&0)
    );
    launch_figures(&timeline, start_s, wall.as_secs_f64());

    let (instances, key_pairs) = moto.leftovers(&run_id);
    let groups: Vec<String> =
        moto.security_groups(&run_id).iter().filter_map(|g| g.group_id().map(str::to_string)).collect();
    println!(
        "  leftovers: {} instances, {} key pairs, {} security groups",
        instances.len(),
        key_pairs.len(),
        groups.len()
    );
    assert!(
        instances.is_empty() && key_pairs.is_empty() && groups.is_empty(),
        "the run leaked: instances {instances:?}, key pairs {key_pairs:?}, security groups {groups:?}"
    );
    assert_eq!(timeline.as_object().map_or(0, |t| t.len()), cells, "one launch a cell (the timeline):\n{}", tail());
    assert_eq!(passed, cells, "cells did not pass: the figures are not of a clean run\n{}", tail());
}

/// The spec: N distinct cells, one HTTP probe on each instance's own address, screenshots and a
/// console check as a real spec has them, every cell at once.
fn spec_text(cells: usize) -> String {
    // The pace amiprobe keeps: its default unless AMIPROBE_BENCH_SHARE says otherwise.
    let share = std::env::var("AMIPROBE_BENCH_SHARE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map(|share| format!(", rate_limits: {{ share: {share} }}"))
        .unwrap_or_default();
    let rows: Vec<String> = ROOT_GB
        .iter()
        .flat_map(|gb| TYPES.iter().flat_map(move |t| AMIS.iter().map(move |a| (a, t, gb))))
        .take(cells)
        .map(|(image, ty, gb)| {
            format!("    - {{ image: {image}, instance_type: {ty}, root_volume: {{ size: {gb}, type: gp3 }} }}")
        })
        .collect();
    format!(
        "name: ec2-speed\n\
         provider:\n  ec2: {{ region: eu-west-1, address: public_ip{share} }}\n\
         matrix:\n  include:\n{}\n\
         launch:\n  tags: {{ team: platform }}\n\
         capture:\n  screenshots:\n    - {{ every: 1s, until: 15s }}\n    - {{ every: 15s, until: 300s }}\n\
         probes:\n  - {{ name: service, http: {{ port: {SERVICE_PORT}, path: / }}, expect: {{ status: 200, body_contains: ok }}, within: 300s, interval: {PROBE_INTERVAL_S}s }}\n\
         console:\n  must_contain: [\"login:\"]\n\
         concurrency: {cells}\n\
         timeouts: {{ run: 20m }}\n",
        rows.join("\n")
    )
}

/// The bound, in seconds from amiprobe's start: over the launches k in the order EC2 accepted them,
/// the earliest moment its RunInstances bucket (full at the start) lets launch k through + that
/// instance's boot and service time + one probe interval.
fn bound_s(timeline: &Value) -> f64 {
    bound_at(timeline, RUN_BURST, RUN_PER_S)
}

/// The bound with launch k allowed at `(k - start) / per_s`.
fn bound_at(timeline: &Value, start: f64, per_s: f64) -> f64 {
    let mut launches: Vec<(f64, f64)> = timeline
        .as_object()
        .expect("timeline")
        .values()
        .map(|i| (seconds(i, "launched"), seconds(i, "boot_s") + seconds(i, "service_s")))
        .collect();
    launches.sort_by(|a, b| a.0.total_cmp(&b.0));
    launches
        .iter()
        .enumerate()
        .map(|(k, (_, ready))| ((k as f64 + 1.0 - start) / per_s).max(0.0) + ready + PROBE_INTERVAL_S)
        .fold(0.0, f64::max)
}

/// Where the time went, from the timeline: when launches started and ended (against what the bucket
/// allows), how long after its service came up each instance's probe passed (its first `200`) and
/// was asked to terminate.
fn launch_figures(timeline: &Value, start_s: f64, wall_s: f64) {
    let items: Vec<&Value> = timeline.as_object().expect("timeline").values().collect();
    if items.is_empty() {
        return;
    }
    let mut launched: Vec<f64> = items.iter().map(|i| seconds(i, "launched") - start_s).collect();
    launched.sort_by(f64::total_cmp);
    let last = launched.len() as f64;
    let allowed_last = ((last - RUN_BURST) / RUN_PER_S).max(0.0);
    println!(
        "  launches accepted (after RunInstances' own time): first {:.1}s, last {:.1}s after the start (the bucket \
         allows the last call at {allowed_last:.1}s)",
        launched[0],
        launched[launched.len() - 1]
    );
    // Only the probe asks these services, and its first 200 passes it: the gap is the probe's own delay
    // (its interval, and the SYN retransmission a connect begun while the address dropped waits for).
    let answered: Vec<f64> =
        items.iter().filter_map(|i| Some(i["first_answered_at"].as_f64()? - i["service_at"].as_f64()?)).collect();
    if !answered.is_empty() {
        let mean = answered.iter().sum::<f64>() / answered.len() as f64;
        let max = answered.iter().copied().fold(f64::MIN, f64::max);
        println!(
            "  probe passed (first 200) {mean:.2}s after the service came up (mean; max {max:.2}s; {} of {} cells)",
            answered.len(),
            items.len()
        );
    }
    let after_service: Vec<f64> =
        items.iter().filter_map(|i| Some(i["terminate_requested_at"].as_f64()? - i["service_at"].as_f64()?)).collect();
    if !after_service.is_empty() {
        let mean = after_service.iter().sum::<f64>() / after_service.len() as f64;
        let max = after_service.iter().copied().fold(f64::MIN, f64::max);
        println!("  terminate asked {mean:.1}s after the service came up (mean; max {max:.1}s)");
    }
    let ends: Vec<f64> = items.iter().filter_map(|i| i["terminate_requested_at"].as_f64()).collect();
    if let Some(end) = ends.iter().copied().reduce(f64::max) {
        let end = end - start_s;
        println!("  last terminate asked {end:.1}s after the start, {:.1}s before amiprobe ended", wall_s - end);
    }
}

fn seconds(item: &Value, key: &str) -> f64 {
    item[key].as_f64().unwrap_or_else(|| panic!("timeline entry without {key}: {item}"))
}

fn list(counts: &BTreeMap<&str, u64>) -> String {
    counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// Waits for the child with wait4(2), for its own resource usage (CPU, peak RSS), not the sum over
/// every child this process had.
fn wait_with_usage(pid: u32) -> (ExitStatus, libc::rusage) {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value to be written over; wait4 writes both out-parameters.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child by its pid; the pointers are to live locals.
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if rc == pid as libc::pid_t {
            return (ExitStatus::from_raw(status), usage);
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(err.kind(), std::io::ErrorKind::Interrupted, "wait4: {err}");
    }
}

fn tail_of(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
