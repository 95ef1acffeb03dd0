//! A cell's boot phases as a stacked bar (`cell.hbs`, `cell-summary.hbs`): one segment per phase,
//! its width its share of the boot, drawn with CSS widths alone; a legend names each phase with its
//! length, so nothing rests on colour.

use serde::Serialize;

use super::labels::secs;
use crate::results::{BootPhase, BootPhases, PhaseBound};

/// A segment of the bar.
#[derive(Serialize)]
pub struct PhaseBar {
    name: &'static str,
    /// The stylesheet's class (`kernel`, `to_ready`): the phase's results.json name.
    class: String,
    /// Percent of the whole bar.
    width: String,
    length: String,
    /// What bounded it, for the segment's tooltip.
    title: String,
}

/// The bar of `phases`, empty when there are none (or they add up to nothing).
pub fn bars(phases: Option<&BootPhases>) -> Vec<PhaseBar> {
    let Some(phases) = phases else { return Vec::new() };
    let total: f64 = phases.phases.iter().map(|p| p.length_s).sum();
    if total <= 0.0 {
        return Vec::new();
    }
    phases.phases.iter().map(|p| bar(p, total)).collect()
}

fn bar(p: &BootPhase, total: f64) -> PhaseBar {
    let bound = |b: &PhaseBound| match b.line {
        Some(line) => format!("console line {line}"),
        None => b.text.clone(),
    };
    let class = serde_json::to_value(p.name).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    PhaseBar {
        name: p.name.label(),
        class,
        width: format!("{:.2}", p.length_s / total * 100.0),
        length: secs(p.length_s),
        title: format!("{}: {} (from {} to {})", p.name.label(), secs(p.length_s), bound(&p.from), bound(&p.to)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{PhaseClock, PhaseName, TimedBy};

    #[test]
    fn widths_are_shares_of_the_boot() {
        let bound = |line| PhaseBound { line, text: "x".into(), timed_by: TimedBy::Stamp };
        let phase =
            |name, start_s, length_s| BootPhase { name, start_s, length_s, from: bound(Some(1)), to: bound(None) };
        let phases = BootPhases {
            clock: PhaseClock::Kernel,
            zero_at_s: None,
            phases: vec![phase(PhaseName::Kernel, 0.0, 1.0), phase(PhaseName::ToReady, 1.0, 3.0)],
        };
        let bars = bars(Some(&phases));
        let shown: Vec<(&str, &str, &str)> =
            bars.iter().map(|b| (b.class.as_str(), b.width.as_str(), b.length.as_str())).collect();
        assert_eq!(shown, [("kernel", "25.00", "1.0s"), ("to_ready", "75.00", "3.0s")]);
        assert_eq!(bars[1].title, "to service ready: 3.0s (from console line 1 to x)");
        assert!(super::bars(None).is_empty());
    }
}
