//! The `provider.ec2` section of a spec as written, and its checks.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{DurationSchema, FieldPath, Problem};

/// The slowest API rate a spec may ask for: one call every 1000 s.
const MIN_RATE: f64 = 0.001;

/// Amazon EC2, through the official SDK and the standard credential chain.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Ec2Spec {
    /// The region; when omitted, taken from the environment or profile.
    #[serde(default)]
    pub region: Option<String>,
    /// A named profile from the shared AWS config files.
    #[serde(default)]
    pub profile: Option<String>,
    /// Which of the instance's addresses probes connect to.
    #[serde(default)]
    pub address: AddressKind,
    /// Alternatives tried in order when EC2 has no capacity for a cell.
    #[serde(default)]
    pub fallback: FallbackSpec,
    /// Client-side API rate limits (token buckets), so that big matrices are not throttled.
    #[serde(default)]
    pub rate_limits: RateLimitsSpec,
    /// How often the run's instances are described (one call for all of them; default 2s).
    #[serde(default = "default_poll", with = "crate::spec::duration")]
    #[schemars(with = "DurationSchema")]
    pub poll_interval: Duration,
    /// How often each instance's console output is read and checked while it runs (default 10s):
    /// a fatal sign stops the cell at the next read. Each read is one GetConsoleOutput call.
    #[serde(default = "default_console_poll", with = "crate::spec::duration")]
    #[schemars(with = "DurationSchema")]
    pub console_poll_interval: Duration,
    /// How often the running instances' status checks are read (one DescribeInstanceStatus for all of
    /// them; default 15s). EC2 runs its checks about once a minute: asking more often costs calls
    /// and learns nothing sooner.
    #[serde(default = "default_status_poll", with = "crate::spec::duration")]
    #[schemars(with = "DurationSchema")]
    pub status_poll_interval: Duration,
    /// `ephemeral`: amiprobe makes one security group per run and VPC, opening exactly the probed
    /// TCP ports to `run --probe-from CIDR,...`, adds it to every instance's groups and deletes it once
    /// the instances are gone. Default `none`: only the cells' own `security_groups`.
    #[serde(default)]
    pub security_group: SecurityGroupMode,
    /// A role assumed through STS for every call of the run (and its cleanup), with the credentials
    /// found the usual way as the caller's: images tested in another account. Its credentials are
    /// renewed before they expire, however long the run and its cleanup take.
    #[serde(default)]
    pub assume_role: Option<AssumeRoleSpec>,
    /// What to do with each image all of whose cells passed, once the whole run is over (never
    /// after an interrupted run, a shard before `report merge --promote`, or a rerun of some cells):
    /// tag the AMI in its own region, and/or write its id to an SSM parameter there. What this writes
    /// is meant to stay: no cleanup or sweep removes it.
    #[serde(default)]
    pub on_pass: Option<OnPassSpec>,
}

/// `provider.ec2.on_pass`: the promotion of an image that passed. Values may hold the placeholders
/// `{run_id}`, `{time}` (the promotion's time, RFC 3339), `{spec}`, `{image}` (the AMI id) and
/// `{region}`; quote a value that starts with one (`"{time}"`), or YAML reads a mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct OnPassSpec {
    /// Tags put on the AMI (CreateTags, in the AMI's region), e.g. `{ tested-by: amiprobe,
    /// tested-at: "{time}", tested-run: "{run_id}" }`. A key already on the image gets the new value.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// An SSM parameter (String, data type `aws:ec2:image`) set to the AMI's id in the AMI's region,
    /// overwriting its value, e.g. `/images/web/latest-tested`. `{image}` and `{region}` may make
    /// it differ per image; `{run_id}` and `{time}` may not be in it (a new parameter every run). Two
    /// images of one region that would write the same parameter refuse the run before it starts.
    #[serde(default)]
    pub ssm_parameter: Option<String>,
}

/// `provider.ec2.assume_role`: the role, and how its sessions are asked for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AssumeRoleSpec {
    /// The role's ARN: `arn:aws:iam::ACCOUNT:role/NAME`.
    pub role_arn: String,
    /// The external id the role's trust policy requires, if it requires one.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The session's name, in the role's CloudTrail events (2 to 64 of letters, digits and
    /// `+=,.@_-`). Default: `amiprobe-` and the spec's name.
    #[serde(default)]
    pub session_name: Option<String>,
    /// How long each session's credentials last (15m to 12h, within the role's maximum session
    /// duration; default 1h). amiprobe asks for new ones shortly before they expire.
    #[serde(default = "default_role_duration", with = "crate::spec::duration")]
    #[schemars(with = "DurationSchema")]
    pub duration: Duration,
}

fn default_role_duration() -> Duration {
    Duration::from_secs(3600)
}

/// Whether amiprobe makes a security group of its own for the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecurityGroupMode {
    /// The cells' own `security_groups` (or the VPC's default group) only.
    #[default]
    None,
    /// One group per run and VPC, for the probes: created on first need, removed at the run's end.
    Ephemeral,
}

fn default_console_poll() -> Duration {
    Duration::from_secs(10)
}

fn default_status_poll() -> Duration {
    Duration::from_secs(15)
}

fn default_poll() -> Duration {
    Duration::from_secs(2)
}

/// Token buckets per API class; the defaults are EC2's own published per-account limits.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RateLimitsSpec {
    /// The share of each limit amiprobe uses (default 0.8): the account's budget is shared with
    /// other tools, and EC2 throttles them all once it is spent. 1.0 on an account of its own.
    #[serde(default = "default_share")]
    pub share: f64,
    /// Describe* and Get* calls (screenshots, console output, instance state).
    #[serde(default = "rate_describe")]
    pub describe: RateSpec,
    #[serde(default = "rate_run_instances")]
    pub run_instances: RateSpec,
    #[serde(default = "rate_terminate")]
    pub terminate_instances: RateSpec,
    /// Other mutating calls: ImportKeyPair, DeleteKeyPair, and the ephemeral security group's
    /// CreateSecurityGroup, AuthorizeSecurityGroupIngress and DeleteSecurityGroup.
    #[serde(default = "rate_mutating")]
    pub mutating: RateSpec,
}

impl Default for RateLimitsSpec {
    fn default() -> Self {
        RateLimitsSpec {
            share: default_share(),
            describe: rate_describe(),
            run_instances: rate_run_instances(),
            terminate_instances: rate_terminate(),
            mutating: rate_mutating(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RateSpec {
    /// Calls that may go at once after a quiet period.
    pub burst: u32,
    /// Sustained calls per second.
    pub per_second: f64,
}

fn default_share() -> f64 {
    0.8
}

impl RateLimitsSpec {
    /// A class's rate as amiprobe paces it: `share` of the limit, at least one call at a time.
    pub fn paced(&self, rate: RateSpec) -> RateSpec {
        RateSpec {
            burst: ((f64::from(rate.burst) * self.share).floor() as u32).max(1),
            per_second: rate.per_second * self.share,
        }
    }
}

fn rate_describe() -> RateSpec {
    RateSpec { burst: 100, per_second: 20.0 }
}
fn rate_run_instances() -> RateSpec {
    RateSpec { burst: 5, per_second: 2.0 }
}
fn rate_terminate() -> RateSpec {
    RateSpec { burst: 100, per_second: 5.0 }
}
fn rate_mutating() -> RateSpec {
    RateSpec { burst: 50, per_second: 5.0 }
}

/// Which instance address the probes use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    #[default]
    PublicIp,
    PrivateIp,
    PublicDns,
}

/// Capacity fallbacks: on InsufficientInstanceCapacity the launch is retried with the next entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FallbackSpec {
    #[serde(default)]
    pub instance_type: Vec<String>,
    #[serde(default)]
    pub subnet: Vec<String>,
}

impl Ec2Spec {
    /// What the section asks that can't be, found before anything runs.
    pub fn check(&self, path: &FieldPath, problems: &mut Vec<Problem>) {
        let rates = path.key("rate_limits");
        let r = &self.rate_limits;
        if !(r.share > 0.0 && r.share <= 1.0) {
            problems.push(Problem::at(rates.key("share"), "share must be above 0 and at most 1"));
        }
        for (name, rate) in [
            ("describe", r.describe),
            ("run_instances", r.run_instances),
            ("terminate_instances", r.terminate_instances),
            ("mutating", r.mutating),
        ] {
            // A rate near 0 would make the wait for a token overflow a Duration.
            let paced = rate.per_second * r.share.clamp(0.0, 1.0);
            if rate.burst == 0 || !(paced >= MIN_RATE && rate.per_second.is_finite()) {
                problems.push(Problem::at(
                    rates.key(name),
                    format!("a rate needs `burst` of at least 1 and `per_second` x `share` of at least {MIN_RATE}"),
                ));
            }
        }
        if self.console_poll_interval < Duration::from_secs(1) {
            problems.push(Problem::at(
                path.key("console_poll_interval"),
                "interval must be at least 1s (each read is an API call per instance)",
            ));
        }
        if self.status_poll_interval < Duration::from_secs(1) {
            problems.push(Problem::at(path.key("status_poll_interval"), "interval must be at least 1s"));
        }
        if self.poll_interval.is_zero() {
            problems.push(Problem::at(path.key("poll_interval"), "interval must be above 0s"));
        }
        if let Some(role) = &self.assume_role {
            role.check(&path.key("assume_role"), problems);
        }
        if let Some(on_pass) = &self.on_pass {
            super::promote::template::check(on_pass, &path.key("on_pass"), problems);
        }
    }
}

impl AssumeRoleSpec {
    /// STS's own limits, so that a role that can't be asked for is found before anything runs.
    fn check(&self, path: &FieldPath, problems: &mut Vec<Problem>) {
        if let Err(e) = super::role::check_arn(&self.role_arn) {
            problems.push(Problem::at(path.key("role_arn"), e.to_string()));
        }
        if let Some(name) = &self.session_name {
            if let Err(e) = super::role::check_session_name(name) {
                problems.push(Problem::at(path.key("session_name"), e.to_string()));
            }
        }
        if let Some(id) = &self.external_id {
            if let Err(e) = super::role::check_external_id(id) {
                problems.push(Problem::at(path.key("external_id"), e.to_string()));
            }
        }
        if !(super::role::MIN_SESSION..=super::role::MAX_SESSION).contains(&self.duration) {
            problems.push(Problem::at(path.key("duration"), "a role's session lasts from 15m to 12h"));
        }
    }
}
