//! `provider.ec2.assume_role` and `sweep --assume-role`, against moto's STS: every EC2 call of a run
//! and of a sweep is signed with the role's credentials, never the caller's (the launcher records
//! each call's access key as `_access_key`); a session shorter than the run is renewed before it
//! ends (the launcher's `/sts` shortens AssumeRole's sessions and lists each call made with an
//! expired one); a role that can't be assumed stops the command with one line, exit 2.
//!
//! The role is in moto's default account: moto keeps each account's resources apart, and the
//! launcher's extensions and the tests' own view of what is left are in that one.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{closed_port, out_dir, Moto, TestService, AMI};
use support::Test;

const ROLE: &str = "arn:aws:iam::123456789012:role/amiprobe-test";
/// The caller's own access key, as `Moto::env` sets it.
const BASE_KEY: &str = "testing";

/// A one-cell spec acting as [`ROLE`] with `role_extra` (`, external_id: x`...) in its section.
fn role_spec(dir: &Path, probes: &str, role_extra: &str) -> PathBuf {
    spec(dir, &[(AMI, "t3.micro")], probes, &format!(", assume_role: {{ role_arn: '{ROLE}'{role_extra} }}"))
}

/// Every EC2 call amiprobe made since the launcher's `from`th (the tests' own look at what is left,
/// signed with the launcher's oracle key, left out).
fn calls_since(moto: &Moto, from: usize) -> Vec<serde_json::Map<String, Value>> {
    let all: Vec<serde_json::Map<String, Value>> = serde_json::from_value(moto.get("/requests")).unwrap();
    all.into_iter().skip(from).filter(|c| c["_access_key"] != "oracle").collect()
}

/// How many EC2 calls the launcher has recorded, the tests' own included.
fn recorded(moto: &Moto) -> usize {
    moto.get("/requests").as_array().unwrap().len()
}

/// The access keys AssumeRole has given so far.
fn role_keys(moto: &Moto) -> BTreeSet<String> {
    let sts = moto.get("/sts");
    sts["sessions"].as_array().unwrap().iter().map(|s| s["access_key"].as_str().unwrap().to_string()).collect()
}

/// The access key of each STS call of `action` (`sts:GetCallerIdentity`...), in order.
fn sts_keys(moto: &Moto, action: &str) -> Vec<String> {
    let calls = moto.get("/sts")["calls"].as_array().unwrap().clone();
    calls.iter().filter(|c| c["action"] == action).map(|c| c["access_key"].as_str().unwrap().to_string()).collect()
}

/// Each call was signed with a key AssumeRole gave, none after its session ended; the distinct keys used.
#[track_caller]
fn assert_all_as_the_role(moto: &Moto, calls: &[serde_json::Map<String, Value>]) -> BTreeSet<String> {
    assert!(!calls.is_empty(), "no EC2 calls recorded");
    let given = role_keys(moto);
    let used: BTreeSet<String> =
        calls.iter().map(|c| c["_access_key"].as_str().unwrap_or("none").to_string()).collect();
    assert!(!used.contains(BASE_KEY), "a call was made with the caller's own key: {used:?}");
    assert!(used.is_subset(&given), "keys used {used:?}, AssumeRole gave {given:?}");
    assert_eq!(moto.get("/sts")["expired_uses"], json!([]), "calls made with an expired session's key");
    used
}

#[test]
fn a_run_as_a_role_makes_every_call_with_the_roles_credentials() {
    let moto = Moto::start();
    moto.control("/sts", json!({ "external_id": "team-ci-42" }));
    let service = TestService::start();
    let (dir, out) = out_dir();
    let spec = role_spec(dir.path(), &http_probe("health", service.port, "30s"), ", external_id: team-ci-42");
    let (output, results) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let calls = calls_since(&moto, 0);
    let actions: BTreeSet<&str> = calls.iter().filter_map(|c| c.get("Action").and_then(Value::as_str)).collect();
    for needed in ["RunInstances", "TerminateInstances", "DescribeImages"] {
        assert!(actions.contains(needed), "{needed} not among {actions:?}");
    }
    assert!(calls.iter().any(|c| c.get("DryRun").is_some_and(|d| d == "true")), "no DryRun preflight");
    let used = assert_all_as_the_role(&moto, &calls);
    assert_eq!(used.len(), 1, "one session for a short run: {used:?}");
    // AssumeRole itself with the caller's key, once; the credentials check with the role's.
    assert_eq!(sts_keys(&moto, "sts:AssumeRole"), [BASE_KEY]);
    assert_eq!(sts_keys(&moto, "sts:GetCallerIdentity"), used.iter().cloned().collect::<Vec<_>>());
    // The credentials check went through the role: the run acted as the assumed role.
    let principal = results["account"]["principal"].as_str().unwrap();
    assert_eq!(principal, "arn:aws:sts::123456789012:assumed-role/amiprobe-test/amiprobe-moto-test");
    assert_nothing_left(&moto, &results);
}

#[test]
fn sweep_as_a_role_removes_what_a_killed_run_left_with_the_roles_credentials() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec = role_spec(dir.path(), &http_probe("never", closed_port(), "100s"), "");
    let mut child = spawn_run(&moto, &spec, &out, Stdio::null());
    wait_for_screenshots(&out, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let run_id = results(&out)["run_id"].as_str().unwrap().to_string();
    assert_eq!(moto.leftovers(&run_id).0.len(), 1, "the killed run left its instance");
    let run_keys = role_keys(&moto);
    let from = recorded(&moto);

    let args = ["sweep", "--run-id", &run_id, "--assume-role", ROLE];
    let swept = amiprobe(&moto, &args).output().unwrap();
    assert_eq!(swept.status.code(), Some(0), "{}", stderr(&swept));
    assert_eq!(moto.leftovers(&run_id), (vec![], vec![]));
    let calls = calls_since(&moto, from);
    assert!(calls.iter().any(|c| c["Action"] == "TerminateInstances"), "{calls:?}");
    let used = assert_all_as_the_role(&moto, &calls);
    // A session of its own, not one of the run's.
    assert!(used.is_disjoint(&run_keys), "sweep used {used:?}, the run had {run_keys:?}");
}

#[test]
fn a_session_shorter_than_the_run_is_renewed_before_it_ends() {
    let moto = Moto::start();
    // Every session lasts 20s (STS's least is 15 min): the SDK renews each 10 to 15s before its end.
    moto.control("/sts", json!({ "session_s": 20 }));
    let (dir, out) = out_dir();
    // A probe that never passes keeps the cell (and the describes of its instance) going for 40s.
    let spec = role_spec(dir.path(), &http_probe("never", closed_port(), "40s"), ", duration: 15m");
    let (output, results) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(1), "the probe fails, nothing else: {}", stderr(&output));
    let calls = calls_since(&moto, 0);
    let used = assert_all_as_the_role(&moto, &calls);
    assert!(used.len() >= 2, "one session's key all along: {used:?}");
    // The cleanup, at the end of the run, still signs with a live session's key.
    let terminate = calls.iter().rev().find(|c| c["Action"] == "TerminateInstances").expect("TerminateInstances");
    assert!(used.contains(terminate["_access_key"].as_str().unwrap()));
    assert_nothing_left(&moto, &results);
}

#[test]
fn a_permission_the_role_lacks_is_found_and_decoded_as_the_role() {
    let moto = Moto::start();
    moto.control("/deny", json!({ "actions": ["ec2:CreateTags"] }));
    let (dir, out) = out_dir();
    let (output, results) = run(&moto, &role_spec(dir.path(), "", ""), &out);
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(said.contains("ec2:CreateTags refused in eu-west-1"), "{said}");
    let used = assert_all_as_the_role(&moto, &calls_since(&moto, 0));
    let decoded = sts_keys(&moto, "sts:DecodeAuthorizationMessage");
    assert!(
        !decoded.is_empty() && decoded.iter().all(|k| used.contains(k)),
        "decoded with {decoded:?}, EC2 had {used:?}"
    );
    assert_nothing_left(&moto, &results);
}

#[test]
fn a_role_that_cant_be_assumed_stops_run_and_sweep_with_one_line() {
    let moto = Moto::start();
    moto.control("/sts", json!({ "external_id": "right" }));
    let (dir, out) = out_dir();
    let spec = role_spec(dir.path(), &http_probe("health", closed_port(), "5s"), ", external_id: wrong");
    let output = amiprobe(&moto, &["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]).output().unwrap();
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert_eq!(said.lines().count(), 1, "one line:\n{said}");
    assert!(said.starts_with(&format!("error: could not assume role {ROLE} in eu-west-1: ")), "{said}");
    assert!(said.contains(": AssumeRole failed: AccessDenied: User: "), "{said}");
    assert!(said.trim_end().ends_with("or choose another role"), "{said}");
    assert!(!out.exists(), "a run that could not start wrote {}", out.display());
    assert_eq!(calls_since(&moto, 0).len(), 0, "an EC2 call was made");

    let sweep = amiprobe(&moto, &["sweep", "--assume-role", ROLE, "--external-id", "wrong"]).output().unwrap();
    let swept = stderr(&sweep);
    assert_eq!(sweep.status.code(), Some(2), "{swept}");
    assert_eq!(swept, said, "sweep says what run says");
}

#[test]
fn a_caller_without_credentials_is_told_so_not_that_the_role_refused() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec = role_spec(dir.path(), "", "");
    let output = amiprobe(&moto, &["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert_eq!(said.lines().count(), 1, "one line:\n{said}");
    // The line a run without a role gets: what the SDK's chain tried, and what to do.
    assert!(said.starts_with("error: no AWS credentials for eu-west-1: none in the environment"), "{said}");
    assert!(!out.exists());
    assert_eq!(sts_keys(&moto, "sts:AssumeRole"), Vec::<String>::new(), "AssumeRole was asked");
}

#[test]
fn a_role_arn_sts_would_refuse_is_found_at_its_place_in_the_spec() {
    let spec = "name: t\nprovider:\n  ec2:\n    assume_role:\n      role_arn: arn:aws:iam::123:user/me\n      \
                session_name: has space\n      duration: 5m\nmatrix:\n  image: ami-1\n  instance_type: t3.micro\n";
    let run = Test::new().file("spec.yaml", spec).args(["validate", "spec.yaml"]).run().code(2);
    let stderr = run.stderr();
    for expected in [
        "provider.ec2.assume_role.role_arn: `arn:aws:iam::123:user/me` is not an IAM role's ARN",
        "spec.yaml:5:17",
        "provider.ec2.assume_role.session_name: a session name has 2 to 64 characters",
        "spec.yaml:6:21",
        "provider.ec2.assume_role.duration: a role's session lasts from 15m to 12h",
        "spec.yaml:7:17",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }
    let flag = Test::new().args(["sweep", "--assume-role", "my-role"]).run().code(2);
    assert!(flag.stderr().contains("`my-role` is not an IAM role's ARN"), "{}", flag.stderr());
}
