//! The ec2 provider against moto's EC2 server, through the real aws-sdk-ec2.
//!
//! Every test runs in its own loopback-only network namespace (`Moto::start`), points its probes at a
//! loopback service with `--probe-host 127.0.0.1 --allow-targets 127.0.0.0/8` (moto's instance
//! addresses are fake and never contacted), and ends by listing what is left on moto for its run:
//! no instance that is not terminated, no key pair.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{closed_port, out_dir, Moto, TestService, AMI, AMIS};

#[test]
fn full_lifecycle_with_a_passing_and_a_failing_probe() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    let probes = http_probe("health", service.port, "20s") + &http_probe("admin", closed_port(), "3s");
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], &probes, "");
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let cell = &r["cells"][0];
    assert_eq!(cell["status"], "failed");
    assert!(cell["reason"].as_str().unwrap().contains("probe `admin` failed"), "{}", cell["reason"]);
    let health = &cell["probes"][0];
    assert_eq!(health["passed"], true);
    assert_eq!(health["last_exchange"]["status"], 200);
    assert_eq!(cell["machine"]["instance_type"], "t3.micro");
    assert!(cell["machine"]["instance_id"].as_str().unwrap().starts_with("i-"));
    // Screenshots are moto's JPEGs, decoded and stored.
    let shots = cell["screenshots"].as_array().unwrap();
    assert!(!shots.is_empty());
    let first = out.join(shots[0]["path"].as_str().unwrap());
    assert_eq!(image::image_dimensions(&first).unwrap(), (640, 400));
    let console = std::fs::read_to_string(out.join(cell["console_log"].as_str().unwrap())).unwrap();
    assert!(console.contains("amiprobe test console"), "{console}");
    // The cleanup steps ran in order.
    let actions: Vec<&str> =
        cell["cleanup"].as_array().unwrap().iter().map(|s| s["action"].as_str().unwrap()).collect();
    assert!(actions[0].starts_with("terminate i-") && actions.len() == 2, "{actions:?}");
    // The run's one key pair goes at the run's end.
    let run_key = format!("delete key pair amiprobe-{}", r["run_id"].as_str().unwrap());
    let end: Vec<&serde_json::Value> = r["leftover_cleanup"].as_array().unwrap().iter().collect();
    assert!(end.iter().any(|s| s["action"] == run_key.as_str() && s["ok"] == true), "{end:?}");

    // Tags and user data arrived.
    let instance = moto.instances(r["run_id"].as_str().unwrap()).remove(0);
    let tag = |k: &str| instance.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).map(str::to_string);
    assert_eq!(tag("amiprobe:run-id").as_deref(), r["run_id"].as_str());
    assert_eq!(tag("amiprobe:cell").as_deref(), cell["id"].as_str());
    assert_eq!(tag("team").as_deref(), Some("platform"));
    assert!(tag("amiprobe:expires").is_some());
    let client = moto.client();
    let user_data = support::moto::runtime().block_on(async {
        let attr = client
            .describe_instance_attribute()
            .instance_id(instance.instance_id().unwrap())
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        attr.user_data().and_then(|u| u.value()).map(str::to_string).unwrap_or_default()
    });
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(user_data).unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), "#!/bin/sh\necho amiprobe-user-data\n");
    assert_nothing_left(&moto, &r);
}

#[test]
fn pending_instances_are_awaited_with_one_describe_per_tick_for_all() {
    let moto = Moto::start();
    let service = TestService::start();
    moto.control("/pending", json!({ "describes": 6 }));
    let (dir, out) = out_dir();
    let cells = [(AMI, "t3.micro"), (AMI, "t3.small"), (AMI, "t3.medium")];
    let spec = spec(dir.path(), &cells, &http_probe("health", service.port, "20s"), "");
    let started = Instant::now();
    let (output, r) = run(&moto, &spec, &out);
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for cell in r["cells"].as_array().unwrap() {
        // Six describes at 500ms: running some 2.5s or more after launch.
        let waited = cell["timings"]["running_s"].as_f64().unwrap() - cell["timings"]["launched_s"].as_f64().unwrap();
        assert!(waited >= 2.0, "running after only {waited}s");
    }
    let describes = moto.calls()["DescribeInstances"] as f64;
    // Per-instance polling would make three calls a tick; one shared call a tick stays near elapsed/0.5.
    assert!(describes <= elapsed / 0.5 + 3.0, "{describes} DescribeInstances calls in {elapsed:.1}s");
    assert_nothing_left(&moto, &r);
}

/// Runs one cell with a fault injected and returns its results.
fn with_fault(fault: Value, probes_ok: bool) -> (Moto, Output, Value, tempfile::TempDir) {
    let moto = Moto::start();
    let service = TestService::start();
    moto.control("/fault", fault);
    let (dir, out) = out_dir();
    let port = if probes_ok { service.port } else { closed_port() };
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], &http_probe("health", port, "10s"), "");
    let (output, r) = run(&moto, &spec, &out);
    (moto, output, r, dir)
}

#[test]
fn fault_in_import_key_pair_is_a_clear_cell_error() {
    // More server errors in a row than a call retries: EC2 is down for this call, not hiccuping.
    let (moto, output, r, _dir) =
        with_fault(json!({"action": "ImportKeyPair", "code": "InternalError", "status": 500, "count": 100}), true);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(r["cells"][0]["status"], "error");
    assert!(
        r["cells"][0]["reason"].as_str().unwrap().contains("ImportKeyPair failed: InternalError"),
        "{}",
        r["cells"][0]["reason"]
    );
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_refused_run_instances_still_deletes_the_run_key_pair() {
    let (moto, output, r, _dir) =
        with_fault(json!({"action": "RunInstances", "code": "InvalidParameterValue", "status": 400}), true);
    assert_eq!(output.status.code(), Some(1));
    assert!(r["cells"][0]["reason"].as_str().unwrap().contains("RunInstances failed: InvalidParameterValue"));
    assert_eq!(moto.calls().get("DeleteKeyPair"), Some(&1));
    assert_nothing_left(&moto, &r);
}

#[test]
fn faults_in_describe_instances_are_ridden_out() {
    let (moto, output, r, _dir) =
        with_fault(json!({"action": "DescribeInstances", "code": "InternalError", "status": 500, "count": 3}), true);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(r["cells"][0]["status"], "passed");
    assert_nothing_left(&moto, &r);
}

#[test]
fn unsupported_screenshots_are_noted_and_the_cell_goes_on() {
    let fault = json!({"action": "GetConsoleScreenshot", "code": "UnsupportedOperation", "status": 400, "count": 1000});
    let (moto, output, r, _dir) = with_fault(fault, true);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cell = &r["cells"][0];
    assert!(cell["screenshots"].as_array().unwrap().is_empty());
    assert!(cell["screenshots_note"].as_str().unwrap().starts_with("screenshots unavailable"));
    assert_eq!(moto.calls()["GetConsoleScreenshot"], 1, "asked again after EC2 said unsupported");
    assert_nothing_left(&moto, &r);
}

#[test]
fn fault_in_get_console_output_is_recorded() {
    let (moto, output, r, _dir) =
        with_fault(json!({"action": "GetConsoleOutput", "code": "InternalError", "status": 500, "count": 1000}), true);
    assert_eq!(output.status.code(), Some(1));
    let cell = &r["cells"][0];
    assert_eq!(cell["status"], "failed", "the console must show `login:` and could not be read");
    assert!(cell["errors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().contains("GetConsoleOutput failed: InternalError")));
    assert_nothing_left(&moto, &r);
}

#[test]
fn terminate_failing_several_times_is_retried_with_backoff() {
    let (moto, output, r, _dir) =
        with_fault(json!({"action": "TerminateInstances", "code": "InternalError", "status": 500, "count": 4}), true);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cell = &r["cells"][0];
    let terminate = &cell["cleanup"][0];
    assert!(terminate["action"].as_str().unwrap().starts_with("terminate i-"), "{terminate}");
    assert_eq!((terminate["ok"].as_bool(), terminate["attempts"].as_u64()), (Some(true), Some(5)), "{terminate}");
    assert_eq!(moto.calls()["fault:TerminateInstances"], 4);
    assert!(r.get("not_removed").is_none(), "{}", r["not_removed"]);
    assert_nothing_left(&moto, &r);
}

#[test]
fn insufficient_capacity_falls_back_to_the_next_instance_type() {
    let moto = Moto::start();
    let service = TestService::start();
    moto.control(
        "/fault",
        json!({"action": "RunInstances", "code": "InsufficientInstanceCapacity", "status": 500, "count": 5, "when": {"InstanceType": "t3.micro"}}),
    );
    let (dir, out) = out_dir();
    let spec = spec(
        dir.path(),
        &[(AMI, "t3.micro")],
        &http_probe("health", service.port, "10s"),
        ", fallback: { instance_type: [t3.small] }",
    );
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cell = &r["cells"][0];
    assert_eq!(cell["machine"]["instance_type"], "t3.small");
    let fallbacks: Vec<&str> = cell["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "capacity_fallback")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(fallbacks.iter().any(|m| m.contains("trying t3.small")), "{fallbacks:?}");
    assert_nothing_left(&moto, &r);
}

#[test]
fn request_limit_storms_are_absorbed_by_backoff() {
    let moto = Moto::start();
    let service = TestService::start();
    // Every call EC2 gets for a while is throttled: the first twelve, whatever they are.
    moto.control("/fault", json!({"action": "*", "code": "RequestLimitExceeded", "status": 503, "count": 12}));
    let (dir, out) = out_dir();
    let cells = [(AMI, "t3.micro"), (AMI, "t3.small")];
    let spec = spec(dir.path(), &cells, &http_probe("health", service.port, "30s"), "");
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    for cell in r["cells"].as_array().unwrap() {
        assert!(cell["errors"].as_array().unwrap().is_empty(), "{:#}", cell["errors"]);
    }
    // Two cells need at least 1 ImportKeyPair, 2 RunInstances, 2 TerminateInstances, 1 DeleteKeyPair
    // and a DescribeInstances: the twelve throttled calls came on top and were retried.
    let total: u64 = moto.calls().values().sum();
    assert!(total >= 12 + 7, "only {total} calls");
    assert_nothing_left(&moto, &r);
}

#[test]
fn impossible_cells_are_refused_before_anything_is_launched() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    let cells = [("ami-00000000000000000", "t3.micro"), (AMI, "t3.gigantic"), (AMI, "t3.micro")];
    let spec = spec(dir.path(), &cells, &http_probe("health", service.port, "10s"), "");
    let (output, r) = run(&moto, &spec, &out);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(r["status"], "refused");
    assert_eq!(moto.calls().get("RunInstances"), None, "nothing is launched");
    let reason = |r: &Value, i: usize| r["cells"][i]["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason(&r, 0).starts_with("impossible: ") && reason(&r, 0).contains("ami-00000000000000000"),
        "{}",
        reason(&r, 0)
    );
    assert!(reason(&r, 1).starts_with("impossible: ") && reason(&r, 1).contains("t3.gigantic"), "{}", reason(&r, 1));
    assert!(stderr(&output).contains("impossible"), "{}", stderr(&output));

    // --skip-impossible runs the rest: one bad cell does not stop the others.
    let again = dir.path().join("again");
    let (output, r) = run_with(&moto, &spec, &again, &["--skip-impossible"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(r["cells"][0]["status"], "not_run");
    assert!(reason(&r, 1).starts_with("impossible: "), "{}", reason(&r, 1));
    assert_eq!(r["cells"][2]["status"], "passed");
    assert_nothing_left(&moto, &r);
}

#[test]
fn sigint_mid_run_cleans_up_and_says_interrupted() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec =
        spec(dir.path(), &[(AMI, "t3.micro"), (AMI, "t3.small")], &http_probe("never", closed_port(), "100s"), "");
    let child = spawn_run(&moto, &spec, &out, Stdio::piped());
    wait_for_screenshots(&out, 4);
    let run_id = results(&out)["run_id"].as_str().unwrap().to_string();
    assert_eq!(moto.leftovers(&run_id).0.len(), 2, "both instances run before the interrupt");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let r = results(&out);
    assert_eq!(r["status"], "interrupted");
    for cell in r["cells"].as_array().unwrap() {
        assert_eq!(cell["status"], "interrupted");
        assert!(!cell["screenshots"].as_array().unwrap().is_empty(), "screenshots kept");
    }
    assert_nothing_left(&moto, &r);
}

#[test]
fn sigkill_mid_run_then_sweep_removes_everything() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec =
        spec(dir.path(), &[(AMI, "t3.micro"), (AMI, "t3.small")], &http_probe("never", closed_port(), "100s"), "");
    let mut child = spawn_run(&moto, &spec, &out, Stdio::null());
    wait_for_screenshots(&out, 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let r = results(&out);
    let run_id = r["run_id"].as_str().unwrap().to_string();
    let (instances, key_pairs) = moto.leftovers(&run_id);
    assert_eq!((instances.len(), key_pairs.len()), (2, 1), "a killed run leaves its resources (one key per run)");

    // No results.json, but its journal: `report` renders the run as far as it got, as interrupted.
    assert!(!out.join("results.json").exists() && out.join("results.jsonl").is_file());
    assert_eq!(r["status"], "interrupted");
    for cell in r["cells"].as_array().unwrap() {
        assert_eq!(cell["status"], "interrupted", "{cell:#}");
        assert!(cell["reason"].as_str().unwrap().contains("killed"), "{cell:#}");
    }
    let sweep = format!("amiprobe sweep --run-id {run_id}");
    assert!(r["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains(&sweep)), "{r:#}");
    let report = amiprobe(&moto, &["report", out.to_str().unwrap()]).output().unwrap();
    assert_eq!(report.status.code(), Some(130), "exits as an interrupted run: {}", stderr(&report));
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html rendered");
    assert_eq!(html.matches("<article class=\"cell skip\"").count(), 2, "both cells, interrupted");
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml rendered");
    assert!(junit.contains("tests=\"2\""), "{junit}");
    assert!(out.join("results.json").is_file());
    assert_eq!(results(&out), r, "results.json written by `report` says what the journal did");

    let dry = amiprobe(&moto, &["sweep", "--run-id", &run_id, "--dry-run"]).output().unwrap();
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    assert!(String::from_utf8_lossy(&dry.stdout).contains("2 instances, 1 key pairs"));
    assert_eq!(moto.leftovers(&run_id).0.len(), 2, "dry run removes nothing");

    let swept = amiprobe(&moto, &["sweep", "--run-id", &run_id]).output().unwrap();
    assert_eq!(swept.status.code(), Some(0), "{}", stderr(&swept));
    assert_eq!(moto.leftovers(&run_id), (vec![], vec![]));
}

#[test]
fn probes_refuse_targets_outside_allow_targets() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    let spec = spec(dir.path(), &[(AMI, "t3.micro")], &http_probe("health", service.port, "3s"), "");
    // The default policy allows only the instance's own (fake) address: loopback is refused.
    let output =
        amiprobe(&moto, &["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--probe-host", "127.0.0.1"])
            .output()
            .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let r = results(&out);
    let message = r["cells"][0]["probes"][0]["message"].as_str().unwrap();
    assert!(message.contains("refused to contact 127.0.0.1: not within --allow-targets"), "{message}");
    assert_nothing_left(&moto, &r);
}

#[test]
fn merged_shards_equal_the_single_run() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, _) = out_dir();
    let cells = [
        (AMI, "t3.micro"),
        (AMI, "t3.small"),
        (AMI, "t3.medium"),
        (AMI, "t3.gigantic"),
        (AMI, "m5.large"),
        (AMI, "c5.large"),
    ];
    let spec = spec(dir.path(), &cells, &http_probe("health", service.port, "10s"), "");
    let single_dir = dir.path().join("single");
    let (_, single) = run_with(&moto, &spec, &single_dir, &["--skip-impossible"]);
    let mut shard_dirs = Vec::new();
    for k in 1..=3 {
        let out = dir.path().join(format!("shard-{k}"));
        let (_, r) = run_with(&moto, &spec, &out, &["--shard", &format!("{k}/3"), "--skip-impossible"]);
        assert_eq!(r["shard"], format!("{k}/3"));
        shard_dirs.push(out);
    }
    let merged_dir = dir.path().join("merged");
    let output = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .args(["report", "merge"])
        .args(&shard_dirs)
        .arg("--out")
        .arg(&merged_dir)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "the run had a failing cell: {}", stderr(&output));
    let merged = results(&merged_dir);

    let summary = |r: &Value| -> Vec<(String, String, String)> {
        r["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().into(),
                    c["status"].as_str().unwrap().into(),
                    c["reason"].as_str().unwrap_or_default().into(),
                )
            })
            .collect()
    };
    assert_eq!(summary(&merged), summary(&single));
    assert_eq!(merged["counts"], single["counts"]);
    assert_eq!(merged["status"], single["status"]);
    assert_eq!(merged["merged_from"], json!(["1/3", "2/3", "3/3"]));
    // The reports show the same matrix, and every screenshot they name was copied along.
    let grid = |dir: &Path| {
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        let start = html.find("<table class=\"grid\">").unwrap();
        let end = start + html[start..].find("</table>").unwrap();
        html[start..end].to_string()
    };
    assert_eq!(grid(&merged_dir), grid(&single_dir));
    for cell in merged["cells"].as_array().unwrap() {
        for shot in cell["screenshots"].as_array().unwrap() {
            assert!(merged_dir.join(shot["path"].as_str().unwrap()).exists());
        }
    }
    for r in [&single, &merged] {
        assert_nothing_left(&moto, r);
    }
}

#[test]
fn a_kept_private_key_is_private_and_in_no_report() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    let spec_file = spec(dir.path(), &[(AMI, "t3.micro")], &http_probe("health", service.port, "10s"), "");
    let text = std::fs::read_to_string(&spec_file).unwrap().replace("launch:\n", "launch:\n  keep_private_key: true\n");
    std::fs::write(&spec_file, text).unwrap();
    let (output, r) = run(&moto, &spec_file, &out);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let key = out.join(amiprobe::providers::ec2::PRIVATE_KEY_FILE);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).expect("key kept").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let material = std::fs::read_to_string(&key).unwrap();
    // EC2 got the public half of this very key, and nothing else: the private key never left.
    let private = ssh_key::PrivateKey::from_openssh(&material).expect("an OpenSSH private key");
    assert_eq!(private.algorithm(), ssh_key::Algorithm::Ed25519);
    let imported = moto.requests("ImportKeyPair");
    assert_eq!(imported.len(), 1, "{imported:?}");
    use base64::Engine as _;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(imported[0]["PublicKeyMaterial"].as_str().unwrap())
        .expect("base64 public key material");
    assert_eq!(String::from_utf8(sent).unwrap(), private.public_key().to_openssh().unwrap());
    let secret_line = material.lines().nth(1).unwrap();
    for report in ["results.json", "report.html", "junit.xml"] {
        let text = std::fs::read_to_string(out.join(report)).unwrap();
        assert!(!text.contains(secret_line), "{report} holds the private key");
        assert!(!text.contains("keys/"), "{report} points at the key");
    }
    assert_nothing_left(&moto, &r);
}

#[test]
fn rerun_failed_runs_only_the_cells_that_did_not_pass() {
    let moto = Moto::start();
    let service = TestService::start();
    let (dir, out) = out_dir();
    let cells = [(AMI, "t3.micro"), (AMI, "t3.gigantic"), (AMI, "t3.small")];
    let spec = spec(dir.path(), &cells, &http_probe("health", service.port, "10s"), "");
    let (_, first) = run_with(&moto, &spec, &out, &["--skip-impossible"]);
    assert_eq!(first["counts"]["passed"], 2);
    let again = dir.path().join("again");
    let (output, second) =
        run_with(&moto, &spec, &again, &["--rerun-failed", out.to_str().unwrap(), "--skip-impossible"]);
    assert_eq!(output.status.code(), Some(1));
    let ids: Vec<&str> = second["cells"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [format!("{AMI}_t3.gigantic")]);
    for r in [&first, &second] {
        assert_nothing_left(&moto, r);
    }
}

#[test]
fn a_large_matrix_under_ec2_rate_limits_runs_without_throttling_errors() {
    // 40 cells by default; AMIPROBE_MATRIX_CELLS=200 for the size EC2 users run (a few minutes).
    let size: usize = std::env::var("AMIPROBE_MATRIX_CELLS").ok().and_then(|v| v.parse().ok()).unwrap_or(40).min(200);
    let moto = Moto::start();
    let service = TestService::start();
    // moto now throttles like EC2 does, with the same per-class buckets as amiprobe's defaults.
    moto.control("/throttle", json!({ "enabled": true }));
    let (dir, out) = out_dir();
    let types = [
        "t3.nano",
        "t3.micro",
        "t3.small",
        "t3.medium",
        "t3.large",
        "t3.xlarge",
        "t3.2xlarge",
        "m5.large",
        "m5.xlarge",
        "m5.2xlarge",
        "c5.large",
        "c5.xlarge",
        "c5.2xlarge",
        "r5.large",
        "r5.xlarge",
        "r5.2xlarge",
        "t2.micro",
        "t2.small",
        "t2.medium",
        "t2.large",
    ];
    let cells: Vec<(&str, &str)> = types.iter().flat_map(|t| AMIS.iter().map(move |a| (*a, *t))).take(size).collect();
    let spec_file = spec(dir.path(), &cells, &http_probe("health", service.port, "300s"), "");
    // Every cell wants a screenshot a second for 10 s after it is ready: far beyond EC2's 20 a second.
    let text = std::fs::read_to_string(&spec_file)
        .unwrap()
        .replace("capture:\n", &format!("concurrency: {size}\ncapture:\n  after_ready: 10s\n"))
        .replace("run: 2m", "run: 15m");
    std::fs::write(&spec_file, text).unwrap();
    let (output, r) = run(&moto, &spec_file, &out);
    moto.control("/throttle", json!({ "enabled": false }));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(r["counts"]["passed"], size);
    let mut intervals = Vec::new();
    let mut shots = Vec::new();
    for cell in r["cells"].as_array().unwrap() {
        assert!(cell["errors"].as_array().unwrap().is_empty(), "{}: {:#}", cell["id"], cell["errors"]);
        let times: Vec<f64> =
            cell["screenshots"].as_array().unwrap().iter().map(|s| s["offset_s"].as_f64().unwrap()).collect();
        // The cadence degrades with the matrix (EC2 allows 20 Get* calls a second for everyone), but
        // every cell keeps getting screenshots.
        assert!(!times.is_empty(), "{}: no screenshots", cell["id"]);
        shots.push(times.len());
        intervals.extend(times.windows(2).map(|w| w[1] - w[0]));
    }
    let calls = moto.calls();
    let mean = intervals.iter().sum::<f64>() / intervals.len() as f64;
    // Figures for the log: how often EC2 (moto) had to say no, and how far the cadence stretched.
    let throttled = calls.get("throttled").copied().unwrap_or(0);
    // Action names only: the launcher also counts what it injected as "kind:Action".
    let count = |keep: &dyn Fn(&str) -> bool| -> u64 {
        calls.iter().filter(|(k, _)| !k.contains(':') && *k != "throttled" && keep(k)).map(|(_, v)| v).sum()
    };
    let total = count(&|_| true);
    let preflight = count(&|k| {
        matches!(
            k,
            "DescribeImages"
                | "DescribeInstanceTypes"
                | "DescribeInstanceTypeOfferings"
                | "DescribeSubnets"
                | "DescribeSecurityGroups"
        )
    });
    let per_cell = count(&|k| k != "GetConsoleScreenshot") as f64 / size as f64;
    println!(
        "{size} cells: {total} calls ({per_cell:.2} a cell besides screenshots, {preflight} for the preflight), \
         {throttled} throttled by the server, {}-{} screenshots a cell, mean interval {mean:.2}s (asked: 1s)",
        shots.iter().min().unwrap_or(&0),
        shots.iter().max().unwrap_or(&0)
    );
    assert_nothing_left(&moto, &r);
}
