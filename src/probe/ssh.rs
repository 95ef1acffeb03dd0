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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regex::Regex;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use serde_json_path::JsonPath;
use tokio::sync::watch;

use super::host_key::ConsoleHostKeys;
use super::{Endpoint, TargetPolicy};
use crate::spec::HostKeyPolicy;

/// Output kept for the expectations; the report keeps an excerpt of it.
const MAX_OUTPUT: usize = 256 * 1024;
const EXCERPT: usize = 4096;
/// What secrets become wherever they are recorded.
pub const MASK: &str = "********";

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

#[derive(Debug, Clone)]
pub struct Jump {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub known_hosts: PathBuf,
}

impl Jump {
    /// `user@host` or `user@host:port` (a bracketed IPv6 address takes a port too).
    pub fn parse(text: &str, known_hosts: PathBuf) -> Result<Jump, String> {
        let (user, rest) = text.split_once('@').ok_or_else(|| format!("jump host `{text}` has no `user@`"))?;
        if user.is_empty() {
            return Err(format!("jump host `{text}` has an empty user"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && (!host.contains(':') || host.starts_with('[')) => {
                let number = port.parse::<u16>().ok().filter(|p| *p > 0);
                (host, number.ok_or_else(|| format!("jump host `{text}` has an invalid port `{port}`"))?)
            }
            _ => (rest, 22),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("jump host `{text}` has no host"));
        }
        Ok(Jump { user: user.to_string(), host: host.to_string(), port, known_hosts })
    }
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
}

impl Failure {
    fn new(message: String) -> Failure {
        Failure { message, exchange: None, silent: false, settled: false }
    }
}

/// A cell's SSH state: the run's key, the host keys its console announced (kept current by the
/// engine as it reads the console), the key accepted under `accept-new`, and open connections.
pub struct SshContext {
    pub run_key: Option<Arc<PrivateKey>>,
    pub console_keys: watch::Receiver<ConsoleHostKeys>,
    pub secrets: Arc<Vec<String>>,
    /// Under `accept-new`: the key first seen at each `host:port`.
    accepted: Arc<Mutex<HashMap<String, String>>>,
    /// Per way of logging in, its connection behind a lock of its own: held while connecting, so
    /// that the probes that share it wait for it, and no others.
    connections: Mutex<HashMap<String, Slot>>,
}

/// One way of logging in: its open connection, if any, behind the lock connecting holds.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

struct Connection {
    handle: Handle<MachineKey>,
    /// Kept open while the connection through it is used.
    _jump: Option<Handle<KnownHostsKey>>,
    host_key: Option<String>,
}

impl SshContext {
    pub fn new(
        run_key: Option<Arc<PrivateKey>>,
        console_keys: watch::Receiver<ConsoleHostKeys>,
        secrets: Arc<Vec<String>>,
    ) -> SshContext {
        SshContext { run_key, console_keys, secrets, accepted: Arc::default(), connections: Mutex::default() }
    }

    /// Drops every open connection: after a reboot they are dead, and the next attempts log in anew.
    pub fn forget_connections(&self) {
        self.connections.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The slot of one way of logging in.
    fn slot(&self, id: &str) -> Slot {
        self.connections.lock().unwrap_or_else(|e| e.into_inner()).entry(id.to_string()).or_default().clone()
    }

    fn mask(&self, text: &str) -> String {
        mask(text, &self.secrets)
    }
}

/// Every secret in `text` replaced by [`MASK`].
pub fn mask(text: &str, secrets: &[String]) -> String {
    // Longest first: a secret that contains another is masked whole.
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    sorted.into_iter().fold(text.to_string(), |text, secret| text.replace(secret.as_str(), MASK))
}

/// One run of the probe's command; `limit` bounds the wait for the machine's first sign.
pub async fn attempt(
    check: &SshCheck,
    ctx: &SshContext,
    endpoint: &Endpoint,
    policy: &TargetPolicy,
    limit: Option<Duration>,
) -> Result<(String, SshExchange), Failure> {
    let outcome = tokio::time::timeout(check.timeout, run(check, ctx, endpoint, policy, limit)).await;
    let mut outcome = outcome.unwrap_or_else(|_| {
        let target = format!("{}@{}:{}", check.user, endpoint.host, endpoint.port);
        Err(Failure::new(format!("{target}: no answer within {}", humantime::format_duration(check.timeout))))
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
) -> Result<(String, SshExchange), Failure> {
    let key = check.key.clone().or_else(|| ctx.run_key.clone()).ok_or_else(|| {
        Failure::new(
            "no key to log in with: the run's key is not usable here (`launch.key_pair`); give `ssh.key_file`".into(),
        )
    })?;
    let target = match &check.jump {
        None => format!("{}@{}:{}", check.user, endpoint.host, endpoint.port),
        Some(j) => format!("{}@{}:{} via {}@{}:{}", check.user, endpoint.host, endpoint.port, j.user, j.host, j.port),
    };
    let connection = connection(check, ctx, &key, endpoint, policy, limit, &target).await?;
    let command = match &check.run {
        Run::Command(command) => command.clone(),
        Run::Script { name, .. } => format!("sh -s < {name}"),
    };
    let mut exchange = SshExchange {
        target: target.clone(),
        command: ctx.mask(&command),
        host_key: connection.host_key.clone(),
        exit_status: None,
        exit_signal: None,
        stdout: String::new(),
        stderr: String::new(),
        truncated: false,
    };
    let output = match execute(&connection.handle, &check.run, check.timeout.mul_f32(0.9)).await {
        Ok(output) => output,
        Err(e) => {
            // A dead connection (the machine rebooted, sshd restarted) is made again next time.
            forget(ctx, check, endpoint, &key);
            return Err(Failure { exchange: Some(Box::new(exchange)), ..Failure::new(format!("{target}: {e}")) });
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    exchange.exit_status = output.exit_status;
    exchange.exit_signal = output.exit_signal.clone();
    exchange.truncated = output.truncated || stdout.chars().count() > EXCERPT || stderr.chars().count() > EXCERPT;
    // Cleaned like a console log: lines kept, colour codes and other control characters gone.
    // Masked before it is cut: a secret across the cut would leave its first characters.
    let excerpt = |text: &str| {
        let masked = ctx.mask(&crate::console::clean(text.as_bytes()));
        masked.chars().take(EXCERPT).collect::<String>()
    };
    exchange.stdout = excerpt(&stdout);
    exchange.stderr = excerpt(&stderr);
    // cloud-init's `disable_root`: root's key logs in, to be told which user to be, and exit 142.
    let refused =
        [&stdout, &stderr].into_iter().flat_map(|t| t.lines()).find(|l| l.contains("Please login as the user"));
    if let Some(line) = refused {
        let why = format!("{target}: the image refuses `{}`: {}", check.user, line.trim());
        return Err(Failure { exchange: Some(Box::new(exchange)), settled: true, ..Failure::new(why) });
    }
    match check_expectations(&check.expect, &output, &stdout, &stderr) {
        Ok(summary) => Ok((summary, exchange)),
        Err(why) => Err(Failure { exchange: Some(Box::new(exchange)), ..Failure::new(why) }),
    }
}

fn connection_key(check: &SshCheck, endpoint: &Endpoint, key: &PrivateKey) -> String {
    let jump = check
        .jump
        .as_ref()
        .map(|j| format!("{}@{}:{} known in {}", j.user, j.host, j.port, j.known_hosts.display()))
        .unwrap_or_default();
    let key = key.public_key().fingerprint(HashAlg::Sha256);
    // The host key policy too: a connection trusted under `accept-new` must never serve a probe
    // that wants the console's word for the key.
    format!("{}@{}:{} via {jump} key {key} trusting {:?}", check.user, endpoint.host, endpoint.port, check.host_key)
}

fn forget(ctx: &SshContext, check: &SshCheck, endpoint: &Endpoint, key: &PrivateKey) {
    ctx.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&connection_key(check, endpoint, key));
}

/// The cell's open connection for this way of logging in, or a new one.
async fn connection(
    check: &SshCheck,
    ctx: &SshContext,
    key: &Arc<PrivateKey>,
    endpoint: &Endpoint,
    policy: &TargetPolicy,
    limit: Option<Duration>,
    target: &str,
) -> Result<Arc<Connection>, Failure> {
    let id = connection_key(check, endpoint, key);
    let slot = ctx.slot(&id);
    // Held while connecting: the probes that log in the same way wait for this connection rather
    // than open their own; the others don't wait.
    let mut open = slot.lock().await;
    if let Some(known) = open.as_ref().filter(|c| !c.handle.is_closed()) {
        return Ok(known.clone());
    }
    let verifier = MachineKey {
        policy: check.host_key,
        console: ctx.console_keys.clone(),
        accepted: ctx.accepted.clone(),
        target: format!("{}:{}", endpoint.host, endpoint.port),
        seen: Arc::default(),
    };
    let seen = verifier.seen.clone();
    let config = Arc::new(client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        ..Default::default()
    });
    // Until the machine has answered once, wait only briefly for its banner (QEMU accepts forwarded
    // connections itself before the guest is up).
    let first_sign = limit.unwrap_or(check.timeout);
    let (handle, jump) = match &check.jump {
        None => {
            let addr = super::resolve(endpoint, policy).await.map_err(Failure::new)?;
            let stream = tcp(addr, first_sign)
                .await
                .map_err(|(message, silent)| Failure { silent, ..Failure::new(format!("{target}: {message}")) })?;
            let handle = handshake(client::connect_stream(config.clone(), stream, verifier), first_sign).await;
            (handle.map_err(|e| rejected(e, &seen, target))?, None)
        }
        Some(jump) => {
            let hop = format!("jump host {}@{}:{}", jump.user, jump.host, jump.port);
            let jump_endpoint = Endpoint { host: jump.host.clone(), port: jump.port };
            let addr = super::resolve(&jump_endpoint, policy).await.map_err(|e| Failure::new(format!("{hop}: {e}")))?;
            let stream = tcp(addr, check.timeout).await.map_err(|(m, _)| Failure::new(format!("{hop}: {m}")))?;
            let known = KnownHostsKey {
                host: jump.host.clone(),
                port: jump.port,
                file: jump.known_hosts.clone(),
                verdict: Arc::default(),
                changed: Arc::default(),
            };
            let (verdict, changed) = (known.verdict.clone(), known.changed.clone());
            let mut jump_handle =
                match handshake(client::connect_stream(config.clone(), stream, known), check.timeout).await {
                    Ok(h) => h,
                    Err(e) => {
                        let why = verdict.lock().ok().and_then(|v| v.clone()).unwrap_or(e);
                        let settled = changed.load(std::sync::atomic::Ordering::Relaxed);
                        return Err(Failure { settled, ..Failure::new(format!("{hop}: {why}")) });
                    }
                };
            authenticate(&mut jump_handle, &jump.user, key).await.map_err(|e| Failure::new(format!("{hop}: {e}")))?;
            // The tunnel's far end is held to the same policy as a direct connection: a jump host
            // is not a way around --allow-targets.
            match endpoint.host.parse::<std::net::IpAddr>() {
                Ok(ip) if !policy.allows(ip) => {
                    return Err(Failure::new(format!("{hop}: refused to tunnel to {ip}: not within --allow-targets")))
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(Failure::new(format!(
                        "{hop}: refused to tunnel to `{}`: give the machine's address, not a name",
                        endpoint.host
                    )))
                }
            }
            let channel = jump_handle
                .channel_open_direct_tcpip(endpoint.host.clone(), u32::from(endpoint.port), "127.0.0.1", 0)
                .await
                .map_err(|e| {
                    Failure::new(format!("{hop}: could not open a tunnel to {}:{}: {e}", endpoint.host, endpoint.port))
                })?;
            let handle =
                handshake(client::connect_stream(config.clone(), channel.into_stream(), verifier), first_sign).await;
            (handle.map_err(|e| rejected(e, &seen, target))?, Some(jump_handle))
        }
    };
    let mut handle = handle;
    authenticate(&mut handle, &check.user, key).await.map_err(|e| Failure::new(format!("{target}: {e}")))?;
    let host_key = seen.lock().ok().and_then(|s| s.as_ref().map(|s| s.describe()));
    let connection = Arc::new(Connection { handle, _jump: jump, host_key });
    *open = Some(connection.clone());
    Ok(connection)
}

/// A TCP connection within `limit`; the error says whether the attempt heard nothing at all.
async fn tcp(addr: SocketAddr, limit: Duration) -> Result<tokio::net::TcpStream, (String, bool)> {
    match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => Err((format!("no connection within {}", humantime::format_duration(limit)), true)),
        Ok(Err(e)) => Err((format!("connect failed: {e}"), false)),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

/// The SSH handshake (banner, key exchange, host key check) within `limit`.
async fn handshake<H, F>(connect: F, limit: Duration) -> Result<Handle<H>, String>
where
    H: client::Handler,
    F: std::future::Future<Output = Result<Handle<H>, H::Error>>,
    H::Error: std::fmt::Display,
{
    match tokio::time::timeout(limit, connect).await {
        Err(_) => Err(format!("no ssh handshake within {}", humantime::format_duration(limit))),
        Ok(Err(e)) => Err(format!("ssh handshake failed: {e}")),
        Ok(Ok(handle)) => Ok(handle),
    }
}

/// A failed handshake, told apart by what the host key check found.
fn rejected(error: String, seen: &Arc<Mutex<Option<KeySeen>>>, target: &str) -> Failure {
    let seen = seen.lock().ok().and_then(|s| s.clone());
    match seen.and_then(|s| s.rejection.clone().map(|r| (s, r))) {
        Some((key, Rejection::NotAnnounced)) => Failure::new(format!(
            "{target}: host key {} not yet announced on the console (no complete `SSH HOST KEY FINGERPRINTS` block yet)",
            key.describe()
        )),
        Some((key, Rejection::Mismatch(known))) => Failure {
            settled: true,
            ..Failure::new(format!(
                "{target}: host key {} does not match {known}: refusing to log in",
                key.describe()
            ))
        },
        None => Failure { silent: error.starts_with("no ssh handshake"), ..Failure::new(format!("{target}: {error}")) },
    }
}

async fn authenticate<H: client::Handler>(
    handle: &mut Handle<H>,
    user: &str,
    key: &Arc<PrivateKey>,
) -> Result<(), String> {
    let hash = if key.algorithm().is_rsa() {
        handle.best_supported_rsa_hash().await.map_err(|e| format!("login failed: {e}"))?.flatten()
    } else {
        None
    };
    let result = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), hash))
        .await
        .map_err(|e| format!("login failed: {e}"))?;
    if result.success() {
        Ok(())
    } else {
        Err(format!("login as `{user}` refused (public key {})", key.public_key().fingerprint(HashAlg::Sha256)))
    }
}

struct Output {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit_status: Option<u32>,
    exit_signal: Option<String>,
    truncated: bool,
}

/// Runs the command on a new channel of the connection and collects what it wrote, for at most
/// `limit`; the channel is closed either way (servers allow a few sessions per connection, and an
/// abandoned one would hold its place).
async fn execute<H: client::Handler>(handle: &Handle<H>, run: &Run, limit: Duration) -> Result<Output, String> {
    let mut channel = handle.channel_open_session().await.map_err(|e| format!("could not open a session: {e}"))?;
    let mut out =
        Output { stdout: Vec::new(), stderr: Vec::new(), exit_status: None, exit_signal: None, truncated: false };
    let outcome = tokio::time::timeout(limit, collect(&mut channel, run, &mut out)).await;
    let _ = channel.close().await;
    match outcome {
        Ok(result) => result.map(|()| out),
        Err(_) => Err(format!("the command did not finish within {}", humantime::format_duration(limit))),
    }
}

/// How long output is still read after the exit status: a command that leaves a background job
/// holding its stdout has still ended.
const AFTER_EXIT: Duration = Duration::from_secs(1);

async fn collect(channel: &mut russh::Channel<client::Msg>, run: &Run, out: &mut Output) -> Result<(), String> {
    match run {
        Run::Command(command) => channel.exec(true, command.as_bytes()).await,
        Run::Script { text, .. } => match channel.exec(true, &b"sh -s"[..]).await {
            Ok(()) => match channel.data(text.as_bytes()).await {
                Ok(()) => channel.eof().await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
    }
    .map_err(|e| format!("failed to start the command: {e}"))?;
    loop {
        let next = if out.exit_status.is_some() || out.exit_signal.is_some() {
            match tokio::time::timeout(AFTER_EXIT, channel.wait()).await {
                Ok(message) => message,
                Err(_) => return Ok(()),
            }
        } else {
            channel.wait().await
        };
        match next {
            None => return Ok(()),
            Some(ChannelMsg::Data { data }) => keep(&mut out.stdout, &data, &mut out.truncated),
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => keep(&mut out.stderr, &data, &mut out.truncated),
            Some(ChannelMsg::ExitStatus { exit_status }) => out.exit_status = Some(exit_status),
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => out.exit_signal = Some(format!("{signal_name:?}")),
            Some(_) => {}
        }
    }
}

fn keep(buffer: &mut Vec<u8>, data: &[u8], truncated: &mut bool) {
    let room = MAX_OUTPUT.saturating_sub(buffer.len());
    *truncated |= data.len() > room;
    buffer.extend_from_slice(&data[..data.len().min(room)]);
}

/// Checks every expectation; reports all that failed, not just the first.
fn check_expectations(expect: &SshExpectations, output: &Output, stdout: &str, stderr: &str) -> Result<String, String> {
    let mut failures = Vec::new();
    match (output.exit_status, &output.exit_signal) {
        (Some(status), _) if status == expect.exit_status => {}
        (Some(status), _) => failures.push(format!("exit status {status}, expected {}", expect.exit_status)),
        (None, Some(signal)) => {
            failures.push(format!("killed by signal {signal}, expected exit status {}", expect.exit_status))
        }
        (None, None) => failures.push("the command ended without an exit status".to_string()),
    }
    for (stream, text, contains, regex) in [
        ("stdout", stdout, &expect.stdout_contains, &expect.stdout_regex),
        ("stderr", stderr, &expect.stderr_contains, &expect.stderr_regex),
    ] {
        if let Some(wanted) = contains.as_ref().filter(|w| !text.contains(w.as_str())) {
            failures.push(format!("{stream} does not contain `{wanted}`"));
        }
        if let Some(re) = regex.as_ref().filter(|re| !re.is_match(text)) {
            failures.push(format!("{stream} does not match /{}/", re.as_str()));
        }
    }
    super::check_json(&expect.json, "stdout", stdout, &mut failures);
    if failures.is_empty() {
        Ok(format!("exit status {}, all expectations met", expect.exit_status))
    } else {
        Err(failures.join("; "))
    }
}

/// The machine's host key as seen in the handshake, and why it was refused if it was.
#[derive(Debug, Clone)]
struct KeySeen {
    fingerprint: String,
    algorithm: String,
    rejection: Option<Rejection>,
}

impl KeySeen {
    fn describe(&self) -> String {
        format!("{} ({})", self.fingerprint, self.algorithm)
    }
}

#[derive(Debug, Clone)]
enum Rejection {
    /// The console has shown no fingerprints yet: try again later.
    NotAnnounced,
    /// What the key was checked against: the console's fingerprints, or the key accepted first.
    Mismatch(String),
}

/// Checks the machine's host key during the handshake.
struct MachineKey {
    policy: HostKeyPolicy,
    console: watch::Receiver<ConsoleHostKeys>,
    accepted: Arc<Mutex<HashMap<String, String>>>,
    /// `host:port`, whose first key `accept-new` keeps.
    target: String,
    seen: Arc<Mutex<Option<KeySeen>>>,
}

impl client::Handler for MachineKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let data = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.key_data().clone(),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key().clone(),
        };
        let fingerprint = data.fingerprint(HashAlg::Sha256).to_string();
        let rejection = match self.policy {
            HostKeyPolicy::Console => {
                let known = self.console.borrow().clone();
                if known.vouches_for(&fingerprint) {
                    None
                } else if known.is_empty() {
                    Some(Rejection::NotAnnounced)
                } else {
                    let list: Vec<&str> = known.fingerprints.iter().map(String::as_str).collect();
                    Some(Rejection::Mismatch(format!("the console's fingerprints ({})", list.join(", "))))
                }
            }
            HostKeyPolicy::AcceptNew => {
                let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
                match accepted.get(&self.target) {
                    None => {
                        accepted.insert(self.target.clone(), fingerprint.clone());
                        None
                    }
                    Some(first) if *first == fingerprint => None,
                    Some(first) => Some(Rejection::Mismatch(format!("the key accepted first ({first})"))),
                }
            }
        };
        let ok = rejection.is_none();
        let seen = KeySeen { fingerprint, algorithm: data.algorithm().to_string(), rejection };
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
        Ok(ok)
    }
}

/// Checks a jump host's key against a known_hosts file.
struct KnownHostsKey {
    host: String,
    port: u16,
    file: PathBuf,
    verdict: Arc<Mutex<Option<String>>>,
    /// The key differs from the one on record: no point trying again.
    changed: Arc<std::sync::atomic::AtomicBool>,
}

impl client::Handler for KnownHostsKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) =
                Some("host certificates are not supported for jump hosts".into());
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let why = match russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.file) {
            Ok(true) => return Ok(true),
            Ok(false) => format!("host key {fingerprint} is not in {}", self.file.display()),
            Err(russh::keys::Error::KeyChanged { line }) => {
                self.changed.store(true, std::sync::atomic::Ordering::Relaxed);
                format!("host key {fingerprint} does not match {} line {line}: refusing to log in", self.file.display())
            }
            Err(e) => format!("failed to read {}: {e}", self.file.display()),
        };
        *self.verdict.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hosts_parse_with_and_without_ports() {
        let kh = PathBuf::from("/kh");
        let j = Jump::parse("ec2-user@bastion.example:2222", kh.clone()).unwrap();
        assert_eq!((j.user.as_str(), j.host.as_str(), j.port), ("ec2-user", "bastion.example", 2222));
        let j = Jump::parse("admin@10.0.0.5", kh.clone()).unwrap();
        assert_eq!((j.host.as_str(), j.port), ("10.0.0.5", 22));
        let j = Jump::parse("admin@[fd00::1]:2200", kh.clone()).unwrap();
        assert_eq!((j.host.as_str(), j.port), ("fd00::1", 2200));
        assert!(Jump::parse("bastion", kh.clone()).unwrap_err().contains("no `user@`"));
        assert!(Jump::parse("a@b:0", kh).unwrap_err().contains("invalid port"));
    }

    #[test]
    fn secrets_are_masked_everywhere_they_occur() {
        let secrets = vec!["hunter2".to_string(), String::new()];
        assert_eq!(mask("pw=hunter2; again hunter2", &secrets), "pw=********; again ********");
    }

    fn output(status: Option<u32>) -> Output {
        Output { stdout: Vec::new(), stderr: Vec::new(), exit_status: status, exit_signal: None, truncated: false }
    }

    #[test]
    fn every_failed_expectation_is_reported() {
        let expect = SshExpectations {
            exit_status: 0,
            stdout_contains: Some("active".into()),
            stderr_regex: Some(Regex::new("^$").unwrap()),
            json: vec![("$.ok".into(), JsonPath::parse("$.ok").unwrap(), serde_json::json!(true))],
            ..Default::default()
        };
        let why = check_expectations(&expect, &output(Some(3)), "inactive?", "oops").unwrap_err();
        assert_eq!(
            why,
            "exit status 3, expected 0; stderr does not match /^$/; stdout is not JSON: expected value at line 1 column 1"
        );
        let ok = check_expectations(&expect, &output(Some(0)), "{\"ok\": true, \"state\": \"active\"}", "");
        assert_eq!(ok.as_deref(), Ok("exit status 0, all expectations met"));
    }
}
