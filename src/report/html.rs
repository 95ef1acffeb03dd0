//! The HTML report: `report.html` plus `assets/`, rendered with handlebars from `templates/`.
//!
//! The templates stay dumb: everything is computed here into a view model (grid, filmstrip groups,
//! timeline marks as percentages, console lines with their hits). Every text from the machine goes
//! through handlebars' `{{ }}`, which escapes it. The default templates are compiled into the binary;
//! `--templates DIR` overrides any of them by file name.
//!
//! The page is streamed to the file: `report.hbs` calls the `cell_sections` helper, which builds one cell's
//! view model, renders `cell.hbs` with it and writes it out before the next, so memory holds one
//! cell's model at a time however many cells the run had (a whole-report model of 1,000 cells is
//! tens of megabytes of JSON values, and the report's HTML as many again).
//!
//! Beyond [`INLINE_ALL`] cells, a cell that passed gets a page of its own (`cells/ID/index.html`,
//! `cell-page.hbs`) and only a line in report.html (`cell-summary.hbs`): a report of a thousand cells
//! opens with what went wrong, not with the DOM of everything that went right.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use handlebars::{Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderErrorReason};
use serde_json::{json, Value};

use crate::results::{CellResult, CellStatus, EventKind, RunResults};

const REPORT: &str = include_str!("../../templates/report.hbs");
const CELL: &str = include_str!("../../templates/cell.hbs");
const CELL_SUMMARY: &str = include_str!("../../templates/cell-summary.hbs");
const CELL_PAGE: &str = include_str!("../../templates/cell-page.hbs");

/// Runs up to this many cells have every cell's section in report.html.
pub const INLINE_ALL: usize = 50;
const CSS: &str = include_str!("../../templates/assets/report.css");
const JS: &str = include_str!("../../templates/assets/report.js");

/// Console lines shown per cell; the full log is linked.
const MAX_CONSOLE_LINES: usize = 5000;
/// Lines shown on each side of a broken console line, and at the end of the log.
const CONSOLE_WINDOW: usize = 15;
const CONSOLE_TAIL: usize = 30;

/// The id of a cell's section in report.html.
pub fn anchor(cell_id: &str) -> String {
    format!("cell-{}", cell_id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "-"))
}

pub struct Renderer {
    hb: Handlebars<'static>,
    css: String,
    js: String,
}

impl Renderer {
    /// The built-in templates, each replaced by a file of the same name in `overrides` if present.
    pub fn new(overrides: Option<&Path>) -> Result<Renderer, String> {
        let read = |name: &str, default: &str| -> Result<String, String> {
            match overrides.map(|d| d.join(name)).filter(|p| p.exists()) {
                Some(p) => {
                    std::fs::read_to_string(&p).map_err(|e| format!("failed to read template {}: {e}", p.display()))
                }
                None => Ok(default.to_string()),
            }
        };
        let mut hb = Handlebars::new();
        hb.set_strict_mode(false);
        hb.register_template_string("report", read("report.hbs", REPORT)?)
            .map_err(|e| format!("bad template report.hbs: {e}"))?;
        hb.register_partial("cell", read("cell.hbs", CELL)?).map_err(|e| format!("bad template cell.hbs: {e}"))?;
        hb.register_template_string("cell-summary", read("cell-summary.hbs", CELL_SUMMARY)?)
            .map_err(|e| format!("bad template cell-summary.hbs: {e}"))?;
        hb.register_template_string("cell-page", read("cell-page.hbs", CELL_PAGE)?)
            .map_err(|e| format!("bad template cell-page.hbs: {e}"))?;
        Ok(Renderer { hb, css: read("assets/report.css", CSS)?, js: read("assets/report.js", JS)? })
    }

    /// Renders the report for results stored in `dir` (console logs are read from there) into `out`,
    /// one cell at a time.
    pub fn render_to(&self, results: &RunResults, dir: &Path, out: impl Write) -> Result<(), String> {
        let mut cells: Vec<&CellResult> = results.cells.iter().collect();
        cells.sort_by_key(|c| order(c.status));
        // A registry of this render's own: the helper borrows this run's cells.
        let mut hb: Handlebars<'_> = self.hb.clone();
        let model = view_model(results, &cells);
        let own_pages = cells.len() > INLINE_ALL;
        hb.register_helper("cell_sections", Box::new(CellSections { cells, dir, own_pages }));
        let mut out = std::io::BufWriter::new(out);
        hb.render_to_write("report", &model, &mut out).map_err(|e| format!("failed to render report: {e}"))?;
        out.flush().map_err(|e| format!("failed to write report: {e}"))
    }

    /// Renders the report into a string (for tests and small runs).
    pub fn render(&self, results: &RunResults, dir: &Path) -> Result<String, String> {
        let mut html = Vec::new();
        self.render_to(results, dir, &mut html)?;
        String::from_utf8(html).map_err(|e| format!("failed to render report: {e}"))
    }

    /// Writes `report.html` and `assets/` into `dir`.
    pub fn write(&self, results: &RunResults, dir: &Path) -> Result<std::path::PathBuf, String> {
        let assets = dir.join("assets");
        std::fs::create_dir_all(&assets).map_err(|e| format!("failed to create {}: {e}", assets.display()))?;
        std::fs::write(assets.join("report.css"), &self.css).map_err(|e| format!("failed to write report.css: {e}"))?;
        std::fs::write(assets.join("report.js"), &self.js).map_err(|e| format!("failed to write report.js: {e}"))?;
        // Rendered beside it and renamed over it: a template that fails half-way must not leave a
        // half page where a good report was.
        let file = dir.join("report.html");
        let partial = dir.join("report.html.partial");
        let created =
            std::fs::File::create(&partial).map_err(|e| format!("failed to write {}: {e}", partial.display()))?;
        if let Err(e) = self.render_to(results, dir, created) {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &file).map_err(|e| format!("failed to write {}: {e}", file.display()))?;
        Ok(file)
    }
}

/// `{{cell_sections}}` in report.hbs: each cell's section, rendered with `cell.hbs` from a model built
/// just before and dropped just after.
struct CellSections<'a> {
    cells: Vec<&'a CellResult>,
    dir: &'a Path,
    /// Passed cells go to pages of their own (a large run).
    own_pages: bool,
}

impl HelperDef for CellSections<'_> {
    fn call<'reg: 'rc, 'rc>(
        &self,
        _: &Helper<'rc>,
        registry: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        for cell in &self.cells {
            if self.own_pages && cell.status.is_pass() && !cell.flaky {
                // Its page sits two levels down: its links go up to the results directory.
                let page = registry.render("cell-page", &cell_model(cell, self.dir, "../../"))?;
                let file = self.dir.join("cells").join(&cell.id).join("index.html");
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent).map_err(RenderErrorReason::from)?;
                }
                std::fs::write(&file, page).map_err(RenderErrorReason::from)?;
                let summary = json!({
                    "id": cell.id, "anchor": anchor(&cell.id), "class": cell_class(cell), "label": cell_label(cell),
                    "page": format!("cells/{}/index.html", cell.id),
                    "ready": cell.timings.ready_s.map(secs), "screenshot_count": cell.screenshots.len(),
                });
                out.write(&registry.render("cell-summary", &summary)?).map_err(RenderErrorReason::from)?;
            } else {
                let html = registry.render("cell", &cell_model(cell, self.dir, ""))?;
                out.write(&html).map_err(RenderErrorReason::from)?;
            }
        }
        Ok(())
    }
}

fn status_class(status: CellStatus) -> &'static str {
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
fn cell_class(c: &CellResult) -> &'static str {
    if c.flaky {
        "flaky"
    } else {
        status_class(c.status)
    }
}

fn cell_label(c: &CellResult) -> &'static str {
    if c.flaky {
        "flaky"
    } else {
        status_label(c.status)
    }
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
fn order(status: CellStatus) -> u8 {
    match status {
        CellStatus::Failed | CellStatus::TimedOut | CellStatus::Error => 0,
        CellStatus::Interrupted | CellStatus::Running => 1,
        CellStatus::Passed => 2,
        CellStatus::NotRun => 3,
    }
}

fn secs(s: f64) -> String {
    format!("{s:.1}s")
}

/// The page around the cells' sections (which `cell_sections` renders one at a time): `cells` has
/// only what a list of them needs, failures first.
fn view_model(results: &RunResults, cells: &[&CellResult]) -> Value {
    let summaries: Vec<Value> = cells
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "anchor": anchor(&c.id),
                "class": cell_class(c),
                "label": cell_label(c),
                "reason": c.reason.clone().or_else(|| flaky_reason(c)),
            })
        })
        .collect();
    // What went wrong, first on the page: the grid comes after.
    let failures: Vec<&Value> =
        summaries.iter().filter(|s| s["class"] == "fail" || s["class"] == "error" || s["class"] == "flaky").collect();
    json!({
        "title": format!("amiprobe: {}", results.spec.name),
        "failure_count": failures.len(),
        "failures": failures,
        "spec": results.spec,
        "run_id": results.run_id,
        "shard": results.shard,
        "status": format!("{:?}", results.status).to_lowercase(),
        "started_at": results.started_at,
        "duration": secs(results.duration_s),
        "counts": results.counts,
        "warnings": results.warnings,
        "leftover_cleanup": results.leftover_cleanup,
        "not_removed": results.not_removed,
        "grid": grid(&results.cells),
        "cells": summaries,
        "amiprobe_version": results.amiprobe_version,
    })
}

/// The matrix as a table: a row per image, a column per combination of the other axes.
fn grid(cells: &[CellResult]) -> Value {
    // Rows by the first axis (the image, in most specs), columns by the others' values.
    let row = |c: &CellResult| c.params.0.values().next().map(crate::provider::field::label).unwrap_or_default();
    let column = |c: &CellResult| {
        let parts: Vec<String> = c.params.0.values().skip(1).map(crate::provider::field::label).collect();
        if parts.is_empty() {
            "cell".to_string()
        } else {
            parts.join(" · ")
        }
    };
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    for c in cells {
        let col = column(c);
        if !columns.contains(&col) {
            columns.push(col);
        }
        if !rows.contains(&row(c)) {
            rows.push(row(c));
        }
    }
    let mut at: BTreeMap<(String, String), &CellResult> = BTreeMap::new();
    for c in cells {
        at.insert((row(c), column(c)), c);
    }
    // Rows with failures first (most first), the rest in plan order.
    let failing = |image: &String| {
        columns
            .iter()
            .filter(|col| at.get(&(image.clone(), (*col).clone())).is_some_and(|c| order(c.status) == 0))
            .count()
    };
    rows.sort_by_key(|image| std::cmp::Reverse(failing(image)));
    let rows: Vec<Value> = rows
        .iter()
        .map(|image| {
            let entries: Vec<Value> = columns
                .iter()
                .map(|col| match at.get(&(image.clone(), col.clone())) {
                    Some(c) => json!({ "present": true, "anchor": anchor(&c.id), "class": cell_class(c), "label": cell_label(c), "id": c.id }),
                    None => json!({ "present": false }),
                })
                .collect();
            json!({ "image": image, "entries": entries })
        })
        .collect();
    let row_axis = cells.first().and_then(|c| c.params.0.keys().next().cloned()).unwrap_or_else(|| "image".into());
    json!({ "row_axis": row_axis, "columns": columns, "rows": rows })
}

/// A cell's view model; `root` goes before every path into the results (`../../` on the cell's own
/// page).
fn cell_model(c: &CellResult, dir: &Path, root: &str) -> Value {
    let end = c.timings.ended_s.unwrap_or(0.0).max(c.screenshots.last().map_or(0.0, |s| s.offset_s)).max(1.0);
    let pct = |t: f64| format!("{:.2}", (t / end * 100.0).clamp(0.0, 100.0));

    // Consecutive identical frames collapse into one, with a count.
    let mut frames: Vec<Value> = Vec::new();
    let mut i = 0;
    while i < c.screenshots.len() {
        let first = &c.screenshots[i];
        let mut j = i + 1;
        while j < c.screenshots.len() && c.screenshots[j].duplicate_of.is_some() {
            j += 1;
        }
        let last = &c.screenshots[j - 1];
        frames.push(json!({
            "path": format!("{root}{}", first.path),
            "height": (first.width > 0).then(|| first.height * 180 / first.width),
            "at": secs(first.offset_s),
            "until": (j - i > 1).then(|| secs(last.offset_s)),
            "count": j - i,
            "left": pct(first.offset_s),
            "alt": format!("console of {} at {}", c.id, secs(first.offset_s)),
        }));
        i = j;
    }

    let marks: Vec<Value> = c
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Running
                    | EventKind::PortOpen
                    | EventKind::ProbePassed
                    | EventKind::ProbeFailed
                    | EventKind::Ready
                    | EventKind::ConsoleMatch
                    | EventKind::Interrupted
                    | EventKind::Error
            )
        })
        .map(|e| {
            // The name results.json uses (`port_open`), which the stylesheet's classes follow.
            let kind = serde_json::to_value(e.kind).ok().and_then(|k| k.as_str().map(str::to_string));
            json!({ "left": pct(e.at_s), "at": secs(e.at_s), "kind": kind.unwrap_or_default(), "message": e.message })
        })
        .collect();

    let hit_lines: BTreeSet<usize> = c
        .console
        .iter()
        .filter(|f| !f.passed || f.kind == crate::console::RuleKind::MustContain)
        .flat_map(|f| f.hits.iter().map(|h| h.line))
        .collect();
    let failed_lines: BTreeSet<usize> =
        c.console.iter().filter(|f| !f.passed).flat_map(|f| f.hits.iter().map(|h| h.line)).collect();
    let cell_anchor = anchor(&c.id);
    // A passed cell's console is linked, not inlined: nobody reads it first, and at a thousand
    // cells it was most of the page.
    let inline_console = !c.status.is_pass();
    let (console_lines, console_truncated) = match &c.console_log {
        Some(rel) if inline_console => match std::fs::read(dir.join(rel)) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let total = text.lines().count();
                // With broken lines, a window around each and the log's end; the raw log has the rest.
                let shown = |n: usize| {
                    failed_lines.is_empty()
                        || n + CONSOLE_TAIL > total
                        || failed_lines.range(n.saturating_sub(CONSOLE_WINDOW)..=n + CONSOLE_WINDOW).next().is_some()
                };
                let mut lines: Vec<Value> = Vec::new();
                let mut skipped = 0;
                for (n, line) in text.lines().take(MAX_CONSOLE_LINES).enumerate().map(|(i, l)| (i + 1, l)) {
                    if !shown(n) {
                        skipped += 1;
                        continue;
                    }
                    if skipped > 0 {
                        lines.push(json!({ "gap": skipped }));
                        skipped = 0;
                    }
                    let class = if failed_lines.contains(&n) {
                        "bad"
                    } else if hit_lines.contains(&n) {
                        "good"
                    } else {
                        ""
                    };
                    lines.push(json!({ "n": n, "text": line.trim_end_matches('\r'), "class": class, "id": format!("{cell_anchor}-L{n}") }));
                }
                (lines, total > MAX_CONSOLE_LINES)
            }
            Err(_) => (Vec::new(), false),
        },
        _ => (Vec::new(), false),
    };
    // Where the console opens: the first line that broke a rule.
    let first_hit = failed_lines.iter().next().map(|n| format!("{cell_anchor}-L{n}"));
    // The last thing the machine showed is usually the answer: large, next to the reason.
    let last_frame = c.screenshots.last().filter(|_| !c.status.is_pass()).map(|s| {
        json!({ "path": format!("{root}{}", s.path), "at": secs(s.offset_s), "width": s.width, "height": s.height,
                "alt": format!("last screenshot of {} at {}", c.id, secs(s.offset_s)) })
    });

    let findings: Vec<Value> = c
        .console
        .iter()
        .filter(|f| !f.passed || !f.hits.is_empty())
        .map(|f| {
            let kind = match f.kind {
                crate::console::RuleKind::MustContain => "must contain",
                crate::console::RuleKind::MustNotContain => "must not contain",
                crate::console::RuleKind::Builtin => "built-in",
            };
            json!({
                "rule": f.rule,
                "kind": kind,
                "passed": f.passed,
                "hits": f.hits.iter().map(|h| json!({ "line": h.line, "text": h.text, "href": format!("#{cell_anchor}-L{}", h.line) })).collect::<Vec<_>>(),
            })
        })
        .collect();

    let probes: Vec<Value> = c
        .probes
        .iter()
        .map(|p| {
            let latencies: Vec<u64> = p.attempts.iter().map(|a| a.latency_ms).collect();
            json!({
                "name": p.name,
                "kind": p.kind,
                "target": p.target,
                "passed": p.passed,
                "first_passed": p.first_passed_s.map(secs),
                "attempts": p.attempts_count,
                "message": p.message,
                "latency": latencies.last().map(|l| format!("{l} ms")),
                "exchange": p.last_exchange,
                "ssh": p.last_ssh,
            })
        })
        .collect();

    let machine: Vec<Value> = match &c.machine {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| json!({ "key": k, "value": match v { Value::String(s) => s.clone(), other => other.to_string() } }))
            .collect(),
        _ => Vec::new(),
    };
    let t = &c.timings;
    let timings: Vec<Value> = [
        ("launched", t.launched_s),
        ("running", t.running_s),
        ("first screenshot", t.first_screenshot_s),
        ("ready", t.ready_s),
        ("ended", t.ended_s),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|v| json!({ "key": k, "value": secs(v) })))
    .collect();

    json!({
        "id": c.id,
        "anchor": cell_anchor,
        "class": cell_class(c),
        "label": cell_label(c),
        "reason": c.reason.clone().or_else(|| flaky_reason(c)),
        "earlier_tries": c.earlier_tries.iter().enumerate().map(|(i, t)| json!({
            "n": i + 1, "label": status_label(t.status), "class": status_class(t.status), "reason": t.reason, "dir": format!("{root}{}", t.dir),
        })).collect::<Vec<_>>(),
        "params": c.params,
        "machine": machine,
        "timings": timings,
        "frames": frames,
        "screenshot_count": c.screenshots.len(),
        "screenshots_note": c.screenshots_note,
        "marks": marks,
        "console_log": c.console_log.as_ref().map(|log| format!("{root}{log}")),
        "console_lines": console_lines,
        "console_inline": inline_console,
        "first_hit": first_hit,
        "last_frame": last_frame,
        "console_truncated": console_truncated,
        "findings": findings,
        "probes": probes,
        "errors": c.errors,
        "events": c.events.iter().map(|e| json!({ "at": secs(e.at_s), "kind": format!("{:?}", e.kind).to_lowercase(), "message": e.message })).collect::<Vec<_>>(),
        "event_count": c.events.len(),
        "cleanup": c.cleanup,
        "cleanup_ok": c.cleanup.iter().all(|s| s.ok),
    })
}
