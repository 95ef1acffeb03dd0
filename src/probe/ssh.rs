//! SSH probes: a command run on the machine, its exit status and output checked like an HTTP
//! answer.
//!
//! The machine is only logged into once its host key is known good: by default the key must be one
//! the machine announced on its console ([`super::host_key`]); a key that doesn't match ends the
//! probe at once rather than after its deadline, since nothing will change that. Probes of a cell
//! that log in the same way (user, port, key, jump host) share one connection ([`SshContext`]), as a
//! person would run several commands in one session.
//!
//! With a jump host, the jump host's own key is checked against a known_hosts file, and each
//! failure says which hop it was.
//!
//! One attempt, here: the key to log in with, a connection from the cell's pool (`pool`, opened by
//! `connect` with the host key checks of `verify`), the command run (`exec`), its output recorded
//! and checked (`expect`).

mod connect;
mod exec;
mod expect;
mod jump;
mod pool;
mod verify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use russh::keys::PrivateKey;
use serde_json_path::JsonPath;

use super::{Endpoint, TargetPolicy};
use crate::spec::HostKeyPolicy;
use exec::Output;

pub use jump::{Jump, JumpError};
pub use pool::SshContext;

/// The report keeps this much of each output stream.
const EXCERPT: usize = 4096;

#[derive(Debug, Clone)]
pub struct SshCheck {
    pub run: Run,
    pub user: String,
    pub port: u16,
    /// `None`: the run's own key.
    pub key: Option<Arc<PrivateKey>>,
    pub host_key: HostKeyPolicy,
    pub jump: Option<Jump>,
    pub timeout: Duration,
    pub expect: SshExpectations,
}

#[derive(Debug, Clone)]
pub enum Run {
    Command(String),
    /// A script's text, fed to `sh -s`; `name` is the file as the spec gave it.
    Script {
        name: String,
        text: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct SshExpectations {
    pub exit_status: u32,
    pub stdout_contains: Option<String>,
    pub stdout_regex: Option<Regex>,
    pub stderr_contains: Option<String>,
    pub stderr_regex: Option<Regex>,
    pub json: Vec<(String, JsonPath, serde_json::Value)>,
}

/// What was run and what came back, for the report; secrets masked.
#[derive(Debug, Clone, PartialEq)]
pub struct SshExchange {
    /// `user@host:port`, with ` via user@jump:port` when through a jump host.
    pub target: String,
    pub command: String,
    /// The host key the machine presented: `SHA256:... (ssh-ed25519)`.
    pub host_key: Option<String>,
    pub exit_status: Option<u32>,
    /// Set when the command was killed by a signal instead.
    pub exit_signal: Option<String>,
    pub stdout: String,
    pub stderr: String,
    /// Either stream was longer than its excerpt.
    pub truncated: bool,
}

/// A failed attempt: what went wrong, whether nothing answered at all (see
/// [`super::Attempt::silent`]), and whether trying again is pointless (a host key that doesn't
/// match).
pub struct Failure {
    pub message: String,
    pub exchange: Option<Box<SshExchange>>,
    pub silent: bool,
    pub settled: bool,
    /// The platform refused what the probe asked of it: the cell is in error, not failed.
    pub platform: bool,
}

impl Failure {
    pub(super) fn new(message: String) -> Failure {
        Failure { message, exchange: None, silent: false, settled: false, platform: false }
    }

    /// A failure once the command was sent: what was run goes with it.
    fn with(exchange: SshExchange, message: String) -> Failure {
        Failure { exchange: Some(Box::new(exchange)), ..Failure::new(message) }
    }
}

/// One run of the probe's command; `limit`, when given, bounds the wait for the machine's
/// first sign (an attempt that overlaps others while the machine is silent). `logged_in` is set once
/// the attempt has a logged-in connection, before its command runs: the probe's other attempts
/// then hold back, so that a command is not started twice at once.
pub async fn attempt(
    check: &SshCheck,
    ctx: &SshContext,
    endpoint: &Endpoint,
    policy: &TargetPolicy,
    limit: Option<Duration>,
    logged_in: &AtomicBool,
) -> Result<(String, SshExchange), Failure> {
    let mine = AtomicBool::new(false);
    let outcome =
        tokio::time::timeout(check.timeout, run(check, ctx, endpoint, policy, limit, [&mine, logged_in])).await;
    let mut outcome = outcome.unwrap_or_else(|_| {
        let target = format!("{}@{}:{}", check.user, endpoint.host, endpoint.port);
        let message = format!("{target}: no answer within {}", humantime::format_duration(check.timeout));
        // Silent unless this attempt got as far as logging in (a jump host's hops are not bounded
        // by the first-sign limit, so a silent machine can end here).
        Err(Failure { silent: !mine.load(Ordering::SeqCst), ..Failure::new(message) })
    });
    if let Err(failure) = &mut outcome {
        failure.message = ctx.mask(&failure.message);
    }
    outcome
}

async fn run(
    check: &SshCheck,
    ctx: &SshContext,
    endpoint: &Endpoint,
    policy: &TargetPolicy,
    limit: Option<Duration>,
    logged_in: [&AtomicBool; 2],
) -> Result<(String, SshExchange), Failure> {
    let key = check.key.clone().or_else(|| ctx.run_key.clone()).ok_or_else(|| {
        Failure::new(
            "no key to log in with: the run's key is not usable here (`launch.key_pair`); give `ssh.key_file`".into(),
        )
    })?;
    let target = target(check, endpoint);
    let connection = pool::connection(check, ctx, &key, endpoint, policy, limit, &target).await?;
    logged_in.iter().for_each(|flag| flag.store(true, Ordering::SeqCst));
    let mut exchange = SshExchange {
        target: target.clone(),
        command: ctx.mask(&command_shown(&check.run)),
        host_key: connection.host_key.clone(),
        exit_status: None,
        exit_signal: None,
        stdout: String::new(),
        stderr: String::new(),
        truncated: false,
    };
    let output = match exec::execute(&connection.handle, &check.run, check.timeout.mul_f32(0.9)).await {
        Ok(output) => output,
        Err(e) => {
            // A dead connection (the machine rebooted, sshd restarted) is made again next time.
            ctx.forget(check, endpoint, &key, &connection);
            return Err(Failure::with(exchange, format!("{target}: {e}")));
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    record(&mut exchange, &output, &stdout, &stderr, ctx);
    if let Some(why) = refused_user(check, &target, &stdout, &stderr) {
        return Err(Failure { settled: true, ..Failure::with(exchange, why) });
    }
    match expect::check_expectations(&check.expect, &output, &stdout, &stderr) {
        Ok(summary) => Ok((summary, exchange)),
        Err(why) => Err(Failure::with(exchange, why.to_string())),
    }
}

/// What the machine's agent ran (`super::agent`), recorded and checked exactly as an SSH command's
/// output: the same excerpts, masking and expectations.
pub(super) fn judge_output(
    expect: &SshExpectations,
    mut exchange: SshExchange,
    output: crate::provider::AgentOutput,
    ctx: &SshContext,
) -> Result<(String, SshExchange), Failure> {
    let output = Output {
        stdout: output.stdout,
        stderr: output.stderr,
        exit_status: output.exit_status,
        exit_signal: output.exit_signal,
        truncated: output.truncated,
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    record(&mut exchange, &output, &stdout, &stderr, ctx);
    match expect::check_expectations(expect, &output, &stdout, &stderr) {
        Ok(summary) => Ok((summary, exchange)),
        Err(why) => Err(Failure::with(exchange, why.to_string())),
    }
}

/// `user@host:port`, with ` via user@jump:port` through a jump host.
fn target(check: &SshCheck, endpoint: &Endpoint) -> String {
    match &check.jump {
        None => format!("{}@{}:{}", check.user, endpoint.host, endpoint.port),
        Some(j) => format!("{}@{}:{} via {}@{}:{}", check.user, endpoint.host, endpoint.port, j.user, j.host, j.port),
    }
}

/// What was run, as the report shows it.
pub(super) fn command_shown(run: &Run) -> String {
    match run {
        Run::Command(command) => command.clone(),
        Run::Script { name, .. } => format!("sh -s < {name}"),
    }
}

/// How the command ended and excerpts of what it wrote, into the exchange.
fn record(exchange: &mut SshExchange, output: &Output, stdout: &str, stderr: &str, ctx: &SshContext) {
    exchange.exit_status = output.exit_status;
    exchange.exit_signal = output.exit_signal.clone();
    exchange.truncated = output.truncated || stdout.chars().count() > EXCERPT || stderr.chars().count() > EXCERPT;
    // Cleaned like a console log: lines kept, colour codes and other control characters gone.
    // Masked before it is cut: a secret across the cut would leave its first characters.
    let excerpt = |text: &str| {
        let masked = ctx.mask(&crate::text::clean(text.as_bytes()));
        masked.chars().take(EXCERPT).collect::<String>()
    };
    exchange.stdout = excerpt(stdout);
    exchange.stderr = excerpt(stderr);
}

/// cloud-init's `disable_root`: root's key logs in, to be told which user to be, and exit 142.
/// Trying again as the same user can't help.
fn refused_user(check: &SshCheck, target: &str, stdout: &str, stderr: &str) -> Option<String> {
    let line = [stdout, stderr].into_iter().flat_map(|t| t.lines()).find(|l| l.contains("Please login as the user"))?;
    Some(format!("{target}: the image refuses `{}`: {}", check.user, line.trim()))
}
