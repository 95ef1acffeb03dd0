//! `amiprobe sweep`: removes what killed runs left, found by amiprobe's tags, with every provider
//! that has something to sweep (a provider none of whose machines outlives its run has nothing).

use super::runtime;
use crate::exit::Outcome;
use crate::provider::{ProviderKind, Selection, SweepReport, SweepRequest};
use crate::providers::ec2::role::{check_arn, check_external_id, RoleFieldError};

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Only what this run created.
    #[arg(long, value_name = "ID", conflicts_with = "older_than")]
    pub run_id: Option<String>,
    /// Only what was created at least this long ago (e.g. 6h). Default: what is past its
    /// `amiprobe:expires` tag.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// Region, once per region to sweep (default: the environment's or profile's).
    #[arg(long)]
    pub region: Vec<String>,
    /// A profile from the shared AWS config files.
    #[arg(long)]
    pub profile: Option<String>,
    /// A role to act as (EC2: arn:aws:iam::ACCOUNT:role/NAME, assumed through STS with the
    /// credentials found as usual), as a run with `provider.ec2.assume_role` did.
    #[arg(long, value_name = "ARN", value_parser = parse_role)]
    pub assume_role: Option<String>,
    /// The external id the role's trust policy requires.
    #[arg(long, value_name = "ID", requires = "assume_role", value_parser = parse_external_id)]
    pub external_id: Option<String>,
    /// List what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn sweep(args: SweepArgs) -> Outcome {
    let selection = match (&args.run_id, args.older_than) {
        (Some(id), _) => Selection::Run(id.clone()),
        (None, Some(age)) => Selection::OlderThan(age),
        (None, None) => Selection::Expired,
    };
    let request = SweepRequest {
        selection,
        places: args.region,
        profile: args.profile,
        assume_role: args.assume_role,
        external_id: args.external_id,
        dry_run: args.dry_run,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let mut errors = 0;
    for kind in crate::providers::ALL.iter().filter(|kind| !kind.swept_kinds().is_empty()) {
        match runtime.block_on(kind.sweep(&request)) {
            Ok(reports) => errors += print_reports(*kind, &reports, request.dry_run),
            // Nothing was looked at, nothing removed.
            Err(e) => {
                eprintln!("error: {e}");
                return super::access_outcome(&e);
            }
        }
    }
    if errors == 0 {
        Outcome::Passed
    } else {
        Outcome::Failed
    }
}

/// `--assume-role`, as STS would take it.
fn parse_role(arn: &str) -> Result<String, RoleFieldError> {
    check_arn(arn).map(|()| arn.to_string())
}

/// `--external-id`, as STS would take it.
fn parse_external_id(id: &str) -> Result<String, RoleFieldError> {
    check_external_id(id).map(|()| id.to_string())
}

/// Prints what one provider's sweep removed, place by place, and the count of each kind; returns
/// how many errors it met.
fn print_reports(kind: &dyn ProviderKind, reports: &[SweepReport], dry_run: bool) -> usize {
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut errors = 0;
    for report in reports {
        // With several places, each line names its place.
        let at = if reports.len() > 1 { format!(" in {}", report.place) } else { String::new() };
        for (what, id) in &report.removed {
            println!("{verb} {what} {id}{at}");
        }
        for e in &report.errors {
            eprintln!("error: {e}{at}");
        }
        errors += report.errors.len();
    }
    let counts: Vec<String> = kind
        .swept_kinds()
        .iter()
        .map(|(one, many)| {
            let n = reports.iter().flat_map(|r| &r.removed).filter(|(what, _)| what == one).count();
            format!("{n} {many}")
        })
        .collect();
    println!("{}", counts.join(", "));
    errors
}
