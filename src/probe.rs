//! Probes: checks of a running machine over the network (TCP, HTTP, RDP, and commands over SSH),
//! compiled from the spec and retried until their deadline.
//!
//! A probe never picks its own target: the provider says where a guest port is reachable, and a
//! [`TargetPolicy`] must allow the address before any packet is sent, so that no spec can be turned
//! into a scanner of somebody else's network.

pub mod host_key;
mod http;
mod rdp;
pub mod ssh;
mod tcp;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json_path::JsonPath;

use crate::spec::{self, FieldPath, HttpMethod, HttpScheme, Os, ProbeSpec, Problem, StatusMatcher};

pub use http::HttpExchange;
pub use ssh::{SshCheck, SshContext, SshExchange};

#[derive(Debug, Clone)]
pub struct Probe {
    pub name: String,
    pub check: Check,
    pub within: Duration,
    pub interval: Duration,
    /// Connect to this host instead of the machine's address.
    pub host: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Check {
    Tcp(TcpCheck),
    Http(HttpCheck),
    Ssh(Box<SshCheck>),
    Rdp {
        port: u16,
    },
    /// The platform holds the administrator password, encrypted to the run's key.
    WindowsPassword,
}

#[derive(Debug, Clone)]
pub struct TcpCheck {
    pub port: u16,
    pub send: Option<String>,
    pub contains: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HttpCheck {
    pub port: u16,
    pub path: String,
    pub method: HttpMethod,
    pub scheme: HttpScheme,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub timeout: Duration,
    pub expect: Expectations,
}

#[derive(Debug, Clone)]
pub struct Expectations {
    pub status: StatusMatcher,
    pub headers: Vec<(String, String)>,
    pub body_contains: Option<String>,
    pub body_regex: Option<Regex>,
    pub json: Vec<(String, JsonPath, serde_json::Value)>,
}

/// What compiling a probe needs besides the probe itself.
pub struct CompileContext<'a> {
    /// The spec's directory: script and key files are relative to it.
    pub base: &'a Path,
    pub os: Os,
    /// Whether the run has a key of its own to log in with (`launch.key_pair: ephemeral`).
    pub run_key: bool,
}

/// The default deadline: Windows takes minutes to be ready (sysprep, EC2Launch).
fn default_within(os: Os) -> Duration {
    match os {
        Os::Linux => Duration::from_secs(300),
        Os::Windows => Duration::from_secs(20 * 60),
    }
}

impl Probe {
    /// The guest port this probe connects to.
    pub fn port(&self) -> u16 {
        match &self.check {
            Check::Tcp(t) => t.port,
            Check::Http(h) => h.port,
            Check::Ssh(s) => s.port,
            Check::Rdp { port } => *port,
            // Asked of the platform's API, not the machine: RDP's port stands for it in reports.
            Check::WindowsPassword => 3389,
        }
    }

    pub fn kind(&self) -> &'static str {
        match &self.check {
            Check::Tcp(_) => "tcp",
            Check::Http(_) => "http",
            Check::Ssh(_) => "ssh",
            Check::Rdp { .. } => "rdp",
            Check::WindowsPassword => "windows_password",
        }
    }

    pub fn compile(
        spec: &ProbeSpec,
        ctx: &CompileContext,
        path: &FieldPath,
        problems: &mut Vec<Problem>,
    ) -> Option<Probe> {
        let before = problems.len();
        if spec.name.trim().is_empty() {
            problems.push(Problem::at(path.key("name"), "probe name is empty"));
        }
        let within = spec.within.unwrap_or_else(|| default_within(ctx.os));
        if within.is_zero() {
            problems.push(Problem::at(path.key("within"), "deadline must be above 0s"));
        }
        if spec.interval.is_zero() {
            problems.push(Problem::at(path.key("interval"), "interval must be above 0s"));
        }
        let kinds: Vec<&str> = [
            spec.tcp.as_ref().map(|_| "tcp"),
            spec.http.as_ref().map(|_| "http"),
            spec.ssh.as_ref().map(|_| "ssh"),
            spec.rdp.as_ref().map(|_| "rdp"),
            spec.windows_password.as_ref().map(|_| "windows_password"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if kinds.len() > 1 {
            problems.push(
                Problem::at_key(path.key(kinds[1]), format!("probe has both `{}` and `{}`", kinds[0], kinds[1]))
                    .help("split it into two probes"),
            );
            return None;
        }
        if spec.windows_password.is_some() {
            if ctx.os != Os::Windows {
                problems.push(
                    Problem::at_key(path.key("windows_password"), "`windows_password` needs `os: windows`")
                        .help("Windows images get an RSA run key, the only kind EC2 encrypts their password to"),
                );
            }
            if !ctx.run_key {
                problems.push(Problem::at_key(
                    path.key("windows_password"),
                    "`windows_password` needs the run's own key (`launch.key_pair: ephemeral`) to decrypt it",
                ));
            }
            if spec.expect.is_some() {
                problems.push(Problem::at_key(path.key("expect"), "`expect` applies to http and ssh probes"));
            }
        }
        let check = match (&spec.tcp, &spec.http, &spec.ssh, &spec.rdp) {
            _ if spec.windows_password.is_some() => Check::WindowsPassword,
            (Some(tcp), ..) => {
                if spec.expect.is_some() {
                    problems.push(
                        Problem::at_key(path.key("expect"), "`expect` applies to http and ssh probes")
                            .help("a tcp probe checks its answer with `tcp.contains`"),
                    );
                }
                check_port(tcp.port, &path.key("tcp").key("port"), problems);
                Check::Tcp(TcpCheck { port: tcp.port, send: tcp.send.clone(), contains: tcp.contains.clone() })
            }
            (_, _, Some(ssh), _) => {
                let expect = compile_ssh_expect(spec.expect.as_ref(), &path.key("expect"), problems);
                Check::Ssh(Box::new(compile_ssh(ssh, expect, ctx, &path.key("ssh"), problems)?))
            }
            (_, _, _, Some(rdp)) => {
                if spec.expect.is_some() {
                    problems.push(Problem::at_key(path.key("expect"), "`expect` applies to http and ssh probes"));
                }
                check_port(rdp.port, &path.key("rdp").key("port"), problems);
                Check::Rdp { port: rdp.port }
            }
            (None, Some(http), ..) => {
                let at = path.key("http");
                check_port(http.port, &at.key("port"), problems);
                if !http.path.starts_with('/') {
                    problems.push(Problem::at(at.key("path"), format!("path `{}` must start with `/`", http.path)));
                }
                for name in http.headers.keys() {
                    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        problems.push(Problem::at_key(
                            at.key("headers").key(name.clone()),
                            format!("invalid header name `{name}`"),
                        ));
                    }
                }
                let expect = compile_expect(spec.expect.as_ref(), &path.key("expect"), problems);
                refuse_keys(spec.expect.as_ref().map(ssh_only_keys), "ssh", &path.key("expect"), problems);
                Check::Http(HttpCheck {
                    port: http.port,
                    path: http.path.clone(),
                    method: http.method,
                    scheme: http.scheme,
                    headers: http.headers.clone().into_iter().collect(),
                    body: http.body.clone(),
                    timeout: http.timeout,
                    expect,
                })
            }
            (None, None, None, None) => {
                problems.push(
                    Problem::at_key(path.clone(), "probe has no kind")
                        .help("add `tcp: { port: N }`, `http: { port: N, path: / }`, `ssh: { command: ... }`, `rdp: {}` or `windows_password: {}`"),
                );
                return None;
            }
        };
        (problems.len() == before).then(|| Probe {
            name: spec.name.clone(),
            check,
            within,
            interval: spec.interval,
            host: spec.host.clone(),
        })
    }
}

fn check_port(port: u16, path: &FieldPath, problems: &mut Vec<Problem>) {
    if port == 0 {
        problems.push(Problem::at(path.clone(), "port 0 is not a port to probe"));
    }
}

/// The `expect` keys that only mean something for an SSH command, as given.
fn ssh_only_keys(expect: &spec::ExpectSpec) -> Vec<&'static str> {
    [
        expect.exit_status.map(|_| "exit_status"),
        expect.stdout_contains.as_ref().map(|_| "stdout_contains"),
        expect.stdout_regex.as_ref().map(|_| "stdout_regex"),
        expect.stderr_contains.as_ref().map(|_| "stderr_contains"),
        expect.stderr_regex.as_ref().map(|_| "stderr_regex"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The `expect` keys that only mean something for an HTTP answer, as given.
fn http_only_keys(expect: &spec::ExpectSpec) -> Vec<&'static str> {
    [
        expect.status.as_ref().map(|_| "status"),
        (!expect.headers.is_empty()).then_some("headers"),
        expect.body_contains.as_ref().map(|_| "body_contains"),
        expect.body_regex.as_ref().map(|_| "body_regex"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A problem for each key that belongs to another kind of probe.
fn refuse_keys(keys: Option<Vec<&'static str>>, owner: &str, path: &FieldPath, problems: &mut Vec<Problem>) {
    for key in keys.unwrap_or_default() {
        problems.push(Problem::at_key(path.key(key), format!("`{key}` applies to {owner} probes")));
    }
}

fn compile_regex(text: Option<&String>, path: FieldPath, problems: &mut Vec<Problem>) -> Option<Regex> {
    text.and_then(|re| match Regex::new(re) {
        Ok(re) => Some(re),
        Err(e) => {
            let detail =
                e.to_string().lines().last().unwrap_or_default().trim().trim_start_matches("error: ").to_lowercase();
            problems.push(Problem::at(path, format!("invalid regex: {detail}")));
            None
        }
    })
}

fn compile_json(
    json: &std::collections::BTreeMap<String, serde_json::Value>,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Vec<(String, JsonPath, serde_json::Value)> {
    let mut compiled = Vec::new();
    for (query, value) in json {
        match JsonPath::parse(query) {
            Ok(p) => compiled.push((query.clone(), p, value.clone())),
            Err(e) => problems.push(
                Problem::at_key(path.key("json").key(query.clone()), format!("invalid JSON path `{query}`: {e}"))
                    .help("JSON paths follow RFC 9535 and start with `$`, like `$.status`"),
            ),
        }
    }
    compiled
}

/// Checks each JSON path expectation against `text` (named `what` in messages).
pub(crate) fn check_json(
    json: &[(String, JsonPath, serde_json::Value)],
    what: &str,
    text: &str,
    failures: &mut Vec<String>,
) {
    if json.is_empty() {
        return;
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Err(e) => failures.push(format!("{what} is not JSON: {e}")),
        Ok(doc) => {
            for (query, path, wanted) in json {
                let found = path.query(&doc).all();
                match found.first() {
                    None => failures.push(format!("`{query}` found nothing, expected {wanted}")),
                    Some(v) if *v != wanted => failures.push(format!("`{query}` is {v}, expected {wanted}")),
                    Some(_) => {}
                }
            }
        }
    }
}

fn compile_ssh_expect(
    expect: Option<&spec::ExpectSpec>,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> ssh::SshExpectations {
    let default = spec::ExpectSpec::default();
    let expect = expect.unwrap_or(&default);
    refuse_keys(Some(http_only_keys(expect)), "http", path, problems);
    ssh::SshExpectations {
        exit_status: expect.exit_status.unwrap_or(0),
        stdout_contains: expect.stdout_contains.clone(),
        stdout_regex: compile_regex(expect.stdout_regex.as_ref(), path.key("stdout_regex"), problems),
        stderr_contains: expect.stderr_contains.clone(),
        stderr_regex: compile_regex(expect.stderr_regex.as_ref(), path.key("stderr_regex"), problems),
        json: compile_json(&expect.json, path, problems),
    }
}

fn compile_ssh(
    spec: &spec::SshProbe,
    expect: ssh::SshExpectations,
    ctx: &CompileContext,
    path: &FieldPath,
    problems: &mut Vec<Problem>,
) -> Option<SshCheck> {
    check_port(spec.port, &path.key("port"), problems);
    if spec.user.trim().is_empty() {
        problems.push(Problem::at(path.key("user"), "user is empty"));
    }
    if spec.timeout.is_zero() {
        problems.push(Problem::at(path.key("timeout"), "timeout must be above 0s"));
    }
    let run = match (&spec.command, &spec.script) {
        (Some(command), None) if command.trim().is_empty() => {
            problems.push(Problem::at(path.key("command"), "command is empty"));
            return None;
        }
        (Some(command), None) => ssh::Run::Command(command.clone()),
        (None, Some(script)) => match std::fs::read_to_string(ctx.base.join(script)) {
            Ok(text) => ssh::Run::Script { name: script.clone(), text },
            Err(e) => {
                problems.push(Problem::at(path.key("script"), format!("failed to read script `{script}`: {e}")));
                return None;
            }
        },
        (None, None) => {
            problems.push(Problem::at_key(path.clone(), "ssh probe has no `command` or `script`"));
            return None;
        }
        (Some(_), Some(_)) => {
            problems.push(
                Problem::at_key(path.key("script"), "ssh probe has both `command` and `script`")
                    .help("split it into two probes"),
            );
            return None;
        }
    };
    let key = match &spec.key_file {
        None if !ctx.run_key => {
            problems.push(
                Problem::at_key(path.clone(), "ssh probe has no key: the run uses an existing key pair")
                    .help("give `key_file`, the private half of `launch.key_pair`"),
            );
            return None;
        }
        None => None,
        Some(file) => {
            let read = std::fs::read_to_string(ctx.base.join(file)).map_err(|e| e.to_string()).and_then(|text| {
                russh::keys::decode_secret_key(&text, None).map_err(|e| format!("not a usable private key: {e}"))
            });
            match read {
                Ok(key) => Some(Arc::new(key)),
                Err(e) => {
                    problems.push(Problem::at(path.key("key_file"), format!("failed to read key file `{file}`: {e}")));
                    return None;
                }
            }
        }
    };
    let known_hosts = match &spec.jump_known_hosts {
        Some(file) => ctx.base.join(file),
        None => std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_default().join(".ssh/known_hosts"),
    };
    let jump = match spec.jump.as_deref().map(|text| ssh::Jump::parse(text, known_hosts)) {
        None => None,
        Some(Ok(jump)) => Some(jump),
        Some(Err(e)) => {
            problems.push(Problem::at(path.key("jump"), e));
            return None;
        }
    };
    Some(SshCheck {
        run,
        user: spec.user.clone(),
        port: spec.port,
        key,
        host_key: spec.host_key,
        jump,
        timeout: spec.timeout,
        expect,
    })
}

fn compile_expect(expect: Option<&spec::ExpectSpec>, path: &FieldPath, problems: &mut Vec<Problem>) -> Expectations {
    let default = spec::ExpectSpec::default();
    let expect = expect.unwrap_or(&default);
    let body_regex = compile_regex(expect.body_regex.as_ref(), path.key("body_regex"), problems);
    let json = compile_json(&expect.json, path, problems);
    for name in expect.headers.keys() {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems
                .push(Problem::at_key(path.key("headers").key(name.clone()), format!("invalid header name `{name}`")));
        }
    }
    Expectations {
        status: expect.status.clone().unwrap_or_else(StatusMatcher::success),
        headers: expect.headers.clone().into_iter().collect(),
        body_contains: expect.body_contains.clone(),
        body_regex,
        json,
    }
}

pub use crate::provider::{ConnectMeaning, Endpoint};

/// Which addresses probes may contact. Checked on the resolved address, right before connecting.
#[derive(Debug, Clone)]
pub struct TargetPolicy {
    pub allowed: Vec<ipnet::IpNet>,
}

impl TargetPolicy {
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&ip))
    }
}

/// One try of one probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempt {
    /// Seconds since launch when the attempt started.
    pub at_s: f64,
    pub passed: bool,
    /// What was seen, as a lowercase fragment: "status 503, expected 200".
    pub message: String,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<HttpExchange>,
    /// The SSH command and what it wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshExchange>,
    /// Trying again can't help (a host key that doesn't match): the probe fails now.
    #[serde(skip)]
    #[schemars(skip)]
    pub settled: bool,
    /// Nothing at all came back before the time ran out: no data, no refusal, no close. What a
    /// port forwarded by QEMU looks like while the guest is not up yet.
    #[serde(skip)]
    #[schemars(skip)]
    pub silent: bool,
}

/// What one probe keeps from one attempt to the next: its HTTP client (with its connection pool and
/// TLS set-up), made again only when the address changes.
#[derive(Default)]
pub struct Session {
    http: Option<(SocketAddr, reqwest::Client)>,
}

/// How long an attempt waits for a first sign of the guest (a connection, data, a refusal) while it
/// has never given one: at most this, or the probe's interval if shorter. A port QEMU forwards is
/// accepted by QEMU itself before the guest is up, so a silent attempt says nothing, and waiting out
/// the probe's full timeout on it would only delay the attempt that finds the guest ready.
pub const FIRST_SIGN: Duration = Duration::from_secs(1);

impl Probe {
    /// The time limit of the next attempt after `silent` attempts that heard nothing (`None` once the
    /// target answered): [`FIRST_SIGN`] (or the interval) at first, doubled after each silent
    /// attempt, and the probe's own timeouts once that is as long. A target that is up but always
    /// slower than the short limit (a slow TLS handshake, a late banner) still gets full attempts.
    pub fn attempt_limit(&self, silent: Option<u32>) -> Option<Duration> {
        let silent = silent?;
        let own = match &self.check {
            Check::Http(http) => http.timeout,
            Check::Tcp(_) => tcp::CONNECT_TIMEOUT,
            Check::Ssh(ssh) => ssh.timeout,
            Check::Rdp { .. } | Check::WindowsPassword => rdp::TIMEOUT,
        };
        let limit = self.interval.min(FIRST_SIGN).saturating_mul(1 << silent.min(16));
        (limit < own).then_some(limit)
    }
}

/// Where and how a cell's probes may connect, the same for all of them.
pub struct ProbeEnv {
    pub policy: TargetPolicy,
    pub meaning: ConnectMeaning,
    /// SSH probes' keys, known host keys and shared connections.
    pub ssh: Arc<SshContext>,
    /// Where the machine's administrator password is fetched, and the key that decrypts it.
    pub password: Option<(Arc<dyn crate::provider::AdminPassword>, Arc<crate::provider::key::RunKey>)>,
}

/// Makes one attempt of `probe` against `endpoint`; `limit` bounds the wait for the first byte
/// (connect included), see [`Probe::attempt_limit`].
pub async fn attempt(
    probe: &Probe,
    session: &mut Session,
    endpoint: &Endpoint,
    env: &ProbeEnv,
    at_s: f64,
    limit: Option<Duration>,
) -> Attempt {
    let started = Instant::now();
    let mut attempt = Attempt {
        at_s,
        passed: false,
        message: String::new(),
        latency_ms: 0,
        exchange: None,
        ssh: None,
        settled: false,
        silent: false,
    };
    match &probe.check {
        // The SSH client resolves its own hops: with a jump host the machine is never contacted
        // from here.
        Check::Ssh(check) => match ssh::attempt(check, &env.ssh, endpoint, &env.policy, limit).await {
            Ok((message, exchange)) => (attempt.passed, attempt.message, attempt.ssh) = (true, message, Some(exchange)),
            Err(failure) => {
                (attempt.message, attempt.ssh) = (failure.message, failure.exchange.map(|x| *x));
                (attempt.silent, attempt.settled) = (failure.silent, failure.settled);
            }
        },
        Check::WindowsPassword => match tokio::time::timeout(rdp::TIMEOUT, windows_password(env)).await {
            Ok(Ok(message)) => (attempt.passed, attempt.message) = (true, message),
            Ok(Err((message, settled))) => (attempt.message, attempt.settled) = (message, settled),
            Err(_) => attempt.message = "GetPasswordData did not answer in time".into(),
        },
        check => match resolve(endpoint, &env.policy).await {
            Err(message) => attempt.message = message,
            Ok(addr) => match check {
                Check::Tcp(check) => match tcp::attempt(check, addr, env.meaning, limit).await {
                    Ok(message) => (attempt.passed, attempt.message) = (true, message),
                    Err(failure) => (attempt.message, attempt.silent) = (failure.message, failure.silent),
                },
                Check::Rdp { .. } => match rdp::attempt(addr, limit).await {
                    Ok(message) => (attempt.passed, attempt.message) = (true, message),
                    Err(failure) => (attempt.message, attempt.silent) = (failure.message, failure.silent),
                },
                Check::Http(check) => {
                    let client = match &session.http {
                        Some((known, client)) if *known == addr => Ok(client.clone()),
                        _ => http::client(check, endpoint, addr),
                    };
                    match client {
                        Ok(client) => {
                            session.http = Some((addr, client.clone()));
                            match http::attempt(check, &client, endpoint, limit).await {
                                Ok((message, exchange)) => {
                                    (attempt.passed, attempt.message, attempt.exchange) = (true, message, exchange)
                                }
                                Err((message, exchange, timed_out)) => {
                                    attempt.silent = timed_out && exchange.as_ref().is_none_or(|x| x.status.is_none());
                                    (attempt.message, attempt.exchange) = (message, exchange);
                                }
                            }
                        }
                        Err(message) => attempt.message = message,
                    }
                }
                Check::Ssh(_) | Check::WindowsPassword => unreachable!("attempted above: no address of their own"),
            },
        },
    }
    // Whatever the kind, the spec's secrets are masked in what is kept: an expectation or a banner
    // can carry one into the message as well as an exchange.
    if let Some(exchange) = &mut attempt.exchange {
        http::mask_exchange(exchange, &env.ssh.secrets);
    }
    attempt.message = ssh::mask(&attempt.message, &env.ssh.secrets);
    attempt.latency_ms = started.elapsed().as_millis() as u64;
    attempt
}

/// Fetches the encrypted administrator password and decrypts it; the password itself goes nowhere.
/// A failure says whether trying again could help.
async fn windows_password(env: &ProbeEnv) -> Result<String, (String, bool)> {
    let (source, key) =
        env.password.as_ref().ok_or(("this provider keeps no administrator password".to_string(), true))?;
    match source.encrypted().await.map_err(|e| (e.to_string(), false))? {
        None => Err(("no administrator password yet".into(), false)),
        Some(data) => {
            // The same data decrypts the same way next time.
            let password = key.decrypt_password(&data).map_err(|e| (e.to_string(), true))?;
            Ok(format!(
                "administrator password generated ({} characters), decrypted with the run's key",
                password.chars().count()
            ))
        }
    }
}

pub(crate) async fn resolve(endpoint: &Endpoint, policy: &TargetPolicy) -> Result<SocketAddr, String> {
    // An address needs no lookup: `lookup_host` would take a blocking thread for each attempt.
    if let Ok(ip) = endpoint.host.parse::<IpAddr>() {
        if !policy.allows(ip) {
            return Err(format!("refused to contact {ip}: not within --allow-targets"));
        }
        return Ok(SocketAddr::new(ip, endpoint.port));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("failed to resolve {}: {e}", endpoint.host))?
        .collect();
    // Every address the name resolves to must be allowed: a name is not a way around the policy.
    if let Some(denied) = addrs.iter().find(|a| !policy.allows(a.ip())) {
        return Err(format!("refused to contact {}: not within --allow-targets", denied.ip()));
    }
    addrs.into_iter().next().ok_or_else(|| format!("{} resolves to no address", endpoint.host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FieldPath, ProbeSpec};

    pub(crate) fn compile(yaml: &str) -> Result<Probe, Vec<Problem>> {
        let spec: ProbeSpec = serde_yaml::from_str(yaml).unwrap();
        let ctx = CompileContext { base: Path::new("."), os: Os::Linux, run_key: true };
        let mut problems = Vec::new();
        Probe::compile(&spec, &ctx, &FieldPath::root(), &mut problems).ok_or(problems)
    }

    fn probe(yaml: &str) -> Probe {
        compile(yaml).unwrap()
    }

    #[test]
    fn expectations_of_another_kind_are_refused() {
        let problems =
            compile("name: s\nssh: {command: 'true'}\nexpect: {status: 200, stdout_contains: x}").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("`status` applies to http probes"), "{problems:?}");
        let problems = compile("name: h\nhttp: {port: 80}\nexpect: {exit_status: 1}").unwrap_err();
        assert!(problems[0].message.contains("`exit_status` applies to ssh probes"), "{problems:?}");
    }

    #[test]
    fn windows_waits_longer_by_default() {
        let spec: ProbeSpec = serde_yaml::from_str("name: r\nrdp: {}").unwrap();
        let ctx = CompileContext { base: Path::new("."), os: Os::Windows, run_key: true };
        let p = Probe::compile(&spec, &ctx, &FieldPath::root(), &mut Vec::new()).unwrap();
        assert_eq!((p.within, p.port(), p.kind()), (Duration::from_secs(1200), 3389, "rdp"));
        assert_eq!(probe("name: r\nrdp: {port: 3390}\nwithin: 1m").within, Duration::from_secs(60));
    }

    #[test]
    fn the_first_sign_limit_grows_until_it_is_the_probes_own() {
        let p = probe("name: h\nhttp: {port: 80, timeout: 5s}\ninterval: 2s");
        let limits: Vec<Option<Duration>> = (0..4).map(|n| p.attempt_limit(Some(n))).collect();
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(limits, [secs(1), secs(2), secs(4), None]);
        assert_eq!(p.attempt_limit(None), None, "once answered, the probe's own timeouts");
    }

    /// A service that is up but always answers after 1.5 s (slower than the first short limit) is
    /// not failed for it: the limit grows until an attempt hears the answer.
    #[tokio::test]
    async fn a_slow_but_correct_service_passes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                });
            }
        });
        let p = probe(&format!("name: h\nhttp: {{port: {port}}}\ninterval: 1s"));
        let endpoint = Endpoint { host: "127.0.0.1".into(), port };
        let policy = TargetPolicy { allowed: vec!["127.0.0.0/8".parse().unwrap()] };
        let (_keys, console_keys) = tokio::sync::watch::channel(host_key::ConsoleHostKeys::default());
        let ssh = Arc::new(SshContext::new(None, console_keys, Arc::default()));
        let env = ProbeEnv { policy, meaning: ConnectMeaning::MaybeProxy, ssh, password: None };
        let mut session = Session::default();
        let mut silent = Some(0);
        let mut attempts = Vec::new();
        for _ in 0..4 {
            let limit = p.attempt_limit(silent);
            let attempt = super::attempt(&p, &mut session, &endpoint, &env, 0.0, limit).await;
            silent = match silent {
                Some(n) if attempt.silent => Some(n + 1),
                _ => None,
            };
            let passed = attempt.passed;
            attempts.push(attempt);
            if passed {
                break;
            }
        }
        let last = attempts.last().unwrap();
        assert!(last.passed, "{attempts:?}");
        assert!(attempts.len() >= 2, "the first, 1 s attempt can't hear a 1.5 s answer: {attempts:?}");
    }
}
