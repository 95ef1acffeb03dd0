//! What changed between a baseline cell and tonight's cell of the same key: the status, the time to
//! ready and each boot phase (regressed beyond [`Thresholds`]), the warning or error lines of
//! the console whose normalised form the baseline's console does not have, the last screen
//! ([`super::screen`]) and the probes' answers ([`super::answers`]).
//!
//! Durations are compared only when both cells have them (a phase not seen on one side is not a
//! regression); a phase is matched by name. Console logs are read from each cell's `console_log`,
//! relative to its results directory; when either is missing or unreadable the consoles are not
//! compared and the cell says why (every line would otherwise look new).

use std::collections::HashSet;
use std::path::Path;

use super::normalise::{is_warning, normalise, Ignored};
use super::screen::{self, Frames};
use crate::results::since::{CellComparison, Change, ConsoleLine, Measure, StatusChange, Thresholds, TimeRegression};
use crate::results::{CellResult, CellStatus};

/// How a pair is compared: the thresholds, the lines never new, what to do with moved frames.
pub struct Rules<'a> {
    pub thresholds: Thresholds,
    pub ignored: &'a Ignored,
    pub frames: Frames,
}

/// Compares one matched pair, each cell with its results directory.
pub fn cell(
    key: &str,
    (base, base_dir): (&CellResult, &Path),
    (new, new_dir): (&CellResult, &Path),
    rules: &Rules,
) -> CellComparison {
    let (new_console_lines, console_note) = match (console(base, base_dir), console(new, new_dir)) {
        (Ok(b), Ok(n)) => (new_lines(&b, &n, rules.ignored), None),
        (Err(why), _) | (_, Err(why)) => (Vec::new(), Some(why)),
    };
    CellComparison {
        key: key.to_owned(),
        base_id: base.id.clone(),
        new_id: new.id.clone(),
        status: status(base, new),
        slower: slower(base, new, rules.thresholds),
        new_console_lines,
        console_note,
        last_screen: screen::last_screen((base, base_dir), (new, new_dir), rules.frames),
        answers: super::answers::answers(base, new),
    }
}

/// The change of status, if any; passing only after failing first (`flaky`) is a status of its own.
pub fn status(base: &CellResult, new: &CellResult) -> Option<StatusChange> {
    if base.status == new.status && base.flaky == new.flaky {
        return None;
    }
    let steady = |c: &CellResult| c.status.is_pass() && !c.flaky;
    let failing = matches!(new.status, CellStatus::Failed | CellStatus::Error | CellStatus::TimedOut);
    let change = if base.status.is_pass() && failing {
        Change::NewlyFailing
    } else if steady(base) && new.status.is_pass() {
        Change::NewlyFlaky
    } else if steady(new) {
        Change::Fixed
    } else {
        Change::Other
    };
    Some(StatusChange { change, base: base.status, new: new.status })
}

/// The time to ready and the boot phases that regressed.
pub fn slower(base: &CellResult, new: &CellResult, thresholds: Thresholds) -> Vec<TimeRegression> {
    let mut pairs = vec![(Measure::Ready, base.timings.ready_s, new.timings.ready_s)];
    if let (Some(b), Some(n)) = (&base.boot_phases, &new.boot_phases) {
        for phase in &n.phases {
            let before = b.phases.iter().find(|p| p.name == phase.name).map(|p| p.length_s);
            pairs.push((Measure::Phase { name: phase.name }, before, Some(phase.length_s)));
        }
    }
    pairs
        .into_iter()
        .filter_map(|(measure, b, n)| match (b, n) {
            (Some(base_s), Some(new_s)) if thresholds.regressed(base_s, new_s) => {
                Some(TimeRegression { measure, base_s, new_s })
            }
            _ => None,
        })
        .collect()
}

/// The warning or error lines of `new` whose normalised form no line of `base` has, each once; none
/// that `ignored` matches.
pub fn new_lines(base: &str, new: &str, ignored: &Ignored) -> Vec<ConsoleLine> {
    let known: HashSet<String> = base.lines().filter(|l| is_warning(l)).map(normalise).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, text) in new.lines().enumerate() {
        if !is_warning(text) || ignored.matches(text) {
            continue;
        }
        let normalised = normalise(text);
        if known.contains(&normalised) || !seen.insert(normalised.clone()) {
            continue;
        }
        out.push(ConsoleLine { line: i + 1, text: text.trim_end().to_owned(), normalised });
    }
    out
}

/// The cell's console log, or why it cannot be compared.
fn console(cell: &CellResult, dir: &Path) -> Result<String, String> {
    let Some(rel) = &cell.console_log else {
        return Err(format!("`{}` has no console log", cell.id));
    };
    let path = dir.join(rel);
    std::fs::read(&path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|e| format!("failed to read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{BootPhases, PhaseName};

    fn cell(status: CellStatus, ready_s: Option<f64>, phases: &[(PhaseName, f64)]) -> CellResult {
        let mut c: CellResult =
            serde_json::from_value(serde_json::json!({"id": "c", "params": {}, "status": "passed"})).expect("a cell");
        c.status = status;
        c.timings.ready_s = ready_s;
        if !phases.is_empty() {
            let phases = phases
                .iter()
                .map(|(name, length)| {
                    serde_json::json!({"name": name, "start_s": 0.0, "length_s": length,
                        "from": {"text": "running", "timed_by": "event"}, "to": {"text": "ready", "timed_by": "event"}})
                })
                .collect::<Vec<_>>();
            c.boot_phases = Some(
                serde_json::from_value::<BootPhases>(serde_json::json!({"clock": "kernel", "phases": phases}))
                    .expect("phases"),
            );
        }
        c
    }

    #[test]
    fn status_changes_are_named() {
        let of =
            |base: CellStatus, new: CellStatus| status(&cell(base, None, &[]), &cell(new, None, &[])).map(|s| s.change);
        assert_eq!(of(CellStatus::Passed, CellStatus::Failed), Some(Change::NewlyFailing));
        assert_eq!(of(CellStatus::Error, CellStatus::Passed), Some(Change::Fixed));
        assert_eq!(of(CellStatus::Failed, CellStatus::Error), Some(Change::Other));
        assert_eq!(of(CellStatus::Passed, CellStatus::Interrupted), Some(Change::Other));
        assert_eq!(of(CellStatus::Passed, CellStatus::Passed), None);
        let steady = cell(CellStatus::Passed, None, &[]);
        let mut flaky = steady.clone();
        flaky.flaky = true;
        assert_eq!(status(&steady, &flaky).map(|s| s.change), Some(Change::NewlyFlaky));
        assert_eq!(status(&flaky, &steady).map(|s| s.change), Some(Change::Fixed));
        assert_eq!(status(&flaky, &flaky), None);
        let failed = cell(CellStatus::Failed, None, &[]);
        assert_eq!(status(&failed, &flaky).map(|s| s.change), Some(Change::Other), "passing, but not steadily");
    }

    #[test]
    fn slower_needs_both_the_ratio_and_the_floor() {
        let t = Thresholds::default();
        let base = cell(CellStatus::Passed, Some(20.0), &[]);
        // +10 s on 20 s: over 25 % and over 2 s.
        let found = slower(&base, &cell(CellStatus::Passed, Some(30.0), &[]), t);
        assert_eq!(found, [TimeRegression { measure: Measure::Ready, base_s: 20.0, new_s: 30.0 }]);
        // +4 s on 20 s: over the floor, under the ratio.
        assert!(slower(&base, &cell(CellStatus::Passed, Some(24.0), &[]), t).is_empty());
        // 1 s to 2.5 s: over the ratio, under the floor.
        let quick = cell(CellStatus::Passed, Some(1.0), &[]);
        assert!(slower(&quick, &cell(CellStatus::Passed, Some(2.5), &[]), t).is_empty());
        // Not ready on one side: nothing to compare.
        assert!(slower(&base, &cell(CellStatus::Failed, None, &[]), t).is_empty());
    }

    #[test]
    fn phases_are_matched_by_name() {
        let t = Thresholds { ratio: 0.1, floor_s: 1.0 };
        let base = cell(CellStatus::Passed, Some(10.0), &[(PhaseName::Kernel, 2.0), (PhaseName::Userspace, 5.0)]);
        let new = cell(CellStatus::Passed, Some(10.5), &[(PhaseName::Kernel, 2.1), (PhaseName::Userspace, 8.0)]);
        let found = slower(&base, &new, t);
        let expected =
            TimeRegression { measure: Measure::Phase { name: PhaseName::Userspace }, base_s: 5.0, new_s: 8.0 };
        assert_eq!(found, [expected]);
    }

    #[test]
    fn only_warning_lines_new_after_normalising() {
        let base = "[    1.000000] ACPI Warning: SystemIO range 0x0000000000000600 conflicts\n\
                    [    2.000000] random: crng init done\n";
        let new = "[    1.200000] ACPI Warning: SystemIO range 0x0000000000000700 conflicts\n\
                   [    2.100000] random: crng init done\n\
                   [    3.500000] WARNING: CPU: 0 PID: 1 at drivers/foo.c:12 probe+0x10/0x20\n\
                   [    3.600000] WARNING: CPU: 0 PID: 9 at drivers/foo.c:12 probe+0x10/0x20\n";
        let found = new_lines(base, new, &Ignored::default());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].line, 3);
        assert!(found[0].text.contains("WARNING: CPU"));
        assert!(new_lines(new, new, &Ignored::default()).is_empty());
        let noisy = format!("{new}[    0.000000] tsc: Fast TSC calibration failed\n");
        assert_eq!(new_lines(base, &noisy, &Ignored::default()).len(), 1, "the host's noise is not news");
        let mine = Ignored::new(&["drivers/foo.c".to_string()]).unwrap();
        assert!(new_lines(base, new, &mine).is_empty());
    }
}
