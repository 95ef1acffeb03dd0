//! The `ec2` provider: real EC2 through the official SDK.
//!
//! Per cell: an ephemeral key pair, RunInstances (tagged with the run id, the cell and an expiry, with
//! a client token so a retried launch never starts a second instance), a shared DescribeInstances
//! poller, GetConsoleScreenshot and GetConsoleOutput on the schedule, and TerminateInstances plus
//! DeleteKeyPair in every outcome. `amiprobe sweep` removes what a killed run left, by its tags.

mod api;
mod instance_types;
pub mod sweep;
mod watcher;

use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use base64::Engine as _;
use tokio::sync::OnceCell;

use super::{CleanupStep, LaunchContext, Ledger, Machine, Provider, ProviderError, Resource};
use crate::plan::{Cell, LaunchPlan, Plan};
use crate::probe::{ConnectMeaning, Endpoint};
use crate::spec::{AddressKind, Ec2Spec, KeyPair};
pub use api::Api;
pub use instance_types::screenshot_unsupported;
use watcher::{InstanceInfo, Watcher};

pub const RUN_ID_TAG: &str = "amiprobe:run-id";
pub const CELL_TAG: &str = "amiprobe:cell";
pub const EXPIRES_TAG: &str = "amiprobe:expires";

/// How long a terminated instance is waited for before cleanup reports it as not confirmed.
const TERMINATE_WAIT: Duration = Duration::from_secs(300);

pub fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

pub struct Ec2Provider {
    spec: Ec2Spec,
    launch: LaunchPlan,
    spec_name: String,
    run_timeout: Duration,
    connected: OnceCell<(Arc<Api>, Arc<Watcher>)>,
}

impl Ec2Provider {
    pub fn new(spec: Ec2Spec, plan: &Plan) -> Self {
        Ec2Provider {
            spec,
            launch: plan.launch.clone(),
            spec_name: plan.name.clone(),
            run_timeout: plan.run_timeout,
            connected: OnceCell::new(),
        }
    }

    async fn api(&self) -> Result<&(Arc<Api>, Arc<Watcher>), ProviderError> {
        self.connected
            .get_or_try_init(|| async {
                let api = Arc::new(Api::connect(&self.spec, None).await.map_err(ProviderError::new)?);
                let watcher = Watcher::start(api.clone(), self.spec.poll_interval);
                Ok((api, watcher))
            })
            .await
    }

    fn tags(&self, run_id: &str, cell: &Cell, resource: ResourceType) -> TagSpecification {
        let expires = SystemTime::now() + self.run_timeout + Duration::from_secs(3600);
        let mut tags = vec![
            (RUN_ID_TAG.to_string(), run_id.to_string()),
            (CELL_TAG.to_string(), cell.id.0.clone()),
            (EXPIRES_TAG.to_string(), humantime::format_rfc3339_seconds(expires).to_string()),
            ("Name".to_string(), format!("amiprobe {} {}", self.spec_name, cell.id)),
        ];
        tags.extend(self.launch.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(tags.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
            .build()
    }
}

/// The (instance type, subnet) pairs to try in order: the cell's own, then its fallbacks.
fn candidates(cell: &Cell, spec: &Ec2Spec) -> Vec<(String, Option<String>)> {
    let instance_type = cell.instance_type.clone().unwrap_or_default();
    let mut out = vec![(instance_type.clone(), cell.subnet.clone())];
    for subnet in &spec.fallback.subnet {
        out.push((instance_type.clone(), Some(subnet.clone())));
    }
    for t in &spec.fallback.instance_type {
        out.push((t.clone(), cell.subnet.clone()));
    }
    out.dedup();
    out
}

/// A client token (at most 64 ASCII characters) stable for one launch attempt of one cell.
fn client_token(run_id: &str, cell: &Cell, attempt: usize) -> String {
    let hash = crate::plan::fnv1a(cell.id.0.as_bytes());
    let mut token = format!("ap-{run_id}-{hash:016x}-{attempt}");
    token.truncate(64);
    token
}

#[async_trait]
impl Provider for Ec2Provider {
    async fn preflight(&self, plan: &Plan) -> Result<Vec<String>, ProviderError> {
        self.api().await?;
        Ok(plan.warnings())
    }

    async fn launch(&self, cell: &Cell, ctx: &LaunchContext) -> Result<Box<dyn Machine>, ProviderError> {
        let (api, watcher) = self.api().await?;
        let mut key_name = None;
        let mut notes = Vec::new();
        if let KeyPair::Existing(name) = &self.launch.key_pair {
            key_name = Some(name.clone());
        }
        let mut ephemeral_key = None;
        if self.launch.key_pair == KeyPair::Ephemeral {
            let name = format!("amiprobe-{}-{}", ctx.run_id, cell.id);
            let tags = self.tags(&ctx.run_id, cell, ResourceType::KeyPair);
            let out = api
                .call(&api.buckets.mutating, "CreateKeyPair", || {
                    api.client.create_key_pair().key_name(&name).tag_specifications(tags.clone()).send()
                })
                .await
                .map_err(|e| ProviderError::new(e.to_string()))?;
            let resource = Resource::KeyPair { name: name.clone(), cell: cell.id.0.clone() };
            ctx.ledger.record(resource.clone());
            if self.launch.keep_private_key {
                if let Some(material) = out.key_material() {
                    if let Err(e) = write_private_key(ctx, cell, material) {
                        notes.push(format!("failed to keep the private key: {e}"));
                    }
                }
            }
            key_name = Some(name);
            ephemeral_key = Some(resource);
        }

        let user_data = self.launch.user_data.as_ref().map(|d| base64::engine::general_purpose::STANDARD.encode(d));
        let tags = self.tags(&ctx.run_id, cell, ResourceType::Instance);
        let volume_tags = self.tags(&ctx.run_id, cell, ResourceType::Volume);
        let mut launched = None;
        let mut last_error = None;
        for (attempt, (instance_type, subnet)) in candidates(cell, &self.spec).into_iter().enumerate() {
            if attempt > 0 {
                notes.push(format!(
                    "capacity fallback: trying {instance_type} in {}",
                    subnet.as_deref().unwrap_or("the default subnet")
                ));
            }
            let token = client_token(&ctx.run_id, cell, attempt);
            let result = api
                .call(&api.buckets.run_instances, "RunInstances", || {
                    api.client
                        .run_instances()
                        .image_id(&cell.image)
                        .instance_type(InstanceType::from(instance_type.as_str()))
                        .min_count(1)
                        .max_count(1)
                        .set_subnet_id(subnet.clone())
                        .set_security_group_ids(
                            (!cell.security_groups.is_empty()).then(|| cell.security_groups.clone()),
                        )
                        .set_key_name(key_name.clone())
                        .set_user_data(user_data.clone())
                        .tag_specifications(tags.clone())
                        .tag_specifications(volume_tags.clone())
                        .client_token(&token)
                        .send()
                })
                .await;
            match result {
                Ok(out) => {
                    let id = out.instances().first().and_then(|i| i.instance_id()).map(str::to_string);
                    match id {
                        Some(id) => {
                            launched = Some((id, instance_type));
                            break;
                        }
                        None => {
                            last_error = Some("RunInstances returned no instance".to_string());
                            break;
                        }
                    }
                }
                Err(e) if e.is("InsufficientInstanceCapacity") => {
                    notes.push(format!(
                        "no capacity for {instance_type} in {}: {}",
                        subnet.as_deref().unwrap_or("the default subnet"),
                        e.message
                    ));
                    last_error = Some(e.to_string());
                }
                Err(e) => {
                    last_error = Some(e.to_string());
                    break;
                }
            }
        }

        let Some((instance_id, instance_type)) = launched else {
            // Nothing runs: the key pair goes now rather than at the end of the run.
            if let Some(resource @ Resource::KeyPair { name, .. }) = &ephemeral_key {
                if api.delete_key_pair(name).await.is_ok() {
                    ctx.ledger.removed(resource);
                }
            }
            let mut message = last_error.unwrap_or_else(|| "RunInstances failed".into());
            if notes.len() > 1 {
                message = format!(
                    "{message} (after {} capacity fallbacks)",
                    notes.iter().filter(|n| n.starts_with("capacity")).count()
                );
            }
            return Err(ProviderError::new(message));
        };
        let instance = Resource::Instance { id: instance_id.clone(), cell: cell.id.0.clone() };
        ctx.ledger.record(instance.clone());
        watcher.watch(&instance_id);
        Ok(Box::new(Ec2Machine {
            api: api.clone(),
            watcher: watcher.clone(),
            instance_id,
            instance_type,
            instance,
            key_pair: ephemeral_key,
            ledger: ctx.ledger.clone(),
            address: self.spec.address,
            region: api.region.clone(),
            info: None,
            console: String::new(),
            latest_refused: false,
            notes,
        }))
    }

    async fn remove_leftovers(&self, leftovers: Vec<Resource>) -> Vec<CleanupStep> {
        let Ok((api, _)) = self.api().await else {
            return vec![CleanupStep::failed("connect to EC2", "no client to remove leftovers with")];
        };
        let mut steps = Vec::new();
        let ids: Vec<String> = leftovers
            .iter()
            .filter_map(|r| if let Resource::Instance { id, .. } = r { Some(id.clone()) } else { None })
            .collect();
        if !ids.is_empty() {
            let action = format!("terminate {}", ids.join(", "));
            match api.terminate(&ids).await {
                Ok(_) => steps.push(CleanupStep::ok(action)),
                Err(e) => steps.push(CleanupStep::failed(action, e.to_string())),
            }
        }
        for resource in leftovers {
            if let Resource::KeyPair { name, .. } = resource {
                let action = format!("delete key pair {name}");
                match api.delete_key_pair(&name).await {
                    Ok(_) => steps.push(CleanupStep::ok(action)),
                    Err(e) => steps.push(CleanupStep::failed(action, e.to_string())),
                }
            }
        }
        steps
    }
}

/// The private key goes next to the results (`keys/`), mode 0600, and into no report.
fn write_private_key(ctx: &LaunchContext, cell: &Cell, material: &str) -> std::io::Result<()> {
    let dir = ctx.cell_dir.parent().and_then(|p| p.parent()).unwrap_or(&ctx.cell_dir).join("keys");
    std::fs::create_dir_all(&dir)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(format!("{}.pem", cell.id)))?;
    std::io::Write::write_all(&mut file, material.as_bytes())
}

struct Ec2Machine {
    api: Arc<Api>,
    watcher: Arc<Watcher>,
    instance_id: String,
    instance_type: String,
    instance: Resource,
    key_pair: Option<Resource>,
    ledger: Ledger,
    address: AddressKind,
    region: String,
    info: Option<InstanceInfo>,
    /// The console text so far: `Latest=true` returns only the most recent part, so it is merged.
    console: String,
    latest_refused: bool,
    notes: Vec<String>,
}

impl Ec2Machine {
    fn address(&self) -> Result<String, String> {
        let info = self.info.as_ref().ok_or("instance is not running yet")?;
        let (value, name) = match self.address {
            AddressKind::PublicIp => (&info.public_ip, "public IP"),
            AddressKind::PrivateIp => (&info.private_ip, "private IP"),
            AddressKind::PublicDns => (&info.public_dns, "public DNS name"),
        };
        value.clone().ok_or_else(|| {
            format!("instance {} has no {name} (set provider.ec2.address or --probe-host)", self.instance_id)
        })
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

    async fn wait_running(&mut self, timeout: Duration) -> Result<(), ProviderError> {
        let info = self
            .watcher
            .wait_for(&self.instance_id, &["running"], &["shutting-down", "terminated", "stopping", "stopped"], timeout)
            .await
            .map_err(ProviderError::new)?;
        self.info = Some(info);
        Ok(())
    }

    fn endpoint(&self, guest_port: u16) -> Result<Endpoint, String> {
        Ok(Endpoint { host: self.address()?, port: guest_port })
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

    async fn screenshot(&mut self) -> Result<Vec<u8>, ProviderError> {
        let api = &self.api;
        let out = api
            .call(&api.buckets.describe, "GetConsoleScreenshot", || {
                api.client.get_console_screenshot().instance_id(&self.instance_id).wake_up(true).send()
            })
            .await;
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
        let out = api
            .call(&api.buckets.describe, "GetConsoleOutput", || {
                api.client.get_console_output().instance_id(&self.instance_id).set_latest(latest.then_some(true)).send()
            })
            .await;
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

    async fn terminate(&mut self, hurry: bool) -> Vec<CleanupStep> {
        let api = self.api.clone();
        let mut steps = Vec::new();
        let id = self.instance_id.clone();
        match api.terminate(std::slice::from_ref(&id)).await {
            Ok(_) => {
                steps.push(CleanupStep::ok(format!("terminate {id}")));
                if hurry {
                    self.ledger.removed(&self.instance);
                } else {
                    match self.watcher.wait_for(&id, &["terminated"], &[], TERMINATE_WAIT).await {
                        Ok(_) => {
                            steps.push(CleanupStep::ok(format!("{id} terminated")));
                            self.ledger.removed(&self.instance);
                        }
                        Err(e) => steps.push(CleanupStep::failed(format!("wait for {id} to terminate"), e)),
                    }
                }
            }
            // Left in the ledger: the engine tries again at the end of the run.
            Err(e) => steps.push(CleanupStep::failed(format!("terminate {id}"), e.to_string())),
        }
        self.watcher.unwatch(&id);
        if let Some(resource @ Resource::KeyPair { name, .. }) = &self.key_pair {
            match api.delete_key_pair(name).await {
                Ok(_) => {
                    steps.push(CleanupStep::ok(format!("delete key pair {name}")));
                    self.ledger.removed(resource);
                }
                Err(e) => steps.push(CleanupStep::failed(format!("delete key pair {name}"), e.to_string())),
            }
        }
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

    #[test]
    fn client_tokens_fit_and_differ_per_attempt() {
        let cell = Cell {
            index: 0,
            id: crate::plan::CellId("ami-1_t3.micro".repeat(10)),
            image: "ami-1".into(),
            instance_type: None,
            subnet: None,
            security_groups: vec![],
        };
        let a = client_token("20261125-093000-abcd", &cell, 0);
        assert!(a.len() <= 64 && a.is_ascii());
        assert_ne!(a, client_token("20261125-093000-abcd", &cell, 1));
        assert_eq!(a, client_token("20261125-093000-abcd", &cell, 0));
    }
}
