//! SSM Run Command as the machine's [`Agent`]: `agent:` probes' commands run inside the instance by
//! its SSM agent, with no port open, no public address and no route from here.
//!
//! Per region, one [`RunCommand`] serves every cell: a shared DescribeInstanceInformation poll for
//! the agents not yet online (`registry.rs`), SendCommand gathered across cells and one
//! ListCommandInvocations poll per command (`dispatch.rs`). Each cell then makes a single
//! GetCommandInvocation for its output (`invocation.rs`). Every call takes a token from the
//! region's SSM bucket and goes through api.rs's backoff.

mod dispatch;
mod invocation;
mod registry;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::api::{Api, ApiError, Retry};
use super::ssm::Ssm;
use crate::provider::{lock, Agent, AgentCommand, AgentError, AgentOutput};
use crate::spec::Os;
use dispatch::{Dispatcher, Request, Sent, DELIVERY_TIMEOUT, INVALID_INSTANCE};
use invocation::Invocation;
use registry::{Registration, Registry};

/// How long one attempt waits for the agent to come online before it lets the probe try again.
const REGISTRATION_WAIT: Duration = Duration::from_secs(10);
/// How long GetCommandInvocation may not know an invocation the listing showed ended.
const INVOCATION_PATIENCE: Duration = Duration::from_secs(10);

/// The run's Run Command in one region.
pub(super) struct RunCommand {
    api: Arc<Api>,
    ssm: Arc<Ssm>,
    registry: Arc<Registry>,
    dispatcher: Dispatcher,
}

impl RunCommand {
    /// Starts the region's shared polls; they idle while no cell waits.
    pub fn start(api: Arc<Api>, ssm: Arc<Ssm>, run_id: &str, poll: Duration) -> RunCommand {
        let registry = Registry::start(api.clone(), ssm.clone(), poll);
        let dispatcher = Dispatcher::start(api.clone(), ssm.clone(), run_id);
        RunCommand { api, ssm, registry, dispatcher }
    }
}

/// One instance's SSM agent.
pub(super) struct SsmAgent {
    fleet: Arc<RunCommand>,
    instance_id: String,
    os: Os,
    /// The launch's instance profile: without one the agent can't register (the usual cause).
    profile: Option<String>,
    /// After a reboot: the agent counts as back only once heard from after this.
    since: Mutex<Option<SystemTime>>,
}

impl SsmAgent {
    pub fn new(fleet: Arc<RunCommand>, instance_id: &str, os: Os, profile: Option<String>) -> SsmAgent {
        SsmAgent { fleet, instance_id: instance_id.to_string(), os, profile, since: Mutex::new(None) }
    }

    /// The instance was rebooted: its agent must register again. SSM may still say `Online` for a
    /// while (it marks an agent lost only after missed pings), so a ping newer than the last one
    /// seen before the reboot is what counts: SSM's own clock against SSM's own clock.
    pub fn rebooted(&self) {
        // The registration kept from the first round may be minutes old, and the agent's health
        // pings have moved on since: the reboot's own time too, whichever is later.
        let last = self.fleet.registry.registration(&self.instance_id).and_then(|r| r.last_ping);
        *lock(&self.since) = Some(last.map_or_else(SystemTime::now, |last| last.max(SystemTime::now())));
    }

    /// SendCommand through the dispatcher, with whatever other cells send at the same moment.
    async fn send(&self, command: &AgentCommand, limit: Duration) -> Result<Sent, AgentError> {
        let (reply, answer) = oneshot::channel();
        self.fleet.dispatcher.send(Request {
            instance: self.instance_id.clone(),
            document: document(self.os),
            text: command.text().to_string(),
            // Whole seconds, rounded up; SSM takes 1 to 172,800 (48 h).
            execution_timeout: limit.as_secs_f64().ceil().clamp(1.0, 172_800.0) as u64,
            reply,
        });
        match answer.await {
            Ok(Ok(sent)) => Ok(sent),
            // Online a moment ago, not now: the agent restarted or lost its connection.
            Ok(Err(e)) if e.is(INVALID_INSTANCE) => {
                Err(AgentError::NotYet(format!("SSM does not take commands for {} now", self.instance_id)))
            }
            Ok(Err(e)) if e.is("UnsupportedPlatformType") => Err(AgentError::Failed(format!(
                "{e} ({} does not run on this instance's platform: is `os` right?)",
                document(self.os)
            ))),
            Ok(Err(e)) if for_good(&e) => Err(AgentError::Refused(e.to_string())),
            Ok(Err(e)) => Err(AgentError::NotYet(e.to_string())),
            Err(_) => Err(AgentError::Failed("the run's SSM dispatcher stopped".into())),
        }
    }

    /// GetCommandInvocation, once the invocation ended.
    async fn invocation(&self, command_id: &str) -> Result<Invocation, AgentError> {
        let (api, ssm) = (&self.fleet.api, &self.fleet.ssm);
        let retry = Retry::not_found_until(Instant::now() + INVOCATION_PATIENCE, &["InvocationDoesNotExist"]);
        let (out, _) = api
            .call_retrying(&ssm.bucket, "GetCommandInvocation", retry, || {
                ssm.client.get_command_invocation().command_id(command_id).instance_id(&self.instance_id).send()
            })
            .await
            .map_err(|e| {
                if for_good(&e) {
                    AgentError::Refused(e.to_string())
                } else {
                    AgentError::NotYet(e.to_string())
                }
            })?;
        Ok(Invocation {
            status: out.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
            details: out.status_details().unwrap_or_default().to_string(),
            response_code: out.response_code(),
            stdout: out.standard_output_content().unwrap_or_default().to_string(),
            stderr: out.standard_error_content().unwrap_or_default().to_string(),
        })
    }
}

/// The document commands run with on `os`: AWS's own, which takes the shell text as `commands`.
pub(super) fn document(os: Os) -> &'static str {
    match os {
        Os::Windows => "AWS-RunPowerShellScript",
        Os::Linux => "AWS-RunShellScript",
    }
}

/// SSM's answers that refuse the caller itself (its permissions, its credentials) or the request as
/// amiprobe wrote it: no later attempt can pass, and the image is not to blame.
const FOR_GOOD: [&str; 8] = [
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "IncompleteSignature",
    "ValidationException",
    "InvalidParameters",
];

/// Whether `e` is one of [`FOR_GOOD`] (or there were no credentials to sign with). Throttling past
/// the retries and server errors may pass later: they are not.
fn for_good(e: &ApiError) -> bool {
    e.no_credentials.is_some() || FOR_GOOD.iter().any(|code| e.is(code))
}

/// Why the agent is not online, for the attempt's message.
fn not_online(id: &str, seen: Option<Registration>, last_error: Option<ApiError>) -> String {
    let said = last_error.map(|e| format!("; last DescribeInstanceInformation: {e}")).unwrap_or_default();
    match seen {
        None => format!("the SSM agent of {id} has not registered{said}"),
        Some(r) if r.ping_status == "Online" => format!("the SSM agent of {id} has not registered again{said}"),
        Some(r) => format!("the SSM agent of {id} is {}{said}", r.ping_status),
    }
}

#[async_trait]
impl Agent for SsmAgent {
    fn channel(&self) -> &'static str {
        "SSM Run Command"
    }

    fn never_answered(&self) -> String {
        let profile = match &self.profile {
            Some(name) => format!("an instance profile whose role has AmazonSSMManagedInstanceCore (`{name}`'s?)"),
            None => "an instance profile whose role has AmazonSSMManagedInstanceCore: the launch sets no \
                     iam_instance_profile (and the account has no Default Host Management Configuration?)"
                .to_string(),
        };
        format!(
            "the SSM agent needs {profile}, outbound HTTPS to the ssm, ssmmessages and ec2messages endpoints \
             (or VPC endpoints for them in a private subnet), and the agent installed and running in the image"
        )
    }

    async fn run(&self, command: &AgentCommand, limit: Duration) -> Result<AgentOutput, AgentError> {
        let since = *lock(&self.since);
        let registry = &self.fleet.registry;
        match registry.wait_online(&self.instance_id, since, REGISTRATION_WAIT).await {
            Ok(()) => {}
            // Refused rather than failed on a server's hiccup: the platform's doing, for good.
            Err((_, Some(e))) if for_good(&e) => return Err(AgentError::Refused(e.to_string())),
            Err((seen, error)) => return Err(AgentError::NotYet(not_online(&self.instance_id, seen, error))),
        }
        let mut sent = self.send(command, limit).await?;
        // SSM ends the command itself at `limit`; its answer may take a delivery's time longer.
        let id = &self.instance_id;
        let ended = sent.statuses.wait_for(|s| s.ended(id) || s.refused().is_some());
        match tokio::time::timeout(limit + DELIVERY_TIMEOUT, ended).await {
            Ok(Ok(statuses)) if !statuses.ended(id) => {
                let why = statuses.refused().map(ToString::to_string).unwrap_or_default();
                return Err(AgentError::Refused(why));
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(AgentError::Failed("SSM stopped telling the command's status".into())),
            Err(_) => return Err(AgentError::Timeout(limit)),
        }
        self.invocation(&sent.command_id).await?.outcome(limit)
    }
}
