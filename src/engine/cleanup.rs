//! The end of every run: removing what the ledger still holds, sweeping what carries the run's id,
//! and naming what could not be confirmed gone.
//!
//! What a step was about comes from the provider as typed values (`CleanupStep::resource`, the key
//! of the ledger resource it removed; `CleanupStep::sweep`, the run's final sweep), never from its
//! wording.

use crate::provider::{CleanupStep, Ledger, Provider, Resource};
use crate::results::CleanupStep as StepResult;
use crate::results::{NotRemoved, RunResults};

/// What the ledger still holds (cells that could not remove their own), then a sweep of everything
/// that carries the run's id (what a cell lost track of).
pub async fn remove_what_is_left(provider: &dyn Provider, run_id: &str, ledger: &Ledger) -> Vec<CleanupStep> {
    let leftovers = ledger.remaining();
    let mut steps = if leftovers.is_empty() { Vec::new() } else { provider.remove_leftovers(leftovers, ledger).await };
    steps.extend(provider.sweep_run(run_id, ledger).await);
    steps
}

/// Everything still in the ledger, with the last error met removing it.
pub fn not_removed(ledger: &Ledger, results: &RunResults) -> Vec<NotRemoved> {
    let steps: Vec<&StepResult> =
        results.cells.iter().flat_map(|c| c.cleanup.iter()).chain(results.leftover_cleanup.iter()).collect();
    ledger
        .remaining()
        .into_iter()
        .map(|resource| {
            let error = steps
                .iter()
                .rev()
                .find(|s| !s.ok && step_concerns(s, &resource))
                .map_or_else(|| "not confirmed removed".to_string(), |s| s.message.clone());
            NotRemoved { resource: resource.to_string(), cell: resource.cell().to_string(), error }
        })
        .collect()
}

/// A warning for each time the run's final sweep itself failed: it is what stands between a lost
/// track and a leak.
pub fn failed_sweeps(results: &RunResults) -> Vec<String> {
    results
        .leftover_cleanup
        .iter()
        .filter(|s| !s.ok && is_search_step(s))
        .map(|step| {
            format!(
                "the run's final sweep failed ({}): check with `amiprobe sweep --run-id {} --dry-run`",
                step.message, results.run_id
            )
        })
        .collect()
}

/// Whether a step is the sweep's search for the run's resources (not the removal of one it found).
fn is_search_step(step: &StepResult) -> bool {
    step.sweep
}

/// Whether a step was about removing `resource`.
fn step_concerns(step: &StepResult, resource: &Resource) -> bool {
    step.resource.as_deref() == Some(resource.key().as_str())
}
