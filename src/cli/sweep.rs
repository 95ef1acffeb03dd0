//! `amiprobe sweep`: the command around the ec2 provider's sweep, which finds what killed runs left
//! by amiprobe's tags.

use super::runtime;
use crate::exit::Outcome;
use crate::provider::ec2::sweep::{self, Selection};

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
    let runtime = match runtime() {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let reports =
        runtime.block_on(sweep::sweep_regions(args.profile.as_deref(), &args.region, &selection, args.dry_run));
    let reports = match reports {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::UsageError;
        }
    };
    let verb = if args.dry_run { "would remove" } else { "removed" };
    // With several regions, each line names its region.
    let suffix = |region: &str| if reports.len() > 1 { format!(" in {region}") } else { String::new() };
    let (mut instances, mut key_pairs, mut groups, mut errors) = (0, 0, 0, 0);
    for (region, report) in &reports {
        let at = suffix(region);
        for id in &report.instances {
            println!("{verb} instance {id}{at}");
        }
        for name in &report.key_pairs {
            println!("{verb} key pair {name}{at}");
        }
        for id in &report.security_groups {
            println!("{verb} security group {id}{at}");
        }
        for e in &report.errors {
            eprintln!("error: {e}{at}");
        }
        instances += report.instances.len();
        key_pairs += report.key_pairs.len();
        groups += report.security_groups.len();
        errors += report.errors.len();
    }
    println!("{instances} instances, {key_pairs} key pairs, {groups} security groups");
    if errors == 0 {
        Outcome::Passed
    } else {
        Outcome::Failed
    }
}
