//! The ec2 preflight's permission check against moto: every mutating call the run will make asked
//! with DryRun first, and a permission the credentials lack (moto launcher's `/deny`) refusing the
//! whole run, named by its IAM action, before anything is launched.
//!
//! Every test runs in its own loopback-only network namespace (`Moto::start`).

mod support;

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{out_dir, runtime, Moto, TestService, AMI, AMIS};

/// Every instance moto has, whatever its tags: a refused run must have launched none.
fn all_instances(moto: &Moto) -> usize {
    let client = moto.client();
    runtime().block_on(async {
        let out = client.describe_instances().send().await.expect("describe instances");
        out.reservations().iter().map(|r| r.instances().len()).sum()
    })
}

/// The lines of stderr that report a refused permission.
fn refused_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" refused in ")).collect()
}

#[test]
fn with_every_permission_the_dry_runs_pass_and_the_run_works() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    // Two cells of one launch shape (they differ in image only): one RunInstances DryRun.
    let cells = [(AMIS[0], "t3.micro"), (AMIS[1], "t3.micro")];
    let spec = spec(dir.path(), &cells, &http_probe("health", service.port, "20s"), "");
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(refused_lines(&stderr(&output)).is_empty(), "{}", stderr(&output));
    let calls = moto.calls();
    for call in ["RunInstances", "ImportKeyPair", "DeleteKeyPair", "TerminateInstances", "CreateTags"] {
        assert_eq!(calls.get(&format!("dryrun:{call}")), Some(&1), "{call}: {calls:?}");
    }
    assert_eq!(calls.get("RunInstances"), Some(&2), "{calls:?}");
    // The DryRun sent what a cell sends: its image, type, user data and tags.
    let asked = moto.requests("dryrun:RunInstances").remove(0);
    assert_eq!(asked["ImageId"], AMIS[0]);
    assert_eq!(asked["InstanceType"], "t3.micro");
    assert!(asked.contains_key("UserData"), "{asked:?}");
    assert_eq!(asked["TagSpecification.1.ResourceType"], "instance");
    assert_eq!(asked["TagSpecification.1.Tag.1.Key"], "amiprobe:run-id");
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_denied_create_tags_refuses_the_run_before_anything_is_launched() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    moto.control("/deny", json!({ "actions": ["ec2:CreateTags"] }));
    let spec = spec(dir.path(), &[(AMI, "t3.micro"), (AMIS[1], "t3.micro")], "", "");
    let (output, r) = run(&moto, &spec, &out);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    // One line for the one action, though RunInstances, ImportKeyPair and CreateTags all met it;
    // STS decoded which action EC2 refused.
    let lines = refused_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("ec2:CreateTags refused in eu-west-1 (needed to tag what the run creates")
            && lines[0].contains("UnauthorizedOperation on RunInstances, CreateTags, ImportKeyPair (DryRun)"),
        "{}",
        lines[0]
    );
    assert_eq!(r["status"], "refused");
    assert!(r["cells"][0]["reason"].as_str().unwrap().starts_with("not run: ec2:CreateTags refused"), "{r}");
    let calls = moto.calls();
    for real in ["RunInstances", "ImportKeyPair", "CreateTags"] {
        assert_eq!(calls.get(real), None, "{real} was really called: {calls:?}");
    }
    assert_eq!(all_instances(&moto), 0);
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_denied_run_instances_is_named_even_when_its_message_cannot_be_decoded() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    moto.control("/deny", json!({ "actions": ["ec2:RunInstances", "sts:DecodeAuthorizationMessage"] }));
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], "", "");
    let (output, r) = run(&moto, &spec, &out);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    let lines = refused_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("ec2:RunInstances refused in eu-west-1 (needed to launch cells): UnauthorizedOperation")
            && lines[0].contains("sts:DecodeAuthorizationMessage failed: AccessDenied"),
        "{}",
        lines[0]
    );
    assert_eq!(all_instances(&moto), 0);
    assert_nothing_left(&moto, &r);
}

#[test]
fn plan_check_names_the_ephemeral_groups_missing_permission_and_creates_nothing() {
    let moto = Moto::start();
    let (dir, _out) = out_dir();
    moto.control("/deny", json!({ "actions": ["ec2:AuthorizeSecurityGroupIngress", "ec2:DeleteKeyPair"] }));
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], "", ", security_group: ephemeral");
    let output = amiprobe(&moto, &["plan", spec.to_str().unwrap(), "--check"]).output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    let lines = refused_lines(&err);
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines.iter().any(|l| l.starts_with("error: ec2:DeleteKeyPair refused in eu-west-1")), "{err}");
    assert!(lines.iter().any(|l| l.starts_with("error: ec2:AuthorizeSecurityGroupIngress refused")), "{err}");
    let calls = moto.calls();
    assert_eq!(calls.get("dryrun:CreateSecurityGroup"), Some(&1), "{calls:?}");
    assert!(
        calls.keys().all(|k| k.starts_with("dryrun:")
            || k.starts_with("Describe")
            || k.starts_with("denied:")
            || k.starts_with("sts:")),
        "{calls:?}"
    );
}

/// Every action a policy allows.
fn actions(policy: &Value) -> Vec<String> {
    let mut out: Vec<String> = policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn policy_of_each_ec2_example_spec_allows_what_its_features_use() {
    let has = |policy: &Value, action: &str| actions(policy).iter().any(|a| a == action);
    for name in ["web-appliance", "windows-server", "boot-and-volumes"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_amiprobe"))
            .args(["policy", &format!("specs/{name}.yaml")])
            .current_dir(support::repo_root())
            .env_remove("AMI")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        let policy: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(policy["Version"], "2012-10-17");
        for always in ["ec2:RunInstances", "ec2:TerminateInstances", "ec2:DescribeImages", "ec2:GetConsoleOutput"] {
            assert!(has(&policy, always), "{name}: {always}");
        }
        // Every spec here has the run's own key, and no security group of the run's.
        assert!(has(&policy, "ec2:ImportKeyPair") && has(&policy, "ec2:DeleteKeyPair"), "{name}");
        assert!(!has(&policy, "ec2:CreateSecurityGroup") && !has(&policy, "iam:PassRole"), "{name}");
        let windows = name == "windows-server";
        assert_eq!(has(&policy, "ec2:GetPasswordData"), windows, "{name}");
        assert_eq!(has(&policy, "ec2:RebootInstances"), windows, "{name}");
        insta::assert_json_snapshot!(format!("policy_{name}"), policy);
    }
}

#[test]
fn policy_of_a_spec_with_its_own_group_and_an_instance_profile() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        "name: p\nprovider:\n  ec2: { security_group: ephemeral }\nmatrix:\n  image: ami-1\n  region: [eu-west-1, us-east-1]\n\
         launch:\n  instance_type: t3.micro\n  key_pair: ci-key\n  iam_instance_profile: arn:aws:iam::123456789012:instance-profile/probe\n\
         probes:\n  - { name: ssh, tcp: { port: 22 } }\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .args(["policy", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let policy: Value = serde_json::from_slice(&output.stdout).unwrap();
    let all = actions(&policy);
    for wanted in ["ec2:CreateSecurityGroup", "ec2:AuthorizeSecurityGroupIngress", "ec2:DescribeVpcs", "iam:PassRole"] {
        assert!(all.iter().any(|a| a == wanted), "{wanted}: {all:?}");
    }
    assert!(!all.iter().any(|a| a == "ec2:ImportKeyPair"), "a named key is not imported: {all:?}");
    let statements = policy["Statement"].as_array().unwrap();
    let pass = statements.iter().find(|s| s["Action"] == json!(["iam:PassRole"])).unwrap();
    assert_eq!(pass["Resource"], json!(["arn:aws:iam::123456789012:role/probe"]));
    let arns: Vec<&str> = statements
        .iter()
        .flat_map(|s| s["Resource"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert!(
        arns.iter().any(|a| a.starts_with("arn:aws:ec2:us-east-1:"))
            && arns.iter().any(|a| a.starts_with("arn:aws:ec2:eu-west-1:"))
    );
    assert!(arns.iter().all(|a| !a.starts_with("arn:aws:ec2:*")), "{arns:?}");
}
