//! Launch fields as matrix axes, end to end against moto: a spec varying root volumes and boot modes
//! plans, shards, runs, merges and renders with the axes as columns, and every launch field reaches
//! RunInstances as given (the launcher records each request).

mod support;

use std::process::Command;

use serde_json::Value;
use support::ec2::*;
use support::moto::{out_dir, Moto, TestService, AMI};

fn axes_spec(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let text = format!(
        "name: axes
provider:
  ec2: {{ region: eu-west-1, poll_interval: 500ms }}
matrix:
  image: {AMI}
  root_volume: [{{ size: 8, type: gp3 }}, {{ size: 30, type: io2, iops: 3000 }}]
  boot_mode: [legacy-bios, uefi]
launch:
  instance_type: t3.micro
  imds: {{ http_tokens: required, hop_limit: 2 }}
capture:
  screenshots: [{{ every: 1s, until: 10s }}]
probes:
{}timeouts: {{ run: 2m }}
",
        http_probe("health", port, "20s")
    );
    let file = dir.join("spec.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn a_matrix_over_root_volumes_and_boot_modes_runs_shards_and_merges() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, _) = out_dir();
    let spec = axes_spec(dir.path(), service.port);

    let planned = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .args(["plan", spec.to_str().unwrap(), "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(planned.status.code(), Some(0), "{}", String::from_utf8_lossy(&planned.stderr));
    let plan: Value = serde_json::from_slice(&planned.stdout).unwrap();
    let ids: Vec<&str> = plan["cells"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            format!("{AMI}_8-gp3_legacy-bios"),
            format!("{AMI}_8-gp3_uefi"),
            format!("{AMI}_30-io2-3000_legacy-bios"),
            format!("{AMI}_30-io2-3000_uefi"),
        ]
    );

    // The whole matrix in one run: each launch field reached RunInstances as given.
    let single = dir.path().join("single");
    let (output, r) = run(&moto, &spec, &single);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(r["counts"]["passed"], 4);
    assert_eq!(r["cells"][2]["params"]["root_volume"]["iops"], 3000, "results keep the axes' values");
    let requests = moto.requests("RunInstances");
    assert_eq!(requests.len(), 4, "{requests:?}");
    let mut sizes: Vec<String> = Vec::new();
    for request in &requests {
        let get = |k: &str| request.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        assert_eq!(get("InstanceType"), "t3.micro");
        assert_eq!(get("MetadataOptions.HttpTokens"), "required");
        assert_eq!(get("MetadataOptions.HttpPutResponseHopLimit"), "2");
        assert!(get("BlockDeviceMapping.1.DeviceName").starts_with("/dev/"), "{request:?}");
        sizes.push(format!(
            "{}-{}-{}",
            get("BlockDeviceMapping.1.Ebs.VolumeSize"),
            get("BlockDeviceMapping.1.Ebs.VolumeType"),
            get("BlockDeviceMapping.1.Ebs.Iops")
        ));
    }
    sizes.sort();
    assert_eq!(sizes, ["30-io2-3000", "30-io2-3000", "8-gp3-", "8-gp3-"]);

    // Two shards merged render the same grid, the axes as columns.
    let mut shards = Vec::new();
    for k in 1..=2 {
        let out = dir.path().join(format!("shard-{k}"));
        let (output, _) = run_with(&moto, &spec, &out, &["--shard", &format!("{k}/2")]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        shards.push(out);
    }
    let merged = dir.path().join("merged");
    let output = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .args(["report", "merge"])
        .args(&shards)
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let grid = |dir: &std::path::Path| {
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        let start = html.find("<table class=\"grid\">").unwrap();
        html[start..start + html[start..].find("</table>").unwrap()].to_string()
    };
    let table = grid(&merged);
    assert_eq!(table, grid(&single));
    for column in ["8-gp3 · legacy-bios", "30-io2-3000 · uefi"] {
        assert!(table.contains(column), "no column {column}: {table}");
    }
    assert_nothing_left(&moto, &r);
}
