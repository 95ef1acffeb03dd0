//! The run's verdict acted on (EC2's `on_pass`): once every cell has ended and the last removals are
//! done, the provider is told each cell's verdict and promotes each image all of whose cells passed.
//! Here is decided whether the run may promote at all: never an interrupted run (its verdict is not
//! whole), a shard (`report merge --promote` promotes the merged run), or a rerun of some cells. Also
//! used by `amiprobe report merge --promote`.

use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::provider::promotion::CellVerdict;
use crate::provider::{PromotionRequest, Provider};
use crate::results::{PromotionStatus, Promotions, RunResults, RunStatus, Withheld};

/// Why a run may not promote, if it may not.
pub fn withheld(results: &RunResults, interrupted: bool, rerun: bool) -> Option<Withheld> {
    if interrupted || results.status == RunStatus::Interrupted {
        Some(Withheld::Interrupted)
    } else if results.shard.is_some() {
        Some(Withheld::Shard)
    } else if rerun {
        Some(Withheld::Rerun)
    } else {
        None
    }
}

/// Why nothing is promoted, as a fragment for each image that passed (a shard says which).
fn withheld_text(withheld: Withheld, results: &RunResults) -> String {
    match (withheld, results.shard.as_deref()) {
        (Withheld::Shard, Some(shard)) => format!("shard {shard}: {}", withheld.why()),
        _ => withheld.why().to_string(),
    }
}

/// What the provider is asked: each cell's verdict, and why the run may not promote (`withheld`: it
/// then only says which images it would have promoted).
pub fn request(results: &RunResults, withheld: Option<Withheld>, cancel: CancellationToken) -> PromotionRequest {
    PromotionRequest {
        run_id: results.run_id.clone(),
        spec_name: results.spec.name.clone(),
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        cells: results
            .cells
            .iter()
            .map(|c| CellVerdict {
                id: c.id.clone(),
                values: c.params.0.clone(),
                machine: c.machine.clone(),
                passed: c.status.is_pass(),
            })
            .collect(),
        withheld: withheld.map(|w| withheld_text(w, results)),
        cancel,
    }
}

/// Asks the provider to promote as `request` says; `None` when the spec asks for no promotion.
pub async fn promote(
    provider: &dyn Provider,
    request: PromotionRequest,
    withheld: Option<Withheld>,
) -> Option<Promotions> {
    let images = provider.promote(&request).await?;
    Some(Promotions { withheld, images: images.into_iter().map(Into::into).collect() })
}

/// Sets `promotions` on merged or finished `results`: a refused promotion is a warning of the run,
/// and a run whose cells all passed fails by it. Returns the warnings added.
pub fn apply(results: &mut RunResults, promotions: Option<Promotions>) -> Vec<String> {
    let Some(promotions) = promotions else { return Vec::new() };
    let refused = refusals(&promotions);
    if !refused.is_empty() && results.status == RunStatus::Passed {
        results.status = RunStatus::Failed;
    }
    results.warnings.extend(refused.iter().cloned());
    results.promotions = Some(promotions);
    refused
}

/// One line per refused promotion: an error of the run, which then does not exit 0.
pub fn refusals(promotions: &Promotions) -> Vec<String> {
    promotions
        .images
        .iter()
        .filter(|i| i.status == PromotionStatus::Refused)
        .map(|i| {
            format!(
                "promotion refused (an error: the run exits 1): {} in {}: {}",
                i.image,
                i.region,
                i.reason.as_deref().unwrap_or("refused")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::results::{ImagePromotion, PromotionStatus};

    fn results(status: &str, shard: Option<&str>) -> RunResults {
        serde_json::from_value(json!({
            "schema_version": 1, "amiprobe_version": "0", "run_id": "r1",
            "spec": { "name": "web", "file": "web.yaml", "provider": "ec2" },
            "shard": shard, "status": status, "started_at": "2026-12-06T22:00:00Z", "duration_s": 1.0,
            "counts": { "total": 0, "passed": 0, "failed": 0, "errored": 0, "not_run": 0 }, "cells": []
        }))
        .expect("results")
    }

    #[test]
    fn only_a_whole_uninterrupted_run_may_promote() {
        assert_eq!(withheld(&results("running", None), false, false), None);
        assert_eq!(withheld(&results("running", None), true, false), Some(Withheld::Interrupted));
        assert_eq!(withheld(&results("interrupted", None), false, false), Some(Withheld::Interrupted));
        assert_eq!(withheld(&results("running", Some("1/2")), false, false), Some(Withheld::Shard));
        assert_eq!(withheld(&results("running", None), false, true), Some(Withheld::Rerun));
        // Interrupted wins: a shard's signal is told as such.
        assert_eq!(withheld(&results("running", Some("1/2")), true, false), Some(Withheld::Interrupted));
    }

    #[test]
    fn a_refused_promotion_fails_a_passed_run_and_is_a_warning() {
        let image = |status| ImagePromotion {
            image: "ami-1".into(),
            region: "eu-west-1".into(),
            cells: vec!["ami-1_t3.micro".into()],
            status,
            reason: Some("CreateTags failed: UnauthorizedOperation: no".into()),
            actions: Vec::new(),
        };
        let mut passed = results("passed", None);
        let warnings =
            apply(&mut passed, Some(Promotions { withheld: None, images: vec![image(PromotionStatus::Refused)] }));
        assert_eq!(passed.status, RunStatus::Failed);
        assert_eq!(
            warnings,
            ["promotion refused (an error: the run exits 1): ami-1 in eu-west-1: CreateTags failed: UnauthorizedOperation: no"]
        );
        assert_eq!(passed.warnings, warnings);
        let mut passed = results("passed", None);
        let promoted = Promotions { withheld: None, images: vec![image(PromotionStatus::Promoted)] };
        assert!(apply(&mut passed, Some(promoted)).is_empty());
        assert_eq!(passed.status, RunStatus::Passed);
    }
}
