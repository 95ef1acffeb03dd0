//! `image: ssm:/path`: the image id an SSM parameter holds in the cell's region (EC2 Image Builder
//! and many pipelines publish it there), read with one GetParameter per parameter and region.

use crate::providers::ec2::api::{Api, ApiError};
use crate::providers::ec2::ssm::Ssm;

/// What a parameter resolved to: an image id, or why not (a lowercase fragment); and the calls made.
pub async fn resolve(ssm: &Ssm, api: &Api, name: &str) -> Result<(Result<String, String>, u32), ApiError> {
    let (value, calls) = ssm.get_parameter(api, name).await?;
    let found = match value.map(|v| v.trim().to_string()) {
        None => Err(format!("SSM parameter {name} does not exist in {}", ssm.region)),
        Some(v) if v.is_empty() => Err(format!("SSM parameter {name} is empty in {}", ssm.region)),
        // EC2 Image Builder writes the id; some pipelines write `region:ami-...`, or an ARN.
        Some(v) => Ok(v.rsplit([':', '/']).next().unwrap_or(&v).to_string()),
    };
    Ok((found, calls))
}
