//! The types of results.json: the run, its cells, and what each cell saw.
//!
//! Each type's `///` docs are the descriptions in `schemas/results.schema.json`: editing one edits
//! the published schema (tests/schema.rs tells). Types whose runtime twin lives elsewhere
//! (screenshots, console findings, probe attempts, cleanup steps) are declared here on their own, so
//! that changing the runtime type cannot change the format unnoticed; `super::convert` maps them.

use serde::{Deserialize, Serialize};

use crate::cell::Cell;
pub use crate::console::{BootPhase, BootPhases, PhaseBound, PhaseClock, PhaseName, TimedBy};

/// The version of the format written; a reader refuses a newer one.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunResults {
    pub schema_version: u32,
    pub amiprobe_version: String,
    pub run_id: String,
    pub spec: SpecInfo,
    /// Who the run acted as, as the provider's credentials said before anything ran (EC2: STS
    /// GetCallerIdentity); absent where the provider has no accounts (QEMU), and in results written
    /// before amiprobe told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Account>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub status: RunStatus,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    pub duration_s: f64,
    pub counts: Counts,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Removals made at the end of the run: what cells could not remove and what the run shares (its
    /// key pair, its security groups), then the sweep of everything that carries the run's id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leftover_cleanup: Vec<CleanupStep>,
    /// What the run created and could not confirm removed: it may still run (and cost). Remove it
    /// with `amiprobe sweep --run-id RUN_ID`. A run with anything here never exits 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_removed: Vec<NotRemoved>,
    /// Set by `amiprobe report merge`: the shards (or run ids) these results were joined from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// What the verdict promoted (`provider.ec2.on_pass`: tags on each image all of whose cells
    /// passed, its id in an SSM parameter), or why nothing was; absent when the spec asks for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotions: Option<Promotions>,
    /// The spec's `baseline:` settings: how this run is compared with another by default (its key's
    /// axes, thresholds, ignored lines); absent when the spec has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<super::since::BaselineRules>,
    /// What changed since a baseline run (`run --baseline DIR`); absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_last_night: Option<super::since::Comparison>,
    pub cells: Vec<CellResult>,
}

/// The promotion of a run's images on its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Promotions {
    /// Why the run promoted no image at all, whatever its cells did; absent when it acted on its
    /// verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<Withheld>,
    /// Each image (AMI id and region) of the run, with its cells and what became of it.
    pub images: Vec<ImagePromotion>,
}

/// Why a run promoted nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Withheld {
    /// The run was interrupted (a signal): its verdict is not whole.
    Interrupted,
    /// A shard (`run --shard K/N`): `report merge --promote` promotes once every shard is merged.
    Shard,
    /// A rerun of some cells (`--rerun-failed`): the image's other cells are not in it.
    Rerun,
    /// Merged shards without `--promote`.
    NotAsked,
    /// Merged shards that miss cells of the spec's plan, or one of which did not end.
    Incomplete,
}

impl Withheld {
    /// Why, as a fragment for the report, the summary and the images' reasons.
    pub fn why(self) -> &'static str {
        match self {
            Withheld::Interrupted => "the run was interrupted",
            Withheld::Shard => "a shard of a run: `amiprobe report merge --promote SPEC` promotes the merged run",
            Withheld::Rerun => "a rerun of some cells (--rerun-failed): the image's other cells are not in it",
            Withheld::NotAsked => "merged without --promote",
            Withheld::Incomplete => {
                "the merged shards are not the whole run: cells of the spec are missing or did not end"
            }
        }
    }
}

/// One image of the run and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImagePromotion {
    /// The AMI id.
    pub image: String,
    pub region: String,
    /// The cells that launched it.
    pub cells: Vec<String>,
    pub status: PromotionStatus,
    /// Why it was not promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the promotion wrote (or tried to).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<PromotionAction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromotionStatus {
    /// Every cell passed and every action was done.
    Promoted,
    /// Some cell did not pass: nothing was written.
    NotPassed,
    /// Every cell passed, but the run may not promote (`withheld`), or a signal came first.
    Withheld,
    /// The platform refused an action: an error of the run, which then exits 1.
    Refused,
}

/// One write of a promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PromotionAction {
    pub kind: PromotionKind,
    /// `key=value, ...` for tags; the parameter's name.
    pub target: String,
    /// Why it failed; absent when it was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromotionKind {
    /// Tags on the AMI.
    Tags,
    /// The AMI's id in an SSM parameter.
    SsmParameter,
}

/// The provider's account a run acted in, and who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Account {
    /// The account (EC2: the 12-digit AWS account id).
    pub id: String,
    /// Who acted in it (EC2: the caller's ARN, a user or a role's session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

/// A resource the run may have left behind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NotRemoved {
    /// What it is, with its id: "instance i-0abc (cell ami-1_t3.micro)".
    pub resource: String,
    pub cell: String,
    /// The last error met while removing it.
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpecInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub file: String,
    pub provider: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still running: the results of a run read (from its journal, results.jsonl) while it goes.
    Running,
    Passed,
    Failed,
    Interrupted,
    /// The preflight found cells that can't run as asked; nothing was launched.
    Refused,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Counts {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub errored: usize,
    pub not_run: usize,
    /// Passed cells that failed before they passed (counted in `passed` too).
    #[serde(default)]
    pub flaky: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    NotRun,
    Running,
    Passed,
    /// The image failed: a probe or console assertion, the machine stopping by itself, an impaired
    /// instance status check (JUnit `<failure>`).
    Failed,
    /// The cell could not be run as asked, not the image's fault: launch failed (capacity, quotas),
    /// an API error, an impaired system status check, a failed removal, a crash (JUnit `<error>`).
    Error,
    TimedOut,
    Interrupted,
}

impl CellStatus {
    pub fn is_pass(self) -> bool {
        self == CellStatus::Passed
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CellResult {
    pub id: String,
    /// Position in the whole plan (before sharding): merged shards are listed in this order.
    #[serde(default)]
    pub index: usize,
    pub params: CellParams,
    pub status: CellStatus,
    /// One line saying why the cell did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default)]
    pub timings: Timings,
    /// Provider facts: instance id, address, type, zone; or the QEMU command line.
    #[serde(default)]
    pub machine: serde_json::Value,
    #[serde(default)]
    pub events: Vec<TimelineEvent>,
    #[serde(default)]
    pub screenshots: Vec<Screenshot>,
    /// Why there are no screenshots, when the provider could not take them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screenshots_note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_log: Option<String>,
    #[serde(default)]
    pub console: Vec<ConsoleFinding>,
    /// The boot in phases (firmware, kernel, initramfs, userspace, services), from the console's
    /// stamps and the launch's times; absent when no phase had both its ends seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_phases: Option<BootPhases>,
    #[serde(default)]
    pub probes: Vec<ProbeResult>,
    #[serde(default)]
    pub errors: Vec<String>,
    #[serde(default)]
    pub cleanup: Vec<CleanupStep>,
    /// The tries before this one (`retries`), in order; their files are in their own directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_tries: Vec<EarlierTry>,
    /// Passed, but only after failing: a flaky image (or platform), never reported as a plain pass.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flaky: bool,
}

/// A try of a cell that did not pass and was run again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EarlierTry {
    pub status: CellStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The try's directory (screenshots, console log), relative to the results.
    pub dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

/// The matrix values of a cell: each axis (and `include` key) by name, in spec order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct CellParams(pub serde_json::Map<String, serde_json::Value>);

impl CellParams {
    /// A value as a short label (`ami-1`, `sg-a+sg-b`, `30-io2`).
    pub fn label(&self, name: &str) -> Option<String> {
        self.0.get(name).map(crate::provider::field::label)
    }
}

impl From<&Cell> for CellParams {
    fn from(c: &Cell) -> Self {
        CellParams(c.values.clone())
    }
}

/// Seconds since the cell's launch began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Timings {
    /// How long the launch waited for a slot under the provider's rate limits (included in
    /// `launched_s`); absent when it did not wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_screenshot_s: Option<f64>,
    /// All probes passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TimelineEvent {
    pub at_s: f64,
    pub kind: EventKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Launching,
    Launched,
    Running,
    PortOpen,
    ProbePassed,
    ProbeFailed,
    Ready,
    ConsoleMatch,
    CapacityFallback,
    /// The machine was rebooted (`reboot: true`), after which every probe runs again.
    Reboot,
    /// The cell did not pass and runs again (`retries`).
    Retry,
    /// The run was interrupted (a signal) while this cell was at this point.
    Interrupted,
    Error,
    Cleanup,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProbeResult {
    pub name: String,
    pub kind: String,
    /// host:port the probe connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub passed: bool,
    /// Seconds since launch of the first passing attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_passed_s: Option<f64>,
    pub attempts_count: usize,
    /// What the last attempt saw.
    pub message: String,
    /// Every attempt, without bodies.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// The last HTTP request and response, with a body excerpt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exchange: Option<HttpExchange>,
    /// The last SSH command, with its exit status and output excerpts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ssh: Option<SshExchange>,
}

/// A screenshot as stored next to the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Screenshot {
    /// Relative to the results directory.
    pub path: String,
    /// Seconds since launch at which it was taken.
    pub offset_s: f64,
    pub width: u32,
    pub height: u32,
    /// Perceptual hash (base64), to collapse identical consecutive frames in reports.
    pub hash: String,
    /// Index of the first screenshot of the run of identical frames this one belongs to.
    pub duplicate_of: Option<usize>,
}

// What kind of rule a console finding is about (no `///`: the schema has no description here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    MustContain,
    MustNotContain,
    Builtin,
}

/// The outcome of one rule on one console log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConsoleFinding {
    pub kind: RuleKind,
    /// The pattern as written, or the built-in rule's name.
    pub rule: String,
    pub passed: bool,
    /// The lines (1-based) that matched, with their text; at most [`MAX_HITS`].
    pub hits: Vec<ConsoleHit>,
}

// A console line that matched a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConsoleHit {
    pub line: usize,
    pub text: String,
    /// Seconds since the cell's launch when the line was first seen on the console (known for lines
    /// that appeared while the machine ran; the console is polled, so it is late by up to a poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen_s: Option<f64>,
}

/// One try of one probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempt {
    /// Seconds since launch when the attempt started.
    pub at_s: f64,
    pub passed: bool,
    /// What was seen, as a lowercase fragment: "status 503, expected 200".
    pub message: String,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<HttpExchange>,
    /// The SSH command and what it wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshExchange>,
}

/// What was sent and what came back, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HttpExchange {
    pub method: String,
    pub url: String,
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body_excerpt: String,
    pub body_truncated: bool,
}

/// What was run and what came back, for the report; secrets masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SshExchange {
    /// `user@host:port`, with ` via user@jump:port` when through a jump host.
    pub target: String,
    pub command: String,
    /// The host key the machine presented: `SHA256:... (ssh-ed25519)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<u32>,
    /// Set when the command was killed by a signal instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<String>,
    pub stdout: String,
    pub stderr: String,
    /// Either stream was longer than its excerpt.
    pub truncated: bool,
}

/// One cleanup action and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CleanupStep {
    pub action: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// How many attempts it took, when more than one (EC2 may be slow to find what was just made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    // Not in results.json: what the engine tells not-removed resources and a failed final sweep
    // by while the run goes (the provider's typed values, see `provider::CleanupStep`).
    #[serde(skip)]
    #[schemars(skip)]
    pub resource: Option<String>,
    #[serde(skip)]
    #[schemars(skip)]
    pub sweep: bool,
}

impl RunResults {
    pub fn recount(&mut self) {
        let mut c = Counts { total: self.cells.len(), ..Counts::default() };
        for cell in &self.cells {
            match cell.status {
                CellStatus::Passed => {
                    c.passed += 1;
                    c.flaky += usize::from(cell.flaky);
                }
                CellStatus::Failed | CellStatus::TimedOut => c.failed += 1,
                CellStatus::Error => c.errored += 1,
                CellStatus::NotRun | CellStatus::Running | CellStatus::Interrupted => c.not_run += 1,
            }
        }
        self.counts = c;
    }

    /// Writes `results.json` atomically (a reader never sees half a file).
    pub fn write(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let tmp = dir.join(".results.json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, dir.join("results.json"))
    }
}
