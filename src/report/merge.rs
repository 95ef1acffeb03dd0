//! `amiprobe report merge`: the results of `run --shard K/N` jobs joined into the one run they split.
//! Shards compared with one baseline (`run --baseline`) join their comparisons too.

use std::path::Path;

use super::error::MergeError;
use super::{compare, json, Format, FORMATS};
use crate::results::{Promotions, RunResults, RunStatus, Withheld};

/// The reports `report merge` renders from the merged results: every format but results.json,
/// which the merge itself writes.
pub fn formats() -> Vec<Format> {
    FORMATS.iter().copied().filter(|format| *format != json::FORMAT).collect()
}

/// Merges shard results (already loaded from `dirs`) and copies their cell files into `out`.
pub fn merge(parts: Vec<(RunResults, &Path)>, out: &Path) -> Result<RunResults, MergeError> {
    let mut parts = parts.into_iter();
    let (mut merged, first_dir) = parts.next().ok_or(MergeError::Nothing)?;
    copy_cells(first_dir, out)?;
    let mut shards = vec![merged.shard.clone().unwrap_or_else(|| merged.run_id.clone())];
    let mut asked_promotion = merged.promotions.is_some();
    let mut comparisons = vec![merged.since_last_night.take()];
    for (mut part, dir) in parts {
        if part.spec.name != merged.spec.name || part.spec.provider != merged.spec.provider {
            return Err(MergeError::OtherSpec {
                dir: dir.to_path_buf(),
                name: part.spec.name,
                provider: part.spec.provider,
                merged_name: merged.spec.name,
                merged_provider: merged.spec.provider,
            });
        }
        for cell in &part.cells {
            if merged.cells.iter().any(|c| c.id == cell.id) {
                return Err(MergeError::SameCell(cell.id.clone()));
            }
        }
        copy_cells(dir, out)?;
        let shard = part.shard.clone().unwrap_or_else(|| part.run_id.clone());
        match (&merged.account, &part.account) {
            (None, _) => merged.account.clone_from(&part.account),
            // The merged results name one account: a shard that ran in another says so.
            (Some(one), Some(other)) if one.id != other.id => merged
                .warnings
                .push(format!("shard {shard} ran in account {}; these results name account {}", other.id, one.id)),
            _ => {}
        }
        shards.push(shard);
        asked_promotion |= part.promotions.is_some();
        comparisons.push(part.since_last_night.take());
        merged.started_at = merged.started_at.clone().min(part.started_at.clone());
        merged.finished_at = match (merged.finished_at.take(), part.finished_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        // Shards run side by side: the run took as long as its longest shard.
        merged.duration_s = merged.duration_s.max(part.duration_s);
        merged.status = worst(merged.status, part.status);
        merged.cells.extend(part.cells);
        for w in part.warnings {
            if !merged.warnings.contains(&w) {
                merged.warnings.push(w);
            }
        }
        merged.leftover_cleanup.extend(part.leftover_cleanup);
        merged.not_removed.extend(part.not_removed);
    }
    // Each shard withheld its promotion: the merged run promotes only with `--promote`.
    if asked_promotion {
        merged.promotions = Some(Promotions { withheld: Some(Withheld::NotAsked), images: Vec::new() });
    }
    // Plan order, as a single run lists them.
    merged.cells.sort_by_key(|c| c.index);
    merged.shard = None;
    merged.merged_from = shards;
    merged.since_last_night = match compare::join(comparisons) {
        Ok(joined) => joined.map(|mut c| {
            // The run's order, as a single run lists them.
            let at = |id: &str| merged.cells.iter().position(|cell| cell.id == id);
            c.cells.sort_by_key(|cell| at(&cell.new_id));
            c
        }),
        Err(why) => {
            let warning = format!(
                "the shards' comparisons with their baseline are not merged: {why}; \
                 `amiprobe report compare BASELINE {} --write` compares the merged run",
                out.display()
            );
            eprintln!("warning: {warning}");
            merged.warnings.push(warning);
            None
        }
    };
    merged.recount();
    merged.write(out).map_err(MergeError::Write)?;
    Ok(merged)
}

fn worst(a: RunStatus, b: RunStatus) -> RunStatus {
    let rank = |s: RunStatus| match s {
        RunStatus::Passed => 0,
        RunStatus::Failed => 1,
        RunStatus::Running => 2,
        RunStatus::Interrupted => 3,
        RunStatus::Refused => 4,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Copies a shard's cell files, and the baseline's frames its comparison kept, into `out`.
fn copy_cells(from: &Path, out: &Path) -> Result<(), MergeError> {
    for dir in ["cells", compare::screen::FRAMES_DIR] {
        let src = from.join(dir);
        if !src.exists() || from == out {
            continue;
        }
        copy_dir(&src, &out.join(dir)).map_err(|source| MergeError::Copy { path: src.clone(), source })?;
    }
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let target = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
