//! `amiprobe report`: reports rendered again from a results directory, or shards' results merged
//! into one (`report merge`); `report compare` and `report history` are in files of their own
//! (`compare.rs`, `history.rs`).

use std::path::{Path, PathBuf};

use super::{outcome_of, ReportArgs, ReportCommand, ReportOptions};
use crate::exit::Outcome;
use crate::report::compare::settings::Flags;
use crate::report::{self, json, merge};
use crate::results::RunResults;
use crate::spec::VarOverrides;

/// An error of a lower layer, shown as it is.
type Cause = Box<dyn std::error::Error>;

/// Why `report` could not do its work.
#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("{0}")]
    Load(Cause),
    #[error("failed to create {}: {source}", dir.display())]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Merge(Cause),
    /// The merged results' reports could not be written.
    #[error("{0}")]
    WriteMerged(Cause),
    /// The reports of a results directory could not be written again.
    #[error("{0}")]
    Rewrite(Cause),
}

impl ReportError {
    fn outcome(&self) -> Outcome {
        match self {
            ReportError::WriteMerged(_) => Outcome::Failed,
            ReportError::Load(_) | ReportError::CreateDir { .. } | ReportError::Merge(_) | ReportError::Rewrite(_) => {
                Outcome::UsageError
            }
        }
    }
}

pub fn report(args: ReportArgs) -> Outcome {
    let done = match (args.merge, args.dir) {
        (Some(ReportCommand::Merge { dirs, out, templates, summary, report_url, promote, vars }), _) => {
            let options = ReportOptions { report: Vec::new(), templates, summary, report_url };
            let promote = promote.map(|spec| (spec, vars.overrides()));
            merge_dirs(&dirs, &out, &options, promote.as_ref())
        }
        (Some(ReportCommand::Compare { base, new, ratio, floor, json, fail_on_regression, ignore_line, write }), _) => {
            let floor_s = floor.map(|f| f.as_secs_f64());
            let flags = Flags { ratio, floor_s, ignore_lines: ignore_line, fail_on_regression };
            let options = super::compare::Options { flags, json, write };
            return super::compare::compare(&base, &new, &options);
        }
        (Some(ReportCommand::History { dirs, out }), _) => return super::history::history(&dirs, &out),
        (None, Some(dir)) => render_again(&dir, &args.reports),
        (None, None) => return Outcome::UsageError,
    };
    match done {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("error: {e}");
            e.outcome()
        }
    }
}

/// `report merge`: the shards' results as one run in `out`, with its HTML and JUnit reports.
fn merge_dirs(
    dirs: &[PathBuf],
    out: &Path,
    options: &ReportOptions,
    promote: Option<&(PathBuf, VarOverrides)>,
) -> Result<Outcome, ReportError> {
    let mut parts = Vec::new();
    for dir in dirs {
        let results = json::load(dir).map_err(|e| ReportError::Load(e.into()))?;
        parts.push((results, dir.as_path()));
    }
    std::fs::create_dir_all(out).map_err(|source| ReportError::CreateDir { dir: out.to_path_buf(), source })?;
    let mut merged = merge::merge(parts, out).map_err(|e| ReportError::Merge(e.into()))?;
    if let Some((spec, vars)) = promote {
        if let Err(outcome) = super::promote::promote_merged(&mut merged, spec, vars) {
            return Ok(outcome);
        }
        merged.write(out).map_err(|e| ReportError::Merge(e.into()))?;
    }
    let formats = merge::formats();
    report::write_and_list(&merged, out, &formats, options.templates.as_deref())
        .map_err(|e| ReportError::WriteMerged(e.into()))?;
    write_summary(&merged, out, options);
    // Asked to promote and withheld (a shard missing or interrupted): not done, whatever the cells
    // did, so that a pipeline's promote step does not read it as done.
    let withheld = promote.is_some() && merged.promotions.as_ref().is_some_and(|p| p.withheld.is_some());
    Ok(match outcome_of(&merged) {
        Outcome::Passed if withheld => Outcome::Failed,
        outcome => outcome,
    })
}

/// `report DIR`: the reports of a results directory written again from its results.json.
fn render_again(dir: &Path, options: &ReportOptions) -> Result<Outcome, ReportError> {
    let results = json::load(dir).map_err(|e| ReportError::Load(e.into()))?;
    report::write_and_list(&results, dir, &options.report, options.templates.as_deref())
        .map_err(|e| ReportError::Rewrite(e.into()))?;
    write_summary(&results, dir, options);
    Ok(outcome_of(&results))
}

/// Appends the summary when asked for; a failure is reported, the results stand.
fn write_summary(results: &RunResults, dir: &Path, options: &ReportOptions) {
    if let Some(target) = options.summary_target() {
        match crate::report::summary::append(results, dir, &target) {
            Ok(()) => println!("{}", target.file.display()),
            Err(e) => eprintln!("error: {e}"),
        }
    }
}
