//! `provider.ec2.assume_role` (and `sweep --assume-role`): every call made as a role assumed through
//! STS, with the credentials found the usual way (environment, profile, SSO...) as the caller's. The
//! SDK's own `AssumeRoleProvider` asks for the role's credentials; the configuration's identity cache
//! asks again shortly before they expire, so a run and its cleanup may outlast any one session. The
//! AssumeRole call goes where the region's other calls go (its endpoint, an override included).

use std::time::Duration;

use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;

use super::AssumeRoleSpec;

/// STS's shortest session for AssumeRole.
pub const MIN_SESSION: Duration = Duration::from_secs(15 * 60);
/// STS's longest session for AssumeRole (the role's own maximum may be shorter).
pub const MAX_SESSION: Duration = Duration::from_secs(12 * 3600);

/// What STS would refuse of a role's ARN, a session name or an external id, as a fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleFieldError {
    #[error("`{0}` is not an IAM role's ARN: expected arn:aws:iam::ACCOUNT:role/NAME (ACCOUNT: 12 digits)")]
    Arn(String),
    #[error("a session name has 2 to 64 characters among letters, digits and +=,.@_- (`{0}` has not)")]
    SessionName(String),
    #[error("an external id has 2 to 1224 characters among letters, digits and +=,.@:/_- (`{0}` has not)")]
    ExternalId(String),
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`, as IAM writes a role's ARN.
pub fn check_arn(arn: &str) -> Result<(), RoleFieldError> {
    let bad = || RoleFieldError::Arn(arn.to_string());
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let name = resource.strip_prefix("role/").and_then(|path| path.rsplit('/').next()).unwrap_or("");
    let path_ok = resource.strip_prefix("role/").is_some_and(|p| p.chars().all(|c| c == '/' || session_char(c)));
    let ok = partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (1..=64).contains(&name.len())
        && path_ok;
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A RoleSessionName STS accepts: 2 to 64 of `[\w+=,.@-]`.
pub fn check_session_name(name: &str) -> Result<(), RoleFieldError> {
    if (2..=64).contains(&name.len()) && name.chars().all(session_char) {
        Ok(())
    } else {
        Err(RoleFieldError::SessionName(name.to_string()))
    }
}

/// An ExternalId STS accepts: 2 to 1224 of `[\w+=,.@:/-]`.
pub fn check_external_id(id: &str) -> Result<(), RoleFieldError> {
    if (2..=1224).contains(&id.len()) && id.chars().all(|c| c == ':' || c == '/' || session_char(c)) {
        Ok(())
    } else {
        Err(RoleFieldError::ExternalId(id.to_string()))
    }
}

/// A character of a session name, and of a role's name and path (IAM and STS allow the same set).
fn session_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
}

/// The default session name: `amiprobe-` and `what` (the spec's name, `sweep`), each character STS
/// would refuse made a `-`, cut at STS's 64.
pub fn default_session_name(what: &str) -> String {
    let name: String = format!("amiprobe-{what}").chars().map(|c| if session_char(c) { c } else { '-' }).collect();
    name.chars().take(64).collect()
}

/// The role a configuration acts as, and the caller's own credentials, for the credentials check
/// to tell a role that can't be assumed from a caller without credentials.
#[derive(Debug, Clone)]
pub struct Assumed {
    pub arn: String,
    caller: SharedCredentialsProvider,
}

impl Assumed {
    /// Whether the caller's own credentials can be had (then a failure was AssumeRole's).
    pub async fn caller_has_credentials(&self) -> bool {
        self.caller.provide_credentials().await.is_ok()
    }
}

/// `config` acting as `role`: its credentials become the caller's, used only to assume the role.
/// `default_session`: the session's name when the role names none. A configuration without
/// credentials is returned as it is (its calls then fail as they would have).
pub async fn assume(
    config: aws_config::SdkConfig,
    role: &AssumeRoleSpec,
    default_session: &str,
) -> (aws_config::SdkConfig, Option<Assumed>) {
    let Some(caller) = config.credentials_provider() else {
        return (config, None);
    };
    let session = role.session_name.clone().unwrap_or_else(|| default_session_name(default_session));
    let mut builder = AssumeRoleProvider::builder(&role.role_arn)
        .configure(&config)
        .session_name(session)
        .session_length(role.duration);
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id);
    }
    let provider = RoleCredentials { caller: caller.clone(), role: builder.build().await };
    let config = config.into_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build();
    (config, Some(Assumed { arn: role.role_arn.clone(), caller }))
}

/// The SDK's `AssumeRoleProvider`, the caller's credentials loaded first so that their absence is
/// told as it is without a role (the SDK's chain and what it tried), and STS's refusal told as
/// `AssumeRole failed: CODE: message` rather than in the SDK's `Debug` form. Every other failure
/// (no answer, a timeout) is left as it was: the calls that met it retry it like any other.
#[derive(Debug)]
struct RoleCredentials {
    caller: SharedCredentialsProvider,
    role: AssumeRoleProvider,
}

/// STS answered AssumeRole with an error.
#[derive(Debug, thiserror::Error)]
#[error("AssumeRole failed: {code}: {message}")]
struct Refused {
    code: String,
    message: String,
}

impl ProvideCredentials for RoleCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            // Loaded again by AssumeRole itself (the SDK caches none of the caller's): once a session.
            self.caller.provide_credentials().await?;
            self.role.provide_credentials().await.map_err(refused)
        })
    }
}

/// A service error under `failed`, as [`Refused`]; anything else unchanged.
fn refused(failed: CredentialsError) -> CredentialsError {
    let mut source = std::error::Error::source(&failed);
    while let Some(e) = source {
        if let Some(SdkError::ServiceError(context)) = e.downcast_ref::<SdkError<AssumeRoleError>>() {
            let code = context.err().code().unwrap_or("unknown").to_string();
            let message = context.err().message().unwrap_or("no message").to_string();
            return CredentialsError::provider_error(Refused { code, message });
        }
        source = e.source();
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_arn_is_an_iam_role_in_a_twelve_digit_account() {
        for good in [
            "arn:aws:iam::123456789012:role/amiprobe-test",
            "arn:aws:iam::123456789012:role/team/ci/amiprobe",
            "arn:aws-us-gov:iam::123456789012:role/r+=,.@_-",
        ] {
            assert_eq!(check_arn(good), Ok(()), "{good}");
        }
        for bad in [
            "amiprobe-test",
            "arn:aws:iam::123456789012:user/someone",
            "arn:aws:iam::12345:role/r",
            "arn:aws:sts::123456789012:assumed-role/r/s",
            "arn:aws:iam:eu-west-1:123456789012:role/r",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/has space",
        ] {
            assert!(matches!(check_arn(bad), Err(RoleFieldError::Arn(_))), "{bad}");
        }
    }

    #[test]
    fn session_names_and_external_ids_keep_to_what_sts_accepts() {
        assert_eq!(check_session_name("amiprobe-1733500000-ab12"), Ok(()));
        for bad in ["a", "has space", &"x".repeat(65), "slash/not"] {
            assert!(check_session_name(bad).is_err(), "{bad}");
        }
        assert_eq!(check_external_id("urn:team/ci:42"), Ok(()));
        assert!(check_external_id("x").is_err());
        assert!(check_external_id("a b").is_err());
    }

    #[test]
    fn the_default_session_name_is_made_acceptable() {
        assert_eq!(default_session_name("nightly windows/2022"), "amiprobe-nightly-windows-2022");
        let long = default_session_name(&"s".repeat(100));
        assert_eq!(long.len(), 64);
        assert_eq!(check_session_name(&long), Ok(()));
        assert_eq!(check_session_name(&default_session_name("é")), Ok(()));
    }
}
