//! `amiprobe report history DIR...`: one page showing, per cell key, its status and its time to
//! ready over many nights (a results directory a night), each night linking to its report.
//!
//! The nights are read with [`json::load`] and ordered by when they started, oldest first; a
//! directory that cannot be read is skipped and listed as such. Rows are cell keys
//! ([`crate::report::compare::key`]), so a cell keeps its row when its image's id changes nightly
//! ([`model`]); the sparklines are computed as numbers ([`svg`]); links are relative to the page
//! ([`links`]); the page is `templates/history.hbs`, compiled in, rendered from a view model of
//! strings ([`page`]) with its stylesheet inline and no script, so it opens from `file://` alone.

pub mod links;
pub mod model;
pub mod page;
pub mod svg;

use std::path::{Path, PathBuf};

use handlebars::Handlebars;

use self::model::{History, Night};
use self::page::{Page, Skipped};
use super::error::ReportError;
use super::json;
use crate::results::RunResults;

const TEMPLATE: &str = include_str!("../../templates/history.hbs");

/// The nights read, oldest first, and the directories that could not be.
pub struct Loaded {
    pub nights: Vec<(PathBuf, RunResults)>,
    pub skipped: Vec<Skipped>,
}

/// Reads each directory's results and orders them by their run's start (`started_at`, oldest first;
/// one that is not a time goes before those that are, by its text); the order given breaks ties. A
/// directory given twice is read once.
pub fn load(dirs: &[PathBuf]) -> Loaded {
    let mut nights = Vec::new();
    let mut skipped = Vec::new();
    let mut seen = Vec::new();
    for dir in dirs {
        let skip = |why: String| Skipped { dir: dir.display().to_string(), why };
        let canonical = match dir.canonicalize() {
            Ok(canonical) => canonical,
            Err(e) => {
                skipped.push(skip(format!("failed to read {}: {e}", dir.display())));
                continue;
            }
        };
        if seen.contains(&canonical) {
            skipped.push(skip("given more than once".into()));
            continue;
        }
        seen.push(canonical.clone());
        match json::load(dir) {
            Ok(results) => nights.push((canonical, results)),
            Err(e) => skipped.push(skip(e.to_string())),
        }
    }
    nights.sort_by(|(_, a), (_, b)| {
        let time = |r: &RunResults| humantime::parse_rfc3339_weak(&r.started_at).ok();
        time(a).cmp(&time(b)).then_with(|| a.started_at.cmp(&b.started_at))
    });
    Loaded { nights, skipped }
}

/// Writes the history page of `loaded` to `out` (creating its directory) and says where.
pub fn write(loaded: &Loaded, out: &Path) -> Result<PathBuf, ReportError> {
    let parent = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|source| ReportError::CreateDir { path: parent.clone(), source })?;
    let base = parent.canonicalize().map_err(|source| ReportError::Write { path: out.to_path_buf(), source })?;
    let nights: Vec<Night<'_>> = loaded.nights.iter().map(|(dir, results)| night(&base, dir, results)).collect();
    let history = History::new(&nights);
    let html = render(&history, &loaded.skipped)?;
    std::fs::write(out, html).map_err(|source| ReportError::Write { path: out.to_path_buf(), source })?;
    Ok(out.to_path_buf())
}

/// A night as linked from a page in `base`: its report.html when it has one, else its results.
fn night<'a>(base: &Path, dir: &Path, results: &'a RunResults) -> Night<'a> {
    let relative = links::relative(base, dir);
    let file = ["report.html", json::RESULTS, json::JOURNAL]
        .into_iter()
        .find(|name| dir.join(name).is_file())
        .unwrap_or(json::RESULTS);
    Night { results, href: links::join(&relative, file), anchors: file == "report.html" }
}

/// The page's HTML.
pub fn render(history: &History, skipped: &[Skipped]) -> Result<String, ReportError> {
    let mut registry = Handlebars::new();
    registry
        .register_template_string("history", TEMPLATE)
        .map_err(|e| ReportError::BadTemplate { name: "history.hbs", source: Box::new(e) })?;
    registry.render("history", &Page::new(history, skipped)).map_err(|e| ReportError::Render(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn night_dir(root: &Path, name: &str, started_at: &str, report: bool) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let results = serde_json::json!({
            "schema_version": 1, "amiprobe_version": "0", "run_id": name,
            "spec": {"name": "nightly <b>", "file": "n.yaml", "provider": "qemu"},
            "status": "passed", "started_at": started_at, "duration_s": 1.0,
            "counts": {"total": 1, "passed": 1, "failed": 0, "errored": 0, "not_run": 0},
            "cells": [{"id": "c", "status": "passed", "params": {"image": "x"}, "timings": {"ready_s": 3.0}}],
        });
        std::fs::write(dir.join("results.json"), results.to_string()).unwrap();
        if report {
            std::fs::write(dir.join("report.html"), "<p>report</p>").unwrap();
        }
        dir
    }

    #[test]
    fn nights_are_ordered_by_their_start_and_the_unreadable_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let late = night_dir(tmp.path(), "late", "2026-12-02T01:00:00.123Z", true);
        let early = night_dir(tmp.path(), "early", "2026-12-01T23:00:00Z", false);
        let odd = night_dir(tmp.path(), "odd", "not a time", false);
        let missing = tmp.path().join("missing");
        let loaded = load(&[late.clone(), missing, early.clone(), late, odd]);
        let runs: Vec<&str> = loaded.nights.iter().map(|(_, r)| r.run_id.as_str()).collect();
        assert_eq!(runs, ["odd", "early", "late"]);
        assert_eq!(loaded.skipped.len(), 2);
        assert!(loaded.skipped[0].dir.ends_with("missing") && loaded.skipped[0].why.starts_with("failed to read"));
        assert_eq!(loaded.skipped[1].why, "given more than once");

        let out = tmp.path().join("pages/h.html");
        let written = write(&loaded, &out).unwrap();
        let html = std::fs::read_to_string(written).unwrap();
        assert!(html.contains("href=\"../early/results.json\""), "no report.html: the results");
        assert!(html.contains("href=\"../late/report.html#cell-c\""), "{html}");
        assert!(html.contains("nightly &lt;b&gt;") && !html.contains("nightly <b>"), "escaped");
        assert!(!html.contains("<script") && !html.contains("<link"), "no script, no stylesheet to fetch");
    }
}
