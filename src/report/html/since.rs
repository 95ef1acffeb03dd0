//! The view model of "Since last night" at the top of the page (`report.hbs`), from the
//! comparison a `run --baseline` kept in the results: what it was compared with, and per changed
//! cell a link to its section, what changed (regressions marked as such) and, when the last screen
//! moved, last night's frame beside tonight's.

use serde::Serialize;

use super::labels::anchor;
use crate::report::compare::markdown::{self, Style};
use crate::results::since::{CellComparison, Comparison};

#[derive(Serialize)]
pub struct Since<'a> {
    base_run: &'a str,
    base_started_at: &'a str,
    matched: usize,
    changed: usize,
    regressed: usize,
    /// The thresholds in words: `over 25% and over 2.0 s longer`.
    thresholds: String,
    cells: Vec<SinceCell<'a>>,
    only_in_base: &'a [String],
    only_in_new: &'a [String],
}

#[derive(Serialize)]
struct SinceCell<'a> {
    id: &'a str,
    key: &'a str,
    anchor: String,
    regressed: bool,
    /// What changed, a line each, as the Markdown section words it (without its markup).
    lines: Vec<String>,
    screen: Option<Frames<'a>>,
}

/// Both last frames, side by side.
#[derive(Serialize)]
struct Frames<'a> {
    /// Absent when the baseline's frame could not be copied next to these results.
    base: Option<&'a str>,
    new: &'a str,
    distance: u32,
}

impl<'a> Since<'a> {
    pub fn new(c: &'a Comparison) -> Since<'a> {
        Since {
            base_run: &c.base_run,
            base_started_at: &c.base_started_at,
            matched: c.matched,
            changed: c.cells.len(),
            regressed: c.cells.iter().filter(|cell| cell.regressed()).count(),
            thresholds: format!("over {}% and over {:.1} s longer", c.thresholds.ratio * 100.0, c.thresholds.floor_s),
            cells: c.cells.iter().map(SinceCell::new).collect(),
            only_in_base: &c.only_in_base,
            only_in_new: &c.only_in_new,
        }
    }
}

impl<'a> SinceCell<'a> {
    fn new(c: &'a CellComparison) -> SinceCell<'a> {
        SinceCell {
            id: &c.new_id,
            key: &c.key,
            anchor: anchor(&c.new_id),
            regressed: c.regressed(),
            lines: markdown::lines(c, Style::Plain),
            screen: c.last_screen.as_ref().map(|s| Frames {
                base: s.base_frame.as_deref(),
                new: &s.new_frame,
                distance: s.distance,
            }),
        }
    }
}
