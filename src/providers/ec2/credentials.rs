//! The credentials check, before anything else a run, `plan --check` or `sweep` does: one STS
//! GetCallerIdentity per region, through the same configuration (so the same credentials) as the
//! region's EC2 client. It answers who the run acts as (the account id and the caller's ARN); when
//! the SDK has no credentials, one line says what it tried and what to do, written from what its
//! credential chain said and from the shared config files (the profile it used, whether that
//! profile exists and signs in through SSO). With `provider.ec2.assume_role` (`sweep --assume-role`)
//! the call is made as the role, so the answer names the role's session and account; a role that
//! can't be assumed, while the caller's own credentials load, is said on a line of its own.

use std::borrow::Cow;

use aws_runtime::env_config::file::EnvConfigFiles;
use aws_types::os_shim_internal::{Env, Fs};

use super::api::{self, Api, ApiError, ConnectError, NoCredentials, TokenBucket};
use super::role::Assumed;
use super::{Ec2Provider, RateSpec};
use crate::cell::Cell;
use crate::provider::{AccessError, Identity};

/// Why the credentials for a region can't be used, each on one line with what to do.
#[derive(Debug, thiserror::Error)]
pub enum Ec2AccessError {
    #[error(transparent)]
    NoRegion(#[from] ConnectError),
    /// Every source of the SDK's chain had none.
    #[error("no AWS credentials for {region}: {tried}; {todo}")]
    NoneFound { region: String, tried: String, todo: String },
    /// The profile asked for (`provider.ec2.profile`, `--profile`, AWS_PROFILE) is in no config file.
    #[error(
        "no AWS credentials for {region}: profile `{profile}` is not in {files} ({known}); set AWS_PROFILE \
         to a profile there, or create it: `aws configure sso --profile {profile}`"
    )]
    UnknownProfile { region: String, profile: String, files: String, known: String },
    /// The profile signs in through SSO, and its session has expired or never began.
    #[error(
        "no AWS credentials for {region}: the SSO session of profile `{profile}` can't be used ({why}); run \
         `aws sso login --profile {profile}`"
    )]
    SsoSession { region: String, profile: String, why: String },
    /// A source failed otherwise (a `credential_process`, a role to assume).
    #[error("no AWS credentials for {region}: profile `{profile}`: {why}")]
    SourceFailed { region: String, profile: String, why: String },
    /// The role to act as could not be assumed (the caller may not, a wrong external id, a role
    /// that is not there).
    #[error(
        "could not assume role {role} in {region}: {why}; the role's trust policy must let these credentials \
         assume it (with the external id it requires), or choose another role"
    )]
    Role { region: String, role: String, why: String },
    /// STS refused the credentials (expired keys, a deleted user).
    #[error("the AWS credentials for {region} were refused: {error}; renew them, or choose others (AWS_PROFILE)")]
    Refused { region: String, error: ApiError },
    /// STS could not be asked (no answer, server errors).
    #[error("could not check the AWS credentials for {region}: {error}")]
    Unanswered { region: String, error: ApiError },
}

impl From<Ec2AccessError> for AccessError {
    fn from(e: Ec2AccessError) -> Self {
        match e {
            Ec2AccessError::Unanswered { .. } => AccessError::Unanswered(Box::new(e)),
            _ => AccessError::Unusable(Box::new(e)),
        }
    }
}

impl Ec2Provider {
    /// The credentials checked in every region the cells use, side by side; the first region's
    /// answer (one set of credentials is one principal, whatever the region), or the first error
    /// in the plan's order.
    pub(super) async fn identities(&self, cells: &[Cell]) -> Result<Option<Identity>, AccessError> {
        let mut regions: Vec<Option<String>> = Vec::new();
        for region in cells.iter().map(|cell| self.region_of(cell)) {
            if !regions.contains(&region) {
                regions.push(region);
            }
        }
        let answers = futures::future::join_all(regions.iter().map(|region| async move {
            let regional = self.connect(region.as_deref()).await?;
            let role = regional.role.as_ref();
            let identity = identity(&regional.api, &regional.sts, self.spec.profile.as_deref(), role).await?;
            // The preflight tells another account's images from the run's own.
            let _ = regional.account.set(identity.account.clone());
            Ok::<_, Ec2AccessError>(identity)
        }))
        .await;
        let mut first = None;
        for answer in answers {
            first.get_or_insert(answer?);
        }
        Ok(first)
    }
}

/// Who the credentials of `api`'s region belong to: one GetCallerIdentity through `sts`, made from
/// the same configuration as `api`'s client. `profile`: the one the spec or `--profile` names; `role`:
/// the role the configuration assumes, if it does.
pub async fn identity(
    api: &Api,
    sts: &aws_sdk_sts::Client,
    profile: Option<&str>,
    role: Option<&Assumed>,
) -> Result<Identity, Ec2AccessError> {
    // STS's request limits are not EC2's: a bucket of its own, for its one call.
    let bucket = TokenBucket::new(RateSpec { burst: 1, per_second: 1.0 });
    let region = api.region.clone();
    let answer = api.call(&bucket, "GetCallerIdentity", || sts.get_caller_identity().send()).await;
    let out = match answer {
        Ok(out) => out,
        Err(error) => return Err(refusal(region, error, profile, role).await),
    };
    match out.account() {
        Some(account) => Ok(Identity { account: account.to_string(), principal: out.arn().map(str::to_string) }),
        None => Err(Ec2AccessError::Unanswered {
            region,
            error: ApiError {
                action: "GetCallerIdentity",
                code: None,
                message: "the answer names no account".to_string(),
                attempts: 1,
                transient: false,
                no_credentials: None,
            },
        }),
    }
}

/// Why GetCallerIdentity failed, for a person to act on.
async fn refusal(region: String, error: ApiError, profile: Option<&str>, role: Option<&Assumed>) -> Ec2AccessError {
    if let (Some(NoCredentials::SourceFailed(why)), Some(role)) = (&error.no_credentials, role) {
        // With the caller's own credentials at hand, what failed was assuming the role; without
        // them, the line for missing credentials says which and what to do.
        if role.caller_has_credentials().await {
            return Ec2AccessError::Role { region, role: role.arn.clone(), why: why.clone() };
        }
    }
    refusal_of_credentials(region, error, profile).await
}

/// Why GetCallerIdentity failed with the credentials the SDK found itself.
async fn refusal_of_credentials(region: String, error: ApiError, profile: Option<&str>) -> Ec2AccessError {
    match &error.no_credentials {
        Some(said) => {
            let profiles = Profiles::read(profile).await;
            missing(region, said, &profiles)
        }
        None if error.code.as_deref().is_some_and(|code| !api::is_throttling(code)) && !error.transient => {
            Ec2AccessError::Refused { region, error }
        }
        None => Ec2AccessError::Unanswered { region, error },
    }
}

/// What the shared config files say of the profile the SDK used.
#[derive(Debug, Clone, Default)]
struct Profiles {
    /// The profile the SDK used: the spec's or `--profile`, else AWS_PROFILE, else `default`.
    selected: String,
    exists: bool,
    /// It signs in through SSO (`sso_session` or `sso_start_url`).
    sso: bool,
    /// Every profile the files define.
    all: Vec<String>,
    /// The files, as a message names them.
    files: String,
}

impl Profiles {
    /// The profiles as the SDK reads them (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE
    /// honoured); files it can't read are taken as empty (the SDK's own error then says why).
    async fn read(profile: Option<&str>) -> Profiles {
        let files = |var: &str, default: &str| std::env::var(var).unwrap_or_else(|_| default.to_string());
        let files = format!(
            "{} or {}",
            files("AWS_CONFIG_FILE", "~/.aws/config"),
            files("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")
        );
        let chosen = profile.map(|p| Cow::Owned(p.to_string()));
        let set = aws_config::profile::load(&Fs::real(), &Env::real(), &EnvConfigFiles::default(), chosen).await;
        let Ok(set) = set else {
            return Profiles { selected: profile.unwrap_or("default").to_string(), files, ..Profiles::default() };
        };
        let selected = set.selected_profile().to_string();
        let found = set.get_profile(&selected);
        // In the files' order would be best; the SDK keeps them unordered, so alphabetical.
        let mut all: Vec<String> = set.profiles().map(str::to_string).collect();
        all.sort();
        Profiles {
            exists: found.is_some(),
            sso: found.is_some_and(|p| p.get("sso_session").is_some() || p.get("sso_start_url").is_some()),
            all,
            selected,
            files,
        }
    }
}

/// The one line for credentials the SDK could not find or load.
fn missing(region: String, said: &NoCredentials, profiles: &Profiles) -> Ec2AccessError {
    let profile = profiles.selected.clone();
    match said {
        NoCredentials::SourceFailed(why) if profiles.sso || why.contains("SSO") => {
            Ec2AccessError::SsoSession { region, profile, why: why.clone() }
        }
        NoCredentials::SourceFailed(why) => Ec2AccessError::SourceFailed { region, profile, why: why.clone() },
        NoCredentials::NoneFound { .. } if profile != "default" && !profiles.exists => {
            let known = match profiles.all.as_slice() {
                [] => "no profiles there".to_string(),
                all => format!("profiles there: {}", all.join(", ")),
            };
            Ec2AccessError::UnknownProfile { region, profile, files: profiles.files.clone(), known }
        }
        NoCredentials::NoneFound { tried } => {
            let tried: Vec<String> = tried.iter().map(|source| tried_phrase(source, profiles)).collect();
            let tried = if tried.is_empty() { "the SDK's chain found none".to_string() } else { tried.join(", ") };
            let todo = match profiles.all.as_slice() {
                all if profiles.exists || all.is_empty() => {
                    "set AWS_PROFILE or run `aws sso login --profile P`".to_string()
                }
                all => {
                    format!("set AWS_PROFILE to one of {} (`aws sso login --profile P` first for SSO)", all.join(", "))
                }
            };
            Ec2AccessError::NoneFound { region, tried, todo }
        }
    }
}

/// What a source of the SDK's chain (by its name there) had none of.
fn tried_phrase(source: &str, profiles: &Profiles) -> String {
    match source {
        "Environment" => "none in the environment (AWS_ACCESS_KEY_ID)".to_string(),
        "Profile" if profiles.exists => format!("none in profile `{}`", profiles.selected),
        "Profile" => format!("no profile `{}` in {}", profiles.selected, profiles.files),
        "WebIdentityToken" => "no web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)".to_string(),
        "EcsContainer" => "no container role".to_string(),
        "Ec2InstanceMetadata" => "no instance role".to_string(),
        other => format!("none from {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profiles(selected: &str, exists: bool, sso: bool, all: &[&str]) -> Profiles {
        Profiles {
            selected: selected.to_string(),
            exists,
            sso,
            all: all.iter().map(|p| p.to_string()).collect(),
            files: "~/.aws/config or ~/.aws/credentials".to_string(),
        }
    }

    fn chain() -> NoCredentials {
        let tried = ["Environment", "Profile", "WebIdentityToken", "EcsContainer", "Ec2InstanceMetadata"];
        NoCredentials::NoneFound { tried: tried.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn nothing_anywhere_names_each_source_tried_and_what_to_do() {
        let line = missing("eu-west-1".into(), &chain(), &profiles("default", false, false, &[])).to_string();
        assert_eq!(
            line,
            "no AWS credentials for eu-west-1: none in the environment (AWS_ACCESS_KEY_ID), no profile `default` in \
             ~/.aws/config or ~/.aws/credentials, no web identity token (AWS_WEB_IDENTITY_TOKEN_FILE), no container \
             role, no instance role; set AWS_PROFILE or run `aws sso login --profile P`"
        );
    }

    #[test]
    fn other_profiles_are_offered_when_the_default_is_missing() {
        let line = missing("eu-west-1".into(), &chain(), &profiles("default", false, false, &["dev", "prod"]));
        assert!(
            line.to_string()
                .ends_with("; set AWS_PROFILE to one of dev, prod (`aws sso login --profile P` first for SSO)"),
            "{line}"
        );
    }

    #[test]
    fn a_named_profile_the_files_lack_is_named_with_those_they_have() {
        let line = missing("us-east-1".into(), &chain(), &profiles("nope", false, false, &["dev"])).to_string();
        assert!(line.starts_with("no AWS credentials for us-east-1: profile `nope` is not in ~/.aws/config or ~/.aws/credentials (profiles there: dev);"), "{line}");
        assert!(line.contains("`aws configure sso --profile nope`"), "{line}");
    }

    #[test]
    fn a_failing_sso_source_says_to_log_in_with_that_profile() {
        let said = NoCredentials::SourceFailed("the SSO token has expired and cannot be refreshed".into());
        let line = missing("eu-west-1".into(), &said, &profiles("work", true, true, &["work"])).to_string();
        assert_eq!(
            line,
            "no AWS credentials for eu-west-1: the SSO session of profile `work` can't be used (the SSO token has \
             expired and cannot be refreshed); run `aws sso login --profile work`"
        );
        let other = NoCredentials::SourceFailed("credential_process exited 1".into());
        let line = missing("eu-west-1".into(), &other, &profiles("work", true, false, &["work"])).to_string();
        assert_eq!(line, "no AWS credentials for eu-west-1: profile `work`: credential_process exited 1");
    }

    #[test]
    fn only_an_unanswered_check_may_work_later() {
        let error = |code: Option<&str>, transient| ApiError {
            action: "GetCallerIdentity",
            code: code.map(str::to_string),
            message: "m".into(),
            attempts: 1,
            transient,
            no_credentials: None,
        };
        let unanswered = |e: Ec2AccessError| matches!(AccessError::from(e), AccessError::Unanswered(_));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let refusal = |code, transient| runtime.block_on(refusal("r".into(), error(code, transient), None, None));
        assert!(!unanswered(refusal(Some("ExpiredToken"), false)));
        assert!(unanswered(refusal(Some("InternalFailure"), true)));
        assert!(unanswered(refusal(Some("Throttling"), false)));
        assert!(unanswered(refusal(None, true)));
    }
}
