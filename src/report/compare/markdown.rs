//! The comparison as the Markdown section "Since last night": what `report compare` and `run
//! --baseline` print, `since-last-night.md`, and the part of `--summary` that follows the results.

use crate::results::since::{AnswerDiff, CellComparison, Comparison};
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
    for line in lines(cell) {
        out.push_str(&format!("- {line}\n"));
    }
    out
}

/// One line per change of the cell, in Markdown: the list items of its section, and (as plain
/// text) the JUnit properties' values.
pub fn lines(cell: &CellComparison) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = &cell.status {
        out.push(format!("**{}**: {} -> {}", s.change.label(), status_word(s.base), status_word(s.new)));
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
        out.push(format!("new console line {}: `{}`", l.line, l.text.replace('`', "'")));
    }
    if let Some(note) = &cell.console_note {
        out.push(format!("console not compared: {note}"));
    }
    if let Some(screen) = &cell.last_screen {
        out.push(format!("last screen differs ({} of 256 bits)", screen.distance));
    }
    for a in &cell.answers {
        out.push(match &a.change {
            AnswerDiff::Status { base, new } => {
                format!("probe `{}` answered {} -> {}", a.probe, status_or_none(*base), status_or_none(*new))
            }
            AnswerDiff::Shape { lost, gained } => {
                let mut parts = Vec::new();
                if !lost.is_empty() {
                    parts.push(format!("lost `{}`", lost.join("`, `")));
                }
                if !gained.is_empty() {
                    parts.push(format!("gained `{}`", gained.join("`, `")));
                }
                format!("probe `{}` answer shape: {}", a.probe, parts.join("; "))
            }
        });
    }
    out
}

fn status_or_none(status: Option<u32>) -> String {
    status.map_or_else(|| "nothing".to_string(), |s| s.to_string())
}

/// The status as results.json spells it (`timed_out`).
pub fn status_word(s: CellStatus) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
