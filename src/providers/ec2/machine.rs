//! One cell's instance as the engine drives it: waiting for it to run (on the shared watcher), its
//! address, screenshots and console output, reboot, keeping it for debugging, and terminating it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use tokio::time::Instant;

use super::api::{self, Api, Retry};
use super::cleanup::removal_step;
use super::config::AddressKind;
use super::run_command::SsmAgent;
use super::state_reason::Blame;
use super::tags::{EXPIRES_TAG, KEPT_TAG};
use super::watcher::{InstanceInfo, WaitError, Watcher, SETTLED};
use crate::provider::key::{RunKey, PRIVATE_KEY_FILE};
use crate::provider::lifecycle::Tracked;
use crate::provider::{
    AdminPassword, Agent, CleanupStep, ConnectMeaning, Endpoint, Health, Machine, ProviderError, Unreachable,
};

/// How long a console read waits out EC2 not yet knowing an instance it has just reported running.
const NOT_FOUND_PATIENCE: Duration = Duration::from_secs(10);

pub(super) struct Ec2Machine {
    pub api: Arc<Api>,
    pub watcher: Arc<Watcher>,
    pub instance_id: String,
    pub instance_type: String,
    /// The image it was launched from: the cell's id, or what its manifest, parameter or lookup
    /// resolved to (results.json and the report record it).
    pub image_id: String,
    /// Its ledger entry, taken off once EC2 shows it shutting down.
    pub instance: Tracked,
    pub address: AddressKind,
    pub region: String,
    pub cleanup_timeout: Duration,
    pub console_poll_interval: Duration,
    pub info: Option<InstanceInfo>,
    pub login_key: Option<Arc<RunKey>>,
    /// The console text so far: `Latest=true` returns only the most recent part, so it is merged.
    pub console: String,
    pub latest_refused: bool,
    pub notes: Vec<String>,
    /// How long RunInstances waited for a slot under the rate limit.
    pub queued: Duration,
    /// Its SSM agent, when a probe runs commands through it.
    pub agent: Option<Arc<SsmAgent>>,
}

/// Why the instance can't be reached yet, as a lowercase fragment.
#[derive(Debug, thiserror::Error)]
enum NoAddress {
    #[error("instance is not running yet")]
    NotRunning,
    #[error("instance {id} has no {name} (set provider.ec2.address or --probe-host)")]
    Missing { id: String, name: &'static str },
}

/// The states of an instance that stopped or is ending: it runs no more.
const ENDED: [&str; 4] = ["shutting-down", "terminated", "stopping", "stopped"];

impl Ec2Machine {
    /// Whether the instance ended, by whose doing, and how, as a lowercase fragment; `None` while it
    /// runs, or while it is on its way down and EC2 has not said why yet. amiprobe itself terminates
    /// the instance only after the cell has stopped watching it: what is seen here is never its own
    /// doing.
    fn ended(&self) -> Option<(Blame, String)> {
        let info = self.watcher.info(&self.instance_id)?;
        let (id, state) = (&self.instance_id, &info.state);
        if !ENDED.contains(&state.as_str()) {
            return None;
        }
        match &info.state_reason {
            Some(reason) if reason.blame() == Blame::Image => {
                Some((Blame::Image, format!("instance {id} is {state} ({reason})")))
            }
            Some(reason) => Some((
                Blame::Platform,
                format!("instance {id} is {state} ({reason}): the platform's doing, not the image's"),
            )),
            // Only a guest that shut itself down is the image's doing, and EC2 would have said so.
            None if SETTLED.contains(&state.as_str()) => Some((
                Blame::Platform,
                format!("instance {id} is {state} and EC2 gave no reason: not taken for the image's doing"),
            )),
            None => None,
        }
    }

    fn address(&self) -> Result<String, NoAddress> {
        let info = self.info.as_ref().ok_or(NoAddress::NotRunning)?;
        let (value, name) = match self.address {
            AddressKind::PublicIp => (&info.public_ip, "public IP"),
            AddressKind::PrivateIp => (&info.private_ip, "private IP"),
            AddressKind::PublicDns => (&info.public_dns, "public DNS name"),
        };
        value.clone().ok_or_else(|| NoAddress::Missing { id: self.instance_id.clone(), name })
    }

    /// Waits until EC2 shows the instance shutting down (billing stops there), within `wait`.
    async fn confirm_stopping(&self, wait: Duration) -> CleanupStep {
        let id = &self.instance_id;
        match self.watcher.wait_for(id, &["shutting-down", "terminated"], &[], wait).await {
            Ok(info) => {
                self.instance.forget();
                CleanupStep::ok(format!("{id} {}", info.state))
            }
            Err(e) => CleanupStep::failed(format!("confirm {id} is shutting down"), e.to_string())
                .of(self.instance.resource()),
        }
    }
}

/// EC2's answers that refuse the caller itself: its permissions, or credentials it does not take.
const REFUSED: [&str; 4] = ["UnauthorizedOperation", "AuthFailure", "RequestExpired", "Blocked"];

/// GetPasswordData for one instance: EC2 answers an empty string until Windows has made the
/// password (minutes after boot).
struct PasswordData {
    api: Arc<Api>,
    instance_id: String,
}

#[async_trait]
impl AdminPassword for PasswordData {
    async fn encrypted(&self) -> Result<Option<String>, ProviderError> {
        let api = &self.api;
        let retry = Retry::not_found_until(Instant::now() + NOT_FOUND_PATIENCE, api::INSTANCE_NOT_FOUND);
        let (out, _) = api
            .call_retrying(&api.buckets.describe, "GetPasswordData", retry, || {
                api.client.get_password_data().instance_id(&self.instance_id).send()
            })
            .await
            .map_err(|e| {
                let message = format!("GetPasswordData failed: {e}");
                // The caller's permissions or credentials, not the image: the cell is in error.
                let refused = e.no_credentials.is_some() || REFUSED.iter().any(|code| e.is(code));
                if refused {
                    ProviderError::refused(message)
                } else {
                    ProviderError::new(message)
                }
            })?;
        Ok(out.password_data().map(str::trim).filter(|d| !d.is_empty()).map(str::to_string))
    }
}

/// Appends what `newer` adds to `older`, where `newer` may start anywhere inside `older`.
fn merge_console(older: &str, newer: &str) -> String {
    if newer.is_empty() || older.ends_with(newer) {
        return older.to_string();
    }
    if newer.starts_with(older) {
        return newer.to_string();
    }
    // The longest suffix of `older` that `newer` starts with.
    let mut best = 0;
    for (i, _) in older.char_indices() {
        let suffix = &older[i..];
        if newer.starts_with(suffix) {
            best = suffix.len();
            break;
        }
    }
    format!("{older}{}", &newer[best..])
}

#[async_trait]
impl Machine for Ec2Machine {
    fn facts(&self) -> serde_json::Value {
        let info = self.info.clone().unwrap_or_default();
        serde_json::json!({
            "instance_id": self.instance_id,
            "instance_type": self.instance_type,
            "image_id": self.image_id,
            "region": self.region,
            "availability_zone": info.availability_zone,
            "subnet": info.subnet,
            "public_ip": info.public_ip,
            "private_ip": info.private_ip,
            "public_dns": info.public_dns,
        })
    }

    fn launch_notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn queued(&self) -> Duration {
        self.queued
    }

    async fn wait_running(&mut self, timeout: Duration) -> Result<(), ProviderError> {
        let waited = self.watcher.wait_for(&self.instance_id, &["running"], &ENDED, timeout).await;
        let info = match waited {
            Ok(info) => info,
            // A guest that shut itself down ran: the first look at it ([`Machine::stopped`]) fails the
            // cell as the image's doing, where "did not start" would blame the platform.
            Err(WaitError::Fatal { reason: Some(reason), .. }) if reason.blame() == Blame::Image => {
                self.watcher.info(&self.instance_id).unwrap_or_default()
            }
            Err(e) => return Err(ProviderError::new(e.to_string())),
        };
        self.info = Some(info);
        Ok(())
    }

    fn endpoint(&self, guest_port: u16) -> Result<Endpoint, Unreachable> {
        Ok(Endpoint { host: self.address().map_err(|e| Unreachable(e.to_string()))?, port: guest_port })
    }

    fn own_addresses(&self) -> Vec<ipnet::IpNet> {
        let Some(info) = &self.info else {
            return Vec::new();
        };
        let ip = match self.address {
            AddressKind::PrivateIp => &info.private_ip,
            AddressKind::PublicIp | AddressKind::PublicDns => &info.public_ip,
        };
        ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()).map(ipnet::IpNet::from).into_iter().collect()
    }

    fn connect_meaning(&self) -> ConnectMeaning {
        ConnectMeaning::Listening
    }

    fn agent(&self) -> Option<Arc<dyn Agent>> {
        self.agent.clone().map(|agent| agent as Arc<dyn Agent>)
    }

    async fn screenshot(&mut self) -> Result<Vec<u8>, ProviderError> {
        let api = &self.api;
        let retry = Retry::not_found_until(Instant::now() + NOT_FOUND_PATIENCE, api::INSTANCE_NOT_FOUND);
        let out = api
            .call_retrying(&api.buckets.describe, "GetConsoleScreenshot", retry, || {
                api.client.get_console_screenshot().instance_id(&self.instance_id).wake_up(true).send()
            })
            .await
            .map(|(out, _)| out);
        match out {
            Ok(out) => {
                let data =
                    out.image_data().ok_or_else(|| ProviderError::new("GetConsoleScreenshot returned no image"))?;
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| ProviderError::new(format!("GetConsoleScreenshot returned bad base64: {e}")))
            }
            Err(e) if e.is("UnsupportedOperation") => Err(ProviderError::unsupported(e.to_string())),
            Err(e) => Err(ProviderError::new(e.to_string())),
        }
    }

    async fn poll_console(&mut self) -> Result<(), ProviderError> {
        let api = &self.api;
        let latest = !self.latest_refused;
        let retry = Retry::not_found_until(Instant::now() + NOT_FOUND_PATIENCE, api::INSTANCE_NOT_FOUND);
        let out = api
            .call_retrying(&api.buckets.describe, "GetConsoleOutput", retry, || {
                api.client.get_console_output().instance_id(&self.instance_id).set_latest(latest.then_some(true)).send()
            })
            .await
            .map(|(out, _)| out);
        let out = match out {
            // Only Nitro instances serve the latest output: ask again for what they have.
            Err(e)
                if latest
                    && (e.is("UnsupportedOperation")
                        || e.is("InvalidParameterCombination")
                        || e.is("InvalidParameter")) =>
            {
                self.latest_refused = true;
                api.call(&api.buckets.describe, "GetConsoleOutput", || {
                    api.client.get_console_output().instance_id(&self.instance_id).send()
                })
                .await
            }
            other => other,
        }
        .map_err(|e| ProviderError::new(e.to_string()))?;
        if let Some(encoded) = out.output() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| ProviderError::new(format!("GetConsoleOutput returned bad base64: {e}")))?;
            self.console = merge_console(&self.console, &String::from_utf8_lossy(&bytes));
        }
        Ok(())
    }

    async fn console_log(&mut self) -> Result<String, ProviderError> {
        Ok(self.console.clone())
    }

    fn console_poll_interval(&self) -> Duration {
        self.console_poll_interval
    }

    /// Only a guest that shut itself down (`Client.InstanceInitiatedShutdown`): an instance the
    /// platform ended is [`Machine::health`]'s.
    async fn stopped(&mut self) -> Option<String> {
        // The shared watcher already describes the instance: no call of its own.
        match self.ended()? {
            (Blame::Image, why) => Some(why),
            (Blame::Platform, _) => None,
        }
    }

    /// An instance the platform ended (its StateReason), else its status checks.
    async fn health(&mut self) -> Option<Health> {
        if let Some((Blame::Platform, why)) = self.ended() {
            return Some(Health::InfrastructureError(why));
        }
        // The shared watcher's DescribeInstanceStatus, as for `stopped`: no call of its own.
        self.watcher.checks(&self.instance_id)?.health()
    }

    fn login_key(&self) -> Option<Arc<RunKey>> {
        self.login_key.clone()
    }

    async fn keep(&mut self, until: SystemTime) -> Result<String, ProviderError> {
        let api = &self.api;
        let expires = humantime::format_rfc3339_seconds(until).to_string();
        let tag = |key: &str| aws_sdk_ec2::types::Tag::builder().key(key).value(&expires).build();
        api.call(&api.buckets.mutating, "CreateTags", || {
            api.client.create_tags().resources(&self.instance_id).tags(tag(EXPIRES_TAG)).tags(tag(KEPT_TAG)).send()
        })
        .await
        .map_err(|e| ProviderError::new(format!("CreateTags failed: {e}")))?;
        // Out of the ledger: the run's end removes what the ledger holds.
        self.instance.forget();
        let address = self.address().unwrap_or_else(|_| "ADDRESS".into());
        let key = if self.login_key.is_some() { format!(" -i RESULTS/{PRIVATE_KEY_FILE}") } else { String::new() };
        Ok(format!(
            "kept {} for debugging until {expires} (`amiprobe sweep` removes it after that): ssh{key} USER@{address}",
            self.instance_id
        ))
    }

    fn admin_password(&self) -> Option<Arc<dyn AdminPassword>> {
        Some(Arc::new(PasswordData { api: self.api.clone(), instance_id: self.instance_id.clone() }))
    }

    async fn reboot(&mut self) -> Result<(), ProviderError> {
        let api = &self.api;
        let retry = Retry::not_found_until(Instant::now() + NOT_FOUND_PATIENCE, api::INSTANCE_NOT_FOUND);
        api.call_retrying(&api.buckets.mutating, "RebootInstances", retry, || {
            api.client.reboot_instances().instance_ids(&self.instance_id).send()
        })
        .await
        .map_err(|e| ProviderError::new(format!("RebootInstances failed: {e}")))?;
        if let Some(agent) = &self.agent {
            agent.rebooted();
        }
        Ok(())
    }

    /// Terminates the instance, retried until the cleanup deadline. It counts as removed once EC2
    /// shows it shutting down (billing stops there); with `hurry`, once TerminateInstances is
    /// accepted. The run's key pair and security groups go at the run's end, after every instance.
    async fn terminate(&mut self, hurry: bool) -> Vec<CleanupStep> {
        let until = Instant::now() + self.cleanup_timeout;
        let id = &self.instance_id;
        let result = self.api.terminate_states(std::slice::from_ref(id), until).await;
        let answered = match &result {
            Ok((_, states)) => states.iter().find(|(i, _)| i == id).map(|(_, state)| state.clone()),
            Err(_) => None,
        };
        let accepted = result.is_ok();
        let removal = removal_step(format!("terminate {id}"), result.map(|(attempts, _)| attempts));
        let mut steps = vec![removal.of(self.instance.resource())];
        let gone = answered.filter(|state| ["shutting-down", "terminated"].contains(&state.as_str()));
        if let (true, Some(state)) = (accepted, &gone) {
            // The answer itself says billing stopped: nothing to wait for.
            steps.push(CleanupStep::ok(format!("{id} {state}")));
            self.instance.forget();
        } else if accepted && hurry {
            self.instance.forget();
        } else if accepted {
            steps.push(self.confirm_stopping(until.saturating_duration_since(Instant::now())).await);
        }
        self.watcher.unwatch(id);
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_merge_keeps_everything_once() {
        assert_eq!(merge_console("", "a\nb\n"), "a\nb\n");
        assert_eq!(merge_console("a\nb\n", "a\nb\nc\n"), "a\nb\nc\n");
        assert_eq!(merge_console("a\nb\nc\n", "b\nc\nd\n"), "a\nb\nc\nd\n");
        assert_eq!(merge_console("a\nb\n", "b\n"), "a\nb\n");
        assert_eq!(merge_console("a\n", "x\n"), "a\nx\n");
    }
}
