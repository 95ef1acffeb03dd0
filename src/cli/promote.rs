//! `amiprobe report merge --promote SPEC`: the merged shards' verdict acted on as one run's would be
//! (`on_pass`), with the spec's provider and its credentials; only when the merged results are the
//! spec's whole plan and every shard ended.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::{access_outcome, runtime};
use crate::engine::promotion;
use crate::exit::Outcome;
use crate::plan::Plan;
use crate::results::{RunResults, RunStatus, Withheld};
use crate::spec::VarOverrides;

/// Promotes what `merged` (the joined shards) passed, recording it there; `Err` with the command's
/// outcome when it could not even try (a wrong spec, no credentials): the merged results stand.
pub fn promote_merged(merged: &mut RunResults, spec: &Path, vars: &VarOverrides) -> Result<(), Outcome> {
    let plan = Plan::load(spec, vars).map_err(|e| {
        eprint!("{e}");
        Outcome::UsageError
    })?;
    if plan.name != merged.spec.name {
        eprintln!(
            "error: the spec {} is `{}`; the merged results are of `{}`",
            spec.display(),
            plan.name,
            merged.spec.name
        );
        return Err(Outcome::UsageError);
    }
    let withheld = withheld(merged, &plan);
    let provider = plan.provider.provider(plan.run_settings());
    let runtime = runtime()?;
    if withheld.is_none() {
        // Before any write: credentials that can't be used are told like a run's.
        if let Err(e) = runtime.block_on(provider.identity(&plan.cells)) {
            eprintln!("error: {e}");
            return Err(access_outcome(&e));
        }
    }
    let request = promotion::request(merged, withheld, CancellationToken::new());
    let promotions = runtime.block_on(promotion::promote(provider.as_ref(), request, withheld));
    if promotions.is_none() {
        eprintln!("warning: the spec asks for no promotion (provider.ec2.on_pass)");
    }
    for warning in promotion::apply(merged, promotions) {
        eprintln!("warning: {warning}");
    }
    for line in merged.promotions.iter().flat_map(crate::report::promotion::lines) {
        println!("{}", crate::report::promotion::text(&line));
    }
    Ok(())
}

/// Why the merged shards may not promote: one was interrupted, or they are not the whole plan.
fn withheld(merged: &RunResults, plan: &Plan) -> Option<Withheld> {
    let whole = plan.cells.iter().all(|c| merged.cells.iter().any(|m| m.id == c.id.0));
    match merged.status {
        RunStatus::Interrupted => Some(Withheld::Interrupted),
        RunStatus::Running | RunStatus::Refused => Some(Withheld::Incomplete),
        RunStatus::Passed | RunStatus::Failed if !whole => Some(Withheld::Incomplete),
        RunStatus::Passed | RunStatus::Failed => None,
    }
}
