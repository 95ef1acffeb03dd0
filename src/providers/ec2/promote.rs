//! `provider.ec2.on_pass`: once a run is over, each image all of whose cells passed is promoted in
//! its own region: tagged (CreateTags on the AMI) and/or its id written to an SSM parameter
//! (PutParameter). Which images, and why not the others, is `images.rs`; the placeholders of the
//! values `template.rs`; the parameter is written by the region's SSM client (`ssm.rs`). Every call
//! goes through the region's token buckets and backoff (`api.rs`), like the run's own.
//!
//! What a promotion writes is meant to stay: it is not in the run's ledger, carries no `amiprobe:`
//! tag, and neither the run's cleanup nor `amiprobe sweep` removes it. A refusal is the image's
//! status (`Refused`) and, to the engine, an error of the run.

mod images;
pub mod template;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::Tag;

use super::tags::bounded;
use super::{Ec2Provider, OnPassSpec};
use crate::cell::Cell;
use crate::provider::promotion::{ActionKind, CellVerdict, PromotionAction, PromotionStatus};
use crate::provider::{ImagePromotion, PromotionRequest};
use images::{decide, images_of, Decision, Image};
use template::{render, Values};

impl Ec2Provider {
    /// Every image of the run with what became of it; `None` without `on_pass`.
    pub(super) async fn promote_images(&self, request: &PromotionRequest) -> Option<Vec<ImagePromotion>> {
        let on_pass = self.spec.on_pass.as_ref()?;
        let mut out = Vec::new();
        for image in images_of(&request.cells, self.spec.region.as_deref()) {
            let region = image.launched_in.clone().or(image.region.clone()).unwrap_or_else(|| "default".into());
            let mut promotion = ImagePromotion {
                image: image.id.clone(),
                region,
                cells: image.cells.clone(),
                status: PromotionStatus::Withheld,
                reason: None,
                actions: Vec::new(),
            };
            match decide(&image, request.withheld.as_deref()) {
                Decision::NotPassed(why) => {
                    (promotion.status, promotion.reason) = (PromotionStatus::NotPassed, Some(why))
                }
                Decision::Withheld(why) => promotion.reason = Some(why),
                // A signal meanwhile: the actions already sent finish, no further one starts.
                Decision::Promote if request.cancel.is_cancelled() => {
                    promotion.reason = Some("interrupted before its promotion".into());
                }
                Decision::Promote => self.promote_one(on_pass, &image, request, &mut promotion).await,
            }
            out.push(promotion);
        }
        Some(out)
    }

    /// The actions of `on_pass` for one image, in its region: its parameter, then its tags.
    async fn promote_one(
        &self,
        on_pass: &OnPassSpec,
        image: &Image,
        request: &PromotionRequest,
        promotion: &mut ImagePromotion,
    ) {
        let regional = match self.connect(image.region.as_deref()).await {
            Ok(regional) => regional,
            Err(e) => {
                (promotion.status, promotion.reason) = (PromotionStatus::Refused, Some(e.to_string()));
                return;
            }
        };
        let api = &regional.api;
        promotion.region.clone_from(&api.region);
        let values = Values {
            run_id: &request.run_id,
            time: &request.at,
            spec: &request.spec_name,
            image: &image.id,
            region: &api.region,
        };
        // The parameter first (SSM has no DryRun: its refusal is only known now); the tags, checked
        // by the preflight's DryRun, only once it is written, so that a refused promotion leaves no
        // tag saying the image passed.
        if let Some(name) = &on_pass.ssm_parameter {
            let name = render(name, &values);
            let error = regional.ssm.put_image(api, &name, &image.id).await.err().map(|e| e.to_string());
            promotion.actions.push(PromotionAction { kind: ActionKind::Parameter, target: name, error });
        }
        let parameter_refused = promotion.actions.iter().any(|a| a.error.is_some());
        if !on_pass.tags.is_empty() && !parameter_refused {
            let tags: Vec<(String, String)> =
                on_pass.tags.iter().map(|(k, v)| (k.clone(), bounded(&render(v, &values)))).collect();
            let target = tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
            let sent: Vec<Tag> = tags.into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
            // Not written to the ledger: the tags are meant to stay, and no cleanup or sweep removes
            // them (nor could: they carry no `amiprobe:` tag, and an image is none of the run's).
            let request = api.client.create_tags().resources(&image.id).set_tags(Some(sent));
            let done = api.call(&api.buckets.mutating, "CreateTags", || request.clone().send()).await;
            let error = done.err().map(|e| e.to_string());
            promotion.actions.push(PromotionAction { kind: ActionKind::Tags, target, error });
        }
        let failed: Vec<String> = promotion.actions.iter().filter_map(|a| a.error.clone()).collect();
        (promotion.status, promotion.reason) = match failed.is_empty() {
            true => (PromotionStatus::Promoted, None),
            false => (PromotionStatus::Refused, Some(failed.join("; "))),
        };
    }

    /// Images of one region whose parameter names would be the same (`ssm_parameter` without
    /// `{image}`): the last write would win, so the run is refused before it starts, a line each.
    pub(super) fn parameter_collisions(&self, cells: &[Cell]) -> Vec<String> {
        let Some(name) = self.spec.on_pass.as_ref().and_then(|p| p.ssm_parameter.as_ref()) else {
            return Vec::new();
        };
        let verdicts: Vec<CellVerdict> = cells
            .iter()
            .map(|c| CellVerdict {
                id: c.id.0.clone(),
                values: c.values.clone(),
                machine: Default::default(),
                passed: true,
            })
            .collect();
        let mut by_name: BTreeMap<(Option<String>, String), BTreeSet<String>> = BTreeMap::new();
        for image in images_of(&verdicts, self.spec.region.as_deref()) {
            let region = image.region.as_deref().unwrap_or("default");
            let values = Values { run_id: "", time: "", spec: &self.spec_name, image: &image.id, region };
            by_name.entry((image.region.clone(), render(name, &values))).or_default().insert(image.id);
        }
        by_name
            .into_iter()
            .filter(|(_, images)| images.len() > 1)
            .map(|((region, name), images)| {
                format!(
                    "provider.ec2.on_pass.ssm_parameter: images {} in {} would all write `{name}`, the last one \
                     winning; put {{image}} in its name, or give each image a region of its own",
                    images.into_iter().collect::<Vec<_>>().join(", "),
                    region.as_deref().unwrap_or("the default region")
                )
            })
            .collect()
    }
}
