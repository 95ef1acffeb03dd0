//! The run's key pair on EC2: the run's key ([`RunKey`]) imported once into each region the run
//! uses (ImportKeyPair), so a run costs two key pair calls per region, not two per cell.

use aws_sdk_ec2::types::{ResourceType, TagSpecification};

use super::api::{Api, ApiError};
use super::regions::Regional;
use super::resource::Ec2Resource;
use super::Ec2Provider;
use crate::provider::key::RunKey;
use crate::provider::{LaunchContext, Ledger, ProviderError, Resource};

impl Ec2Provider {
    /// The run's key pair in `regional`'s region, imported on the region's first need: its name. A
    /// failed import is tried again by the next cell.
    pub(super) async fn key_pair_in(
        &self,
        regional: &Regional,
        key: &RunKey,
        ctx: &LaunchContext,
    ) -> Result<String, ProviderError> {
        let name = regional
            .key
            .get_or_try_init(|| async {
                let tags = self.run_tags(&ctx.run_id, "key", ResourceType::KeyPair);
                import(key, &regional.api, tags, &ctx.ledger).await.map_err(|e| ProviderError::new(e.to_string()))?;
                Ok::<_, ProviderError>(key.name.clone())
            })
            .await?;
        Ok(name.clone())
    }
}

/// Imports the run's key into the region `api` talks to, recorded in the ledger before the call. A
/// retry that finds the key already there (the first attempt's answer was lost) is the same key.
pub async fn import(key: &RunKey, api: &Api, tags: TagSpecification, ledger: &Ledger) -> Result<Resource, ApiError> {
    let resource =
        Ec2Resource::KeyPair { name: key.name.clone(), cell: String::new(), region: api.region.clone() }.recorded();
    ledger.record(resource.clone());
    let imported = api
        .call(&api.buckets.mutating, "ImportKeyPair", || {
            api.client
                .import_key_pair()
                .key_name(&key.name)
                .public_key_material(aws_sdk_ec2::primitives::Blob::new(key.public.as_bytes()))
                .tag_specifications(tags.clone())
                .send()
        })
        .await;
    match imported {
        Ok(_) => Ok(resource),
        Err(e) if e.is("InvalidKeyPair.Duplicate") && e.attempts > 1 => Ok(resource),
        // A server error may have imported it after all: it stays in the ledger, and the run's
        // end deletes it (deleting a key that does not exist is no error).
        Err(e) if e.transient => Err(e),
        Err(e) => {
            ledger.removed(&resource);
            Err(e)
        }
    }
}
