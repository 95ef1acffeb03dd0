//! `amiprobe run`: spec -> plan -> provider -> engine -> reporters, and the exit code. Everything the
//! run prints or writes comes from the reporters (`report::reporter`), fed by the engine's events.

use std::path::PathBuf;
use std::time::SystemTime;

use super::{outcome_of, runtime, ReportOptions, VarArgs};
use crate::engine::{self, RunEnd, RunOptions, Signals};
use crate::exit::Outcome;
use crate::plan::{Plan, Shard};
use crate::provider::RunFlags;
use crate::report::reporter::Reporters;

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
    #[command(flatten)]
    pub vars: VarArgs,
}

pub fn run(args: RunArgs) -> Outcome {
    // Signals first: from here on, no signal can end the process with machines running.
    let runtime = match runtime() {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let mut signals = match runtime.block_on(async { Signals::install() }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: failed to install signal handlers: {e}");
            return Outcome::Failed;
        }
    };
    let plan = match Plan::load(&args.spec, &args.vars.overrides()) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return Outcome::UsageError;
        }
    };
    let plan = match args.shard {
        Some(s) => plan.shard(s),
        None => plan,
    };
    let plan = match &args.rerun_failed {
        None => plan,
        Some(dir) => match crate::report::json::load(dir) {
            Ok(previous) => {
                let failed: Vec<&str> =
                    previous.cells.iter().filter(|c| !c.status.is_pass()).map(|c| c.id.as_str()).collect();
                let mut plan = plan;
                plan.cells.retain(|c| failed.contains(&c.id.0.as_str()));
                if plan.cells.is_empty() {
                    println!("nothing to rerun: every cell in {} passed", dir.display());
                    return Outcome::Passed;
                }
                plan
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Outcome::UsageError;
            }
        },
    };
    let mut plan = plan;
    if let Some(retries) = args.retries {
        plan.retries = retries;
    }
    if args.keep_failed.is_some() {
        // The machines kept are only reachable with it.
        plan.launch.keep_private_key = true;
    }
    let flags = RunFlags { probe_from: args.probe_from.clone(), keep_failed: args.keep_failed.is_some() };
    if let Err(problem) = plan.provider.check_flags(&flags) {
        eprintln!("error: {problem}");
        return Outcome::UsageError;
    }
    let run_id = new_run_id();
    let out_dir = args.out.clone().unwrap_or_else(|| PathBuf::from("amiprobe-results").join(&run_id));
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("error: failed to create {}: {e}", out_dir.display());
        return Outcome::UsageError;
    }
    let provider = plan.provider.provider(plan.run_settings());
    let options = RunOptions {
        run_id,
        out_dir: out_dir.clone(),
        concurrency: args.concurrency.map_or(plan.concurrency, usize::from),
        shard: args.shard.map(|s| s.to_string()),
        allow_targets: args.allow_targets.clone(),
        probe_host: args.probe_host.clone(),
        probe_from: args.probe_from.clone().unwrap_or_default(),
        skip_impossible: args.skip_impossible,
        keep_failed: args.keep_failed,
    };
    let mut reporters = Reporters::for_run(
        &out_dir,
        &args.reports.report,
        args.reports.templates.as_deref(),
        args.reports.summary_target(),
    );
    let end = runtime.block_on(engine::run(plan, provider, options, &mut signals, &mut reporters));
    outcome_of_end(runtime, end)
}

/// The exit code of a run; after the third signal, at once, waiting for none of its tasks still running.
fn outcome_of_end(runtime: tokio::runtime::Runtime, end: RunEnd) -> Outcome {
    match end {
        RunEnd::Finished(results) => outcome_of(&results),
        RunEnd::Abandoned(_) => {
            runtime.shutdown_background();
            Outcome::Interrupted
        }
    }
}

/// `YYYYmmdd-HHMMSS-xxxx`: sortable, and unique enough to tag a run's resources with.
fn new_run_id() -> String {
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let stamp: String = now.chars().filter(|c| c.is_ascii_digit()).take(14).collect();
    format!("{}-{}-{:04x}", &stamp[..8.min(stamp.len())], &stamp[8.min(stamp.len())..], fastrand::u16(..))
}
