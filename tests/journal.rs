//! The journal (`results.jsonl`): what a run leaves when it is killed, and what `amiprobe report` and
//! `run --rerun-failed` make of it; and the results.json it is compacted into at the end.
//!
//! The events are fed to the real `ResultsJson` reporter, as the engine would; dropping the reporter
//! without the run's end is what a SIGKILL does to it (the kernel closes the journal, dropping its
//! lock). A real run killed with SIGKILL is in tests/ec2.rs (`sigkill_mid_run_then_sweep_removes_everything`).

mod support;

use std::path::Path;

use amiprobe::engine::{Event, Phase, Reporter};
use amiprobe::report::json;
use amiprobe::report::reporter::ResultsJson;
use amiprobe::results::{CellResult, CellStatus, RunResults, RunStatus};
use support::{fixtures, Test};

/// The report fixture: a real qemu run of four cells (ok, fail, nohttp, slow), two failed.
fn fixture() -> RunResults {
    json::load(&fixtures().join("report/run")).expect("the fixture's results.json")
}

/// The run as the engine announces it: every cell not run.
fn planned(done: &RunResults) -> RunResults {
    let mut start = done.clone();
    start.status = RunStatus::Running;
    start.finished_at = None;
    start.duration_s = 0.0;
    start.warnings.clear();
    for cell in &mut start.cells {
        *cell = CellResult { status: CellStatus::NotRun, reason: None, ..cell.clone() };
    }
    start.recount();
    start
}

/// Feeds a reporter in `dir` the events of `done`'s run: its start, then its first `finished` cells
/// each begun and ended, then the next one begun. Returns the reporter, alive.
fn run_until(dir: &Path, done: &RunResults, finished: usize) -> ResultsJson {
    let mut reporter = ResultsJson::new(dir, false);
    let mut now = planned(done);
    reporter.event(&Event::RunStarted { out_dir: dir.display().to_string(), results: Box::new(now.clone()) });
    now.warnings = done.warnings.clone();
    for (i, cell) in done.cells.iter().enumerate().take(finished + 1) {
        reporter.event(&Event::Phase { cell: cell.id.clone(), phase: Phase::Launching });
        now.cells[i].status = CellStatus::Running;
        if i == finished {
            break;
        }
        reporter.event(&Event::Phase { cell: cell.id.clone(), phase: Phase::Probing });
        now.cells[i] = cell.clone();
        now.duration_s = 10.0 * (i + 1) as f64;
        now.recount();
        reporter.event(&Event::CellFinished {
            cell: Box::new(cell.clone()),
            duration_s: now.duration_s,
            warnings: now.warnings.clone(),
        });
    }
    reporter
}

/// A copy of the fixture's directory (screenshots, console logs) without its results.json.
fn cells_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    copy_dir(&fixtures().join("report/run"), &dir);
    std::fs::remove_file(dir.join("results.json")).unwrap();
    (tmp, dir)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let target = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Each testcase of junit.xml: its name and whether it passed, failed or was skipped.
fn junit_cases(xml: &str) -> Vec<(String, &'static str)> {
    xml.split("<testcase ")
        .skip(1)
        .map(|case| {
            let name = case.split("name=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
            let body = case.split("</testcase>").next().unwrap_or_default();
            let kind = if body.contains("<failure") {
                "failure"
            } else if body.contains("<skipped") {
                "skipped"
            } else {
                "passed"
            };
            (name.to_string(), kind)
        })
        .collect()
}

#[test]
fn a_killed_runs_journal_with_a_torn_last_line_renders_with_report() {
    let (_tmp, dir) = cells_dir();
    let done = fixture();
    drop(run_until(&dir, &done, 3));
    assert!(!dir.join("results.json").exists());
    // The kill came in the middle of the last cell's line.
    let last = serde_json::to_string(&done.cells[3]).unwrap();
    let mut journal = std::fs::OpenOptions::new().append(true).open(dir.join("results.jsonl")).unwrap();
    std::io::Write::write_all(&mut journal, format!("{{\"line\":\"cell\",\"result\":{}", &last[..200]).as_bytes())
        .unwrap();
    drop(journal);

    let run = Test::new().args(["report", dir.to_str().unwrap()]).run();
    assert_eq!(run.output.status.code(), Some(130), "an interrupted run: {}", run.stderr());
    for file in ["report.html", "junit.xml", "results.json"] {
        assert!(run.stdout().contains(&dir.join(file).display().to_string()), "{file} not listed: {}", run.stdout());
    }
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    let cases = junit_cases(&junit);
    assert_eq!(
        cases,
        [
            ("ok".to_string(), "passed"),
            ("fail".to_string(), "failure"),
            ("nohttp".to_string(), "failure"),
            ("slow".to_string(), "skipped")
        ]
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<article class=\"cell ").count(), 4);
    assert!(html.contains("interrupted: amiprobe was killed before the cell finished"));
    // The finished cells' own files are shown: their first screenshots, as in the finished run's report.
    for cell in &done.cells[..3] {
        let first = &cell.screenshots.first().expect("the fixture's cells have screenshots").path;
        assert!(html.contains(first.as_str()), "{first} not in the report");
    }

    // `report` wrote results.json from the journal: the run as far as it got, and interrupted.
    let results = json::load(&dir).unwrap();
    assert_eq!(results.status, RunStatus::Interrupted);
    assert_eq!((results.counts.passed, results.counts.failed, results.counts.not_run), (1, 2, 1));
    assert_eq!(results.duration_s, 30.0);
    assert!(results.warnings.iter().any(|w| w.contains(&format!("amiprobe sweep --run-id {}", done.run_id))));
    for (got, want) in results.cells[..3].iter().zip(&done.cells) {
        assert_eq!(serde_json::to_value(got).unwrap(), serde_json::to_value(want).unwrap());
    }
}

#[test]
fn report_prefers_a_complete_results_json_to_a_journal() {
    let (_tmp, dir) = cells_dir();
    let done = fixture();
    drop(run_until(&dir, &done, 1));
    done.write(&dir).unwrap();
    // The finished run's results (two failed: exit 1), not the journal's (interrupted: 130).
    let run = Test::new().args(["report", dir.to_str().unwrap(), "--report", "junit"]).run();
    assert_eq!(run.output.status.code(), Some(1), "{}", run.stderr());
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert_eq!(junit_cases(&junit).iter().filter(|(_, kind)| *kind == "skipped").count(), 0, "{junit}");
}

#[test]
fn report_on_a_run_still_going_says_running() {
    let (_tmp, dir) = cells_dir();
    let done = fixture();
    let alive = run_until(&dir, &done, 2);
    let run = Test::new().args(["report", dir.to_str().unwrap(), "--report", "junit"]).run();
    // A running run is not a passed one.
    assert_eq!(run.output.status.code(), Some(1), "{}", run.stderr());
    let results = json::load(&dir).unwrap();
    assert_eq!(results.status, RunStatus::Running);
    assert_eq!(results.cells[2].status, CellStatus::Running);
    drop(alive);
    assert_eq!(json::load(&dir).unwrap().status, RunStatus::Interrupted);
}

#[test]
fn rerun_failed_reruns_what_a_killed_run_did_not_pass() {
    let (tmp, dir) = cells_dir();
    let done = fixture();
    // ok passed and fail failed; nohttp was running when the run was killed; slow had not begun.
    drop(run_until(&dir, &done, 2));
    // Images that do not exist: the rerun ends at its provider check, with the cells it planned.
    let spec = tmp.path().join("spec.yaml");
    let images: Vec<String> =
        ["ok", "fail", "nohttp", "slow"].iter().map(|i| format!("{i}: {{kernel: ./no-{i}}}")).collect();
    std::fs::write(
        &spec,
        format!(
            "name: demo\nprovider: {{qemu: {{images: {{{}}}}}}}\nmatrix: {{image: [ok, fail, nohttp, slow]}}\n",
            images.join(", ")
        ),
    )
    .unwrap();
    let out = tmp.path().join("rerun");
    let run = Test::new()
        .args(["run", spec.to_str().unwrap(), "--rerun-failed", dir.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .run();
    assert_eq!(run.output.status.code(), Some(1), "{}", run.stderr());
    let rerun = json::load(&out).unwrap();
    let ids: Vec<&str> = rerun.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["fail", "nohttp", "slow"]);
    assert!(!out.join("results.jsonl").exists(), "the rerun's own journal is compacted away");
}

/// `n` cells like the fixture's, with their own ids.
fn many(n: usize) -> RunResults {
    let done = fixture();
    let mut results = done.clone();
    results.cells = (0..n)
        .map(|i| {
            let mut cell = done.cells[i % done.cells.len()].clone();
            cell.id = format!("cell-{i:04}");
            cell.index = i;
            cell
        })
        .collect();
    results.recount();
    results
}

#[test]
fn the_compacted_results_json_is_what_the_whole_file_writer_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let done = many(200);
    let mut reporter = run_until(tmp.path(), &done, done.cells.len());
    // Mid-run, the journal holds the run: one line per event kept, not a rewrite per cell.
    let journal = std::fs::read_to_string(tmp.path().join("results.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 1 + 2 * done.cells.len());
    let mut finished = done.clone();
    finished.status = RunStatus::Failed;
    reporter.event(&Event::RunFinished(Box::new(finished.clone())));

    let before = tempfile::tempdir().unwrap();
    finished.write(before.path()).unwrap();
    let compacted = std::fs::read(tmp.path().join("results.json")).unwrap();
    assert_eq!(compacted, std::fs::read(before.path().join("results.json")).unwrap());
    assert!(!tmp.path().join("results.jsonl").exists(), "the journal is removed once results.json is whole");
    // And it reads back as the run's results.
    let loaded = json::load(tmp.path()).unwrap();
    assert_eq!(serde_json::to_value(&loaded).unwrap(), serde_json::to_value(&finished).unwrap());
}

#[test]
fn an_aborted_run_is_compacted_too() {
    let tmp = tempfile::tempdir().unwrap();
    let done = fixture();
    let mut reporter = run_until(tmp.path(), &done, 1);
    let mut aborted = done.clone();
    aborted.status = RunStatus::Interrupted;
    reporter.event(&Event::RunAborted(Box::new(aborted)));
    assert!(!tmp.path().join("results.jsonl").exists());
    assert_eq!(json::load(tmp.path()).unwrap().status, RunStatus::Interrupted);
}
