//! The policy `amiprobe policy` prints, enforced: the moto launcher's `/policy` makes every call of
//! amiprobe's evaluated as IAM does for a caller holding exactly that policy (each EC2 call turned into
//! the IAM checks EC2 authorizes it with: the actions, resource ARNs and condition keys of the Service
//! Authorization Reference, the resources' tags from moto; see tests/support/ec2_authz.py and
//! iam_policy.py). Each example spec moto can run passes holding exactly its own policy, and nothing
//! of it is left; with one action taken out of the policy, the preflight names that action, the run
//! exits 2 and launches nothing.
//!
//! Every test runs in its own loopback-only network namespace (`Moto::start`).

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{out_dir, runtime, Moto, WINDOWS_AMI};

/// `amiprobe policy SPEC` with `AMI` set to `ami`, as JSON.
fn policy_of(spec: &Path, ami: Option<&str>) -> Value {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_amiprobe"));
    cmd.arg("policy").arg(spec).current_dir(support::repo_root()).env_remove("AMI");
    if let Some(ami) = ami {
        cmd.env("AMI", ami);
    }
    let output = cmd.output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `policy` without `action` anywhere; a statement left with no action is dropped.
fn without(policy: &Value, action: &str) -> Value {
    let mut policy = policy.clone();
    let statements = policy["Statement"].as_array_mut().unwrap();
    for statement in statements.iter_mut() {
        statement["Action"].as_array_mut().unwrap().retain(|a| a != action);
    }
    let before = statements.len();
    statements.retain(|s| !s["Action"].as_array().unwrap().is_empty());
    assert!(before > 0 && !policy.to_string().contains(&format!("\"{action}\"")), "{action} left in {policy:#}");
    policy
}

/// Every instance moto has that is not terminated, and every key pair, whatever their tags.
fn everything(moto: &Moto) -> (Vec<String>, Vec<String>) {
    let client = moto.client();
    runtime().block_on(async {
        let out = client.describe_instances().send().await.expect("describe instances");
        let instances = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() != "terminated"))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        let keys = client.describe_key_pairs().send().await.expect("describe key pairs");
        let keys = keys.key_pairs().iter().filter_map(|k| k.key_name().map(str::to_string)).collect();
        (instances, keys)
    })
}

fn windows_fixture() -> String {
    std::fs::read_to_string(support::fixtures().join("ec2/windows-ec2launch-v2-ready.log")).unwrap()
}

/// EC2 as the Windows example expects it: services on each instance's own address, EC2Launch's
/// readiness on the console after every boot, a password for the run's key.
fn windows_account(moto: &Moto) {
    moto.control(
        "/timing",
        json!({ "boot_s": 1, "service_s": 1, "reboot_s": 2, "seed": 7, "port": 80, "rdp_port": 3389 }),
    );
    moto.control("/windows", json!({ "password_s": 1 }));
    moto.control("/console", json!({ "text": windows_fixture(), "after_reboot": windows_fixture() }));
}

fn windows_spec() -> std::path::PathBuf {
    support::repo_root().join("specs/windows-server.yaml")
}

fn run_windows(moto: &Moto, out: &Path) -> (std::process::Output, Value) {
    let output = amiprobe(moto, &["run", windows_spec().to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("AMI", WINDOWS_AMI)
        .output()
        .unwrap();
    (output, results(out))
}

#[test]
fn the_windows_example_passes_holding_exactly_its_policy() {
    let moto = Moto::start();
    windows_account(&moto);
    let policy = policy_of(&windows_spec(), Some(WINDOWS_AMI));
    moto.control("/policy", json!({ "document": policy }));
    let (_dir, out) = out_dir();
    let (output, r) = run_windows(&moto, &out);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}\n{r:#}");
    assert!(!err.contains("refused"), "{err}");
    let calls = moto.calls();
    assert_eq!(calls.keys().filter(|k| k.starts_with("denied:")).count(), 0, "{calls:?}");
    for real in ["RunInstances", "RebootInstances", "GetPasswordData", "TerminateInstances", "DeleteKeyPair"] {
        assert!(calls.get(real).is_some_and(|n| *n > 0), "{real} not called: {calls:?}");
    }
    assert_nothing_left(&moto, &r);
    assert_eq!(everything(&moto), (vec![], vec![]));
}

/// The lines of stderr that report a refused permission.
fn refused_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" refused in ")).collect()
}

#[test]
fn with_one_action_taken_out_the_preflight_names_it_and_nothing_is_launched() {
    let moto = Moto::start();
    let policy = policy_of(&windows_spec(), Some(WINDOWS_AMI));
    // TerminateInstances and DeleteKeyPair are asked about on made-up ids, which the policy allows
    // them on: refused there, the run could not remove what it launches, and must not start.
    for action in
        ["ec2:RunInstances", "ec2:CreateTags", "ec2:TerminateInstances", "ec2:ImportKeyPair", "ec2:DeleteKeyPair"]
    {
        moto.control("/reset", json!({}));
        windows_account(&moto);
        moto.control("/policy", json!({ "document": without(&policy, action) }));
        let (_dir, out) = out_dir();
        let (output, r) = run_windows(&moto, &out);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{action}: {err}");
        let lines = refused_lines(&err);
        assert_eq!(lines.len(), 1, "{action}: {err}");
        assert!(
            lines[0].contains(&format!("refused: {action} refused in eu-west-1 (needed to")),
            "{action}: {}",
            lines[0]
        );
        if matches!(action, "ec2:TerminateInstances" | "ec2:DeleteKeyPair") {
            assert!(lines[0].contains("the run could not remove what it launches"), "{}", lines[0]);
        }
        assert_eq!(r["status"], "refused", "{action}");
        let calls = moto.calls();
        for real in ["RunInstances", "ImportKeyPair", "CreateTags", "TerminateInstances"] {
            assert_eq!(calls.get(real), None, "{action}: {real} was really called: {calls:?}");
        }
        assert_eq!(everything(&moto), (vec![], vec![]), "{action}");
    }
}
