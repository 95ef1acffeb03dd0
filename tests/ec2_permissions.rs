//! The ec2 preflight's permission check against moto: every mutating call the run will make asked
//! with DryRun first, and a permission the credentials lack (moto launcher's `/deny`) refusing the
//! whole run, named by its IAM action, before anything is launched.
//!
//! Every test that talks to moto runs in its own loopback-only network namespace (`Moto::start`);
//! the policy lint tests run parliament (tests/support/policy_lint.py), which needs no network.
//!
//! What `amiprobe policy` prints is checked here (snapshots, and parliament's lint: no unknown
//! action or condition key, no malformed ARN), and enforced in tests/ec2_policy.rs: there the launcher's
//! `/policy` evaluates each call as IAM does for a caller holding exactly that policy, resource ARNs
//! and tags included, and the example specs pass holding it. `/deny` here stands in for a role that
//! lacks whole actions, whatever the resource, which is what the tests of the preflight's own logic
//! need (moto's built-in IAM check could not do either: it authorizes EC2 calls against the resource
//! `*` only, evaluates only `StringEquals` with no request values, and the launcher answers DryRun
//! calls before it runs).

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
    moto.control("/deny", json!({ "actions": ["ec2:AuthorizeSecurityGroupIngress"] }));
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], "", ", security_group: ephemeral");
    let output = amiprobe(&moto, &["plan", spec.to_str().unwrap(), "--check"]).output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    // Asked about a group that doesn't exist yet (a made-up id), which a policy conditioned on
    // amiprobe's tags alone refuses too: warned of, not taken as a refusal. CreateSecurityGroup and
    // the rest pass, so the check does.
    let lines = refused_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("warning: ec2:AuthorizeSecurityGroupIngress refused in eu-west-1"), "{err}");
    assert!(lines[0].contains("does not exist yet"), "{err}");
    let calls = moto.calls();
    assert_eq!(calls.get("dryrun:CreateSecurityGroup"), Some(&1), "{calls:?}");
    assert!(
        calls.keys().all(|k| k.starts_with("dryrun:")
            || k.starts_with("Describe")
            || k.starts_with("denied:")
            || k.starts_with("sts:")),
        "{calls:?}"
    );

    // A removal refused on its made-up id stops every cell: the run could not remove what it made.
    moto.control("/deny", json!({ "actions": ["ec2:DeleteKeyPair"] }));
    let output = amiprobe(&moto, &["plan", spec.to_str().unwrap(), "--check"]).output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: ec2:DeleteKeyPair refused in eu-west-1"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("the run could not remove what it launches"), "{line}");

    // Creating the group is asked about as a real cell would: refused, it stops every cell.
    moto.control("/deny", json!({ "actions": ["ec2:CreateSecurityGroup"] }));
    let output = amiprobe(&moto, &["plan", spec.to_str().unwrap(), "--check"]).output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.lines().any(|l| l.starts_with("error: ec2:CreateSecurityGroup refused in eu-west-1")), "{err}");
    assert!(err.contains("check: 1 permissions refused: no cell can run"), "{err}");
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

/// A spec using what the example specs do not: the run's own security group, a named key, two
/// regions and an instance profile.
const RICH_SPEC: &str = "name: p\nprovider:\n  ec2: { security_group: ephemeral }\nmatrix:\n  image: ami-1\n  region: [eu-west-1, us-east-1]\n\
     launch:\n  instance_type: t3.micro\n  key_pair: ci-key\n  iam_instance_profile: arn:aws:iam::123456789012:instance-profile/probe\n\
     probes:\n  - { name: ssh, tcp: { port: 22 } }\n  - { name: inside, agent: { command: \"true\" } }\n";

#[test]
fn policy_of_a_spec_with_its_own_group_and_an_instance_profile() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, RICH_SPEC).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .args(["policy", spec.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let policy: Value = serde_json::from_slice(&output.stdout).unwrap();
    let all = actions(&policy);
    for wanted in [
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:DescribeVpcs",
        "iam:PassRole",
        "ssm:SendCommand",
    ] {
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

/// parliament's finding groups that mean IAM would reject the policy or not grant what it says:
/// ERROR (unparsable JSON, parliament's own exception), MALFORMED (a missing element, duplicate
/// Sids, an action with no statement allowing one of the resource types it needs) and INVALID
/// (unknown prefixes and actions, unknown condition operators and keys, condition keys an action
/// does not support, malformed ARNs, mismatched condition types). Not counted: NOT_IDEAL
/// (RESOURCE_STAR: EC2's describe calls and sts:DecodeAuthorizationMessage only take `*`) and the
/// groups of judgement calls (privilege escalation hints, credentials exposure), which a
/// least-privilege policy for what amiprobe does may meet by design.
const BROKEN: &[&str] = &["ERROR", "MALFORMED", "INVALID"];

/// parliament's findings on `policy`, one JSON object each (see tests/support/policy_lint.py, which
/// also explains the one finding it re-judges: RESOURCE_MISMATCH across statements).
fn lint(policy: &str) -> Vec<Value> {
    let root = support::repo_root();
    let python = root.join("build/moto-venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/install-deps moto (scripts/test does)", python.display());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.json");
    std::fs::write(&file, policy).unwrap();
    let output =
        std::process::Command::new(python).arg(root.join("tests/support/policy_lint.py")).arg(&file).output().unwrap();
    assert!(output.status.success(), "policy_lint.py: {}", stderr(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn broken(findings: &[Value]) -> Vec<&Value> {
    findings.iter().filter(|f| BROKEN.contains(&f["group"].as_str().unwrap_or_default())).collect()
}

#[test]
fn the_linter_finds_each_kind_of_broken_policy() {
    // The canary: without it, a linter that ran nothing (or a filter that dropped everything)
    // would pass the real policies too.
    let bad = json!({ "Version": "2012-10-17", "Statement": [
        { "Sid": "A", "Effect": "Allow", "Action": ["ec2:RunInstance", "ec3:DescribeImages"], "Resource": "*" },
        { "Sid": "B", "Effect": "Allow", "Action": ["ec2:TerminateInstances"], "Resource": ["arn:aws:ec2:eu-west-1:*:volume/*"] },
        { "Sid": "C", "Effect": "Allow", "Action": ["ec2:DeleteKeyPair"], "Resource": ["arn:aws:ec2:eu-west-1:12:key-pair/*"] },
        { "Sid": "D", "Effect": "Allow", "Action": ["ec2:GetConsoleOutput"], "Resource": ["arn:aws:ec2:eu-west-1:*:instance/*"],
          "Condition": { "StringEquals": { "ec2:CreateAction": "RunInstances" } } },
        // RunInstances on instances only, with no other statement for its image, subnet...: a real
        // mismatch, which the cross-statement check must keep.
        { "Sid": "E", "Effect": "Allow", "Action": ["ec2:RunInstances"], "Resource": ["arn:aws:ec2:eu-west-1:*:instance/*"] }
    ]});
    let findings = lint(&bad.to_string());
    let kinds: std::collections::BTreeSet<&str> =
        broken(&findings).iter().filter_map(|f| f["issue"].as_str()).collect();
    let want = ["INVALID_ARN", "RESOURCE_MISMATCH", "UNKNOWN_ACTION", "UNKNOWN_CONDITION_FOR_ACTION", "UNKNOWN_PREFIX"];
    assert_eq!(kinds, want.into_iter().collect(), "{findings:#?}");
    let mismatched: Vec<Value> = findings
        .iter()
        .filter(|f| f["issue"] == "RESOURCE_MISMATCH")
        .flat_map(|f| f["detail"].as_array().cloned().unwrap_or_default())
        .map(|d| d["required_format"].clone())
        .collect();
    assert!(mismatched.contains(&json!("arn:*:ec2:*::image/*")), "{mismatched:?}");
    assert!(mismatched.contains(&json!("arn:*:ec2:*:*:instance/*")), "TerminateInstances on volumes: {mismatched:?}");

    // The same RunInstances split the way amiprobe's policy splits it is no mismatch.
    let split = json!({ "Version": "2012-10-17", "Statement": [
        { "Sid": "New", "Effect": "Allow", "Action": ["ec2:RunInstances"], "Resource": ["arn:aws:ec2:eu-west-1:*:instance/*"],
          "Condition": { "Null": { "aws:RequestTag/amiprobe:run-id": "false" } } },
        { "Sid": "Used", "Effect": "Allow", "Action": ["ec2:RunInstances"], "Resource": [
            "arn:aws:ec2:eu-west-1::image/*", "arn:aws:ec2:eu-west-1:*:subnet/*",
            "arn:aws:ec2:eu-west-1:*:network-interface/*", "arn:aws:ec2:eu-west-1:*:security-group/*"] }
    ]});
    let findings = lint(&split.to_string());
    assert!(broken(&findings).is_empty(), "{findings:#?}");
}

#[test]
fn the_policy_of_every_ec2_example_and_of_a_rich_spec_passes_the_linter() {
    let root = support::repo_root();
    let mut specs: Vec<std::path::PathBuf> = std::fs::read_dir(root.join("specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    specs.sort();
    let dir = tempfile::tempdir().unwrap();
    let rich = dir.path().join("rich.yaml");
    std::fs::write(&rich, RICH_SPEC).unwrap();
    specs.push(rich);
    let mut linted = Vec::new();
    for spec in &specs {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_amiprobe"))
            .arg("policy")
            .arg(spec)
            .current_dir(&root)
            .env_remove("AMI")
            .output()
            .unwrap();
        let name = spec.file_stem().unwrap().to_string_lossy().into_owned();
        // Every spec whose provider has a policy is linted: a new ec2 example is, without a list.
        if output.status.code() == Some(2) && stderr(&output).contains("provider needs no IAM policy") {
            continue;
        }
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        let findings = lint(&String::from_utf8_lossy(&output.stdout));
        assert!(broken(&findings).is_empty(), "{name}: {findings:#?}");
        linted.push(name);
    }
    for name in ["boot-and-volumes", "web-appliance", "windows-server", "rich"] {
        assert!(linted.iter().any(|l| l == name), "{name} not linted: {linted:?}");
    }
}
