//! The command line: a thin layer that parses arguments and hands over to the library.
//!
//! This file is the command line's shape (clap's types) and the dispatch to one module per command;
//! `run`, `plan` (with `validate`), `policy`, `report`, `sweep`, `completions` and `man` each live in
//! their own file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::exit::Outcome;
use crate::plan::Shard;

mod compare;
mod completions;
mod history;
mod man;
mod plan;
mod policy;
mod promote;
mod report;
mod run;
mod sweep;

#[derive(Debug, Parser)]
#[command(name = "amiprobe", version, about = "Smoke-test freshly built machine images where they will really run")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check specs for errors without running anything (exit 0 or 2).
    Validate {
        #[arg(required = true)]
        specs: Vec<PathBuf>,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Show the cells a spec expands to.
    Plan {
        spec: PathBuf,
        /// Only the cells of shard K of N (1-based), split by cell id.
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also ask the provider which cells can't run as asked (EC2: images, types, zones, subnets,
        /// groups, one lookup per kind); exit 2 if any can't. Creates nothing.
        #[arg(long)]
        check: bool,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Print the least-privilege IAM policy a run of the spec needs (ec2).
    Policy {
        spec: PathBuf,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// Run a spec: launch every cell, capture, probe, clean up, write results.
    Run(run::RunArgs),
    /// Render reports again from a results directory, or merge shards' results.
    Report(ReportArgs),
    /// Remove EC2 instances and key pairs that killed runs left behind (found by amiprobe's tags).
    Sweep(sweep::SweepArgs),
    /// Print the JSON Schema of the spec (or of results.json).
    Schema {
        #[arg(value_enum, default_value_t = SchemaOf::Spec)]
        of: SchemaOf,
    },
    /// Print a shell's completion script, e.g. for /etc/bash_completion.d/amiprobe.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a directory.
    Man {
        /// Write amiprobe.1 and a page per command (amiprobe-run.1, ...) into DIR instead.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub merge: Option<ReportCommand>,
    /// A results directory to render again from its results.json.
    #[arg(required = true)]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub reports: ReportOptions,
}

#[derive(Debug, clap::Args)]
pub struct ReportOptions {
    /// Reports to write next to the results.
    #[arg(long, value_name = "FORMAT,...", value_delimiter = ',', default_value = "html,junit,json")]
    pub report: Vec<crate::report::Format>,
    /// Handlebars templates that replace the built-in ones (report.hbs, cell.hbs, assets/report.css).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Append a Markdown summary (counts, the cells that did not pass with their reasons and links
    /// into the report) to FILE, e.g. `$GITHUB_STEP_SUMMARY`.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// The address the summary's links use for report.html (where CI publishes it); default its
    /// local path.
    #[arg(long, value_name = "URL", requires = "summary")]
    pub report_url: Option<String>,
}

impl ReportOptions {
    pub fn summary_target(&self) -> Option<crate::report::summary::SummaryTarget> {
        self.summary
            .clone()
            .map(|file| crate::report::summary::SummaryTarget { file, report_url: self.report_url.clone() })
    }
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge the results of shards (`run --shard K/N`) into one report.
    Merge {
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
        /// Append a Markdown summary of the merged run to FILE (see `run --summary`).
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
        /// The address the summary's links use for report.html.
        #[arg(long, value_name = "URL", requires = "summary")]
        report_url: Option<String>,
        /// Promote the images all of whose cells passed, as the spec's `on_pass` says, once the
        /// shards are merged: only when they are the spec's whole plan and none was interrupted.
        /// Needs the provider's credentials.
        #[arg(long, value_name = "SPEC")]
        promote: Option<PathBuf>,
        #[command(flatten)]
        vars: VarArgs,
    },
    /// What changed since a baseline run (e.g. last night's CI artifact): status changes, time
    /// regressions to ready and per boot phase, new warning or error lines on the console, a
    /// different last screen, probe answers of another status or shape. Prints a Markdown section
    /// "Since last night" (JSON with --json). The flags win over NEW's spec's `baseline:`.
    Compare {
        /// The baseline's results directory.
        base: PathBuf,
        /// The results directory compared with it.
        new: PathBuf,
        /// A duration regressed when longer than the baseline's by more than this ratio (0.25: a
        /// quarter) and by more than --floor [default: the spec's `baseline.ratio`, or 0.25]
        #[arg(long, value_name = "RATIO")]
        ratio: Option<f64>,
        /// A duration regressed only when longer than the baseline's by more than this [default:
        /// the spec's `baseline.floor`, or 2s]
        #[arg(long, value_name = "DURATION")]
        floor: Option<humantime::Duration>,
        /// Print the comparison as JSON instead of Markdown.
        #[arg(long)]
        json: bool,
        /// Exit 1 when a cell regressed: newly failing or flaky, slower, with new warning or error
        /// lines, or with a probe answer of another status (now failing) or missing a field.
        #[arg(long)]
        fail_on_regression: bool,
        /// Console lines matching this regular expression are never new (lines that come and go
        /// between boots of the same build); repeatable.
        #[arg(long, value_name = "REGEX")]
        ignore_line: Vec<String>,
        /// Keep the comparison in NEW, as `run --baseline` does: its results.json, since-last-night.md
        /// and .json, the baseline's last frames that moved, and its report.html and junit.xml
        /// (those it has) written again. For merged shards, or a run made without --baseline.
        #[arg(long)]
        write: bool,
    },
    /// A trend over nights: one page with, per cell, its status and its time to ready in each
    /// results directory given (a directory a night), each night linking to its report. Nights are
    /// ordered by when they started; a directory that cannot be read is skipped with a warning.
    History {
        /// The nights' results directories, in any order.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// The page to write.
        #[arg(long, value_name = "FILE", default_value = "history.html")]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaOf {
    Spec,
    Results,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct VarArgs {
    /// Set a spec variable, `${KEY}`; wins over the environment.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

impl VarArgs {
    pub fn overrides(&self) -> BTreeMap<String, String> {
        self.vars.iter().cloned().collect()
    }
}

/// A `--var` that is not `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarArgError {
    #[error("expected KEY=VALUE, got `{0}`")]
    NoEquals(String),
    #[error("variable name is empty")]
    EmptyName,
}

fn parse_var(s: &str) -> Result<(String, String), VarArgError> {
    let (k, v) = s.split_once('=').ok_or_else(|| VarArgError::NoEquals(s.to_string()))?;
    if k.is_empty() {
        return Err(VarArgError::EmptyName);
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parses the command line and runs it.
pub fn main() -> Outcome {
    init_tracing();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => Outcome::Passed,
                _ => Outcome::UsageError,
            };
        }
    };
    match cli.command {
        Command::Validate { specs, vars } => plan::validate(&specs, &vars.overrides()),
        Command::Plan { spec, shard, format, check, vars } => {
            plan::plan(&spec, shard, format, check, &vars.overrides())
        }
        Command::Policy { spec, vars } => policy::policy(&spec, &vars.overrides()),
        Command::Run(args) => run::run(args),
        Command::Report(args) => report::report(args),
        Command::Sweep(args) => sweep::sweep(args),
        Command::Schema { of } => {
            println!("{}", schema_text(of));
            Outcome::Passed
        }
        Command::Completions { shell } => completions::completions(shell),
        Command::Man { out } => man::man(out.as_deref()),
    }
}

/// Diagnostics for amiprobe's developers: AMIPROBE_LOG=debug.
fn init_tracing() {
    // The SDK's credential sources warn of each failure with its `Debug` form: amiprobe's own one
    // line about the credentials says it better (AMIPROBE_LOG shows them again).
    let quiet = "warn,aws_config::meta::credentials=error,aws_config::meta::token=error,\
                 aws_config::profile::credentials=error,aws_config::web_identity_token=error,\
                 aws_config::sts::assume_role=error";
    let filter = tracing_subscriber::EnvFilter::try_from_env("AMIPROBE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(quiet));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The schema exactly as `schemas/` holds it.
pub fn schema_text(of: SchemaOf) -> String {
    let schema = match of {
        SchemaOf::Spec => crate::providers::spec_schema(),
        SchemaOf::Results => crate::report::json::schema(),
    };
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

/// The async runtime for commands that talk to machines; a failure to start it is printed.
fn runtime() -> Result<tokio::runtime::Runtime, Outcome> {
    start_runtime().map_err(|e| {
        eprintln!("error: {e}");
        Outcome::Failed
    })
}

/// The runtime could not be started (out of threads or file descriptors).
#[derive(Debug, thiserror::Error)]
#[error("failed to start the async runtime: {0}")]
pub struct RuntimeError(#[from] std::io::Error);

/// The async runtime for commands that talk to machines.
fn start_runtime() -> Result<tokio::runtime::Runtime, RuntimeError> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// How a command ends when its provider can't be used: a setup to fix is a usage error, a provider
/// that did not answer a failure.
fn access_outcome(e: &crate::provider::AccessError) -> Outcome {
    match e {
        crate::provider::AccessError::Unusable(_) => Outcome::UsageError,
        crate::provider::AccessError::Unanswered(_) => Outcome::Failed,
    }
}

/// The exit code a set of results stands for.
fn outcome_of(results: &crate::results::RunResults) -> Outcome {
    use crate::results::RunStatus;
    match results.status {
        RunStatus::Passed => Outcome::Passed,
        RunStatus::Interrupted => Outcome::Interrupted,
        RunStatus::Failed | RunStatus::Running => Outcome::Failed,
        // Nothing was launched: the spec asks for what can't be.
        RunStatus::Refused => Outcome::UsageError,
    }
}
