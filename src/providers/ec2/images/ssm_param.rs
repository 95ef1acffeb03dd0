//! `image: ssm:/path`: the image id an SSM parameter holds in the cell's region (EC2 Image Builder
//! and many pipelines publish it there), read with one GetParameter per parameter and region.

use super::Unresolved;
use crate::providers::ec2::api::{Api, ApiError};
use crate::providers::ec2::ssm::Ssm;

/// What a parameter resolved to: an image id, or why not; and the calls made.
pub async fn resolve(ssm: &Ssm, api: &Api, name: &str) -> Result<(Result<String, Unresolved>, u32), ApiError> {
    let (value, calls) = ssm.get_parameter(api, name).await?;
    let (name, region) = (name.to_string(), ssm.region.clone());
    let found = match value.map(|v| v.trim().to_string()) {
        None => Err(Unresolved::NoParameter { name, region }),
        Some(v) if v.is_empty() => Err(Unresolved::EmptyParameter { name, region }),
        // EC2 Image Builder writes the id; some pipelines write `region:ami-...`, or an ARN.
        Some(v) => match v.rsplit([':', '/']).next().filter(|id| id.starts_with("ami-")) {
            Some(id) => Ok(id.to_string()),
            None => Err(Unresolved::NotAnImage { name, value: v, region }),
        },
    };
    Ok((found, calls))
}
