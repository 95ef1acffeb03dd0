//! The `ec2` provider: real EC2 through the official SDK.
//!
//! Before anything else, per region: one STS GetCallerIdentity (`credentials.rs`), which says who the
//! run acts as or, without usable credentials, what was tried and what to do. Per run and region: the
//! run's one key pair (imported on first need). Per cell: RunInstances (tagged with the run id, the
//! cell and an expiry, with a client token so a retried launch never starts a second instance), a
//! shared DescribeInstances poller, GetConsoleScreenshot and GetConsoleOutput on the schedule, and
//! TerminateInstances in every outcome; the key pair goes at the run's end. Per run and VPC, with
//! `security_group: ephemeral`, one security group for the probes (`security_group.rs`), deleted in
//! the run's final sweep once its instances are terminated. `amiprobe sweep` removes what a killed
//! run left, by its tags, once the credentials of every region it looks in are checked.
//!
//! `region` is a launch field like any other (an axis, or fixed; else `provider.ec2.region`, else the
//! SDK's configured region). Each region the run uses has its own client and token buckets, watcher,
//! preflight lookups and run groups (`regions.rs`); the ledger's entries name their region, so every
//! removal, and the run's final sweep, happens where the thing was made.
//!
//! Where each step lives: the launch fields and their checks in `fields.rs` and `launch.rs`, the
//! images from the pipeline (a Packer manifest, an SSM parameter, a lookup) in `images/`, the
//! preflight in `checks.rs` and `preflight.rs`, RunInstances with its capacity fallbacks in
//! `run_instances.rs`, the cell's instance in `machine.rs`, removals in `cleanup.rs` and `sweep.rs`,
//! the promotion of the images that passed (`on_pass`: tags, an SSM parameter) in `promote.rs`.

mod api;
mod checks;
mod cleanup;
mod config;
mod console_rules;
mod credentials;
mod dry_run;
mod fields;
pub mod images;
mod instance_types;
mod key_pair;
mod kind;
pub mod launch;
mod machine;
pub mod permissions;
pub mod preflight;
mod promote;
mod regions;
mod resource;
pub mod role;
mod run_command;
mod run_instances;
pub mod security_group;
pub mod ssm;
mod state_reason;
pub mod sweep;
mod tags;
mod watcher;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::cell::Cell;
use crate::provider::key::OnceKey;
pub use crate::provider::key::PRIVATE_KEY_FILE;
use crate::provider::lifecycle::LoginKey;
use crate::provider::{
    lifecycle, AccessError, Checked, CleanupStep, Identity, ImagePromotion, LaunchContext, LaunchPlan, Ledger, Machine,
    PromotionRequest, Provider, ProviderError, ProviderSettings, Resource, RunSettings,
};
pub use api::Api;
pub use config::{
    AddressKind, AssumeRoleSpec, Ec2Spec, FallbackSpec, OnPassSpec, RateLimitsSpec, RateSpec, SecurityGroupMode,
};
pub use fields::FIELDS;
pub use kind::KIND;
use launch::Ec2Launch;
use machine::Ec2Machine;
use regions::Regions;
use run_command::SsmAgent;
use run_instances::{KeyName, LaunchLog};
pub use tags::{tag, CELL_TAG, EXPIRES_TAG, KEPT_TAG, RUN_ID_TAG};

/// Agents not yet online are asked about at least this often (more often with a shorter
/// `poll_interval`): one call for all of a region's, within SSM's small describe budget.
const AGENT_POLL: Duration = Duration::from_secs(2);

pub struct Ec2Provider {
    spec: Ec2Spec,
    launch: LaunchPlan,
    spec_name: String,
    run_timeout: Duration,
    cleanup_timeout: Duration,
    /// One connection per region, made on first need: a cell's `region` (or `provider.ec2.region`;
    /// `None`, the SDK's configured region) -> its client, watcher and what is known there. The
    /// region the SDK chose for `None` is also listed under its name.
    regions: Mutex<Regions>,
    /// The run's key (`key_pair: ephemeral`), generated on first need and imported into each region.
    run_key: OnceKey,
    /// Where each `image` value was written: what the preflight can't resolve is named there.
    image_places: std::sync::Arc<BTreeMap<String, String>>,
    /// Some probe runs commands through the SSM agent.
    agent: bool,
}

impl Ec2Provider {
    pub fn new(spec: Ec2Spec, run: RunSettings) -> Self {
        let os = run.launch.os;
        Ec2Provider {
            spec,
            launch: run.launch,
            spec_name: run.spec_name,
            run_timeout: run.run_timeout,
            cleanup_timeout: run.cleanup_timeout,
            regions: Default::default(),
            run_key: OnceKey::new(os),
            image_places: run.image_places,
            agent: run.agent,
        }
    }
}

#[async_trait]
impl Provider for Ec2Provider {
    /// One GetCallerIdentity per region the cells use, side by side.
    async fn identity(&self, cells: &[Cell]) -> Result<Option<Identity>, AccessError> {
        self.identities(cells).await
    }

    /// One batched lookup per kind (images, types, offerings, subnets, groups) for the whole plan:
    /// impossible cells are refused before anything is created, and the images' root device names
    /// are kept for the launches' block device mappings.
    async fn preflight(&self, cells: &[Cell]) -> Result<Checked, ProviderError> {
        let mut impossible = BTreeMap::new();
        let (mut image_warnings, mut lookups_refused, mut resolved) = (Vec::new(), Vec::new(), Vec::new());
        for (region, requests) in self.requests_by_region(cells)? {
            let checked = self.check_region(region.as_deref(), &requests).await?;
            impossible.extend(checked.impossible);
            image_warnings.extend(checked.warnings);
            lookups_refused.extend(checked.refused);
            resolved.extend(checked.resolved);
        }
        // In the plan's order, whatever the regions.
        let impossible = cells.iter().filter_map(|c| impossible.remove_entry(c.id.0.as_str())).collect();
        // A refused lookup stops the run on its own; the DryRun pass would name it again (the run's
        // own describe calls are asked about there too).
        let (mut refused, doubts) = match lookups_refused.is_empty() {
            true => self.refusals(cells).await?,
            false => (lookups_refused, Vec::new()),
        };
        refused.extend(self.parameter_collisions(cells));
        let mut warnings = ProviderSettings::warnings(&self.spec, cells);
        if self.agent {
            warnings.extend(self.spec.agent_warnings(cells));
        }
        warnings.extend(doubts);
        warnings.extend(image_warnings);
        Ok(Checked { warnings, impossible, refused, resolved })
    }

    async fn launch(&self, cell: &Cell, ctx: &LaunchContext) -> Result<Box<dyn Machine>, ProviderError> {
        if ctx.cancel.is_cancelled() {
            return Err(ProviderError::interrupted("interrupted before launching"));
        }
        let regional = self.regional(self.region_of(cell).as_deref()).await?;
        let login_key = lifecycle::login_key(&self.run_key, &self.launch, ctx).await?;
        let key = match &login_key {
            // The run's own key is new: RunInstances may not know it for a moment.
            LoginKey::Run(key) => KeyName { name: self.key_pair_in(&regional, key, ctx).await?, new: true },
            LoginKey::Existing(name) => KeyName { name: name.clone(), new: false },
        };
        let mut log = LaunchLog::default();
        let launched = self.run_instance(&regional, cell, ctx, key, &mut log).await?;
        regional.watcher.watch(&launched.id);
        let agent = ctx.agent.then(|| {
            let fleet = regional.run_command(&ctx.run_id, self.spec.poll_interval.min(AGENT_POLL));
            let profile = Ec2Launch::of(cell).ok().and_then(|f| f.iam_instance_profile);
            Arc::new(SsmAgent::new(fleet, &launched.id, self.launch.os, profile))
        });
        Ok(Box::new(Ec2Machine {
            api: regional.api.clone(),
            watcher: regional.watcher.clone(),
            instance_id: launched.id,
            instance_type: launched.instance_type,
            image_id: regional.image_of(cell),
            instance: lifecycle::Tracked::new(launched.instance, &ctx.ledger),
            address: self.spec.address,
            region: regional.api.region.clone(),
            cleanup_timeout: self.cleanup_timeout,
            console_poll_interval: self.spec.console_poll_interval,
            info: None,
            console: String::new(),
            latest_refused: false,
            notes: log.notes,
            queued: log.queued,
            login_key: login_key.run_key(),
            agent,
        }))
    }

    async fn remove_leftovers(&self, leftovers: Vec<Resource>, ledger: &Ledger) -> Vec<CleanupStep> {
        self.remove_left(leftovers, ledger).await
    }

    /// Every region the run used, side by side: those connected, and any the ledger still names.
    async fn sweep_run(&self, run_id: &str, ledger: &Ledger) -> Vec<CleanupStep> {
        self.sweep_regions(run_id, ledger).await
    }

    /// `on_pass`: each image all of whose cells passed, tagged and/or written to its parameter.
    async fn promote(&self, request: &PromotionRequest) -> Option<Vec<ImagePromotion>> {
        self.promote_images(request).await
    }
}
