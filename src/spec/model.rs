//! The spec as written: the types a YAML spec file deserializes into.
//!
//! Every struct rejects nothing by itself: unknown keys are collected by the loader (so that all of them
//! are reported at once) and cross-field rules live in `validate`. The JSON Schema still says
//! `additionalProperties: false` (`schemars(deny_unknown_fields)`), so that an editor flags the same
//! keys `validate` does; `serde(deny_unknown_fields)` would stop deserializing at the first one. No `untagged` or `flatten` here, they
//! ruin error messages: "one of several shapes" fields have hand-written visitors in `values`.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::axes::{Fields, MatrixSpec};
use super::values::{ByteSize, DurationSchema, KeyPair, StatusMatcher};

/// One product's smoke test: which images to boot where, what to capture, and what must be true.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Spec {
    /// A short name for the product under test; used in reports and resource tags.
    pub name: String,
    /// Free text shown at the top of the report.
    #[serde(default)]
    pub description: Option<String>,
    /// Where the cells run: exactly one of `ec2` or `qemu`.
    pub provider: ProviderSpec,
    /// The image matrix: every combination of the axes, minus `exclude`, plus `include`.
    pub matrix: MatrixSpec,
    #[serde(default)]
    pub launch: LaunchSpec,
    #[serde(default)]
    pub capture: CaptureSpec,
    /// Checks made against the running machine over the network, retried until their deadline.
    #[serde(default)]
    pub probes: Vec<ProbeSpec>,
    /// Assertions on the console log, checked once it has been collected.
    #[serde(default)]
    pub console: ConsoleSpec,
    /// How many cells run at once (default 4).
    #[serde(default)]
    pub concurrency: Option<NonZeroUsize>,
    #[serde(default)]
    pub timeouts: TimeoutsSpec,
}

/// Exactly one provider section.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ProviderSpec {
    #[serde(default)]
    pub ec2: Option<Ec2Spec>,
    #[serde(default)]
    pub qemu: Option<QemuSpec>,
}

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
    #[serde(default = "default_poll", with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub poll_interval: Duration,
    /// How often each instance's console output is read and checked while it runs (default 10s):
    /// a fatal sign stops the cell at the next read. Each read is one GetConsoleOutput call.
    #[serde(default = "default_console_poll", with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub console_poll_interval: Duration,
    /// `ephemeral`: amiprobe makes one security group per run and VPC, opening exactly the probed
    /// TCP ports to `run --probe-from CIDR,...`, adds it to every instance's groups and deletes it once
    /// the instances are gone. Default `none`: only the cells' own `security_groups`.
    #[serde(default)]
    pub security_group: SecurityGroupMode,
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

fn default_poll() -> Duration {
    Duration::from_secs(2)
}

/// Token buckets per API class; the defaults are EC2's own published per-account limits.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RateLimitsSpec {
    /// Describe* and Get* calls (screenshots, console output, instance state).
    #[serde(default = "rate_describe")]
    pub describe: RateSpec,
    #[serde(default = "rate_run_instances")]
    pub run_instances: RateSpec,
    #[serde(default = "rate_terminate")]
    pub terminate_instances: RateSpec,
    /// Other mutating calls: CreateKeyPair, DeleteKeyPair, and the ephemeral security group's
    /// CreateSecurityGroup, AuthorizeSecurityGroupIngress and DeleteSecurityGroup.
    #[serde(default = "rate_mutating")]
    pub mutating: RateSpec,
}

impl Default for RateLimitsSpec {
    fn default() -> Self {
        RateLimitsSpec {
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

/// A local virtual machine under QEMU: the same spec, no cloud account.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct QemuSpec {
    /// Images the matrix `image` axis can name. A value that is not a name here is taken as a disk path.
    #[serde(default)]
    pub images: BTreeMap<String, QemuImage>,
    /// Guest memory, e.g. `256M` or `1G` (default 256M).
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Virtual CPUs (default 1).
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    /// Accelerator: `auto` proves KVM with a real boot and falls back to TCG.
    #[serde(default)]
    pub accel: Accel,
    /// The QEMU binary (default `qemu-system-x86_64` on PATH).
    #[serde(default)]
    pub binary: Option<String>,
}

fn default_memory() -> ByteSize {
    ByteSize(256 * 1024 * 1024)
}

fn default_cpus() -> u32 {
    1
}

/// A bootable image: a kernel (with optional initrd and command line) or a disk.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct QemuImage {
    /// Kernel to boot directly; relative paths are relative to the spec file.
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default)]
    pub append: Option<String>,
    /// A disk image (qcow2 or raw) to boot from instead of a kernel.
    #[serde(default)]
    pub disk: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    #[default]
    Auto,
    Tcg,
    Kvm,
}

/// How each machine is launched. Besides these, any launch field of the provider (`instance_type`,
/// `root_volume`...) may be fixed here for every cell, or varied as a matrix axis of the same name.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct LaunchSpec {
    /// `ephemeral` (the default: created per cell, deleted afterwards) or an existing key pair's name.
    #[serde(default)]
    pub key_pair: KeyPair,
    /// Write the ephemeral private key next to the results (mode 0600). Never put into reports.
    #[serde(default)]
    pub keep_private_key: bool,
    /// User data: a path (starting with `./`, `../` or `/`, relative to the spec) or inline text.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Extra tags on everything amiprobe creates.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The provider's launch fields fixed for every cell.
    #[serde(skip)]
    #[schemars(skip)]
    pub fields: Fields,
}

/// What is recorded while the machine boots.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct CaptureSpec {
    /// Screenshot phases, in order: every `every` until `until` (time since launch).
    #[serde(default = "default_screenshots")]
    pub screenshots: Vec<ScreenshotPhase>,
    /// Collect the console log (default true).
    #[serde(default = "default_true")]
    pub console_log: bool,
    /// Keep capturing this long after all probes passed (default 0s).
    #[serde(default, with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub after_ready: Duration,
}

impl Default for CaptureSpec {
    fn default() -> Self {
        CaptureSpec { screenshots: default_screenshots(), console_log: true, after_ready: Duration::ZERO }
    }
}

fn default_true() -> bool {
    true
}

fn default_screenshots() -> Vec<ScreenshotPhase> {
    vec![
        ScreenshotPhase { every: Duration::from_secs(1), until: Duration::from_secs(15) },
        ScreenshotPhase { every: Duration::from_secs(15), until: Duration::from_secs(300) },
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ScreenshotPhase {
    #[serde(with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub every: Duration,
    #[serde(with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub until: Duration,
}

/// One network check. Exactly one of `tcp` or `http`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ProbeSpec {
    /// Unique within the spec; names the probe in reports.
    pub name: String,
    #[serde(default)]
    pub tcp: Option<TcpProbe>,
    #[serde(default)]
    pub http: Option<HttpProbe>,
    /// What an HTTP answer must look like.
    #[serde(default)]
    pub expect: Option<ExpectSpec>,
    /// Deadline, from the moment the machine is running (default 300s).
    #[serde(default = "default_within", with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub within: Duration,
    /// Pause between attempts (default 2s).
    #[serde(default = "default_interval", with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub interval: Duration,
    /// Connect here instead of the machine's address (a tunnel or bastion).
    #[serde(default)]
    pub host: Option<String>,
}

fn default_within() -> Duration {
    Duration::from_secs(300)
}

fn default_interval() -> Duration {
    Duration::from_secs(2)
}

/// A TCP check. Where a provider can't prove a listener by connecting (QEMU user networking accepts
/// every forwarded connection itself), the peer must also send data.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TcpProbe {
    pub port: u16,
    /// Text to send after connecting (e.g. a protocol greeting); the peer must then answer.
    #[serde(default)]
    pub send: Option<String>,
    /// Text the peer's first bytes must contain (a banner such as `SSH-2.0`).
    #[serde(default)]
    pub contains: Option<String>,
}

/// An HTTP request.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HttpProbe {
    pub port: u16,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub method: HttpMethod,
    #[serde(default)]
    pub scheme: HttpScheme,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// Per-attempt timeout (default 5s).
    #[serde(default = "default_request_timeout", with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub timeout: Duration,
}

fn default_path() -> String {
    "/".to_string()
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HttpScheme {
    #[default]
    Http,
    /// HTTPS; certificates are not verified (images under test use self-signed ones).
    Https,
}

/// Expectations on an HTTP answer. All given ones must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExpectSpec {
    /// A code (`200`), a list (`[200, 204]`) or a range (`200-299`). Default 200-399.
    #[serde(default)]
    pub status: Option<StatusMatcher>,
    /// Header name -> text its value must contain.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body_contains: Option<String>,
    #[serde(default)]
    pub body_regex: Option<String>,
    /// JSON path (RFC 9535) -> the value found there.
    #[serde(default)]
    pub json: BTreeMap<String, serde_json::Value>,
}

/// Console log assertions. Patterns are plain text matched within a line.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ConsoleSpec {
    #[serde(default)]
    pub must_contain: Vec<String>,
    #[serde(default)]
    pub must_not_contain: Vec<String>,
    /// Also fail on the built-in signs of a broken boot (kernel panic, Oops, I/O errors, emergency
    /// shells, lockups, call traces). Default true.
    #[serde(default = "default_true")]
    pub builtin: bool,
    /// Lines containing any of these are exempt from `must_not_contain` and the built-in patterns.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Stop a cell as soon as a built-in fatal sign (panic, emergency shell, I/O error...) or a
    /// `must_not_contain` line appears, instead of probing a broken machine until its deadline.
    /// Default true.
    #[serde(default = "default_true")]
    pub stop_on_fatal: bool,
}

impl Default for ConsoleSpec {
    fn default() -> Self {
        ConsoleSpec {
            must_contain: Vec::new(),
            must_not_contain: Vec::new(),
            builtin: true,
            ignore: Vec::new(),
            stop_on_fatal: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct TimeoutsSpec {
    /// Upper bound on one cell, launch to cleanup (default 15m).
    #[serde(default = "default_run_timeout", with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub run: Duration,
    /// How long removing what a run created is retried (with backoff) before a resource is reported
    /// as not removed (default 10m). EC2 can be slow or briefly not find what was just created.
    #[serde(default = "default_cleanup_timeout", with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub cleanup: Duration,
}

impl Default for TimeoutsSpec {
    fn default() -> Self {
        TimeoutsSpec { run: default_run_timeout(), cleanup: default_cleanup_timeout() }
    }
}

fn default_cleanup_timeout() -> Duration {
    Duration::from_secs(10 * 60)
}

fn default_run_timeout() -> Duration {
    Duration::from_secs(15 * 60)
}
