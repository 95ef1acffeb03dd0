//! The run's preflight, region by region: each cell's request read from its launch fields, the images
//! named by an SSM parameter or a lookup resolved once each (`images/`), one batched lookup per kind
//! in each region (`preflight.rs`), and what the launches need of the answer kept on the region's
//! connection (the resolved image ids, the images' root devices, the subnets' VPCs).

use std::collections::BTreeMap;

use super::images;
use super::preflight::{self, ApiError, LaunchRequest};
use super::regions::Regional;
use super::Ec2Provider;
use crate::cell::Cell;
use crate::provider::{lock, ProviderError};

/// The cells' requests, by the region each runs in (`None`: the SDK's configured one).
type ByRegion = BTreeMap<Option<String>, Vec<LaunchRequest>>;

/// The requests with their images resolved, the cells whose image did not resolve (with why), and
/// what each parameter and lookup resolved to.
type Resolution = (Vec<LaunchRequest>, Vec<(String, String)>, Vec<String>);

/// What the preflight found in one region.
#[derive(Default)]
pub(super) struct RegionChecked {
    /// The cells that can't run there as asked, (cell id, why).
    pub impossible: Vec<(String, String)>,
    /// What may go wrong there, once per image (another account's encrypted image).
    pub warnings: Vec<String>,
    /// A lookup the credentials may not make, as the DryRun pass names a refused action: the run
    /// stops before anything is launched, and nothing else could be checked there.
    pub refused: Vec<String>,
    /// The images parameters and lookups resolved to there, a line each.
    pub resolved: Vec<String>,
}

impl Ec2Provider {
    /// Each cell's preflight request, grouped by region.
    pub(super) fn requests_by_region(&self, cells: &[Cell]) -> Result<ByRegion, ProviderError> {
        let mut by_region = ByRegion::new();
        for cell in cells {
            let boot_mode = match cell.launch.get("boot_mode").cloned().map(serde_json::from_value) {
                Some(Ok(mode)) => Some(mode),
                Some(Err(e)) => return Err(ProviderError::new(format!("cell {}: boot_mode: {e}", cell.id))),
                None => None,
            };
            by_region.entry(self.region_of(cell)).or_default().push(LaunchRequest {
                cell: cell.id.0.clone(),
                // A parameter or a lookup until `check_region` resolves it.
                image: images::key(cell),
                instance_type: cell.text("instance_type").map(str::to_string),
                subnet: cell.text("subnet").map(str::to_string),
                security_groups: cell.texts("security_groups"),
                boot_mode,
                os: self.launch.os,
            });
        }
        Ok(by_region)
    }

    /// The preflight in one region, through its own buckets: the cells that can't run there as
    /// asked, and the warnings about its images.
    pub(super) async fn check_region(
        &self,
        region: Option<&str>,
        requests: &[LaunchRequest],
    ) -> Result<RegionChecked, ProviderError> {
        let regional = self.regional(region).await?;
        let (requests, unresolved, resolved) = match self.resolve_images(&regional, requests).await {
            Ok(resolved) => resolved,
            Err(e) if e.is("UnauthorizedOperation") || e.is("AccessDeniedException") => {
                let refused = format!("{}: {e}", regional.api.region);
                return Ok(RegionChecked { refused: vec![refused], ..RegionChecked::default() });
            }
            Err(e) => return Err(ProviderError::new(format!("{}: {e}", regional.api.region))),
        };
        let found = match preflight::check(&regional.api, &requests).await {
            Ok(found) => found,
            Err(e) if e.is("UnauthorizedOperation") => {
                let refused = self.lookup_refused(&regional, &e).await;
                return Ok(RegionChecked { refused: vec![refused], ..RegionChecked::default() });
            }
            Err(e) => {
                return Err(ProviderError::new(match region {
                    Some(region) => format!("{region}: {e}"),
                    None => e.to_string(),
                }))
            }
        };
        regional.groups.know_subnets(&found.subnet_vpcs);
        let mut roots = lock(&regional.root_devices);
        for (image, facts) in &found.images {
            roots.extend(facts.root_device_name.clone().map(|name| (image.clone(), name)));
        }
        // Known once the credentials were checked (`plan --check` and `run` check them first).
        let warnings = match regional.account.get() {
            Some(account) => {
                let place = region.map(|r| format!("{r}: ")).unwrap_or_default();
                let warning = |(image, facts): (&String, &preflight::ImageFacts)| {
                    facts.foreign_key_warning(image, account).map(|w| format!("{place}{w}"))
                };
                found.images.iter().filter_map(warning).collect()
            }
            None => Vec::new(),
        };
        let mut impossible: Vec<(String, String)> = unresolved;
        impossible.extend(found.impossible.into_iter().map(|i| (i.cell, i.reasons.join("; "))));
        Ok(RegionChecked { impossible, warnings, refused: Vec::new(), resolved })
    }

    /// The requests with their parameters and lookups resolved in this region (once each), kept on
    /// the region's connection for the launches; the cells whose image did not resolve, and why; and
    /// what each resolved to, a line each.
    async fn resolve_images(&self, regional: &Regional, requests: &[LaunchRequest]) -> Result<Resolution, ApiError> {
        let keys = requests.iter().map(|r| r.image.as_str());
        let resolved = images::in_region(&regional.api, &regional.ssm, keys).await?;
        let (mut kept, mut unresolved) = (Vec::new(), Vec::new());
        for request in requests {
            match resolved.images.get(&request.image) {
                None => kept.push(request.clone()),
                Some(Ok(id)) => kept.push(LaunchRequest { image: id.clone(), ..request.clone() }),
                Some(Err(why)) => {
                    let place = self.image_places.get(&request.image).map(|p| format!(" (image at {p})"));
                    unresolved.push((request.cell.clone(), format!("{why}{}", place.unwrap_or_default())));
                }
            }
        }
        let found: Vec<(String, String)> =
            resolved.images.into_iter().filter_map(|(key, id)| Some((key, id.ok()?))).collect();
        let region = &regional.api.region;
        let said = found.iter().map(|(key, id)| format!("{region}: image {key} is {id}")).collect();
        lock(&regional.images).extend(found);
        Ok((kept, unresolved, said))
    }
}
