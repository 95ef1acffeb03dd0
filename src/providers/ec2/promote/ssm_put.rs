//! The SSM client a promotion writes an image's id with, made for a region exactly as the region's
//! EC2 client is (`api::sdk_config`: the credential chain, the profile, `AWS_ENDPOINT_URL` or
//! `AWS_ENDPOINT_URL_SSM`, amiprobe's own retries; `role::assume` with `provider.ec2.assume_role`),
//! and PutParameter sent through the region's token buckets like every other call.

use aws_sdk_ssm::types::ParameterType;

use crate::providers::ec2::api::{self, Api, ApiError, ConnectError};
use crate::providers::ec2::{role, Ec2Spec};

/// SSM checks that a parameter of this data type holds an AMI id that exists in its region.
const IMAGE_DATA_TYPE: &str = "aws:ec2:image";

/// An SSM client for `region`, configured as the region's EC2 client is.
pub async fn client(spec: &Ec2Spec, spec_name: &str, region: &str) -> Result<aws_sdk_ssm::Client, ConnectError> {
    let (mut config, _) = api::sdk_config(spec, Some(region)).await?;
    if let Some(role) = &spec.assume_role {
        (config, _) = role::assume(config, role, spec_name).await;
    }
    Ok(aws_sdk_ssm::Client::new(&config))
}

/// Sets the String parameter `name` to `image` (overwriting its value: the parameter says which image
/// passed last), through `api`'s bucket for mutating calls. Not in any ledger: it is meant to stay.
pub async fn put(api: &Api, ssm: &aws_sdk_ssm::Client, name: &str, image: &str) -> Result<(), ApiError> {
    let request = ssm
        .put_parameter()
        .name(name)
        .value(image)
        .r#type(ParameterType::String)
        .data_type(IMAGE_DATA_TYPE)
        .overwrite(true);
    api.call(&api.buckets.mutating, "PutParameter", || request.clone().send()).await.map(drop)
}
