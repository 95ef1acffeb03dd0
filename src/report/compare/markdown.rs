//! The comparison as the Markdown section "Since last night": what `report compare` and `run
//! --baseline` print, `since-last-night.md`, and the part of `--summary` that follows the results.

use crate::results::since::{AnswerChange, AnswerDiff, CellComparison, Change, Comparison, StatusChange};
use crate::results::CellStatus;

/// The section, headed `## Since last night`.
pub fn markdown(comparison: &Comparison) -> String {
    let c = comparison;
    let mut out = format!(
        "## Since last night\n\nRun `{}` against `{}`: {} cells matched, {} changed \
         (slower means over {}% and over {} s longer).\n",
        c.new_run,
        c.base_run,
        c.matched,
        c.cells.len(),
        c.thresholds.ratio * 100.0,
        c.thresholds.floor_s,
    );
    if c.cells.is_empty() {
        out.push_str("\nNothing changed.\n");
    }
    for cell in &c.cells {
        out.push_str(&cell_section(cell));
    }
    for (what, keys) in [("Only in the baseline", &c.only_in_base), ("New cells", &c.only_in_new)] {
        if !keys.is_empty() {
            let list: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
            out.push_str(&format!("\n{what}: {}\n", list.join(", ")));
        }
    }
    out
}

fn cell_section(cell: &CellComparison) -> String {
    let mut out = format!("\n### `{}` (`{}`)\n\n", cell.new_id, cell.key);
    for line in lines(cell, Style::Markdown) {
        out.push_str(&format!("- {line}\n"));
    }
    out
}

/// How the lines of a change are marked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// For the Markdown section and the summary: names in code spans, the status change in bold.
    Markdown,
    /// For the HTML report (which escapes it) and JUnit: the text as it is.
    Plain,
}

impl Style {
    fn code(self, text: &str) -> String {
        match self {
            Style::Markdown => format!("`{}`", text.replace('`', "'")),
            Style::Plain => text.to_string(),
        }
    }

    fn strong(self, text: &str) -> String {
        match self {
            Style::Markdown => format!("**{text}**"),
            Style::Plain => text.to_string(),
        }
    }
}

/// One line per change of the cell: the list items of its section, the HTML report's lines and
/// the JUnit properties' values.
pub fn lines(cell: &CellComparison, style: Style) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = &cell.status {
        out.push(format!("{}: {}", style.strong(s.change.label()), status_text(s)));
    }
    for t in &cell.slower {
        out.push(format!(
            "slower {}: {:.1} s -> {:.1} s (+{:.1} s)",
            t.measure.label(),
            t.base_s,
            t.new_s,
            t.new_s - t.base_s
        ));
    }
    for l in &cell.new_console_lines {
        out.push(format!("new console line {}: {}", l.line, style.code(&l.text)));
    }
    if let Some(note) = &cell.console_note {
        out.push(format!("console not compared: {note}"));
    }
    if let Some(screen) = &cell.last_screen {
        out.push(format!("last screen differs ({} of 256 bits)", screen.distance));
    }
    for a in &cell.answers {
        out.push(answer_line(a, style));
    }
    out
}

fn answer_line(a: &AnswerChange, style: Style) -> String {
    let probe = style.code(&a.probe);
    match &a.change {
        AnswerDiff::Status { base, new } => {
            format!("probe {probe} answered {} -> {}", status_or_none(*base), status_or_none(*new))
        }
        AnswerDiff::Shape { lost, gained } => {
            let list = |paths: &[String]| paths.iter().map(|p| style.code(p)).collect::<Vec<_>>().join(", ");
            let mut parts = Vec::new();
            if !lost.is_empty() {
                parts.push(format!("lost {}", list(lost)));
            }
            if !gained.is_empty() {
                parts.push(format!("gained {}", list(gained)));
            }
            format!("probe {probe} answer shape: {}", parts.join("; "))
        }
    }
}

/// `passed -> failed`; a pass after a failed try (`flaky`) says so.
fn status_text(s: &StatusChange) -> String {
    const FLAKY: &str = "passed after a failed try";
    let base = match (s.change, s.base) {
        (Change::Fixed, CellStatus::Passed) => FLAKY.to_string(),
        _ => status_word(s.base),
    };
    let new = match (s.change, s.new) {
        (Change::NewlyFlaky, _) | (Change::Other, CellStatus::Passed) => FLAKY.to_string(),
        _ => status_word(s.new),
    };
    format!("{base} -> {new}")
}

fn status_or_none(status: Option<u32>) -> String {
    status.map_or_else(|| "nothing".to_string(), |s| s.to_string())
}

/// The status as results.json spells it (`timed_out`).
pub fn status_word(s: CellStatus) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
