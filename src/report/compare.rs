//! `amiprobe report compare BASE NEW`: what changed since a baseline run (last night's results), cell
//! by cell: status changes, time regressions (to ready and per boot phase) and warning or error lines
//! new on the console.
//!
//! Cells are matched by a key that stays the same across nights ([`key`]), durations compared with a
//! ratio and an absolute floor so that noise is not a regression ([`diff`]), and console lines
//! compared once timestamps, addresses, ids and counters are normalised away ([`normalise`]).
//! [`Comparison`] is the typed result (`crate::results::since`): results.json keeps it, and the
//! Markdown section ([`markdown`]), `--json`, the HTML report and JUnit are rendered from it.

pub mod answers;
pub mod diff;
pub mod key;
pub mod markdown;
pub mod normalise;
pub mod screen;
pub mod settings;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::results::since::BaselineRules;
pub use crate::results::since::{CellComparison, Comparison, Thresholds};
use crate::results::{CellResult, RunResults};
pub use diff::Rules;
pub use markdown::markdown;
pub use screen::Frames;

/// Compares the runs loaded from `base_dir` and `new_dir` (console logs are read relative to them).
pub fn compare(
    base: &RunResults,
    base_dir: &Path,
    new: &RunResults,
    new_dir: &Path,
    rules: &diff::Rules,
) -> Comparison {
    // Tonight's spec says what the key is: last night's cells are keyed the same way.
    let axes = BaselineRules::key_of(new);
    let base_keys = key::keyed(&base.cells, axes);
    let new_keys = key::keyed(&new.cells, axes);
    let base_by_key: HashMap<&str, &CellResult> = base_keys.iter().map(|(k, c)| (k.as_str(), *c)).collect();
    let mut cells = Vec::new();
    let mut matched = 0;
    for (k, new_cell) in &new_keys {
        let Some(base_cell) = base_by_key.get(k.as_str()) else { continue };
        matched += 1;
        let c = diff::cell(k, (base_cell, base_dir), (new_cell, new_dir), rules);
        if c.changed() {
            cells.push(c);
        }
    }
    let missing = |from: &[(String, &CellResult)], other: &[(String, &CellResult)]| {
        let other: HashSet<&str> = other.iter().map(|(k, _)| k.as_str()).collect();
        from.iter().filter(|(k, _)| !other.contains(k.as_str())).map(|(k, _)| k.clone()).collect()
    };
    Comparison {
        base_run: base.run_id.clone(),
        base_started_at: base.started_at.clone(),
        new_run: new.run_id.clone(),
        thresholds: rules.thresholds,
        matched,
        cells,
        only_in_base: missing(&base_keys, &new_keys),
        only_in_new: missing(&new_keys, &base_keys),
    }
}

/// Why the shards' comparisons were not joined (`report compare BASE MERGED --write` compares the
/// merged run as a whole).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NotJoined {
    #[error("a shard was not compared with a baseline")]
    NotCompared,
    #[error("the shards were compared with different baselines or thresholds")]
    Different,
    /// Cells of one key are told apart by their order in their shard, not in the whole run.
    #[error("cells of different shards share the key `{0}`")]
    SharedKey(String),
}

/// The comparisons of shards of one run with one baseline, joined (`None`: no shard was compared).
pub fn join(parts: Vec<Option<Comparison>>) -> Result<Option<Comparison>, NotJoined> {
    if parts.iter().all(Option::is_none) {
        return Ok(None);
    }
    let shards = parts.len();
    let mut parts = parts.into_iter().map(|p| p.ok_or(NotJoined::NotCompared));
    let mut joined = parts.next().ok_or(NotJoined::NotCompared)??;
    for part in parts {
        let part = part?;
        if part.base_run != joined.base_run || part.thresholds != joined.thresholds {
            return Err(NotJoined::Different);
        }
        if let Some(shared) = part.cells.iter().find(|c| joined.cells.iter().any(|j| j.key == c.key)) {
            return Err(NotJoined::SharedKey(shared.key.clone()));
        }
        joined.matched += part.matched;
        joined.cells.extend(part.cells);
        joined.only_in_new.extend(part.only_in_new);
        // Each shard lacks the other shards' cells: missing from the run is missing from every shard.
        joined.only_in_base.retain(|k| part.only_in_base.contains(k));
    }
    let mut twins = joined.cells.iter().map(|c| &c.key).chain(&joined.only_in_base).chain(&joined.only_in_new);
    if let Some(twin) = twins.find(|k| shards > 1 && k.contains(" #")) {
        return Err(NotJoined::SharedKey(twin.clone()));
    }
    Ok(Some(joined))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::since::{Measure, TimeRegression};

    fn part(base_run: &str, changed: &[&str], only_in_base: &[&str]) -> Option<Comparison> {
        let cells = changed
            .iter()
            .map(|key| CellComparison {
                key: key.to_string(),
                base_id: key.to_string(),
                new_id: key.to_string(),
                status: None,
                slower: vec![TimeRegression { measure: Measure::Ready, base_s: 1.0, new_s: 9.0 }],
                new_console_lines: Vec::new(),
                console_note: None,
                last_screen: None,
                answers: Vec::new(),
            })
            .collect();
        Some(Comparison {
            base_run: base_run.into(),
            base_started_at: String::new(),
            new_run: "tonight".into(),
            thresholds: Thresholds::default(),
            matched: 2,
            cells,
            only_in_base: only_in_base.iter().map(|k| k.to_string()).collect(),
            only_in_new: Vec::new(),
        })
    }

    #[test]
    fn shards_join_when_compared_alike_and_not_otherwise() {
        let joined = join(vec![part("n", &["a"], &["gone", "b"]), part("n", &["b"], &["gone", "a"])]).unwrap().unwrap();
        assert_eq!((joined.matched, joined.cells.len()), (4, 2));
        assert_eq!(joined.only_in_base, ["gone"], "only what no shard has");
        assert_eq!(join(vec![None, None]), Ok(None));
        assert_eq!(join(vec![part("n", &[], &[]), None]), Err(NotJoined::NotCompared));
        assert_eq!(join(vec![part("n", &[], &[]), part("m", &[], &[])]), Err(NotJoined::Different));
        let shared = join(vec![part("n", &["image=image"], &[]), part("n", &["image=image"], &[])]);
        assert_eq!(shared, Err(NotJoined::SharedKey("image=image".into())));
        let twins = join(vec![part("n", &[], &["image=image #2"]), part("n", &[], &["image=image #2"])]);
        assert_eq!(twins, Err(NotJoined::SharedKey("image=image #2".into())));
        assert!(join(vec![part("n", &["k"], &["image=image #2"])]).is_ok(), "one run numbers its own twins");
    }
}
