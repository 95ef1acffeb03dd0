//! The spec as written: the types a YAML spec file deserializes into.
//!
//! Every struct rejects nothing by itself: unknown keys are collected by the loader (so that all of
//! them are reported at once) and cross-field rules live in `plan`'s resolve. The JSON Schema still
//! says `additionalProperties: false` (`schemars(deny_unknown_fields)`), so that an editor flags the
//! same keys `amiprobe validate` does; `serde(deny_unknown_fields)` would stop deserializing at the
//! first one. No `untagged` or `flatten` here, they ruin error messages: "one of several shapes"
//! fields have hand-written visitors in `values`. `provider:` stays raw ([`ProviderSection`](super::ProviderSection)): the
//! spec knows no provider.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::axes::{Fields, MatrixSpec};
use super::values::{DurationSchema, KeyPair, StatusMatcher};

/// One product's smoke test: which images to boot where, what to capture, and what must be true.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Spec {
    /// A short name for the product under test; used in reports and resource tags.
    pub name: String,
    /// Free text shown at the top of the report.
    #[serde(default)]
    pub description: Option<String>,
    /// Where the cells run: exactly one provider's section (the registry's schema names them).
    pub provider: super::provider_section::ProviderSection,
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
    /// The images' operating system: `linux` (the default) or `windows`, which adds EC2Launch's
    /// console rules (readiness and failures), an RSA run key and longer default deadlines. On EC2
    /// the preflight refuses a Windows image without it, and the reverse.
    #[serde(default)]
    pub os: Option<Os>,
    /// Once every probe has passed, reboot the machine (EC2 RebootInstances, QEMU system reset) and
    /// run every probe again; the filmstrip and timeline show both boots (default false).
    #[serde(default)]
    pub reboot: bool,
    /// Run a cell that did not pass again, up to this many more times (default 0). A cell that passes
    /// on a retry is reported as flaky, never as a plain pass. `--retries` overrides it.
    #[serde(default)]
    pub retries: u32,
    /// Values masked (`********`) wherever probe traffic is recorded: SSH commands and their output,
    /// HTTP exchanges. Usually `${VAR}`s, so the value itself is never in the spec.
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub timeouts: TimeoutsSpec,
    /// How `run --baseline DIR` and `report compare` compare the run with an earlier one (last
    /// night's); the command line's flags win over these.
    #[serde(default)]
    pub baseline: BaselineSpec,
}

/// How a run is compared with a baseline run (`run --baseline DIR`, `report compare`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BaselineSpec {
    /// The matrix axes a cell is matched by across nights (default: every axis; the key lists them
    /// in the matrix's order, whatever the order here). Values
    /// that change every night are replaced by `image` whichever axes are named: an AMI id and a
    /// disk file's path. Name fewer axes when one of them changes between nights by design (a
    /// build number as an axis).
    #[serde(default)]
    pub key: Option<Vec<String>>,
    /// A duration (to ready, or a boot phase) regressed when longer than the baseline's by more
    /// than this ratio (default 0.25) and by more than `floor`. `--regression-ratio` wins.
    #[serde(default)]
    pub ratio: Option<f64>,
    /// A duration regressed only when longer by more than this (default 2s). `--regression-floor`
    /// wins.
    #[serde(default, with = "super::duration::option")]
    #[schemars(with = "Option<DurationSchema>")]
    pub floor: Option<Duration>,
    /// Console lines matching these regular expressions are never new (lines that come and go
    /// between boots of one build); `--regression-ignore` adds to them.
    #[serde(default)]
    pub ignore_lines: Vec<String>,
    /// A regression fails a run that otherwise passed (default false; `--fail-on-regression`).
    #[serde(default)]
    pub fail_on_regression: bool,
}

/// How each machine is launched. Besides these, any launch field of the provider (`instance_type`,
/// `root_volume`...) may be fixed here for every cell, or varied as a matrix axis of the same name.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct LaunchSpec {
    /// `ephemeral` (the default: one key per run, made here, imported, deleted afterwards) or an existing
    /// key pair's name.
    #[serde(default)]
    pub key_pair: KeyPair,
    /// Write the ephemeral private key to `keys/id_ed25519` in the results (mode 0600). Never put into
    /// reports.
    #[serde(default)]
    pub keep_private_key: bool,
    /// User data: a path (starting with `./`, `../` or `/`, relative to the spec) or inline text.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Extra tags on everything amiprobe creates; a `Name` here replaces amiprobe's own. EC2's limits
    /// apply: keys of 1 to 128 characters, not starting `aws:` in any case, values of at most 256, and
    /// at most 45 tags besides `Name`.
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
    /// Screenshot phases, in order: every `every` until `until`, counted from the moment the machine
    /// is running (queued and pending time are shown apart in the timeline).
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

/// An operating system family, for the rules and deadlines that differ between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    #[default]
    Linux,
    Windows,
}

/// One check of a running machine. Exactly one of `tcp`, `http`, `ssh`, `agent`, `rdp` or
/// `windows_password`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ProbeSpec {
    /// Unique within the spec; names the probe in reports.
    pub name: String,
    #[serde(default)]
    pub tcp: Option<TcpProbe>,
    #[serde(default)]
    pub http: Option<HttpProbe>,
    #[serde(default)]
    pub ssh: Option<SshProbe>,
    #[serde(default)]
    pub agent: Option<AgentProbe>,
    #[serde(default)]
    pub rdp: Option<RdpProbe>,
    #[serde(default)]
    pub windows_password: Option<WindowsPasswordProbe>,
    /// What an HTTP answer or an SSH command's outcome must look like.
    #[serde(default)]
    pub expect: Option<ExpectSpec>,
    /// Deadline, from the moment the machine is running (default 300s; 20m with `os: windows`).
    #[serde(default, with = "super::duration::option")]
    #[schemars(with = "Option<DurationSchema>")]
    pub within: Option<Duration>,
    /// Time from one attempt's start to the next one's (default 2s). While the target has given no
    /// sign, a new attempt starts every interval even if older ones wait on (at most 4 at once);
    /// once it answers, one at a time.
    #[serde(default = "default_interval", with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub interval: Duration,
    /// Connect here instead of the machine's address (a tunnel or bastion).
    #[serde(default)]
    pub host: Option<String>,
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

/// A command run on the machine over SSH, as `user`, with the run's key (or `key_file`). The host
/// key is verified against the fingerprints the machine printed on its console (cloud-init's `BEGIN
/// SSH HOST KEY FINGERPRINTS` block) unless `host_key: accept-new`. Exactly one of `command` or
/// `script`. Probes with the same user, port, key, jump host and `host_key` share one connection.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SshProbe {
    /// A command line for the user's shell.
    #[serde(default)]
    pub command: Option<String>,
    /// A script file (relative to the spec), fed to `sh -s` on the machine.
    #[serde(default)]
    pub script: Option<String>,
    /// The user to log in as (default `root`; Debian's images use `debian`, Ubuntu's `ubuntu`).
    #[serde(default = "default_ssh_user")]
    pub user: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// A private key file (OpenSSH format, relative to the spec) instead of the run's own key.
    #[serde(default)]
    pub key_file: Option<String>,
    /// How the machine's host key is checked: `console` (the default) or `accept-new`.
    #[serde(default)]
    pub host_key: HostKeyPolicy,
    /// A jump host, `user@host` or `user@host:port`, reached with the same key. Its own host key must
    /// be in `~/.ssh/known_hosts` (or `jump_known_hosts`).
    #[serde(default)]
    pub jump: Option<String>,
    /// The known_hosts file for the jump host (relative to the spec; default `~/.ssh/known_hosts`).
    #[serde(default)]
    pub jump_known_hosts: Option<String>,
    /// Per-attempt timeout: connecting, logging in and the command together (default 30s).
    #[serde(default = "default_ssh_timeout", with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub timeout: Duration,
}

/// A command run inside the machine by the platform's own agent, with no port open and no route to
/// the machine: the QEMU guest agent (`qemu-guest-agent` in the image) on `qemu`. Exactly one of
/// `command` or `script`; the same `expect` as an `ssh` probe. Runs as the agent's user (root).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AgentProbe {
    /// A command line for `sh -c`.
    #[serde(default)]
    pub command: Option<String>,
    /// A script file (relative to the spec), fed to `sh -s` on the machine.
    #[serde(default)]
    pub script: Option<String>,
    /// Per-attempt timeout: reaching the agent and the command together (default 60s).
    #[serde(default = "default_agent_timeout", with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub timeout: Duration,
}

fn default_agent_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_ssh_user() -> String {
    "root".to_string()
}

fn default_ssh_port() -> u16 {
    22
}

fn default_ssh_timeout() -> Duration {
    Duration::from_secs(30)
}

/// How an SSH probe trusts the machine's host key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Only a key whose fingerprint the machine printed on its console (cloud-init does, and so can
    /// any image): a probe waits for the fingerprints and fails on a key that isn't among them.
    #[default]
    Console,
    /// The first key the cell sees is trusted, and later connections of the cell must present it.
    AcceptNew,
}

/// A Remote Desktop listener: the machine must answer an RDP connection request (X.224), which an
/// open port alone does not prove.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RdpProbe {
    #[serde(default = "default_rdp_port")]
    pub port: u16,
}

/// Windows generated its administrator password and gave it to the platform, encrypted to the run's
/// key (EC2's GetPasswordData, polled until it has it). The password is decrypted to prove it, and
/// never written anywhere. Needs `os: windows` (an RSA run key).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct WindowsPasswordProbe {}

fn default_rdp_port() -> u16 {
    3389
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

/// Expectations on an HTTP answer (`status`, `headers`, `body_*`, `json`) or an SSH command's outcome
/// (`exit_status`, `stdout_*`, `stderr_*`, `json` on stdout). All given ones must hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ExpectSpec {
    /// A code (`200`), a list (`[200, 204]`) or a range (`200-299`). Default 200-399.
    #[serde(default)]
    pub status: Option<StatusMatcher>,
    /// Header name -> text its value must contain.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Text the body must contain, as it is (line breaks and all).
    #[serde(default)]
    pub body_contains: Option<String>,
    /// A regex the body must match: `^` and `$` match at every line (`(?-m)` turns that off), and
    /// the body's final line break is left out, so `^up$` matches `up\n`.
    #[serde(default)]
    pub body_regex: Option<String>,
    /// JSON path (RFC 9535) -> the value found there (in the body, or an SSH command's stdout).
    #[serde(default)]
    pub json: BTreeMap<String, serde_json::Value>,
    /// The SSH command's exit status (default 0).
    #[serde(default)]
    pub exit_status: Option<u32>,
    /// Text the SSH command's stdout must contain, as it is (line breaks and all).
    #[serde(default)]
    pub stdout_contains: Option<String>,
    /// A regex the SSH command's stdout must match, line by line like `body_regex`: `^active$`
    /// matches `active\n`.
    #[serde(default)]
    pub stdout_regex: Option<String>,
    /// Text the SSH command's stderr must contain, as it is.
    #[serde(default)]
    pub stderr_contains: Option<String>,
    /// A regex the SSH command's stderr must match, line by line like `body_regex`.
    #[serde(default)]
    pub stderr_regex: Option<String>,
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
    /// Upper bound on one cell, launch to cleanup (default 15m; 40m with `os: windows`; twice that
    /// with `reboot: true`).
    #[serde(default, with = "super::duration::option")]
    #[schemars(with = "Option<DurationSchema>")]
    pub run: Option<Duration>,
    /// How long removing what a run created is retried (with backoff) before a resource is reported
    /// as not removed (default 10m). EC2 can be slow or briefly not find what was just created.
    #[serde(default = "default_cleanup_timeout", with = "super::duration")]
    #[schemars(with = "DurationSchema")]
    pub cleanup: Duration,
}

impl Default for TimeoutsSpec {
    fn default() -> Self {
        TimeoutsSpec { run: None, cleanup: default_cleanup_timeout() }
    }
}

fn default_cleanup_timeout() -> Duration {
    Duration::from_secs(10 * 60)
}

impl TimeoutsSpec {
    /// `run`, or the default for the images' operating system.
    pub fn run_or_default(&self, os: Os, reboot: bool) -> Duration {
        let one_boot = match os {
            Os::Linux => Duration::from_secs(15 * 60),
            Os::Windows => Duration::from_secs(40 * 60),
        };
        self.run.unwrap_or(if reboot { one_boot * 2 } else { one_boot })
    }
}
