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
    let report = runtime.block_on(async {
        let api = Api::connect(&spec, args.region.as_deref()).await?;
        Ok::<_, String>(sweep::sweep(&api, &selection, args.dry_run).await)
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::UsageError;
        }
    };
    let verb = if args.dry_run { "would remove" } else { "removed" };
    for id in &report.instances {
        println!("{verb} instance {id}");
    }
    for name in &report.key_pairs {
        println!("{verb} key pair {name}");
    }
    for id in &report.security_groups {
        println!("{verb} security group {id}");
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    println!(
        "{} instances, {} key pairs, {} security groups",
        report.instances.len(),
        report.key_pairs.len(),
        report.security_groups.len()
    );
    if report.errors.is_empty() {
        Outcome::Passed
    } else {
        Outcome::Failed
    }
}
