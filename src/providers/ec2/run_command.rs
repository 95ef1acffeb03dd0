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
        let last = self.fleet.registry.registration(&self.instance_id).and_then(|r| r.last_ping);
        *lock(&self.since) = Some(last.unwrap_or_else(SystemTime::now));
    }

    fn document(&self) -> &'static str {
        document(self.os)
    }

    /// SendCommand through the dispatcher, with whatever other cells send at the same moment.
    async fn send(&self, command: &AgentCommand, limit: Duration) -> Result<Sent, AgentError> {
        let (reply, answer) = oneshot::channel();
        self.fleet.dispatcher.send(Request {
            instance: self.instance_id.clone(),
            document: self.document(),
            text: command.text().to_string(),
            execution_timeout: limit.as_secs().max(1),
            reply,
        });
        match answer.await {
            Ok(Ok(sent)) => Ok(sent),
            // Online a moment ago, not now: the agent restarted or lost its connection.
            Ok(Err(e)) if e.is(INVALID_INSTANCE) => {
                Err(AgentError::NotYet(format!("SSM does not take commands for {} now", self.instance_id)))
            }
            // SSM's refusal (a permission, throttling past the retries) is the platform's doing.
            Ok(Err(e)) => Err(AgentError::Refused(e.to_string())),
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
            .map_err(|e| AgentError::Refused(e.to_string()))?;
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
            Err((_, Some(e))) if !e.transient => return Err(AgentError::Refused(e.to_string())),
            Err((seen, error)) => return Err(AgentError::NotYet(not_online(&self.instance_id, seen, error))),
        }
        let mut sent = self.send(command, limit).await?;
        // SSM ends the command itself at `limit`; its answer may take a delivery's time longer.
        let ended =
            tokio::time::timeout(limit + DELIVERY_TIMEOUT, sent.statuses.wait_for(|s| s.ended(&self.instance_id)));
        match ended.await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(AgentError::Failed("SSM stopped telling the command's status".into())),
            Err(_) => return Err(AgentError::Timeout(limit)),
        }
        self.invocation(&sent.command_id).await?.outcome(limit)
    }
}
