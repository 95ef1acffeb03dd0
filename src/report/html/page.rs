//! The view model of the page around the cells' sections (`report.hbs`): the run's facts, the list
//! of what went wrong, and the matrix as a grid. The cells' own sections are rendered one at a time
//! from [`super::cell::CellView`]; here each cell has only what a list of them needs.

use std::collections::BTreeMap;

use serde::Serialize;

use super::labels::{anchor, cell_class, cell_label, order, reason, secs};
use crate::results::{Account, CellResult, CleanupStep, Counts, NotRemoved, RunResults, SpecInfo};

/// What `report.hbs` is rendered with.
#[derive(Serialize)]
pub struct Page<'a> {
    title: String,
    failure_count: usize,
    /// The cells that failed, errored or were flaky: first on the page, the grid comes after.
    failures: Vec<&'a CellLine<'a>>,
    spec: &'a SpecInfo,
    /// The cloud account the run used, where it had one.
    account: Option<&'a Account>,
    run_id: &'a str,
    shard: Option<&'a str>,
    status: String,
    started_at: &'a str,
    duration: String,
    counts: &'a Counts,
    warnings: &'a [String],
    leftover_cleanup: &'a [CleanupStep],
    not_removed: &'a [NotRemoved],
    /// Each image's promotion (`on_pass`), when the spec asks for one.
    promotions: Vec<crate::report::promotion::Line>,
    grid: Grid<'a>,
    /// What changed since the baseline run, when there was one.
    since: Option<super::since::Since<'a>>,
    /// Every cell's boot phases, sortable; absent when no cell had any.
    boot: Option<super::boot::BootTable<'a>>,
    /// Every cell, failures first.
    cells: &'a [CellLine<'a>],
    amiprobe_version: &'a str,
}

/// A cell in a list: its name, its status and its reason line.
#[derive(Serialize)]
pub struct CellLine<'a> {
    id: &'a str,
    anchor: String,
    class: &'static str,
    label: &'static str,
    reason: Option<String>,
}

impl<'a> CellLine<'a> {
    /// The lines of `cells`, in their order.
    pub fn all(cells: &[&'a CellResult]) -> Vec<CellLine<'a>> {
        cells
            .iter()
            .map(|c| CellLine {
                id: &c.id,
                anchor: anchor(&c.id),
                class: cell_class(c),
                label: cell_label(c),
                reason: reason(c),
            })
            .collect()
    }
}

impl<'a> Page<'a> {
    /// The page of `results`; `lines` are its `cells`' (failures first, see [`CellLine::all`]).
    pub fn new(results: &'a RunResults, lines: &'a [CellLine<'a>], cells: &[&'a CellResult]) -> Page<'a> {
        let failures: Vec<&CellLine> = lines.iter().filter(|s| matches!(s.class, "fail" | "error" | "flaky")).collect();
        Page {
            title: format!("amiprobe: {}", results.spec.name),
            failure_count: failures.len(),
            failures,
            spec: &results.spec,
            account: results.account.as_ref(),
            run_id: &results.run_id,
            shard: results.shard.as_deref(),
            status: format!("{:?}", results.status).to_lowercase(),
            started_at: &results.started_at,
            duration: secs(results.duration_s),
            counts: &results.counts,
            warnings: &results.warnings,
            leftover_cleanup: &results.leftover_cleanup,
            not_removed: &results.not_removed,
            promotions: results.promotions.iter().flat_map(crate::report::promotion::lines).collect(),
            grid: Grid::new(&results.cells),
            since: results.since_last_night.as_ref().map(super::since::Since::new),
            boot: super::boot::BootTable::new(cells),
            cells: lines,
            amiprobe_version: &results.amiprobe_version,
        }
    }
}

/// The matrix as a table: a row per image, a column per combination of the other axes.
#[derive(Serialize)]
struct Grid<'a> {
    /// The first axis's name (the image, in most specs), whose values label the rows.
    row_axis: String,
    columns: Vec<String>,
    rows: Vec<GridRow<'a>>,
}

#[derive(Serialize)]
struct GridRow<'a> {
    image: String,
    /// One per column, present or not.
    entries: Vec<GridEntry<'a>>,
}

/// A place in the grid: `present` false where no cell has that row and column.
#[derive(Serialize)]
struct GridEntry<'a> {
    present: bool,
    #[serde(flatten)]
    cell: Option<GridCell<'a>>,
}

#[derive(Serialize)]
struct GridCell<'a> {
    anchor: String,
    class: &'static str,
    label: &'static str,
    id: &'a str,
}

/// A cell's row in the grid: the label of its first axis's value.
fn row_of(c: &CellResult) -> String {
    c.params.0.values().next().map(crate::provider::field::label).unwrap_or_default()
}

/// A cell's column in the grid: the labels of its other axes' values.
fn column_of(c: &CellResult) -> String {
    let parts: Vec<String> = c.params.0.values().skip(1).map(crate::provider::field::label).collect();
    if parts.is_empty() {
        "cell".to_string()
    } else {
        parts.join(" · ")
    }
}

impl<'a> Grid<'a> {
    fn new(cells: &'a [CellResult]) -> Grid<'a> {
        let mut columns: Vec<String> = Vec::new();
        let mut rows: Vec<String> = Vec::new();
        let mut at: BTreeMap<(String, String), &CellResult> = BTreeMap::new();
        for c in cells {
            let (row, column) = (row_of(c), column_of(c));
            if !columns.contains(&column) {
                columns.push(column.clone());
            }
            if !rows.contains(&row) {
                rows.push(row.clone());
            }
            at.insert((row, column), c);
        }
        // Rows with failures first (most first), the rest in plan order.
        let failing = |image: &String| {
            columns
                .iter()
                .filter(|col| at.get(&(image.clone(), (*col).clone())).is_some_and(|c| order(c.status) == 0))
                .count()
        };
        rows.sort_by_key(|image| std::cmp::Reverse(failing(image)));
        let rows = rows
            .into_iter()
            .map(|image| {
                let entries = columns.iter().map(|col| GridEntry::of(at.get(&(image.clone(), col.clone())))).collect();
                GridRow { image, entries }
            })
            .collect();
        let row_axis = cells.first().and_then(|c| c.params.0.keys().next().cloned()).unwrap_or_else(|| "image".into());
        Grid { row_axis, columns, rows }
    }
}

impl<'a> GridEntry<'a> {
    fn of(cell: Option<&&'a CellResult>) -> GridEntry<'a> {
        let cell =
            cell.map(|c| GridCell { anchor: anchor(&c.id), class: cell_class(c), label: cell_label(c), id: &c.id });
        GridEntry { present: cell.is_some(), cell }
    }
}
