//! Checks inside the machine on real VMs: SSH probes against the test image's dropbear (its
//! authorised key from the NoCloud seed, its host key fingerprint on the console the way cloud-init
//! prints it), and a reboot cycle.
//!
//! Needs `qemu-system-x86_64` and the built test image (`scripts/test` provides both). The runs take
//! a lock so that at most two VMs boot at a time.

mod support;

use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;
use support::qemu::{assert_cleanup_ok, cell, run_fixture};

static VMS: Mutex<()> = Mutex::new(());

/// Runs a fixture with nothing of the run left behind; returns the exit code and the results.
fn run(fixture: &str) -> (Option<i32>, Value, tempfile::TempDir) {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    let (code, r, out) = run_fixture(fixture);
    for c in r["cells"].as_array().unwrap() {
        assert_cleanup_ok(c);
    }
    (code, r, out)
}

fn probe<'a>(cell: &'a Value, name: &str) -> &'a Value {
    cell["probes"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no probe {name}"))
}

fn console(out: &Path, cell: &Value) -> String {
    std::fs::read_to_string(out.join(cell["console_log"].as_str().unwrap())).unwrap()
}

#[test]
fn commands_pass_fail_on_status_and_output_and_a_wrong_host_key_is_refused() {
    let (code, r, out) = run("qemu/ssh.yaml");
    assert_eq!(code, Some(1), "failed probes fail the run");

    let ok = cell(&r, "ok");
    assert_eq!(ok["status"], "failed", "{ok:#}");
    let kernel = probe(ok, "kernel");
    assert_eq!(kernel["passed"], true, "{kernel:#}");
    assert_eq!(kernel["kind"], "ssh");
    let exchange = &kernel["last_ssh"];
    assert_eq!(exchange["exit_status"], 0);
    assert!(exchange["target"].as_str().unwrap().starts_with("root@127.0.0.1:"), "{exchange:#}");
    assert!(exchange["stdout"].as_str().unwrap().contains("amiprobe.variant=ok"), "{exchange:#}");
    // The secret is in what the machine printed and in the command, and in neither record.
    assert!(exchange["stdout"].as_str().unwrap().contains("token=********"), "{exchange:#}");
    assert!(exchange["command"].as_str().unwrap().contains("token=********"), "{exchange:#}");
    let results_text = std::fs::read_to_string(out.path().join("results.json")).unwrap();
    assert!(!results_text.contains("s3cr3t-token"), "a secret reached results.json");
    let report = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(!report.contains("s3cr3t-token"), "a secret reached the report");
    // (handlebars writes `=` as `&#x3D;`)
    assert!(report.contains("token&#x3D;********"), "the command's output is in the report");

    // The host key the client was shown is the one the console announced.
    let host_key = exchange["host_key"].as_str().unwrap();
    let fingerprint = host_key.split_whitespace().next().unwrap();
    assert!(fingerprint.starts_with("SHA256:"), "{host_key}");
    assert!(console(out.path(), ok).contains(fingerprint), "{fingerprint} is not on the console");

    let script = probe(ok, "script");
    assert_eq!(script["passed"], true, "{script:#}");
    assert_eq!(script["last_ssh"]["command"], "sh -s < ./ssh/check.sh");
    assert!(script["last_ssh"]["stdout"].as_str().unwrap().contains("uptime="), "{script:#}");

    let status = probe(ok, "exit-status");
    assert_eq!(status["passed"], false);
    assert!(status["message"].as_str().unwrap().starts_with("exit status 3, expected 0"), "{status:#}");
    assert_eq!(status["last_ssh"]["stderr"], "going wrong\n");
    let output = probe(ok, "output");
    assert_eq!(output["passed"], false);
    assert!(
        output["message"].as_str().unwrap().starts_with("`$.state` is \"degraded\", expected \"running\""),
        "{output:#}"
    );
    let reason = ok["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("probe `exit-status` failed: exit status 3, expected 0 (deadline passed after"),
        "{reason}"
    );
    // Several commands, one connection per way of logging in: two probes' commands ran on the
    // connection the machine saw from the same client address and port.
    let connections = probe(ok, "connections");
    assert_eq!(connections["passed"], true, "{connections:#}");
    let line = |p: &Value| {
        let stdout = p["last_ssh"]["stdout"].as_str().unwrap().to_string();
        stdout.lines().find(|l| l.starts_with("connection=")).map(str::to_string).unwrap_or_default()
    };
    assert!(line(connections).len() > "connection=".len(), "{connections:#}");
    assert_eq!(line(connections), line(script), "two connections for one way of logging in");

    let jump = probe(ok, "via-jump");
    assert_eq!(jump["passed"], false);
    assert!(jump["message"].as_str().unwrap().starts_with("jump host root@127.0.0.1:1: connect failed"), "{jump:#}");

    let bad = cell(&r, "badhostkey");
    assert_eq!(bad["status"], "failed");
    assert!(bad["reason"].as_str().unwrap().contains("does not match the console's fingerprints"), "{bad:#}");
    // `host_key: accept-new` is the spec's choice to trust whatever answers.
    assert_eq!(probe(bad, "trusting")["passed"], true, "{bad:#}");
    assert_eq!(probe(ok, "trusting")["passed"], true, "{ok:#}");
    for p in bad["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !["via-jump", "trusting"].contains(&p["name"].as_str().unwrap()))
    {
        assert_eq!(p["passed"], false, "{p:#}");
        // Refused for good at the first handshake that saw the console's fingerprints, and never
        // logged in: no command ran.
        assert!(p["message"].as_str().unwrap().ends_with("refusing to log in"), "{p:#}");
        assert!(p["last_ssh"].is_null(), "a command ran on a machine with the wrong host key: {p:#}");
        // Refused once, and never tried again: the refusal is the probe's last attempt.
        let attempts = p["attempts"].as_array().unwrap();
        let refusals = attempts.iter().filter(|a| a["message"].as_str().unwrap().ends_with("refusing to log in"));
        assert_eq!(refusals.count(), 1, "a wrong host key must not be retried until the deadline: {p:#}");
    }
}

#[test]
fn a_reboot_runs_every_probe_again_on_the_second_boot() {
    let (code, r, out) = run("qemu/ssh-reboot.yaml");
    let ok = cell(&r, "ok");
    assert_eq!(code, Some(0), "{ok:#}");
    assert_eq!(ok["status"], "passed");

    let names: Vec<&str> = ok["probes"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["kernel", "page", "kernel (after reboot)", "page (after reboot)"]);
    assert!(ok["probes"].as_array().unwrap().iter().all(|p| p["passed"] == true), "{ok:#}");

    // The timeline: ready, the reboot, ready again, in that order.
    let events = ok["events"].as_array().unwrap();
    let at = |kind: &str, text: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind && e["message"].as_str().unwrap().contains(text))
            .and_then(|e| e["at_s"].as_f64())
            .unwrap_or_else(|| panic!("no {kind} event with `{text}`: {events:#?}"))
    };
    let (ready, reboot, again) = (at("ready", "all probes passed"), at("reboot", "rebooting"), at("ready", "again"));
    assert!(ready <= reboot && reboot < again, "{ready} {reboot} {again}");

    // Both boots on the console; the second boot's uptime restarted from zero.
    let text = console(out.path(), ok);
    assert_eq!(text.matches("amiprobe test image (variant: ok)").count(), 2, "{text}");
    assert_eq!(text.matches("-----END SSH HOST KEY FINGERPRINTS-----").count(), 2);
    let uptime = |name: &str| -> f64 {
        let stdout = probe(ok, name)["last_ssh"]["stdout"].as_str().unwrap().to_string();
        stdout.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(uptime("kernel (after reboot)") < again - reboot + 1.0, "the second answer came from a new boot");
    let first_pass_of_second = probe(ok, "kernel (after reboot)")["first_passed_s"].as_f64().unwrap();
    assert!(first_pass_of_second > reboot);

    // The filmstrip covers both boots.
    let shots = ok["screenshots"].as_array().unwrap();
    assert!(shots.iter().any(|s| s["offset_s"].as_f64().unwrap() < reboot), "no frame of the first boot");
    assert!(shots.iter().any(|s| s["offset_s"].as_f64().unwrap() > reboot), "no frame of the second boot");
}
