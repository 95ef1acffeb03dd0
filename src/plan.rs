//! The plan: a spec resolved into everything a run needs, checked before anything is launched.
//!
//! Like ripgrep's low-level args -> high-level args, `spec` is what was typed and `Plan` is what it
//! means: matrix cells expanded, probes and console rules compiled, user data read, paths resolved.
//! Every semantic error in a spec is found here, with its place in the file.

pub mod baseline;
mod launch;
mod matrix;
mod shard;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::capture::Schedule;
use crate::cell::Cell;
use crate::console::{ConsoleRules, PlatformRules};
use crate::probe::Probe;
use crate::provider::{LaunchPlan, ProviderSettings, RunSettings};
use crate::spec::{self, FieldPath, KeyPair, LoadedSpec, Os, Problem, SpecError, VarOverrides};

pub use matrix::MAX_CELLS;

/// Most cells run at once: more than any account's instance limit, and no more than cells can exist.
pub const MAX_CONCURRENCY: usize = MAX_CELLS;
pub use shard::{Shard, ShardError};

/// A runnable spec.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    pub spec_file: PathBuf,
    pub provider: Arc<dyn ProviderSettings>,
    pub cells: Vec<Cell>,
    pub schedule: Schedule,
    pub console_log: bool,
    pub after_ready: Duration,
    pub probes: Vec<Probe>,
    pub console: ConsoleRules,
    /// `console.stop_on_fatal`: end a cell at the first fatal console sign.
    pub stop_on_fatal: bool,
    pub concurrency: usize,
    /// `os`: the rules and default deadlines of Linux or Windows.
    pub os: Os,
    /// `reboot`: once the probes pass, reboot and run them again.
    pub reboot: bool,
    /// `retries`: how many more tries a cell that did not pass gets.
    pub retries: u32,
    /// `secrets`: masked wherever probe traffic is recorded.
    pub secrets: std::sync::Arc<Vec<String>>,
    pub run_timeout: Duration,
    /// How long removals are retried before a resource is reported as not removed.
    pub cleanup_timeout: Duration,
    pub launch: LaunchPlan,
    /// What the matrix left out (an image of a region not on the `region` axis), shown with the
    /// warnings.
    pub notes: Vec<String>,
    /// Where each `image` value was written, by its value as a cell holds it.
    pub image_places: Arc<BTreeMap<String, String>>,
    /// `baseline:`: how `run --baseline` compares the run with an earlier one.
    pub baseline: baseline::BaselinePlan,
}

impl Plan {
    /// Checks a loaded spec and resolves it, reporting every problem found.
    pub fn resolve(loaded: &LoadedSpec) -> Result<Plan, SpecError> {
        let spec = &loaded.spec;
        let root = FieldPath::root();
        let mut problems = Vec::new();

        if spec.name.trim().is_empty() {
            problems.push(Problem::at(root.key("name"), "name is empty"));
        }
        let provider = crate::providers::resolve(&spec.provider, loaded.base_dir(), &mut problems);
        let mut notes = Vec::new();
        let cells = expand_matrix(loaded, provider.as_ref(), &mut problems, &mut notes);
        let schedule =
            Schedule::resolve(&spec.capture.screenshots, &root.key("capture").key("screenshots"), &mut problems);
        let os = spec.os.unwrap_or_default();
        let probes = compile_probes(loaded, os, &mut problems);
        check_agent_probes(&spec.probes, provider.as_ref(), &mut problems);
        let platform = provider.as_ref().map_or_else(PlatformRules::default, |p| p.console_rules(os));
        let console = ConsoleRules::compile(&spec.console, &platform, &root.key("console"), &mut problems);
        check_run_settings(spec, &mut problems);
        let run_timeout = spec.timeouts.run_or_default(os, spec.reboot);
        if run_timeout.is_zero() {
            problems.push(Problem::at(root.key("timeouts").key("run"), "timeout must be above 0s"));
        }
        let launch = launch::resolve(spec, loaded.base_dir(), provider.as_ref(), &mut problems);
        let baseline = baseline::resolve(spec, &mut problems);

        match provider {
            Some(provider) if problems.is_empty() && !loaded.has_errors() => Ok(Plan {
                name: spec.name.clone(),
                description: spec.description.clone(),
                spec_file: loaded.file().to_path_buf(),
                provider,
                cells,
                schedule,
                console_log: spec.capture.console_log,
                after_ready: spec.capture.after_ready,
                probes,
                console,
                stop_on_fatal: spec.console.stop_on_fatal,
                concurrency: spec.concurrency.map_or(4, |n| n.get()),
                os,
                reboot: spec.reboot,
                retries: spec.retries,
                secrets: std::sync::Arc::new(spec.secrets.clone()),
                run_timeout,
                cleanup_timeout: spec.timeouts.cleanup,
                launch,
                notes,
                image_places: Arc::new(image_places(loaded)),
                baseline,
            }),
            _ => Err(loaded.error(problems)),
        }
    }

    /// Loads and resolves a spec file: every error in it, with places.
    pub fn load(file: &Path, vars: &VarOverrides) -> Result<Plan, SpecError> {
        Plan::resolve(&spec::load_file(file, vars)?)
    }

    /// What will not work as asked, known before launching (shown by `validate` and `plan`; `run`
    /// shows the hints and its provider check's own warnings): the provider's warnings, then the
    /// probes' hints.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = self.notes.clone();
        warnings.extend(self.provider.warnings(&self.cells));
        if self.probes.iter().any(Probe::through_agent) {
            warnings.extend(self.provider.agent_warnings(&self.cells));
        }
        warnings.extend(self.hints());
        warnings
    }

    /// The hints about the spec's probes alone (a `run` has the provider's warnings from its check).
    pub fn hints(&self) -> Vec<String> {
        self.probes.iter().flat_map(Probe::hints).collect()
    }

    /// What the provider needs of the plan besides the cells.
    pub fn run_settings(&self) -> RunSettings {
        RunSettings {
            spec_name: self.name.clone(),
            launch: self.launch.clone(),
            run_timeout: self.run_timeout,
            cleanup_timeout: self.cleanup_timeout,
            image_places: self.image_places.clone(),
            agent: self.probes.iter().any(Probe::through_agent),
        }
    }

    /// Only the cells of one shard.
    pub fn shard(mut self, shard: Shard) -> Plan {
        self.cells.retain(|c| shard.contains(&c.id));
        self
    }
}

/// The cells of the matrix, with the provider's fields as axes (none without a provider); values
/// that stand for several (a Packer manifest) read relative to the spec.
fn expand_matrix(
    loaded: &LoadedSpec,
    provider: Option<&Arc<dyn ProviderSettings>>,
    problems: &mut Vec<Problem>,
    notes: &mut Vec<String>,
) -> Vec<Cell> {
    let Some(p) = provider else {
        return Vec::new();
    };
    let (spec, base) = (&loaded.spec, loaded.base_dir());
    let fields = matrix::Fields {
        provider: p.name(),
        list: p.fields(),
        check: &|n, v, at| p.check_value(n, v, at),
        expand: &|n, v, at| p.expand_value(n, v, base, at),
        label: &|n, v| p.label(n, v),
    };
    matrix::expand(&spec.matrix, &spec.launch.fields, &fields, problems, notes)
}

/// Where each `image` value was written (the axis's values, `include`'s and `launch:`'s), by its
/// value as a cell holds it: a string as it is, anything else as JSON.
fn image_places(loaded: &LoadedSpec) -> BTreeMap<String, String> {
    let spec = &loaded.spec;
    let root = FieldPath::root();
    let mut written: Vec<(FieldPath, &serde_yaml::Value)> = Vec::new();
    fn image(fields: &spec::Fields) -> Option<&serde_yaml::Value> {
        fields.0.iter().find(|(k, _)| k == "image").map(|(_, v)| v)
    }
    if let Some(raw) = image(&spec.matrix.axes) {
        let at = root.key("matrix").key("image");
        match raw.as_sequence() {
            Some(items) => written.extend(items.iter().enumerate().map(|(i, v)| (at.index(i), v))),
            None => written.push((at, raw)),
        }
    }
    for (i, entry) in spec.matrix.include.iter().enumerate() {
        written.extend(image(entry).map(|v| (root.key("matrix").key("include").index(i).key("image"), v)));
    }
    written.extend(image(&spec.launch.fields).map(|v| (root.key("launch").key("image"), v)));
    let key = |v: &serde_yaml::Value| match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Some(s),
        Ok(other) => Some(other.to_string()),
        Err(_) => None,
    };
    written.into_iter().filter_map(|(at, v)| Some((key(v)?, loaded.place(&at)))).collect()
}

/// `agent:` probes need a provider whose machines have an agent: refused before anything launches
/// rather than failed on every cell (which would blame the image).
fn check_agent_probes(
    probes: &[crate::spec::ProbeSpec],
    provider: Option<&Arc<dyn ProviderSettings>>,
    problems: &mut Vec<Problem>,
) {
    let Some(provider) = provider.filter(|p| p.agent().is_none()) else { return };
    for (i, _) in probes.iter().enumerate().filter(|(_, p)| p.agent.is_some()) {
        problems.push(
            Problem::at_key(
                FieldPath::root().key("probes").index(i).key("agent"),
                format!("the {} provider has no agent to run `agent:` probes' commands", provider.name()),
            )
            .help("run the command over `ssh:` instead"),
        );
    }
}

/// Each probe compiled, with its name unique.
fn compile_probes(loaded: &LoadedSpec, os: Os, problems: &mut Vec<Problem>) -> Vec<Probe> {
    let spec = &loaded.spec;
    let ctx = crate::probe::CompileContext {
        base: loaded.base_dir(),
        os,
        run_key: matches!(spec.launch.key_pair, KeyPair::Ephemeral),
    };
    let mut probes = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in spec.probes.iter().enumerate() {
        let path = FieldPath::root().key("probes").index(i);
        if let Some(first) = seen.insert(&p.name, i) {
            problems.push(
                Problem::at(path.key("name"), format!("duplicate probe name `{}`", p.name))
                    .help(format!("probes[{first}] has the same name; probe names must be unique")),
            );
        }
        if let Some(probe) = Probe::compile(p, &ctx, &path, problems) {
            probes.push(probe);
        }
    }
    probes
}

/// `reboot`, `secrets`, `concurrency` and `timeouts.cleanup`, each checked on its own.
fn check_run_settings(spec: &spec::Spec, problems: &mut Vec<Problem>) {
    let root = FieldPath::root();
    if spec.reboot && spec.probes.is_empty() {
        problems.push(
            Problem::at(root.key("reboot"), "`reboot` needs probes: they say when the first boot is done")
                .help("add a probe, or an ssh probe such as `ssh: { command: \"true\" }`"),
        );
    }
    for (i, secret) in spec.secrets.iter().enumerate() {
        if secret.is_empty() {
            problems.push(Problem::at(root.key("secrets").index(i), "secret is empty"));
        }
    }
    if let Some(n) = spec.concurrency.filter(|n| n.get() > MAX_CONCURRENCY) {
        problems.push(Problem::at(root.key("concurrency"), format!("{n} is above the limit of {MAX_CONCURRENCY}")));
    }
    if spec.timeouts.cleanup.is_zero() {
        problems.push(Problem::at(root.key("timeouts").key("cleanup"), "timeout must be above 0s"));
    }
}
