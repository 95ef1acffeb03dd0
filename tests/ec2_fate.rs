//! Instances EC2 ends on its own, against moto's EC2 server through the real aws-sdk-ec2: the
//! launcher's `/fate` ends them as EC2 does, with a `StateReason`, and the verdict names who is to
//! blame. Only a guest that shut itself down (`Client.InstanceInitiatedShutdown`) is the image's doing
//! (`failed`); an encrypted snapshot the account can't read (`Client.InternalError`), a Spot reclaim
//! or an internal error is the platform's (`error`), its code and meaning in the reason. The preflight
//! warns of another account's image whose snapshots are encrypted.
//!
//! Each test runs in its own loopback-only namespace (`Moto::start`), probes loopback with
//! `--probe-host 127.0.0.1 --allow-targets 127.0.0.0/8`, and ends with nothing of its run left.

mod support;

use std::path::Path;
use std::process::Output;

use serde_json::{json, Value};
use support::ec2::*;
use support::moto::{closed_port, out_dir, Moto, AMI};

/// Polls every 500ms, reads the console and the status checks every second.
const FAST: &str = ", console_poll_interval: 1s, status_poll_interval: 1s";

/// The account that shares its images in these tests (moto's own is 123456789012).
const OTHER_ACCOUNT: &str = "111122223333";

/// A new AMI with these attributes (see [`Moto::image`]), ENA enabled as the t3 types need.
fn image(moto: &Moto, mut attributes: Value) -> String {
    attributes["ena_support"] = json!(true);
    moto.image(attributes)
}

/// Instances from `image` end as EC2 ends them: `after` (`pending`: before they ever run;
/// `running`: once they run), `delay_s` after their launch, in `state`, with `code`.
fn fate(moto: &Moto, image: &str, after: &str, state: &str, code: &str) {
    let message = format!("{code}: ended by EC2");
    let body =
        json!({ "image_id": image, "after": after, "delay_s": 3, "state": state, "code": code, "message": message });
    moto.control("/fate", body);
}

/// Runs one cell per image (t3.micro), each with a probe that never passes within a minute: only the
/// instance ending can end the cell early.
fn run_images(moto: &Moto, dir: &Path, out: &Path, images: &[&str]) -> (Output, Value) {
    let cells: Vec<(&str, &str)> = images.iter().map(|image| (*image, "t3.micro")).collect();
    let spec = spec(dir, &cells, &http_probe("health", closed_port(), "60s"), FAST);
    run(moto, &spec, out)
}

fn junit(out: &Path) -> String {
    std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The cell of `image`.
fn cell_of<'a>(r: &'a Value, image: &str) -> &'a Value {
    let cells = r["cells"].as_array().unwrap();
    cells.iter().find(|c| c["params"]["image"] == image).unwrap_or_else(|| panic!("no cell of {image}: {r}"))
}

#[test]
fn a_launch_ended_by_a_kms_key_the_account_cant_use_is_an_error_naming_the_cause() {
    let moto = Moto::start();
    let shared = image(&moto, json!({ "owner_id": OTHER_ACCOUNT, "encrypted": true }));
    fate(&moto, &shared, "pending", "terminated", "Client.InternalError");
    let (dir, out) = out_dir();
    let (output, r) = run_images(&moto, dir.path(), &out, &[&shared]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let cell = cell_of(&r, &shared);
    assert_eq!(cell["status"], "error", "{cell}");
    let reason = cell["reason"].as_str().unwrap();
    assert!(reason.starts_with("machine did not start: instance i-"), "{reason}");
    assert!(
        reason.contains("is terminated (Client.InternalError: the account can't use the image's KMS key"),
        "{reason}"
    );
    // It never ran.
    assert!(cell["timings"]["running_s"].is_null(), "{cell}");
    assert_eq!(r["counts"]["errored"], 1);
    assert_eq!(r["counts"]["failed"], 0);
    // The preflight saw it coming.
    let warnings: Vec<&str> = r["warnings"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let kms: Vec<&&str> = warnings.iter().filter(|w| w.contains(&shared) && w.contains("encrypted")).collect();
    assert_eq!(kms.len(), 1, "{warnings:?}");
    let junit = junit(&out);
    assert!(junit.contains("<error") && !junit.contains("<failure"), "{junit}");
    assert!(junit.contains("Client.InternalError"), "{junit}");
    let stdout = stdout(&output);
    assert!(stdout.contains("0 passed, 0 failed, 1 errors"), "{stdout}");
    assert!(stdout.contains("Client.InternalError"), "{stdout}");
    assert_nothing_left(&moto, &r);
}

#[test]
fn an_instance_the_platform_ends_after_it_ran_is_an_error_not_the_image_s_failure() {
    let moto = Moto::start();
    let (spot, internal) = (image(&moto, json!({})), image(&moto, json!({})));
    fate(&moto, &spot, "running", "terminated", "Server.SpotInstanceTermination");
    fate(&moto, &internal, "running", "stopped", "Server.InternalError");
    let (dir, out) = out_dir();
    let (output, r) = run_images(&moto, dir.path(), &out, &[&spot, &internal]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    for (image, cause) in [
        (&spot, "is terminated (Server.SpotInstanceTermination: EC2 reclaimed the Spot Instance)"),
        (&internal, "is stopped (Server.InternalError: an internal error in EC2 ended the instance)"),
    ] {
        let cell = cell_of(&r, image);
        assert_eq!(cell["status"], "error", "{cell}");
        assert!(cell["timings"]["running_s"].is_number(), "it ran: {cell}");
        let reason = cell["reason"].as_str().unwrap();
        assert!(reason.starts_with("instance i-") && reason.contains(cause), "{reason}");
        assert!(reason.ends_with("the platform's doing, not the image's"), "{reason}");
    }
    assert_eq!(r["counts"]["errored"], 2);
    let junit = junit(&out);
    assert_eq!(junit.matches("<error").count(), 2, "{junit}");
    assert!(!junit.contains("<failure"), "{junit}");
    assert!(stdout(&output).contains("0 passed, 0 failed, 2 errors"), "{}", stdout(&output));
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_guest_that_shuts_itself_down_fails_the_image() {
    let moto = Moto::start();
    let (stops, ends_early) = (image(&moto, json!({})), image(&moto, json!({})));
    // Powered off once running (InstanceInitiatedShutdownBehavior stop), and one seen only once it
    // was over (terminate): either way the guest did it, so it ran.
    fate(&moto, &stops, "running", "stopped", "Client.InstanceInitiatedShutdown");
    fate(&moto, &ends_early, "pending", "terminated", "Client.InstanceInitiatedShutdown");
    let (dir, out) = out_dir();
    let (output, r) = run_images(&moto, dir.path(), &out, &[&stops, &ends_early]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    for (image, state) in [(&stops, "stopped"), (&ends_early, "terminated")] {
        let cell = cell_of(&r, image);
        assert_eq!(cell["status"], "failed", "{cell}");
        let reason = cell["reason"].as_str().unwrap();
        let said = format!("is {state} (Client.InstanceInitiatedShutdown: the guest shut itself down");
        assert!(reason.starts_with("machine stopped by itself: instance i-") && reason.contains(&said), "{reason}");
    }
    assert_eq!(r["counts"]["failed"], 2);
    assert_eq!(r["counts"]["errored"], 0);
    let junit = junit(&out);
    assert_eq!(junit.matches("<failure").count(), 2, "{junit}");
    assert!(!junit.contains("<error"), "{junit}");
    assert!(stdout(&output).contains("0 passed, 2 failed, 0 errors"), "{}", stdout(&output));
    // The stopped instance is terminated like any other.
    assert_nothing_left(&moto, &r);
}

#[test]
fn plan_check_warns_once_of_another_account_s_encrypted_image_in_one_lookup() {
    let moto = Moto::start();
    let shared = image(&moto, json!({ "owner_id": OTHER_ACCOUNT, "encrypted": true }));
    let own_encrypted = image(&moto, json!({ "encrypted": true }));
    let shared_plain = image(&moto, json!({ "owner_id": OTHER_ACCOUNT }));
    let (dir, _out) = out_dir();
    let cells = [
        (shared.as_str(), "t3.micro"),
        (shared.as_str(), "t3.small"),
        (own_encrypted.as_str(), "t3.micro"),
        (shared_plain.as_str(), "t3.micro"),
        (AMI, "t3.micro"),
    ];
    let spec = spec(dir.path(), &cells, &http_probe("health", closed_port(), "5s"), "");
    let output = amiprobe(&moto, &["plan", spec.to_str().unwrap(), "--check"]).output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    let warned: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:") && l.contains("encrypted")).collect();
    assert_eq!(warned.len(), 1, "{err}");
    let expected = format!(
        "image {shared} belongs to account {OTHER_ACCOUNT} and its snapshots are encrypted (/dev/xvda): \
         account 123456789012 must be allowed to use that account's KMS key"
    );
    assert!(warned[0].contains(&expected) && warned[0].contains("Client.InternalError"), "{}", warned[0]);
    assert_eq!(moto.calls()["DescribeImages"], 1, "one lookup for every image");
    assert_eq!(moto.calls().get("RunInstances"), None, "plan --check launches nothing");
}
