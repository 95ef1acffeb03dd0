//! The EC2 client as amiprobe uses it: the standard AWS configuration chain, client-side token
//! buckets at EC2's published rates, and backoff with jitter on throttling.

use std::future::Future;
use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use tokio::sync::Mutex;
use tokio::time::{sleep, Instant};

use crate::spec::{Ec2Spec, RateSpec};

/// Error codes that mean "slow down": retried with backoff, never reported as the cell's failure.
const THROTTLED: &[&str] = &["RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled"];
const MAX_THROTTLE_RETRIES: u32 = 12;

/// An EC2 API error, as a lowercase fragment: "RunInstances failed: InvalidAMIID.NotFound: ...".
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action} failed: {}", self.detail())]
pub struct ApiError {
    pub action: &'static str,
    pub code: Option<String>,
    pub message: String,
}

impl ApiError {
    fn detail(&self) -> String {
        match &self.code {
            Some(code) => format!("{code}: {}", self.message),
            None => self.message.clone(),
        }
    }

    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// A token bucket: `burst` calls at once, refilled at `per_second`.
pub struct TokenBucket {
    rate: RateSpec,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: RateSpec) -> Self {
        TokenBucket { rate, state: Mutex::new((f64::from(rate.burst), Instant::now())) }
    }

    /// Waits for a token. Waiters are served in turn (tokio's Mutex is fair).
    pub async fn acquire(&self) {
        let mut state = self.state.lock().await;
        loop {
            let now = Instant::now();
            let (tokens, last) = *state;
            let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate.per_second)
                .min(f64::from(self.rate.burst));
            if tokens >= 1.0 {
                *state = (tokens - 1.0, now);
                return;
            }
            *state = (tokens, now);
            sleep(Duration::from_secs_f64((1.0 - tokens) / self.rate.per_second)).await;
        }
    }
}

/// The API classes EC2 throttles separately.
pub struct Buckets {
    pub describe: TokenBucket,
    pub run_instances: TokenBucket,
    pub terminate: TokenBucket,
    pub mutating: TokenBucket,
}

pub struct Api {
    pub client: aws_sdk_ec2::Client,
    pub buckets: Buckets,
    pub region: String,
}

impl Api {
    /// Configuration the AWS way: credential chain and profiles, region from the spec or the
    /// environment, `AWS_ENDPOINT_URL(_EC2)`, `AWS_MAX_ATTEMPTS`.
    pub async fn connect(spec: &Ec2Spec, region_override: Option<&str>) -> Result<Api, String> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region_override.map(str::to_string).or_else(|| spec.region.clone()) {
            loader = loader.region(aws_config::Region::new(region));
        }
        if let Some(profile) = &spec.profile {
            loader = loader.profile_name(profile);
        }
        let config = loader.load().await;
        let region = config
            .region()
            .map(|r| r.to_string())
            .ok_or("no AWS region: set provider.ec2.region, AWS_REGION or a profile's region")?;
        let r = &spec.rate_limits;
        Ok(Api {
            client: aws_sdk_ec2::Client::new(&config),
            buckets: Buckets {
                describe: TokenBucket::new(r.describe),
                run_instances: TokenBucket::new(r.run_instances),
                terminate: TokenBucket::new(r.terminate_instances),
                mutating: TokenBucket::new(r.mutating),
            },
            region,
        })
    }

    /// Makes one API call through its bucket, backing off with full jitter while EC2 throttles.
    pub async fn call<T, E, F, Fut>(&self, bucket: &TokenBucket, action: &'static str, mut op: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let mut retries = 0;
        loop {
            bucket.acquire().await;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let code = e.code().map(str::to_string);
                    if code.as_deref().is_some_and(|c| THROTTLED.contains(&c)) && retries < MAX_THROTTLE_RETRIES {
                        retries += 1;
                        let cap = Duration::from_millis(100 * (1 << retries.min(8))).min(Duration::from_secs(10));
                        sleep(cap.mul_f64(fastrand::f64())).await;
                        continue;
                    }
                    let message = match e.message() {
                        Some(m) => m.to_string(),
                        None => aws_sdk_ec2::error::DisplayErrorContext(&e).to_string(),
                    };
                    return Err(ApiError { action, code, message });
                }
            }
        }
    }
}

/// The two removals every cleanup path makes.
impl Api {
    pub async fn terminate(&self, ids: &[String]) -> Result<(), ApiError> {
        let ids = ids.to_vec();
        self.call(&self.buckets.terminate, "TerminateInstances", || {
            self.client.terminate_instances().set_instance_ids(Some(ids.clone())).send()
        })
        .await
        .map(|_| ())
    }

    pub async fn delete_key_pair(&self, name: &str) -> Result<(), ApiError> {
        self.call(&self.buckets.mutating, "DeleteKeyPair", || self.client.delete_key_pair().key_name(name).send())
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_a_burst_then_the_rate() {
        let bucket = TokenBucket::new(RateSpec { burst: 5, per_second: 2.0 });
        let start = Instant::now();
        for _ in 0..9 {
            bucket.acquire().await;
        }
        // 5 at once, then 4 more at 2 per second.
        let took = start.elapsed().as_secs_f64();
        assert!((1.9..2.2).contains(&took), "took {took}s");
    }
}
