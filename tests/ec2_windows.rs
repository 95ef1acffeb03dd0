//! Windows images and the reboot cycle on EC2, against moto's EC2 server through the real
//! aws-sdk-ec2: EC2Launch's console lines (from real Windows boots, tests/fixtures/ec2/) decide
//! readiness and failure, RDP must answer its protocol, the administrator password comes from
//! GetPasswordData encrypted to the run's RSA key, and `reboot: true` reboots with RebootInstances.
//!
//! Each test runs in its own loopback-only namespace (`Moto::start`); under `/timing` each instance
//! has a loopback address of its own where its services listen, and probes go there.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::ec2::*;
use support::fixtures;
use support::moto::{out_dir, Moto, AMI, WINDOWS_AMI};

fn console_fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("ec2").join(name)).unwrap()
}

/// A one-cell spec for `image`; probes on the instance's own address.
fn write_spec(dir: &Path, image: &str, os: &str, probes: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "name: windows-test\n{os}provider:\n  ec2: {{ region: eu-west-1, address: public_ip, poll_interval: 500ms, console_poll_interval: 1s }}\n\
         matrix:\n  include:\n    - {{ image: {image}, instance_type: t3.micro }}\n\
         capture:\n  screenshots: [{{ every: 1s, until: 20s }}]\nprobes:\n{probes}{extra}timeouts: {{ run: 2m }}\n"
    );
    let file = dir.join("spec.yaml");
    std::fs::write(&file, text).unwrap();
    file
}

fn run_own_addresses(moto: &Moto, spec: &Path, out: &Path) -> (std::process::Output, Value) {
    let output = amiprobe(moto, &["run", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]).output().unwrap();
    (output, results(out))
}

fn probe<'a>(cell: &'a Value, name: &str) -> &'a Value {
    cell["probes"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no probe {name}"))
}

/// Every file under `dir`, as text where it is text.
fn all_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&all_text(&path));
        } else if let Ok(content) = std::fs::read(&path) {
            text.push_str(&String::from_utf8_lossy(&content));
        }
    }
    text
}

#[test]
fn a_windows_image_is_ready_when_ec2launch_says_so_and_its_password_decrypts() {
    let moto = Moto::start();
    moto.control("/timing", json!({ "boot_s": 1, "service_s": 2, "seed": 1, "port": 80, "rdp_port": 3389 }));
    moto.control("/windows", json!({ "password_s": 4 }));
    moto.control("/console", json!({ "text": console_fixture("windows-ec2launch-v2-ready.log") }));
    let (dir, out) = out_dir();
    let probes = "  - { name: rdp, rdp: {}, within: 60s, interval: 1s }\n  - { name: password, windows_password: {}, within: 60s, interval: 1s }\n";
    let spec = write_spec(dir.path(), WINDOWS_AMI, "os: windows\n", probes, "");
    let (output, r) = run_own_addresses(&moto, &spec, &out);
    let cell = &r["cells"][0];
    assert_eq!(output.status.code(), Some(0), "{}\n{cell:#}", stderr(&output));
    assert_eq!(cell["status"], "passed");

    let rdp = probe(cell, "rdp");
    assert_eq!(rdp["message"], "RDP answered (protocol tls)", "{rdp:#}");
    let password = probe(cell, "password");
    assert_eq!(password["passed"], true, "{password:#}");
    assert!(password["message"].as_str().unwrap().starts_with("administrator password generated (32 characters)"));
    // EC2 answers an empty password until Windows made one: the probe waited for it.
    let attempts = password["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["message"], "no administrator password yet", "{password:#}");

    // EC2Launch's readiness line is a built-in requirement of `os: windows`.
    let ready = cell["console"].as_array().unwrap().iter().find(|f| f["rule"] == "Windows is Ready to use").unwrap();
    assert_eq!(ready["passed"], true);

    // The run's key is RSA (EC2 encrypts Windows passwords to RSA keys only), and the password
    // itself is nowhere in what the run wrote.
    let imported = moto.requests("ImportKeyPair");
    let material = imported[0]["PublicKeyMaterial"].as_str().unwrap();
    use base64::Engine;
    let public =
        base64::engine::general_purpose::STANDARD.decode(material).unwrap_or_else(|_| material.as_bytes().to_vec());
    assert!(String::from_utf8_lossy(&public).starts_with("ssh-rsa "), "{material}");
    let passwords = moto.get("/windows");
    let plain = passwords.as_object().unwrap().values().next().unwrap().as_str().unwrap();
    assert_eq!(plain.chars().count(), 32);
    assert!(!all_text(&out).contains(plain), "the administrator password was written down");
    assert_nothing_left(&moto, &r);
}

#[test]
fn ec2launch_giving_up_is_the_reason_not_the_silent_rdp_port() {
    let moto = Moto::start();
    moto.control(
        "/timing",
        json!({ "boot_s": 1, "service_s": 1, "seed": 2, "port": 80, "rdp_port": 3389, "rdp_mute": true }),
    );
    moto.control("/console", json!({ "text": console_fixture("windows-ec2launch-v2-failed.log") }));
    let (dir, out) = out_dir();
    let spec = write_spec(
        dir.path(),
        WINDOWS_AMI,
        "os: windows\n",
        "  - { name: rdp, rdp: {}, within: 40s, interval: 1s }\n",
        "",
    );
    let (output, r) = run_own_addresses(&moto, &spec, &out);
    let cell = &r["cells"][0];
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(cell["status"], "failed");
    assert_eq!(
        cell["reason"],
        "console matched `ec2launch stopped` at line 4: 2025/12/17 21:08:30Z: Message: Error EC2Launch service is stopping. See instance logs for detail"
    );
    // Stopped at the console line, not after the probe's 40 s.
    let ran = cell["timings"]["ended_s"].as_f64().unwrap() - cell["timings"]["running_s"].as_f64().unwrap();
    assert!(ran < 20.0, "ran {ran}s after running");
    // A port that accepts and says nothing is not RDP.
    let rdp = probe(cell, "rdp");
    assert_eq!(rdp["passed"], false);
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_password_encrypted_to_another_key_fails_its_probe() {
    let moto = Moto::start();
    moto.control("/timing", json!({ "boot_s": 1, "service_s": 1, "seed": 3, "port": 80 }));
    moto.control("/windows", json!({ "wrong_key": true }));
    moto.control("/console", json!({ "text": console_fixture("windows-ec2launch-v1-ready.log") }));
    let (dir, out) = out_dir();
    let probes = "  - { name: password, windows_password: {}, within: 5s, interval: 1s }\n";
    let spec = write_spec(dir.path(), WINDOWS_AMI, "os: windows\n", probes, "");
    let (output, r) = run_own_addresses(&moto, &spec, &out);
    let cell = &r["cells"][0];
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let reason = cell["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("probe `password` failed: the password data does not decrypt with the run's key"),
        "{reason}"
    );
    assert_nothing_left(&moto, &r);
}

#[test]
fn preflight_refuses_a_windows_image_the_spec_calls_linux_and_the_reverse() {
    let moto = Moto::start();
    let (dir, out) = out_dir();
    let spec = write_spec(dir.path(), WINDOWS_AMI, "", "  - { name: rdp, rdp: {}, within: 5s }\n", "");
    let (output, r) = run_own_addresses(&moto, &spec, &out);
    assert_ne!(output.status.code(), Some(0));
    let reason = r["cells"][0]["reason"].as_str().unwrap_or_default().to_string();
    let said = format!("{reason}\n{}", stderr(&output));
    assert!(said.contains(&format!("image {WINDOWS_AMI} is a Windows image")), "{said}");
    assert_eq!(moto.calls().get("RunInstances").copied().unwrap_or(0), 0, "an impossible cell was launched");

    let (dir, out) = out_dir();
    let spec = write_spec(dir.path(), AMI, "os: windows\n", "  - { name: rdp, rdp: {}, within: 5s }\n", "");
    let (output, r) = run_own_addresses(&moto, &spec, &out);
    let said = format!("{}\n{}", r["cells"][0]["reason"].as_str().unwrap_or_default(), stderr(&output));
    assert!(said.contains(&format!("image {AMI} is not a Windows image")), "{said}");
    assert_nothing_left(&moto, &r);
}

#[test]
fn a_reboot_cycle_on_ec2_runs_the_probes_again_after_reboot_instances() {
    let moto = Moto::start();
    moto.control("/timing", json!({ "boot_s": 1, "service_s": 1, "reboot_s": 3, "seed": 4, "port": 8080 }));
    moto.control("/console", json!({ "text": "first boot\nlogin: \n", "after_reboot": "second boot\nlogin: \n" }));
    let (dir, out) = out_dir();
    let probes = "  - { name: page, http: { port: 8080, path: / }, within: 30s, interval: 500ms }\n";
    let spec = write_spec(dir.path(), AMI, "", probes, "reboot: true\nconsole:\n  must_contain: [\"login:\"]\n");
    let (output, r) = run_own_addresses(&moto, &spec, &out);
    let cell = &r["cells"][0];
    assert_eq!(output.status.code(), Some(0), "{}\n{cell:#}", stderr(&output));
    let names: Vec<&str> = cell["probes"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["page", "page (after reboot)"]);
    let again = probe(cell, "page (after reboot)");
    assert_eq!(again["passed"], true);
    // The service was down for the reboot: the second round saw it refuse before it came back.
    let first_answer = again["attempts"][0]["message"].as_str().unwrap();
    assert!(!again["attempts"][0]["passed"].as_bool().unwrap(), "answered during the reboot: {first_answer}");
    let reboots = moto.requests("RebootInstances");
    assert_eq!(reboots.len(), 1, "{reboots:?}");
    let timeline = moto.get("/timeline");
    let instance = timeline.as_object().unwrap().values().next().unwrap();
    assert_eq!(instance["reboots"].as_array().unwrap().len(), 1, "{timeline:#}");
    let console = std::fs::read_to_string(out.join(cell["console_log"].as_str().unwrap())).unwrap();
    assert!(console.contains("first boot") && console.contains("second boot"), "{console}\n{:#}", cell["events"]);
    assert_nothing_left(&moto, &r);
}
