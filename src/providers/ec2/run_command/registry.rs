//! Which instances' SSM agents have registered: one DescribeInstanceInformation per tick for every
//! instance a cell is waiting on in the region, shared by the run's cells like the instance watcher
//! (`watcher.rs`): a call per cell per tick would spend SSM's small budget on a large matrix.
//!
//! Only instances someone waits on are asked about: once a cell has seen its agent online it sends
//! commands and leaves the poll, until a reboot makes it wait for the agent again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_ssm::types::InstanceInformationStringFilter;
use tokio::sync::watch;

use super::super::api::{Api, ApiError};
use super::super::ssm::Ssm;
use crate::provider::lock;

/// SSM takes at most 50 results a page, and this many ids in one filter keep it to one page.
const IDS_PER_CALL: usize = 50;

/// An instance's agent as DescribeInstanceInformation last told it.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// `Online`, `ConnectionLost`, `Inactive`.
    pub ping_status: String,
    /// When the agent last told SSM it is alive: after a reboot, a newer one means it is back.
    pub last_ping: Option<SystemTime>,
}

impl Registration {
    /// Online, and heard from after `since` (if given).
    pub fn online_since(&self, since: Option<SystemTime>) -> bool {
        self.ping_status == "Online" && since.is_none_or(|since| self.last_ping.is_some_and(|ping| ping > since))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub agents: HashMap<String, Registration>,
    /// What the last DescribeInstanceInformation said, if it failed: the reason a wait ran out.
    pub last_error: Option<ApiError>,
}

pub struct Registry {
    /// Instance id -> how many waits want it asked about.
    waiting: Mutex<BTreeMap<String, usize>>,
    tx: watch::Sender<Seen>,
}

/// Takes an instance off the poll when its wait ends, however it ends.
struct Waiting<'a>(&'a Registry, &'a str);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waiting = lock(&self.0.waiting);
        if let Some(n) = waiting.get_mut(self.1) {
            *n -= 1;
            if *n == 0 {
                waiting.remove(self.1);
            }
        }
    }
}

impl Registry {
    /// Starts the polling task; it ends when the last `Arc<Registry>` is dropped.
    pub fn start(api: Arc<Api>, ssm: Arc<Ssm>, interval: Duration) -> Arc<Registry> {
        let (tx, _) = watch::channel(Seen::default());
        let registry = Arc::new(Registry { waiting: Mutex::new(BTreeMap::new()), tx });
        let weak = Arc::downgrade(&registry);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(registry) = weak.upgrade() else { return };
                let ids: Vec<String> = lock(&registry.waiting).keys().cloned().collect();
                if ids.is_empty() {
                    continue;
                }
                let result = describe(&api, &ssm, &ids).await;
                registry.tx.send_modify(|seen| match result {
                    Ok(found) => {
                        seen.agents.extend(found);
                        seen.last_error = None;
                    }
                    Err(e) => seen.last_error = Some(e),
                });
            }
        });
        registry
    }

    /// The instance's agent as last seen, if it has registered.
    pub fn registration(&self, id: &str) -> Option<Registration> {
        self.tx.borrow().agents.get(id).cloned()
    }

    /// Waits, for at most `wait`, until the instance's agent is online and was heard from after
    /// `since`; else what was last known (`None`: never registered) and the last describe error.
    pub async fn wait_online(
        &self,
        id: &str,
        since: Option<SystemTime>,
        wait: Duration,
    ) -> Result<(), (Option<Registration>, Option<ApiError>)> {
        let mut rx = self.tx.subscribe();
        if rx.borrow_and_update().agents.get(id).is_some_and(|r| r.online_since(since)) {
            return Ok(());
        }
        *lock(&self.waiting).entry(id.to_string()).or_default() += 1;
        let _waiting = Waiting(self, id);
        let online = tokio::time::timeout(wait, async {
            loop {
                if rx.changed().await.is_err() {
                    return false;
                }
                if rx.borrow_and_update().agents.get(id).is_some_and(|r| r.online_since(since)) {
                    return true;
                }
            }
        })
        .await;
        if online == Ok(true) {
            return Ok(());
        }
        let seen = self.tx.borrow();
        Err((seen.agents.get(id).cloned(), seen.last_error.clone()))
    }
}

/// The agents of `ids` that have registered, by instance id (an instance whose agent never
/// registered is not in SSM's answer at all).
async fn describe(api: &Api, ssm: &Ssm, ids: &[String]) -> Result<HashMap<String, Registration>, ApiError> {
    let mut found = HashMap::new();
    for chunk in ids.chunks(IDS_PER_CALL) {
        let filter = InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .set_values(Some(chunk.to_vec()))
            .build()
            .map_err(|e| ApiError::unsent("DescribeInstanceInformation", e.to_string()))?;
        let mut token: Option<String> = None;
        loop {
            let next = token.clone();
            let out = api
                .call(&ssm.bucket, "DescribeInstanceInformation", || {
                    ssm.client
                        .describe_instance_information()
                        .filters(filter.clone())
                        .max_results(IDS_PER_CALL as i32)
                        .set_next_token(next.clone())
                        .send()
                })
                .await?;
            for info in out.instance_information_list() {
                let Some(id) = info.instance_id() else { continue };
                let registration = Registration {
                    ping_status: info.ping_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                    last_ping: info.last_ping_date_time().and_then(|t| SystemTime::try_from(*t).ok()),
                };
                found.insert(id.to_string(), registration);
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_reboot_only_a_newer_ping_counts() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let seen = |status: &str, ping: u64| Registration {
            ping_status: status.into(),
            last_ping: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(ping)),
        };
        assert!(seen("Online", 900).online_since(None));
        assert!(!seen("Online", 900).online_since(Some(t0)), "the ping before the reboot");
        assert!(seen("Online", 1_001).online_since(Some(t0)));
        assert!(!seen("ConnectionLost", 1_001).online_since(Some(t0)));
        assert!(!Registration { ping_status: "Online".into(), last_ping: None }.online_since(Some(t0)));
    }
}
