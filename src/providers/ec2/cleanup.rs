//! Removing what the run made, where it was made: what cells left in the ledger, and the run's
//! final sweep in every region it used (whatever carries the run's tag, the launches whose answer
//! never came, and the run's security groups once no instance uses them).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::api::{Api, ApiError};
use super::resource::{self, Ec2Resource};
use super::{security_group, sweep, Ec2Provider};
use crate::provider::{lifecycle, CleanupStep, Ledger, Resource, Selection};

/// How long a launch whose answer never came is looked for before it counts as never launched.
const PENDING_GRACE: Duration = Duration::from_secs(60);

impl Ec2Provider {
    /// Terminates the instances and deletes the key pairs that cells left, each in its region.
    /// Pending launches have no id yet: the run's final sweep finds them by tag and token. Groups go
    /// in the run's final sweep too, after every instance it handles.
    pub(super) async fn remove_left(&self, leftovers: Vec<Resource>, ledger: &Ledger) -> Vec<CleanupStep> {
        let until = Instant::now() + self.cleanup_timeout;
        let mut steps = Vec::new();
        for (resource, ours) in lifecycle::own::<Ec2Resource>(&leftovers) {
            // Each where it was made.
            let region = ours.region();
            let api = match self.regional(Some(region)).await {
                Ok(regional) => regional.api.clone(),
                Err(e) => {
                    let action = format!("connect to EC2 in {region} to remove {resource}");
                    steps.push(CleanupStep::failed(action, e.message).of(resource));
                    continue;
                }
            };
            let (action, result) = match ours {
                Ec2Resource::Instance { id, .. } => {
                    (format!("terminate {id}"), api.terminate(std::slice::from_ref(id), until).await)
                }
                Ec2Resource::KeyPair { name, .. } => {
                    (format!("delete key pair {name}"), api.delete_key_pair(name, until).await)
                }
                Ec2Resource::PendingInstance { .. } | Ec2Resource::SecurityGroup { .. } => continue,
            };
            steps.push(lifecycle::removed(ledger, resource, removal_step(action, result)));
        }
        steps
    }

    /// Every region the run used, side by side: those connected, and any the ledger still names.
    pub(super) async fn sweep_regions(&self, run_id: &str, ledger: &Ledger) -> Vec<CleanupStep> {
        let mut steps = Vec::new();
        let named: BTreeSet<String> =
            ledger.remaining().iter().filter_map(|r| resource::of(r).map(|r| r.region().to_string())).collect();
        for region in named {
            if let Err(e) = self.regional(Some(&region)).await {
                steps.push(CleanupStep::failed(format!("sweep the run's resources in {region}"), e.message).sweeping());
            }
        }
        let mut regions = self.connected();
        if regions.is_empty() {
            match self.regional(None).await {
                Ok(regional) => regions.push(regional),
                Err(_) => {
                    steps.push(CleanupStep::failed("sweep the run's resources", "no client to sweep with").sweeping());
                    return steps;
                }
            }
        }
        let sweeps = regions.iter().map(|regional| self.sweep_region(&regional.api, run_id, ledger));
        steps.extend(futures::future::join_all(sweeps).await.into_iter().flatten());
        steps
    }

    /// The run's final sweep in one region: what carries the run's tag there, the launches pending
    /// there, the run's groups there.
    async fn sweep_region(&self, api: &Arc<Api>, run_id: &str, ledger: &Ledger) -> Vec<CleanupStep> {
        let selection = Selection::RunEnd(run_id.to_string());
        let mut report = sweep::Swept::default();
        let found = sweep::find(api, &selection, &mut report).await;
        let until = Instant::now() + self.cleanup_timeout;
        let mut steps: Vec<CleanupStep> = report
            .errors
            .iter()
            .map(|e| CleanupStep::failed("sweep the run's resources", e.clone()).sweeping())
            .collect();
        for instance in &found {
            let result = api.terminate(std::slice::from_ref(&instance.id), until).await;
            if result.is_ok() {
                forget_instance(ledger, instance);
            }
            steps.push(
                removal_step(format!("terminate {} (found by the run's tag)", instance.id), result)
                    .of_key(&instance.id),
            );
        }
        for name in &report.key_pairs {
            let result = api.delete_key_pair(name, until).await;
            if result.is_ok() {
                forget_key_pair(ledger, name, &api.region);
            }
            steps.push(removal_step(format!("delete key pair {name} (found by the run's tag)"), result).of_key(name));
        }
        steps.extend(resolve_pending(api, &selection, ledger, until).await);
        steps.extend(remove_groups(api, &report.security_groups, ledger, until).await);
        steps
    }
}

/// Takes the run's key pair in `region` off the ledger.
fn forget_key_pair(ledger: &Ledger, name: &str, region: &str) {
    ledger.retain(|r| match resource::of(r) {
        Some(Ec2Resource::KeyPair { name: n, region: at, .. }) => n != name || at != region,
        _ => true,
    });
}

/// Takes an instance off the ledger, by id or by the client token it was launched with.
fn forget_instance(ledger: &Ledger, instance: &sweep::Found) {
    ledger.retain(|r| match resource::of(r) {
        Some(Ec2Resource::Instance { id, .. }) => *id != instance.id,
        Some(Ec2Resource::PendingInstance { client_token, .. }) => {
            instance.client_token.as_deref() != Some(client_token)
        }
        _ => true,
    });
}

/// Launches whose answer never came (a server error, a launch cut off by `timeouts.run`): looked
/// for by their client token for a while, since a new instance may not be listed at once. Found,
/// it is terminated; never seen in [`PENDING_GRACE`], nothing was launched.
async fn resolve_pending(api: &Api, selection: &Selection, ledger: &Ledger, until: Instant) -> Vec<CleanupStep> {
    let mut steps = Vec::new();
    let give_up = (Instant::now() + PENDING_GRACE).min(until);
    loop {
        let pending = pending_tokens(ledger, &api.region);
        if pending.is_empty() {
            return steps;
        }
        if Instant::now() >= give_up {
            steps.extend(pending.into_iter().map(|token| never_launched(ledger, token)));
            return steps;
        }
        steps.extend(terminate_pending(api, selection, &pending, ledger, until).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The client tokens of the launches still pending in `region`.
fn pending_tokens(ledger: &Ledger, region: &str) -> Vec<String> {
    ledger
        .remaining()
        .into_iter()
        .filter_map(|r| match resource::of(&r) {
            Some(Ec2Resource::PendingInstance { client_token, region: at, .. }) if at == region => {
                Some(client_token.clone())
            }
            _ => None,
        })
        .collect()
}

/// A pending launch never seen in [`PENDING_GRACE`]: nothing was launched, and the ledger forgets it.
fn never_launched(ledger: &Ledger, token: String) -> CleanupStep {
    ledger.retain(|r| match resource::of(r) {
        Some(Ec2Resource::PendingInstance { client_token, .. }) => *client_token != token,
        _ => true,
    });
    let waited = PENDING_GRACE.as_secs();
    CleanupStep::ok(format!("no instance launched with client token {token} (none seen in {waited}s)"))
}

/// One look for the instances launched with the `pending` client tokens: those found are terminated
/// (or already going) and leave the ledger.
async fn terminate_pending(
    api: &Api,
    selection: &Selection,
    pending: &[String],
    ledger: &Ledger,
    until: Instant,
) -> Vec<CleanupStep> {
    let mut steps = Vec::new();
    let mut report = sweep::Swept::default();
    for instance in sweep::instances(api, selection, &[], &mut report).await {
        let Some(token) = instance.client_token.as_deref().filter(|t| pending.iter().any(|p| p == t)) else {
            continue;
        };
        let result = if ["shutting-down", "terminated"].contains(&instance.state.as_str()) {
            Ok(1)
        } else {
            api.terminate(std::slice::from_ref(&instance.id), until).await
        };
        if result.is_ok() {
            forget_instance(ledger, &instance);
        }
        steps.push(
            removal_step(format!("terminate {} (launched with client token {token})", instance.id), result)
                .of_key(token),
        );
    }
    steps
}

/// Deletes the run's security groups (those in the ledger and those `found` by the run's tag),
/// all at once, each retried while an instance still uses it, until `until`.
async fn remove_groups(api: &Arc<Api>, found: &[String], ledger: &Ledger, until: Instant) -> Vec<CleanupStep> {
    let (mut targets, mut steps) = recorded_groups(api, ledger).await;
    for id in found {
        targets.entry(id.clone()).or_insert(None);
    }
    let mut removals = tokio::task::JoinSet::new();
    for (id, resource) in targets {
        let api = api.clone();
        removals.spawn(async move {
            let result = security_group::delete(&api, &id, until).await;
            (id, resource, result)
        });
    }
    while let Some(joined) = removals.join_next().await {
        let Ok((id, resource, result)) = joined else {
            steps.push(CleanupStep::failed("delete the run's security groups", "removal task failed"));
            continue;
        };
        if let (Ok(_), Some(resource)) = (&result, &resource) {
            ledger.removed(resource);
        }
        steps.push(removal_step(format!("delete security group {id}"), result).of_key(id));
    }
    steps
}

/// The run's groups the ledger holds in `api`'s region: group id -> its ledger entry. A group
/// whose create never answered is looked for by name; one EC2 does not list was never made.
async fn recorded_groups(api: &Api, ledger: &Ledger) -> (BTreeMap<String, Option<Resource>>, Vec<CleanupStep>) {
    let mut targets = BTreeMap::new();
    let mut steps = Vec::new();
    for resource in ledger.remaining() {
        let Some(Ec2Resource::SecurityGroup { name, id, vpc, region }) = resource::of(&resource) else {
            continue;
        };
        if *region != api.region {
            continue;
        }
        let id = match id {
            Some(id) => Some(id.clone()),
            None => match security_group::find_by_name(api, name, vpc).await {
                Ok(id) => id,
                Err(e) => {
                    steps.push(
                        CleanupStep::failed(format!("look for security group {name}"), e.to_string()).of(&resource),
                    );
                    continue;
                }
            },
        };
        match id {
            Some(id) => {
                targets.insert(id, Some(resource.clone()));
            }
            None => {
                ledger.removed(&resource);
                steps.push(CleanupStep::ok(format!("no security group {name} was created")));
            }
        }
    }
    (targets, steps)
}

/// A removal's outcome as a cleanup step.
pub(super) fn removal_step(action: String, result: Result<u32, ApiError>) -> CleanupStep {
    match result {
        Ok(attempts) => CleanupStep::ok(action).attempts(attempts),
        Err(e) => CleanupStep::failed(action, e.to_string()).attempts(e.attempts),
    }
}
