//! The ec2 launch surface against moto's EC2 server: each launch field, put on a RunInstances request
//! by `launch::apply` and sent with amiprobe's own client, reaches RunInstances as given, call by call
//! (the launcher records every call's parameters), and moto launches what was asked for.
//!
//! Every test runs in its own loopback-only network namespace (`Moto::start`); the VPCs, subnets,
//! groups, placement groups and instance profiles it makes exist only as moto's data.

mod support;

use std::time::Duration;

use amiprobe::providers::ec2::launch::{self, BootMode, Ec2Launch};
use amiprobe::providers::ec2::{Api, RUN_ID_TAG};
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use serde_json::{Map, Value};
use support::moto::{runtime, Moto, AMI};

/// Launches one instance of `image` with `fields`, tagged with `run_id`, and returns its id.
fn launch(
    moto: &Moto,
    run_id: &str,
    image: &str,
    fields: &Ec2Launch,
    subnet: Option<&str>,
    groups: &[String],
    root_device_name: Option<&str>,
) -> String {
    let api = moto.api();
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .tags(Tag::builder().key(RUN_ID_TAG).value(run_id).build())
        .build();
    let req = api
        .client
        .run_instances()
        .image_id(image)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .tag_specifications(tags);
    let req = launch::apply(req, fields, subnet, groups, root_device_name).unwrap_or_else(|e| panic!("apply: {e}"));
    let out = runtime().block_on(req.send()).unwrap_or_else(|e| panic!("RunInstances: {e:?}"));
    out.instances()[0].instance_id().expect("instance id").to_string()
}

/// The launch's fields from YAML, as the spec writes them.
fn fields(yaml: &str) -> Ec2Launch {
    let fields: Ec2Launch = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    assert_eq!(fields.problems(), [], "{yaml}");
    fields
}

/// The last RunInstances call's parameters whose names start with one of `prefixes`, sorted.
fn params(moto: &Moto, prefixes: &[&str]) -> Vec<(String, String)> {
    let calls = moto.requests("RunInstances");
    let last = calls.last().expect("a RunInstances call");
    selected(last, prefixes)
}

fn selected(call: &Map<String, Value>, prefixes: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = call
        .iter()
        .filter(|(k, _)| prefixes.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    out.sort();
    out
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    out.sort();
    out
}

/// The parameters `apply` owns: with none of them in a call, the launch fields put nothing there.
const OWNED: [&str; 7] = [
    "BlockDeviceMapping.",
    "MetadataOptions.",
    "IamInstanceProfile.",
    "Placement.",
    "NetworkInterface.",
    "SubnetId",
    "SecurityGroupId.",
];

fn instance(moto: &Moto, id: &str) -> aws_sdk_ec2::types::Instance {
    let client = moto.client();
    let out = runtime()
        .block_on(client.describe_instances().instance_ids(id).send())
        .unwrap_or_else(|e| panic!("describe {id}: {e:?}"));
    out.reservations()[0].instances()[0].clone()
}

/// The instance's volumes as moto made them: (device, GiB, type, IOPS, throughput, encrypted), by device.
type VolumeFacts = (String, i32, String, Option<i32>, Option<i32>, bool);

fn volumes(moto: &Moto, id: &str) -> Vec<VolumeFacts> {
    let client = moto.client();
    let devices: Vec<(String, String)> = instance(moto, id)
        .block_device_mappings()
        .iter()
        .filter_map(|m| Some((m.device_name()?.to_string(), m.ebs()?.volume_id()?.to_string())))
        .collect();
    let ids: Vec<String> = devices.iter().map(|(_, v)| v.clone()).collect();
    let out = runtime()
        .block_on(client.describe_volumes().set_volume_ids(Some(ids)).send())
        .unwrap_or_else(|e| panic!("describe volumes: {e:?}"));
    let mut facts: Vec<VolumeFacts> = devices
        .iter()
        .map(|(device, volume_id)| {
            let v = out.volumes().iter().find(|v| v.volume_id() == Some(volume_id)).expect("volume described");
            let kind = v.volume_type().map(|t| t.as_str().to_string()).unwrap_or_default();
            // moto reports gp3's default IOPS and gp2's burst baseline: only what was provisioned counts.
            let iops = v.iops().filter(|_| ["io1", "io2", "gp3"].contains(&kind.as_str()));
            let (size, encrypted) = (v.size().unwrap_or_default(), v.encrypted().unwrap_or_default());
            (device.clone(), size, kind, iops, v.throughput(), encrypted)
        })
        .collect();
    facts.sort();
    facts
}

/// Terminates the run's instances and checks nothing of it is left running.
#[track_caller]
fn terminate_all(moto: &Moto, api: &Api, run_id: &str, launched: usize) {
    let ids: Vec<String> = moto.instances(run_id).iter().filter_map(|i| i.instance_id().map(str::to_string)).collect();
    assert_eq!(ids.len(), launched, "{ids:?}");
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    runtime().block_on(api.terminate(&ids, until)).unwrap_or_else(|e| panic!("terminate: {e}"));
    let (instances, key_pairs) = moto.leftovers(run_id);
    assert!(instances.is_empty() && key_pairs.is_empty(), "left running: {instances:?} {key_pairs:?}");
}

/// A VPC with a subnet in eu-west-1a and a security group: (subnet, group).
fn network(moto: &Moto) -> (String, String) {
    let client = moto.client();
    runtime().block_on(async {
        let vpc = client.create_vpc().cidr_block("10.30.0.0/16").send().await.expect("create vpc");
        let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
        let subnet = client
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.30.1.0/24")
            .availability_zone("eu-west-1a")
            .send()
            .await
            .expect("create subnet");
        let subnet = subnet.subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_string();
        let group = client
            .create_security_group()
            .group_name("launch")
            .description("launch test")
            .vpc_id(&vpc)
            .send()
            .await
            .expect("create security group");
        (subnet, group.group_id().expect("group id").to_string())
    })
}

/// Creates an IAM instance profile in moto (same server, IAM's query API) and returns its ARN.
fn instance_profile(moto: &Moto, name: &str) -> String {
    let answer = moto.iam(&format!("Action=CreateInstanceProfile&InstanceProfileName={name}"));
    let arn = answer.split("<Arn>").nth(1).and_then(|rest| rest.split("</Arn>").next());
    arn.unwrap_or_else(|| panic!("no ARN in {answer}")).to_string()
}

#[test]
fn block_devices_reach_run_instances_as_given() {
    let moto = Moto::start();
    let api = moto.api();
    let image = moto.image(serde_json::json!({ "root_device_name": "/dev/sda1" }));
    let run_id = "launch-volumes";
    let launch_fields = fields(
        "
root_volume: {size: 30, type: io2, iops: 3000, encrypted: true, kms_key: alias/probe, delete_on_termination: false}
volumes:
  - {device: sdf, size: 100, type: gp3, iops: 4000, throughput: 250, delete_on_termination: true}
  - {device: /dev/xvdg, size: 500, type: st1, encrypted: false}
  - {device: xvdh, size: 8}
",
    );
    let id = launch(&moto, run_id, &image, &launch_fields, None, &[], Some("/dev/sda1"));
    assert_eq!(
        params(&moto, &["BlockDeviceMapping."]),
        pairs(&[
            ("BlockDeviceMapping.1.DeviceName", "/dev/sda1"),
            ("BlockDeviceMapping.1.Ebs.VolumeSize", "30"),
            ("BlockDeviceMapping.1.Ebs.VolumeType", "io2"),
            ("BlockDeviceMapping.1.Ebs.Iops", "3000"),
            ("BlockDeviceMapping.1.Ebs.Encrypted", "true"),
            ("BlockDeviceMapping.1.Ebs.KmsKeyId", "alias/probe"),
            ("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "false"),
            ("BlockDeviceMapping.2.DeviceName", "/dev/sdf"),
            ("BlockDeviceMapping.2.Ebs.VolumeSize", "100"),
            ("BlockDeviceMapping.2.Ebs.VolumeType", "gp3"),
            ("BlockDeviceMapping.2.Ebs.Iops", "4000"),
            ("BlockDeviceMapping.2.Ebs.Throughput", "250"),
            ("BlockDeviceMapping.2.Ebs.DeleteOnTermination", "true"),
            ("BlockDeviceMapping.3.DeviceName", "/dev/xvdg"),
            ("BlockDeviceMapping.3.Ebs.VolumeSize", "500"),
            ("BlockDeviceMapping.3.Ebs.VolumeType", "st1"),
            ("BlockDeviceMapping.3.Ebs.Encrypted", "false"),
            ("BlockDeviceMapping.4.DeviceName", "/dev/xvdh"),
            ("BlockDeviceMapping.4.Ebs.VolumeSize", "8"),
        ])
    );
    // moto made each volume as asked, at its device.
    assert_eq!(
        volumes(&moto, &id),
        [
            ("/dev/sda1".to_string(), 30, "io2".to_string(), Some(3000), None, true),
            ("/dev/sdf".to_string(), 100, "gp3".to_string(), Some(4000), Some(250), false),
            ("/dev/xvdg".to_string(), 500, "st1".to_string(), None, None, false),
            ("/dev/xvdh".to_string(), 8, "gp2".to_string(), None, None, false),
        ]
    );

    // The root volume goes where the image has its root, whatever that is.
    let xvda = moto.image(serde_json::json!({ "root_device_name": "/dev/xvda" }));
    launch(&moto, run_id, &xvda, &fields("root_volume: {size: 12}"), None, &[], Some("/dev/xvda"));
    assert_eq!(
        params(&moto, &["BlockDeviceMapping."]),
        pairs(&[("BlockDeviceMapping.1.DeviceName", "/dev/xvda"), ("BlockDeviceMapping.1.Ebs.VolumeSize", "12")])
    );
    assert_eq!(moto.requests("RunInstances").len(), 2);
    terminate_all(&moto, &api, run_id, 2);
}

#[test]
fn a_volume_on_the_root_device_or_a_root_volume_without_one_is_never_sent() {
    let moto = Moto::start();
    let on_root = fields("volumes: [{device: xvda, size: 8}]");
    let req = moto.api().client.run_instances().image_id(AMI).min_count(1).max_count(1);
    let err = launch::apply(req.clone(), &on_root, None, &[], Some("/dev/xvda")).unwrap_err().to_string();
    assert!(err.contains("/dev/xvda, the image's root device"), "{err}");
    let err = launch::apply(req, &fields("root_volume: {size: 30}"), None, &[], None).unwrap_err().to_string();
    assert!(err.contains("root device name"), "{err}");
    assert!(moto.requests("RunInstances").is_empty());
}

#[test]
fn metadata_options_and_the_instance_profile_by_name_or_arn() {
    let moto = Moto::start();
    let api = moto.api();
    let run_id = "launch-imds-iam";
    let arn = instance_profile(&moto, "probe-profile");

    let by_name = fields(
        "imds: {http_tokens: required, hop_limit: 2, endpoint: enabled, instance_tags: true}\n\
         iam_instance_profile: probe-profile",
    );
    let id = launch(&moto, run_id, AMI, &by_name, None, &[], None);
    assert_eq!(
        params(&moto, &["MetadataOptions.", "IamInstanceProfile."]),
        pairs(&[
            ("MetadataOptions.HttpTokens", "required"),
            ("MetadataOptions.HttpPutResponseHopLimit", "2"),
            ("MetadataOptions.HttpEndpoint", "enabled"),
            ("MetadataOptions.InstanceMetadataTags", "enabled"),
            ("IamInstanceProfile.Name", "probe-profile"),
        ])
    );
    let profile = instance(&moto, &id).iam_instance_profile().and_then(|p| p.arn()).map(str::to_string);
    assert_eq!(profile.as_deref(), Some(arn.as_str()), "moto associated the profile named");

    let by_arn = fields(&format!(
        "imds: {{http_tokens: optional, endpoint: disabled, instance_tags: false}}\niam_instance_profile: '{arn}'"
    ));
    let id = launch(&moto, run_id, AMI, &by_arn, None, &[], None);
    assert_eq!(
        params(&moto, &["MetadataOptions.", "IamInstanceProfile."]),
        pairs(&[
            ("MetadataOptions.HttpTokens", "optional"),
            ("MetadataOptions.HttpEndpoint", "disabled"),
            ("MetadataOptions.InstanceMetadataTags", "disabled"),
            ("IamInstanceProfile.Arn", &arn),
        ])
    );
    let profile = instance(&moto, &id).iam_instance_profile().and_then(|p| p.arn()).map(str::to_string);
    assert_eq!(profile.as_deref(), Some(arn.as_str()));
    terminate_all(&moto, &api, run_id, 2);
}

#[test]
fn a_public_address_moves_the_subnet_and_groups_onto_the_network_interface() {
    let moto = Moto::start();
    let api = moto.api();
    let run_id = "launch-public-ip";
    let (subnet, group) = network(&moto);
    let groups = vec![group.clone()];

    let id = launch(&moto, run_id, AMI, &fields("public_ip: true"), Some(&subnet), &groups, None);
    let interface = |public: &str| {
        pairs(&[
            ("NetworkInterface.1.DeviceIndex", "0"),
            ("NetworkInterface.1.SubnetId", &subnet),
            ("NetworkInterface.1.SecurityGroupId.1", &group),
            ("NetworkInterface.1.AssociatePublicIpAddress", public),
        ])
    };
    assert_eq!(params(&moto, &OWNED), interface("true"), "nothing at the top level");
    let up = instance(&moto, &id);
    assert_eq!(up.subnet_id(), Some(subnet.as_str()));
    assert!(up.public_ip_address().is_some(), "{up:?}");

    let id = launch(&moto, run_id, AMI, &fields("public_ip: false"), Some(&subnet), &groups, None);
    assert_eq!(params(&moto, &OWNED), interface("false"));
    let down = instance(&moto, &id);
    assert_eq!(down.subnet_id(), Some(subnet.as_str()));
    assert_eq!(down.public_ip_address(), None);

    // Left out: the subnet's default, and the subnet and groups stay at the top level.
    launch(&moto, run_id, AMI, &Ec2Launch::default(), Some(&subnet), &groups, None);
    assert_eq!(params(&moto, &OWNED), pairs(&[("SubnetId", &subnet), ("SecurityGroupId.1", &group)]));
    assert_eq!(moto.requests("RunInstances").len(), 3);
    terminate_all(&moto, &api, run_id, 3);
}

#[test]
fn the_zone_and_placement_group_reach_placement() {
    let moto = Moto::start();
    let api = moto.api();
    let run_id = "launch-placement";
    // moto knows no placement groups (CreatePlacementGroup is not implemented, RunInstances ignores
    // the name): the request is what is checked.
    let id = launch(
        &moto,
        run_id,
        AMI,
        &fields("availability_zone: eu-west-1b\nplacement_group: probe-pg"),
        None,
        &[],
        None,
    );
    assert_eq!(
        params(&moto, &OWNED),
        pairs(&[("Placement.AvailabilityZone", "eu-west-1b"), ("Placement.GroupName", "probe-pg")])
    );
    let placed = instance(&moto, &id);
    assert_eq!(placed.placement().and_then(|p| p.availability_zone()), Some("eu-west-1b"));

    launch(&moto, run_id, AMI, &fields("availability_zone: eu-west-1c"), None, &[], None);
    assert_eq!(params(&moto, &OWNED), pairs(&[("Placement.AvailabilityZone", "eu-west-1c")]));
    terminate_all(&moto, &api, run_id, 2);
}

#[test]
fn no_launch_fields_and_a_boot_mode_add_nothing_to_the_request() {
    let moto = Moto::start();
    let api = moto.api();
    let run_id = "launch-plain";
    let (subnet, group) = network(&moto);
    let groups = vec![group.clone()];
    launch(&moto, run_id, AMI, &Ec2Launch::default(), Some(&subnet), &groups, Some("/dev/xvda"));
    let uefi = Ec2Launch { boot_mode: Some(BootMode::Uefi), ..Ec2Launch::default() };
    launch(&moto, run_id, AMI, &uefi, Some(&subnet), &groups, Some("/dev/xvda"));
    let calls = moto.requests("RunInstances");
    assert_eq!(calls.len(), 2);
    // RunInstances has no boot mode: both calls carry the same parameters.
    let names = |call: &Map<String, Value>| call.keys().cloned().collect::<Vec<String>>();
    assert_eq!(names(&calls[0]), names(&calls[1]));
    for call in &calls {
        assert_eq!(selected(call, &OWNED), pairs(&[("SubnetId", &subnet), ("SecurityGroupId.1", &group)]));
        assert!(!call.keys().any(|k| k.to_lowercase().contains("boot")), "{call:?}");
    }
    terminate_all(&moto, &api, run_id, 2);
}
