//! EC2 status checks and who is to blame, against moto's EC2 server through the real aws-sdk-ec2.
//!
//! An impaired instance reachability check is the image's failure (`failed`, JUnit `<failure>`); an
//! impaired system check, capacity, quotas and API errors are the platform's (`error`, JUnit
//! `<error>`). Each test runs in its own loopback-only namespace (`Moto::start`), probes loopback
//! with `--probe-host 127.0.0.1 --allow-targets 127.0.0.0/8`, and ends with nothing of its run left.

mod support;

use std::path::Path;
use std::time::Instant;

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{closed_port, out_dir, Moto, AMI};

/// Polls every 500ms, reads the console and the status checks every second.
const FAST: &str = ", console_poll_interval: 1s, status_poll_interval: 1s";

/// One cell whose probe never passes within a minute: only a status check can end it early.
fn run_impaired(status: Value) -> (Moto, std::process::Output, Value, tempfile::TempDir, std::path::PathBuf) {
    let moto = Moto::start();
    moto.control("/status", status);
    let (dir, out) = out_dir();
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], &http_probe("health", closed_port(), "60s"), FAST);
    let (output, r) = run(&moto, &spec, &out);
    (moto, output, r, dir, out)
}

/// How long the cell ran after its machine came up.
fn ran_for(cell: &Value) -> f64 {
    cell["timings"]["ended_s"].as_f64().unwrap() - cell["timings"]["running_s"].as_f64().unwrap()
}

fn junit(out: &Path) -> String {
    std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml")
}

#[test]
fn an_impaired_instance_check_fails_the_cell_early_as_the_image_s_fault() {
    let (moto, output, r, _dir, out) = run_impaired(json!({ "instance": "impaired" }));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let cell = &r["cells"][0];
    assert_eq!(cell["status"], "failed");
    assert_eq!(cell["reason"], "instance status check failed: reachability impaired");
    assert!(ran_for(cell) < 10.0, "ended {}s after running, not early", ran_for(cell));
    assert_eq!(r["counts"]["failed"], 1);
    assert_eq!(r["counts"]["errored"], 0);
    let junit = junit(&out);
    assert!(junit.contains("<failure") && !junit.contains("<error"), "{junit}");
    assert!(junit.contains("instance status check failed"), "{junit}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 passed, 1 failed, 0 errors"));
    assert_nothing_left(&moto, &r);
}

#[test]
fn an_impaired_system_check_is_an_infrastructure_error() {
    // Both impaired, as when AWS's hardware fails under a healthy image: the system check decides.
    let (moto, output, r, _dir, out) = run_impaired(json!({ "system": "impaired", "instance": "impaired" }));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let cell = &r["cells"][0];
    assert_eq!(cell["status"], "error");
    let reason = cell["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("system status check failed: reachability impaired")
            && reason.contains("an AWS infrastructure problem, not the image"),
        "{reason}"
    );
    assert!(ran_for(cell) < 10.0, "ended {}s after running, not early", ran_for(cell));
    assert_eq!(r["counts"]["errored"], 1);
    assert_eq!(r["counts"]["failed"], 0);
    let junit = junit(&out);
    assert!(junit.contains("<error") && !junit.contains("<failure"), "{junit}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 passed, 0 failed, 1 errors"));
    assert_nothing_left(&moto, &r);
}

#[test]
fn status_checks_are_one_call_per_tick_for_the_whole_run() {
    let moto = Moto::start();
    moto.control("/pending", json!({ "describes": 2 }));
    let (dir, out) = out_dir();
    let cells = [(AMI, "t3.micro"), (AMI, "t3.small"), (AMI, "t3.medium")];
    // A probe that fails after 6s keeps the three cells running side by side, their checks ok.
    let spec = spec(dir.path(), &cells, &http_probe("health", closed_port(), "6s"), FAST);
    let started = Instant::now();
    let (output, r) = run_with(&moto, &spec, &out, &["--concurrency", "3"]);
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    for cell in r["cells"].as_array().unwrap() {
        assert_eq!(cell["status"], "failed");
        assert!(cell["reason"].as_str().unwrap().starts_with("probe `health` failed"), "{}", cell["reason"]);
    }
    let calls = moto.calls();
    let status_calls = calls.get("DescribeInstanceStatus").copied().unwrap_or(0);
    let describes = calls["DescribeInstances"];
    eprintln!("{status_calls} DescribeInstanceStatus, {describes} DescribeInstances in {elapsed:.1}s");
    // Per-instance polling would make three calls a tick; one shared call a tick stays near elapsed/0.5.
    assert!(status_calls >= 3, "status checks were not read: {calls:?}");
    assert!(status_calls <= describes, "{status_calls} status calls for {describes} describes");
    assert!(status_calls as f64 <= elapsed / 0.5 + 3.0, "{status_calls} DescribeInstanceStatus calls in {elapsed:.1}s");
    let requests = moto.requests("DescribeInstanceStatus");
    assert!(requests.iter().all(|q| q["IncludeAllInstances"] == "true"), "{requests:?}");
    let most = requests.iter().map(|q| q.keys().filter(|k| k.starts_with("InstanceId.")).count()).max();
    assert_eq!(most, Some(3), "the three running instances in one call: {requests:?}");
    assert_nothing_left(&moto, &r);
}

#[test]
fn capacity_and_quota_refusals_are_errors_not_failures() {
    let moto = Moto::start();
    let capacity = json!({"action": "RunInstances", "code": "InsufficientInstanceCapacity", "status": 500,
        "count": 10, "when": {"InstanceType": "t3.micro"}});
    let quota = json!({"action": "RunInstances", "code": "VcpuLimitExceeded", "status": 400,
        "count": 10, "when": {"InstanceType": "t3.small"}});
    moto.control("/fault", capacity);
    moto.control("/fault", quota);
    let (dir, out) = out_dir();
    let spec =
        spec(dir.path(), &[(AMI, "t3.micro"), (AMI, "t3.small")], &http_probe("health", closed_port(), "5s"), "");
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let reasons: Vec<&str> = r["cells"].as_array().unwrap().iter().map(|c| c["reason"].as_str().unwrap()).collect();
    for cell in r["cells"].as_array().unwrap() {
        assert_eq!(cell["status"], "error", "{reasons:?}");
    }
    assert!(reasons.iter().any(|r| r.contains("InsufficientInstanceCapacity")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("VcpuLimitExceeded")), "{reasons:?}");
    let junit = junit(&out);
    assert_eq!(junit.matches("<error").count(), 2, "{junit}");
    assert!(!junit.contains("<failure"), "{junit}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 passed, 0 failed, 2 errors"));
    assert_nothing_left(&moto, &r);
}
