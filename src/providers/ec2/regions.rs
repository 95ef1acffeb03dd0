//! The run's connection to each EC2 region it uses, made on first need (the credentials check, first
//! of all). EC2's rate limits, instance ids, AMIs, VPCs, key pairs and security groups are all per
//! region: each region has its own client and token buckets (a multi-region matrix launches that
//! much faster), its own watcher, its own preflight findings and its own run groups. With
//! `provider.ec2.assume_role`, a region's configuration (so its EC2 and STS clients) acts as the role.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::OnceCell;

use super::api::{self, Api, ConnectError};
use super::run_command::RunCommand;
use super::ssm::Ssm;
use super::watcher::Watcher;
use super::Ec2Provider;
use super::{images, role, security_group};
use crate::cell::Cell;
use crate::provider::{lock, ProviderError};

/// A region as asked (`None`: the SDK's configured one) -> its connection, once made.
pub(super) type Regions = BTreeMap<Option<String>, Arc<OnceCell<Arc<Regional>>>>;

/// What the run has in one region.
pub(super) struct Regional {
    pub api: Arc<Api>,
    /// STS, with the same configuration (and so the same credentials, the assumed role's with
    /// `assume_role`) as `api`'s client: who the credentials belong to.
    pub sts: aws_sdk_sts::Client,
    /// SSM, with the same configuration: the parameters images are named by (`ssm:/path`), and
    /// Run Command.
    pub ssm: Arc<Ssm>,
    /// `agent:` probes' Run Command here, started by the first launch that needs it.
    pub run_command: std::sync::OnceLock<Arc<RunCommand>>,
    /// The role every call here is made as (`provider.ec2.assume_role`), once its provider is set up.
    pub role: Option<role::Assumed>,
    /// The account the credentials belong to, once the credentials check has said.
    pub account: std::sync::OnceLock<String>,
    pub watcher: Arc<Watcher>,
    /// Each image's root device name, from the preflight: where a `root_volume` goes.
    pub root_devices: std::sync::Mutex<BTreeMap<String, String>>,
    /// The image ids the preflight resolved parameters and lookups to here, by the cell's image
    /// value ([`images::key`]).
    pub images: std::sync::Mutex<BTreeMap<String, String>>,
    /// The run's ephemeral security groups here, one per VPC (`security_group: ephemeral`).
    pub groups: security_group::Groups,
    /// The run's key pair here, once imported: its name.
    pub key: OnceCell<String>,
}

impl Regional {
    /// The image id a cell launches here: its own, or what the preflight resolved its parameter or
    /// lookup to (the value as written when it did not, which RunInstances refuses).
    pub fn image_of(&self, cell: &Cell) -> String {
        let key = images::key(cell);
        lock(&self.images).get(&key).cloned().unwrap_or_else(|| cell.image().to_string())
    }

    /// The region's Run Command, started on first need (its polls run only while cells wait).
    pub fn run_command(&self, run_id: &str, poll: std::time::Duration) -> Arc<RunCommand> {
        self.run_command
            .get_or_init(|| Arc::new(RunCommand::start(self.api.clone(), self.ssm.clone(), run_id, poll)))
            .clone()
    }

    /// The root device name of `image` here, as the preflight found it.
    pub fn root_device(&self, image: &str) -> Option<String> {
        lock(&self.root_devices).get(image).cloned()
    }
}

impl Ec2Provider {
    /// The region a cell runs in, as asked: its own `region`, else `provider.ec2.region`, else
    /// `None` (the SDK's configured region).
    pub(super) fn region_of(&self, cell: &Cell) -> Option<String> {
        cell.text("region").map(str::to_string).or_else(|| self.spec.region.clone())
    }

    /// The connection to `region` (`None`: the SDK's configured one), made on first need.
    pub(super) async fn regional(&self, region: Option<&str>) -> Result<Arc<Regional>, ProviderError> {
        self.connect(region).await.map_err(|e| ProviderError::new(e.to_string()))
    }

    /// [`Ec2Provider::regional`], saying why no connection could be made.
    pub(super) async fn connect(&self, region: Option<&str>) -> Result<Arc<Regional>, ConnectError> {
        let key = region.map(str::to_string).or_else(|| self.spec.region.clone());
        let once = lock(&self.regions).entry(key.clone()).or_default().clone();
        let regional = once
            .get_or_try_init(|| async {
                let (mut config, name) = api::sdk_config(&self.spec, key.as_deref()).await?;
                let mut assumed = None;
                if let Some(role) = &self.spec.assume_role {
                    (config, assumed) = role::assume(config, role, &self.spec_name).await;
                }
                let api = Arc::new(Api::with_client(aws_sdk_ec2::Client::new(&config), &name, &self.spec.rate_limits));
                let watcher = Watcher::start(api.clone(), self.spec.poll_interval, self.spec.status_poll_interval);
                Ok::<_, ConnectError>(Arc::new(Regional {
                    api,
                    sts: aws_sdk_sts::Client::new(&config),
                    ssm: Arc::new(Ssm::with_config(&config, &name, &self.spec.rate_limits)),
                    run_command: std::sync::OnceLock::new(),
                    role: assumed,
                    account: std::sync::OnceLock::new(),
                    watcher,
                    root_devices: Default::default(),
                    images: Default::default(),
                    groups: Default::default(),
                    key: OnceCell::new(),
                }))
            })
            .await?
            .clone();
        // The SDK's region by its name too: a resource recorded there finds this connection.
        lock(&self.regions).entry(Some(regional.api.region.clone())).or_insert(once);
        Ok(regional)
    }

    /// Every region connected so far, once each.
    pub(super) fn connected(&self) -> Vec<Arc<Regional>> {
        let mut seen = BTreeSet::new();
        lock(&self.regions)
            .values()
            .filter_map(|once| once.get().cloned())
            .filter(|r| seen.insert(r.api.region.clone()))
            .collect()
    }
}
