//! `amiprobe report compare`: two small results directories shaped like the real one in
//! `tests/fixtures/report/run` (its results.json and console logs), the second with one cell 10 s
//! slower to ready and one new `WARNING:` line on its console; exactly those are found, and a
//! directory compared with itself finds nothing.

mod support;

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

/// A copy of the whole fixture run (screenshots too), edited by `edit`.
fn whole_run(root: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let dir = root.join(name);
    let status = Command::new("cp").arg("-r").arg(fixture()).arg(&dir).status().unwrap();
    assert!(status.success());
    let mut results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    edit(&mut results);
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(&results).unwrap()).unwrap();
    dir
}

fn cell<'a>(results: &'a mut serde_json::Value, id: &str) -> &'a mut serde_json::Value {
    results["cells"].as_array_mut().unwrap().iter_mut().find(|c| c["id"] == id).unwrap()
}

/// Tonight: `ok` ends on another screen (the `fail` cell's last one) and its health answer lost a
/// field; `slow` passed only on its second try. Rendered, then compared with `--write`.
fn compared_and_written(root: &Path) -> PathBuf {
    let base = whole_run(root, "base", |_| {});
    let new = whole_run(root, "new", |results| {
        results["run_id"] = "20261126-094357-tonight".into();
        let fail_frame = cell(results, "fail")["screenshots"].as_array().unwrap().last().unwrap().clone();
        let ok = cell(results, "ok");
        *ok["screenshots"].as_array_mut().unwrap().last_mut().unwrap() = fail_frame;
        ok["probes"][1]["last_exchange"]["body_excerpt"] = r#"{"service": "amiprobe-test"}"#.into();
        cell(results, "slow")["flaky"] = true.into();
    });
    let rendered = Command::new(env!("CARGO_BIN_EXE_amiprobe"))
        .args(["report", "--report", "html", "--report", "junit"])
        .arg(&new)
        .output()
        .unwrap();
    // Exit 1: the fixture run has failed cells; the reports are written all the same.
    assert_eq!(rendered.status.code(), Some(1), "{}", String::from_utf8_lossy(&rendered.stderr));
    assert!(new.join("report.html").exists() && new.join("junit.xml").exists());
    let written = compare(&base, &new, &["--write"]);
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    new
}

#[test]
fn written_into_the_new_results_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let new = compared_and_written(tmp.path());
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(new.join("results.json")).unwrap()).unwrap();
    let since = &results["since_last_night"];
    let cells = since["cells"].as_array().unwrap();
    let ids: Vec<&str> = cells.iter().map(|c| c["new_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ok", "slow"], "{since:#}");
    let screen = &cells[0]["last_screen"];
    assert!(screen["distance"].as_u64().unwrap() > 48, "{screen}");
    let base_frame = screen["base_frame"].as_str().unwrap();
    assert_eq!(base_frame, "since-last-night/cells/ok/screenshots/0014-00015.0s.png");
    assert!(new.join(base_frame).exists());
    let answer = &cells[0]["answers"][0];
    assert_eq!(answer["probe"], "health");
    assert_eq!(answer["change"], serde_json::json!({"kind": "shape", "lost": ["$.status: string"]}));
    assert_eq!(cells[1]["status"]["change"], "newly_flaky");
    assert!(new.join("since-last-night.md").exists() && new.join("since-last-night.json").exists());

    let html = std::fs::read_to_string(new.join("report.html")).unwrap();
    assert!(html.contains(r#"id="since-title""#), "the section is in the report");
    assert!(html.contains(&format!(r#"src="{base_frame}""#)), "last night's frame is shown");
    assert!(html.contains("probe health answer shape: lost $.status: string"), "the answer's change is told");
    let junit = std::fs::read_to_string(new.join("junit.xml")).unwrap();
    assert!(junit.contains(r#"<property name="baseline_run" value="20261125-094357-189a"/>"#), "{junit}");
    assert!(
        junit.contains(
            r#"<property name="since_last_night" value="newly flaky: passed -&gt; passed after a failed try"/>"#
        ),
        "{junit}"
    );
    assert!(junit.contains(r#"<property name="since_last_night.regressed" value="true"/>"#), "{junit}");
}

/// A page next to the report that loads it in a frame and writes down what a person would see of
/// "Since last night".
const SINCE_PROBE: &str = r##"<!doctype html><body><pre id="out">waiting</pre>
<iframe id="r" src="report.html" width="1280" height="900"></iframe>
<script>
document.getElementById("r").onload = function () {
  var doc = this.contentDocument, out = [];
  var since = doc.querySelector("section.since"), first = doc.querySelector("main > section");
  out.push("since_first=" + (since !== null && since === first));
  out.push("changed=" + doc.querySelectorAll("section.since ul.changes > li").length);
  var frames = Array.from(doc.querySelectorAll("section.since .screens img"));
  out.push("frames=" + frames.length);
  var boxes = frames.map(function (img) { return img.getBoundingClientRect(); });
  out.push("side_by_side=" + (boxes.length === 2 && Math.abs(boxes[0].top - boxes[1].top) < 1 && boxes[1].left > boxes[0].right));
  out.push("frame_width=" + boxes.map(function (b) { return Math.round(b.width); }).join(","));
  var left = frames.length, loaded = 0;
  frames.forEach(function (img) {
    var probe = new Image();
    probe.onload = function () { if (probe.naturalWidth > 0) loaded++; if (--left === 0) done(); };
    probe.onerror = function () { if (--left === 0) done(); };
    probe.src = img.src;
  });
  function done() {
    out.push("loaded=" + loaded);
    var entries = doc.defaultView.performance.getEntriesByType("resource").map(function (e) { return e.name; });
    out.push("remote=" + entries.filter(function (n) { return !n.startsWith("file:"); }).join(","));
    document.getElementById("out").textContent = out.join("\n");
  }
};
</script></body>"##;

#[test]
fn a_browser_shows_since_last_night_first_with_both_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let new = compared_and_written(tmp.path());
    let seen = support::browser::seen(&new, SINCE_PROBE);
    assert!(seen.contains("since_first=true"), "{seen}");
    assert!(seen.contains("changed=2"), "{seen}");
    assert!(seen.contains("frames=2"), "{seen}");
    assert!(seen.contains("side_by_side=true"), "{seen}");
    assert!(seen.contains("frame_width=360,360"), "{seen}");
    assert!(seen.contains("loaded=2"), "{seen}");
    assert!(seen.contains("remote=\n") || seen.ends_with("remote="), "nothing from the network: {seen}");
}
