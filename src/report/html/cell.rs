//! The view model of one cell's section (`cell.hbs`, and `cell-page.hbs` for a cell's own page):
//! everything the template shows, computed here so the template stays dumb: the filmstrip with
//! identical frames collapsed, timeline marks as percentages, the console window, probes' last
//! answers. Built just before the cell is rendered and dropped just after.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::console::{self, ConsoleLine, Hits};
use super::labels::{anchor, cell_class, cell_label, reason, secs, status_class, status_label};
use super::phases::{self, PhaseBar};
use crate::results::{
    CellParams, CellResult, CleanupStep, EventKind, HttpExchange, ProbeResult, RuleKind, Screenshot, SshExchange,
};

/// What `cell.hbs` is rendered with.
#[derive(Serialize)]
pub struct CellView<'a> {
    id: &'a str,
    anchor: String,
    class: &'static str,
    label: &'static str,
    reason: Option<String>,
    earlier_tries: Vec<EarlierTry<'a>>,
    params: &'a CellParams,
    machine: Vec<KeyValue>,
    timings: Vec<KeyValue>,
    /// The boot phases' stacked bar.
    phases: Vec<PhaseBar>,
    frames: Vec<Frame>,
    screenshot_count: usize,
    screenshots_note: Option<&'a str>,
    marks: Vec<Mark<'a>>,
    /// The raw log's path from the page.
    console_log: Option<String>,
    console_lines: Vec<ConsoleLine>,
    /// A passed cell's console is linked, not inlined: nobody reads it first, and at a thousand
    /// cells it was most of the page.
    console_inline: bool,
    /// Where the console opens: the first line that broke a rule.
    first_hit: Option<String>,
    /// The last thing the machine showed is usually the answer: large, next to the reason.
    last_frame: Option<LastFrame>,
    console_truncated: bool,
    findings: Vec<Finding<'a>>,
    probes: Vec<Probe<'a>>,
    errors: &'a [String],
    events: Vec<EventLine<'a>>,
    event_count: usize,
    cleanup: &'a [CleanupStep],
    cleanup_ok: bool,
}

#[derive(Serialize)]
struct EarlierTry<'a> {
    n: usize,
    label: &'static str,
    class: &'static str,
    reason: Option<&'a str>,
    dir: String,
}

/// A row of a definition list (machine facts, timings).
#[derive(Serialize)]
struct KeyValue {
    key: String,
    value: String,
}

/// A filmstrip frame: a screenshot, or a run of identical ones (`until`, `count`).
#[derive(Serialize)]
struct Frame {
    path: String,
    /// At the filmstrip's width of 180 pixels.
    height: Option<u32>,
    at: String,
    until: Option<String>,
    count: usize,
    /// Its place on the time axis, in percent.
    left: String,
    alt: String,
}

/// An event on the time axis.
#[derive(Serialize)]
struct Mark<'a> {
    left: String,
    at: String,
    /// The name results.json uses (`port_open`), which the stylesheet's classes follow.
    kind: String,
    message: &'a str,
}

#[derive(Serialize)]
struct LastFrame {
    path: String,
    at: String,
    width: u32,
    height: u32,
    alt: String,
}

/// A console rule that broke or hit something.
#[derive(Serialize)]
struct Finding<'a> {
    rule: &'a str,
    kind: &'static str,
    passed: bool,
    hits: Vec<Hit<'a>>,
}

#[derive(Serialize)]
struct Hit<'a> {
    line: usize,
    text: &'a str,
    href: String,
}

#[derive(Serialize)]
struct Probe<'a> {
    name: &'a str,
    kind: &'a str,
    target: Option<&'a str>,
    passed: bool,
    first_passed: Option<String>,
    attempts: usize,
    message: &'a str,
    latency: Option<String>,
    exchange: Option<&'a HttpExchange>,
    ssh: Option<&'a SshExchange>,
}

/// A line of the cell's timeline.
#[derive(Serialize)]
struct EventLine<'a> {
    at: String,
    kind: String,
    message: &'a str,
}

impl<'a> CellView<'a> {
    /// The view of `c`, whose files are in `dir`; `root` goes before every path into the results
    /// (`../../` on the cell's own page).
    pub fn new(c: &'a CellResult, dir: &Path, root: &str) -> CellView<'a> {
        let cell_anchor = anchor(&c.id);
        let hits = Hits::of(c);
        let console_inline = !c.status.is_pass();
        let (console_lines, console_truncated) = match &c.console_log {
            Some(rel) if console_inline => console::lines(dir, rel, &hits, &cell_anchor),
            _ => (Vec::new(), false),
        };
        let end = c.timings.ended_s.unwrap_or(0.0).max(c.screenshots.last().map_or(0.0, |s| s.offset_s)).max(1.0);
        CellView {
            id: &c.id,
            class: cell_class(c),
            label: cell_label(c),
            reason: reason(c),
            earlier_tries: earlier_tries(c, root),
            params: &c.params,
            machine: machine(&c.machine),
            timings: timings(c),
            phases: phases::bars(c.boot_phases.as_ref()),
            frames: frames(c, root, end),
            screenshot_count: c.screenshots.len(),
            screenshots_note: c.screenshots_note.as_deref(),
            marks: marks(c, end),
            console_log: c.console_log.as_ref().map(|log| format!("{root}{log}")),
            console_lines,
            console_inline,
            first_hit: hits.failed.iter().next().map(|n| format!("{cell_anchor}-L{n}")),
            last_frame: c.screenshots.last().filter(|_| !c.status.is_pass()).map(|s| LastFrame::of(s, &c.id, root)),
            console_truncated,
            findings: findings(c, &cell_anchor),
            probes: c.probes.iter().map(Probe::of).collect(),
            errors: &c.errors,
            events: c.events.iter().map(EventLine::of).collect(),
            event_count: c.events.len(),
            cleanup: &c.cleanup,
            cleanup_ok: c.cleanup.iter().all(|s| s.ok),
            anchor: cell_anchor,
        }
    }
}

fn earlier_tries<'a>(c: &'a CellResult, root: &str) -> Vec<EarlierTry<'a>> {
    let try_of = |(i, t): (usize, &'a crate::results::EarlierTry)| EarlierTry {
        n: i + 1,
        label: status_label(t.status),
        class: status_class(t.status),
        reason: t.reason.as_deref(),
        dir: format!("{root}{}", t.dir),
    };
    c.earlier_tries.iter().enumerate().map(try_of).collect()
}

/// The provider's facts, those with something to say, in words (see [`super::machine`]).
fn machine(facts: &Value) -> Vec<KeyValue> {
    super::machine::facts(facts).into_iter().map(|(key, value)| KeyValue { key, value }).collect()
}

fn timings(c: &CellResult) -> Vec<KeyValue> {
    let t = &c.timings;
    [
        ("launched", t.launched_s),
        ("running", t.running_s),
        ("first screenshot", t.first_screenshot_s),
        ("ready", t.ready_s),
        ("ended", t.ended_s),
    ]
    .iter()
    .filter_map(|(k, v)| v.map(|v| KeyValue { key: k.to_string(), value: secs(v) }))
    .collect()
}

/// A time's place on an axis that ends at `end`, in percent.
fn percent(t: f64, end: f64) -> String {
    format!("{:.2}", (t / end * 100.0).clamp(0.0, 100.0))
}

/// The filmstrip: consecutive identical frames collapse into one, with a count.
fn frames(c: &CellResult, root: &str, end: f64) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut i = 0;
    while i < c.screenshots.len() {
        let first = &c.screenshots[i];
        let mut j = i + 1;
        while j < c.screenshots.len() && c.screenshots[j].duplicate_of.is_some() {
            j += 1;
        }
        let last = &c.screenshots[j - 1];
        frames.push(Frame {
            path: format!("{root}{}", first.path),
            height: (first.width > 0).then(|| first.height * 180 / first.width),
            at: secs(first.offset_s),
            until: (j - i > 1).then(|| secs(last.offset_s)),
            count: j - i,
            left: percent(first.offset_s, end),
            alt: format!("console of {} at {}", c.id, secs(first.offset_s)),
        });
        i = j;
    }
    frames
}

/// The events worth a mark on the time axis.
fn marks(c: &CellResult, end: f64) -> Vec<Mark<'_>> {
    let marked = |kind: EventKind| {
        matches!(
            kind,
            EventKind::Running
                | EventKind::PortOpen
                | EventKind::ProbePassed
                | EventKind::ProbeFailed
                | EventKind::Ready
                | EventKind::ConsoleMatch
                | EventKind::Interrupted
                | EventKind::Error
        )
    };
    c.events
        .iter()
        .filter(|e| marked(e.kind))
        .map(|e| {
            let kind = serde_json::to_value(e.kind).ok().and_then(|k| k.as_str().map(str::to_string));
            Mark { left: percent(e.at_s, end), at: secs(e.at_s), kind: kind.unwrap_or_default(), message: &e.message }
        })
        .collect()
}

impl LastFrame {
    fn of(s: &Screenshot, cell: &str, root: &str) -> LastFrame {
        LastFrame {
            path: format!("{root}{}", s.path),
            at: secs(s.offset_s),
            width: s.width,
            height: s.height,
            alt: format!("last screenshot of {cell} at {}", secs(s.offset_s)),
        }
    }
}

/// The rules that broke or hit lines, each hit linked to its console line.
fn findings<'a>(c: &'a CellResult, cell_anchor: &str) -> Vec<Finding<'a>> {
    c.console
        .iter()
        .filter(|f| !f.passed || !f.hits.is_empty())
        .map(|f| Finding {
            rule: &f.rule,
            kind: match f.kind {
                RuleKind::MustContain => "must contain",
                RuleKind::MustNotContain => "must not contain",
                RuleKind::Builtin => "built-in",
            },
            passed: f.passed,
            hits: f
                .hits
                .iter()
                .map(|h| Hit { line: h.line, text: &h.text, href: format!("#{cell_anchor}-L{}", h.line) })
                .collect(),
        })
        .collect()
}

impl<'a> Probe<'a> {
    fn of(p: &'a ProbeResult) -> Probe<'a> {
        Probe {
            name: &p.name,
            kind: &p.kind,
            target: p.target.as_deref(),
            passed: p.passed,
            first_passed: p.first_passed_s.map(secs),
            attempts: p.attempts_count,
            message: &p.message,
            latency: p.attempts.last().map(|a| format!("{} ms", a.latency_ms)),
            exchange: p.last_exchange.as_ref(),
            ssh: p.last_ssh.as_ref(),
        }
    }
}

impl<'a> EventLine<'a> {
    fn of(e: &'a crate::results::TimelineEvent) -> EventLine<'a> {
        // Not the results.json name: the timeline's classes are the kind's name run together
        // (`portopen`), as they always were.
        EventLine { at: secs(e.at_s), kind: format!("{:?}", e.kind).to_lowercase(), message: &e.message }
    }
}

/// What `cell-summary.hbs` is rendered with: the line in report.html of a passed cell that has a
/// page of its own (a large run).
#[derive(Serialize)]
pub struct CellSummary<'a> {
    id: &'a str,
    anchor: String,
    class: &'static str,
    label: &'static str,
    /// Its page, from report.html.
    page: String,
    ready: Option<String>,
    screenshot_count: usize,
    phases: Vec<PhaseBar>,
}

impl<'a> CellSummary<'a> {
    pub fn new(c: &'a CellResult, page: String) -> CellSummary<'a> {
        CellSummary {
            id: &c.id,
            anchor: anchor(&c.id),
            class: cell_class(c),
            label: cell_label(c),
            page,
            ready: c.timings.ready_s.map(secs),
            screenshot_count: c.screenshots.len(),
            phases: phases::bars(c.boot_phases.as_ref()),
        }
    }
}
