//! How the report names a cell and its status: section anchors, the words and CSS classes of a
//! status, the order cells are listed in, and times as shown. Shared by the page, the cells, the
//! JUnit file and the Markdown summary, so they link to and word the same things alike.

use crate::results::{CellResult, CellStatus};

/// The id of a cell's section in report.html.
pub fn anchor(cell_id: &str) -> String {
    format!("cell-{}", cell_id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "-"))
}

/// A status's class in the page (and its colour in the stylesheet).
pub fn status_class(status: CellStatus) -> &'static str {
    match status {
        CellStatus::Passed => "pass",
        CellStatus::Failed | CellStatus::TimedOut => "fail",
        CellStatus::Error => "error",
        CellStatus::Interrupted | CellStatus::NotRun | CellStatus::Running => "skip",
    }
}

/// A status as people read it ("timed out").
pub fn status_label(status: CellStatus) -> &'static str {
    match status {
        CellStatus::Passed => "passed",
        CellStatus::Failed => "failed",
        CellStatus::TimedOut => "timed out",
        CellStatus::Error => "error",
        CellStatus::Interrupted => "interrupted",
        CellStatus::NotRun => "not run",
        CellStatus::Running => "running",
    }
}

/// A cell's class in the page: its status's, or `flaky` for a pass after failed tries.
pub fn cell_class(c: &CellResult) -> &'static str {
    if c.flaky {
        "flaky"
    } else {
        status_class(c.status)
    }
}

pub fn cell_label(c: &CellResult) -> &'static str {
    if c.flaky {
        "flaky"
    } else {
        status_label(c.status)
    }
}

/// A cell's reason line: why it did not pass, or for a flaky cell what went wrong before it passed.
pub fn reason(c: &CellResult) -> Option<String> {
    c.reason.clone().or_else(|| flaky_reason(c))
}

/// What a flaky cell's reason line says: what went wrong before it passed.
fn flaky_reason(c: &CellResult) -> Option<String> {
    let before = c.earlier_tries.last().filter(|_| c.flaky)?;
    Some(format!(
        "passed on try {} after: {}",
        c.earlier_tries.len() + 1,
        before.reason.as_deref().unwrap_or("a failed try")
    ))
}

/// Failures first, then the rest in plan order.
pub fn order(status: CellStatus) -> u8 {
    match status {
        CellStatus::Failed | CellStatus::TimedOut | CellStatus::Error => 0,
        CellStatus::Interrupted | CellStatus::Running => 1,
        CellStatus::Passed => 2,
        CellStatus::NotRun => 3,
    }
}

/// Seconds as the page shows them: `12.3s`.
pub fn secs(s: f64) -> String {
    format!("{s:.1}s")
}
