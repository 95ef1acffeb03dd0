//! The ephemeral security group (`provider.ec2.security_group: ephemeral`) against moto: made once
//! per run and VPC, opening exactly the probed ports to `--probe-from`, used by every RunInstances,
//! and deleted only after the instances are terminated (the launcher answers DependencyViolation
//! before, as EC2 does).
//!
//! Like every ec2 test, each runs in its own loopback-only network namespace, probes a loopback
//! service (the `--probe-from` networks are only a rule in moto: nothing is contacted there), and
//! ends by listing what is left on moto for its run.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use support::ec2::*;
use support::moto::{out_dir, runtime, Moto, TestService, AMI, AMIS};

/// A VPC and a subnet of its own in moto (not the default VPC).
fn network(moto: &Moto) -> (String, String) {
    let client = moto.client();
    runtime().block_on(async {
        let vpc = client.create_vpc().cidr_block("10.40.0.0/16").send().await.expect("create vpc");
        let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
        let subnet = client
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.40.1.0/24")
            .availability_zone("eu-west-1a")
            .send()
            .await
            .expect("create subnet");
        (vpc, subnet.subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_string())
    })
}

/// A spec of `cells` with the ephemeral group, two probes (on `ports`), and `subnet` fixed in `launch:`.
fn sg_spec(dir: &Path, cells: &[(&str, &str)], ports: [u16; 2], subnet: Option<&str>) -> PathBuf {
    let probes = http_probe("health", ports[0], "20s") + &http_probe("admin", ports[1], "20s");
    let file = spec(dir, cells, &probes, ", security_group: ephemeral");
    if let Some(subnet) = subnet {
        let text =
            std::fs::read_to_string(&file).unwrap().replace("launch:\n", &format!("launch:\n  subnet: {subnet}\n"));
        std::fs::write(&file, text).unwrap();
    }
    file
}

/// The values of a flattened request's parameters whose names match `prefix.N.suffix`-like patterns:
/// every key that starts with `prefix` and ends with `suffix`.
fn values(request: &Map<String, Value>, prefix: &str, suffix: &str) -> Vec<String> {
    request
        .iter()
        .filter(|(k, _)| k.starts_with(prefix) && k.ends_with(suffix))
        .filter_map(|(_, v)| v.as_str().map(str::to_string))
        .collect()
}

/// The run's cleanup step that deleted a security group, and the group's id.
fn group_step(r: &Value) -> (String, Value) {
    let steps = r["leftover_cleanup"].as_array().expect("leftover_cleanup");
    let step = steps
        .iter()
        .find(|s| s["action"].as_str().is_some_and(|a| a.starts_with("delete security group sg-")))
        .unwrap_or_else(|| panic!("no security group deleted: {steps:?}"))
        .clone();
    let id = step["action"].as_str().unwrap().trim_start_matches("delete security group ").to_string();
    (id, step)
}

#[test]
fn one_group_per_run_opens_the_probed_ports_and_goes_after_the_instances() {
    let moto = Moto::start();
    // Terminated instances stay shutting-down 3s: the group's deletion meets DependencyViolation first.
    moto.shutting_down(3.0);
    let (health, admin) = (TestService::start(), TestService::start());
    let (vpc, subnet) = network(&moto);
    let (dir, out) = out_dir();
    let cells = [(AMI, "t3.micro"), (AMI, "t3.small"), (AMIS[1], "t3.micro")];
    let spec = sg_spec(dir.path(), &cells, [health.port, admin.port], Some(&subnet));
    let (output, r) = run_with(&moto, &spec, &out, &["--probe-from", "198.51.100.0/24,2001:db8::/64"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let run_id = r["run_id"].as_str().unwrap();

    // Made once for the three cells, in the subnet's VPC, named and tagged for the run.
    let creates = moto.requests("CreateSecurityGroup");
    assert_eq!(creates.len(), 1, "{creates:?}");
    assert_eq!(creates[0]["VpcId"], vpc.as_str());
    assert_eq!(creates[0]["GroupName"], format!("amiprobe-{run_id}-{vpc}").as_str());
    let tags: BTreeSet<String> = values(&creates[0], "TagSpecification.1.Tag.", ".Key").into_iter().collect();
    assert!(tags.contains("amiprobe:run-id") && tags.contains("amiprobe:expires"), "{tags:?}");
    assert!(!tags.contains("amiprobe:cell"), "the group is the run's, not a cell's: {tags:?}");
    // The preflight's DescribeSubnets told the VPC: no lookup of its own.
    assert_eq!(moto.requests("DescribeSubnets").len(), 1);
    assert!(moto.requests("DescribeVpcs").is_empty());

    // Exactly the probed ports, TCP, from exactly the --probe-from networks, in one call.
    let rules = moto.requests("AuthorizeSecurityGroupIngress");
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0];
    let mut ports: Vec<String> = values(rule, "IpPermissions.", ".FromPort");
    ports.sort();
    let mut expected = vec![health.port.to_string(), admin.port.to_string()];
    expected.sort();
    assert_eq!(ports, expected);
    let mut to_ports = values(rule, "IpPermissions.", ".ToPort");
    to_ports.sort();
    assert_eq!(to_ports, expected, "one port per rule, no ranges");
    assert_eq!(values(rule, "IpPermissions.", ".IpProtocol"), vec!["tcp", "tcp"]);
    assert_eq!(values(rule, "IpPermissions.", ".CidrIp"), vec!["198.51.100.0/24"; 2]);
    assert_eq!(values(rule, "IpPermissions.", ".CidrIpv6"), vec!["2001:db8::/64"; 2]);
    let names: BTreeSet<String> = rule
        .keys()
        .filter(|k| k.starts_with("IpPermissions."))
        .map(|k| k.split('.').skip(2).collect::<Vec<_>>().join("."))
        .collect();
    let allowed: BTreeSet<String> = ["FromPort", "ToPort", "IpProtocol", "IpRanges.1.CidrIp", "IpRanges.1.Description"]
        .into_iter()
        .chain(["Ipv6Ranges.1.CidrIpv6", "Ipv6Ranges.1.Description"])
        .map(str::to_string)
        .collect();
    assert!(names.is_subset(&allowed), "nothing but ports and networks: {names:?}");

    // Every launch carries it.
    let (group, step) = group_step(&r);
    let launches = moto.requests("RunInstances");
    assert_eq!(launches.len(), 3);
    for launch in &launches {
        assert_eq!(values(launch, "SecurityGroupId.", ""), vec![group.clone()], "{launch:?}");
    }

    // Deleted after the instances: EC2 (the launcher) refused while any was shutting down.
    assert_eq!(step["ok"], true, "{step}");
    assert!(step["attempts"].as_u64().unwrap_or(1) > 1, "no DependencyViolation met: {step}");
    assert!(moto.calls().get("dependency:DeleteSecurityGroup").copied().unwrap_or(0) >= 1);
    let states: Vec<String> = moto
        .instances(run_id)
        .iter()
        .map(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default())
        .collect();
    assert_eq!(states, vec!["terminated"; 3]);
    assert!(r["not_removed"].as_array().is_none_or(Vec::is_empty), "{}", r["not_removed"]);
    assert_nothing_left(&moto, &r);
}

#[test]
fn without_a_subnet_the_group_goes_into_the_default_vpc() {
    let moto = Moto::start();
    let (health, admin) = (TestService::start(), TestService::start());
    let (dir, out) = out_dir();
    let spec = sg_spec(dir.path(), &[(AMI, "t3.micro"), (AMI, "t3.small")], [health.port, admin.port], None);
    let (output, r) = run_with(&moto, &spec, &out, &["--probe-from", "203.0.113.7/32"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(moto.requests("DescribeVpcs").len(), 1, "looked up once for the run");
    let client = moto.client();
    let default_vpc = runtime().block_on(async {
        let filter = aws_sdk_ec2::types::Filter::builder().name("is-default").values("true").build();
        let out = client.describe_vpcs().filters(filter).send().await.expect("describe vpcs");
        out.vpcs()[0].vpc_id().unwrap().to_string()
    });
    let creates = moto.requests("CreateSecurityGroup");
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["VpcId"], default_vpc.as_str());
    let rules = moto.requests("AuthorizeSecurityGroupIngress");
    assert_eq!(values(&rules[0], "IpPermissions.", ".CidrIp"), vec!["203.0.113.7/32"; 2]);
    let (group, step) = group_step(&r);
    assert_eq!(step["ok"], true, "{step}");
    for launch in moto.requests("RunInstances") {
        assert_eq!(values(&launch, "SecurityGroupId.", ""), vec![group.clone()]);
    }
    assert_nothing_left(&moto, &r);
}

#[test]
fn an_ephemeral_group_without_probe_from_is_refused_before_anything_runs() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec = sg_spec(dir.path(), &[(AMI, "t3.micro")], [1, 2], None);
    let output = amiprobe(&moto, &["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--probe-host", "127.0.0.1", "--allow-targets", "127.0.0.0/8"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("needs --probe-from"), "{}", stderr(&output));
    assert!(moto.calls().is_empty(), "no EC2 call at all: {:?}", moto.calls());
}

#[test]
fn sweep_removes_a_group_a_killed_run_left() {
    let moto = Moto::start();
    let run_id = "20261125-120000-dead";
    let client = moto.client();
    runtime().block_on(async {
        let tags = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
            .tags(aws_sdk_ec2::types::Tag::builder().key("amiprobe:run-id").value(run_id).build())
            .tags(aws_sdk_ec2::types::Tag::builder().key("amiprobe:expires").value("2026-11-25T13:00:00Z").build())
            .build();
        client
            .create_security_group()
            .group_name(format!("amiprobe-{run_id}-vpc-left"))
            .description("left by a killed run")
            .tag_specifications(tags)
            .send()
            .await
            .expect("create security group");
    });
    assert_eq!(moto.security_groups(run_id).len(), 1);
    let output = amiprobe(&moto, &["sweep", "--run-id", run_id]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("removed security group sg-"), "{stdout}");
    assert!(moto.security_groups(run_id).is_empty());
}

#[test]
fn a_group_whose_rules_are_refused_goes_at_once_and_the_next_cell_makes_it_again() {
    let moto = Moto::start();
    let json = |v: &str| serde_json::from_str::<Value>(v).unwrap();
    moto.control("/fault", json(r#"{"action": "AuthorizeSecurityGroupIngress", "code": "InvalidParameterValue"}"#));
    let (health, admin) = (TestService::start(), TestService::start());
    let (dir, out) = out_dir();
    let spec = sg_spec(dir.path(), &[(AMI, "t3.micro"), (AMI, "t3.small")], [health.port, admin.port], None);
    let (output, r) = run_with(&moto, &spec, &out, &["--probe-from", "203.0.113.7/32"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let statuses: Vec<&str> = r["cells"].as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "passed").count(), 1, "{statuses:?}");
    let error = r["cells"].as_array().unwrap().iter().find(|c| c["status"] != "passed").unwrap();
    let reason = error["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("the run's security group") && reason.contains("InvalidParameterValue"), "{reason}");
    // Made, refused its rules, deleted before any launch; made again by the other cell.
    assert_eq!(moto.requests("CreateSecurityGroup").len(), 2);
    assert_eq!(moto.requests("AuthorizeSecurityGroupIngress").len(), 2);
    assert_eq!(moto.requests("RunInstances").len(), 1);
    assert_eq!(moto.requests("DeleteSecurityGroup").len(), 2);
    assert_nothing_left(&moto, &r);
}
