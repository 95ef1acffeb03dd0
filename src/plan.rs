//! The plan: a spec resolved into everything a run needs, checked before anything is launched.
//!
//! Like ripgrep's low-level args -> high-level args, `spec` is what was typed and `Plan` is what it
//! means: matrix cells expanded, probes and console rules compiled, user data read, paths resolved.
//! Every semantic error in a spec is found here, with its place in the file.

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
pub use shard::Shard;

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
        let cells = match &provider {
            Some(p) => {
                let fields =
                    matrix::Fields { provider: p.name(), list: p.fields(), check: &|n, v, at| p.check_value(n, v, at) };
                matrix::expand(&spec.matrix, &spec.launch.fields, &fields, &mut problems)
            }
            None => Vec::new(),
        };
        let schedule =
            Schedule::resolve(&spec.capture.screenshots, &root.key("capture").key("screenshots"), &mut problems);

        let os = spec.os.unwrap_or_default();
        let probe_ctx = crate::probe::CompileContext {
            base: loaded.base_dir(),
            os,
            run_key: matches!(spec.launch.key_pair, KeyPair::Ephemeral),
        };
        let mut probes = Vec::new();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, p) in spec.probes.iter().enumerate() {
            let path = root.key("probes").index(i);
            if let Some(first) = seen.insert(&p.name, i) {
                problems.push(
                    Problem::at(path.key("name"), format!("duplicate probe name `{}`", p.name))
                        .help(format!("probes[{first}] has the same name; probe names must be unique")),
                );
            }
            if let Some(probe) = Probe::compile(p, &probe_ctx, &path, &mut problems) {
                probes.push(probe);
            }
        }
        let platform = provider.as_ref().map_or_else(PlatformRules::default, |p| p.console_rules(os));
        let console = ConsoleRules::compile(&spec.console, &platform, &root.key("console"), &mut problems);
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
        let run_timeout = spec.timeouts.run_or_default(os, spec.reboot);
        if run_timeout.is_zero() {
            problems.push(Problem::at(root.key("timeouts").key("run"), "timeout must be above 0s"));
        }
        let launch = resolve_launch(spec, loaded.base_dir(), &provider, &mut problems);

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
            }),
            _ => Err(loaded.error(problems)),
        }
    }

    /// Loads and resolves a spec file: every error in it, with places.
    pub fn load(file: &Path, vars: &VarOverrides) -> Result<Plan, SpecError> {
        Plan::resolve(&spec::load_file(file, vars)?)
    }

    /// What will not work as asked, known before launching (shown by `plan` and `run`).
    pub fn warnings(&self) -> Vec<String> {
        self.provider.warnings(&self.cells)
    }

    /// What the provider needs of the plan besides the cells.
    pub fn run_settings(&self) -> RunSettings {
        RunSettings {
            spec_name: self.name.clone(),
            launch: self.launch.clone(),
            run_timeout: self.run_timeout,
            cleanup_timeout: self.cleanup_timeout,
        }
    }

    /// Only the cells of one shard.
    pub fn shard(mut self, shard: Shard) -> Plan {
        self.cells.retain(|c| shard.contains(&c.id));
        self
    }
}

fn resolve_launch(
    spec: &spec::Spec,
    base: &Path,
    provider: &Option<Arc<dyn ProviderSettings>>,
    problems: &mut Vec<Problem>,
) -> LaunchPlan {
    let path = FieldPath::root().key("launch");
    let launch = &spec.launch;
    let user_data = launch.user_data.as_ref().and_then(|text| {
        let is_path = !text.contains('\n') && (text.starts_with("./") || text.starts_with("../") || text.starts_with('/'));
        if !is_path {
            return Some(text.clone().into_bytes());
        }
        let file = base.join(text);
        match std::fs::read(&file) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                problems.push(
                    Problem::at(path.key("user_data"), format!("failed to read user data file `{text}`: {e}"))
                        .help("a value starting with ./, ../ or / is a path relative to the spec; anything else is inline text"),
                );
                None
            }
        }
    });
    if let KeyPair::Existing(name) = &launch.key_pair {
        if name.trim().is_empty() {
            problems.push(Problem::at(path.key("key_pair"), "key pair name is empty"));
        }
    }
    for key in launch.tags.keys() {
        if key.starts_with("amiprobe:") {
            problems.push(Problem::at_key(
                path.key("tags").key(key.clone()),
                format!("tag `{key}` uses a reserved prefix"),
            ));
        }
    }
    let plan = LaunchPlan {
        os: spec.os.unwrap_or_default(),
        key_pair: launch.key_pair.clone(),
        keep_private_key: launch.keep_private_key,
        user_data,
        tags: launch.tags.clone(),
    };
    if let Some(provider) = provider {
        provider.check_launch(&plan, &path, problems);
    }
    plan
}
