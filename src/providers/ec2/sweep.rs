//! `amiprobe sweep`: finds and removes what amiprobe tagged, for runs whose process was killed, once
//! the credentials of every region it looks in are checked (as `--assume-role`'s role, when given: a
//! session of its own, `amiprobe-sweep`).

use std::time::{Duration, SystemTime};

use aws_sdk_ec2::types::Filter;

use super::api::{self, Api};
use super::credentials::identity;
use super::{tag, EXPIRES_TAG, KEPT_TAG, RUN_ID_TAG};
use crate::provider::{AccessError, Selection, SweepReport, SweepRequest};

/// What a sweep found (and removed, unless a dry run) in one region.
#[derive(Debug, Default)]
pub struct Swept {
    pub instances: Vec<String>,
    pub key_pairs: Vec<String>,
    /// The runs' ephemeral security groups, by id.
    pub security_groups: Vec<String>,
    pub errors: Vec<String>,
}

fn selected(selection: &Selection, tags: &[aws_sdk_ec2::types::Tag], created: Option<SystemTime>) -> bool {
    let now = SystemTime::now();
    match selection {
        Selection::Run(id) => tag(tags, RUN_ID_TAG) == Some(id.as_str()),
        Selection::RunEnd(id) => tag(tags, RUN_ID_TAG) == Some(id.as_str()) && tag(tags, KEPT_TAG).is_none(),
        // Kept instances wait for their own expiry, however old.
        Selection::OlderThan(age) => {
            tag(tags, KEPT_TAG).is_none() && created.is_some_and(|c| now.duration_since(c).is_ok_and(|d| d >= *age))
        }
        Selection::Expired => tag(tags, EXPIRES_TAG)
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .is_some_and(|expires| expires <= now),
    }
}

fn to_system_time(t: &aws_sdk_ec2::primitives::DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*t).ok()
}

/// How long `sweep` retries a removal that EC2 refuses for a moment.
const SWEEP_RETRY: Duration = Duration::from_secs(120);

/// An instance found by its tags.
#[derive(Debug, Clone)]
pub struct Found {
    pub id: String,
    pub client_token: Option<String>,
    pub state: String,
}

/// The states in which an instance still runs or can be started again.
const LIVE: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// Lists the live instances (pending to stopped: not shutting down or gone), the key pairs and the
/// security groups that `selection` picks, by amiprobe's tags.
pub async fn find(api: &Api, selection: &Selection, report: &mut Swept) -> Vec<Found> {
    let found = instances(api, selection, &LIVE, report).await;
    report.instances.extend(found.iter().map(|f| f.id.clone()));
    key_pairs(api, selection, report).await;
    security_groups(api, selection, report).await;
    found
}

/// The instances `selection` picks, in any of `states` (all states when empty).
pub async fn instances(api: &Api, selection: &Selection, states: &[&str], report: &mut Swept) -> Vec<Found> {
    let mut found = Vec::new();
    let tagged = Filter::builder().name("tag-key").values(RUN_ID_TAG).build();
    let live = (!states.is_empty()).then(|| {
        Filter::builder()
            .name("instance-state-name")
            .set_values(Some(states.iter().map(|s| s.to_string()).collect()))
            .build()
    });
    let filters: Vec<Filter> = std::iter::once(tagged).chain(live).collect();
    let mut token: Option<String> = None;
    loop {
        let next = token.clone();
        let out = api
            .call(&api.buckets.describe, "DescribeInstances", || {
                api.client.describe_instances().set_filters(Some(filters.clone())).set_next_token(next.clone()).send()
            })
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                report.errors.push(e.to_string());
                break;
            }
        };
        for instance in out.reservations().iter().flat_map(|r| r.instances()) {
            let created = instance.launch_time().and_then(to_system_time);
            if selected(selection, instance.tags(), created) {
                if let Some(id) = instance.instance_id() {
                    found.push(Found {
                        id: id.to_string(),
                        client_token: instance.client_token().filter(|t| !t.is_empty()).map(str::to_string),
                        state: instance
                            .state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str().to_string())
                            .unwrap_or_default(),
                    });
                }
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    found
}

/// The key pairs `selection` picks, into `report.key_pairs`.
async fn key_pairs(api: &Api, selection: &Selection, report: &mut Swept) {
    match api.call(&api.buckets.describe, "DescribeKeyPairs", || api.client.describe_key_pairs().send()).await {
        Ok(out) => {
            for kp in out.key_pairs() {
                if tag(kp.tags(), RUN_ID_TAG).is_some()
                    && selected(selection, kp.tags(), kp.create_time().and_then(to_system_time))
                {
                    if let Some(name) = kp.key_name() {
                        report.key_pairs.push(name.to_string());
                    }
                }
            }
        }
        Err(e) => report.errors.push(e.to_string()),
    }
}

/// The security groups `selection` picks, into `report.security_groups`. EC2 gives a group no
/// creation time: `--older-than` picks none (their `amiprobe:expires` tag, the default, does).
async fn security_groups(api: &Api, selection: &Selection, report: &mut Swept) {
    let tagged = Filter::builder().name("tag-key").values(RUN_ID_TAG).build();
    let mut token: Option<String> = None;
    loop {
        let next = token.clone();
        let out = api
            .call(&api.buckets.describe, "DescribeSecurityGroups", || {
                api.client.describe_security_groups().filters(tagged.clone()).set_next_token(next.clone()).send()
            })
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                report.errors.push(e.to_string());
                return;
            }
        };
        for group in out.security_groups() {
            if tag(group.tags(), RUN_ID_TAG).is_some() && selected(selection, group.tags(), None) {
                report.security_groups.extend(group.group_id().map(str::to_string));
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return;
        }
    }
}

pub async fn sweep(api: &Api, selection: &Selection, dry_run: bool) -> Swept {
    let mut report = Swept::default();
    find(api, selection, &mut report).await;
    if dry_run {
        return report;
    }
    let until = tokio::time::Instant::now() + SWEEP_RETRY;
    for chunk in report.instances.chunks(100) {
        if let Err(e) = api.terminate(chunk, until).await {
            report.errors.push(e.to_string());
        }
    }
    for name in &report.key_pairs {
        if let Err(e) = api.delete_key_pair(name, until).await {
            report.errors.push(e.to_string());
        }
    }
    // Last: a group goes once the instances in it (terminated just above) are gone.
    for id in &report.security_groups {
        if let Err(e) = super::security_group::delete(api, id, until).await {
            report.errors.push(e.to_string());
        }
    }
    report
}

/// `amiprobe sweep`: the credentials of every region checked first (none given: the environment's or
/// profile's region), then each region swept in turn, with the region's name as EC2 knows it.
pub async fn sweep_regions(request: &SweepRequest) -> Result<Vec<SweepReport>, AccessError> {
    let mut spec: super::Ec2Spec =
        serde_yaml::from_str("{}").unwrap_or_else(|_| unreachable!("an empty ec2 section is valid"));
    spec.profile.clone_from(&request.profile);
    spec.assume_role = request.assume_role.clone().map(|role_arn| super::AssumeRoleSpec {
        role_arn,
        external_id: request.external_id.clone(),
        session_name: None,
        // A spec's default: renewed before it ends like any other.
        duration: Duration::from_secs(3600),
    });
    let regions: Vec<Option<&str>> = match request.places.as_slice() {
        [] => vec![None],
        many => many.iter().map(|r| Some(r.as_str())).collect(),
    };
    let mut apis = Vec::new();
    for region in regions {
        let (mut config, name) =
            api::sdk_config(&spec, region).await.map_err(super::credentials::Ec2AccessError::from)?;
        let mut role = None;
        if let Some(assume) = &spec.assume_role {
            (config, role) = super::role::assume(config, assume, "sweep").await;
        }
        let api = Api::with_client(aws_sdk_ec2::Client::new(&config), &name, &spec.rate_limits);
        identity(&api, &aws_sdk_sts::Client::new(&config), spec.profile.as_deref(), role.as_ref()).await?;
        apis.push(api);
    }
    let mut reports = Vec::new();
    for api in apis {
        let swept = sweep(&api, &request.selection, request.dry_run).await;
        reports.push(swept.report(api.region.clone()));
    }
    Ok(reports)
}

impl Swept {
    /// The report `amiprobe sweep` prints: instances, then key pairs, then security groups.
    fn report(self, place: String) -> SweepReport {
        let removed = (self.instances.into_iter().map(|id| ("instance", id)))
            .chain(self.key_pairs.into_iter().map(|name| ("key pair", name)))
            .chain(self.security_groups.into_iter().map(|id| ("security group", id)))
            .collect();
        SweepReport { place, removed, errors: self.errors }
    }
}
