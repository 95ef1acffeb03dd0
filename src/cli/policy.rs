//! `amiprobe policy`: the least-privilege IAM policy a run of a spec needs, as JSON on stdout (the
//! provider writes it: see `providers/ec2/permissions.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::exit::Outcome;
use crate::plan::Plan;
use crate::probe::Check;
use crate::provider::PolicyNeeds;

pub fn policy(file: &Path, vars: &BTreeMap<String, String>) -> Outcome {
    let plan = match Plan::load(file, vars) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return Outcome::UsageError;
        }
    };
    let needs = PolicyNeeds {
        cells: &plan.cells,
        launch: &plan.launch,
        reboot: plan.reboot,
        windows_password: plan.probes.iter().any(|p| matches!(p.check, Check::WindowsPassword)),
        agent: plan.probes.iter().any(crate::probe::Probe::through_agent),
    };
    match plan.provider.policy(&needs) {
        Some(policy) => {
            println!("{}", serde_json::to_string_pretty(&policy).unwrap_or_default());
            Outcome::Passed
        }
        None => {
            eprintln!("error: the {} provider needs no IAM policy", plan.provider.name());
            Outcome::UsageError
        }
    }
}
