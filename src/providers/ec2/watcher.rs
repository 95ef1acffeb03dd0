//! One DescribeInstances per tick for every in-flight instance of the run, shared by all cells, and
//! one DescribeInstanceStatus per tick for those of them that run (their status checks).
//!
//! Per-instance polling would cost a call per cell per tick and hit EC2's throttling on a large matrix;
//! here cells register their instance and wait on a shared snapshot instead.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, InstanceStatusSummary};
use tokio::sync::watch;

use super::api::{Api, ApiError};
use super::state_reason::StateReason;
use crate::provider::{lock, Health};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceInfo {
    pub state: String,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub public_dns: Option<String>,
    pub availability_zone: Option<String>,
    pub instance_type: Option<String>,
    pub subnet: Option<String>,
    /// Why EC2 last changed its state (set once it stops or ends).
    pub state_reason: Option<StateReason>,
}

/// An instance's two status checks as DescribeInstanceStatus last told them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusChecks {
    /// The system status (AWS's hardware, network and power): `ok`, `impaired`, `initializing`,
    /// `insufficient-data`, `not-applicable`.
    pub system: String,
    /// The instance status (the guest answers ARP, i.e. its OS and network came up): same values.
    pub instance: String,
    /// The names of the system check's failed details (`reachability`).
    pub system_failed: Vec<String>,
    /// The names of the instance check's failed details (`reachability`).
    pub instance_failed: Vec<String>,
}

impl StatusChecks {
    /// What an impaired check says about the cell. The system check first: AWS's own failure can
    /// take the instance check down with it, and then the image is not to blame.
    pub fn health(&self) -> Option<Health> {
        let failed = |details: &[String]| match details {
            [] => "impaired".to_string(),
            names => format!("{} impaired", names.join(", ")),
        };
        if self.system == "impaired" {
            return Some(Health::InfrastructureError(format!(
                "system status check failed: {} (an AWS infrastructure problem, not the image)",
                failed(&self.system_failed)
            )));
        }
        (self.instance == "impaired")
            .then(|| Health::ImageFailure(format!("instance status check failed: {}", failed(&self.instance_failed))))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub instances: HashMap<String, InstanceInfo>,
    pub last_error: Option<String>,
    pub checks: HashMap<String, StatusChecks>,
    pub last_checks_error: Option<String>,
}

/// Why an instance did not reach the state waited for, as a lowercase fragment.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WaitError {
    /// `reason`: EC2's StateReason, when it gave one.
    #[error("instance {id} is {state}{}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Fatal { id: String, state: String, reason: Option<StateReason> },
    #[error("instance watcher stopped")]
    WatcherStopped,
    /// `last_error`: what the last DescribeInstances said, if it failed.
    #[error("instance {id} still {state} after {secs}s{}", describe_error(last_error))]
    TimedOut { id: String, state: String, secs: u64, last_error: Option<String> },
}

/// "; last describe error: ..." when there was one.
fn describe_error(last_error: &Option<String>) -> String {
    last_error.as_ref().map(|e| format!("; last describe error: {e}")).unwrap_or_default()
}

/// The states EC2 settles an ended instance in; on its way there (`stopping`, `shutting-down`) it
/// may not have said why yet.
pub const SETTLED: [&str; 2] = ["terminated", "stopped"];

/// The pace while instances are pending: "running" is seen half a second late on average, for about
/// one call a second for the whole run (at 0.5s the shared poll was most of a small run's calls).
const FAST_POLL: Duration = Duration::from_secs(1);

pub struct Watcher {
    ids: Mutex<BTreeSet<String>>,
    tx: watch::Sender<Snapshot>,
}

impl Watcher {
    /// Starts the polling task; it ends when the last `Arc<Watcher>` is dropped. Instances are
    /// described every `interval` (faster while one is pending), their status checks every
    /// `status_interval`.
    pub fn start(api: Arc<Api>, interval: Duration, status_interval: Duration) -> Arc<Watcher> {
        let (tx, _) = watch::channel(Snapshot::default());
        let watcher = Arc::new(Watcher { ids: Mutex::new(BTreeSet::new()), tx });
        let weak = Arc::downgrade(&watcher);
        // While an instance is pending (or not yet seen), "running" is what its cell waits for: poll
        // at the fast pace then, within the describe budget (one call for all instances).
        let fast = interval.min(FAST_POLL);
        tokio::spawn(async move {
            let mut last_checks: Option<tokio::time::Instant> = None;
            let mut pause = fast;
            loop {
                tokio::time::sleep(pause).await;
                let Some(watcher) = weak.upgrade() else {
                    return;
                };
                let ids: Vec<String> = watcher.ids().into_iter().collect();
                pause = if watcher.waiting(&ids) { fast } else { interval };
                if ids.is_empty() {
                    continue;
                }
                let result = describe(&api, &ids).await;
                watcher.tx.send_modify(|snap| match result {
                    Ok(found) => {
                        snap.instances.extend(found);
                        snap.last_error = None;
                    }
                    Err(e) => snap.last_error = Some(e.to_string()),
                });
                pause = if watcher.waiting(&ids) { fast } else { interval };
                // Status checks change slowly: at their own pace, counted from the last read.
                if last_checks.is_some_and(|at| at.elapsed() < status_interval) {
                    continue;
                }
                // Only running instances have status checks; asking by id for one EC2 does not know
                // yet would fail the whole call, and an instance seen running is known.
                let running: Vec<String> = {
                    let snap = watcher.tx.borrow();
                    ids.iter()
                        .filter(|id| snap.instances.get(*id).is_some_and(|i| i.state == "running"))
                        .cloned()
                        .collect()
                };
                if running.is_empty() {
                    continue;
                }
                last_checks = Some(tokio::time::Instant::now());
                let result = describe_status(&api, &running).await;
                watcher.tx.send_modify(|snap| match result {
                    Ok(found) => {
                        snap.checks.extend(found);
                        snap.last_checks_error = None;
                    }
                    Err(e) => snap.last_checks_error = Some(e.to_string()),
                });
            }
        });
        watcher
    }

    /// Whether any of `ids` is pending or not seen yet: a cell is waiting for it to run.
    fn waiting(&self, ids: &[String]) -> bool {
        let snap = self.tx.borrow();
        ids.is_empty() || ids.iter().any(|id| snap.instances.get(id).is_none_or(|i| i.state == "pending"))
    }

    fn ids(&self) -> BTreeSet<String> {
        lock(&self.ids).clone()
    }

    pub fn watch(&self, id: &str) {
        lock(&self.ids).insert(id.to_string());
    }

    pub fn unwatch(&self, id: &str) {
        lock(&self.ids).remove(id);
    }

    /// The instance as last described, if it has been seen.
    pub fn info(&self, id: &str) -> Option<InstanceInfo> {
        self.tx.borrow().instances.get(id).cloned()
    }

    /// The instance's status checks as last described, once it has been seen running.
    pub fn checks(&self, id: &str) -> Option<StatusChecks> {
        self.tx.borrow().checks.get(id).cloned()
    }

    /// Waits until the instance's state is one of `states`; fails on `fatal` states or timeout. A
    /// fatal state on the way down (`shutting-down`) waits for EC2's reason, or for the state it
    /// settles in: the reason says who is to blame.
    pub async fn wait_for(
        &self,
        id: &str,
        states: &[&str],
        fatal: &[&str],
        timeout: Duration,
    ) -> Result<InstanceInfo, WaitError> {
        let mut rx = self.tx.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let seen = rx.borrow_and_update().instances.get(id).cloned();
                if let Some(info) = seen {
                    if states.contains(&info.state.as_str()) {
                        return Ok(info);
                    }
                    let said = info.state_reason.is_some() || SETTLED.contains(&info.state.as_str());
                    if fatal.contains(&info.state.as_str()) && said {
                        let reason = info.state_reason;
                        return Err(WaitError::Fatal { id: id.to_string(), state: info.state, reason });
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(WaitError::WatcherStopped);
                }
            }
        })
        .await;
        match waited {
            Ok(r) => r,
            Err(_) => {
                let snap = self.tx.borrow();
                let state = snap.instances.get(id).map_or("unknown".to_string(), |i| i.state.clone());
                let last_error = snap.last_error.clone();
                Err(WaitError::TimedOut { id: id.to_string(), state, secs: timeout.as_secs(), last_error })
            }
        }
    }
}

async fn describe(api: &Api, ids: &[String]) -> Result<HashMap<String, InstanceInfo>, ApiError> {
    let mut found = HashMap::new();
    // A filter (unlike InstanceIds) does not fail the whole call for an id EC2 does not know yet.
    for chunk in ids.chunks(200) {
        let mut token: Option<String> = None;
        loop {
            let filter = Filter::builder().name("instance-id").set_values(Some(chunk.to_vec())).build();
            let next = token.clone();
            let out = api
                .call(&api.buckets.describe, "DescribeInstances", || {
                    api.client.describe_instances().filters(filter.clone()).set_next_token(next.clone()).send()
                })
                .await?;
            for instance in out.reservations().iter().flat_map(|r| r.instances()) {
                let Some(id) = instance.instance_id() else {
                    continue;
                };
                found.insert(
                    id.to_string(),
                    InstanceInfo {
                        state: instance
                            .state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str().to_string())
                            .unwrap_or_default(),
                        public_ip: instance.public_ip_address().map(str::to_string),
                        private_ip: instance.private_ip_address().map(str::to_string),
                        public_dns: instance.public_dns_name().filter(|d| !d.is_empty()).map(str::to_string),
                        availability_zone: instance.placement().and_then(|p| p.availability_zone()).map(str::to_string),
                        instance_type: instance.instance_type().map(|t| t.as_str().to_string()),
                        subnet: instance.subnet_id().map(str::to_string),
                        state_reason: instance.state_reason().and_then(|r| StateReason::new(r.code(), r.message())),
                    },
                );
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(found)
}

/// The status checks of running instances, by id: one call per 100 ids (EC2 takes no page size with
/// ids), every state included so that none is silently left out.
async fn describe_status(api: &Api, ids: &[String]) -> Result<HashMap<String, StatusChecks>, ApiError> {
    let mut found = HashMap::new();
    for chunk in ids.chunks(100) {
        let mut token: Option<String> = None;
        loop {
            let next = token.clone();
            let out = api
                .call(&api.buckets.describe, "DescribeInstanceStatus", || {
                    api.client
                        .describe_instance_status()
                        .set_instance_ids(Some(chunk.to_vec()))
                        .include_all_instances(true)
                        .set_next_token(next.clone())
                        .send()
                })
                .await?;
            for status in out.instance_statuses() {
                let Some(id) = status.instance_id() else {
                    continue;
                };
                let system = status.system_status();
                let instance = status.instance_status();
                found.insert(
                    id.to_string(),
                    StatusChecks {
                        system: system.and_then(|s| s.status()).map(|s| s.as_str().to_string()).unwrap_or_default(),
                        instance: instance.and_then(|s| s.status()).map(|s| s.as_str().to_string()).unwrap_or_default(),
                        system_failed: system.map(failed_details).unwrap_or_default(),
                        instance_failed: instance.map(failed_details).unwrap_or_default(),
                    },
                );
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(found)
}

fn failed_details(summary: &InstanceStatusSummary) -> Vec<String> {
    summary
        .details()
        .iter()
        .filter(|d| d.status().is_some_and(|s| s.as_str() == "failed"))
        .filter_map(|d| d.name().map(|n| n.as_str().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(system: &str, instance: &str) -> StatusChecks {
        let failed = |s: &str| if s == "impaired" { vec!["reachability".to_string()] } else { Vec::new() };
        StatusChecks {
            system: system.into(),
            instance: instance.into(),
            system_failed: failed(system),
            instance_failed: failed(instance),
        }
    }

    #[test]
    fn impaired_checks_name_who_is_to_blame() {
        assert_eq!(checks("ok", "ok").health(), None);
        assert_eq!(checks("initializing", "insufficient-data").health(), None);
        assert_eq!(
            checks("ok", "impaired").health(),
            Some(Health::ImageFailure("instance status check failed: reachability impaired".into()))
        );
        let Some(Health::InfrastructureError(why)) = checks("impaired", "impaired").health() else {
            panic!("a system impairment is an infrastructure error");
        };
        assert!(why.starts_with("system status check failed: reachability impaired"), "{why}");
    }
}
