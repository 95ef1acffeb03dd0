//! The EC2 client as amiprobe uses it: the standard AWS configuration chain, client-side token
//! buckets at EC2's published rates, and backoff with jitter on throttling, on server errors and, for
//! what amiprobe has just created, on EC2's eventually consistent "not found". Every SDK error a
//! person reads is written here ([`error_text`]): the service's code and message, else the causes.

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use aws_config::meta::ProviderChainError;
use aws_credential_types::provider::error::{CredentialsError, TokenError};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::Mutex;
use tokio::time::{sleep, Instant};

use super::{Ec2Spec, RateLimitsSpec, RateSpec};

/// Error codes that mean "slow down": retried with backoff, never reported as the cell's failure.
const THROTTLED: &[&str] = &["RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled"];
const MAX_THROTTLE_RETRIES: u32 = 12;
/// Server errors (5xx, a dropped connection) retried this often when the call has no deadline.
const MAX_SERVER_RETRIES: u32 = 5;

/// What a call retries besides throttling, which is always retried.
#[derive(Debug, Clone, Copy, Default)]
pub struct Retry<'a> {
    /// Codes that mean "not visible yet" for a resource amiprobe has just created (EC2 is eventually
    /// consistent: a new key pair or instance can be unknown to the next call for a moment).
    pub not_found: &'a [&'a str],
    /// Retry not-found answers until then.
    pub until: Option<Instant>,
    /// Retry server errors until `until` too, not just a few times: for removals and launches, where
    /// giving up means a leak or a lost cell.
    pub persistent: bool,
}

impl<'a> Retry<'a> {
    /// Retries `not_found` codes and server errors until `until`.
    pub fn until(until: Instant, not_found: &'a [&'a str]) -> Self {
        Retry { not_found, until: Some(until), persistent: true }
    }

    /// Retries `not_found` codes until `until`, server errors a few times.
    pub fn not_found_until(until: Instant, not_found: &'a [&'a str]) -> Self {
        Retry { not_found, until: Some(until), persistent: false }
    }
}

/// An EC2 API error, as a lowercase fragment: "RunInstances failed: InvalidAMIID.NotFound: ...".
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action} failed: {}", self.detail())]
pub struct ApiError {
    pub action: &'static str,
    pub code: Option<String>,
    pub message: String,
    /// Calls made, retries included.
    pub attempts: u32,
    /// Some attempt met a server error or lost connection: the call may or may not have taken effect.
    pub transient: bool,
    /// The call was never sent: the SDK found no credentials to sign it with.
    pub no_credentials: Option<NoCredentials>,
}

/// What the SDK's credential chain said when it had no credentials to sign a call with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoCredentials {
    /// Every source of the chain had none: the sources tried, by the SDK's names (`Environment`,
    /// `Profile`, `Ec2InstanceMetadata`...).
    NoneFound { tried: Vec<String> },
    /// A source failed (an expired SSO session, a failing `credential_process`): why, as a fragment.
    SourceFailed(String),
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

    /// A request the SDK would not build (a required member missing): it was never sent.
    pub fn unsent(action: &'static str, message: String) -> ApiError {
        ApiError { action, code: None, message, attempts: 0, transient: false, no_credentials: None }
    }
}

/// Why no client could be made, as a lowercase fragment.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("no AWS region: set provider.ec2.region, AWS_REGION or a profile's region")]
    NoRegion,
}

/// A token bucket: `burst` calls at once, refilled at `per_second`.
pub struct TokenBucket {
    rate: RateSpec,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: RateSpec) -> Self {
        Self::starting_with(rate, f64::from(rate.burst))
    }

    /// A bucket holding `tokens` to start with.
    pub fn starting_with(rate: RateSpec, tokens: f64) -> Self {
        TokenBucket { rate, state: Mutex::new((tokens.min(f64::from(rate.burst)), Instant::now())) }
    }

    /// Waits for a token, and says how long that took. Waiters are served in turn (tokio's Mutex
    /// is fair).
    pub async fn acquire(&self) -> Duration {
        let started = Instant::now();
        let mut state = self.state.lock().await;
        loop {
            let now = Instant::now();
            let (tokens, last) = *state;
            let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate.per_second)
                .min(f64::from(self.rate.burst));
            if tokens >= 1.0 {
                *state = (tokens - 1.0, now);
                return now.duration_since(started);
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

/// The SDK's configuration for one region, and the region's name: the credential chain and profiles,
/// the region from `region_override`, the spec or the environment, `AWS_ENDPOINT_URL(_EC2/_STS)`.
/// Every client made from it shares its credentials once resolved. Retries are amiprobe's, not the
/// SDK's.
pub async fn sdk_config(
    spec: &Ec2Spec,
    region_override: Option<&str>,
) -> Result<(aws_config::SdkConfig, String), ConnectError> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region_override.map(str::to_string).or_else(|| spec.region.clone()) {
        loader = loader.region(aws_config::Region::new(region));
    }
    if let Some(profile) = &spec.profile {
        loader = loader.profile_name(profile);
    }
    // No call may hang a cell or its cleanup: each attempt has a deadline of its own (retried
    // like any other failure to get an answer).
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build();
    // Every attempt is amiprobe's own (`call_retrying`), so that each one takes a token from the
    // buckets: the SDK's hidden retries would spend the account's budget behind their back.
    let config = loader.timeout_config(timeouts).retry_config(aws_config::retry::RetryConfig::disabled()).load().await;
    let region = config.region().map(|r| r.to_string()).ok_or(ConnectError::NoRegion)?;
    Ok((config, region))
}

pub struct Api {
    pub client: aws_sdk_ec2::Client,
    pub buckets: Buckets,
    pub region: String,
}

impl Api {
    /// Configuration the AWS way ([`sdk_config`]) and a client of EC2 made from it.
    pub async fn connect(spec: &Ec2Spec, region_override: Option<&str>) -> Result<Api, ConnectError> {
        let (config, region) = sdk_config(spec, region_override).await?;
        Ok(Api::with_client(aws_sdk_ec2::Client::new(&config), &region, &spec.rate_limits))
    }

    /// An `Api` around a client configured elsewhere (a test's, pointed at moto), with its own buckets:
    /// `share` of each limit, starting half full, as EC2's own would be after other tools' calls.
    pub fn with_client(client: aws_sdk_ec2::Client, region: &str, rates: &RateLimitsSpec) -> Api {
        let bucket = |rate: RateSpec| {
            let paced = rates.paced(rate);
            TokenBucket::starting_with(paced, (f64::from(paced.burst) / 2.0).ceil())
        };
        Api {
            client,
            buckets: Buckets {
                describe: bucket(rates.describe),
                run_instances: bucket(rates.run_instances),
                terminate: bucket(rates.terminate_instances),
                mutating: bucket(rates.mutating),
            },
            region: region.to_string(),
        }
    }

    /// Makes one API call through its bucket, backing off with full jitter while EC2 throttles.
    /// Server errors are retried a few times: every call amiprobe makes is idempotent (creates carry
    /// a client token or a unique name), so a retry never creates a second thing.
    pub async fn call<T, E, F, Fut>(&self, bucket: &TokenBucket, action: &'static str, op: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.call_retrying(bucket, action, Retry::default(), op).await.map(|(v, _)| v)
    }

    /// [`Api::call`] with a retry policy; also returns how many attempts it took.
    pub async fn call_retrying<T, E, F, Fut>(
        &self,
        bucket: &TokenBucket,
        action: &'static str,
        retry: Retry<'_>,
        op: F,
    ) -> Result<(T, u32), ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.call_timed(bucket, action, retry, op).await.map(|(v, attempts, _)| (v, attempts))
    }

    /// [`Api::call_retrying`], also returning how long the call waited for tokens in all (time
    /// queued behind the rate limit, not time EC2 took).
    pub async fn call_timed<T, E, F, Fut>(
        &self,
        bucket: &TokenBucket,
        action: &'static str,
        retry: Retry<'_>,
        mut op: F,
    ) -> Result<(T, u32, Duration), ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (mut throttles, mut others, mut attempts) = (0u32, 0u32, 0u32);
        let mut queued = Duration::ZERO;
        // Once any attempt may have taken effect, the call may have; a later clear "no" does not undo it.
        let mut maybe_took_effect = false;
        loop {
            // Every attempt, retries included, takes a token: a retry is a call EC2 counts.
            queued += bucket.acquire().await;
            attempts += 1;
            // Boxed: an SDK call's future is tens of kilobytes, and inline it would size every future
            // that waits for a token (hundreds of queued launches) as if it were already sending.
            let e = match Box::pin(op()).await {
                Ok(v) => return Ok((v, attempts, queued)),
                Err(e) => e,
            };
            let no_credentials = no_credentials(&e);
            // Credentials the SDK can't find will not turn up a moment later.
            let transient = no_credentials.is_none() && is_transient(&e);
            maybe_took_effect |= transient;
            let before_deadline = retry.until.is_some_and(|t| Instant::now() < t);
            let throttled = e.code().is_some_and(is_throttling);
            let not_found = e.code().is_some_and(|c| retry.not_found.contains(&c));
            let again = if throttled {
                throttles += 1;
                throttles <= MAX_THROTTLE_RETRIES || before_deadline
            } else if not_found {
                others += 1;
                before_deadline
            } else if transient {
                others += 1;
                (retry.persistent && before_deadline) || (!retry.persistent && others <= MAX_SERVER_RETRIES)
            } else {
                false
            };
            if again {
                let exponent = (throttles + others).min(7);
                let cap = Duration::from_millis(100 * (1 << exponent)).min(Duration::from_secs(10));
                let mut pause = cap.mul_f64(fastrand::f64());
                if let Some(until) = retry.until {
                    pause = pause.min(until.saturating_duration_since(Instant::now()));
                }
                sleep(pause).await;
                continue;
            }
            let (code, message) = error_text(&e);
            return Err(ApiError { action, code, message, attempts, transient: maybe_took_effect, no_credentials });
        }
    }
}

/// Whether an error code means "slow down".
pub fn is_throttling(code: &str) -> bool {
    THROTTLED.contains(&code)
}

/// An SDK error as a person reads it: the service's code and message when it answered, else no code
/// and the error's causes on one line. Never the SDK's `Debug` form, which repeats the whole
/// response.
fn error_text<E>(e: &SdkError<E>) -> (Option<String>, String)
where
    E: ProvideErrorMetadata + Error + 'static,
{
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => (Some(code.to_string()), one_line(message)),
        (code, _) => (code.map(str::to_string), causes(e)),
    }
}

/// `error` and its causes, joined with ": " on one line.
fn causes(error: &(dyn Error + 'static)) -> String {
    joined(error, |_| true)
}

/// The texts of `error` and its causes that `keep` keeps, joined with ": " on one line.
fn joined(error: &(dyn Error + 'static), keep: fn(&(dyn Error + 'static)) -> bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = one_line(&e.to_string());
        // Some errors end their own text with their cause's: once is enough.
        if keep(e) && !parts.last().is_some_and(|last| last.ends_with(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Text on one line: the SDK's credential chain lists what it tried a line each.
fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ")
}

/// What the credential chain said, when `error` is the SDK finding no credentials to sign with.
/// `None` too when a source of credentials timed out or could not be reached (an STS or SSO
/// endpoint's hiccup while refreshing role credentials): that is worth retrying like any other call,
/// and must never end a cleanup early.
fn no_credentials(error: &(dyn Error + 'static)) -> Option<NoCredentials> {
    let mut source = Some(error);
    while let Some(e) = source {
        if let Some(failed) = e.downcast_ref::<CredentialsError>() {
            if matches!(failed, CredentialsError::ProviderTimedOut(_)) || unreachable(failed) {
                return None;
            }
            let chain = failed.source().and_then(|s| s.downcast_ref::<ProviderChainError<CredentialsError>>());
            return Some(match (failed, chain) {
                (_, Some(chain)) => {
                    NoCredentials::NoneFound { tried: chain.attempts().iter().map(|a| a.name().to_string()).collect() }
                }
                (CredentialsError::CredentialsNotLoaded(_), None) => NoCredentials::NoneFound { tried: Vec::new() },
                (_, None) => NoCredentials::SourceFailed(source_failure(failed)),
            });
        }
        source = e.source();
    }
    None
}

/// Whether a source of credentials failed for want of a connection (a network I/O error under it;
/// the SDK words other failures, an expired token among them, as errors of other kinds).
fn unreachable(failed: &CredentialsError) -> bool {
    use std::io::ErrorKind::*;
    let mut source = failed.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let kind = io.kind();
            if matches!(kind, ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | TimedOut)
                || matches!(kind, HostUnreachable | NetworkUnreachable | AddrNotAvailable | BrokenPipe)
            {
                return true;
            }
        }
        source = e.source();
    }
    false
}

/// Why a source of credentials failed, without the SDK's wrappers around the cause ("an error
/// occurred while loading credentials: an error occurred while loading an access token: ...").
fn source_failure(failed: &CredentialsError) -> String {
    let why = joined(failed, |e| !(e.is::<CredentialsError>() || e.is::<TokenError>()));
    if why.is_empty() {
        failed.to_string()
    } else {
        why
    }
}

/// Server errors (HTTP 5xx) that are a definite answer, not a hiccup: nothing was created, and
/// asking again at once changes nothing (capacity has its own fallbacks).
const DEFINITE_SERVER_ERRORS: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientAddressCapacity",
];

/// A server error or a failure to get an answer at all: the same call may well work a moment later.
fn is_transient<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(ctx) => {
            ctx.raw().status().is_server_error() && !e.code().is_some_and(|c| DEFINITE_SERVER_ERRORS.contains(&c))
        }
        _ => false,
    }
}

/// Codes under which EC2 does not yet know an instance or key pair amiprobe has just created.
pub const INSTANCE_NOT_FOUND: &[&str] = &["InvalidInstanceID.NotFound"];
pub const KEY_PAIR_NOT_FOUND: &[&str] = &["InvalidKeyPair.NotFound"];

/// The two removals every cleanup path makes, each retried until `until`: a removal that fails is a
/// leak, so it is worth minutes, not one more try.
impl Api {
    pub async fn terminate(&self, ids: &[String], until: Instant) -> Result<u32, ApiError> {
        self.terminate_states(ids, until).await.map(|(attempts, _)| attempts)
    }

    /// [`Api::terminate`], also returning each instance's state as the answer gives it (usually
    /// `shutting-down`: no describe needed to know billing stopped).
    pub async fn terminate_states(
        &self,
        ids: &[String],
        until: Instant,
    ) -> Result<(u32, Vec<(String, String)>), ApiError> {
        let ids = ids.to_vec();
        let retry = Retry::until(until, INSTANCE_NOT_FOUND);
        let (out, attempts) = self
            .call_retrying(&self.buckets.terminate, "TerminateInstances", retry, || {
                self.client.terminate_instances().set_instance_ids(Some(ids.clone())).send()
            })
            .await?;
        let states = out
            .terminating_instances()
            .iter()
            .filter_map(|change| {
                let state = change.current_state()?.name()?.as_str().to_string();
                Some((change.instance_id()?.to_string(), state))
            })
            .collect();
        Ok((attempts, states))
    }

    /// Deleting a key pair that does not exist succeeds on EC2, so "not found" here can only mean
    /// "just created, not visible yet": retried like a server error.
    pub async fn delete_key_pair(&self, name: &str, until: Instant) -> Result<u32, ApiError> {
        let retry = Retry::until(until, KEY_PAIR_NOT_FOUND);
        self.call_retrying(&self.buckets.mutating, "DeleteKeyPair", retry, || {
            self.client.delete_key_pair().key_name(name).send()
        })
        .await
        .map(|(_, attempts)| attempts)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::error::ConnectorError;
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesError;

    use super::*;

    /// A call that was never sent because signing it needed credentials: as the SDK reports it.
    fn unsigned(why: CredentialsError) -> SdkError<DescribeInstancesError> {
        SdkError::dispatch_failure(ConnectorError::other(Box::new(why), None))
    }

    /// A source that could not be reached, or timed out, is a hiccup like any other: retried, and
    /// never taken for having no credentials.
    #[test]
    fn an_unreachable_or_slow_credentials_source_is_not_a_lack_of_credentials() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = unsigned(CredentialsError::provider_error(refused));
        assert_eq!(no_credentials(&e), None);
        let e = unsigned(CredentialsError::provider_timed_out(Duration::from_secs(5)));
        assert_eq!(no_credentials(&e), None);
    }

    #[test]
    fn a_failing_credentials_source_is_told_by_its_cause_without_the_sdks_wrappers() {
        let expired = std::io::Error::other("the SSO token has expired and cannot be refreshed");
        let e = unsigned(CredentialsError::provider_error(TokenError::provider_error(expired)));
        assert_eq!(
            no_credentials(&e),
            Some(NoCredentials::SourceFailed("the SSO token has expired and cannot be refreshed".into()))
        );
        let (code, message) = error_text(&e);
        assert_eq!(code, None);
        // The whole chain, one cause after the other, and nothing of the SDK's `Debug` form.
        assert_eq!(
            message,
            "dispatch failure: other: an error occurred while loading credentials: an error occurred while loading \
             an access token: the SSO token has expired and cannot be refreshed"
        );
    }

    #[test]
    fn credentials_not_found_are_told_apart_from_a_lost_connection() {
        let e = unsigned(CredentialsError::not_loaded("no credentials\n  in the environment"));
        assert_eq!(no_credentials(&e), Some(NoCredentials::NoneFound { tried: Vec::new() }));
        assert!(error_text(&e)
            .1
            .ends_with("the credential provider was not enabled: no credentials in the environment"));
        let lost: SdkError<DescribeInstancesError> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(std::io::Error::other("connection reset"))));
        assert_eq!(no_credentials(&lost), None);
        assert_eq!(error_text(&lost), (None, "dispatch failure: io error: connection reset".to_string()));
    }

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
