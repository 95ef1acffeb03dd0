//! The SSM client for a region, made like the EC2 client (`api.rs`): the same configuration chain
//! (profile, region, `AWS_ENDPOINT_URL`, `provider.ec2.assume_role`), no SDK retries, a token bucket
//! and api.rs's backoff for every call. GetParameter reads an image id a pipeline published;
//! PutParameter publishes the id of an image that passed (`provider.ec2.on_pass`).

use aws_config::SdkConfig;
use aws_sdk_ssm::types::ParameterType;

use super::api::{Api, ApiError, Retry, TokenBucket};
use super::RateLimitsSpec;

/// SSM checks that a parameter of this data type holds an AMI id that exists in its region.
const IMAGE_DATA_TYPE: &str = "aws:ec2:image";

/// SSM in one region.
pub struct Ssm {
    pub client: aws_sdk_ssm::Client,
    /// Every call takes a token: SSM's GetParameter allows about 40 a second per account and region,
    /// more than EC2's describe rate this bucket is paced at.
    pub bucket: TokenBucket,
    pub region: String,
}

impl Ssm {
    /// A client from a configuration made for EC2 ([`api::sdk_config`], and the role's credentials
    /// once assumed): the same credentials and endpoint override.
    pub fn with_config(config: &SdkConfig, region: &str, rates: &RateLimitsSpec) -> Ssm {
        let paced = rates.paced(rates.describe);
        Ssm { client: aws_sdk_ssm::Client::new(config), bucket: TokenBucket::new(paced), region: region.to_string() }
    }

    /// A parameter's value (`None`: no such parameter), through `api`'s retry loop (throttling and
    /// server errors backed off), decrypted when it is a SecureString.
    pub async fn get_parameter(&self, api: &Api, name: &str) -> Result<(Option<String>, u32), ApiError> {
        let answer = api
            .call_retrying(&self.bucket, "GetParameter", Retry::default(), || {
                self.client.get_parameter().name(name).with_decryption(true).send()
            })
            .await;
        match answer {
            Ok((out, attempts)) => Ok((out.parameter().and_then(|p| p.value()).map(str::to_string), attempts)),
            Err(e) if e.is("ParameterNotFound") => Ok((None, e.attempts)),
            Err(e) => Err(e),
        }
    }

    /// Sets the String parameter `name` to `image` (overwriting its value: the parameter says which
    /// image passed last), through `api`'s bucket for mutating calls. Not in any ledger: it is
    /// meant to stay.
    pub async fn put_image(&self, api: &Api, name: &str, image: &str) -> Result<(), ApiError> {
        let request = self
            .client
            .put_parameter()
            .name(name)
            .value(image)
            .r#type(ParameterType::String)
            .data_type(IMAGE_DATA_TYPE)
            .overwrite(true);
        api.call(&api.buckets.mutating, "PutParameter", || request.clone().send()).await.map(drop)
    }
}
