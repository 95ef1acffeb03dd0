//! Opening a logged-in SSH connection to the machine: straight to its address, or through a tunnel
//! from a jump host. An attempt that overlaps others while the machine is silent waits only
//! its shorter limit for the handshake; the machine's host key is checked before the key logs in.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};

use super::pool::{Connection, SshContext};
use super::verify::{KeySeen, KnownHostsKey, MachineKey, Rejection};
use super::{Failure, Jump, SshCheck};
use crate::probe::target::{resolve, ResolveError};
use crate::probe::{Endpoint, TargetPolicy};

/// Why no TCP connection was made.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    /// Nothing answered at all: see [`crate::probe::Attempt::silent`].
    #[error("no connection within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("connect failed: {0}")]
    Failed(#[source] std::io::Error),
}

/// Why the SSH handshake (banner, key exchange, host key check) did not complete.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("no ssh handshake within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("ssh handshake failed: {0}")]
    Failed(#[source] russh::Error),
}

/// Why the key did not log in.
#[derive(Debug, thiserror::Error)]
enum AuthError {
    #[error("login failed: {0}")]
    Failed(#[source] russh::Error),
    #[error("login as `{user}` refused (public key {fingerprint})")]
    Refused { user: String, fingerprint: String },
}

/// What went wrong at the jump host, before the machine itself was reached.
#[derive(Debug, thiserror::Error)]
enum HopError {
    #[error(transparent)]
    Resolve(ResolveError),
    #[error(transparent)]
    Connect(ConnectError),
    /// The jump host's key check failed; `changed`: it differs from the one on record.
    #[error("{why}")]
    Key { why: String, changed: bool },
    #[error(transparent)]
    Login(AuthError),
    #[error("refused to tunnel to {0}: not within --allow-targets")]
    TunnelRefused(IpAddr),
    #[error("refused to tunnel to `{0}`: give the machine's address, not a name")]
    TunnelToName(String),
    #[error("could not open a tunnel to {host}:{port}: {source}")]
    Tunnel { host: String, port: u16, source: russh::Error },
}

/// A new connection to the machine, logged in as the probe's user with `key`.
pub(super) async fn open(
    check: &SshCheck,
    ctx: &SshContext,
    key: &Arc<PrivateKey>,
    endpoint: &Endpoint,
    policy: &TargetPolicy,
    limit: Option<Duration>,
    target: &str,
) -> Result<Connection, Failure> {
    let seen: Arc<Mutex<Option<KeySeen>>> = Arc::default();
    let verifier = MachineKey {
        policy: check.host_key,
        console: ctx.console_keys.clone(),
        accepted: ctx.accepted.clone(),
        target: format!("{}:{}", endpoint.host, endpoint.port),
        seen: seen.clone(),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        ..Default::default()
    });
    // An overlapping attempt waits only briefly for the banner (QEMU accepts forwarded connections
    // itself before the guest is up); others take the probe's own timeout.
    let first_sign = limit.unwrap_or(check.timeout);
    let (handle, jump) = match &check.jump {
        None => {
            let stream = direct(endpoint, policy, first_sign, target).await?;
            let handle = handshake(client::connect_stream(config, stream, verifier), first_sign).await;
            (handle.map_err(|e| rejected(e, &seen, target))?, None)
        }
        Some(jump) => {
            let at_hop = |e: HopError| hop_failure(jump, e);
            let jump_handle = jump_session(jump, key, policy, config.clone(), check.timeout).await.map_err(at_hop)?;
            let channel = tunnel(&jump_handle, endpoint, policy).await.map_err(at_hop)?;
            let handle = handshake(client::connect_stream(config, channel.into_stream(), verifier), first_sign).await;
            (handle.map_err(|e| rejected(e, &seen, target))?, Some(jump_handle))
        }
    };
    let mut handle = handle;
    authenticate(&mut handle, &check.user, key).await.map_err(|e| Failure::new(format!("{target}: {e}")))?;
    let host_key = seen.lock().ok().and_then(|s| s.as_ref().map(KeySeen::describe));
    Ok(Connection { handle, _jump: jump, host_key })
}

/// A TCP connection straight to the machine, once the target policy allows its address.
async fn direct(
    endpoint: &Endpoint,
    policy: &TargetPolicy,
    limit: Duration,
    target: &str,
) -> Result<tokio::net::TcpStream, Failure> {
    let addr = resolve(endpoint, policy).await.map_err(|e| Failure::new(e.to_string()))?;
    tcp(addr, limit).await.map_err(|e| Failure {
        silent: matches!(e, ConnectError::Timeout(_)),
        ..Failure::new(format!("{target}: {e}"))
    })
}

/// A failure at the jump host, named after it.
fn hop_failure(jump: &Jump, e: HopError) -> Failure {
    let hop = format!("jump host {}@{}:{}", jump.user, jump.host, jump.port);
    Failure { settled: matches!(e, HopError::Key { changed: true, .. }), ..Failure::new(format!("{hop}: {e}")) }
}

/// A logged-in connection to the jump host, its key checked against its known_hosts file.
async fn jump_session(
    jump: &Jump,
    key: &Arc<PrivateKey>,
    policy: &TargetPolicy,
    config: Arc<client::Config>,
    limit: Duration,
) -> Result<Handle<KnownHostsKey>, HopError> {
    let jump_endpoint = Endpoint { host: jump.host.clone(), port: jump.port };
    let addr = resolve(&jump_endpoint, policy).await.map_err(HopError::Resolve)?;
    let stream = tcp(addr, limit).await.map_err(HopError::Connect)?;
    let known = KnownHostsKey::new(jump.host.clone(), jump.port, jump.known_hosts.clone());
    let (verdict, changed) = (known.verdict.clone(), known.changed.clone());
    let mut handle = match handshake(client::connect_stream(config, stream, known), limit).await {
        Ok(handle) => handle,
        Err(e) => {
            let why = verdict.lock().ok().and_then(|v| v.clone()).unwrap_or_else(|| e.to_string());
            return Err(HopError::Key { why, changed: changed.load(Ordering::Relaxed) });
        }
    };
    authenticate(&mut handle, &jump.user, key).await.map_err(HopError::Login)?;
    Ok(handle)
}

/// A tunnel from the jump host to the machine.
async fn tunnel(
    jump: &Handle<KnownHostsKey>,
    endpoint: &Endpoint,
    policy: &TargetPolicy,
) -> Result<russh::Channel<client::Msg>, HopError> {
    // The tunnel's far end is held to the same policy as a direct connection: a jump host is not a
    // way around --allow-targets.
    match endpoint.host.parse::<IpAddr>() {
        Ok(ip) if !policy.allows(ip) => return Err(HopError::TunnelRefused(ip)),
        Ok(_) => {}
        Err(_) => return Err(HopError::TunnelToName(endpoint.host.clone())),
    }
    jump.channel_open_direct_tcpip(endpoint.host.clone(), u32::from(endpoint.port), "127.0.0.1", 0)
        .await
        .map_err(|source| HopError::Tunnel { host: endpoint.host.clone(), port: endpoint.port, source })
}

/// A TCP connection within `limit`.
async fn tcp(addr: SocketAddr, limit: Duration) -> Result<tokio::net::TcpStream, ConnectError> {
    match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => Err(ConnectError::Timeout(limit)),
        Ok(Err(e)) => Err(ConnectError::Failed(e)),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

/// The SSH handshake (banner, key exchange, host key check) within `limit`.
async fn handshake<H, F>(connect: F, limit: Duration) -> Result<Handle<H>, HandshakeError>
where
    H: client::Handler<Error = russh::Error>,
    F: Future<Output = Result<Handle<H>, russh::Error>>,
{
    match tokio::time::timeout(limit, connect).await {
        Err(_) => Err(HandshakeError::Timeout(limit)),
        Ok(Err(e)) => Err(HandshakeError::Failed(e)),
        Ok(Ok(handle)) => Ok(handle),
    }
}

/// A failed handshake, told apart by what the host key check found.
fn rejected(error: HandshakeError, seen: &Arc<Mutex<Option<KeySeen>>>, target: &str) -> Failure {
    let seen = seen.lock().ok().and_then(|s| s.clone());
    match seen.and_then(|s| s.rejection.clone().map(|r| (s, r))) {
        Some((key, Rejection::NotAnnounced)) => Failure::new(format!(
            "{target}: host key {} not yet announced on the console (no complete `SSH HOST KEY FINGERPRINTS` block yet)",
            key.describe()
        )),
        Some((key, Rejection::Mismatch(known))) => Failure {
            settled: true,
            ..Failure::new(format!("{target}: host key {} does not match {known}: refusing to log in", key.describe()))
        },
        None => Failure {
            silent: matches!(error, HandshakeError::Timeout(_)),
            ..Failure::new(format!("{target}: {error}"))
        },
    }
}

async fn authenticate<H: client::Handler>(
    handle: &mut Handle<H>,
    user: &str,
    key: &Arc<PrivateKey>,
) -> Result<(), AuthError> {
    let hash = if key.algorithm().is_rsa() {
        handle.best_supported_rsa_hash().await.map_err(AuthError::Failed)?.flatten()
    } else {
        None
    };
    let result = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), hash))
        .await
        .map_err(AuthError::Failed)?;
    if result.success() {
        Ok(())
    } else {
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        Err(AuthError::Refused { user: user.to_string(), fingerprint })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_that_heard_nothing_is_silent_and_may_be_tried_again() {
        let seen = Arc::default();
        let failure = rejected(HandshakeError::Timeout(Duration::from_secs(1)), &seen, "u@h:22");
        assert_eq!(failure.message, "u@h:22: no ssh handshake within 1s");
        assert!(failure.silent && !failure.settled);
    }

    #[test]
    fn a_host_key_that_does_not_match_settles_the_probe() {
        let rejection = Some(Rejection::Mismatch("the key accepted first".into()));
        let key = KeySeen { fingerprint: "SHA256:x".into(), algorithm: "ssh-ed25519".into(), rejection };
        let seen = Arc::new(Mutex::new(Some(key)));
        let error = HandshakeError::Failed(russh::Error::UnknownKey);
        let failure = rejected(error, &seen, "u@h:22");
        assert_eq!(
            failure.message,
            "u@h:22: host key SHA256:x (ssh-ed25519) does not match the key accepted first: refusing to log in"
        );
        assert!(failure.settled && !failure.silent);
    }
}
