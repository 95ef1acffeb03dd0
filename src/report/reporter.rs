//! The fan-out of a run's one event stream, and the reporters that keep files.
//!
//! As in nextest, every output of `amiprobe run` hangs off the engine's events: the terminal, then
//! each report asked for with `--report`, in that order, each handed every event. A new report format
//! is one more entry in [`super::FORMATS`], whose [`super::Writer`] says what subscribes for it;
//! nothing writes a report outside this stream. The files are rendered by [`super::write_one`], the
//! same function `amiprobe report` and `report merge` use.

use std::path::{Path, PathBuf};

use super::baseline::Baseline;
use super::error::ResultsError;
use super::json::{self, Journal};
use super::terminal::Terminal;
use super::{write_one, Format};
use crate::engine::{Event, Reporter};
use crate::results::RunResults;

/// Every reporter of a run; hands each event to each of them, in order. With a baseline, the
/// comparison joins the final results here, once, before any of them sees them.
pub struct Reporters {
    reporters: Vec<Box<dyn Reporter>>,
    dir: PathBuf,
    baseline: Option<Baseline>,
    regressed: bool,
}

impl Reporters {
    pub fn new(reporters: Vec<Box<dyn Reporter>>) -> Self {
        Reporters { reporters, dir: PathBuf::new(), baseline: None, regressed: false }
    }

    /// The terminal display first (its closing summary comes before the list of files written),
    /// then the report files.
    pub fn for_run(
        dir: &Path,
        formats: &[Format],
        templates: Option<&Path>,
        summary: Option<super::summary::SummaryTarget>,
    ) -> Self {
        let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(Terminal::new())];
        reporters.extend(file_reporters(dir, formats, templates));
        reporters.push(Box::new(SinceLastNight { dir: dir.to_path_buf() }));
        if let Some(target) = summary {
            reporters.push(Box::new(Summary { dir: dir.to_path_buf(), target }));
        }
        Reporters { reporters, dir: PathBuf::new(), baseline: None, regressed: false }
    }

    /// Compares the final results (in `dir`, where the moved frames are copied) with `baseline`
    /// before they are reported.
    pub fn with_baseline(mut self, baseline: Option<Baseline>, dir: &Path) -> Self {
        self.baseline = baseline;
        self.dir = dir.to_path_buf();
        self
    }

    /// The run regressed since the baseline (false without one, or before the run finished).
    pub fn regressed(&self) -> bool {
        self.regressed
    }

    fn fan_out(&mut self, event: &Event) {
        for reporter in &mut self.reporters {
            reporter.event(event);
        }
    }
}

impl Reporter for Reporters {
    fn event(&mut self, event: &Event) {
        match (event, &self.baseline) {
            (Event::RunFinished(results), Some(baseline)) => {
                let mut results = results.clone();
                let comparison = baseline.compare(&results, &self.dir);
                self.regressed = comparison.regressed();
                results.since_last_night = Some(comparison);
                self.fan_out(&Event::RunFinished(results));
            }
            _ => self.fan_out(event),
        }
    }
}

/// A reporter per format, in the order asked for (the order their paths are listed). results.json
/// is kept even when not asked for: partial results, `report DIR` and `--rerun-failed` read it. Kept
/// but not asked for, it comes first: results.json is whole before the slower reports are rendered.
pub fn file_reporters(dir: &Path, formats: &[Format], templates: Option<&Path>) -> Vec<Box<dyn Reporter>> {
    let mut reporters: Vec<Box<dyn Reporter>> = Vec::new();
    if !formats.contains(&json::FORMAT) {
        reporters.push(json::FORMAT.reporter(dir, None, false));
    }
    reporters.extend(formats.iter().map(|format| format.reporter(dir, templates, true)));
    reporters
}

/// `results.json`, through its journal (`results.jsonl`, see [`super::json`]): a line appended per
/// event worth keeping while the run goes (each finished cell, each resource not removed), then, at
/// the end or when a third signal aborts the run, results.json written whole and the journal removed.
/// A run killed at any moment leaves a journal `amiprobe report` reads.
pub struct ResultsJson {
    dir: PathBuf,
    /// Asked for with `--report`: its path is listed with the other reports at the end.
    listed: bool,
    /// None before the run starts, or when the journal could not be started (warned once).
    journal: Option<Journal>,
}

impl ResultsJson {
    pub fn new(dir: &Path, listed: bool) -> Self {
        ResultsJson { dir: dir.to_path_buf(), listed, journal: None }
    }

    fn start(&mut self, results: &RunResults) {
        // A results.json left by an earlier run in the same directory would be taken for this run's.
        let stale = self.dir.join(json::RESULTS);
        if let Err(e) = std::fs::remove_file(&stale) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("warning: failed to remove {}: {e}", stale.display());
            }
        }
        self.journal = Journal::create(&self.dir, results).map_err(|e| eprintln!("warning: {e}")).ok();
    }

    /// Appends to the journal; a failed line loses that line only (the next one may succeed).
    fn record(&mut self, line: impl FnOnce(&mut Journal) -> Result<(), ResultsError>) {
        if let Some(journal) = &mut self.journal {
            if let Err(e) = line(journal) {
                eprintln!("warning: {e}");
            }
        }
    }

    /// Writes results.json whole, then removes the journal it supersedes (kept if results.json failed).
    fn finish(&mut self, results: &RunResults) -> Option<PathBuf> {
        self.record(|journal| journal.end(results));
        match write_one(json::FORMAT, results, &self.dir, None) {
            Ok(file) => {
                if let Some(journal) = self.journal.take() {
                    if let Err(e) = journal.remove() {
                        eprintln!("warning: {e}");
                    }
                }
                Some(file)
            }
            Err(e) => {
                let kept = self.journal.as_ref().map(|j| format!(" (the results are in {})", j.path().display()));
                eprintln!("warning: {e}{}", kept.unwrap_or_default());
                None
            }
        }
    }
}

impl Reporter for ResultsJson {
    fn event(&mut self, event: &Event) {
        match event {
            Event::RunStarted { results, .. } => self.start(results),
            Event::Phase { cell, .. } => self.record(|journal| journal.began(cell)),
            Event::CellFinished { cell, duration_s, warnings } => {
                self.record(|journal| journal.cell(cell, *duration_s, warnings))
            }
            Event::NotRemoved(not_removed) => self.record(|journal| journal.not_removed(not_removed)),
            Event::RunAborted(results) => {
                self.finish(results);
            }
            Event::RunFinished(results) => {
                if let Some(file) = self.finish(results) {
                    if self.listed {
                        println!("{}", file.display());
                    }
                }
            }
            Event::Warning(_) | Event::Timeline { .. } | Event::Screenshot { .. } | Event::Interrupt { .. } => {}
        }
    }
}

/// A report rendered once, from the final results: `report.html` (+ `assets/`) or `junit.xml`.
/// Written for a failed or interrupted run too: its screenshots and logs are the point.
pub struct ReportFile {
    format: Format,
    dir: PathBuf,
    templates: Option<PathBuf>,
}

impl ReportFile {
    pub fn new(format: Format, dir: &Path, templates: Option<&Path>) -> Self {
        ReportFile { format, dir: dir.to_path_buf(), templates: templates.map(Path::to_path_buf) }
    }
}

impl Reporter for ReportFile {
    fn event(&mut self, event: &Event) {
        if let Event::RunFinished(results) = event {
            // One report failing (a bad template, a full disk) does not keep the others from being written.
            match write_one(self.format, results, &self.dir, self.templates.as_deref()) {
                Ok(file) => println!("{}", file.display()),
                Err(e) => eprintln!("error: {e}"),
            }
        }
    }
}

/// `since-last-night.md` and `.json`, when the run was compared with a baseline (`run --baseline`).
pub struct SinceLastNight {
    dir: PathBuf,
}

impl Reporter for SinceLastNight {
    fn event(&mut self, event: &Event) {
        let Event::RunFinished(results) = event else { return };
        let Some(comparison) = &results.since_last_night else { return };
        match super::baseline::write(comparison, &self.dir) {
            Ok(()) => println!("{}", self.dir.join(super::baseline::MARKDOWN_FILE).display()),
            Err(e) => eprintln!("error: failed to write the comparison in {}: {e}", self.dir.display()),
        }
    }
}

/// `--summary`: the Markdown summary, appended once the run is over (interrupted runs too).
pub struct Summary {
    dir: PathBuf,
    target: super::summary::SummaryTarget,
}

impl Reporter for Summary {
    fn event(&mut self, event: &Event) {
        if let Event::RunFinished(results) = event {
            match super::summary::append(results, &self.dir, &self.target) {
                Ok(()) => println!("{}", self.target.file.display()),
                Err(e) => eprintln!("error: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{html, junit};
    use crate::results::{CellStatus, RunStatus};

    /// A real run's results (the report fixture: four cells, two failed).
    fn fixture() -> RunResults {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/run");
        crate::report::json::load(&dir).expect("fixture results.json")
    }

    fn read_results(dir: &Path) -> RunResults {
        crate::report::json::load(dir).expect("results.json written")
    }

    /// What junit.xml says of each testcase: its name and "passed", "failure", "error" or "skipped".
    fn junit_cases(dir: &Path) -> Vec<(String, &'static str)> {
        let xml = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml written");
        xml.split("<testcase ")
            .skip(1)
            .map(|case| {
                let name = case.split("name=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
                let body = case.split("</testcase>").next().unwrap_or_default();
                let kind = if body.contains("<failure") {
                    "failure"
                } else if body.contains("<error") {
                    "error"
                } else if body.contains("<skipped") {
                    "skipped"
                } else {
                    "passed"
                };
                (name.to_string(), kind)
            })
            .collect()
    }

    /// What report.html says of each cell: its section id and its status class.
    fn html_cells(dir: &Path) -> Vec<(String, String)> {
        let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html written");
        html.split("<article class=\"cell ")
            .skip(1)
            .map(|article| {
                let class = article.split('"').next().unwrap_or_default();
                let id = article.split("id=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
                (id.to_string(), class.to_string())
            })
            .collect()
    }

    #[test]
    fn every_file_follows_the_one_stream_and_they_agree() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let done = fixture();
        let mut reporters = Reporters::new(file_reporters(dir, &[html::FORMAT, junit::FORMAT], None));

        // The start: the journal at once (an earlier run's results.json gone), every cell not run;
        // no report yet.
        std::fs::write(dir.join("results.json"), serde_json::to_string(&done).unwrap()).unwrap();
        let mut results = done.clone();
        results.status = RunStatus::Running;
        for cell in &mut results.cells {
            cell.status = CellStatus::NotRun;
            cell.reason = None;
        }
        reporters.event(&Event::RunStarted { out_dir: dir.display().to_string(), results: Box::new(results.clone()) });
        assert!(dir.join("results.jsonl").is_file() && !dir.join("results.json").exists());
        let partial = read_results(dir);
        assert_eq!(partial.status, RunStatus::Running, "the reporter is alive: the run is still running");
        assert!(partial.cells.iter().all(|c| c.status == CellStatus::NotRun));
        assert!(!dir.join("report.html").exists() && !dir.join("junit.xml").exists());

        // Mid-run: each finished cell is in results.json before the next one finishes.
        for (index, cell) in done.cells.iter().enumerate() {
            results.cells[index] = cell.clone();
            reporters.event(&Event::CellFinished {
                cell: Box::new(cell.clone()),
                duration_s: results.duration_s,
                warnings: results.warnings.clone(),
            });
            let partial = read_results(dir);
            let statuses: Vec<CellStatus> = partial.cells.iter().map(|c| c.status).collect();
            let expected: Vec<CellStatus> = done
                .cells
                .iter()
                .enumerate()
                .map(|(i, c)| if i <= index { c.status } else { CellStatus::NotRun })
                .collect();
            assert_eq!(statuses, expected, "after cell {index}");
        }
        assert!(!dir.join("report.html").exists(), "HTML is rendered once, at the end");

        // The end: the three files, rendered from the same final results, agree cell by cell; the
        // journal is gone and results.json is what the whole-file writer made of the same results.
        reporters.event(&Event::RunFinished(Box::new(done.clone())));
        assert!(!dir.join("results.jsonl").exists());
        let previous = tempfile::tempdir().unwrap();
        done.write(previous.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.join("results.json")).unwrap(),
            std::fs::read(previous.path().join("results.json")).unwrap()
        );
        let json = read_results(dir);
        assert_eq!(json.status, done.status);
        let junit = junit_cases(dir);
        let html = html_cells(dir);
        assert_eq!(junit.len(), json.cells.len());
        assert_eq!(html.len(), json.cells.len());
        let mut kinds = std::collections::BTreeSet::new();
        for cell in &json.cells {
            let expected_junit = match cell.status {
                CellStatus::Passed => "passed",
                CellStatus::Failed | CellStatus::TimedOut => "failure",
                CellStatus::Error => "error",
                CellStatus::NotRun | CellStatus::Running | CellStatus::Interrupted => "skipped",
            };
            let case = junit.iter().find(|(name, _)| *name == cell.id).expect("a testcase per cell");
            assert_eq!(case.1, expected_junit, "junit.xml on {}", cell.id);
            let expected_html = match expected_junit {
                "passed" => "pass",
                "failure" => "fail",
                "error" => "error",
                _ => "skip",
            };
            let section = html.iter().find(|(id, _)| *id == super::super::html::anchor(&cell.id));
            assert_eq!(section.map(|s| s.1.as_str()), Some(expected_html), "report.html on {}", cell.id);
            kinds.insert(expected_junit);
        }
        // The fixture has passes and failures: the agreement is not one of all-the-same.
        assert!(kinds.len() >= 2, "{kinds:?}");

        // A third signal: results.json records the abort, nothing slow is rendered again.
        std::fs::remove_file(dir.join("report.html")).unwrap();
        let mut aborted = done.clone();
        aborted.status = RunStatus::Interrupted;
        reporters.event(&Event::RunAborted(Box::new(aborted)));
        assert_eq!(read_results(dir).status, RunStatus::Interrupted);
        assert!(!dir.join("report.html").exists());
    }
}
