//! What the registry (`crate::providers`) knows of each provider: its name, its `provider:` section
//! and launch fields ([`ProviderKind`]); and what a resolved section answers for the plan and the run
//! ([`ProviderSettings`]). No code above the contract decides on a provider's name: it asks these.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use schemars::{Schema, SchemaGenerator};

use super::field::Expanded;
use super::{AccessError, Field, Provider};
use crate::cell::Cell;
use crate::console::PlatformRules;
use crate::spec::{FieldPath, KeyPair, Os, Problem};

/// A provider as the registry lists it.
#[async_trait]
pub trait ProviderKind: Sync {
    /// Its key under `provider:` (`ec2`, `qemu`).
    fn name(&self) -> &'static str;

    /// The launch fields it understands (matrix axes and `launch:` keys).
    fn fields(&self) -> &'static [Field];

    /// The JSON Schema of its section, its definitions added to `generator`.
    fn section_schema(&self, generator: &mut SchemaGenerator) -> Schema;

    /// Reads and checks its section (`raw`, found at `at`), relative paths against `base`.
    fn resolve(
        &self,
        raw: &serde_yaml::Value,
        base: &Path,
        at: &FieldPath,
        problems: &mut Vec<Problem>,
    ) -> Option<Arc<dyn ProviderSettings>>;

    /// What `amiprobe sweep` removes: whatever runs left behind, found by amiprobe's tags. A
    /// provider none of whose machines outlives its run has nothing to sweep. Its credentials are
    /// checked in every place first: an error there means nothing was looked at or removed.
    async fn sweep(&self, request: &SweepRequest) -> Result<Vec<SweepReport>, AccessError> {
        let _ = request;
        Ok(Vec::new())
    }

    /// The kinds of thing its sweep removes, singular and plural, for the closing count
    /// ("2 instances, 1 key pair"); empty when it has nothing to sweep.
    fn swept_kinds(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
}

/// A provider's section, read and checked: what the plan carries and the run's provider is made
/// from.
pub trait ProviderSettings: std::fmt::Debug + Send + Sync {
    fn name(&self) -> &'static str;

    /// The launch fields this provider understands.
    fn fields(&self) -> &'static [Field];

    /// The agent inside its machines that runs `agent:` probes' commands, by name (`None`: the
    /// provider has none, and such probes are refused by `validate`).
    fn agent(&self) -> Option<&'static str> {
        None
    }

    /// Checks of one launch field value that need the provider's section (a size it names), placed
    /// at `at`, where the value was written; run after the field's own check passed.
    fn check_value(&self, name: &str, value: &serde_json::Value, at: &FieldPath) -> Vec<Problem> {
        let _ = (name, value, at);
        Vec::new()
    }

    /// The values a launch field's written value stands for, each maybe tied to other fields (a
    /// Packer manifest: each of its images, in its region), read with `base` for relative paths;
    /// problems placed at `at`. Most values stand for themselves.
    fn expand_value(
        &self,
        name: &str,
        value: &serde_json::Value,
        base: &Path,
        at: &FieldPath,
    ) -> Result<Vec<Expanded>, Vec<Problem>> {
        let _ = (name, base, at);
        Ok(vec![Expanded::itself(value.clone())])
    }

    /// How a cell's id names one of its values.
    fn label(&self, name: &str, value: &serde_json::Value) -> String {
        let _ = name;
        super::field::label(value)
    }

    /// Checks the generic launch settings against what this provider can do.
    fn check_launch(&self, launch: &LaunchPlan, path: &FieldPath, problems: &mut Vec<Problem>) {
        let _ = (launch, path, problems);
    }

    /// What will not work as asked, known before launching (shown by `plan` and `run`).
    fn warnings(&self, cells: &[Cell]) -> Vec<String> {
        let _ = cells;
        Vec::new()
    }

    /// What may keep the agent of `cells`' machines from answering `agent:` probes (asked only when
    /// the spec has some).
    fn agent_warnings(&self, cells: &[Cell]) -> Vec<String> {
        let _ = cells;
        Vec::new()
    }

    /// The console rules of this platform for machines of `os` (Windows on EC2: EC2Launch's), added
    /// to the generic ones.
    fn console_rules(&self, os: Os) -> PlatformRules {
        let _ = os;
        PlatformRules::default()
    }

    /// Why the run's command line does not fit these settings, if it does not (exit 2 before
    /// anything runs).
    fn check_flags(&self, flags: &RunFlags) -> Result<(), FlagsRefused>;

    /// The provider a run uses.
    fn provider(&self, run: RunSettings) -> Arc<dyn Provider>;

    /// The least-privilege access policy (IAM's JSON) a run needs, for a provider whose cloud has
    /// one (`amiprobe policy`); `None` for a provider that needs no permissions.
    fn policy(&self, needs: &PolicyNeeds<'_>) -> Option<serde_json::Value> {
        let _ = needs;
        None
    }
}

/// What a run does that decides the permissions it needs, beyond the provider's own section.
#[derive(Debug, Clone, Copy)]
pub struct PolicyNeeds<'a> {
    pub cells: &'a [Cell],
    pub launch: &'a LaunchPlan,
    /// `reboot: true`.
    pub reboot: bool,
    /// Some probe reads the Windows password.
    pub windows_password: bool,
    /// Some probe runs commands through the machines' agent.
    pub agent: bool,
}

/// The command-line choices of `amiprobe run` a provider may refuse.
#[derive(Debug, Clone, Default)]
pub struct RunFlags {
    /// `--probe-from`: where the probes come from.
    pub probe_from: Option<Vec<ipnet::IpNet>>,
    /// `--keep-failed`: a failed cell's machine stays.
    pub keep_failed: bool,
    /// Some probe connects to a port of the machine (not only agent probes).
    pub ports: bool,
}

/// Why the run's command line does not fit the provider, as a lowercase fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FlagsRefused(pub String);

/// What every provider needs of the plan besides the cells.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The spec's name, in resource names and tags.
    pub spec_name: String,
    pub launch: LaunchPlan,
    pub run_timeout: Duration,
    pub cleanup_timeout: Duration,
    /// Where each `image` value was written (`spec.yaml:7:12 (matrix.image[1])`), by the value as a
    /// cell holds it (its text, or its JSON): what a preflight can't resolve is named at its place.
    pub image_places: Arc<BTreeMap<String, String>>,
    /// Some probe runs commands through the machines' agent.
    pub agent: bool,
}

/// How machines are launched, whatever the provider: `launch:` without the provider's own fields.
#[derive(Debug, Clone)]
pub struct LaunchPlan {
    /// `os`: decides the kind of the run's key (RSA for Windows).
    pub os: Os,
    pub key_pair: KeyPair,
    pub keep_private_key: bool,
    pub user_data: Option<Vec<u8>>,
    pub tags: BTreeMap<String, String>,
}

/// Which leftovers `amiprobe sweep` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Run(String),
    /// The run's own end: the run's, but not what it kept for debugging (`--keep-failed`).
    RunEnd(String),
    OlderThan(Duration),
    /// Past their expiry tag (the default).
    Expired,
}

/// What `amiprobe sweep` was asked.
#[derive(Debug, Clone)]
pub struct SweepRequest {
    pub selection: Selection,
    /// Where to look (EC2 regions); empty: the provider's default.
    pub places: Vec<String>,
    /// The credentials profile to use, where the provider has profiles.
    pub profile: Option<String>,
    /// A role to act as, where the provider has roles (EC2: its ARN, assumed through STS), and the
    /// external id its trust policy requires.
    pub assume_role: Option<String>,
    pub external_id: Option<String>,
    /// List what would be removed, remove nothing.
    pub dry_run: bool,
}

/// What a sweep did in one place (an EC2 region).
#[derive(Debug, Clone, Default)]
pub struct SweepReport {
    pub place: String,
    /// What was (or, on a dry run, would be) removed: its kind (singular, as in
    /// [`ProviderKind::swept_kinds`]) and its id.
    pub removed: Vec<(&'static str, String)>,
    pub errors: Vec<String>,
}
