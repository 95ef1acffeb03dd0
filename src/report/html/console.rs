//! A cell's console log as the page shows it: the lines with rule hits marked, and, when rules
//! broke, only a window around each broken line and the log's end (the raw log has the rest).

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::results::{CellResult, RuleKind};

/// Console lines shown per cell; the full log is linked.
const MAX_CONSOLE_LINES: usize = 5000;
/// Lines shown on each side of a broken console line, and at the end of the log.
const CONSOLE_WINDOW: usize = 15;
const CONSOLE_TAIL: usize = 30;

/// A row of the console table: a line, or the count of lines left out before the next one.
#[derive(Serialize)]
#[serde(untagged)]
pub enum ConsoleLine {
    Gap {
        gap: usize,
    },
    Line {
        n: usize,
        text: String,
        /// `bad` on a line that broke a rule, `good` on one a rule wanted.
        class: &'static str,
        id: String,
    },
}

/// The numbers of the lines rules hit: `failed` those of broken rules, `wanted` also the lines a
/// passed `must_contain` rule found.
pub struct Hits {
    pub failed: BTreeSet<usize>,
    pub wanted: BTreeSet<usize>,
}

impl Hits {
    pub fn of(c: &CellResult) -> Hits {
        let lines = |keep: &dyn Fn(bool, RuleKind) -> bool| -> BTreeSet<usize> {
            c.console.iter().filter(|f| keep(f.passed, f.kind)).flat_map(|f| f.hits.iter().map(|h| h.line)).collect()
        };
        Hits {
            failed: lines(&|passed, _| !passed),
            wanted: lines(&|passed, kind| !passed || kind == RuleKind::MustContain),
        }
    }
}

/// The lines of the log at `dir`/`rel` as shown, and whether the log was longer than that. An
/// unreadable log shows nothing (its link says where it should have been).
pub fn lines(dir: &Path, rel: &str, hits: &Hits, cell_anchor: &str) -> (Vec<ConsoleLine>, bool) {
    let Ok(bytes) = std::fs::read(dir.join(rel)) else {
        return (Vec::new(), false);
    };
    let text = String::from_utf8_lossy(&bytes);
    let total = text.lines().count();
    // With broken lines, a window around each and the log's end; the raw log has the rest.
    let shown = |n: usize| {
        hits.failed.is_empty()
            || n + CONSOLE_TAIL > total
            || hits.failed.range(n.saturating_sub(CONSOLE_WINDOW)..=n + CONSOLE_WINDOW).next().is_some()
    };
    let mut lines: Vec<ConsoleLine> = Vec::new();
    let mut skipped = 0;
    for (n, line) in text.lines().take(MAX_CONSOLE_LINES).enumerate().map(|(i, l)| (i + 1, l)) {
        if !shown(n) {
            skipped += 1;
            continue;
        }
        if skipped > 0 {
            lines.push(ConsoleLine::Gap { gap: skipped });
            skipped = 0;
        }
        let class = if hits.failed.contains(&n) {
            "bad"
        } else if hits.wanted.contains(&n) {
            "good"
        } else {
            ""
        };
        let text = line.trim_end_matches('\r').to_string();
        lines.push(ConsoleLine::Line { n, text, class, id: format!("{cell_anchor}-L{n}") });
    }
    (lines, total > MAX_CONSOLE_LINES)
}
