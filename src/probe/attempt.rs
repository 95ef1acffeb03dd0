//! One attempt of one probe, whatever its kind: the address resolved and allowed, the check run,
//! and what came back recorded as an [`Attempt`], the spec's secrets masked.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::target::resolve;
use super::{agent, http, rdp, ssh, tcp, windows_password};
use super::{
    Attempt, Check, ConnectMeaning, Endpoint, HttpCheck, Probe, SshContext, SshExchange, Target, TargetPolicy,
};

/// What one probe's attempts share, those in flight at once too: its HTTP client (with its
/// connection pool and TLS set-up), made again only when the address changes.
#[derive(Default)]
pub struct Session {
    http: Mutex<Option<(SocketAddr, reqwest::Client)>>,
    /// An SSH attempt has logged in and runs its command: see [`Session::logged_in`].
    logged_in: AtomicBool,
}

impl Session {
    /// Whether one of the probe's SSH attempts has logged in since [`Session::forget_login`]: its
    /// command is running, and no other attempt should start it again.
    pub fn logged_in(&self) -> bool {
        self.logged_in.load(Ordering::SeqCst)
    }

    pub fn forget_login(&self) {
        self.logged_in.store(false, Ordering::SeqCst);
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

/// Makes one attempt of `probe` against `target`; `limit`, when given, bounds the wait for the
/// first byte (connect included), see [`Probe::short_limit`].
pub async fn attempt(
    probe: &Probe,
    session: &Session,
    target: &Target,
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
        platform: false,
    };
    match (&probe.check, target) {
        (Check::Agent(check), Target::Agent(agent)) => {
            record_command(&mut attempt, agent::attempt(check, agent, &env.ssh).await)
        }
        (Check::WindowsPassword, _) => match windows_password::attempt(env).await {
            Ok(message) => (attempt.passed, attempt.message) = (true, message),
            Err(e) => (attempt.settled, attempt.platform, attempt.message) = (e.settled(), e.platform(), e.to_string()),
        },
        (_, Target::Port(endpoint)) => over_network(&mut attempt, probe, session, endpoint, env, limit).await,
        (_, Target::Agent(_)) => {
            (attempt.settled, attempt.message) = (true, format!("a {} probe can't go through an agent", probe.kind()))
        }
    }
    mask(&mut attempt, &env.ssh.secrets);
    attempt.latency_ms = started.elapsed().as_millis() as u64;
    attempt
}

/// An attempt of a kind that connects to a guest port.
async fn over_network(
    attempt: &mut Attempt,
    probe: &Probe,
    session: &Session,
    endpoint: &Endpoint,
    env: &ProbeEnv,
    limit: Option<Duration>,
) {
    match &probe.check {
        // The SSH client resolves its own hops: with a jump host the machine is never contacted
        // from here.
        Check::Ssh(check) => {
            let outcome = ssh::attempt(check, &env.ssh, endpoint, &env.policy, limit, &session.logged_in).await;
            record_command(attempt, outcome)
        }
        Check::Tcp(check) => {
            if let Some(addr) = allowed_address(attempt, endpoint, env).await {
                match tcp::attempt(check, addr, env.meaning, limit).await {
                    Ok(message) => (attempt.passed, attempt.message) = (true, message),
                    Err(failure) => (attempt.message, attempt.silent) = (failure.message, failure.silent),
                }
            }
        }
        Check::Rdp { .. } => {
            if let Some(addr) = allowed_address(attempt, endpoint, env).await {
                match rdp::attempt(addr, limit).await {
                    Ok(message) => (attempt.passed, attempt.message) = (true, message),
                    Err(failure) => (attempt.message, attempt.silent) = (failure.message, failure.silent),
                }
            }
        }
        Check::Http(check) => {
            if let Some(addr) = allowed_address(attempt, endpoint, env).await {
                attempt_http(attempt, check, session, endpoint, addr, limit).await;
            }
        }
        Check::Agent(_) | Check::WindowsPassword => {
            (attempt.settled, attempt.message) = (true, format!("a {} probe has no port", probe.kind()))
        }
    }
}

/// The address to connect to, or `None` with the reason in the attempt's message.
async fn allowed_address(attempt: &mut Attempt, endpoint: &Endpoint, env: &ProbeEnv) -> Option<SocketAddr> {
    match resolve(endpoint, &env.policy).await {
        Ok(addr) => Some(addr),
        Err(e) => {
            attempt.message = e.to_string();
            None
        }
    }
}

/// A command's outcome (over SSH or through the agent), into the attempt.
fn record_command(attempt: &mut Attempt, outcome: Result<(String, SshExchange), ssh::Failure>) {
    match outcome {
        Ok((message, exchange)) => (attempt.passed, attempt.message, attempt.ssh) = (true, message, Some(exchange)),
        Err(failure) => {
            (attempt.message, attempt.ssh) = (failure.message, failure.exchange.map(|x| *x));
            (attempt.silent, attempt.settled, attempt.platform) = (failure.silent, failure.settled, failure.platform);
        }
    }
}

/// One request with the session's client, made first for a new address.
async fn attempt_http(
    attempt: &mut Attempt,
    check: &HttpCheck,
    session: &Session,
    endpoint: &Endpoint,
    addr: SocketAddr,
    limit: Option<Duration>,
) {
    let client = {
        let mut known = crate::provider::lock(&session.http);
        match known.as_ref() {
            Some((at, client)) if *at == addr => client.clone(),
            _ => match http::client(check, endpoint, addr) {
                Ok(client) => known.insert((addr, client)).1.clone(),
                Err(e) => return attempt.message = e.to_string(),
            },
        }
    };
    match http::attempt(check, &client, endpoint, limit).await {
        Ok((message, exchange)) => {
            (attempt.passed, attempt.message, attempt.exchange) = (true, message, Some(exchange))
        }
        Err(failure) => {
            attempt.silent = failure.timed_out && failure.exchange.status.is_none();
            (attempt.message, attempt.exchange) = (failure.message, Some(failure.exchange));
        }
    }
}

/// Whatever the kind, the spec's secrets are masked in what is kept: an expectation or a banner can
/// carry one into the message as well as an exchange.
fn mask(attempt: &mut Attempt, secrets: &[String]) {
    if let Some(exchange) = &mut attempt.exchange {
        http::mask_exchange(exchange, secrets);
    }
    attempt.message = crate::text::mask(&attempt.message, secrets);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::compile::tests::probe;
    use crate::probe::host_key;
    use crate::probe::schedule::collect;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Probes' surroundings for tests: loopback allowed, no SSH key, no password.
    pub(crate) fn loopback_env() -> Arc<ProbeEnv> {
        let policy = TargetPolicy { allowed: vec!["127.0.0.0/8".parse().unwrap()] };
        let (_keys, console_keys) = tokio::sync::watch::channel(host_key::ConsoleHostKeys::default());
        let ssh = Arc::new(SshContext::new(None, console_keys, Arc::default()));
        Arc::new(ProbeEnv { policy, meaning: ConnectMeaning::MaybeProxy, ssh, password: None })
    }

    /// A listener whose every connection is answered `200 ok` after `delay`.
    async fn slow_service(delay: Duration) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = socket.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                });
            }
        });
        port
    }

    /// A service that is up but always answers after 2 s, longer than the attempts that overlap
    /// at a 500 ms cadence may wait (1.25 s), is not failed for it: one attempt at a time has the
    /// probe's own timeout, and hears it.
    #[tokio::test]
    async fn a_slow_but_correct_service_passes() {
        let port = slow_service(Duration::from_secs(2)).await;
        let p = probe(&format!("name: h\nhttp: {{port: {port}, timeout: 5s}}\ninterval: 200ms"));
        let pace = p.unheard_pace(ConnectMeaning::MaybeProxy);
        assert_eq!(p.short_limit(pace), Some(Duration::from_millis(1250)));
        let endpoint = Endpoint { host: "127.0.0.1".into(), port };
        let attempts = collect(&p, &endpoint, &loopback_env(), Duration::from_secs(10)).await;
        let last = attempts.last().unwrap();
        assert!(last.passed, "{attempts:?}");
        assert!(attempts.iter().any(|a| a.silent), "the short attempts can't hear a 1.5 s answer: {attempts:?}");
    }
}
