//! Benchmark: keeping results.json along a run of 500 and 1,000 cells (cells like benches/render.rs
//! builds: 30 screenshots, 10 timeline events, a console finding each). The `ResultsJson` reporter
//! (a journal line per event, results.json written once at the end) against what it did before: a
//! whole-file rewrite of results.json at the start, after every finished cell and at the end, done
//! here for real. Each measurement runs in a process of its own so that its peak RSS is its own.
//! Prints figures; asserts nothing about time.
//!
//!     cargo bench --bench results_write

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use amiprobe::engine::{Event, Phase, Reporter};
use amiprobe::report::reporter::ResultsJson;
use amiprobe::report::{json, write_one};
use amiprobe::results::*;

const SIZES: [usize; 2] = [500, 1000];
const SHOTS: usize = 30;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "measure") {
        let writer = args.get(at + 1).map(String::as_str).unwrap_or("journal");
        let cells = args.get(at + 2).and_then(|n| n.parse().ok()).unwrap_or(SIZES[0]);
        measure(writer, cells);
        return;
    }
    let me = std::env::current_exe().expect("the benchmark's own path");
    println!("results.json along a run: cells of {SHOTS} screenshots, 10 events, a console finding each");
    println!(
        "{:>6}  {:<8} {:>9} {:>12} {:>10} {:>13}",
        "cells", "writer", "cpu", "written", "peak rss", "results.json"
    );
    for cells in SIZES {
        for writer in ["journal", "rewrite"] {
            let output =
                Command::new(&me).args(["measure", writer, &cells.to_string()]).output().expect("run a measurement");
            let text = String::from_utf8_lossy(&output.stdout);
            let figures: Vec<&str> = text.trim().split('\t').collect();
            if !output.status.success() || figures.len() != 4 {
                eprintln!("{writer} at {cells} cells failed: {text}{}", String::from_utf8_lossy(&output.stderr));
                continue;
            }
            println!(
                "{cells:>6}  {writer:<8} {:>9} {:>12} {:>10} {:>13}",
                figures[0], figures[1], figures[2], figures[3]
            );
        }
    }
    println!("cpu and written: the reporter's calls only (thread CPU time; bytes through write(2), /proc/self/io).");
    println!("rewrite: what came before the journal, the whole run copied and rewritten after every cell.");
}

/// One run's events through one writer; prints its figures, tab-separated.
fn measure(writer: &str, count: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let done = cells(count);
    let mut reporter: Box<dyn Reporter> = match writer {
        "rewrite" => Box::new(WholeFile { dir: dir.path().to_path_buf(), results: None }),
        _ => Box::new(ResultsJson::new(dir.path(), false)),
    };
    let mut now = done.clone();
    now.status = RunStatus::Running;
    for cell in &mut now.cells {
        *cell = CellResult {
            status: CellStatus::NotRun,
            reason: None,
            timings: Timings::default(),
            events: vec![],
            screenshots: vec![],
            console_log: None,
            console: vec![],
            ..cell.clone()
        };
    }
    now.recount();

    let mut cpu = Duration::ZERO;
    let mut written = 0;
    let mut send = |reporter: &mut Box<dyn Reporter>, event: Event| {
        let (cpu_before, written_before) = (thread_cpu(), written_bytes());
        reporter.event(&event);
        cpu += thread_cpu() - cpu_before;
        written += written_bytes() - written_before;
    };
    send(
        &mut reporter,
        Event::RunStarted { out_dir: dir.path().display().to_string(), results: Box::new(now.clone()) },
    );
    for (i, cell) in done.cells.iter().enumerate() {
        for phase in [Phase::Launching, Phase::Booting, Phase::Probing, Phase::Capturing, Phase::CleaningUp] {
            send(&mut reporter, Event::Phase { cell: cell.id.clone(), phase });
        }
        now.cells[i] = cell.clone();
        now.recount();
        send(
            &mut reporter,
            Event::CellFinished {
                cell: Box::new(cell.clone()),
                duration_s: now.duration_s,
                warnings: now.warnings.clone(),
            },
        );
    }
    now.status = RunStatus::Failed;
    send(&mut reporter, Event::RunFinished(Box::new(now.clone())));
    let size = std::fs::metadata(dir.path().join("results.json")).map(|m| m.len()).unwrap_or(0);
    println!("{:.3}s\t{}\t{}\t{}", cpu.as_secs_f64(), megabytes(written), megabytes(peak_rss()), megabytes(size));
}

/// What `ResultsJson` did before the journal: results.json rewritten whole (and atomically) whenever
/// the run's results changed in a way worth keeping.
struct WholeFile {
    dir: std::path::PathBuf,
    results: Option<RunResults>,
}

impl Reporter for WholeFile {
    fn event(&mut self, event: &Event) {
        match event {
            // As the engine once did: the whole run, copied and rewritten after every cell.
            Event::RunStarted { results, .. } | Event::RunFinished(results) | Event::RunAborted(results) => {
                self.results = Some((**results).clone());
                write_one(json::FORMAT, results, &self.dir, None).expect("results.json written");
            }
            Event::CellFinished { cell, .. } => {
                let Some(results) = &mut self.results else { return };
                if let Some(slot) = results.cells.iter_mut().find(|c| c.id == cell.id) {
                    *slot = (**cell).clone();
                }
                results.recount();
                let snapshot = results.clone();
                write_one(json::FORMAT, &snapshot, &self.dir, None).expect("results.json written");
            }
            _ => {}
        }
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Bytes this process has passed to write(2) and its kin so far.
fn written_bytes() -> u64 {
    proc_field(Path::new("/proc/self/io"), "wchar:")
}

/// The process's peak resident set, in bytes.
fn peak_rss() -> u64 {
    proc_field(Path::new("/proc/self/status"), "VmHWM:") * 1024
}

fn proc_field(file: &Path, name: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// A finished run of `count` cells, one in ten failed, as benches/render.rs builds them.
fn cells(count: usize) -> RunResults {
    let cells = (0..count)
        .map(|i| {
            let id = format!("ami-{:04}_t3.micro", i);
            let failed = i % 10 == 0;
            CellResult {
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
                screenshots: (0..SHOTS)
                    .map(|s| Screenshot {
                        path: format!("cells/{id}/screenshots/{s:04}.png"),
                        offset_s: s as f64,
                        width: 720,
                        height: 400,
                        hash: "AAAA".into(),
                        duplicate_of: (s % 5 != 0).then_some(s - s % 5),
                    })
                    .collect(),
                screenshots_note: None,
                console_log: Some(format!("cells/{id}/console.log")),
                boot_phases: None,
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
            }
        })
        .collect();
    let mut results = RunResults {
        schema_version: SCHEMA_VERSION,
        amiprobe_version: "bench".into(),
        run_id: "bench".into(),
        spec: SpecInfo { name: "bench".into(), description: None, file: "bench.yaml".into(), provider: "ec2".into() },
        account: None,
        shard: None,
        status: RunStatus::Failed,
        started_at: "2026-11-25T00:00:00Z".into(),
        finished_at: Some("2026-11-25T01:00:00Z".into()),
        duration_s: 3600.0,
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
    results
}
