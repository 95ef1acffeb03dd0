//! Region as a launch field, against moto (one server serves every region, by the region each call
//! is signed for; the launcher records it as `_region`): each cell runs in its own region, with that
//! region's preflight lookups, key pair, RunInstances and cleanup, and `sweep` takes `--region` more
//! than once.

mod support;

use std::process::Stdio;

use serde_json::Value;
use support::ec2::*;
use support::moto::{closed_port, out_dir, runtime, Moto, TestService, AMI};

const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

/// A spec whose matrix has a `region` axis over [`REGIONS`] (the provider's own region is eu-west-1).
fn regions_spec(dir: &std::path::Path, probes: &str) -> std::path::PathBuf {
    let text = format!(
        "name: regions
provider:
  ec2: {{ region: eu-west-1, poll_interval: 500ms }}
matrix:
  image: {AMI}
  region: [{}]
launch:
  instance_type: t3.micro
capture:
  screenshots: [{{ every: 1s, until: 30s }}]
probes:
{probes}timeouts: {{ run: 2m }}
",
        REGIONS.join(", ")
    );
    let file = dir.join("spec.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

/// The recorded calls of `action` signed for `region`.
fn calls_in(moto: &Moto, action: &str, region: &str) -> Vec<serde_json::Map<String, Value>> {
    moto.requests(action).into_iter().filter(|r| r["_region"] == region).collect()
}

/// The AMI is one moto knows in both regions (its default images are loaded in every region).
fn assert_image_in_both_regions(moto: &Moto) {
    for region in REGIONS {
        let client = moto.client_in(region);
        let images = runtime().block_on(async { client.describe_images().image_ids(AMI).send().await });
        let images = images.unwrap_or_else(|e| panic!("DescribeImages in {region}: {e:?}"));
        assert_eq!(images.images().len(), 1, "{AMI} in {region}");
    }
}

#[test]
fn a_region_axis_runs_each_cell_in_its_region_with_its_own_calls() {
    let moto = Moto::start();
    let service = TestService::start();
    assert_image_in_both_regions(&moto);
    let before: Vec<usize> = REGIONS.iter().map(|r| calls_in(&moto, "DescribeImages", r).len()).collect();
    let (dir, out) = out_dir();
    let spec = regions_spec(dir.path(), &http_probe("health", service.port, "20s"));
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let run_id = r["run_id"].as_str().unwrap();
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);

    for (i, region) in REGIONS.into_iter().enumerate() {
        let cell = cells.iter().find(|c| c["machine"]["region"] == region).unwrap_or_else(|| {
            panic!("no cell ran in {region}: {:?}", cells.iter().map(|c| &c["machine"]).collect::<Vec<_>>())
        });
        assert_eq!(cell["status"], "passed", "{}", cell["reason"]);
        // The instance is in its region's DescribeInstances, and in no other's.
        let id = cell["machine"]["instance_id"].as_str().unwrap();
        let here: Vec<String> =
            moto.instances_in(run_id, region).iter().filter_map(|i| i.instance_id().map(str::to_string)).collect();
        assert_eq!(here, [id], "{region}'s instances");
        let other = REGIONS[1 - i];
        assert!(moto.instances_in(run_id, other).iter().all(|i| i.instance_id() != Some(id)), "{id} also in {other}");

        // The preflight's batched lookups once per region, through that region's client.
        assert_eq!(calls_in(&moto, "DescribeImages", region).len() - before[i], 1, "DescribeImages in {region}");
        assert_eq!(calls_in(&moto, "DescribeInstanceTypes", region).len(), 1, "DescribeInstanceTypes in {region}");
        // One launch per region, with the run's key imported and deleted in that region.
        let launches = calls_in(&moto, "RunInstances", region);
        assert_eq!(launches.len(), 1, "RunInstances in {region}: {launches:?}");
        let created = calls_in(&moto, "ImportKeyPair", region);
        let deleted = calls_in(&moto, "DeleteKeyPair", region);
        assert_eq!(created.len(), 1, "ImportKeyPair in {region}: {created:?}");
        assert_eq!(launches[0]["KeyName"], created[0]["KeyName"]);
        assert!(deleted.iter().any(|d| d["KeyName"] == created[0]["KeyName"]), "{deleted:?}");

        // Nothing is left in either region.
        assert_eq!(moto.leftovers_in(run_id, region), (vec![], vec![]), "left in {region}");
    }
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_region_fixed_in_launch_overrides_the_providers() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    let text = format!(
        "name: fixed-region
provider:
  ec2: {{ region: eu-west-1, poll_interval: 500ms }}
matrix:
  image: {AMI}
launch:
  instance_type: t3.micro
  region: us-east-1
capture:
  screenshots: [{{ every: 1s, until: 30s }}]
probes:
{}timeouts: {{ run: 2m }}
",
        http_probe("health", service.port, "20s")
    );
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, text).unwrap();
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let run_id = r["run_id"].as_str().unwrap();
    assert_eq!(r["cells"][0]["machine"]["region"], "us-east-1");
    assert_eq!(moto.instances_in(run_id, "us-east-1").len(), 1);
    assert!(moto.instances(run_id).is_empty(), "nothing launched in eu-west-1");
    assert!(calls_in(&moto, "RunInstances", "eu-west-1").is_empty());
    assert_eq!(moto.leftovers_in(run_id, "us-east-1"), (vec![], vec![]));
    assert_nothing_left(&moto, &r);
}

#[test]
fn sigkill_mid_run_then_sweep_with_two_regions_removes_both() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec = regions_spec(dir.path(), &http_probe("never", closed_port(), "100s"));
    let mut child = spawn_run(&moto, &spec, &out, Stdio::null());
    wait_for_screenshots(&out, 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let run_id = results(&out)["run_id"].as_str().unwrap().to_string();
    for region in REGIONS {
        let (instances, key_pairs) = moto.leftovers_in(&run_id, region);
        assert_eq!((instances.len(), key_pairs.len()), (1, 1), "a killed run leaves its resources in {region}");
    }

    // One region at a time sweeps only that region.
    let one = amiprobe(&moto, &["sweep", "--run-id", &run_id, "--region", "us-east-1", "--dry-run"]).output().unwrap();
    assert_eq!(one.status.code(), Some(0), "{}", stderr(&one));
    assert!(String::from_utf8_lossy(&one.stdout).contains("1 instances, 1 key pairs"), "{one:?}");

    let swept = amiprobe(&moto, &["sweep", "--run-id", &run_id, "--region", "eu-west-1", "--region", "us-east-1"])
        .output()
        .unwrap();
    assert_eq!(swept.status.code(), Some(0), "{}", stderr(&swept));
    let stdout = String::from_utf8_lossy(&swept.stdout);
    assert!(stdout.contains("2 instances, 2 key pairs"), "{stdout}");
    for region in REGIONS {
        assert!(stdout.contains(&format!("key pair amiprobe-{run_id}")) && stdout.contains(&format!(" in {region}")));
        assert_eq!(moto.leftovers_in(&run_id, region), (vec![], vec![]), "left in {region}");
        // Each region's removals were signed for that region.
        assert_eq!(calls_in(&moto, "TerminateInstances", region).len(), 1, "TerminateInstances in {region}");
        assert_eq!(calls_in(&moto, "DeleteKeyPair", region).len(), 1, "DeleteKeyPair in {region}");
    }
}

#[test]
fn each_region_gets_its_own_security_group_in_its_default_vpc() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    let spec = regions_spec(dir.path(), &http_probe("health", service.port, "20s"));
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("poll_interval: 500ms", "poll_interval: 500ms, security_group: ephemeral");
    std::fs::write(&spec, text).unwrap();
    let (output, r) = run_with(&moto, &spec, &out, &["--probe-from", "127.0.0.1/32"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let run_id = r["run_id"].as_str().unwrap();
    for region in REGIONS {
        let client = moto.client_in(region);
        let default_vpc = runtime().block_on(async {
            let filter = aws_sdk_ec2::types::Filter::builder().name("is-default").values("true").build();
            let out = client.describe_vpcs().filters(filter).send().await.expect("describe vpcs");
            out.vpcs()[0].vpc_id().unwrap().to_string()
        });
        let created = calls_in(&moto, "CreateSecurityGroup", region);
        assert_eq!(created.len(), 1, "CreateSecurityGroup in {region}: {created:?}");
        assert_eq!(created[0]["VpcId"], default_vpc.as_str(), "the group is in {region}'s default VPC");
        let launch = &calls_in(&moto, "RunInstances", region)[0];
        assert!(launch.values().any(|v| v.as_str().is_some_and(|v| v.starts_with("sg-"))), "{launch:?}");
        assert!(!calls_in(&moto, "DeleteSecurityGroup", region).is_empty(), "deleted in {region}");
        assert!(moto.security_groups_in(run_id, region).is_empty(), "group left in {region}");
        assert_eq!(moto.leftovers_in(run_id, region), (vec![], vec![]), "left in {region}");
    }
}

#[test]
fn an_interrupted_two_region_run_leaves_nothing_in_either() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec = regions_spec(dir.path(), &http_probe("never", closed_port(), "100s"));
    let mut child = spawn_run(&moto, &spec, &out, Stdio::null());
    wait_for_screenshots(&out, 2);
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.code().is_some(), "exited by itself: {status:?}");
    let r = results(&out);
    assert_eq!(r["status"], "interrupted");
    for region in REGIONS {
        assert_eq!(moto.leftovers_in(r["run_id"].as_str().unwrap(), region), (vec![], vec![]), "left in {region}");
        assert!(!calls_in(&moto, "TerminateInstances", region).is_empty(), "TerminateInstances in {region}");
    }
}
