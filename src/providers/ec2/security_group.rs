//! The run's ephemeral security group (`provider.ec2.security_group: ephemeral`): one per run and
//! VPC, not per cell, opening exactly the probed TCP ports to `run --probe-from`, and deleted at the
//! run's end once no instance uses it.
//!
//! Calls per run and VPC: DescribeSubnets or DescribeVpcs at most once per subnet (none for the
//! subnets the preflight already described), then CreateSecurityGroup and one
//! AuthorizeSecurityGroupIngress for all ports, and DeleteSecurityGroup, repeated with backoff while
//! EC2 answers `DependencyViolation` (an instance that used it is not `terminated` yet).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Ipv6Range, TagSpecification};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::api::{Api, ApiError, Retry};
use super::resource::Ec2Resource;
use crate::provider::{lock, Ledger};

/// What EC2 answers while an instance (or its network interface) still uses the group.
pub const DEPENDENCY_VIOLATION: &[&str] = &["DependencyViolation"];
/// A group EC2 does not know (yet, right after its creation; or any more).
const GROUP_NOT_FOUND: &[&str] = &["InvalidGroup.NotFound"];

/// Why the run's security group could not be had, as a lowercase fragment.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("subnet {0} has no VPC")]
    NoVpc(String),
    #[error("no default VPC for the run's security group: give the cells a subnet")]
    NoDefaultVpc,
    #[error("CreateSecurityGroup returned no group id for {0}")]
    NoGroupId(String),
}

/// The group's name: known before it is created, so the ledger can hold it by name first.
pub fn name(run_id: &str, vpc: &str) -> String {
    format!("amiprobe-{run_id}-{vpc}")
}

/// The run's groups and what is known of the VPCs, shared by every cell: each is looked up or
/// created once, by the first cell that needs it, while the others wait for its answer.
#[derive(Default)]
pub struct Groups {
    /// Subnet (`None`: no subnet, the region's default VPC) -> its VPC.
    vpcs: Mutex<HashMap<Option<String>, Arc<OnceCell<String>>>>,
    /// VPC -> the run's group in it.
    groups: Mutex<HashMap<String, Arc<OnceCell<String>>>>,
}

/// What a group is made from.
pub struct Wanted<'a> {
    pub run_id: &'a str,
    pub ports: &'a [u16],
    pub from: &'a [ipnet::IpNet],
    pub tags: TagSpecification,
    pub ledger: &'a Ledger,
    /// How long a failed create's removal may take.
    pub cleanup_until: Instant,
}

impl Groups {
    /// The VPCs of subnets already described (by the preflight): no call of their own later.
    pub fn know_subnets(&self, subnet_vpcs: &BTreeMap<String, Option<String>>) {
        let mut vpcs = lock(&self.vpcs);
        for (subnet, vpc) in subnet_vpcs {
            if let Some(vpc) = vpc {
                vpcs.entry(Some(subnet.clone())).or_insert_with(|| Arc::new(OnceCell::new_with(Some(vpc.clone()))));
            }
        }
    }

    /// The run's group for a launch into `subnet`, created on first need.
    pub async fn for_subnet(&self, api: &Api, subnet: Option<&str>, wanted: Wanted<'_>) -> Result<String, GroupError> {
        let vpc = self.vpc_of(api, subnet).await?;
        let cell = lock(&self.groups).entry(vpc.clone()).or_default().clone();
        cell.get_or_try_init(|| create(api, &vpc, &wanted)).await.cloned()
    }

    async fn vpc_of(&self, api: &Api, subnet: Option<&str>) -> Result<String, GroupError> {
        let key = subnet.map(str::to_string);
        let cell = lock(&self.vpcs).entry(key).or_default().clone();
        cell.get_or_try_init(|| async {
            match subnet {
                Some(subnet) => {
                    let out = api
                        .call(&api.buckets.describe, "DescribeSubnets", || {
                            api.client.describe_subnets().subnet_ids(subnet).send()
                        })
                        .await?;
                    out.subnets()
                        .first()
                        .and_then(|s| s.vpc_id())
                        .map(str::to_string)
                        .ok_or_else(|| GroupError::NoVpc(subnet.to_string()))
                }
                None => {
                    let default = Filter::builder().name("is-default").values("true").build();
                    let out = api
                        .call(&api.buckets.describe, "DescribeVpcs", || {
                            api.client.describe_vpcs().filters(default.clone()).send()
                        })
                        .await?;
                    out.vpcs().first().and_then(|v| v.vpc_id()).map(str::to_string).ok_or(GroupError::NoDefaultVpc)
                }
            }
        })
        .await
        .cloned()
    }
}

/// The ingress rules: each probed TCP port from each `--probe-from` network, nothing else.
fn permissions(ports: &[u16], from: &[ipnet::IpNet]) -> Vec<IpPermission> {
    let v4: Vec<IpRange> = from
        .iter()
        .filter(|n| matches!(n, ipnet::IpNet::V4(_)))
        .map(|n| IpRange::builder().cidr_ip(n.to_string()).description("amiprobe --probe-from").build())
        .collect();
    let v6: Vec<Ipv6Range> = from
        .iter()
        .filter(|n| matches!(n, ipnet::IpNet::V6(_)))
        .map(|n| Ipv6Range::builder().cidr_ipv6(n.to_string()).description("amiprobe --probe-from").build())
        .collect();
    ports
        .iter()
        .map(|&port| {
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(i32::from(port))
                .to_port(i32::from(port))
                .set_ip_ranges((!v4.is_empty()).then(|| v4.clone()))
                .set_ipv6_ranges((!v6.is_empty()).then(|| v6.clone()))
                .build()
        })
        .collect()
}

/// Creates the group in `vpc`, in the ledger by name before the call and by id after, and opens
/// the probed ports. A group whose rules could not be set is deleted again at once.
async fn create(api: &Api, vpc: &str, wanted: &Wanted<'_>) -> Result<String, GroupError> {
    let name = name(wanted.run_id, vpc);
    let pending =
        Ec2Resource::SecurityGroup { name: name.clone(), id: None, vpc: vpc.to_string(), region: api.region.clone() }
            .recorded();
    wanted.ledger.record(pending.clone());
    let description = format!("amiprobe run {}: the probed ports from --probe-from", wanted.run_id);
    let created = api
        .call(&api.buckets.mutating, "CreateSecurityGroup", || {
            api.client
                .create_security_group()
                .group_name(&name)
                .description(&description)
                .vpc_id(vpc)
                .tag_specifications(wanted.tags.clone())
                .send()
        })
        .await;
    let id = match created {
        Ok(out) => out.group_id().map(str::to_string),
        // The name is the run's own: the group is one an earlier attempt made (its answer lost, or
        // its rules refused and its removal too). It is taken, and its rules set below.
        Err(e) if e.is("InvalidGroup.Duplicate") => find_by_name(api, &name, vpc).await?,
        // It may exist after all: the ledger keeps its name, the run's end looks for it.
        Err(e) if e.transient => return Err(e.into()),
        Err(e) => {
            wanted.ledger.removed(&pending);
            return Err(e.into());
        }
    };
    let Some(id) = id else {
        return Err(GroupError::NoGroupId(name));
    };
    let group =
        Ec2Resource::SecurityGroup { name, id: Some(id.clone()), vpc: vpc.to_string(), region: api.region.clone() }
            .recorded();
    wanted.ledger.replace(&pending, group.clone());
    if wanted.ports.is_empty() {
        return Ok(id);
    }
    let rules = permissions(wanted.ports, wanted.from);
    let retry = Retry::until(wanted.cleanup_until, GROUP_NOT_FOUND);
    let authorized = api
        .call_retrying(&api.buckets.mutating, "AuthorizeSecurityGroupIngress", retry, || {
            api.client.authorize_security_group_ingress().group_id(&id).set_ip_permissions(Some(rules.clone())).send()
        })
        .await;
    match authorized {
        Ok(_) => Ok(id),
        // Set by an earlier attempt (EC2 sets all of a call's rules or none).
        Err(e) if e.is("InvalidPermission.Duplicate") => Ok(id),
        Err(e) => {
            // No instance uses it yet: it goes now, so that the next cell can make it again.
            if delete(api, &id, wanted.cleanup_until).await.is_ok() {
                wanted.ledger.removed(&group);
            }
            Err(e.into())
        }
    }
}

/// The id of the group named `name` in `vpc`, if EC2 lists it.
pub async fn find_by_name(api: &Api, name: &str, vpc: &str) -> Result<Option<String>, ApiError> {
    let filters = vec![
        Filter::builder().name("group-name").values(name).build(),
        Filter::builder().name("vpc-id").values(vpc).build(),
    ];
    let out = api
        .call(&api.buckets.describe, "DescribeSecurityGroups", || {
            api.client.describe_security_groups().set_filters(Some(filters.clone())).send()
        })
        .await?;
    Ok(out.security_groups().first().and_then(|g| g.group_id()).map(str::to_string))
}

/// Deletes a group, retrying while an instance still uses it (`DependencyViolation`: EC2 lets a
/// group go only once every instance in it is `terminated`) and on server errors, until `until`.
/// A group EC2 does not know is gone.
pub async fn delete(api: &Api, id: &str, until: Instant) -> Result<u32, ApiError> {
    let retry = Retry::until(until, DEPENDENCY_VIOLATION);
    let result = api
        .call_retrying(&api.buckets.mutating, "DeleteSecurityGroup", retry, || {
            api.client.delete_security_group().group_id(id).send()
        })
        .await;
    match result {
        Ok((_, attempts)) => Ok(attempts),
        Err(e) if GROUP_NOT_FOUND.iter().any(|c| e.is(c)) => Ok(e.attempts),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_open_exactly_the_probed_ports_to_the_given_networks() {
        let from: Vec<ipnet::IpNet> = vec!["198.51.100.7/32".parse().unwrap(), "2001:db8::/64".parse().unwrap()];
        let rules = permissions(&[22, 8080], &from);
        assert_eq!(rules.len(), 2);
        for (rule, port) in rules.iter().zip([22, 8080]) {
            assert_eq!((rule.ip_protocol(), rule.from_port(), rule.to_port()), (Some("tcp"), Some(port), Some(port)));
            let v4: Vec<_> = rule.ip_ranges().iter().filter_map(|r| r.cidr_ip()).collect();
            let v6: Vec<_> = rule.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()).collect();
            assert_eq!((v4, v6), (vec!["198.51.100.7/32"], vec!["2001:db8::/64"]));
        }
    }
}
