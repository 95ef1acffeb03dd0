//! JUnit XML for CI dashboards: one testsuite per spec, one testcase per cell.

use std::path::{Path, PathBuf};

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::error::ReportError;
use super::html::anchor;
use super::{Format, Writer};
use crate::results::{CellResult, CellStatus, RunResults};

/// `--report junit`: `junit.xml`.
pub const FORMAT: Format = Format::new(&Junit);

struct Junit;

impl Writer for Junit {
    fn name(&self) -> &'static str {
        "junit"
    }

    fn write(&self, results: &RunResults, dir: &Path, _templates: Option<&Path>) -> Result<PathBuf, ReportError> {
        let file = dir.join("junit.xml");
        std::fs::write(&file, render(results)?).map_err(|source| ReportError::Write { path: file.clone(), source })?;
        Ok(file)
    }
}

pub fn render(results: &RunResults) -> Result<String, ReportError> {
    let mut report = Report::new(format!("amiprobe {}", results.spec.name));
    let mut suite = TestSuite::new(results.spec.name.clone());
    if let Some(since) = &results.since_last_night {
        suite.add_property(Property::new("baseline_run", since.base_run.clone()));
    }
    for cell in &results.cells {
        suite.add_test_case(test_case(results, cell));
    }
    // A leak is a failure CI must show even when every cell passed.
    if !results.not_removed.is_empty() {
        suite.add_test_case(leak_case(results));
    }
    report.add_test_suite(suite);
    report.to_string().map_err(ReportError::Junit)
}

/// A cell's testcase: its outcome, its earlier tries, and its axes as properties.
fn test_case(results: &RunResults, cell: &CellResult) -> TestCase {
    let mut status = status(cell);
    // Earlier tries: `flakyFailure`s of a pass (what Jenkins, GitLab and nextest read as flaky),
    // `rerunFailure`s of a failure.
    for earlier in &cell.earlier_tries {
        let mut rerun = TestRerun::new(non_success_kind(earlier.status));
        rerun.message = earlier.reason.clone().map(Into::into);
        rerun.ty = Some(format!("{:?}", earlier.status).to_lowercase().into());
        status.add_rerun(rerun);
    }
    let mut case = TestCase::new(cell.id.clone(), status);
    case.set_classname(format!("{}.{}", results.spec.name, results.spec.provider));
    if let Some(t) = cell.timings.ended_s {
        case.set_time(std::time::Duration::from_secs_f64(t.max(0.0)));
    }
    case.set_system_out(format!("report.html#{}", anchor(&cell.id)));
    // The cell's axes, as the test views that read properties show them.
    for (axis, value) in &cell.params.0 {
        case.add_property(Property::new(axis.clone(), crate::provider::field::label(value)));
    }
    if cell.flaky {
        case.add_property(Property::new("flaky", "true"));
    }
    // What changed since the baseline: a property per change, and whether it counts as a regression.
    if let Some(changed) = results.since_last_night.as_ref().and_then(|since| since.cell(&cell.id)) {
        case.add_property(Property::new("since_last_night.regressed", changed.regressed().to_string()));
        for line in super::compare::markdown::lines(changed, super::compare::markdown::Style::Plain) {
            case.add_property(Property::new("since_last_night", line));
        }
    }
    case
}

/// `<error>` for what the platform did, `<failure>` for what the image did.
fn non_success_kind(status: CellStatus) -> NonSuccessKind {
    if status == CellStatus::Error {
        NonSuccessKind::Error
    } else {
        NonSuccessKind::Failure
    }
}

fn status(cell: &CellResult) -> TestCaseStatus {
    match cell.status {
        CellStatus::Passed => TestCaseStatus::success(),
        CellStatus::NotRun | CellStatus::Interrupted | CellStatus::Running => {
            let mut s = TestCaseStatus::skipped();
            if let TestCaseStatus::Skipped { message, .. } = &mut s {
                *message = Some(cell.reason.clone().unwrap_or_else(|| "not run".into()).into());
            }
            s
        }
        CellStatus::Failed | CellStatus::TimedOut | CellStatus::Error => {
            let mut s = TestCaseStatus::non_success(non_success_kind(cell.status));
            if let TestCaseStatus::NonSuccess { message, description, ty, .. } = &mut s {
                *message = Some(cell.reason.clone().unwrap_or_default().into());
                *ty = Some(format!("{:?}", cell.status).to_lowercase().into());
                *description = Some(failure_text(cell).into());
            }
            s
        }
    }
}

/// What a failed cell's `<failure>` or `<error>` says: each failed probe and console rule, each
/// error, and where the report shows the rest.
fn failure_text(cell: &CellResult) -> String {
    let mut text = String::new();
    for p in cell.probes.iter().filter(|p| !p.passed) {
        text.push_str(&format!("probe {}: {}\n", p.name, p.message));
    }
    for f in cell.console.iter().filter(|f| !f.passed) {
        match f.hits.first() {
            Some(h) => text.push_str(&format!("console `{}` at line {}: {}\n", f.rule, h.line, h.text)),
            None => text.push_str(&format!("console never showed `{}`\n", f.rule)),
        }
    }
    for e in &cell.errors {
        text.push_str(&format!("error: {e}\n"));
    }
    text.push_str(&format!("report: report.html#{}\n", anchor(&cell.id)));
    text
}

/// The testcase `cleanup`: an error listing what the run left behind.
fn leak_case(results: &RunResults) -> TestCase {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    if let TestCaseStatus::NonSuccess { message, description, ty, .. } = &mut status {
        *message = Some(format!("{} resources not removed", results.not_removed.len()).into());
        *ty = Some("not_removed".into());
        let lines: Vec<String> = results.not_removed.iter().map(|r| format!("{}: {}\n", r.resource, r.error)).collect();
        *description =
            Some(format!("{}remove them with: amiprobe sweep --run-id {}\n", lines.concat(), results.run_id).into());
    }
    let mut case = TestCase::new("cleanup", status);
    case.set_classname(format!("{}.{}", results.spec.name, results.spec.provider));
    case
}
