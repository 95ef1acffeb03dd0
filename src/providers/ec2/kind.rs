//! The ec2 provider as the registry knows it: its `provider.ec2` section, its launch fields, what it
//! refuses before a run starts, and `amiprobe sweep`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::{Schema, SchemaGenerator};

use super::console_rules;
use super::instance_types::screenshot_unsupported;
use super::launch::Ec2Launch;
use super::tags::{MAX_KEY_CHARS, MAX_TAGS, MAX_VALUE_CHARS, NAME_TAG, OWN_TAGS};
use super::{sweep, Ec2Provider, Ec2Spec, SecurityGroupMode, FIELDS};
use crate::cell::Cell;
use crate::console::PlatformRules;
use crate::provider::field::Expanded;
use crate::provider::{
    section, AccessError, Field, FlagsRefused, LaunchPlan, Provider, ProviderKind, ProviderSettings, RunFlags,
    RunSettings, SweepReport, SweepRequest,
};
use crate::spec::{FieldPath, Os, Problem};

/// The registry's entry.
pub static KIND: Ec2Kind = Ec2Kind;

pub struct Ec2Kind;

#[async_trait]
impl ProviderKind for Ec2Kind {
    fn name(&self) -> &'static str {
        "ec2"
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    fn section_schema(&self, generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<Ec2Spec>()
    }

    fn resolve(
        &self,
        raw: &serde_yaml::Value,
        _base: &Path,
        at: &FieldPath,
        problems: &mut Vec<Problem>,
    ) -> Option<Arc<dyn ProviderSettings>> {
        let spec: Ec2Spec = section::read(raw, at, problems)?;
        spec.check(at, problems);
        Some(Arc::new(spec))
    }

    async fn sweep(&self, request: &SweepRequest) -> Result<Vec<SweepReport>, AccessError> {
        sweep::sweep_regions(request).await
    }

    fn swept_kinds(&self) -> &'static [(&'static str, &'static str)] {
        &[("instance", "instances"), ("key pair", "key pairs"), ("security group", "security groups")]
    }
}

impl ProviderSettings for Ec2Spec {
    fn name(&self) -> &'static str {
        "ec2"
    }

    fn agent(&self) -> Option<&'static str> {
        Some("SSM Run Command")
    }

    /// An SSM agent registers only with an instance profile whose role lets it (or under the
    /// account's Default Host Management Configuration, which amiprobe can't see): a warning, not
    /// a refusal.
    fn agent_warnings(&self, cells: &[Cell]) -> Vec<String> {
        let without: Vec<&str> = cells
            .iter()
            .filter(|c| Ec2Launch::of(c).ok().and_then(|f| f.iam_instance_profile).is_none())
            .map(|c| c.id.0.as_str())
            .collect();
        let Some(first) = without.first() else { return Vec::new() };
        let which = match without.len() {
            1 => format!("cell {first} launches"),
            n => format!("{n} cells ({first}, ...) launch"),
        };
        vec![format!(
            "{which} without an iam_instance_profile, and `agent:` probes need the SSM agent to register: give \
             them a profile whose role has AmazonSSMManagedInstanceCore (unless the account has SSM's Default \
             Host Management Configuration)"
        )]
    }

    fn policy(&self, needs: &crate::provider::PolicyNeeds<'_>) -> Option<serde_json::Value> {
        Some(super::permissions::policy_for(self, needs))
    }

    fn fields(&self) -> &'static [Field] {
        FIELDS
    }

    /// An `image` from the pipeline: a Packer manifest's images, each in its region (`images/`).
    fn expand_value(
        &self,
        name: &str,
        value: &serde_json::Value,
        base: &Path,
        at: &FieldPath,
    ) -> Result<Vec<Expanded>, Vec<Problem>> {
        match name {
            "image" => super::images::expand(value, base, at),
            _ => Ok(vec![Expanded::itself(value.clone())]),
        }
    }

    /// An image by its build, parameter or lookup rather than tonight's id.
    fn label(&self, name: &str, value: &serde_json::Value) -> String {
        match name {
            "image" => super::images::label(value),
            _ => crate::provider::field::label(value),
        }
    }

    /// EC2 takes user data of at most 16 KiB, and tags within its restrictions (`check_tags`).
    fn check_launch(&self, launch: &LaunchPlan, path: &FieldPath, problems: &mut Vec<Problem>) {
        if let Some(bytes) = launch.user_data.as_ref().filter(|b| b.len() > 16 * 1024) {
            problems.push(Problem::at(
                path.key("user_data"),
                format!("user data is {} bytes; EC2 takes at most 16 KiB", bytes.len()),
            ));
        }
        check_tags(&launch.tags, &path.key("tags"), problems);
    }

    /// What EC2 will not do as asked, known from the cells alone: screenshots of bare-metal types.
    fn warnings(&self, cells: &[Cell]) -> Vec<String> {
        cells
            .iter()
            .filter_map(|cell| {
                let why = cell.text("instance_type").and_then(screenshot_unsupported)?;
                Some(format!(
                    "cell {}: EC2 takes no screenshots of {why} instances; the cell runs without them",
                    cell.id
                ))
            })
            .collect()
    }

    fn console_rules(&self, os: Os) -> PlatformRules {
        match os {
            Os::Windows => console_rules::rules(),
            Os::Linux => PlatformRules::default(),
        }
    }

    fn check_flags(&self, flags: &RunFlags) -> Result<(), FlagsRefused> {
        // Without a probed port the run makes no security group: nothing to open, nothing removed.
        if !flags.ports {
            return Ok(());
        }
        probe_from_problem(self, flags.probe_from.as_deref())
            .or_else(|| flags.keep_failed.then(|| keep_problem(self)).flatten())
            .map_or(Ok(()), |why| Err(FlagsRefused(why)))
    }

    fn provider(&self, run: RunSettings) -> Arc<dyn Provider> {
        Arc::new(Ec2Provider::new(self.clone(), run))
    }
}

/// EC2's tag restrictions on the spec's own tags: keys starting `aws:` are EC2's own in any case
/// (`AWS:`, `Aws:`), a key has 1 to 128 characters, a value at most 256, and a resource at most 50
/// tags, of which amiprobe's own take 5 (a spec's `Name` replaces amiprobe's, so it is not counted).
fn check_tags(tags: &BTreeMap<String, String>, path: &FieldPath, problems: &mut Vec<Problem>) {
    for (key, value) in tags {
        let at = path.key(key.clone());
        let prefix = key.get(..4).unwrap_or_default();
        if prefix.eq_ignore_ascii_case("aws:") {
            problems.push(
                Problem::at_key(at.clone(), format!("tag `{key}` uses a reserved prefix"))
                    .help("EC2 keeps tag keys starting `aws:`, in any case, for itself"),
            );
        }
        let key_chars = key.chars().count();
        if !(1..=MAX_KEY_CHARS).contains(&key_chars) {
            problems.push(Problem::at_key(
                at.clone(),
                format!("tag key has {key_chars} characters; EC2 takes 1 to {MAX_KEY_CHARS}"),
            ));
        }
        let value_chars = value.chars().count();
        if value_chars > MAX_VALUE_CHARS {
            problems.push(Problem::at(
                at,
                format!("tag `{key}` has a value of {value_chars} characters; EC2 takes at most {MAX_VALUE_CHARS}"),
            ));
        }
    }
    let room = MAX_TAGS - OWN_TAGS;
    let counted = tags.keys().filter(|key| key.as_str() != NAME_TAG).count();
    if counted > room {
        problems.push(
            Problem::at_key(path.clone(), format!("{counted} tags besides `Name`; at most {room} fit"))
                .help(format!("EC2 takes {MAX_TAGS} tags on a resource and amiprobe puts {OWN_TAGS} of its own")),
        );
    }
}

/// Why a run can't start with these `--probe-from` networks, if it can't: an ephemeral security
/// group opens the probed ports to them, and no default is narrow enough to assume.
fn probe_from_problem(spec: &Ec2Spec, probe_from: Option<&[ipnet::IpNet]>) -> Option<String> {
    match (spec.security_group, probe_from) {
        (SecurityGroupMode::Ephemeral, None | Some([])) => Some(
            "provider.ec2.security_group: ephemeral needs --probe-from CIDR,... (the runner's own address, \
             e.g. 203.0.113.7/32): the run's security group opens the probed ports to those networks only"
                .to_string(),
        ),
        _ => None,
    }
}

/// Why `--keep-failed` can't be used with these settings, if it can't.
fn keep_problem(spec: &Ec2Spec) -> Option<String> {
    (spec.security_group == SecurityGroupMode::Ephemeral).then(|| {
        "--keep-failed keeps instances past the run, and the run's ephemeral security group is removed at its end: \
         name existing security groups instead"
            .to_string()
    })
}
