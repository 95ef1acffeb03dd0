//! Providers: where a cell's machine runs. One trait, implemented by `ec2` and `qemu`; nothing outside
//! this module knows a provider's own words.
//!
//! The engine drives a [`Machine`] through launch -> running -> screenshots and probes -> console log
//! -> terminate. Whatever a provider creates is also written into the run's [`Ledger`], so that the
//! engine can remove it even when the task that created it panicked or was abandoned.

pub mod ec2;
pub mod field;
pub mod key;
pub mod qemu;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cell::Cell;
use crate::probe::{ConnectMeaning, Endpoint};
use crate::spec::{FieldPath, KeyPair, Problem};

pub use field::Field;

/// Exactly one provider section.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ProviderSpec {
    #[serde(default)]
    pub ec2: Option<ec2::Ec2Spec>,
    #[serde(default)]
    pub qemu: Option<qemu::QemuSpec>,
}

/// The provider section resolved and checked: what the plan carries and the run's provider is made
/// from. Only this module looks inside.
#[derive(Debug, Clone)]
pub enum Settings {
    Ec2(ec2::Ec2Spec),
    Qemu(qemu::QemuPlan),
}

/// What every provider needs of the plan besides the cells.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The spec's name, in resource names and tags.
    pub spec_name: String,
    pub launch: LaunchPlan,
    pub run_timeout: Duration,
    pub cleanup_timeout: Duration,
}

/// How machines are launched, whatever the provider: `launch:` without the provider's own fields.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    /// `os`: decides the kind of the run's key (RSA for Windows).
    pub os: crate::spec::Os,
    pub key_pair: KeyPair,
    pub keep_private_key: bool,
    pub user_data: Option<Vec<u8>>,
    pub tags: BTreeMap<String, String>,
}

impl Settings {
    /// Checks and resolves the `provider:` section (relative paths against `base`).
    pub fn resolve(spec: &ProviderSpec, base: &Path, problems: &mut Vec<Problem>) -> Option<Settings> {
        let path = FieldPath::root().key("provider");
        match (&spec.ec2, &spec.qemu) {
            (Some(ec2), None) => {
                ec2.check(&path.key("ec2"), problems);
                Some(Settings::Ec2(ec2.clone()))
            }
            (None, Some(qemu)) => qemu.resolve(base, &path.key("qemu"), problems).map(Settings::Qemu),
            (None, None) => {
                problems.push(Problem::at_key(path, "no provider given").help("add `ec2: {...}` or `qemu: {...}`"));
                None
            }
            (Some(_), Some(_)) => {
                problems.push(
                    Problem::at_key(path.key("qemu"), "more than one provider given")
                        .help("a spec runs on one provider: keep either `ec2` or `qemu`"),
                );
                None
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Settings::Ec2(_) => "ec2",
            Settings::Qemu(_) => "qemu",
        }
    }

    /// The launch fields this provider understands (matrix axes and `launch:` keys).
    pub fn fields(&self) -> &'static [Field] {
        match self {
            Settings::Ec2(_) => ec2::FIELDS,
            Settings::Qemu(_) => qemu::FIELDS,
        }
    }

    /// Checks of one launch field value that need the provider's section (a size it names), placed
    /// at `at`, where the value was written; run after the field's own check passed.
    pub fn check_value(&self, name: &str, value: &serde_json::Value, at: &FieldPath) -> Vec<Problem> {
        match self {
            Settings::Ec2(_) => Vec::new(),
            Settings::Qemu(plan) => qemu::check_value(plan, name, value, at),
        }
    }

    /// Checks the generic launch settings against what this provider can do.
    pub fn check_launch(&self, launch: &LaunchPlan, path: &FieldPath, problems: &mut Vec<Problem>) {
        match self {
            Settings::Ec2(_) => ec2::check_launch(launch, path, problems),
            Settings::Qemu(_) => qemu::check_launch(launch, path, problems),
        }
    }

    /// What will not work as asked, known before launching (shown by `plan` and `run`).
    pub fn warnings(&self, cells: &[Cell]) -> Vec<String> {
        match self {
            Settings::Ec2(_) => ec2::warnings(cells),
            Settings::Qemu(_) => Vec::new(),
        }
    }

    /// Why the run's command line does not fit these settings, if it does not (exit 2 before
    /// anything runs).
    pub fn run_flags_problem(&self, probe_from: Option<&[ipnet::IpNet]>, keep_failed: bool) -> Option<String> {
        match self {
            Settings::Ec2(spec) => ec2::probe_from_problem(spec, probe_from)
                .or_else(|| keep_failed.then(|| ec2::keep_problem(spec)).flatten()),
            // A QEMU machine is a process of the run's: none outlives it.
            Settings::Qemu(_) => {
                keep_failed.then(|| "--keep-failed is for ec2: no qemu machine outlives its run".into())
            }
        }
    }

    /// The provider a run uses.
    pub fn provider(&self, run: RunSettings) -> Arc<dyn Provider> {
        match self {
            Settings::Qemu(q) => Arc::new(qemu::QemuProvider::new(q.clone(), run)),
            Settings::Ec2(spec) => Arc::new(ec2::Ec2Provider::new(spec.clone(), run)),
        }
    }
}

/// Every provider's launch fields, for the JSON Schema (a name two providers share has one meaning).
pub fn all_fields() -> impl Iterator<Item = &'static Field> {
    ec2::FIELDS.iter().chain(qemu::FIELDS.iter())
}

/// Something a provider did not manage, as a lowercase fragment ("failed to start qemu: ...").
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub message: String,
    pub kind: ErrorKind,
}

/// What the engine does about a [`ProviderError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The step failed.
    Failed,
    /// The request was refused as unsupported (e.g. screenshots on a metal instance): not a failure.
    Unsupported,
    /// The run was interrupted before the step began; what earlier steps created is removed.
    Interrupted,
}

impl ProviderError {
    pub fn new(message: impl Into<String>) -> Self {
        ProviderError { message: message.into(), kind: ErrorKind::Failed }
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        ProviderError { message: message.into(), kind: ErrorKind::Unsupported }
    }

    pub fn interrupted(message: impl Into<String>) -> Self {
        ProviderError { message: message.into(), kind: ErrorKind::Interrupted }
    }
}

/// A running machine found unwell by its provider, with the reason as a lowercase fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The image's fault (an impaired instance reachability check): the cell fails.
    ImageFailure(String),
    /// The platform's fault, not the image's (an impaired system status check): the cell is an error.
    InfrastructureError(String),
}

/// What a provider's preflight found.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub warnings: Vec<String>,
    /// Cells that can't run as asked: (cell id, why), the why a lowercase fragment.
    pub impossible: Vec<(String, String)>,
}

/// What a cell needs to launch its machine.
#[derive(Debug, Clone)]
pub struct LaunchContext {
    pub run_id: String,
    /// Which try of the cell this is (`retries`), from 0: a new try is a new launch, never taken
    /// for a repeat of the last one (EC2's client tokens).
    pub try_number: u32,
    /// The cell's own output directory (screenshots, console log).
    pub cell_dir: PathBuf,
    /// Guest ports the probes will connect to.
    pub probe_ports: Vec<u16>,
    /// Where the probes come from (`run --probe-from`): what a security group made for the run opens
    /// the probed ports to.
    pub probe_from: Vec<ipnet::IpNet>,
    pub ledger: Ledger,
    /// Set when the run is interrupted: a launch finishes the call in flight (never abandons a
    /// create), starts no further one, and removes what it made before returning `Interrupted`.
    pub cancel: tokio_util::sync::CancellationToken,
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Checks what can be checked before anything is created: warnings to show, and the cells that
    /// can't run as asked (an image that doesn't exist, an arm64 image on an x86 type...).
    async fn preflight(&self, cells: &[Cell]) -> Result<Checked, ProviderError>;

    /// Creates the cell's machine. On error, whatever was created is already in the ledger.
    async fn launch(&self, cell: &Cell, ctx: &LaunchContext) -> Result<Box<dyn Machine>, ProviderError>;

    /// Removes resources left in the ledger by cells that could not clean up after themselves, taking
    /// each one it removed off the ledger.
    async fn remove_leftovers(&self, leftovers: Vec<Resource>, ledger: &Ledger) -> Vec<CleanupStep>;

    /// The last step of every run, interrupted or not: finds whatever still carries the run's id
    /// (something a cell lost track of) and removes it, taking what it removed off the ledger. Each
    /// step names the resource.
    async fn sweep_run(&self, run_id: &str, ledger: &Ledger) -> Vec<CleanupStep>;
}

#[async_trait]
pub trait Machine: Send + Sync {
    /// What the report shows about the machine (instance id, address, type; or the QEMU command line).
    fn facts(&self) -> serde_json::Value;

    /// Waits until the machine runs; fails when it stops or `timeout` passes.
    async fn wait_running(&mut self, timeout: Duration) -> Result<(), ProviderError>;

    /// Where a guest port can be reached from here, or why it can't.
    fn endpoint(&self, guest_port: u16) -> Result<Endpoint, String>;

    /// Things worth a line in the timeline that happened during launch (capacity fallbacks).
    fn launch_notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// How long the launch waited for a slot under the provider's rate limits (not the provider's
    /// own time): shown apart in the timeline.
    fn queued(&self) -> Duration {
        Duration::ZERO
    }

    /// The addresses probes may contact unless `--allow-targets` says otherwise.
    fn own_addresses(&self) -> Vec<ipnet::IpNet>;

    /// Whether a completed TCP connection proves the guest listens.
    fn connect_meaning(&self) -> ConnectMeaning;

    /// A screenshot of the console (PNG, JPEG or PPM bytes).
    async fn screenshot(&mut self) -> Result<Vec<u8>, ProviderError>;

    /// Refreshes the console log while the machine runs (for providers that only keep the latest part).
    async fn poll_console(&mut self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// The whole console log so far.
    async fn console_log(&mut self) -> Result<String, ProviderError>;

    /// For a console that stayed empty: the last thing known to have happened before it should have
    /// spoken (QEMU: the firmware's last boot message), e.g. "`Booting from Hard Disk...` (firmware.log)".
    /// `None` where an empty console proves nothing (EC2 serves console output minutes late).
    async fn before_console(&mut self) -> Option<String> {
        None
    }

    /// How often the engine refreshes and checks the console while the machine runs: the sooner a
    /// fatal sign is seen, the sooner a broken machine stops (and stops billing).
    fn console_poll_interval(&self) -> Duration {
        Duration::from_secs(5)
    }

    /// Whether the machine stopped by itself (powered off, panicked, its process exited), and why, as
    /// a lowercase fragment ("guest panicked", "qemu exited (exit status: 0)"). Checked on every
    /// console poll; `None` while it runs.
    async fn stopped(&mut self) -> Option<String> {
        None
    }

    /// Whether the running machine is unwell (a failed status check), checked on every console poll
    /// like [`Machine::stopped`]; `None` while it is well or its provider can't tell.
    async fn health(&mut self) -> Option<Health> {
        None
    }

    /// The key the machine was given to log in with (the run's own key), for SSH probes; `None` when
    /// the spec named an existing key pair.
    fn login_key(&self) -> Option<std::sync::Arc<key::RunKey>> {
        None
    }

    /// Where the machine's Windows administrator password can be fetched (EC2's GetPasswordData).
    fn admin_password(&self) -> Option<std::sync::Arc<dyn AdminPassword>> {
        None
    }

    /// Reboots the running machine the way its platform does (`reboot: true`): EC2's
    /// RebootInstances, QEMU's system reset.
    async fn reboot(&mut self) -> Result<(), ProviderError> {
        Err(ProviderError::unsupported("this provider can't reboot a machine"))
    }

    /// Leaves the (failed) machine running for someone to look at until `until`, when `amiprobe
    /// sweep` removes it (`--keep-failed`); returns how to reach it.
    async fn keep(&mut self, until: std::time::SystemTime) -> Result<String, ProviderError> {
        let _ = until;
        Err(ProviderError::unsupported("this provider keeps no machine after its run"))
    }

    /// Stops the machine and removes what was created for it; `hurry` skips waiting for confirmation.
    async fn terminate(&mut self, hurry: bool) -> Vec<CleanupStep>;
}

/// A Windows machine's administrator password as its platform keeps it: encrypted to the run's key.
#[async_trait]
pub trait AdminPassword: Send + Sync {
    /// The encrypted password (base64), or `None` while the platform doesn't have it yet.
    async fn encrypted(&self) -> Result<Option<String>, ProviderError>;
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
}

impl CleanupStep {
    pub fn ok(action: impl Into<String>) -> Self {
        CleanupStep { action: action.into(), ok: true, message: String::new(), attempts: None }
    }

    pub fn failed(action: impl Into<String>, message: impl Into<String>) -> Self {
        CleanupStep { action: action.into(), ok: false, message: message.into(), attempts: None }
    }

    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = (attempts > 1).then_some(attempts);
        self
    }
}

/// Something created that must not outlive the run. Recorded in the ledger *before* the call that
/// creates it, so that an interruption at any moment leaves a trace to clean up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Process {
        pid: u32,
        cell: String,
    },
    /// A RunInstances call made (or about to be made) with this client token; its id is not known yet.
    PendingInstance {
        client_token: String,
        cell: String,
        /// The EC2 region it was launched in: where it is looked for and removed.
        region: String,
    },
    Instance {
        id: String,
        cell: String,
        region: String,
    },
    /// A key pair: the run's own (`cell` empty), imported once per region.
    KeyPair {
        name: String,
        cell: String,
        region: String,
    },
    /// A security group made for the whole run in one VPC: recorded by its name before it is created
    /// (`id` is `None` until EC2 answers), removed once no instance uses it.
    SecurityGroup {
        name: String,
        id: Option<String>,
        vpc: String,
        region: String,
    },
}

impl Resource {
    pub fn cell(&self) -> &str {
        match self {
            Resource::Process { cell, .. }
            | Resource::PendingInstance { cell, .. }
            | Resource::Instance { cell, .. }
            | Resource::KeyPair { cell, .. } => cell,
            // The run's, not one cell's.
            Resource::SecurityGroup { .. } => "",
        }
    }

    /// The identifier a cleanup step names the resource by.
    /// The EC2 region an ec2 resource lives in (`None` for a process).
    pub fn region(&self) -> Option<&str> {
        match self {
            Resource::Process { .. } => None,
            Resource::PendingInstance { region, .. }
            | Resource::Instance { region, .. }
            | Resource::KeyPair { region, .. }
            | Resource::SecurityGroup { region, .. } => Some(region),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Resource::Process { pid, .. } => pid.to_string(),
            Resource::PendingInstance { client_token, .. } => client_token.clone(),
            Resource::Instance { id, .. } => id.clone(),
            Resource::KeyPair { name, .. } => name.clone(),
            Resource::SecurityGroup { name, id, .. } => id.clone().unwrap_or_else(|| name.clone()),
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Process { pid, cell } => write!(f, "qemu process {pid} (cell {cell})"),
            Resource::PendingInstance { client_token, cell, .. } => {
                write!(f, "instance launched with client token {client_token} (cell {cell})")
            }
            Resource::Instance { id, cell, .. } => write!(f, "instance {id} (cell {cell})"),
            Resource::KeyPair { name, cell, .. } if cell.is_empty() => write!(f, "key pair {name} (the run's)"),
            Resource::KeyPair { name, cell, .. } => write!(f, "key pair {name} (cell {cell})"),
            Resource::SecurityGroup { name, id: Some(id), vpc, .. } => {
                write!(f, "security group {id} ({name} in {vpc}, the run's)")
            }
            Resource::SecurityGroup { name, id: None, vpc, .. } => {
                write!(f, "security group {name} (in {vpc}, the run's)")
            }
        }
    }
}

/// The run's list of created resources; a resource leaves it once removed.
#[derive(Debug, Clone, Default)]
pub struct Ledger(Arc<Mutex<Vec<Resource>>>);

impl Ledger {
    pub fn record(&self, resource: Resource) {
        self.lock().push(resource);
    }

    pub fn removed(&self, resource: &Resource) {
        self.lock().retain(|r| r != resource);
    }

    /// Keeps only what `keep` says is still there.
    pub fn retain(&self, keep: impl FnMut(&Resource) -> bool) {
        self.lock().retain(keep);
    }

    /// What was recorded before a create call becomes what the call created.
    pub fn replace(&self, before: &Resource, after: Resource) {
        let mut list = self.lock();
        list.retain(|r| r != before);
        list.push(after);
    }

    pub fn remaining(&self) -> Vec<Resource> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Resource>> {
        // A panic while holding the lock leaves a valid Vec: keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
