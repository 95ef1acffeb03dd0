//! `amiprobe validate` and `amiprobe plan`: a spec checked and expanded, without running anything
//! (`plan --check` asks the provider too, and creates nothing).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{runtime, Format};
use crate::exit::Outcome;
use crate::plan::{Plan, Shard};
use crate::provider::field::label;
use crate::provider::{Checked, Identity};

pub fn validate(specs: &[PathBuf], vars: &BTreeMap<String, String>) -> Outcome {
    let mut outcome = Outcome::Passed;
    for file in specs {
        match Plan::load(file, vars) {
            Ok(plan) => {
                // Hints (a pattern that can't match a one-line answer) are not errors: still ok.
                for warning in plan.warnings() {
                    eprintln!("warning: {}: {warning}", file.display());
                }
                println!("{}: ok ({} cells)", file.display(), plan.cells.len());
            }
            Err(e) => {
                eprint!("{e}");
                outcome = Outcome::UsageError;
            }
        }
    }
    outcome
}

pub fn plan(
    file: &Path,
    shard: Option<Shard>,
    format: Format,
    check: bool,
    vars: &BTreeMap<String, String>,
) -> Outcome {
    let plan = match Plan::load(file, vars) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return Outcome::UsageError;
        }
    };
    for warning in plan.warnings() {
        eprintln!("warning: {warning}");
    }
    let total = plan.cells.len();
    let plan = match shard {
        Some(s) => plan.shard(s),
        None => plan,
    };
    let outcome = match print(&plan, shard, total, format) {
        Ok(()) => Outcome::Passed,
        // A closed pipe (`| head`) is not a failure of the plan.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Passed,
        Err(_) => Outcome::Failed,
    };
    if check && outcome == Outcome::Passed {
        return check_plan(&plan);
    }
    outcome
}

/// Prints the plan's cells (of `shard`, out of `total`) to stdout.
fn print(plan: &Plan, shard: Option<Shard>, total: usize, format: Format) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let doc = serde_json::json!({
                "name": plan.name,
                "provider": plan.provider.name(),
                "shard": shard.map(|s| s.to_string()),
                "total_cells": total,
                "cells": plan.cells,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default())
        }
        Format::Text => {
            let mut text = format!("{}: {} cells on {}", plan.name, plan.cells.len(), plan.provider.name());
            if let Some(s) = shard {
                text.push_str(&format!(" (shard {s} of {total} cells)"));
            }
            text.push('\n');
            for cell in &plan.cells {
                text.push_str(&format!("  {}{}\n", cell.id, resolved(cell)));
            }
            write!(out, "{text}")
        }
    }
}

/// What a cell launches with where it is not its own value (a Packer manifest's image id): ` (image
/// ami-0aaa)`, or nothing.
fn resolved(cell: &crate::cell::Cell) -> String {
    let launched: Vec<String> = cell
        .values
        .iter()
        .filter_map(|(k, v)| cell.launch.get(k).filter(|l| *l != v).map(|l| format!("{k} {}", label(l))))
        .collect();
    match launched.is_empty() {
        true => String::new(),
        false => format!(" ({})", launched.join(", ")),
    }
}

/// `plan --check`: the provider's credentials, then its preflight, and nothing else.
fn check_plan(plan: &Plan) -> Outcome {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let provider = plan.provider.provider(plan.run_settings());
    match runtime.block_on(provider.identity(&plan.cells)) {
        Err(e) => {
            eprintln!("error: {e}");
            return super::access_outcome(&e);
        }
        Ok(Some(identity)) => eprintln!("check: {}", as_who(&identity)),
        Ok(None) => {}
    }
    match runtime.block_on(provider.preflight(&plan.cells)) {
        Err(e) => {
            eprintln!("error: provider check failed: {e}");
            Outcome::Failed
        }
        Ok(checked) => told(&checked, plan.cells.len()),
    }
}

/// What the provider's check said, a line each; the outcome it makes.
fn told(checked: &Checked, cells: usize) -> Outcome {
    for line in &checked.resolved {
        eprintln!("check: {line}");
    }
    for warning in &checked.warnings {
        eprintln!("warning: {warning}");
    }
    for line in &checked.refused {
        eprintln!("error: {line}");
    }
    for (cell, why) in &checked.impossible {
        eprintln!("error: cell {cell}: impossible: {why}");
    }
    match (checked.refused.len(), checked.impossible.len()) {
        (0, 0) => {
            eprintln!("check: every cell can run as asked");
            return Outcome::Passed;
        }
        // A refused permission stops every cell, whatever else holds.
        (refused, _) if refused > 0 => eprintln!("check: {refused} permissions refused: no cell can run"),
        (_, impossible) => eprintln!("check: {impossible} of {cells} cells can't run as asked"),
    }
    Outcome::UsageError
}

/// Who the check ran as: "account 123456789012 (arn:aws:iam::123456789012:user/ci)".
fn as_who(identity: &Identity) -> String {
    match &identity.principal {
        Some(principal) => format!("account {} ({principal})", identity.account),
        None => format!("account {}", identity.account),
    }
}
