//! `amiprobe sweep`: the command around `provider::ec2::sweep`.

use crate::cli::SweepArgs;
use crate::exit::Outcome;
use crate::provider::ec2::sweep::{self, Selection};
use crate::provider::ec2::Api;
use crate::spec::Ec2Spec;

pub fn sweep(args: SweepArgs) -> Outcome {
    let selection = match (&args.run_id, args.older_than) {
        (Some(id), _) => Selection::Run(id.clone()),
        (None, Some(age)) => Selection::OlderThan(age),
        (None, None) => Selection::Expired,
    };
    let runtime = match crate::cli::runtime() {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let mut spec: Ec2Spec =
        serde_yaml::from_str("{}").unwrap_or_else(|_| unreachable!("an empty ec2 section is valid"));
    spec.profile = args.profile.clone();
    // No `--region`: the environment's or profile's; each one given, swept in turn.
    let regions: Vec<Option<&str>> = match args.region.as_slice() {
        [] => vec![None],
        many => many.iter().map(|r| Some(r.as_str())).collect(),
    };
    let reports = runtime.block_on(async {
        let mut reports = Vec::new();
        for region in &regions {
            let api = Api::connect(&spec, *region).await?;
            reports.push((api.region.clone(), sweep::sweep(&api, &selection, args.dry_run).await));
        }
        Ok::<_, String>(reports)
    });
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
