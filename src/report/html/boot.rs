//! The view model of the boot table (`report.hbs`): a row per cell whose boot had phases, a column
//! per phase any cell had (in boot order), and the time to ready; its headers sort it (the page's
//! script), so the slowest kernel or the longest wait for a service is one click away.

use serde::Serialize;

use super::labels::{anchor, secs};
use crate::results::{CellResult, PhaseName};

#[derive(Serialize)]
pub struct BootTable<'a> {
    /// Shown open: a run small enough to have every cell's section inline (`INLINE_ALL`); a
    /// larger one opens with what went wrong, and the table a click away.
    open: bool,
    /// How many rows.
    count: usize,
    columns: Vec<&'static str>,
    rows: Vec<BootRow<'a>>,
}

#[derive(Serialize)]
struct BootRow<'a> {
    id: &'a str,
    anchor: String,
    /// One per column: the phase's length, or empty when this cell's boot did not show it.
    lengths: Vec<String>,
    ready: String,
}

impl<'a> BootTable<'a> {
    /// `None` when no cell had phases.
    pub fn new(cells: &[&'a CellResult]) -> Option<BootTable<'a>> {
        let timed: Vec<&'a CellResult> = cells.iter().copied().filter(|c| c.boot_phases.is_some()).collect();
        let seen = |name: PhaseName| {
            timed.iter().any(|c| c.boot_phases.iter().flat_map(|b| &b.phases).any(|p| p.name == name))
        };
        let names: Vec<PhaseName> = PhaseName::ALL.into_iter().filter(|n| seen(*n)).collect();
        if names.is_empty() {
            return None;
        }
        let rows = timed
            .iter()
            .map(|c| {
                let phases = c.boot_phases.iter().flat_map(|b| &b.phases);
                let length = |name: PhaseName| {
                    phases.clone().find(|p| p.name == name).map(|p| secs(p.length_s)).unwrap_or_default()
                };
                BootRow {
                    id: &c.id,
                    anchor: anchor(&c.id),
                    lengths: names.iter().map(|n| length(*n)).collect(),
                    ready: c.timings.ready_s.map(secs).unwrap_or_default(),
                }
            })
            .collect::<Vec<BootRow>>();
        let open = cells.len() <= super::INLINE_ALL;
        let count = rows.len();
        Some(BootTable { open, count, columns: names.iter().map(|n| n.label()).collect(), rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{BootPhase, BootPhases, PhaseBound, PhaseClock, TimedBy};

    fn cell(id: &str, phases: &[(PhaseName, f64)], ready_s: Option<f64>) -> CellResult {
        let mut c: CellResult =
            serde_json::from_value(serde_json::json!({"id": id, "params": {}, "status": "passed"})).expect("a cell");
        let bound = || PhaseBound { line: None, text: "x".into(), timed_by: TimedBy::Stamp };
        if !phases.is_empty() {
            let phases = phases
                .iter()
                .map(|(name, length_s)| BootPhase {
                    name: *name,
                    start_s: 0.0,
                    length_s: *length_s,
                    from: bound(),
                    to: bound(),
                })
                .collect();
            c.boot_phases = Some(BootPhases { clock: PhaseClock::Kernel, zero_at_s: None, phases });
        }
        c.timings.ready_s = ready_s;
        c
    }

    #[test]
    fn a_column_per_phase_seen_in_boot_order_and_a_row_per_timed_cell() {
        let linux = cell("linux", &[(PhaseName::Userspace, 26.6), (PhaseName::Kernel, 3.3)], Some(40.0));
        let short = cell("short", &[(PhaseName::Kernel, 1.0)], None);
        let untimed = cell("untimed", &[], Some(5.0));
        let table = BootTable::new(&[&linux, &untimed, &short]).expect("a table");
        assert_eq!(table.columns, ["kernel", "userspace to target"]);
        let rows: Vec<(&str, Vec<&str>, &str)> = table
            .rows
            .iter()
            .map(|r| (r.id, r.lengths.iter().map(String::as_str).collect(), r.ready.as_str()))
            .collect();
        assert_eq!(rows, [("linux", vec!["3.3s", "26.6s"], "40.0s"), ("short", vec!["1.0s", ""], "")]);
        assert!(BootTable::new(&[&untimed]).is_none(), "no phases, no table");
    }
}
