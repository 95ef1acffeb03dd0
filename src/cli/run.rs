//! `amiprobe run`: args -> signals -> plan -> provider (its credentials first) -> engine -> reporters,
//! and the exit code. Everything the run prints or writes comes from the reporters
//! (`report::reporter`), fed by the engine's events; a run stopped before the engine starts (a wrong
//! spec, no credentials) writes nothing.

use std::path::PathBuf;
use std::time::SystemTime;

use super::{outcome_of, start_runtime, ReportOptions, RuntimeError, VarArgs};
use crate::engine::{self, RunEnd, RunOptions, Signals};
use crate::exit::Outcome;
use crate::plan::{Plan, Shard};
use crate::provider::{AccessError, Identity, Provider, RunFlags};
use crate::report::baseline::Baseline;
use crate::report::compare::settings::{settle, Flags};
use crate::report::reporter::Reporters;
use crate::results::since::BaselineRules;
use crate::spec::SpecError;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    pub spec: PathBuf,
    /// Where results go (default: amiprobe-results/<timestamp>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Cells at once (default: the spec's `concurrency`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: Option<u16>,
    /// Only the cells of shard K of N (1-based), split by cell id.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Probes connect to this host (a tunnel or bastion) instead of the machine's address.
    #[arg(long, value_name = "HOST")]
    pub probe_host: Option<String>,
    /// Addresses probes may contact (default: each cell's own machine only).
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub allow_targets: Option<Vec<ipnet::IpNet>>,
    /// Where the probes come from (this runner's address or its network): with
    /// `provider.ec2.security_group: ephemeral`, the run's security group opens exactly the probed
    /// ports to these, and to nothing else. Required then: no default opens them wider.
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub probe_from: Option<Vec<ipnet::IpNet>>,
    /// Run the cells the preflight finds possible, and report the others as not run with their reason
    /// (without it, any impossible cell stops the run before anything is launched, exit 2).
    #[arg(long)]
    pub skip_impossible: bool,
    /// Run a cell that did not pass again, up to N more times (default: the spec's `retries`); one
    /// that passes on a retry is reported as flaky.
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Leave failed cells' machines running for debugging (ec2), tagged to expire after DURATION
    /// (`2h`); `amiprobe sweep` removes them once expired. The run's private key is kept for them.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub keep_failed: Option<std::time::Duration>,
    #[command(flatten)]
    pub reports: ReportOptions,
    /// Run only the cells that did not pass in these earlier results.
    #[arg(long, value_name = "DIR")]
    pub rerun_failed: Option<PathBuf>,
    /// Compare with earlier results (last night's) once the run is over: what changed is kept in
    /// results.json and told in every report, printed after the summary, and written to
    /// since-last-night.md and .json next to the results (see `report compare`).
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// With --baseline: a regression (newly failing or flaky, slower, new warning lines, a probe's
    /// answer changed) fails the run (or the spec's `baseline.fail_on_regression`).
    #[arg(long, requires = "baseline")]
    pub fail_on_regression: bool,
    /// With --baseline: a duration regressed when longer than the baseline's by more than this
    /// ratio and by more than --regression-floor [default: the spec's `baseline.ratio`, or 0.25]
    #[arg(long, value_name = "RATIO", requires = "baseline")]
    pub regression_ratio: Option<f64>,
    /// With --baseline: a duration regressed only when longer than the baseline's by more than this;
    /// raise it where boot times are noisy, as under QEMU's TCG [default: the spec's
    /// `baseline.floor`, or 2s]
    #[arg(long, value_name = "DURATION", requires = "baseline")]
    pub regression_floor: Option<humantime::Duration>,
    /// With --baseline: console lines matching this regular expression are never new; repeatable,
    /// and added to the spec's `baseline.ignore_lines`.
    #[arg(long, value_name = "REGEX", requires = "baseline")]
    pub regression_ignore: Vec<String>,
    #[command(flatten)]
    pub vars: VarArgs,
}

/// Why a run stopped before the engine started; nothing was launched.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("failed to install signal handlers: {0}")]
    Signals(std::io::Error),
    /// Printed as it is: the spec's errors, each with its place in the file.
    #[error("{0}")]
    Spec(SpecError),
    /// The earlier results `--rerun-failed` names could not be read.
    #[error("{0}")]
    Rerun(Box<dyn std::error::Error>),
    /// The baseline's results could not be read.
    #[error("--baseline: {0}")]
    Baseline(crate::report::error::ResultsError),
    #[error("--baseline: {0}")]
    Regression(crate::report::compare::settings::SettingsError),
    /// The command line's flags don't go with the spec's provider settings.
    #[error("{0}")]
    Flags(crate::provider::FlagsRefused),
    #[error("failed to create {}: {source}", dir.display())]
    OutDir { dir: PathBuf, source: std::io::Error },
    /// The provider's credentials can't be used, or could not be checked.
    #[error(transparent)]
    Access(AccessError),
    /// A signal came while the credentials were checked.
    #[error("interrupted by {0} before the run started; nothing was launched")]
    Interrupted(&'static str),
}

impl RunError {
    /// Prints the error and says how the command ends.
    fn report(&self) -> Outcome {
        match self {
            RunError::Spec(e) => eprint!("{e}"),
            other => eprintln!("error: {other}"),
        }
        match self {
            RunError::Runtime(_) | RunError::Signals(_) => Outcome::Failed,
            RunError::Access(e) => super::access_outcome(e),
            RunError::Interrupted(_) => Outcome::Interrupted,
            RunError::Spec(_)
            | RunError::Rerun(_)
            | RunError::Baseline(_)
            | RunError::Regression(_)
            | RunError::Flags(_)
            | RunError::OutDir { .. } => Outcome::UsageError,
        }
    }
}

/// The plan, or nothing left to run (every cell `--rerun-failed` names passed).
enum Cells {
    Run(Box<Plan>),
    NothingToRerun(PathBuf),
}

pub fn run(args: RunArgs) -> Outcome {
    match execute(&args) {
        Ok(outcome) => outcome,
        Err(e) => e.report(),
    }
}

/// args -> signals -> plan -> credentials -> engine -> exit outcome.
fn execute(args: &RunArgs) -> Result<Outcome, RunError> {
    // Signals first: from here on, no signal can end the process with machines running.
    let runtime = start_runtime()?;
    let mut signals = runtime.block_on(async { Signals::install() }).map_err(RunError::Signals)?;
    let plan = match plan(args)? {
        Cells::Run(plan) => *plan,
        Cells::NothingToRerun(dir) => {
            println!("nothing to rerun: every cell in {} passed", dir.display());
            return Ok(Outcome::Passed);
        }
    };
    let baseline = baseline(args, &plan)?;
    let fail_on_regression = baseline.as_ref().is_some_and(Baseline::fails_on_regression);
    let provider = plan.provider.provider(plan.run_settings());
    // Before the results' directory: a run that can't start leaves nothing to mistake for one.
    let identity = identity(&runtime, &mut signals, provider.as_ref(), &plan)?;
    let run_id = new_run_id();
    let out_dir = args.out.clone().unwrap_or_else(|| PathBuf::from("amiprobe-results").join(&run_id));
    std::fs::create_dir_all(&out_dir).map_err(|source| RunError::OutDir { dir: out_dir.clone(), source })?;
    let options = options(args, &plan, run_id, identity, out_dir.clone());
    let reports = &args.reports;
    let mut reporters =
        Reporters::for_run(&out_dir, &reports.report, reports.templates.as_deref(), reports.summary_target())
            .with_baseline(baseline, &out_dir);
    let end = runtime.block_on(engine::run(plan, provider, options, &mut signals, &mut reporters));
    let regressed = fail_on_regression && reporters.regressed();
    Ok(outcome_of_end(runtime, end, regressed))
}

/// `--baseline DIR` read before anything is checked or launched (one that can't be read is a usage
/// error), with the flags' thresholds and ignored lines over the spec's `baseline:`.
fn baseline(args: &RunArgs, plan: &Plan) -> Result<Option<Baseline>, RunError> {
    let Some(dir) = &args.baseline else { return Ok(None) };
    let flags = Flags {
        ratio: args.regression_ratio,
        floor_s: args.regression_floor.map(|f| f.as_secs_f64()),
        ignore_lines: args.regression_ignore.clone(),
        fail_on_regression: args.fail_on_regression,
    };
    let settings = settle(&flags, Some(&BaselineRules::from(&plan.baseline))).map_err(RunError::Regression)?;
    Baseline::load(dir, settings).map(Some).map_err(RunError::Baseline)
}

/// Who the provider's credentials belong to, checked before anything is created or written; a signal
/// meanwhile ends the command at once (nothing to clean up yet).
fn identity(
    runtime: &tokio::runtime::Runtime,
    signals: &mut Signals,
    provider: &dyn Provider,
    plan: &Plan,
) -> Result<Option<Identity>, RunError> {
    runtime.block_on(async {
        tokio::select! {
            checked = provider.identity(&plan.cells) => checked.map_err(RunError::Access),
            name = signals.recv() => Err(RunError::Interrupted(name)),
        }
    })
}

/// The exit code of a run; after the third signal, at once, waiting for none of its tasks still running.
/// A run that passed fails when it `regressed` since its baseline (`--fail-on-regression`).
fn outcome_of_end(runtime: tokio::runtime::Runtime, end: RunEnd, regressed: bool) -> Outcome {
    match end {
        RunEnd::Finished(results) => match outcome_of(&results) {
            Outcome::Passed if regressed => Outcome::Failed,
            outcome => outcome,
        },
        RunEnd::Abandoned(_) => {
            runtime.shutdown_background();
            Outcome::Interrupted
        }
    }
}

/// The spec's plan as the flags narrow and adjust it: `--shard`, `--rerun-failed`, `--retries`,
/// `--keep-failed`, checked against the provider's settings.
fn plan(args: &RunArgs) -> Result<Cells, RunError> {
    let mut plan = Plan::load(&args.spec, &args.vars.overrides()).map_err(RunError::Spec)?;
    if let Some(shard) = args.shard {
        plan = plan.shard(shard);
    }
    if let Some(dir) = &args.rerun_failed {
        let previous = crate::report::json::load(dir).map_err(|e| RunError::Rerun(e.into()))?;
        let failed: Vec<&str> = previous.cells.iter().filter(|c| !c.status.is_pass()).map(|c| c.id.as_str()).collect();
        plan.cells.retain(|c| failed.contains(&c.id.0.as_str()));
        if plan.cells.is_empty() {
            return Ok(Cells::NothingToRerun(dir.clone()));
        }
    }
    if let Some(retries) = args.retries {
        plan.retries = retries;
    }
    if args.keep_failed.is_some() {
        // The machines kept are only reachable with it.
        plan.launch.keep_private_key = true;
    }
    let flags = RunFlags {
        probe_from: args.probe_from.clone(),
        keep_failed: args.keep_failed.is_some(),
        ports: plan.probes.iter().any(|p| p.port().is_some()),
    };
    if let Err(problem) = plan.provider.check_flags(&flags) {
        return Err(RunError::Flags(problem));
    }
    Ok(Cells::Run(Box::new(plan)))
}

/// What the engine needs besides the plan.
fn options(args: &RunArgs, plan: &Plan, run_id: String, identity: Option<Identity>, out_dir: PathBuf) -> RunOptions {
    RunOptions {
        run_id,
        identity,
        out_dir,
        concurrency: args.concurrency.map_or(plan.concurrency, usize::from),
        shard: args.shard.map(|s| s.to_string()),
        allow_targets: args.allow_targets.clone(),
        probe_host: args.probe_host.clone(),
        probe_from: args.probe_from.clone().unwrap_or_default(),
        skip_impossible: args.skip_impossible,
        keep_failed: args.keep_failed,
        rerun: args.rerun_failed.is_some(),
    }
}

/// `YYYYmmdd-HHMMSS-xxxx`: sortable, and unique enough to tag a run's resources with.
fn new_run_id() -> String {
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let stamp: String = now.chars().filter(|c| c.is_ascii_digit()).take(14).collect();
    format!("{}-{}-{:04x}", &stamp[..8.min(stamp.len())], &stamp[8.min(stamp.len())..], fastrand::u16(..))
}
