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

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{out_dir, runtime, Moto, AMIS, WINDOWS_AMI};

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

/// Every instance moto has that is not terminated, and every key pair, whatever their tags (the
/// run's own are found by their tag; these are also found without).
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

/// GetPasswordData is not asked by the preflight (it needs an instance); refused once the machine
/// runs, it is the platform refusing the caller: the cell is in error after one attempt, not failed
/// as if the image had no password, and what was launched is removed.
#[test]
fn a_refused_password_is_the_platforms_error_not_the_images_failure() {
    let moto = Moto::start();
    windows_account(&moto);
    let policy = policy_of(&windows_spec(), Some(WINDOWS_AMI));
    moto.control("/policy", json!({ "document": without(&policy, "ec2:GetPasswordData") }));
    let (_dir, out) = out_dir();
    let (output, r) = run_windows(&moto, &out);
    assert_eq!(output.status.code(), Some(1), "{}\n{r:#}", stderr(&output));
    for cell in r["cells"].as_array().unwrap() {
        assert_eq!(cell["status"], "error", "{cell:#}");
        let probe = cell["probes"].as_array().unwrap().iter().find(|p| p["kind"] == "windows_password").unwrap();
        assert_eq!(probe["attempts_count"], 1, "refused once is refused for good: {probe:#}");
        assert!(probe["message"].as_str().unwrap().contains("UnauthorizedOperation"), "{probe:#}");
    }
    assert!(moto.calls().get("denied:GetPasswordData").is_some_and(|n| *n > 0), "{:?}", moto.calls());
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
    // them on: refused there, the run could not remove what it launches, and must not start. The
    // describe calls only the run makes are asked too: refused them, it would launch and never see
    // its machines. The preflight's own lookups (DescribeImages...) refused are named the same way.
    for action in [
        "ec2:DescribeImages",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeInstanceTypeOfferings",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:TerminateInstances",
        "ec2:ImportKeyPair",
        "ec2:DeleteKeyPair",
        "ec2:DescribeInstances",
        "ec2:DescribeKeyPairs",
    ] {
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
        for cell in r["cells"].as_array().unwrap() {
            let reason = cell["reason"].as_str().unwrap_or_default();
            assert!(reason.starts_with(&format!("not run: {action} refused")), "{action}: {cell:#}");
        }
        let calls = moto.calls();
        for real in ["RunInstances", "ImportKeyPair", "CreateTags", "TerminateInstances"] {
            assert_eq!(calls.get(real), None, "{action}: {real} was really called: {calls:?}");
        }
        assert_eq!(everything(&moto), (vec![], vec![]), "{action}");
    }
}

/// What the web appliance's probes ask of its machines, on the loopback the probes reach
/// (`--probe-host 127.0.0.1`): something on 443 and a health page on 8080. Root in the test's own
/// namespace may bind both.
fn web_appliance_services() {
    let tls = TcpListener::bind("127.0.0.1:443").expect("bind 443");
    std::thread::spawn(move || for _ in tls.incoming() {});
    let health = TcpListener::bind("127.0.0.1:8080").expect("bind 8080");
    std::thread::spawn(move || {
        for stream in health.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let body = r#"{"status": "up", "checks": "ok"}"#;
                let _ = write!(stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            });
        }
    });
}

/// A listener on 127.0.0.1:`port` that accepts and says nothing (a `tcp` probe's target).
fn listen(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("bind {port}: {e}"));
    std::thread::spawn(move || for _ in listener.incoming() {});
}

/// The example spec `name` copied into `dir` (with the files it names) with each (from, to) replaced:
/// the example's made-up images, subnet and group become ones moto has.
fn example(dir: &Path, name: &str, replace: &[(&str, &str)]) -> PathBuf {
    let specs = support::repo_root().join("specs");
    let mut text = std::fs::read_to_string(specs.join(format!("{name}.yaml"))).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "{name} has no {from}");
        text = text.replace(from, to);
    }
    std::fs::copy(specs.join("user-data.sh"), dir.join("user-data.sh")).unwrap();
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, text).unwrap();
    file
}

/// A subnet and a security group in moto's default VPC, as (subnet, group) ids.
fn subnet_and_group(moto: &Moto) -> (String, String) {
    let client = moto.client();
    runtime().block_on(async {
        let vpcs = client.describe_vpcs().send().await.expect("describe vpcs");
        let vpc = vpcs.vpcs().iter().find(|v| v.is_default() == Some(true)).and_then(|v| v.vpc_id()).unwrap();
        let subnets = client.describe_subnets().send().await.expect("describe subnets");
        let subnet = subnets.subnets().iter().find(|s| s.vpc_id() == Some(vpc)).and_then(|s| s.subnet_id()).unwrap();
        let group = client
            .create_security_group()
            .group_name("web")
            .description("web appliance")
            .vpc_id(vpc)
            .send()
            .await
            .expect("create security group");
        (subnet.to_string(), group.group_id().unwrap().to_string())
    })
}

/// Runs `spec` holding exactly its own policy: it passes, with no refusal and nothing left.
fn passes_holding_its_policy(moto: &Moto, spec: &Path, extra: &[&str]) -> Value {
    let before = everything(moto);
    let policy = policy_of(spec, None);
    moto.control("/policy", json!({ "document": policy }));
    let (_dir, out) = out_dir();
    let (output, r) = run_with(moto, spec, &out, extra);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}\n{r:#}");
    assert!(refused_lines(&err).is_empty(), "{err}");
    let calls = moto.calls();
    assert_eq!(calls.keys().filter(|k| k.starts_with("denied:")).count(), 0, "{calls:?}");
    assert_nothing_left(moto, &r);
    assert_eq!(everything(moto), before);
    assert_eq!(untagged_launch(moto).as_deref(), Some("UnauthorizedOperation"), "the policy was not enforced");
    policy
}

/// The error code of a launch without amiprobe's tag by amiprobe's credentials (not the oracle's),
/// asked with DryRun (answered `DryRunOperation` were it allowed).
fn untagged_launch(moto: &Moto) -> Option<String> {
    use aws_sdk_ec2::error::ProvideErrorMetadata as _;
    let api = moto.api();
    let launch = api.client.run_instances().dry_run(true).image_id(AMIS[0]).min_count(1).max_count(1);
    runtime().block_on(launch.send()).err().and_then(|e| e.code().map(str::to_string))
}

#[test]
fn the_web_appliance_example_passes_holding_exactly_its_policy() {
    let moto = Moto::start();
    web_appliance_services();
    let (subnet, group) = subnet_and_group(&moto);
    let dir = tempfile::tempdir().unwrap();
    let replace = [
        ("ami-0aaa", AMIS[0]),
        ("ami-0bbb", AMIS[1]),
        ("ami-0ccc", AMIS[2]),
        ("subnet-1", subnet.as_str()),
        ("sg-web", group.as_str()),
    ];
    let spec = example(dir.path(), "web-appliance", &replace);
    passes_holding_its_policy(&moto, &spec, &[]);
    // Every cell was launched into the named subnet and group, which the policy let it use.
    let launched = moto.requests("RunInstances");
    assert_eq!(launched.len(), 4);
    assert!(launched.iter().all(|r| r["SubnetId"] == subnet.as_str() && r["SecurityGroupId.1"] == group.as_str()));
}

#[test]
fn the_boot_and_volumes_example_passes_holding_exactly_its_policy() {
    let moto = Moto::start();
    listen(22);
    let image = moto.image(json!({ "boot_mode": "uefi-preferred", "ena_support": true }));
    let dir = tempfile::tempdir().unwrap();
    let spec = example(dir.path(), "boot-and-volumes", &[("ami-0aaa", image.as_str())]);
    passes_holding_its_policy(&moto, &spec, &[]);
    assert_eq!(moto.requests("RunInstances").len(), 4);
}

/// A role `name` in an instance profile `name`, in moto's IAM: as the console makes them.
fn profile_with_role(moto: &Moto, name: &str) {
    let trust = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
    moto.iam(&format!("Action=CreateRole&RoleName={name}&AssumeRolePolicyDocument={trust}"));
    moto.iam(&format!("Action=CreateInstanceProfile&InstanceProfileName={name}"));
    moto.iam(&format!("Action=AddRoleToInstanceProfile&InstanceProfileName={name}&RoleName={name}"));
}

/// What the examples do not use: the run's own security group, a named key, two regions and an
/// instance profile (tests/ec2_permissions.rs lints the policy of the same spec).
fn rich_spec(dir: &Path) -> PathBuf {
    let text = format!(
        r#"name: rich
provider:
  ec2: {{ security_group: ephemeral, poll_interval: 500ms }}
matrix:
  image: {image}
  region: [eu-west-1, us-east-1]
launch:
  instance_type: t3.micro
  key_pair: ci-key
  iam_instance_profile: arn:aws:iam::123456789012:instance-profile/probe
probes:
  - {{ name: ssh, tcp: {{ port: 22 }}, within: 30s }}
timeouts: {{ run: 2m }}
"#,
        image = AMIS[0]
    );
    let file = dir.join("rich.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

/// The named key the rich spec uses, in both its regions.
fn ci_keys(moto: &Moto) {
    for region in ["eu-west-1", "us-east-1"] {
        let client = moto.client_in(region);
        runtime().block_on(client.create_key_pair().key_name("ci-key").send()).expect("create ci-key");
    }
}

#[test]
fn a_spec_with_its_own_group_and_an_instance_profile_passes_holding_its_policy_and_names_what_is_missing() {
    let moto = Moto::start();
    listen(22);
    let dir = tempfile::tempdir().unwrap();
    let spec = rich_spec(dir.path());
    let probe_from = ["--probe-from", "203.0.113.7/32"];
    let setup = |moto: &Moto| {
        profile_with_role(moto, "probe");
        ci_keys(moto);
    };
    setup(&moto);
    let policy = passes_holding_its_policy(&moto, &spec, &probe_from);
    let launched = moto.requests("RunInstances");
    assert_eq!(launched.len(), 2);
    assert!(launched.iter().all(|r| r["IamInstanceProfile.Arn"].as_str().is_some_and(|a| a.ends_with("/probe"))));
    assert_eq!(moto.calls().get("DeleteSecurityGroup"), Some(&2), "one group per region, both removed");

    // iam:PassRole is asked with RunInstances' DryRun (it names the profile): EC2's message says which.
    for action in ["iam:PassRole", "ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup"] {
        moto.control("/reset", json!({}));
        setup(&moto);
        moto.control("/policy", json!({ "document": without(&policy, action) }));
        let (_dir, out) = out_dir();
        let (output, r) = run_with(&moto, &spec, &out, &probe_from);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{action}: {err}");
        let lines = refused_lines(&err);
        // One line per region: each asks for itself.
        assert_eq!(lines.len(), 2, "{action}: {err}");
        for region in ["eu-west-1", "us-east-1"] {
            let wanted = format!("refused: {action} refused in {region} (needed to");
            assert!(lines.iter().any(|l| l.contains(&wanted)), "{action}: {err}");
        }
        assert_eq!(r["status"], "refused", "{action}");
        let calls = moto.calls();
        for real in ["RunInstances", "CreateSecurityGroup"] {
            assert_eq!(calls.get(real), None, "{action}: {real} was really called: {calls:?}");
        }
        for region in ["eu-west-1", "us-east-1"] {
            let instances = moto.client_in(region);
            let out = runtime().block_on(instances.describe_instances().send()).expect("describe instances");
            assert!(out.reservations().is_empty(), "{action}: launched in {region}");
        }
    }
}
