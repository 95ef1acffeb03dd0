//! The ec2 preflight against moto's EC2 server: every impossible cell refused with its reasons before
//! anything is launched, in one call per kind of lookup whatever the number of cells.
//!
//! Every test runs in its own loopback-only network namespace (`Moto::start`); the VPCs, subnets and
//! security groups it makes exist only as moto's data.

mod support;

use amiprobe::providers::ec2::preflight::{self, ApiError, BootMode, LaunchRequest, Preflight};
use serde_json::json;
use support::moto::{runtime, Moto, AMI, AMIS};

/// The five kinds of lookup a plan with subnets and security groups needs.
const KINDS: [&str; 5] = [
    "DescribeImages",
    "DescribeInstanceTypes",
    "DescribeInstanceTypeOfferings",
    "DescribeSubnets",
    "DescribeSecurityGroups",
];

/// Two VPCs: `a` with a subnet in eu-west-1a and one in eu-west-1b and two groups, `b` with one group.
struct Network {
    vpc_a: String,
    vpc_b: String,
    subnet_a: String,
    subnet_b: String,
    group_a: String,
    group_a2: String,
    group_b: String,
}

fn network(moto: &Moto) -> Network {
    let client = moto.client();
    runtime().block_on(async {
        let vpc = |cidr: &'static str| {
            let client = client.clone();
            async move {
                let out = client.create_vpc().cidr_block(cidr).send().await.expect("create vpc");
                out.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string()
            }
        };
        let (vpc_a, vpc_b) = (vpc("10.10.0.0/16").await, vpc("10.20.0.0/16").await);
        let subnet = |cidr: &'static str, zone: &'static str| {
            let (client, vpc) = (client.clone(), vpc_a.clone());
            async move {
                let out = client
                    .create_subnet()
                    .vpc_id(vpc)
                    .cidr_block(cidr)
                    .availability_zone(zone)
                    .send()
                    .await
                    .expect("create subnet");
                out.subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_string()
            }
        };
        let group = |name: &'static str, vpc: String| {
            let client = client.clone();
            async move {
                let out = client
                    .create_security_group()
                    .group_name(name)
                    .description("preflight test")
                    .vpc_id(vpc)
                    .send()
                    .await
                    .expect("create security group");
                out.group_id().expect("group id").to_string()
            }
        };
        Network {
            subnet_a: subnet("10.10.1.0/24", "eu-west-1a").await,
            subnet_b: subnet("10.10.2.0/24", "eu-west-1b").await,
            group_a: group("a", vpc_a.clone()).await,
            group_a2: group("a2", vpc_a.clone()).await,
            group_b: group("b", vpc_b.clone()).await,
            vpc_a,
            vpc_b,
        }
    })
}

fn request(cell: &str, image: &str, instance_type: &str, subnet: Option<&str>, groups: &[&str]) -> LaunchRequest {
    LaunchRequest {
        cell: cell.to_string(),
        image: image.to_string(),
        instance_type: Some(instance_type.to_string()),
        subnet: subnet.map(str::to_string),
        security_groups: groups.iter().map(|g| g.to_string()).collect(),
        boot_mode: None,
        os: amiprobe::spec::Os::Linux,
    }
}

fn try_check(moto: &Moto, requests: &[LaunchRequest]) -> Result<Preflight, ApiError> {
    let api = moto.api();
    runtime().block_on(preflight::check(&api, requests))
}

fn check(moto: &Moto, requests: &[LaunchRequest]) -> Preflight {
    try_check(moto, requests).unwrap_or_else(|e| panic!("preflight: {e}"))
}

/// The reasons a cell was refused for: empty when it was not refused.
fn refused<'a>(p: &'a Preflight, cell: &str) -> &'a [String] {
    p.impossible.iter().find(|i| i.cell == cell).map_or(&[], |i| i.reasons.as_slice())
}

#[track_caller]
fn assert_no_launch(moto: &Moto) {
    let calls = moto.calls();
    assert_eq!(calls.get("RunInstances"), None, "{calls:?}");
    assert!(moto.requests("RunInstances").is_empty());
}

#[test]
fn every_impossible_cell_is_refused_with_its_reasons_before_any_launch() {
    let moto = Moto::start();
    let net = network(&moto);
    let ena = |arch: &str, boot: &str| json!({ "architecture": arch, "boot_mode": boot, "ena_support": true });
    let good = moto.image(ena("x86_64", "uefi-preferred"));
    let uefi = moto.image(ena("x86_64", "uefi"));
    let bios = moto.image(ena("x86_64", "legacy-bios"));
    let arm = moto.image(json!({ "architecture": "arm64", "boot_mode": "uefi", "ena_support": true,
                                  "root_device_name": "/dev/sda1" }));
    let missing = "ami-0123456789abcdef0";
    let (a, b) = (Some(net.subnet_a.as_str()), Some(net.subnet_b.as_str()));
    let (ga, ga2, gb) = (net.group_a.as_str(), net.group_a2.as_str(), net.group_b.as_str());
    let requests = [
        request("good-t3-micro", &good, "t3.micro", a, &[ga]),
        request("good-t3-small", &good, "t3.small", a, &[ga, ga2]),
        request("good-t2-in-b", &good, "t2.micro", b, &[ga2]),
        request("builtin-t3", AMI, "t3.micro", None, &[]),
        request("uefi-on-t2", &uefi, "t2.micro", a, &[ga]),
        request("uefi-on-t3", &uefi, "t3.micro", a, &[ga]),
        request("arm-on-t3", &arm, "t3.micro", a, &[ga]),
        request("arm-on-t4g", &arm, "t4g.micro", a, &[ga]),
        request("h1-in-b", &bios, "h1.2xlarge", b, &[ga]),
        request("h1-in-a", &bios, "h1.2xlarge", a, &[ga]),
        request("missing-ami", missing, "t3.micro", a, &[ga]),
        request("two-vpcs", &good, "t3.micro", a, &[ga, gb]),
        request("nothing-there", &good, "t3.micro", Some("subnet-0000000000000dead"), &["sg-0000000000000dead"]),
    ];
    let p = check(&moto, &requests);

    let expected: Vec<(&str, Vec<String>)> = vec![
        ("uefi-on-t2", vec![format!("image {uefi} boots only uefi and t2.micro supports only legacy-bios")]),
        ("arm-on-t3", vec![format!("image {arm} is arm64 and t3.micro runs only x86_64")]),
        ("h1-in-b", vec![format!("h1.2xlarge is not offered in eu-west-1b (subnet {})", net.subnet_b)]),
        ("missing-ami", vec![format!("image {missing} does not exist")]),
        (
            "two-vpcs",
            vec![format!(
                "different VPCs: subnet {} in {va}, security group {ga} in {va}, security group {gb} in {}",
                net.subnet_a,
                net.vpc_b,
                va = net.vpc_a,
            )],
        ),
        (
            "nothing-there",
            vec![
                "subnet subnet-0000000000000dead does not exist".to_string(),
                "security group sg-0000000000000dead does not exist".to_string(),
            ],
        ),
    ];
    let got: Vec<(&str, Vec<String>)> = p.impossible.iter().map(|i| (i.cell.as_str(), i.reasons.clone())).collect();
    assert_eq!(got, expected);
    // The messages name the cell and the reason.
    let messages: Vec<String> = p.impossible.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages[0],
        format!("cell uefi-on-t2: image {uefi} boots only uefi and t2.micro supports only legacy-bios")
    );
    assert_eq!(
        messages[5],
        "cell nothing-there: subnet subnet-0000000000000dead does not exist; \
         security group sg-0000000000000dead does not exist"
    );
    // The missing AMI hid nothing: its neighbours' facts came back in the same call.
    assert!(!p.images.contains_key(missing));
    let arm_facts = &p.images[&arm];
    assert_eq!(
        (arm_facts.architecture.as_deref(), arm_facts.boot_mode.as_deref(), arm_facts.root_device_name.as_deref()),
        (Some("arm64"), Some("uefi"), Some("/dev/sda1"))
    );
    assert!(arm_facts.ena_support && arm_facts.state == "available");
    assert_eq!(p.images[AMI].boot_mode, None, "moto's built-in AMIs set no boot mode");
    assert_eq!(p.types["t2.micro"].boot_modes, ["legacy-bios"]);
    assert!(p.types["h1.2xlarge"].zones.contains("eu-west-1a") && !p.types["h1.2xlarge"].zones.contains("eu-west-1b"));

    // Thirteen cells, five calls: one per kind.
    assert_eq!(p.calls, KINDS.len());
    let calls = moto.calls();
    for kind in KINDS {
        assert_eq!(calls.get(kind), Some(&1), "{kind}: {calls:?}");
    }
    assert_no_launch(&moto);
}

#[test]
fn calls_do_not_grow_with_the_cells() {
    let moto = Moto::start();
    let net = network(&moto);
    let (a, b) = (net.subnet_a.as_str(), net.subnet_b.as_str());
    let one = [request("only", AMI, "t3.micro", Some(a), &[&net.group_a])];
    let types = ["t3.micro", "t3.small", "m5.large"];
    let many: Vec<LaunchRequest> = AMIS
        .iter()
        .flat_map(|image| types.iter().map(move |t| (image, t)))
        .flat_map(|(image, t)| {
            [a, b].map(|subnet| request(&format!("{image}_{t}_{subnet}"), image, t, Some(subnet), &[&net.group_a]))
        })
        .collect();
    assert_eq!(many.len(), 60);

    let alone = check(&moto, &one);
    let before = moto.calls();
    let all = check(&moto, &many);
    let after = moto.calls();
    assert!(alone.impossible.is_empty() && all.impossible.is_empty(), "{:?} {:?}", alone.impossible, all.impossible);
    assert_eq!((alone.calls, all.calls), (KINDS.len(), KINDS.len()));
    for kind in KINDS {
        assert_eq!(after.get(kind).copied().unwrap_or(0) - before.get(kind).copied().unwrap_or(0), 1, "{kind}");
    }
    // Nothing to look up, nothing asked.
    let nothing = check(&moto, &[]);
    assert_eq!(nothing.calls, 0);
    assert_eq!(moto.calls(), after);
    println!("preflight: {} calls for 1 cell, {} calls for {} cells", alone.calls, all.calls, many.len());
    assert_no_launch(&moto);
}

#[test]
fn requested_boot_mode_ena_and_state_are_checked() {
    let moto = Moto::start();
    let preferred = moto.image(json!({ "boot_mode": "uefi-preferred", "ena_support": true }));
    let uefi = moto.image(json!({ "boot_mode": "uefi", "ena_support": true }));
    let no_ena = moto.image(json!({ "boot_mode": "uefi-preferred", "ena_support": false }));
    let pending = moto.image(json!({ "ena_support": true, "state": "pending" }));
    let with_mode = |cell: &str, image: &str, t: &str, mode: BootMode| LaunchRequest {
        boot_mode: Some(mode),
        ..request(cell, image, t, None, &[])
    };
    let requests = [
        with_mode("uefi-asked-on-t2", &preferred, "t2.micro", BootMode::Uefi),
        with_mode("bios-asked-on-t2", &preferred, "t2.micro", BootMode::LegacyBios),
        with_mode("bios-asked-of-uefi-image", &uefi, "t3.micro", BootMode::LegacyBios),
        with_mode("preferred-asked-of-uefi-image", &uefi, "t3.micro", BootMode::UefiPreferred),
        request("no-ena-on-t3", &no_ena, "t3.micro", None, &[]),
        request("no-ena-on-t2", &no_ena, "t2.micro", None, &[]),
        request("pending", &pending, "t3.micro", None, &[]),
        request("no-such-type", &preferred, "t3.gigantic", None, &[]),
    ];
    let p = check(&moto, &requests);
    assert_eq!(refused(&p, "uefi-asked-on-t2"), ["boot mode uefi requested and t2.micro supports only legacy-bios"]);
    assert_eq!(refused(&p, "bios-asked-on-t2"), [] as [String; 0]);
    assert_eq!(
        refused(&p, "bios-asked-of-uefi-image"),
        [format!("boot mode legacy-bios requested and image {uefi} boots only uefi")]
    );
    assert_eq!(refused(&p, "preferred-asked-of-uefi-image"), [] as [String; 0]);
    assert_eq!(refused(&p, "no-ena-on-t3"), [format!("t3.micro requires ENA and image {no_ena} does not enable it")]);
    assert_eq!(refused(&p, "no-ena-on-t2"), [] as [String; 0]);
    assert_eq!(refused(&p, "pending"), [format!("image {pending} is pending, not available")]);
    assert_eq!(refused(&p, "no-such-type"), ["instance type t3.gigantic does not exist"]);
    assert_eq!(p.impossible.len(), 5);
    // No subnets or groups to look up: three kinds, three calls.
    assert_eq!(p.calls, 3);
    assert_no_launch(&moto);
}

#[test]
fn lookups_are_chunked_retried_and_fail_whole() {
    let moto = Moto::start();
    // More images than one call may name: two DescribeImages, and every missing one named.
    let mut requests: Vec<LaunchRequest> =
        (0..201).map(|i| request(&format!("cell-{i}"), &format!("ami-{i:017x}"), "t3.micro", None, &[])).collect();
    requests.push(request("good", AMI, "t3.micro", None, &[]));
    let p = check(&moto, &requests);
    assert_eq!(p.impossible.len(), 201);
    assert_eq!(refused(&p, "cell-200"), [format!("image ami-{:017x} does not exist", 200)]);
    assert_eq!(refused(&p, "good"), [] as [String; 0]);
    assert_eq!(moto.calls()["DescribeImages"], 2);
    assert_eq!(p.calls, 4, "two DescribeImages, one DescribeInstanceTypes, one DescribeInstanceTypeOfferings");

    // Throttled twice: retried through the bucket, and the retries counted.
    moto.control("/reset", json!({}));
    moto.control(
        "/fault",
        json!({ "action": "DescribeImages", "code": "RequestLimitExceeded", "status": 503, "count": 2 }),
    );
    let p = check(&moto, &[request("good", AMI, "t3.micro", None, &[])]);
    assert!(p.impossible.is_empty(), "{:?}", p.impossible);
    assert_eq!(moto.calls()["fault:DescribeImages"], 2);
    assert_eq!(p.calls, 5, "three attempts at DescribeImages, one call each for the types and offerings");

    // A lookup that does not answer fails the whole check: no cell is refused for it.
    moto.control("/fault", json!({ "action": "DescribeSecurityGroups", "code": "UnauthorizedOperation", "count": 1 }));
    let error = try_check(&moto, &[request("grouped", AMI, "t3.micro", None, &["sg-1"])]).unwrap_err();
    assert_eq!(error.action, "DescribeSecurityGroups");
    assert!(error.to_string().starts_with("DescribeSecurityGroups failed: UnauthorizedOperation"), "{error}");
    assert_no_launch(&moto);
}
