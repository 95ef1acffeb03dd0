//! Steps every provider takes the same way around a machine's life, written once: the login key a
//! machine is given, the bookkeeping of launch attempts, the removal of what cells left in the
//! ledger, and the ledger entry a machine takes off once it is confirmed stopped. What each provider
//! does inside a step (RunInstances or a QEMU process, a terminate or a kill) stays its own.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::key::{OnceKey, RunKey};
use super::{CleanupStep, Created, LaunchContext, LaunchPlan, Ledger, ProviderError, Resource};
use crate::spec::KeyPair;

/// The key pair a cell's machine is given to log in with.
#[derive(Clone)]
pub enum LoginKey {
    /// The run's own key (`key_pair: ephemeral`).
    Run(Arc<RunKey>),
    /// A key pair the spec names, which the platform already holds: its name.
    Existing(String),
}

impl LoginKey {
    /// The run's key, when the machine is given it (for SSH probes and Windows passwords).
    pub fn run_key(&self) -> Option<Arc<RunKey>> {
        match self {
            LoginKey::Run(key) => Some(key.clone()),
            LoginKey::Existing(_) => None,
        }
    }
}

/// The key pair a cell's machine is given: the run's own key (`key_pair: ephemeral`), generated on
/// the run's first need and kept in the results when `launch.keep_private_key` says so, or the key
/// pair the spec names.
pub async fn login_key(run_key: &OnceKey, launch: &LaunchPlan, ctx: &LaunchContext) -> Result<LoginKey, ProviderError> {
    match &launch.key_pair {
        KeyPair::Existing(name) => Ok(LoginKey::Existing(name.clone())),
        KeyPair::Ephemeral => run_key
            .get(&ctx.run_id, launch.keep_private_key, &ctx.cell_dir)
            .await
            .map(LoginKey::Run)
            .map_err(|e| ProviderError::new(e.to_string())),
    }
}

/// The attempts of one launch, each made only while the run is not interrupted: the loop is the
/// provider's own (what it tries next differs), the bookkeeping is this.
#[derive(Debug)]
pub struct Attempts {
    /// What each attempt starts ("RunInstances"), for the interrupted error.
    what: &'static str,
    made: usize,
    last: Option<String>,
}

impl Attempts {
    pub fn new(what: &'static str) -> Attempts {
        Attempts { what, made: 0, last: None }
    }

    /// Before each attempt: its number from 0, or an `Interrupted` error when the run was
    /// interrupted (the launch starts no further attempt).
    pub fn next(&mut self, cancel: &CancellationToken) -> Result<usize, ProviderError> {
        if cancel.is_cancelled() {
            return Err(ProviderError::interrupted(format!("interrupted before {}", self.what)));
        }
        self.made += 1;
        Ok(self.made - 1)
    }

    /// The attempt failed in a way the next one may not (no capacity there, a port taken
    /// meanwhile): why, as a lowercase fragment. What it recorded is already off the ledger.
    pub fn failed(&mut self, why: String) {
        self.last = Some(why);
    }

    /// How many attempts were made.
    pub fn made(&self) -> usize {
        self.made
    }

    /// Why the last attempt failed, if one did.
    pub fn last_error(&self) -> Option<&str> {
        self.last.as_deref()
    }
}

/// The provider's own resources among the ledger's `leftovers` (those of type `T`), each with what
/// it is: what its `remove_leftovers` goes through.
pub fn own<T: Created>(leftovers: &[Resource]) -> impl Iterator<Item = (&Resource, &T)> {
    leftovers.iter().filter_map(|resource| Some((resource, resource.get::<T>()?)))
}

/// A removal's step, tied to its resource; the resource leaves the ledger when the step worked.
pub fn removed(ledger: &Ledger, resource: &Resource, step: CleanupStep) -> CleanupStep {
    if step.ok {
        ledger.removed(resource);
    }
    step.of(resource)
}

/// A machine's own entry in the run's ledger (its instance, its process): it stays there until the
/// machine is confirmed stopped, so that the run's last removals try again after a failed stop.
#[derive(Debug, Clone)]
pub struct Tracked {
    resource: Resource,
    ledger: Ledger,
}

impl Tracked {
    /// `resource`, already in `ledger`.
    pub fn new(resource: Resource, ledger: &Ledger) -> Tracked {
        Tracked { resource, ledger: ledger.clone() }
    }

    pub fn resource(&self) -> &Resource {
        &self.resource
    }

    /// Off the ledger: the machine is confirmed stopped, or no longer the run's to remove (kept for
    /// debugging).
    pub fn forget(&self) {
        self.ledger.removed(&self.resource);
    }

    /// Whether the ledger still holds it: its stop is not confirmed.
    pub fn held(&self) -> bool {
        self.ledger.holds(&self.resource)
    }
}
