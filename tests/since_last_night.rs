//! `run --baseline`: the same qemu spec run as last night, tonight unchanged and tonight with a build
//! whose service starts about 20 s later and whose console has a new warning. Unchanged, nothing is
//! found (timing noise under TCG included; a text console's last screen may differ, which is shown
//! and never a regression); changed, exactly those two are, the report and results.json tell it,
//! and `--fail-on-regression` fails the run.
//!
//! Needs `qemu-system-x86_64` and the busybox test image (`scripts/test` provides both).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::Value;
use support::{fixtures, repo_root};

static VMS: Mutex<()> = Mutex::new(());

/// Runs tests/fixtures/qemu/nightly.yaml into `out` with `vars`, compared with `baseline` if given;
/// the exit code and what it printed.
fn run(out: &Path, baseline: Option<&Path>, vars: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amiprobe"));
    cmd.arg("run").arg(fixtures().join("qemu/nightly.yaml")).arg("--out").arg(out);
    if let Some(dir) = baseline {
        // TCG boots vary by a few seconds from run to run: a regression here is more than 8 s.
        cmd.arg("--baseline").arg(dir).args(["--fail-on-regression", "--regression-floor", "8s"]);
    }
    for v in vars {
        cmd.args(["--var", v]);
    }
    let output = cmd.stderr(Stdio::inherit()).output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}

fn comparison(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("since-last-night.json")).expect("since-last-night.json written");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_slower_service_and_a_new_warning_are_what_changed_since_last_night() {
    let _vms = VMS.lock().unwrap_or_else(|e| e.into_inner());
    let kernel = repo_root().join("build/test-image/vmlinuz");
    assert!(kernel.exists(), "{} is missing: run scripts/build-test-image (scripts/test does)", kernel.display());
    let last_night = tempfile::tempdir().unwrap();
    let (code, _) = run(last_night.path(), None, &["VARIANT=ok"]);
    assert_eq!(code, Some(0), "last night passed");

    // The same build again: nothing changed, and the run passes with --fail-on-regression.
    let unchanged = tempfile::tempdir().unwrap();
    let (code, said) = run(unchanged.path(), Some(last_night.path()), &["VARIANT=ok"]);
    assert_eq!(code, Some(0), "{said}");
    let same = comparison(unchanged.path());
    assert_eq!(same["matched"], 1, "{same:#}");
    // Nothing changed. A text console's last screen may still differ (kernel lines in another
    // order): shown, never a regression, and nothing else may be listed.
    for cell in same["cells"].as_array().unwrap() {
        let fields: Vec<&str> = cell.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(fields, ["key", "base_id", "new_id", "last_screen"], "nothing changed: {same:#}");
        let copied = cell["last_screen"]["base_frame"].as_str().unwrap();
        assert!(unchanged.path().join(copied).exists(), "last night's frame is kept next to tonight's: {copied}");
    }
    assert!(said.contains("## Since last night"), "{said}");

    // Tonight's build: its service starts ~20 s late and its console has a warning it did not have.
    let tonight = tempfile::tempdir().unwrap();
    let note = "NOTE=amiprobe.note=WARNING:write-cache-disabled";
    let (code, said) = run(tonight.path(), Some(last_night.path()), &["VARIANT=slow", note]);
    assert_eq!(code, Some(1), "a regression fails the run: {said}");
    let changed = comparison(tonight.path());
    let cells = changed["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1, "{changed:#}");
    let cell = &cells[0];
    assert_eq!(cell["key"], "image=web", "{cell:#}");
    assert!(cell.get("status").is_none(), "both passed: {cell:#}");
    assert!(cell.get("answers").is_none(), "the page answered alike: {cell:#}");
    let slower: Vec<&str> =
        cell["slower"].as_array().into_iter().flatten().filter_map(|s| s["measure"]["kind"].as_str()).collect();
    assert!(slower.contains(&"ready"), "slower to ready: {cell:#}");
    let ready = cell["slower"].as_array().unwrap().iter().find(|s| s["measure"]["kind"] == "ready").unwrap();
    let grew = ready["new_s"].as_f64().unwrap() - ready["base_s"].as_f64().unwrap();
    assert!(grew > 10.0, "the service's 20 s: {ready}");
    let lines: Vec<&str> =
        cell["new_console_lines"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.contains("WARNING:write-cache-disabled")), "{lines:?}");
    let html = std::fs::read_to_string(tonight.path().join("report.html")).unwrap();
    assert!(html.contains(r#"id="since-title""#) && html.contains("slower to ready"), "the report tells it first");
    let results = std::fs::read_to_string(tonight.path().join("results.json")).unwrap();
    let results: Value = serde_json::from_str(&results).unwrap();
    assert_eq!(results["since_last_night"], changed, "results.json keeps what since-last-night.json says");
    let markdown = std::fs::read_to_string(tonight.path().join("since-last-night.md")).unwrap();
    assert!(markdown.contains("slower to ready") && markdown.contains("WARNING:write-cache-disabled"), "{markdown}");
}
