//! The view model of the boot table (`report.hbs`): a row per cell whose boot had phases, a column
//! per phase any cell had (in boot order), and the time to ready; its headers sort it (the page's
//! script), so the slowest kernel or the longest wait for a service is one click away.

use serde::Serialize;

use super::labels::{anchor, secs};
use crate::results::{CellResult, PhaseName};

/// Every phase, in the order a boot goes through them.
const ORDER: [PhaseName; 8] = [
    PhaseName::Firmware,
    PhaseName::WindowsStart,
    PhaseName::Kernel,
    PhaseName::Initramfs,
    PhaseName::Sysprep,
    PhaseName::Userspace,
    PhaseName::LaunchAgent,
    PhaseName::ToReady,
];

#[derive(Serialize)]
pub struct BootTable<'a> {
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
        let names: Vec<PhaseName> = ORDER.into_iter().filter(|n| seen(*n)).collect();
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
            .collect();
        Some(BootTable { columns: names.iter().map(|n| n.label()).collect(), rows })
    }
}
