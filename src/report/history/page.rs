//! The view model `templates/history.hbs` is rendered with: the history's words, classes and links
//! as strings, so the template stays dumb and escapes every one of them.

use serde::Serialize;

use super::model::{History, NightHead, Row};
use super::svg::{self, Chart};
use crate::report::html::status_label;
use crate::results::CellStatus;

/// A directory given and not read, with why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub dir: String,
    pub why: String,
}

/// What `history.hbs` is rendered with.
#[derive(Serialize)]
pub struct Page<'a> {
    title: String,
    spec: &'a str,
    night_count: usize,
    cell_count: usize,
    broken_now: usize,
    nights: Vec<Head<'a>>,
    rows: Vec<RowView<'a>>,
    skipped: &'a [Skipped],
    amiprobe_version: &'static str,
}

/// A night's column head.
#[derive(Serialize)]
struct Head<'a> {
    date: String,
    time: String,
    run_id: &'a str,
    href: &'a str,
    passed: usize,
    /// Failed and timed out (`counts.failed`).
    failed: usize,
    errored: usize,
}

#[derive(Serialize)]
struct RowView<'a> {
    key: &'a str,
    broken_now: bool,
    squares: Vec<Square<'a>>,
    chart: Chart,
}

/// A night's square in a row's status strip.
#[derive(Serialize)]
struct Square<'a> {
    /// `s-passed`, `s-failed`, ..., `s-absent`.
    class: String,
    /// A letter, so that colour is not all that tells them apart.
    mark: &'static str,
    title: String,
    /// The cell in its night's report; none where the night had no such cell.
    href: Option<&'a str>,
}

impl<'a> Page<'a> {
    pub fn new(history: &'a History, skipped: &'a [Skipped]) -> Page<'a> {
        let names: Vec<String> = history.nights.iter().map(|n| night_name(&n.started_at)).collect();
        Page {
            title: format!("amiprobe history: {}", history.spec),
            spec: &history.spec,
            night_count: history.nights.len(),
            cell_count: history.rows.len(),
            broken_now: history.broken_now(),
            nights: history.nights.iter().map(Head::new).collect(),
            rows: history.rows.iter().map(|row| RowView::new(row, &names)).collect(),
            skipped,
            amiprobe_version: env!("CARGO_PKG_VERSION"),
        }
    }
}

impl<'a> Head<'a> {
    fn new(night: &'a NightHead) -> Head<'a> {
        let (date, time) = night_name(&night.started_at).split_once(' ').map_or_else(
            || (night.started_at.clone(), String::new()),
            |(date, time)| (date.to_string(), time.to_string()),
        );
        Head {
            date,
            time,
            run_id: &night.run_id,
            href: &night.href,
            passed: night.counts.passed,
            failed: night.counts.failed,
            errored: night.counts.errored,
        }
    }
}

impl<'a> RowView<'a> {
    fn new(row: &'a Row, names: &[String]) -> RowView<'a> {
        let squares = row
            .entries
            .iter()
            .zip(names)
            .map(|(entry, night)| match entry {
                Some(e) => Square {
                    class: format!("s-{}", status_class(e.status)),
                    mark: mark(Some(e.status)),
                    title: square_title(night, Some(e.status), e.ready_s, Some(&e.cell_id)),
                    href: Some(&e.href),
                },
                None => Square {
                    class: "s-absent".into(),
                    mark: mark(None),
                    title: square_title(night, None, None, None),
                    href: None,
                },
            })
            .collect();
        let values = row
            .entries
            .iter()
            .zip(names)
            .map(|(entry, night)| svg::Value { night: night.clone(), ready_s: entry.as_ref().and_then(|e| e.ready_s) })
            .collect::<Vec<_>>();
        RowView { key: &row.key, broken_now: row.broken_now(), squares, chart: svg::chart(&values) }
    }
}

/// A night as the page names it: `2026-12-01 01:00` from its `started_at`.
pub fn night_name(started_at: &str) -> String {
    let name = started_at.replacen('T', " ", 1);
    name.get(..16).map_or(name.clone(), str::to_string)
}

/// A status as a class name.
fn status_class(status: CellStatus) -> &'static str {
    match status {
        CellStatus::Passed => "passed",
        CellStatus::Failed => "failed",
        CellStatus::Error => "error",
        CellStatus::TimedOut => "timed-out",
        CellStatus::Interrupted => "interrupted",
        CellStatus::NotRun => "not-run",
        CellStatus::Running => "running",
    }
}

/// A status as one letter: P, F, E, T; `-` for a cell not run to an end (or not there at all).
pub fn mark(status: Option<CellStatus>) -> &'static str {
    match status {
        Some(CellStatus::Passed) => "P",
        Some(CellStatus::Failed) => "F",
        Some(CellStatus::Error) => "E",
        Some(CellStatus::TimedOut) => "T",
        Some(CellStatus::Interrupted | CellStatus::NotRun | CellStatus::Running) | None => "-",
    }
}

/// A square's tooltip: `night: status, ready 12.3s`, then the cell's id on a line of its own.
pub fn square_title(night: &str, status: Option<CellStatus>, ready_s: Option<f64>, cell: Option<&str>) -> String {
    let what = match (status, ready_s) {
        (None, _) => format!("{night}: not in this night's run"),
        (Some(status), Some(t)) => format!("{night}: {}, ready {}", status_label(status), svg::secs(t)),
        (Some(status), None) => format!("{night}: {}", status_label(status)),
    };
    match cell {
        Some(id) => format!("{what}\n{id}"),
        None => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squares_say_the_night_the_status_and_the_time() {
        let title = square_title("2026-12-01 01:00", Some(CellStatus::Passed), Some(12.34), Some("ami-1_a"));
        assert_eq!(title, "2026-12-01 01:00: passed, ready 12.3s\nami-1_a");
        assert_eq!(square_title("d", Some(CellStatus::TimedOut), None, None), "d: timed out");
        assert_eq!(square_title("d", None, None, None), "d: not in this night's run");
        let marks: Vec<&str> = [
            Some(CellStatus::Passed),
            Some(CellStatus::Failed),
            Some(CellStatus::Error),
            Some(CellStatus::TimedOut),
            None,
        ]
        .into_iter()
        .map(mark)
        .collect();
        assert_eq!(marks.concat(), "PFET-");
    }

    #[test]
    fn nights_are_named_by_their_start_to_the_minute() {
        assert_eq!(night_name("2026-12-01T01:02:03.456Z"), "2026-12-01 01:02");
        assert_eq!(night_name("yesterday"), "yesterday");
    }
}
