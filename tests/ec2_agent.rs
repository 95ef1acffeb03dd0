//! `agent:` probes on ec2: commands run inside the instance by SSM Run Command, against the moto
//! launcher's SSM (`ssm_run.py`: agents that register after a delay or never, invocations that go
//! Pending -> InProgress -> Success/Failed with the output and exit code set per image, SSM's
//! request rules and its output cut).
//!
//! No test here gives `--probe-host`: agent probes need no address and no route to the machine, and
//! the run opens no port (with `security_group: ephemeral` it makes no group at all). Each test
//! runs in its own loopback-only namespace (`Moto::start`) and ends with nothing of its run left.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{out_dir, Moto};

const HEALTH: &str = "curl -fsS localhost:8080/health";
const ACTIVE: &str = "systemctl is-active web";

/// A spec of `cells` (image, instance type) with only agent probes, launched with an instance
/// profile unless `profile` is false.
fn agent_spec(dir: &Path, images: &[&str], probes: &str, profile: bool) -> PathBuf {
    agent_spec_with(dir, images, probes, profile, "")
}

/// [`agent_spec`] with `extra` top-level keys.
fn agent_spec_with(dir: &Path, images: &[&str], probes: &str, profile: bool, extra: &str) -> PathBuf {
    let include: Vec<String> =
        images.iter().map(|i| format!("    - {{ image: {i}, instance_type: t3.micro }}")).collect();
    let profile = if profile { "  iam_instance_profile: probe-profile\n" } else { "" };
    let text = format!(
        "name: agent-test\nprovider:\n  ec2: {{ region: eu-west-1, poll_interval: 500ms, security_group: ephemeral }}\n\
         matrix:\n  include:\n{}\nlaunch:\n{profile}  tags: {{ team: platform }}\n\
         capture:\n  screenshots: [{{ every: 2s, until: 10s }}]\nsecrets: [\"${{TOKEN}}\"]\nprobes:\n{probes}\
         {extra}timeouts: {{ run: 2m }}\n",
        include.join("\n")
    );
    let file = dir.join("spec.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Health through the agent, its JSON checked; the service's state, its exit status checked.
fn probes() -> String {
    format!(
        "  - {{ name: health, agent: {{ command: \"{HEALTH}\", timeout: 20s }}, expect: {{ json: {{ '$.status': up }} }}, within: 40s, interval: 1s }}\n\
         \x20 - {{ name: active, agent: {{ command: \"{ACTIVE} # ${{TOKEN}}\" }}, expect: {{ stdout_contains: active }}, within: 40s, interval: 1s }}\n"
    )
}

/// Runs `spec` with `TOKEN` set, with no probe host: agent probes need none.
fn run_agent(moto: &Moto, spec: &Path, out: &Path) -> (std::process::Output, Value) {
    let output = amiprobe(moto, &["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--var", "TOKEN=s3cret-token"])
        .output()
        .unwrap();
    assert!(out.join("results.json").exists(), "no results: {}", stderr(&output));
    (output, results(out))
}

fn cell_of<'a>(r: &'a Value, image: &str) -> &'a Value {
    let cells = r["cells"].as_array().unwrap_or_else(|| panic!("no cells: {r}"));
    cells.iter().find(|c| c["id"].as_str().is_some_and(|id| id.starts_with(image))).unwrap_or_else(|| panic!("{r}"))
}

fn probe_of<'a>(cell: &'a Value, name: &str) -> &'a Value {
    let probes = cell["probes"].as_array().unwrap_or_else(|| panic!("no probes: {cell}"));
    probes.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no probe {name}: {cell}"))
}

fn with_profile(moto: &Moto) {
    moto.iam("Action=CreateInstanceProfile&InstanceProfileName=probe-profile");
}

/// What an image's agent answers: the health JSON and the service state given.
fn agent_of(moto: &Moto, image: &str, health: &str, active: (&str, i64)) {
    let outputs = json!([
        { "contains": "curl -fsS", "stdout": health, "exit_code": 0 },
        { "contains": "is-active", "stdout": format!("{}\n# s3cret-token\n", active.0), "exit_code": active.1 },
    ]);
    moto.control("/agent", json!({ "image_id": image, "online_s": 1, "run_s": 0.5, "outputs": outputs }));
}

#[test]
fn agent_commands_pass_and_fail_with_no_route_to_the_machine() {
    let moto = Moto::start();
    with_profile(&moto);
    let (good, bad) = (moto.image(json!({ "ena_support": true })), moto.image(json!({ "ena_support": true })));
    agent_of(&moto, &good, r#"{"status": "up", "token": "s3cret-token"}"#, ("active", 0));
    agent_of(&moto, &bad, r#"{"status": "starting"}"#, ("failed", 3));
    let (dir, out) = out_dir();
    let spec = agent_spec(dir.path(), &[&good, &bad], &probes(), true);
    let (output, r) = run_agent(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(1), "one image fails: {}", stderr(&output));

    let passed = cell_of(&r, &good);
    assert_eq!(passed["status"], "passed", "{passed:#}");
    let health = probe_of(passed, "health");
    assert_eq!(health["last_ssh"]["target"], "SSM Run Command", "{health:#}");
    let said = health["last_ssh"]["stdout"].as_str().unwrap();
    assert!(said.contains("\"status\": \"up\"") && !said.contains("s3cret-token"), "masked: {said}");
    let active = probe_of(passed, "active");
    assert!(!active["last_ssh"]["command"].as_str().unwrap().contains("s3cret-token"), "{active:#}");

    let failed = cell_of(&r, &bad);
    assert_eq!(failed["status"], "failed", "the image's doing: {failed:#}");
    let health = probe_of(failed, "health");
    assert_eq!(health["passed"], false);
    assert!(health["message"].as_str().unwrap().contains("$.status"), "fails on its JSON: {health:#}");
    let active = probe_of(failed, "active");
    assert_eq!(active["last_ssh"]["exit_status"], 3, "{active:#}");
    assert!(active["message"].as_str().unwrap().contains("exit status 3"), "{active:#}");

    // Nothing opened, no address asked for: the run made no security group, and no probe
    // connected anywhere.
    assert!(moto.requests("CreateSecurityGroup").is_empty(), "a group for no port");
    let sends = moto.requests("ssm:SendCommand");
    assert!(!sends.is_empty(), "commands went through SSM");
    assert_nothing_left(&moto, &r);
}

#[test]
fn an_agent_that_never_registers_names_the_missing_instance_profile() {
    let moto = Moto::start();
    let image = moto.image(json!({ "ena_support": true }));
    moto.control("/agent", json!({ "image_id": image, "online_s": null }));
    let (dir, out) = out_dir();
    let probe = "  - { name: inside, agent: { command: \"true\" }, within: 8s, interval: 1s }\n";
    let spec = agent_spec(dir.path(), &[&image], probe, false);
    // Said before anything launches.
    let validate = amiprobe(&moto, &["validate", spec.to_str().unwrap(), "--var", "TOKEN=x"]).output().unwrap();
    let warned = String::from_utf8_lossy(&validate.stdout).into_owned() + &stderr(&validate);
    assert!(warned.contains("without an iam_instance_profile"), "{warned}");
    let (output, r) = run_agent(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let cell = cell_of(&r, &image);
    let inside = probe_of(cell, "inside");
    let message = inside["message"].as_str().unwrap();
    assert!(message.contains("has not registered"), "{message}");
    assert!(message.contains("the launch sets no iam_instance_profile"), "{message}");
    assert!(message.contains("AmazonSSMManagedInstanceCore"), "{message}");
    assert_nothing_left(&moto, &r);
}

#[test]
fn output_past_what_ssm_keeps_is_marked_cut() {
    let moto = Moto::start();
    with_profile(&moto);
    let image = moto.image(json!({ "ena_support": true }));
    let long = "x".repeat(30_000);
    moto.control("/agent", json!({ "image_id": image, "online_s": 0.5, "stdout": long, "exit_code": 0 }));
    let (dir, out) = out_dir();
    let probe = "  - { name: long, agent: { command: \"yes x | head -c 30000\" }, within: 30s, interval: 1s }\n";
    let spec = agent_spec(dir.path(), &[&image], probe, true);
    let (output, r) = run_agent(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let long = probe_of(cell_of(&r, &image), "long");
    assert_eq!(long["last_ssh"]["truncated"], true, "{long:#}");
    assert_nothing_left(&moto, &r);
}

/// After RebootInstances the agent is away (ConnectionLost) for longer than one attempt waits: the
/// probes' second round waits for it to register again, then passes.
#[test]
fn after_a_reboot_agent_probes_wait_for_the_agent_to_come_back() {
    let moto = Moto::start();
    with_profile(&moto);
    let image = moto.image(json!({ "ena_support": true }));
    let agent =
        json!({ "image_id": image, "online_s": 0.5, "run_s": 0.2, "stdout": "ok\n", "offline_after_reboot_s": 12 });
    moto.control("/agent", agent);
    let (dir, out) = out_dir();
    let probe = "  - { name: inside, agent: { command: \"echo ok\" }, expect: { stdout_contains: ok }, within: 40s, interval: 1s }\n";
    let spec = agent_spec_with(dir.path(), &[&image], probe, true, "reboot: true\n");
    let (output, r) = run_agent(&moto, &spec, &out);
    let cell = cell_of(&r, &image);
    assert_eq!(output.status.code(), Some(0), "{}\n{cell:#}", stderr(&output));
    let again = probe_of(cell, "inside (after reboot)");
    assert_eq!(again["passed"], true, "{again:#}");
    let first = again["attempts"][0]["message"].as_str().unwrap_or_default();
    assert!(first.contains("is ConnectionLost"), "the first attempt after the reboot met the agent away: {again:#}");
    assert_eq!(moto.requests("RebootInstances").len(), 1);
    assert_eq!(moto.requests("ssm:SendCommand").len(), 2, "one command per round");
    assert_nothing_left(&moto, &r);
}

/// `amiprobe policy` for an agent spec is enough for its run (the launcher's `/policy` evaluates
/// SSM's calls as IAM does, the instance's tags as `ssm:resourceTag`), and without `ssm:SendCommand`
/// the cell ends in error at the first refusal, naming it.
#[test]
fn an_agent_spec_passes_holding_exactly_its_policy() {
    let moto = Moto::start();
    with_profile(&moto);
    let image = moto.image(json!({ "ena_support": true }));
    agent_of(&moto, &image, r#"{"status": "up"}"#, ("active", 0));
    let (dir, out) = out_dir();
    let spec = agent_spec(dir.path(), &[&image], &probes(), true);
    let printed = amiprobe(&moto, &["policy", spec.to_str().unwrap(), "--var", "TOKEN=x"]).output().unwrap();
    assert_eq!(printed.status.code(), Some(0), "{}", stderr(&printed));
    let policy: Value = serde_json::from_slice(&printed.stdout).unwrap();
    moto.control("/policy", json!({ "document": policy }));
    let (output, r) = run_agent(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}\n{r:#}", stderr(&output));
    assert_nothing_left(&moto, &r);

    let mut refused = policy.clone();
    for statement in refused["Statement"].as_array_mut().unwrap() {
        if let Some(actions) = statement["Action"].as_array_mut() {
            actions.retain(|a| a != "ssm:SendCommand");
        }
    }
    refused["Statement"].as_array_mut().unwrap().retain(|s| !s["Action"].as_array().unwrap().is_empty());
    moto.control("/policy", json!({ "document": refused }));
    let (_, out) = out_dir();
    let (output, r) = run_agent(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    // The platform's refusal, said at once: the cell is in error, the image is not to blame.
    let cell = cell_of(&r, &image);
    assert_eq!(cell["status"], "error", "{cell:#}");
    let reason = cell["reason"].as_str().unwrap();
    assert!(reason.contains("AccessDeniedException") && reason.contains("ssm:SendCommand"), "{reason}");
    for probe in cell["probes"].as_array().unwrap() {
        assert!(probe["attempts"].as_array().map_or(0, Vec::len) <= 1, "not retried: {probe:#}");
    }
    assert_nothing_left(&moto, &r);
}

/// An account of the run's own, whose launches all go at once.
const RATES: &str = "rate_limits: { share: 1.0, run_instances: { burst: 50, per_second: 50 } }";

/// Forty cells whose agents come online together share their SendCommand calls (SSM takes 50
/// instances in one), and the SSM calls per cell stay few: the figures are printed.
#[test]
fn forty_cells_share_send_command_calls() {
    let moto = Moto::start();
    with_profile(&moto);
    let image = moto.image(json!({ "ena_support": true }));
    moto.control("/agent", json!({ "image_id": image, "online_s": 2, "run_s": 1, "stdout": "ok\n" }));
    let (dir, out) = out_dir();
    let types = ["t3.micro", "t3.small", "t3.medium", "t3.large", "m5.large", "c5.large", "r5.large", "t2.micro"];
    let mut include = String::new();
    for gb in [10, 12, 14, 16, 18] {
        for t in types {
            include
                .push_str(&format!("    - {{ image: {image}, instance_type: {t}, root_volume: {{ size: {gb} }} }}\n"));
        }
    }
    let probe = "  - { name: inside, agent: { command: \"echo ok\" }, expect: { stdout_contains: ok }, within: 60s, interval: 1s }\n";
    let text = format!(
        "name: agent-forty\nconcurrency: 40\nprovider:\n  ec2: {{ region: eu-west-1, poll_interval: 2s, {RATES} }}\n\
         matrix:\n  include:\n{include}launch:\n  iam_instance_profile: probe-profile\n\
         capture:\n  screenshots: [{{ every: 5s, until: 10s }}]\nprobes:\n{probe}timeouts: {{ run: 3m }}\n"
    );
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, text).unwrap();
    let (output, r) = run_agent(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(r["counts"]["passed"], 40, "{r}");
    let calls = moto.calls();
    let count = |action: &str| calls.get(action).copied().unwrap_or(0);
    let sends = count("ssm:SendCommand");
    let per_send: Vec<usize> = moto.requests("ssm:SendCommand").iter().map(instance_ids).collect();
    let ssm_calls: u64 = calls.iter().filter(|(k, _)| k.starts_with("ssm:")).map(|(_, n)| n).sum();
    println!(
        "40 cells: {sends} SendCommand ({per_send:?} instances each), {} DescribeInstanceInformation, \
         {} ListCommandInvocations, {} GetCommandInvocation; {:.2} SSM calls per cell",
        count("ssm:DescribeInstanceInformation"),
        count("ssm:ListCommandInvocations"),
        count("ssm:GetCommandInvocation"),
        ssm_calls as f64 / 40.0
    );
    assert!(per_send.iter().sum::<usize>() >= 40, "every instance was sent its command: {per_send:?}");
    assert!(sends <= 5, "cells ready together share SendCommand calls: {sends} for 40 cells");
    assert_nothing_left(&moto, &r);
}

/// The number of instance ids in one recorded SendCommand request.
fn instance_ids(request: &serde_json::Map<String, Value>) -> usize {
    match request.get("InstanceIds") {
        Some(Value::Array(ids)) => ids.len(),
        _ => request.keys().filter(|k| k.starts_with("InstanceIds.")).count(),
    }
}
