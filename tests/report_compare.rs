//! `amiprobe report compare`: two small results directories shaped like the real one in
//! `tests/fixtures/report/run` (its results.json and console logs), the second with one cell 10 s
//! slower to ready and one new `WARNING:` line on its console; exactly those are found, and a
//! directory compared with itself finds nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/run")
}

/// A results directory: the fixture's results.json (edited by `edit`) and its console logs.
fn results_dir(root: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let dir = root.join(name);
    let text = std::fs::read_to_string(fixture().join("results.json")).unwrap();
    let mut results: serde_json::Value = serde_json::from_str(&text).unwrap();
    for cell in results["cells"].as_array().unwrap() {
        let log = cell["console_log"].as_str().unwrap();
        std::fs::create_dir_all(dir.join(log).parent().unwrap()).unwrap();
        std::fs::copy(fixture().join(log), dir.join(log)).unwrap();
    }
    edit(&mut results);
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&results).unwrap()).unwrap();
    dir
}

/// Last night's run as it was, and tonight's: cell `ok` 10 s slower to ready, with a new warning.
fn two_nights(root: &Path) -> (PathBuf, PathBuf) {
    let base = results_dir(root, "base", |_| {});
    let new = results_dir(root, "new", |results| {
        results["run_id"] = "20261126-094357-tonight".into();
        let ok = results["cells"].as_array_mut().unwrap().iter_mut().find(|c| c["id"] == "ok").unwrap();
        let ready = ok["timings"]["ready_s"].as_f64().unwrap();
        ok["timings"]["ready_s"] = (ready + 10.0).into();
    });
    let log = new.join("cells/ok/console.log");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("[   17.123456] WARNING: CPU: 0 PID: 1 at drivers/net/virtio_net.c:321 virtnet_poll+0x1a/0x40\n");
    std::fs::write(&log, text).unwrap();
    (base, new)
}

fn compare(base: &Path, new: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .args(["report", "compare"])
        .arg(base)
        .arg(new)
        .args(extra)
        .output()
        .unwrap()
}

fn comparison(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn finds_exactly_the_slower_cell_and_the_new_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, new) = two_nights(tmp.path());
    let found = comparison(&compare(&base, &new, &["--json"]));
    assert_eq!(found["matched"], 4);
    let cells = found["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1, "{found:#}");
    let ok = &cells[0];
    assert_eq!(ok["key"], "image=ok");
    assert!(ok.get("status").is_none());
    let slower = ok["slower"].as_array().unwrap();
    assert_eq!(slower.len(), 1);
    assert_eq!(slower[0]["measure"]["kind"], "ready");
    let (b, n) = (slower[0]["base_s"].as_f64().unwrap(), slower[0]["new_s"].as_f64().unwrap());
    assert!((n - b - 10.0).abs() < 1e-9);
    let lines = ok["new_console_lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1);
    assert!(lines[0]["text"].as_str().unwrap().contains("WARNING: CPU: 0 PID: 1 at drivers/net/virtio_net.c"));

    let markdown = compare(&base, &new, &[]);
    assert!(markdown.status.success());
    let text = String::from_utf8(markdown.stdout).unwrap();
    assert!(text.starts_with("## Since last night"), "{text}");
    assert!(text.contains("slower to ready"), "{text}");
    assert_eq!(compare(&base, &new, &["--fail-on-regression"]).status.code(), Some(1));
}

#[test]
fn a_directory_compared_with_itself_finds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, new) = two_nights(tmp.path());
    let found = comparison(&compare(&new, &new, &["--json", "--fail-on-regression"]));
    assert_eq!(found["matched"], 4);
    assert_eq!(found["cells"], serde_json::json!([]));
    assert!(found.get("only_in_base").is_none() && found.get("only_in_new").is_none());
}

#[test]
fn an_unreadable_directory_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let output = compare(&fixture(), &tmp.path().join("missing"), &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: "));
}
