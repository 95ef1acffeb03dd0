//! RunInstances for one cell: its own instance type and subnet first, then its capacity fallbacks
//! (`provider.ec2.fallback`). Each attempt is in the ledger (by client token) before it is made, and
//! by id once EC2 answers; a client token per attempt makes a retried call the same launch.

use std::time::Duration;

use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{InstanceType, ResourceType};
use base64::Engine as _;
use tokio::time::Instant;

use super::api::{self, Retry};
use super::config::{Ec2Spec, SecurityGroupMode};
use super::launch::{self, Ec2Launch};
use super::regions::Regional;
use super::resource::Ec2Resource;
use super::{security_group, Ec2Provider};
use crate::cell::Cell;
use crate::provider::lifecycle::Attempts;
use crate::provider::{LaunchContext, ProviderError, Resource};

/// How long a launch retries RunInstances while EC2 does not yet know the key pair just created,
/// or answers with server errors (the client token makes every retry the same launch).
const LAUNCH_RETRY: Duration = Duration::from_secs(60);

/// What a launch tells the cell's timeline besides its outcome.
#[derive(Default)]
pub(super) struct LaunchLog {
    /// Capacity fallbacks tried, and why.
    pub notes: Vec<String>,
    /// Time RunInstances waited for a slot under the rate limit.
    pub queued: Duration,
}

/// The key pair a cell's instance is launched with.
pub(super) struct KeyName {
    pub name: String,
    /// The run's own, imported a moment ago: RunInstances may not know it yet. A key named in the
    /// spec that is unknown is simply wrong.
    pub new: bool,
}

/// The instance one of the attempts launched.
pub(super) struct Launched {
    pub id: String,
    pub instance_type: String,
    /// Its ledger entry.
    pub instance: Resource,
}

/// How one attempt ended, short of an error that ends the launch.
enum Outcome {
    Launched(Launched),
    /// No capacity for the type there: why, worth the next candidate.
    NoCapacity(String),
}

/// What every attempt of one cell's launch sends alike.
struct Request<'a> {
    regional: &'a Regional,
    cell: &'a Cell,
    ctx: &'a LaunchContext,
    /// RunInstances with the image, the key, the user data and the tags; each attempt adds its
    /// instance type, its client token and its network.
    base: RunInstancesFluentBuilder,
    fields: Ec2Launch,
    own_groups: Vec<String>,
    root_device: Option<String>,
    not_found: &'static [&'static str],
}

impl Ec2Provider {
    /// RunInstances with the cell's instance type and subnet, then its capacity fallbacks.
    pub(super) async fn run_instance(
        &self,
        regional: &Regional,
        cell: &Cell,
        ctx: &LaunchContext,
        key: KeyName,
        log: &mut LaunchLog,
    ) -> Result<Launched, ProviderError> {
        let request = self.request(regional, cell, ctx, key)?;
        let mut attempts = Attempts::new("RunInstances");
        for (instance_type, subnet) in candidates(cell, &self.spec) {
            let attempt = attempts.next(&ctx.cancel)?;
            if attempt > 0 {
                let place = subnet.as_deref().unwrap_or("the default subnet");
                log.notes.push(format!("capacity fallback: trying {instance_type} in {place}"));
            }
            match self.attempt(&request, attempt, instance_type, subnet, log).await? {
                Outcome::Launched(launched) => return Ok(launched),
                Outcome::NoCapacity(why) => attempts.failed(why),
            }
        }
        let message = attempts.last_error().unwrap_or("RunInstances failed").to_string();
        let fallbacks = attempts.made().saturating_sub(1);
        Err(ProviderError::new(if fallbacks > 0 {
            format!("{message} (after {fallbacks} capacity fallbacks)")
        } else {
            message
        }))
    }

    /// What every attempt of the cell's launch sends alike.
    fn request<'a>(
        &self,
        regional: &'a Regional,
        cell: &'a Cell,
        ctx: &'a LaunchContext,
        key: KeyName,
    ) -> Result<Request<'a>, ProviderError> {
        let user_data = self.launch.user_data.as_ref().map(|d| base64::engine::general_purpose::STANDARD.encode(d));
        let base = regional
            .api
            .client
            .run_instances()
            .image_id(regional.image_of(cell))
            .min_count(1)
            .max_count(1)
            .key_name(key.name)
            .set_user_data(user_data)
            .tag_specifications(self.tags(&ctx.run_id, cell, ResourceType::Instance))
            .tag_specifications(self.tags(&ctx.run_id, cell, ResourceType::Volume));
        let fields = Ec2Launch::of(cell).map_err(|e| ProviderError::new(format!("launch fields: {e}")))?;
        Ok(Request {
            regional,
            cell,
            ctx,
            base,
            fields,
            own_groups: cell.texts("security_groups"),
            root_device: regional.root_device(&regional.image_of(cell)),
            not_found: if key.new { api::KEY_PAIR_NOT_FOUND } else { &[] },
        })
    }

    /// One RunInstances: `instance_type` in `subnet`, under the attempt's own client token. No
    /// capacity there is worth the next candidate; anything else ends the launch.
    async fn attempt(
        &self,
        request: &Request<'_>,
        attempt: usize,
        instance_type: String,
        subnet: Option<String>,
        log: &mut LaunchLog,
    ) -> Result<Outcome, ProviderError> {
        let (api, cell, ctx) = (&request.regional.api, request.cell, request.ctx);
        let mut groups = request.own_groups.clone();
        // A group opening no port (agent probes only) would be one more thing to make and remove.
        if self.spec.security_group == SecurityGroupMode::Ephemeral && !ctx.probe_ports.is_empty() {
            groups.push(self.run_group(request.regional, ctx, subnet.as_deref()).await?);
        }
        let token = client_token(&ctx.run_id, cell, ctx.try_number, attempt);
        let pending = Ec2Resource::PendingInstance {
            client_token: token.clone(),
            cell: cell.id.0.clone(),
            region: api.region.clone(),
        }
        .recorded();
        ctx.ledger.record(pending.clone());
        let base = request.base.clone().instance_type(InstanceType::from(instance_type.as_str())).client_token(&token);
        // Subnet and groups go through `apply` too: with a public address they move onto the
        // network interface.
        let sent = launch::apply(base, &request.fields, subnet.as_deref(), &groups, request.root_device.as_deref())
            .map_err(|e| {
                ctx.ledger.removed(&pending);
                ProviderError::new(e.to_string())
            })?;
        let retry = Retry::until(Instant::now() + LAUNCH_RETRY, request.not_found);
        let result = api.call_timed(&api.buckets.run_instances, "RunInstances", retry, || sent.clone().send()).await;
        match result {
            Ok((out, _, waited)) => {
                log.queued += waited;
                let Some(id) = out.instances().first().and_then(|i| i.instance_id()) else {
                    // Left in the ledger: the run's final sweep looks for it by tag.
                    return Err(ProviderError::new("RunInstances returned no instance"));
                };
                let instance =
                    Ec2Resource::Instance { id: id.to_string(), cell: cell.id.0.clone(), region: api.region.clone() }
                        .recorded();
                ctx.ledger.replace(&pending, instance.clone());
                Ok(Outcome::Launched(Launched { id: id.to_string(), instance_type, instance }))
            }
            // A server error may have launched it after all: the pending entry stays for the sweep.
            Err(e) if e.transient => Err(ProviderError::new(e.to_string())),
            Err(e) => {
                ctx.ledger.removed(&pending);
                if !e.is("InsufficientInstanceCapacity") {
                    return Err(ProviderError::new(e.to_string()));
                }
                let place = subnet.as_deref().unwrap_or("the default subnet");
                log.notes.push(format!("no capacity for {instance_type} in {place}: {}", e.message));
                Ok(Outcome::NoCapacity(e.to_string()))
            }
        }
    }

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

/// A client token (at most 64 ASCII characters) stable for one launch attempt of one try of one cell.
fn client_token(run_id: &str, cell: &Cell, try_number: u32, attempt: usize) -> String {
    let hash = cell.id.stable_hash();
    let mut token = format!("ap-{run_id}-{hash:016x}-{try_number}-{attempt}");
    token.truncate(64);
    token
}

#[cfg(test)]
mod tests {
    use super::*;

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
