//! What the qemu tests share: reading a run's results and proving no QEMU outlived it.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

pub fn results(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json written");
    serde_json::from_str(&text).expect("results.json is JSON")
}

pub fn cell<'a>(results: &'a Value, id: &str) -> &'a Value {
    results["cells"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no cell {id}"))
}

/// QEMU processes whose command line names this run.
pub fn qemu_processes_of(run_id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("qemu-system") && cmdline.contains(run_id) {
                found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Runs a qemu fixture (tests/fixtures/...) to its end; returns the exit code, the results and the
/// directory holding them, with no QEMU of the run left.
pub fn run_fixture(fixture: &str) -> (Option<i32>, Value, tempfile::TempDir) {
    let image = super::repo_root().join("build/test-image/vmlinuz");
    assert!(image.exists(), "{} is missing: run scripts/build-test-image (scripts/test does)", image.display());
    run_fixture_with(fixture, &[])
}

/// [`run_fixture`] with `--var` values (`KEY=VALUE`), whatever image the fixture boots.
pub fn run_fixture_with(fixture: &str, vars: &[&str]) -> (Option<i32>, Value, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .arg("run")
        .arg(super::fixtures().join(fixture))
        .arg("--out")
        .arg(out.path())
        .args(vars.iter().flat_map(|v| ["--var", v]))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    let r = results(out.path());
    assert_eq!(qemu_processes_of(r["run_id"].as_str().unwrap()), Vec::<String>::new(), "a QEMU outlived its run");
    (status.code(), r, out)
}

pub fn assert_cleanup_ok(cell: &Value) {
    let steps = cell["cleanup"].as_array().unwrap();
    assert!(!steps.is_empty(), "{cell:#}");
    assert!(steps.iter().all(|s| s["ok"] == true), "cleanup failed: {steps:#?}");
}
