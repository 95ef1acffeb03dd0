//! The preflight's resolution of the images a region's cells name by an SSM parameter or a lookup:
//! each distinct one once in the region (one GetParameter per parameter, one DescribeImages per
//! lookup), whatever the number of cells naming it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{lookup, ssm_param};
use crate::cell::Cell;
use crate::providers::ec2::api::{Api, ApiError};
use crate::providers::ec2::ssm::Ssm;
use crate::spec::ImageSource;

/// Why a parameter or a lookup gave no image, as a lowercase fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    #[error("SSM parameter {name} does not exist in {region}")]
    NoParameter { name: String, region: String },
    #[error("SSM parameter {name} is empty in {region}")]
    EmptyParameter { name: String, region: String },
    #[error("SSM parameter {name} holds `{value}` in {region}, which is not an image id")]
    NotAnImage { name: String, value: String, region: String },
    #[error("no available image named `{name}` owned by {owners} in {region}")]
    NoMatch { name: String, owners: String, region: String },
    #[error("{count} images match `{name}` in {region} and most_recent is false")]
    Ambiguous { count: usize, name: String, region: String },
}

/// What a region's parameters and lookups resolved to, by the image value as the cell holds it
/// ([`key`]): an image id, or why not.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub images: BTreeMap<String, Result<String, Unresolved>>,
    /// Calls made, every page and retry counted.
    pub calls: usize,
}

/// A cell's image value as text: the id, `ssm:/path`, or a lookup's JSON.
pub fn key(cell: &Cell) -> String {
    match cell.launch.get("image") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The source a key names, when the preflight resolves it (a parameter or a lookup).
fn source(key: &str) -> Option<ImageSource> {
    let value = serde_json::from_str::<Value>(key).unwrap_or_else(|_| Value::String(key.to_string()));
    serde_json::from_value::<ImageSource>(value)
        .ok()
        .filter(|s| matches!(s, ImageSource::Ssm(_) | ImageSource::Lookup(_)))
}

/// Resolves each distinct parameter and lookup among `keys`, once each, in `api`'s region.
pub async fn in_region<'a>(api: &Api, ssm: &Ssm, keys: impl Iterator<Item = &'a str>) -> Result<Resolved, ApiError> {
    let mut resolved = Resolved::default();
    for key in keys {
        if resolved.images.contains_key(key) {
            continue;
        }
        let found = match source(key) {
            Some(ImageSource::Ssm(name)) => {
                let (found, calls) = ssm_param::resolve(ssm, api, &name).await?;
                resolved.calls += calls as usize;
                found
            }
            Some(ImageSource::Lookup(l)) => {
                let (found, calls) = lookup::resolve(api, &l).await?;
                resolved.calls += calls;
                found
            }
            _ => continue,
        };
        resolved.images.insert(key.to_string(), found);
    }
    Ok(resolved)
}
