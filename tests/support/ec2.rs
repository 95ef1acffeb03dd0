//! What every ec2 test does: a spec for moto, the amiprobe binary pointed at moto and at loopback
//! probes, results.json read back, and the check that nothing of the run is left on moto (instances
//! not terminated, key pairs, security groups).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::moto::Moto;

/// A spec for moto: `cells` as (image, instance type), probes on loopback ports.
pub fn spec(dir: &Path, cells: &[(&str, &str)], probes: &str, extra: &str) -> std::path::PathBuf {
    let include: Vec<String> =
        cells.iter().map(|(i, t)| format!("    - {{ image: {i}, instance_type: {t} }}")).collect();
    let text = format!(
        "name: moto-test\nprovider:\n  ec2: {{ region: eu-west-1, poll_interval: 500ms{extra} }}\nmatrix:\n  include:\n{}\nlaunch:\n  user_data: \"#!/bin/sh\\necho amiprobe-user-data\\n\"\n  tags: {{ team: platform }}\ncapture:\n  screenshots: [{{ every: 1s, until: 30s }}]\nprobes:\n{probes}\nconsole:\n  must_contain: [\"login:\"]\ntimeouts: {{ run: 2m }}\n",
        include.join("\n")
    );
    let file = dir.join("spec.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

pub fn http_probe(name: &str, port: u16, within: &str) -> String {
    format!("  - {{ name: {name}, http: {{ port: {port}, path: /health }}, expect: {{ json: {{ '$.status': up }} }}, within: {within}, interval: 500ms }}\n")
}

pub fn amiprobe(moto: &Moto, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amiprobe"));
    cmd.args(args).envs(moto.env());
    cmd
}

pub fn run(moto: &Moto, spec: &Path, out: &Path) -> (Output, Value) {
    run_with(moto, spec, out, &[])
}

pub fn run_with(moto: &Moto, spec: &Path, out: &Path, extra: &[&str]) -> (Output, Value) {
    let output = amiprobe(moto, &["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--probe-host", "127.0.0.1", "--allow-targets", "127.0.0.0/8"])
        .args(extra)
        .output()
        .unwrap();
    (output, results(out))
}

/// Starts a run in the background, for tests that interrupt it.
pub fn spawn_run(moto: &Moto, spec: &Path, out: &Path, stderr: Stdio) -> std::process::Child {
    amiprobe(moto, &["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--probe-host", "127.0.0.1", "--allow-targets", "127.0.0.0/8"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// The results in `out` as `amiprobe report` reads them: results.json once the run has ended,
/// rebuilt from its journal while it runs or after it was killed.
pub fn results(out: &Path) -> Value {
    let results = amiprobe::report::json::load(out).unwrap_or_else(|e| panic!("no results in {}: {e}", out.display()));
    serde_json::to_value(results).expect("results as JSON")
}

#[track_caller]
pub fn assert_nothing_left(moto: &Moto, results: &Value) {
    let run_id = results["run_id"].as_str().unwrap();
    let (instances, key_pairs) = moto.leftovers(run_id);
    let groups: Vec<String> =
        moto.security_groups(run_id).iter().filter_map(|g| g.group_id().map(str::to_string)).collect();
    assert!(
        instances.is_empty() && key_pairs.is_empty() && groups.is_empty(),
        "left on moto: instances {instances:?}, key pairs {key_pairs:?}, security groups {groups:?}"
    );
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn wait_for_screenshots(out: &Path, at_least: usize) {
    let started = Instant::now();
    loop {
        // The run has started (its journal exists) before its cells' files are counted.
        let begun = out.join("results.jsonl").exists() || out.join("results.json").exists();
        let n = if begun { walk_count(&out.join("cells")) } else { 0 };
        if n >= at_least {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no screenshots appeared");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| if e.path().is_dir() { walk_count(&e.path()) } else { 1 }).sum())
        .unwrap_or(0)
}
