//! The `ec2` provider: real EC2 through the official SDK.
//!
//! Per cell: an ephemeral key pair, RunInstances (tagged with the run id, the cell and an expiry, with
//! a client token so a retried launch never starts a second instance), a shared DescribeInstances
//! poller, GetConsoleScreenshot and GetConsoleOutput on the schedule, and TerminateInstances plus
//! DeleteKeyPair in every outcome. Per run and VPC, with `security_group: ephemeral`, one security
//! group for the probes (`security_group.rs`), deleted in the run's final sweep once its instances are
//! terminated. `amiprobe sweep` removes what a killed run left, by its tags.
//!
//! `region` is a launch field like any other (an axis, or fixed; else `provider.ec2.region`, else the
//! SDK's configured region). Each region the run uses has its own client and token buckets, watcher,
//! preflight lookups and run groups (`Regional`); the ledger's entries name their region, so every
//! removal, and the run's final sweep, happens where the thing was made.

mod api;
mod config;
mod console_rules;
mod instance_types;
mod key_pair;
mod kind;
mod resource;
use resource::Ec2Resource;
pub mod launch;
pub mod preflight;
pub mod security_group;
pub mod sweep;
mod watcher;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use async_trait::async_trait;
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use base64::Engine as _;
use tokio::sync::OnceCell;

use crate::cell::Cell;
use crate::provider::field::{check_as, schema_of, typed};
use crate::provider::key::OnceKey;
pub use crate::provider::key::PRIVATE_KEY_FILE;
use crate::provider::{
    Checked, CleanupStep, ConnectMeaning, Endpoint, Field, LaunchContext, LaunchPlan, Ledger, Machine, Provider,
    ProviderError, Resource, RunSettings, Unreachable,
};
use crate::spec::{FieldPath, KeyPair, Problem, Segment};
pub use api::Api;
use api::Retry;
pub use config::{AddressKind, Ec2Spec, FallbackSpec, RateLimitsSpec, RateSpec, SecurityGroupMode};
pub use kind::KIND;

use launch::Ec2Launch;
use watcher::{InstanceInfo, Watcher};

pub const RUN_ID_TAG: &str = "amiprobe:run-id";
pub const CELL_TAG: &str = "amiprobe:cell";
pub const EXPIRES_TAG: &str = "amiprobe:expires";
/// On an instance kept for debugging (`--keep-failed`): the run's own end leaves it, `sweep` removes
/// it once its `amiprobe:expires` has passed.
pub const KEPT_TAG: &str = "amiprobe:kept";

/// How long a launch retries RunInstances while EC2 does not yet know the key pair just created,
/// or answers with server errors (the client token makes every retry the same launch).
const LAUNCH_RETRY: Duration = Duration::from_secs(60);
/// How long a launch whose answer never came is looked for before it counts as never launched.
const PENDING_GRACE: Duration = Duration::from_secs(60);
/// How long a console read waits out EC2 not yet knowing an instance it has just reported running.
const NOT_FOUND_PATIENCE: Duration = Duration::from_secs(10);

/// What an ec2 cell can set, fixed in `launch:` or as a matrix axis.
pub static FIELDS: &[Field] = &[
    Field::plain::<String>("image", true),
    Field::plain::<String>("instance_type", true),
    Field::plain::<String>("subnet", false),
    Field {
        name: "security_groups",
        list_valued: true,
        required: false,
        check: check_groups,
        schema: schema_of::<Vec<String>>,
    },
    Field {
        name: "root_volume",
        list_valued: false,
        required: false,
        check: |v, at| launch_problems(v, at, |x| Ec2Launch { root_volume: Some(x), ..Ec2Launch::default() }),
        schema: schema_of::<launch::RootVolume>,
    },
    Field {
        name: "volumes",
        list_valued: true,
        required: false,
        check: |v, at| launch_problems(v, at, |volumes| Ec2Launch { volumes, ..Ec2Launch::default() }),
        schema: schema_of::<Vec<launch::Volume>>,
    },
    Field::plain::<launch::BootMode>("boot_mode", false),
    Field {
        name: "imds",
        list_valued: false,
        required: false,
        check: |v, at| launch_problems(v, at, |x| Ec2Launch { imds: Some(x), ..Ec2Launch::default() }),
        schema: schema_of::<launch::Imds>,
    },
    Field::plain::<String>("iam_instance_profile", false),
    Field::plain::<bool>("public_ip", false),
    Field::plain::<String>("availability_zone", false),
    Field::plain::<String>("region", false),
    Field::plain::<String>("placement_group", false),
];

/// A launch field's value read as `T`, then checked for what EC2 would refuse, each problem placed
/// under the value (`launch.rs` names them from the field: `root_volume.iops`, `volumes[1].size`).
fn launch_problems<T: serde::de::DeserializeOwned>(
    value: &serde_yaml::Value,
    at: &FieldPath,
    wrap: impl Fn(T) -> Ec2Launch,
) -> Vec<Problem> {
    match typed::<T>(value, at) {
        Err(problems) => problems,
        Ok(x) => wrap(x).problems().into_iter().map(|(path, message)| Problem::at(below(at, &path), message)).collect(),
    }
}

/// `at` joined with a printed path less its first key: `root_volume.iops` -> `at.iops`.
fn below(at: &FieldPath, printed: &str) -> FieldPath {
    let segments = printed.split('.').flat_map(|part| {
        let mut pieces = part.split('[');
        let key = pieces.next().filter(|k| !k.is_empty()).map(|k| Segment::Key(k.to_string()));
        key.into_iter().chain(pieces.filter_map(|i| i.trim_end_matches(']').parse().ok()).map(Segment::Index))
    });
    segments.skip(1).fold(at.clone(), |path, segment| match segment {
        Segment::Key(k) => path.key(k),
        Segment::Index(i) => path.index(i),
    })
}

/// A set of security groups: a list of ids, not empty (one id alone is a set of one).
fn check_groups(value: &serde_yaml::Value, at: &FieldPath) -> Vec<Problem> {
    match value {
        serde_yaml::Value::String(_) => Vec::new(),
        serde_yaml::Value::Sequence(s) if s.is_empty() => vec![Problem::at(at.clone(), "empty security group list")],
        _ => check_as::<Vec<String>>(value, at),
    }
}

pub fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value())
}

pub struct Ec2Provider {
    spec: Ec2Spec,
    launch: LaunchPlan,
    spec_name: String,
    run_timeout: Duration,
    cleanup_timeout: Duration,
    /// One connection per region, made on first need: a cell's `region` (or `provider.ec2.region`;
    /// `None`, the SDK's configured region) -> its client, watcher and what is known there. The
    /// region the SDK chose for `None` is also listed under its name.
    regions: std::sync::Mutex<Regions>,
    /// The run's key (`key_pair: ephemeral`), generated on first need and imported into each region.
    run_key: OnceKey,
}

/// A region as asked (`None`: the SDK's configured one) -> its connection, once made.
type Regions = BTreeMap<Option<String>, Arc<OnceCell<Arc<Regional>>>>;

/// What the run has in one region. EC2's rate limits, instance ids, AMIs, VPCs, key pairs and
/// security groups are all per region: each region has its own client and token buckets (a
/// multi-region matrix launches that much faster), its own watcher and its own run groups.
struct Regional {
    api: Arc<Api>,
    watcher: Arc<Watcher>,
    /// Each image's root device name, from the preflight: where a `root_volume` goes.
    root_devices: std::sync::Mutex<BTreeMap<String, String>>,
    /// The run's ephemeral security groups here, one per VPC (`security_group: ephemeral`).
    groups: security_group::Groups,
    /// The run's key pair here, once imported: its name.
    key: OnceCell<String>,
}

impl Ec2Provider {
    pub fn new(spec: Ec2Spec, run: RunSettings) -> Self {
        let os = run.launch.os;
        Ec2Provider {
            spec,
            launch: run.launch,
            spec_name: run.spec_name,
            run_timeout: run.run_timeout,
            cleanup_timeout: run.cleanup_timeout,
            regions: Default::default(),
            run_key: OnceKey::new(os),
        }
    }

    /// The run's key pair in `regional`'s region: generated on the run's first need (and kept in the
    /// results when asked), imported on each region's first need. A failed import is tried again
    /// by the next cell.
    async fn run_key_in(&self, regional: &Regional, ctx: &LaunchContext) -> Result<String, ProviderError> {
        let key = self
            .run_key
            .get(&ctx.run_id, self.launch.keep_private_key, &ctx.cell_dir)
            .await
            .map_err(ProviderError::new)?;
        let name = regional
            .key
            .get_or_try_init(|| async {
                let tags = self.run_tags(&ctx.run_id, "key", ResourceType::KeyPair);
                key_pair::import(&key, &regional.api, tags, &ctx.ledger)
                    .await
                    .map_err(|e| ProviderError::new(e.to_string()))?;
                Ok::<_, ProviderError>(key.name.clone())
            })
            .await?;
        Ok(name.clone())
    }

    /// The region a cell runs in, as asked: its own `region`, else `provider.ec2.region`, else
    /// `None` (the SDK's configured region).
    fn region_of(&self, cell: &Cell) -> Option<String> {
        cell.text("region").map(str::to_string).or_else(|| self.spec.region.clone())
    }

    /// The connection to `region` (`None`: the SDK's configured one), made on first need.
    async fn regional(&self, region: Option<&str>) -> Result<Arc<Regional>, ProviderError> {
        let key = region.map(str::to_string).or_else(|| self.spec.region.clone());
        let once = self.lock_regions().entry(key.clone()).or_default().clone();
        let regional = once
            .get_or_try_init(|| async {
                let api = Arc::new(Api::connect(&self.spec, key.as_deref()).await.map_err(ProviderError::new)?);
                let watcher = Watcher::start(api.clone(), self.spec.poll_interval, self.spec.status_poll_interval);
                Ok::<_, ProviderError>(Arc::new(Regional {
                    api,
                    watcher,
                    root_devices: Default::default(),
                    groups: Default::default(),
                    key: OnceCell::new(),
                }))
            })
            .await?
            .clone();
        // The SDK's region by its name too: a resource recorded there finds this connection.
        self.lock_regions().entry(Some(regional.api.region.clone())).or_insert(once);
        Ok(regional)
    }

    /// Every region connected so far, once each.
    fn connected(&self) -> Vec<Arc<Regional>> {
        let mut seen = std::collections::BTreeSet::new();
        self.lock_regions()
            .values()
            .filter_map(|once| once.get().cloned())
            .filter(|r| seen.insert(r.api.region.clone()))
            .collect()
    }

    fn lock_regions(&self) -> std::sync::MutexGuard<'_, Regions> {
        self.regions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tags(&self, run_id: &str, cell: &Cell, resource: ResourceType) -> TagSpecification {
        let own = [(CELL_TAG.to_string(), cell.id.0.clone())];
        self.tags_named(run_id, &cell.id.0, &own, resource)
    }

    /// Tags for what the whole run shares (no cell tag), named after `what`.
    fn run_tags(&self, run_id: &str, what: &str, resource: ResourceType) -> TagSpecification {
        self.tags_named(run_id, what, &[], resource)
    }

    fn tags_named(
        &self,
        run_id: &str,
        what: &str,
        own: &[(String, String)],
        resource: ResourceType,
    ) -> TagSpecification {
        let expires = SystemTime::now() + self.run_timeout + Duration::from_secs(3600);
        let mut tags = vec![(RUN_ID_TAG.to_string(), run_id.to_string())];
        tags.extend(own.iter().cloned());
        tags.extend([
            (EXPIRES_TAG.to_string(), humantime::format_rfc3339_seconds(expires).to_string()),
            ("Name".to_string(), format!("amiprobe {} {what}", self.spec_name)),
        ]);
        tags.extend(self.launch.tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(tags.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
            .build()
    }
}

/// The (instance type, subnet) pairs to try in order: the cell's own, then its fallbacks.
fn candidates(cell: &Cell, spec: &Ec2Spec) -> Vec<(String, Option<String>)> {
    let instance_type = cell.text("instance_type").unwrap_or_default().to_string();
    let subnet = cell.text("subnet").map(str::to_string);
    let mut out = vec![(instance_type.clone(), subnet.clone())];
    for subnet in &spec.fallback.subnet {
        out.push((instance_type.clone(), Some(subnet.clone())));
    }
    for t in &spec.fallback.instance_type {
        out.push((t.clone(), subnet.clone()));
    }
    out.dedup();
    out
}

/// What a launch tells the cell's timeline besides its outcome.
#[derive(Default)]
struct LaunchLog {
    /// Capacity fallbacks tried, and why.
    notes: Vec<String>,
    /// Time RunInstances waited for a slot under the rate limit.
    queued: Duration,
}

/// A client token (at most 64 ASCII characters) stable for one launch attempt of one try of one cell.
fn client_token(run_id: &str, cell: &Cell, try_number: u32, attempt: usize) -> String {
    let hash = cell.id.stable_hash();
    let mut token = format!("ap-{run_id}-{hash:016x}-{try_number}-{attempt}");
    token.truncate(64);
    token
}

#[async_trait]
impl Provider for Ec2Provider {
    /// One batched lookup per kind (images, types, offerings, subnets, groups) for the whole plan:
    /// impossible cells are refused before anything is created, and the images' root device names
    /// are kept for the launches' block device mappings.
    async fn preflight(&self, cells: &[Cell]) -> Result<Checked, ProviderError> {
        // Per region: each region's lookups are batched for its cells, through its own buckets.
        let mut by_region: BTreeMap<Option<String>, Vec<preflight::LaunchRequest>> = BTreeMap::new();
        for cell in cells {
            let boot_mode = match cell.launch.get("boot_mode").cloned().map(serde_json::from_value) {
                Some(Ok(mode)) => Some(mode),
                Some(Err(e)) => return Err(ProviderError::new(format!("cell {}: boot_mode: {e}", cell.id))),
                None => None,
            };
            by_region.entry(self.region_of(cell)).or_default().push(preflight::LaunchRequest {
                cell: cell.id.0.clone(),
                image: cell.image().to_string(),
                instance_type: cell.text("instance_type").map(str::to_string),
                subnet: cell.text("subnet").map(str::to_string),
                security_groups: cell.texts("security_groups"),
                boot_mode,
                os: self.launch.os,
            });
        }
        let mut impossible = BTreeMap::new();
        for (region, requests) in by_region {
            let regional = self.regional(region.as_deref()).await?;
            let found = preflight::check(&regional.api, &requests).await.map_err(|e| {
                ProviderError::new(match &region {
                    Some(region) => format!("{region}: {e}"),
                    None => e.to_string(),
                })
            })?;
            regional.groups.know_subnets(&found.subnet_vpcs);
            let mut roots = regional.root_devices.lock().unwrap_or_else(|e| e.into_inner());
            for (image, facts) in &found.images {
                roots.extend(facts.root_device_name.clone().map(|name| (image.clone(), name)));
            }
            impossible.extend(found.impossible.into_iter().map(|i| (i.cell, i.reasons.join("; "))));
        }
        // In the plan's order, whatever the regions.
        let impossible = cells.iter().filter_map(|c| impossible.remove_entry(c.id.0.as_str())).collect();
        Ok(Checked { warnings: crate::provider::ProviderSettings::warnings(&self.spec, cells), impossible })
    }

    async fn launch(&self, cell: &Cell, ctx: &LaunchContext) -> Result<Box<dyn Machine>, ProviderError> {
        if ctx.cancel.is_cancelled() {
            return Err(ProviderError::interrupted("interrupted before launching"));
        }
        let regional = self.regional(self.region_of(cell).as_deref()).await?;
        let (api, watcher) = (&regional.api, &regional.watcher);
        // The run's own key is new: RunInstances may not know it for a moment. A key named in the
        // spec that is unknown is simply wrong.
        let (key_name, key_is_new) = match &self.launch.key_pair {
            KeyPair::Existing(name) => (name.clone(), false),
            KeyPair::Ephemeral => (self.run_key_in(&regional, ctx).await?, true),
        };
        let login_key = match &self.launch.key_pair {
            KeyPair::Existing(_) => None,
            KeyPair::Ephemeral => Some(
                self.run_key
                    .get(&ctx.run_id, self.launch.keep_private_key, &ctx.cell_dir)
                    .await
                    .map_err(ProviderError::new)?,
            ),
        };
        let mut log = LaunchLog::default();
        let (instance_id, instance_type) =
            self.run_instance(&regional, cell, ctx, Some(key_name), key_is_new, &mut log).await?;
        let instance =
            Ec2Resource::Instance { id: instance_id.clone(), cell: cell.id.0.clone(), region: api.region.clone() }
                .recorded();
        watcher.watch(&instance_id);
        Ok(Box::new(Ec2Machine {
            api: api.clone(),
            watcher: watcher.clone(),
            instance_id,
            instance_type,
            instance,
            ledger: ctx.ledger.clone(),
            address: self.spec.address,
            region: api.region.clone(),
            cleanup_timeout: self.cleanup_timeout,
            console_poll_interval: self.spec.console_poll_interval,
            info: None,
            console: String::new(),
            latest_refused: false,
            notes: log.notes,
            queued: log.queued,
            login_key,
        }))
    }

    async fn remove_leftovers(&self, leftovers: Vec<Resource>, ledger: &Ledger) -> Vec<CleanupStep> {
        let until = Instant::now() + self.cleanup_timeout;
        let mut steps = Vec::new();
        for resource in leftovers {
            // Each where it was made.
            let Some(ours) = resource::of(&resource) else {
                continue;
            };
            let region = ours.region();
            let api = match self.regional(Some(region)).await {
                Ok(regional) => regional.api.clone(),
                Err(e) => {
                    steps.push(
                        CleanupStep::failed(format!("connect to EC2 in {region} to remove {resource}"), e.message)
                            .of(&resource),
                    );
                    continue;
                }
            };
            // Pending launches have no id yet: the run's final sweep finds them by tag and token.
            let (action, result) = match ours {
                Ec2Resource::Instance { id, .. } => {
                    (format!("terminate {id}"), api.terminate(std::slice::from_ref(id), until).await)
                }
                Ec2Resource::KeyPair { name, .. } => {
                    (format!("delete key pair {name}"), api.delete_key_pair(name, until).await)
                }
                // Groups go in the run's final sweep, after every instance it handles.
                Ec2Resource::PendingInstance { .. } | Ec2Resource::SecurityGroup { .. } => continue,
            };
            if result.is_ok() {
                ledger.removed(&resource);
            }
            steps.push(removal_step(action, result).of(&resource));
        }
        steps
    }

    /// Every region the run used, side by side: those connected, and any the ledger still names.
    async fn sweep_run(&self, run_id: &str, ledger: &Ledger) -> Vec<CleanupStep> {
        let mut steps = Vec::new();
        let named: std::collections::BTreeSet<String> =
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
        for region_steps in join_all(sweeps).await {
            steps.extend(region_steps);
        }
        steps
    }
}

/// Runs the futures side by side and returns their outputs in order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *output = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

impl Ec2Provider {
    /// The run's final sweep in one region: what carries the run's tag there, the launches pending
    /// there, the run's groups there.
    async fn sweep_region(&self, api: &Arc<Api>, run_id: &str, ledger: &Ledger) -> Vec<CleanupStep> {
        let selection = crate::provider::Selection::RunEnd(run_id.to_string());
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
                ledger.retain(
                    |r| !matches!(resource::of(r), Some(Ec2Resource::KeyPair { name: n, region, .. }) if n == name && *region == api.region),
                );
            }
            steps.push(removal_step(format!("delete key pair {name} (found by the run's tag)"), result).of_key(name));
        }
        steps.extend(self.resolve_pending(api, &selection, ledger, until).await);
        steps.extend(self.remove_groups(api, &report.security_groups, ledger, until).await);
        steps
    }
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

impl Ec2Provider {
    /// Launches whose answer never came (a server error, a launch cut off by `timeouts.run`): looked
    /// for by their client token for a while, since a new instance may not be listed at once. Found,
    /// it is terminated; never seen in [`PENDING_GRACE`], nothing was launched.
    async fn resolve_pending(
        &self,
        api: &Api,
        selection: &crate::provider::Selection,
        ledger: &Ledger,
        until: Instant,
    ) -> Vec<CleanupStep> {
        let mut steps = Vec::new();
        let give_up = (Instant::now() + PENDING_GRACE).min(until);
        loop {
            let pending: Vec<String> = ledger
                .remaining()
                .into_iter()
                .filter_map(|r| match resource::of(&r) {
                    Some(Ec2Resource::PendingInstance { client_token, region, .. }) if *region == api.region => {
                        Some(client_token.clone())
                    }
                    _ => None,
                })
                .collect();
            if pending.is_empty() {
                return steps;
            }
            if Instant::now() >= give_up {
                for token in pending {
                    ledger.retain(
                        |r| !matches!(resource::of(r), Some(Ec2Resource::PendingInstance { client_token, .. }) if *client_token == token),
                    );
                    let waited = PENDING_GRACE.as_secs();
                    steps.push(CleanupStep::ok(format!(
                        "no instance launched with client token {token} (none seen in {waited}s)"
                    )));
                }
                return steps;
            }
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
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

impl Ec2Provider {
    /// The run's security group in the VPC of `subnet`, made by the first cell that needs it.
    async fn run_group(
        &self,
        regional: &Regional,
        ctx: &LaunchContext,
        subnet: Option<&str>,
    ) -> Result<String, ProviderError> {
        let mut ports = ctx.probe_ports.clone();
        ports.sort_unstable();
        ports.dedup();
        let wanted = security_group::Wanted {
            run_id: &ctx.run_id,
            ports: &ports,
            from: &ctx.probe_from,
            tags: self.run_tags(&ctx.run_id, "probes", ResourceType::SecurityGroup),
            ledger: &ctx.ledger,
            cleanup_until: Instant::now() + self.cleanup_timeout,
        };
        regional
            .groups
            .for_subnet(&regional.api, subnet, wanted)
            .await
            .map_err(|e| ProviderError::new(format!("the run's security group: {e}")))
    }

    /// Deletes the run's security groups (those in the ledger and those `found` by the run's tag),
    /// all at once, each retried while an instance still uses it, until `until`.
    async fn remove_groups(
        &self,
        api: &Arc<Api>,
        found: &[String],
        ledger: &Ledger,
        until: Instant,
    ) -> Vec<CleanupStep> {
        let mut steps = Vec::new();
        // Group id -> its ledger entry, if any (taken off once the group is gone).
        let mut targets: std::collections::BTreeMap<String, Option<Resource>> =
            found.iter().map(|id| (id.clone(), None)).collect();
        for resource in ledger.remaining() {
            let Some(Ec2Resource::SecurityGroup { name, id, vpc, region }) = resource::of(&resource) else {
                continue;
            };
            if *region != api.region {
                continue;
            }
            let id = match id {
                Some(id) => Some(id.clone()),
                // A create whose answer never came: it exists if EC2 lists it by name.
                None => match security_group::find_by_name(api, name, vpc).await {
                    Ok(id) => id,
                    Err(e) => {
                        steps.push(CleanupStep::failed(format!("look for security group {name}"), e).of(&resource));
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
}

/// A removal's outcome as a cleanup step.
fn removal_step(action: String, result: Result<u32, api::ApiError>) -> CleanupStep {
    match result {
        Ok(attempts) => CleanupStep::ok(action).attempts(attempts),
        Err(e) => CleanupStep::failed(action, e.to_string()).attempts(e.attempts),
    }
}

impl Ec2Provider {
    /// RunInstances with the cell's instance type and subnet, then its capacity fallbacks. Each
    /// attempt is in the ledger (by client token) before it is made, and by id once it is known.
    async fn run_instance(
        &self,
        regional: &Regional,
        cell: &Cell,
        ctx: &LaunchContext,
        key_name: Option<String>,
        key_is_new: bool,
        log: &mut LaunchLog,
    ) -> Result<(String, String), ProviderError> {
        let api = &regional.api;
        let user_data = self.launch.user_data.as_ref().map(|d| base64::engine::general_purpose::STANDARD.encode(d));
        let tags = self.tags(&ctx.run_id, cell, ResourceType::Instance);
        let volume_tags = self.tags(&ctx.run_id, cell, ResourceType::Volume);
        // A key pair made a moment ago may be unknown to RunInstances for a while; one named in the
        // spec that is unknown is simply wrong.
        let not_found = if key_is_new { api::KEY_PAIR_NOT_FOUND } else { &[] };
        let own_groups = cell.texts("security_groups");
        let fields: Ec2Launch = serde_json::from_value(serde_json::Value::Object(cell.launch.clone()))
            .map_err(|e| ProviderError::new(format!("launch fields: {e}")))?;
        let root_device = regional.root_devices.lock().unwrap_or_else(|e| e.into_inner()).get(cell.image()).cloned();
        let mut last_error = None;
        let mut fallbacks = 0;
        for (attempt, (instance_type, subnet)) in candidates(cell, &self.spec).into_iter().enumerate() {
            if ctx.cancel.is_cancelled() {
                return Err(ProviderError::interrupted("interrupted before RunInstances"));
            }
            if attempt > 0 {
                fallbacks += 1;
                log.notes.push(format!(
                    "capacity fallback: trying {instance_type} in {}",
                    subnet.as_deref().unwrap_or("the default subnet")
                ));
            }
            let mut groups = own_groups.clone();
            if self.spec.security_group == SecurityGroupMode::Ephemeral {
                groups.push(self.run_group(regional, ctx, subnet.as_deref()).await?);
            }
            let token = client_token(&ctx.run_id, cell, ctx.try_number, attempt);
            let pending = Ec2Resource::PendingInstance {
                client_token: token.clone(),
                cell: cell.id.0.clone(),
                region: api.region.clone(),
            }
            .recorded();
            ctx.ledger.record(pending.clone());
            let base = api
                .client
                .run_instances()
                .image_id(cell.image())
                .instance_type(InstanceType::from(instance_type.as_str()))
                .min_count(1)
                .max_count(1)
                .set_key_name(key_name.clone())
                .set_user_data(user_data.clone())
                .tag_specifications(tags.clone())
                .tag_specifications(volume_tags.clone())
                .client_token(&token);
            // Subnet and groups go through `apply` too: with a public address they move onto the
            // network interface.
            let request = match launch::apply(base, &fields, subnet.as_deref(), &groups, root_device.as_deref()) {
                Ok(request) => request,
                Err(e) => {
                    ctx.ledger.removed(&pending);
                    return Err(ProviderError::new(e));
                }
            };
            let retry = Retry::until(Instant::now() + LAUNCH_RETRY, not_found);
            let result =
                api.call_timed(&api.buckets.run_instances, "RunInstances", retry, || request.clone().send()).await;
            match result {
                Ok((out, _, waited)) => {
                    log.queued += waited;
                    let Some(id) = out.instances().first().and_then(|i| i.instance_id()) else {
                        // Left in the ledger: the run's final sweep looks for it by tag.
                        return Err(ProviderError::new("RunInstances returned no instance"));
                    };
                    let instance = Ec2Resource::Instance {
                        id: id.to_string(),
                        cell: cell.id.0.clone(),
                        region: api.region.clone(),
                    }
                    .recorded();
                    ctx.ledger.replace(&pending, instance);
                    return Ok((id.to_string(), instance_type));
                }
                // A server error may have launched it after all: the pending entry stays for the sweep.
                Err(e) if e.transient => return Err(ProviderError::new(e.to_string())),
                Err(e) => {
                    ctx.ledger.removed(&pending);
                    if !e.is("InsufficientInstanceCapacity") {
                        return Err(ProviderError::new(e.to_string()));
                    }
                    log.notes.push(format!(
                        "no capacity for {instance_type} in {}: {}",
                        subnet.as_deref().unwrap_or("the default subnet"),
                        e.message
                    ));
                    last_error = Some(e.to_string());
                }
            }
        }
        let message = last_error.unwrap_or_else(|| "RunInstances failed".into());
        Err(ProviderError::new(if fallbacks > 0 {
            format!("{message} (after {fallbacks} capacity fallbacks)")
        } else {
            message
        }))
    }
}

struct Ec2Machine {
    api: Arc<Api>,
    watcher: Arc<Watcher>,
    instance_id: String,
    instance_type: String,
    instance: Resource,
    ledger: Ledger,
    address: AddressKind,
    region: String,
    cleanup_timeout: Duration,
    console_poll_interval: Duration,
    info: Option<InstanceInfo>,
    login_key: Option<Arc<crate::provider::key::RunKey>>,
    /// The console text so far: `Latest=true` returns only the most recent part, so it is merged.
    console: String,
    latest_refused: bool,
    notes: Vec<String>,
    /// How long RunInstances waited for a slot under the rate limit.
    queued: Duration,
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

/// GetPasswordData for one instance: EC2 answers an empty string until Windows has made the
/// password (minutes after boot).
struct PasswordData {
    api: Arc<Api>,
    instance_id: String,
}

#[async_trait]
impl crate::provider::AdminPassword for PasswordData {
    async fn encrypted(&self) -> Result<Option<String>, ProviderError> {
        let api = &self.api;
        let retry = Retry::not_found_until(Instant::now() + NOT_FOUND_PATIENCE, api::INSTANCE_NOT_FOUND);
        let (out, _) = api
            .call_retrying(&api.buckets.describe, "GetPasswordData", retry, || {
                api.client.get_password_data().instance_id(&self.instance_id).send()
            })
            .await
            .map_err(|e| ProviderError::new(format!("GetPasswordData failed: {e}")))?;
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
        let info = self
            .watcher
            .wait_for(&self.instance_id, &["running"], &["shutting-down", "terminated", "stopping", "stopped"], timeout)
            .await
            .map_err(ProviderError::new)?;
        self.info = Some(info);
        Ok(())
    }

    fn endpoint(&self, guest_port: u16) -> Result<Endpoint, Unreachable> {
        Ok(Endpoint { host: self.address().map_err(Unreachable)?, port: guest_port })
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

    async fn stopped(&mut self) -> Option<String> {
        // The shared watcher already describes the instance: no call of its own.
        let state = self.watcher.state(&self.instance_id)?;
        matches!(state.as_str(), "shutting-down" | "terminated" | "stopping" | "stopped")
            .then(|| format!("instance {} is {state}", self.instance_id))
    }

    async fn health(&mut self) -> Option<crate::provider::Health> {
        // The shared watcher's DescribeInstanceStatus, as for `stopped`: no call of its own.
        self.watcher.checks(&self.instance_id)?.health()
    }

    fn login_key(&self) -> Option<Arc<crate::provider::key::RunKey>> {
        self.login_key.clone()
    }

    async fn keep(&mut self, until: std::time::SystemTime) -> Result<String, ProviderError> {
        let api = &self.api;
        let expires = humantime::format_rfc3339_seconds(until).to_string();
        let tag = |key: &str| aws_sdk_ec2::types::Tag::builder().key(key).value(&expires).build();
        api.call(&api.buckets.mutating, "CreateTags", || {
            api.client.create_tags().resources(&self.instance_id).tags(tag(EXPIRES_TAG)).tags(tag(KEPT_TAG)).send()
        })
        .await
        .map_err(|e| ProviderError::new(format!("CreateTags failed: {e}")))?;
        // Out of the ledger: the run's end removes what the ledger holds.
        self.ledger.removed(&self.instance);
        let address = self.address().unwrap_or_else(|_| "ADDRESS".into());
        let key = if self.login_key.is_some() { format!(" -i RESULTS/{PRIVATE_KEY_FILE}") } else { String::new() };
        Ok(format!(
            "kept {} for debugging until {expires} (`amiprobe sweep` removes it after that): ssh{key} USER@{address}",
            self.instance_id
        ))
    }

    fn admin_password(&self) -> Option<Arc<dyn crate::provider::AdminPassword>> {
        Some(Arc::new(PasswordData { api: self.api.clone(), instance_id: self.instance_id.clone() }))
    }

    async fn reboot(&mut self) -> Result<(), ProviderError> {
        let api = &self.api;
        let retry = Retry::not_found_until(Instant::now() + NOT_FOUND_PATIENCE, api::INSTANCE_NOT_FOUND);
        api.call_retrying(&api.buckets.mutating, "RebootInstances", retry, || {
            api.client.reboot_instances().instance_ids(&self.instance_id).send()
        })
        .await
        .map(|_| ())
        .map_err(|e| ProviderError::new(format!("RebootInstances failed: {e}")))
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
        let mut steps =
            vec![removal_step(format!("terminate {id}"), result.map(|(attempts, _)| attempts)).of(&self.instance)];
        let gone = answered.filter(|state| ["shutting-down", "terminated"].contains(&state.as_str()));
        if let (true, Some(state)) = (accepted, &gone) {
            // The answer itself says billing stopped: nothing to wait for.
            steps.push(CleanupStep::ok(format!("{id} {state}")));
            self.ledger.removed(&self.instance);
        } else if accepted && hurry {
            self.ledger.removed(&self.instance);
        } else if accepted {
            let wait = until.saturating_duration_since(Instant::now());
            match self.watcher.wait_for(id, &["shutting-down", "terminated"], &[], wait).await {
                Ok(info) => {
                    steps.push(CleanupStep::ok(format!("{id} {}", info.state)));
                    self.ledger.removed(&self.instance);
                }
                Err(e) => {
                    steps.push(CleanupStep::failed(format!("confirm {id} is shutting down"), e).of(&self.instance))
                }
            }
        }
        self.watcher.unwatch(id);
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_placed_below_the_value() {
        let at = FieldPath::root().key("matrix").key("volumes").index(1);
        assert_eq!(below(&at, "volumes[2].device").to_string(), "matrix.volumes[1][2].device");
        let at = FieldPath::root().key("launch").key("root_volume");
        assert_eq!(below(&at, "root_volume.iops").to_string(), "launch.root_volume.iops");
        assert_eq!(below(&at, "root_volume").to_string(), "launch.root_volume");
    }

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
            id: crate::cell::CellId("ami-1_t3.micro".repeat(10)),
            values: serde_json::Map::new(),
            launch: serde_json::Map::new(),
        };
        let a = client_token("20261125-093000-abcd", &cell, 0, 0);
        assert!(a.len() <= 64 && a.is_ascii());
        assert_ne!(a, client_token("20261125-093000-abcd", &cell, 0, 1), "another launch attempt");
        assert_ne!(a, client_token("20261125-093000-abcd", &cell, 1, 0), "another try of the cell");
        assert_eq!(a, client_token("20261125-093000-abcd", &cell, 0, 0));
    }
}
