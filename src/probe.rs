//! Probes: network checks against a running machine, compiled from the spec and retried until their
//! deadline.
//!
//! A probe never picks its own target: the provider says where a guest port is reachable, and a
//! [`TargetPolicy`] must allow the address before any packet is sent, so that no spec can be turned
//! into a scanner of somebody else's network.

mod http;
mod tcp;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json_path::JsonPath;

use crate::spec::{self, FieldPath, HttpMethod, HttpScheme, ProbeSpec, Problem, StatusMatcher};

pub use http::HttpExchange;

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

impl Probe {
    /// The guest port this probe connects to.
    pub fn port(&self) -> u16 {
        match &self.check {
            Check::Tcp(t) => t.port,
            Check::Http(h) => h.port,
        }
    }

    pub fn kind(&self) -> &'static str {
        match &self.check {
            Check::Tcp(_) => "tcp",
            Check::Http(_) => "http",
        }
    }

    pub fn compile(spec: &ProbeSpec, path: &FieldPath, problems: &mut Vec<Problem>) -> Option<Probe> {
        let before = problems.len();
        if spec.name.trim().is_empty() {
            problems.push(Problem::at(path.key("name"), "probe name is empty"));
        }
        if spec.within.is_zero() {
            problems.push(Problem::at(path.key("within"), "deadline must be above 0s"));
        }
        if spec.interval.is_zero() {
            problems.push(Problem::at(path.key("interval"), "interval must be above 0s"));
        }
        let check = match (&spec.tcp, &spec.http) {
            (Some(tcp), None) => {
                if spec.expect.is_some() {
                    problems.push(
                        Problem::at_key(path.key("expect"), "`expect` applies to http probes")
                            .help("a tcp probe checks its answer with `tcp.contains`"),
                    );
                }
                check_port(tcp.port, &path.key("tcp").key("port"), problems);
                Check::Tcp(TcpCheck { port: tcp.port, send: tcp.send.clone(), contains: tcp.contains.clone() })
            }
            (None, Some(http)) => {
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
            (None, None) => {
                problems.push(
                    Problem::at_key(path.clone(), "probe has no kind")
                        .help("add `tcp: { port: N }` or `http: { port: N, path: / }`"),
                );
                return None;
            }
            (Some(_), Some(_)) => {
                problems.push(
                    Problem::at_key(path.key("http"), "probe has both `tcp` and `http`")
                        .help("split it into two probes"),
                );
                return None;
            }
        };
        (problems.len() == before).then(|| Probe {
            name: spec.name.clone(),
            check,
            within: spec.within,
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

fn compile_expect(expect: Option<&spec::ExpectSpec>, path: &FieldPath, problems: &mut Vec<Problem>) -> Expectations {
    let default = spec::ExpectSpec::default();
    let expect = expect.unwrap_or(&default);
    let body_regex = expect.body_regex.as_ref().and_then(|re| match Regex::new(re) {
        Ok(re) => Some(re),
        Err(e) => {
            let detail =
                e.to_string().lines().last().unwrap_or_default().trim().trim_start_matches("error: ").to_lowercase();
            problems.push(Problem::at(path.key("body_regex"), format!("invalid regex: {detail}")));
            None
        }
    });
    let mut json = Vec::new();
    for (query, value) in &expect.json {
        match JsonPath::parse(query) {
            Ok(p) => json.push((query.clone(), p, value.clone())),
            Err(e) => problems.push(
                Problem::at_key(path.key("json").key(query.clone()), format!("invalid JSON path `{query}`: {e}"))
                    .help("JSON paths follow RFC 9535 and start with `$`, like `$.status`"),
            ),
        }
    }
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

/// Where a probe connects: a host (name or address) and a port, as the provider reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

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

/// How far a provider's network can be trusted to tell a listener from no listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMeaning {
    /// A completed TCP handshake means the guest accepted it.
    Listening,
    /// The connection may be accepted by a proxy in front of the guest (QEMU user networking): only
    /// data from the guest proves a listener.
    MaybeProxy,
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
        };
        let limit = self.interval.min(FIRST_SIGN).saturating_mul(1 << silent.min(16));
        (limit < own).then_some(limit)
    }
}

/// Makes one attempt of `probe` against `endpoint`; `limit` bounds the wait for the first byte
/// (connect included), see [`Probe::attempt_limit`].
pub async fn attempt(
    probe: &Probe,
    session: &mut Session,
    endpoint: &Endpoint,
    policy: &TargetPolicy,
    meaning: ConnectMeaning,
    at_s: f64,
    limit: Option<Duration>,
) -> Attempt {
    let started = Instant::now();
    let mut silent = false;
    let result = match resolve(endpoint, policy).await {
        Err(message) => Err((message, None)),
        Ok(addr) => match &probe.check {
            Check::Tcp(check) => match tcp::attempt(check, addr, meaning, limit).await {
                Ok(message) => Ok((message, None)),
                Err(failure) => {
                    silent = failure.silent;
                    Err((failure.message, None))
                }
            },
            Check::Http(check) => {
                let client = match &session.http {
                    Some((known, client)) if *known == addr => Ok(client.clone()),
                    _ => http::client(check, endpoint, addr),
                };
                match client {
                    Ok(client) => {
                        session.http = Some((addr, client.clone()));
                        let outcome = http::attempt(check, &client, endpoint, limit).await;
                        if let Err((_, exchange, true)) = &outcome {
                            silent = exchange.as_ref().is_none_or(|x| x.status.is_none());
                        }
                        outcome.map_err(|(message, exchange, _)| (message, exchange))
                    }
                    Err(message) => Err((message, None)),
                }
            }
        },
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok((message, exchange)) => Attempt { at_s, passed: true, message, latency_ms, exchange, silent: false },
        Err((message, exchange)) => Attempt { at_s, passed: false, message, latency_ms, exchange, silent },
    }
}

async fn resolve(endpoint: &Endpoint, policy: &TargetPolicy) -> Result<SocketAddr, String> {
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

    fn probe(yaml: &str) -> Probe {
        let spec: ProbeSpec = serde_yaml::from_str(yaml).unwrap();
        Probe::compile(&spec, &FieldPath::root(), &mut Vec::new()).unwrap()
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
        let mut session = Session::default();
        let mut silent = Some(0);
        let mut attempts = Vec::new();
        for _ in 0..4 {
            let limit = p.attempt_limit(silent);
            let attempt =
                super::attempt(&p, &mut session, &endpoint, &policy, ConnectMeaning::MaybeProxy, 0.0, limit).await;
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
