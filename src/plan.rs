//! The plan: a spec resolved into everything a run needs, checked before anything is launched.
//!
//! Like ripgrep's low-level args -> high-level args, `spec` is what was typed and `Plan` is what it
//! means: matrix cells expanded, probes and console rules compiled, user data read, paths resolved.
//! Every semantic error in a spec is found here, with its place in the file.

mod matrix;
mod shard;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::capture::Schedule;
use crate::console::ConsoleRules;
use crate::probe::Probe;
use crate::spec::{self, FieldPath, KeyPair, LoadedSpec, Problem, SpecError};

pub use matrix::{Cell, CellId, MAX_CELLS};

/// The slowest API rate a spec may ask for: one call every 1000 s.
const MIN_RATE: f64 = 0.001;

/// Most cells run at once: more than any account's instance limit, and no more than cells can exist.
pub const MAX_CONCURRENCY: usize = MAX_CELLS;
pub use shard::{fnv1a, Shard};

/// A runnable spec.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    pub spec_file: PathBuf,
    pub provider: ProviderPlan,
    pub cells: Vec<Cell>,
    pub schedule: Schedule,
    pub console_log: bool,
    pub after_ready: Duration,
    pub probes: Vec<Probe>,
    pub console: ConsoleRules,
    /// `console.stop_on_fatal`: end a cell at the first fatal console sign.
    pub stop_on_fatal: bool,
    pub concurrency: usize,
    pub run_timeout: Duration,
    /// How long removals are retried before a resource is reported as not removed.
    pub cleanup_timeout: Duration,
    pub launch: LaunchPlan,
}

#[derive(Debug, Clone)]
pub enum ProviderPlan {
    Ec2(spec::Ec2Spec),
    Qemu(QemuPlan),
}

impl ProviderPlan {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderPlan::Ec2(_) => "ec2",
            ProviderPlan::Qemu(_) => "qemu",
        }
    }
}

#[derive(Debug, Clone)]
pub struct QemuPlan {
    pub images: BTreeMap<String, QemuImagePlan>,
    pub memory_mib: u64,
    pub cpus: u32,
    pub accel: spec::Accel,
    pub binary: String,
}

impl QemuPlan {
    /// The image a cell's `image` value names: an entry of `images`, or a disk path.
    pub fn image(&self, value: &str) -> QemuImagePlan {
        self.images.get(value).cloned().unwrap_or_else(|| QemuImagePlan::Disk(PathBuf::from(value)))
    }
}

/// A bootable QEMU image with its paths made absolute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QemuImagePlan {
    Kernel { kernel: PathBuf, initrd: Option<PathBuf>, append: Option<String> },
    Disk(PathBuf),
}

#[derive(Debug, Clone)]
pub struct LaunchPlan {
    pub key_pair: KeyPair,
    pub keep_private_key: bool,
    pub user_data: Option<Vec<u8>>,
    pub tags: BTreeMap<String, String>,
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
        let provider = resolve_provider(spec, loaded.base_dir(), &mut problems);
        let cells = match &provider {
            Some(p) => {
                let fields = crate::provider::fields_of(p.name());
                matrix::expand(&spec.matrix, &spec.launch.fields, p.name(), fields, &mut problems)
            }
            None => Vec::new(),
        };
        let schedule =
            Schedule::resolve(&spec.capture.screenshots, &root.key("capture").key("screenshots"), &mut problems);

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
            if let Some(probe) = Probe::compile(p, &path, &mut problems) {
                probes.push(probe);
            }
        }
        let console = ConsoleRules::compile(&spec.console, &root.key("console"), &mut problems);
        if let Some(n) = spec.concurrency.filter(|n| n.get() > MAX_CONCURRENCY) {
            problems.push(Problem::at(root.key("concurrency"), format!("{n} is above the limit of {MAX_CONCURRENCY}")));
        }
        if spec.timeouts.cleanup.is_zero() {
            problems.push(Problem::at(root.key("timeouts").key("cleanup"), "timeout must be above 0s"));
        }
        if spec.timeouts.run.is_zero() {
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
                run_timeout: spec.timeouts.run,
                cleanup_timeout: spec.timeouts.cleanup,
                launch,
            }),
            _ => Err(loaded.error(problems)),
        }
    }

    /// What will not work as asked, known before launching (shown by `plan` and `run`).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let ProviderPlan::Ec2(_) = &self.provider {
            for cell in &self.cells {
                if let Some(why) = cell.text("instance_type").and_then(crate::provider::ec2::screenshot_unsupported) {
                    warnings.push(format!(
                        "cell {}: EC2 takes no screenshots of {} instances; the cell runs without them",
                        cell.id, why
                    ));
                }
            }
        }
        warnings
    }

    /// Only the cells of one shard.
    pub fn shard(mut self, shard: Shard) -> Plan {
        self.cells.retain(|c| shard.contains(&c.id));
        self
    }
}

fn resolve_provider(spec: &spec::Spec, base: &Path, problems: &mut Vec<Problem>) -> Option<ProviderPlan> {
    let path = FieldPath::root().key("provider");
    match (&spec.provider.ec2, &spec.provider.qemu) {
        (Some(ec2), None) => {
            let rates = path.key("ec2").key("rate_limits");
            let r = &ec2.rate_limits;
            for (name, rate) in [
                ("describe", r.describe),
                ("run_instances", r.run_instances),
                ("terminate_instances", r.terminate_instances),
                ("mutating", r.mutating),
            ] {
                // A rate near 0 would make the wait for a token overflow a Duration.
                if rate.burst == 0 || !(rate.per_second >= MIN_RATE && rate.per_second.is_finite()) {
                    problems.push(Problem::at(
                        rates.key(name),
                        format!("a rate needs `burst` of at least 1 and `per_second` of at least {MIN_RATE}"),
                    ));
                }
            }
            if ec2.console_poll_interval < std::time::Duration::from_secs(1) {
                problems.push(Problem::at(
                    path.key("ec2").key("console_poll_interval"),
                    "interval must be at least 1s (each read is an API call per instance)",
                ));
            }
            if ec2.poll_interval.is_zero() {
                problems.push(Problem::at(path.key("ec2").key("poll_interval"), "interval must be above 0s"));
            }
            Some(ProviderPlan::Ec2(ec2.clone()))
        }
        (None, Some(qemu)) => resolve_qemu(qemu, base, &path.key("qemu"), problems).map(ProviderPlan::Qemu),
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

fn resolve_qemu(qemu: &spec::QemuSpec, base: &Path, path: &FieldPath, problems: &mut Vec<Problem>) -> Option<QemuPlan> {
    let before = problems.len();
    let mut images = BTreeMap::new();
    for (name, image) in &qemu.images {
        let at = path.key("images").key(name.clone());
        let abs = |p: &PathBuf| base.join(p);
        match (&image.kernel, &image.disk) {
            (Some(kernel), None) => {
                images.insert(
                    name.clone(),
                    QemuImagePlan::Kernel {
                        kernel: abs(kernel),
                        initrd: image.initrd.as_ref().map(abs),
                        append: image.append.clone(),
                    },
                );
            }
            (None, Some(disk)) => {
                if image.initrd.is_some() || image.append.is_some() {
                    problems.push(Problem::at_key(at.clone(), "`initrd` and `append` need `kernel`, not `disk`"));
                }
                images.insert(name.clone(), QemuImagePlan::Disk(abs(disk)));
            }
            (None, None) => problems.push(Problem::at_key(at, "image has neither `kernel` nor `disk`")),
            (Some(_), Some(_)) => {
                problems.push(Problem::at_key(at.key("disk"), "image has both `kernel` and `disk`: keep one"))
            }
        }
    }
    if qemu.memory.mebibytes() < 16 {
        problems.push(Problem::at(
            path.key("memory"),
            format!("{} MiB of memory is too little to boot", qemu.memory.mebibytes()),
        ));
    }
    if qemu.cpus == 0 {
        problems.push(Problem::at(path.key("cpus"), "cpus must be at least 1"));
    }
    (problems.len() == before).then(|| QemuPlan {
        images,
        memory_mib: qemu.memory.mebibytes(),
        cpus: qemu.cpus,
        accel: qemu.accel,
        binary: qemu.binary.clone().unwrap_or_else(|| "qemu-system-x86_64".into()),
    })
}

fn resolve_launch(
    spec: &spec::Spec,
    base: &Path,
    provider: &Option<ProviderPlan>,
    problems: &mut Vec<Problem>,
) -> LaunchPlan {
    let path = FieldPath::root().key("launch");
    let launch = &spec.launch;
    let user_data = launch.user_data.as_ref().and_then(|text| {
        if matches!(provider, Some(ProviderPlan::Qemu(_))) {
            problems.push(Problem::at(path.key("user_data"), "the qemu provider has no user data"));
            return None;
        }
        let is_path = !text.contains('\n') && (text.starts_with("./") || text.starts_with("../") || text.starts_with('/'));
        if !is_path {
            return Some(text.clone().into_bytes());
        }
        let file = base.join(text);
        match std::fs::read(&file) {
            Ok(bytes) if bytes.len() > 16 * 1024 => {
                problems.push(Problem::at(path.key("user_data"), format!("user data is {} bytes; EC2 takes at most 16 KiB", bytes.len())));
                None
            }
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
        if key.starts_with("amiprobe:") || key.starts_with("aws:") {
            problems.push(Problem::at_key(
                path.key("tags").key(key.clone()),
                format!("tag `{key}` uses a reserved prefix"),
            ));
        }
    }
    LaunchPlan {
        key_pair: launch.key_pair.clone(),
        keep_private_key: launch.keep_private_key,
        user_data,
        tags: launch.tags.clone(),
    }
}
