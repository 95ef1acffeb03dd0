//! The command line: a thin layer that parses arguments and hands over to the library.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::exit::Outcome;
use crate::plan::{Plan, Shard};

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

/// Appends the summary when asked for; a failure is reported, the results stand.
fn write_summary(results: &crate::results::RunResults, dir: &std::path::Path, options: &ReportOptions) {
    if let Some(target) = options.summary_target() {
        match crate::report::summary::append(results, dir, &target) {
            Ok(()) => println!("{}", target.file.display()),
            Err(e) => eprintln!("error: {e}"),
        }
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

fn parse_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))?;
    if k.is_empty() {
        return Err("variable name is empty".into());
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parses the command line and runs it.
pub fn main() -> Outcome {
    // Diagnostics for amiprobe's developers: AMIPROBE_LOG=debug.
    let filter = tracing_subscriber::EnvFilter::try_from_env("AMIPROBE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();

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
        Command::Validate { specs, vars } => validate(&specs, &vars.overrides()),
        Command::Plan { spec, shard, format, check, vars } => plan(&spec, shard, format, check, &vars.overrides()),
        Command::Run(args) => run::run(args),
        Command::Report(args) => report(args),
        Command::Sweep(args) => sweep::sweep(args),
        Command::Schema { of } => {
            println!("{}", schema_text(of));
            Outcome::Passed
        }
    }
}

/// The schema exactly as `schemas/` holds it.
pub fn schema_text(of: SchemaOf) -> String {
    let schema = match of {
        SchemaOf::Spec => crate::providers::spec_schema(),
        SchemaOf::Results => crate::report::json::schema(),
    };
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

fn report(args: ReportArgs) -> Outcome {
    use crate::report::{self, json, merge};
    match (args.merge, args.dir) {
        (Some(ReportCommand::Merge { dirs, out, templates, summary, report_url }), _) => {
            let mut parts = Vec::new();
            for dir in &dirs {
                match json::load(dir) {
                    Ok(r) => parts.push((r, dir.as_path())),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Outcome::UsageError;
                    }
                }
            }
            if let Err(e) = std::fs::create_dir_all(&out) {
                eprintln!("error: failed to create {}: {e}", out.display());
                return Outcome::UsageError;
            }
            let merged = match merge::merge(parts, &out) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Outcome::UsageError;
                }
            };
            let formats = merge::formats();
            match report::write_and_list(&merged, &out, &formats, templates.as_deref()) {
                Ok(()) => {
                    let options = ReportOptions { report: Vec::new(), templates: None, summary, report_url };
                    write_summary(&merged, &out, &options);
                    outcome_of(&merged)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Outcome::Failed
                }
            }
        }
        (None, Some(dir)) => {
            let results = match json::load(&dir) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Outcome::UsageError;
                }
            };
            match report::write_and_list(&results, &dir, &args.reports.report, args.reports.templates.as_deref()) {
                Ok(()) => {
                    write_summary(&results, &dir, &args.reports);
                    outcome_of(&results)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Outcome::UsageError
                }
            }
        }
        (None, None) => Outcome::UsageError,
    }
}

/// The async runtime for commands that talk to machines.
fn runtime() -> Result<tokio::runtime::Runtime, Outcome> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("error: failed to start the async runtime: {e}");
        Outcome::Failed
    })
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

fn validate(specs: &[PathBuf], vars: &BTreeMap<String, String>) -> Outcome {
    let mut outcome = Outcome::Passed;
    for file in specs {
        match Plan::load(file, vars) {
            Ok(plan) => println!("{}: ok ({} cells)", file.display(), plan.cells.len()),
            Err(e) => {
                eprint!("{e}");
                outcome = Outcome::UsageError;
            }
        }
    }
    outcome
}

fn plan(
    file: &std::path::Path,
    shard: Option<Shard>,
    format: Format,
    check: bool,
    vars: &BTreeMap<String, String>,
) -> Outcome {
    let plan = match Plan::load(file, vars) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return Outcome::UsageError;
        }
    };
    for warning in plan.warnings() {
        eprintln!("warning: {warning}");
    }
    let total = plan.cells.len();
    let plan = match shard {
        Some(s) => plan.shard(s),
        None => plan,
    };
    let mut out = std::io::stdout().lock();
    let written = match format {
        Format::Json => {
            let doc = serde_json::json!({
                "name": plan.name,
                "provider": plan.provider.name(),
                "shard": shard.map(|s| s.to_string()),
                "total_cells": total,
                "cells": plan.cells,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc).unwrap_or_default())
        }
        Format::Text => {
            let mut text = format!("{}: {} cells on {}", plan.name, plan.cells.len(), plan.provider.name());
            if let Some(s) = shard {
                text.push_str(&format!(" (shard {s} of {total} cells)"));
            }
            text.push('\n');
            for cell in &plan.cells {
                text.push_str(&format!("  {}\n", cell.id));
            }
            write!(out, "{text}")
        }
    };
    let outcome = match written {
        Ok(()) => Outcome::Passed,
        // A closed pipe (`| head`) is not a failure of the plan.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Passed,
        Err(_) => Outcome::Failed,
    };
    if check && outcome == Outcome::Passed {
        return check_plan(&plan);
    }
    outcome
}

/// `plan --check`: the provider's preflight, and nothing else.
fn check_plan(plan: &Plan) -> Outcome {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let provider = plan.provider.provider(plan.run_settings());
    match runtime.block_on(provider.preflight(&plan.cells)) {
        Err(e) => {
            eprintln!("error: provider check failed: {e}");
            Outcome::Failed
        }
        Ok(checked) if checked.impossible.is_empty() => {
            eprintln!("check: every cell can run as asked");
            Outcome::Passed
        }
        Ok(checked) => {
            for (cell, why) in &checked.impossible {
                eprintln!("error: cell {cell}: impossible: {why}");
            }
            eprintln!("check: {} of {} cells can't run as asked", checked.impossible.len(), plan.cells.len());
            Outcome::UsageError
        }
    }
}
