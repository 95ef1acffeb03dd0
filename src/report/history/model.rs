//! The typed view of a history: the nights, oldest first, and a row per cell key with what that
//! night's cell did (or nothing, when the night had no such cell). Built from results already
//! loaded; where each night's files are (its links) is the caller's, see [`super::links`].

use std::collections::HashMap;

use crate::report::compare::key;
use crate::report::html::anchor;
use crate::results::since::BaselineRules;
use crate::results::{CellStatus, Counts, RunResults};

/// One night as the history shows it: its run and where its report is.
pub struct Night<'a> {
    pub results: &'a RunResults,
    /// The night's report as a link from the history page: its report.html, else its results file.
    pub href: String,
    /// The report is HTML, so its cells have anchors to link to.
    pub anchors: bool,
}

/// A history: its nights, oldest first, and its rows, failing ones first.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// The spec's name (the newest night's).
    pub spec: String,
    pub nights: Vec<NightHead>,
    pub rows: Vec<Row>,
}

/// A night's column head.
#[derive(Debug, Clone, PartialEq)]
pub struct NightHead {
    pub run_id: String,
    pub started_at: String,
    pub href: String,
    pub counts: Counts,
}

/// A cell key over the nights.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The key cells are matched by across nights ([`key::keyed`]).
    pub key: String,
    /// One per night, in the nights' order; `None` where the night had no cell of this key.
    pub entries: Vec<Option<Entry>>,
}

/// What a night's cell of a row did.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub status: CellStatus,
    /// `timings.ready_s`: from the launch to all probes passing.
    pub ready_s: Option<f64>,
    pub cell_id: String,
    /// The cell in its night's report.
    pub href: String,
}

/// Failed, errored or timed out: broken, as opposed to not run or interrupted.
pub fn broken(status: CellStatus) -> bool {
    matches!(status, CellStatus::Failed | CellStatus::Error | CellStatus::TimedOut)
}

impl Row {
    /// Broken in the newest night: what a person looks for first.
    pub fn broken_now(&self) -> bool {
        matches!(self.entries.last(), Some(Some(entry)) if broken(entry.status))
    }
}

impl History {
    /// The history of `nights`, given oldest first. Rows are in the order their keys first appear,
    /// then those broken in the newest night are moved first (keeping that order among them).
    pub fn new(nights: &[Night<'_>]) -> History {
        let mut rows: Vec<Row> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        // The newest night's spec says what the key is (`baseline.key`): every night is keyed so.
        let axes = nights.last().and_then(|night| BaselineRules::key_of(night.results));
        for (n, night) in nights.iter().enumerate() {
            for (key, cell) in key::keyed(&night.results.cells, axes) {
                let at = *index.entry(key.clone()).or_insert_with(|| {
                    rows.push(Row { key, entries: vec![None; nights.len()] });
                    rows.len() - 1
                });
                let href =
                    if night.anchors { format!("{}#{}", night.href, anchor(&cell.id)) } else { night.href.clone() };
                rows[at].entries[n] =
                    Some(Entry { status: cell.status, ready_s: cell.timings.ready_s, cell_id: cell.id.clone(), href });
            }
        }
        rows.sort_by_key(|row| !row.broken_now());
        let heads = nights
            .iter()
            .map(|night| NightHead {
                run_id: night.results.run_id.clone(),
                started_at: night.results.started_at.clone(),
                href: night.href.clone(),
                counts: night.results.counts,
            })
            .collect();
        let spec = nights.last().map(|night| night.results.spec.name.clone()).unwrap_or_default();
        History { spec, nights: heads, rows }
    }

    /// Rows broken in the newest night.
    pub fn broken_now(&self) -> usize {
        self.rows.iter().filter(|row| row.broken_now()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run with cells `(id, image, instance_type, status, ready_s)`.
    pub(crate) fn run(run_id: &str, cells: &[(&str, &str, &str, &str, Option<f64>)]) -> RunResults {
        let cells: Vec<serde_json::Value> = cells
            .iter()
            .map(|(id, image, instance_type, status, ready)| {
                let mut timings = serde_json::json!({});
                if let Some(ready) = ready {
                    timings["ready_s"] = (*ready).into();
                }
                serde_json::json!({
                    "id": id, "status": status, "timings": timings,
                    "params": {"image": image, "instance_type": instance_type},
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "amiprobe_version": "0", "run_id": run_id,
            "spec": {"name": "nightly", "file": "nightly.yaml", "provider": "ec2"},
            "status": "passed", "started_at": "2026-12-01T01:00:00Z", "duration_s": 1.0,
            "counts": {"total": 0, "passed": 0, "failed": 0, "errored": 0, "not_run": 0},
            "cells": cells,
        }))
        .expect("a results fixture")
    }

    fn night<'a>(results: &'a RunResults, href: &str) -> Night<'a> {
        Night { results, href: href.into(), anchors: href.ends_with(".html") }
    }

    #[test]
    fn rows_follow_keys_across_nightly_ids_and_broken_ones_come_first() {
        let one = run(
            "one",
            &[("ami-1_a", "ami-1", "a", "passed", Some(10.0)), ("ami-1_b", "ami-1", "b", "passed", Some(20.0))],
        );
        let two =
            run("two", &[("ami-2_a", "ami-2", "a", "passed", Some(11.0)), ("ami-2_b", "ami-2", "b", "failed", None)]);
        let three = run(
            "three",
            &[("ami-3_b", "ami-3", "b", "timed_out", None), ("ami-3_c", "ami-3", "c", "passed", Some(5.0))],
        );
        let nights = [night(&one, "1/report.html"), night(&two, "2/results.json"), night(&three, "3/report.html")];
        let history = History::new(&nights);
        let keys: Vec<&str> = history.rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            ["image=image, instance_type=b", "image=image, instance_type=a", "image=image, instance_type=c"]
        );
        assert_eq!(history.broken_now(), 1);
        let b = &history.rows[0];
        let statuses: Vec<Option<CellStatus>> = b.entries.iter().map(|e| e.as_ref().map(|e| e.status)).collect();
        assert_eq!(statuses, [Some(CellStatus::Passed), Some(CellStatus::Failed), Some(CellStatus::TimedOut)]);
        let a = &history.rows[1];
        assert!(a.entries[2].is_none(), "key a is absent the third night");
        assert_eq!(a.entries[1].as_ref().map(|e| e.ready_s), Some(Some(11.0)));
        assert_eq!(a.entries[0].as_ref().map(|e| e.href.as_str()), Some("1/report.html#cell-ami-1_a"));
        assert_eq!(a.entries[1].as_ref().map(|e| e.href.as_str()), Some("2/results.json"), "no anchors in JSON");
        assert_eq!(a.entries[1].as_ref().map(|e| e.cell_id.as_str()), Some("ami-2_a"));
        assert_eq!(history.nights.iter().map(|n| n.run_id.as_str()).collect::<Vec<_>>(), ["one", "two", "three"]);
        assert_eq!(history.spec, "nightly");
    }

    #[test]
    fn an_empty_history_has_no_rows() {
        let history = History::new(&[]);
        assert!(history.rows.is_empty() && history.nights.is_empty());
        assert_eq!(history.broken_now(), 0);
    }
}
