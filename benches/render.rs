//! Benchmark: render the HTML report of 1,000 cells x 30 screenshots, each cell with a 300-line
//! console log and its boot phases, then open it in headless Chromium (when installed) until its
//! load event. Then the same run compared with last night's (another AMI per cell, one cell in ten
//! slower, one in twenty with a new warning on its console, one in fifty failing): the comparison,
//! and the report with "Since last night" rendered and opened again. Targets: at most 2 s each on a
//! 2-core machine. Prints figures; asserts nothing about time.
//!
//!     cargo bench --bench render

use std::time::Instant;

use amiprobe::report::compare::{self, normalise::Ignored, Frames, Rules, Thresholds};
use amiprobe::report::{html::Renderer, junit};
use amiprobe::results::*;

const CELLS: usize = 1000;
const SHOTS: usize = 30;
const CONSOLE_LINES: usize = 300;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cells = Vec::new();
    for i in 0..CELLS {
        let id = format!("ami-{:04}_t3.micro", i);
        let cell_dir = dir.path().join("cells").join(&id);
        std::fs::create_dir_all(&cell_dir).expect("cell dir");
        let console: String =
            (1..=CONSOLE_LINES).map(|n| format!("[ {n:>5}.000000] kernel: line {n} of the boot log <b>&\n")).collect();
        std::fs::write(cell_dir.join("console.log"), console).expect("console");
        let screenshots = (0..SHOTS)
            .map(|s| Screenshot {
                path: format!("cells/{id}/screenshots/{s:04}.png"),
                offset_s: s as f64,
                width: 720,
                height: 400,
                hash: "AAAA".into(),
                duplicate_of: (s % 5 != 0).then_some(s - s % 5),
            })
            .collect();
        let failed = i % 10 == 0;
        cells.push(CellResult {
            id: id.clone(),
            index: i,
            params: CellParams(
                [
                    ("image".to_string(), format!("ami-{:04}", i / 4).into()),
                    ("instance_type".to_string(), format!("t3.size{}", i % 4).into()),
                ]
                .into_iter()
                .collect(),
            ),
            status: if failed { CellStatus::Failed } else { CellStatus::Passed },
            reason: failed.then(|| "console matched `I/O error` at line 120".to_string()),
            started_at: None,
            timings: Timings {
                queued_s: None,
                launched_s: Some(0.1),
                running_s: Some(0.2),
                first_screenshot_s: Some(0.2),
                ready_s: Some(20.0),
                ended_s: Some(30.0),
            },
            machine: serde_json::json!({ "instance_id": format!("i-{i:017x}"), "instance_type": "t3.micro" }),
            events: (0..10)
                .map(|e| TimelineEvent {
                    at_s: e as f64 * 3.0,
                    kind: EventKind::ProbePassed,
                    message: format!("event {e}"),
                })
                .collect(),
            screenshots,
            screenshots_note: None,
            console_log: Some(format!("cells/{id}/console.log")),
            boot_phases: Some(phases()),
            console: vec![ConsoleFinding {
                kind: RuleKind::Builtin,
                rule: "I/O error".into(),
                passed: !failed,
                hits: if failed {
                    vec![ConsoleHit { line: 120, text: "I/O error".into(), first_seen_s: None }]
                } else {
                    vec![]
                },
            }],
            probes: vec![],
            errors: vec![],
            cleanup: vec![],
            earlier_tries: vec![],
            flaky: false,
        });
    }
    let mut results = RunResults {
        schema_version: SCHEMA_VERSION,
        amiprobe_version: "bench".into(),
        run_id: "bench".into(),
        spec: SpecInfo { name: "bench".into(), description: None, file: "bench.yaml".into(), provider: "ec2".into() },
        account: None,
        shard: None,
        status: RunStatus::Failed,
        started_at: "2026-11-25T00:00:00Z".into(),
        finished_at: None,
        duration_s: 100.0,
        counts: Counts::default(),
        warnings: vec![],
        leftover_cleanup: vec![],
        not_removed: vec![],
        merged_from: vec![],
        promotions: None,
        baseline: None,
        since_last_night: None,
        cells,
    };
    results.recount();
    render_and_open(&results, dir.path(), "render html");
    with_a_baseline(results, dir.path());
}

/// Renders the report three times (the best counts), the JUnit file once, and opens the report.
fn render_and_open(results: &RunResults, dir: &std::path::Path, what: &str) {
    let renderer = Renderer::new(None).expect("templates");
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let file = renderer.write(results, dir).expect("render");
        times.push(start.elapsed().as_secs_f64());
        size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    }
    let start = Instant::now();
    let xml = junit::render(results).expect("junit");
    let junit_s = start.elapsed().as_secs_f64();
    let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
    println!("{what}: {CELLS} cells x {SHOTS} screenshots x {CONSOLE_LINES} console lines");
    println!("  runs: {}", times.iter().map(|t| format!("{t:.3}s")).collect::<Vec<_>>().join(", "));
    println!("  best: {best:.3}s (target <= 2s), report.html {:.1} MB", size as f64 / 1e6);
    println!("render junit: {junit_s:.3}s, {:.1} KB", xml.len() as f64 / 1e3);
    open_in_chromium(dir);
}

/// Last night's run in a directory of its own: the same cells under other AMIs, one in ten 12.5 s
/// faster, one in fifty passing where tonight's fails, a console without tonight's warnings. Then
/// the comparison, timed, and tonight's report rendered with it.
fn with_a_baseline(mut tonight: RunResults, dir: &std::path::Path) {
    let base_dir = tempfile::tempdir().expect("temp dir");
    let mut base = tonight.clone();
    base.run_id = "last-night".into();
    for (i, cell) in base.cells.iter_mut().enumerate() {
        cell.params.0.insert("image".into(), format!("ami-b{:04}", i / 4).into());
        if i % 10 == 0 {
            cell.timings.ready_s = Some(20.0 - 25.0 / 2.0);
        }
        if i % 50 == 0 {
            cell.status = CellStatus::Passed;
        }
        let cell_dir = base_dir.path().join("cells").join(&cell.id);
        std::fs::create_dir_all(&cell_dir).expect("cell dir");
        let console: String =
            (1..=CONSOLE_LINES).map(|n| format!("[ {n:>5}.000000] kernel: line {n} of the boot log <b>&\n")).collect();
        std::fs::write(cell_dir.join("console.log"), console).expect("console");
    }
    for (i, cell) in tonight.cells.iter().enumerate().filter(|(i, _)| i % 20 == 0) {
        let log = dir.join(cell.console_log.as_deref().expect("a console log"));
        let warning = format!("[  299.500000] WARNING: CPU: {} PID: 1 at drivers/block/nvme.c:12 probe\n", i % 2);
        let mut text = std::fs::read_to_string(&log).expect("console");
        text.push_str(&warning);
        std::fs::write(&log, text).expect("console");
    }
    let ignored = Ignored::default();
    let rules = Rules { thresholds: Thresholds::default(), ignored: &ignored, frames: Frames::Copy };
    let start = Instant::now();
    let comparison = compare::compare(&base, base_dir.path(), &tonight, dir, &rules);
    let compare_s = start.elapsed().as_secs_f64();
    println!(
        "compare with last night: {compare_s:.3}s for {} matched cells, {} changed, {} regressed",
        comparison.matched,
        comparison.cells.len(),
        comparison.cells.iter().filter(|c| c.regressed()).count()
    );
    tonight.since_last_night = Some(comparison);
    render_and_open(&tonight, dir, "render html since last night");
}

/// A Linux boot's phases as the console gives them.
fn phases() -> BootPhases {
    let bound = |text: &str| PhaseBound { line: Some(1), text: text.into(), timed_by: TimedBy::Stamp };
    let phase = |name, start_s, length_s| BootPhase { name, start_s, length_s, from: bound("from"), to: bound("to") };
    BootPhases {
        clock: PhaseClock::Kernel,
        zero_at_s: Some(2.0),
        phases: vec![
            phase(PhaseName::Firmware, -2.0, 2.0),
            phase(PhaseName::Kernel, 0.0, 3.3),
            phase(PhaseName::Initramfs, 3.3, 3.8),
            phase(PhaseName::Userspace, 7.1, 8.0),
            phase(PhaseName::ToReady, 15.1, 2.9),
        ],
    }
}

/// A page beside the report that loads it in a frame and writes down how long until its load event
/// and how many elements it has.
const LOAD_PAGE: &str = r#"<!doctype html><body><pre id="out">waiting</pre>
<script>
var started = performance.now();
var frame = document.createElement("iframe");
frame.width = 1280; frame.height = 900;
frame.onload = function () {
  var loaded = performance.now() - started;
  var nodes = frame.contentDocument.getElementsByTagName("*").length;
  document.getElementById("out").textContent = "load_ms=" + loaded.toFixed(0) + " nodes=" + nodes;
};
frame.src = "report.html";
document.body.appendChild(frame);
</script></body>"#;

fn open_in_chromium(dir: &std::path::Path) {
    std::fs::write(dir.join("load.html"), LOAD_PAGE).expect("load page");
    let profile = tempfile::tempdir().expect("profile dir");
    let started = Instant::now();
    let output = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--allow-file-access-from-files"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=60000", "--dump-dom"])
        .arg(format!("file://{}", dir.join("load.html").display()))
        .output();
    let wall = started.elapsed().as_secs_f64();
    match output {
        Err(e) => println!("open in chromium: skipped ({e}; scripts/install-deps browser)"),
        Ok(out) => {
            let dom = String::from_utf8_lossy(&out.stdout);
            let seen =
                dom.split("<pre id=\"out\">").nth(1).and_then(|s| s.split("</pre>").next()).unwrap_or("no answer");
            println!("open in chromium: {seen} (target load <= 2000 ms); chromium ran {wall:.1}s in all");
        }
    }
}
