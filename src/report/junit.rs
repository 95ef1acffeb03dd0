//! JUnit XML for CI dashboards: one testsuite per spec, one testcase per cell.

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite};

use crate::results::{CellStatus, RunResults};

pub fn render(results: &RunResults) -> Result<String, String> {
    let mut report = Report::new(format!("amiprobe {}", results.spec.name));
    let mut suite = TestSuite::new(results.spec.name.clone());
    for cell in &results.cells {
        let mut status = match cell.status {
            CellStatus::Passed => TestCaseStatus::success(),
            CellStatus::NotRun | CellStatus::Interrupted | CellStatus::Running => {
                let mut s = TestCaseStatus::skipped();
                if let TestCaseStatus::Skipped { message, .. } = &mut s {
                    *message = Some(cell.reason.clone().unwrap_or_else(|| "not run".into()).into());
                }
                s
            }
            CellStatus::Failed | CellStatus::TimedOut | CellStatus::Error => {
                let kind =
                    if cell.status == CellStatus::Error { NonSuccessKind::Error } else { NonSuccessKind::Failure };
                let mut s = TestCaseStatus::non_success(kind);
                if let TestCaseStatus::NonSuccess { message, description, ty, .. } = &mut s {
                    *message = Some(cell.reason.clone().unwrap_or_default().into());
                    *ty = Some(format!("{:?}", cell.status).to_lowercase().into());
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
                    text.push_str(&format!("report: report.html#{}\n", super::html::anchor(&cell.id)));
                    *description = Some(text.into());
                }
                s
            }
        };
        // Earlier tries: `flakyFailure`s of a pass (what Jenkins, GitLab and nextest read as flaky),
        // `rerunFailure`s of a failure.
        for earlier in &cell.earlier_tries {
            let kind =
                if earlier.status == CellStatus::Error { NonSuccessKind::Error } else { NonSuccessKind::Failure };
            let mut rerun = TestRerun::new(kind);
            rerun.message = earlier.reason.clone().map(Into::into);
            rerun.ty = Some(format!("{:?}", earlier.status).to_lowercase().into());
            status.add_rerun(rerun);
        }
        let mut case = TestCase::new(cell.id.clone(), status);
        case.set_classname(format!("{}.{}", results.spec.name, results.spec.provider));
        if let Some(t) = cell.timings.ended_s {
            case.set_time(std::time::Duration::from_secs_f64(t.max(0.0)));
        }
        case.set_system_out(format!("report.html#{}", super::html::anchor(&cell.id)));
        // The cell's axes, as the test views that read properties show them.
        for (axis, value) in &cell.params.0 {
            case.add_property(Property::new(axis.clone(), crate::provider::field::label(value)));
        }
        if cell.flaky {
            case.add_property(Property::new("flaky", "true"));
        }
        suite.add_test_case(case);
    }
    // A leak is a failure CI must show even when every cell passed.
    if !results.not_removed.is_empty() {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        if let TestCaseStatus::NonSuccess { message, description, ty, .. } = &mut status {
            *message = Some(format!("{} resources not removed", results.not_removed.len()).into());
            *ty = Some("not_removed".into());
            let lines: Vec<String> =
                results.not_removed.iter().map(|r| format!("{}: {}\n", r.resource, r.error)).collect();
            *description = Some(
                format!("{}remove them with: amiprobe sweep --run-id {}\n", lines.concat(), results.run_id).into(),
            );
        }
        let mut case = TestCase::new("cleanup", status);
        case.set_classname(format!("{}.{}", results.spec.name, results.spec.provider));
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    report.to_string().map_err(|e| format!("failed to render junit: {e}"))
}
