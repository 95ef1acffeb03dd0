//! A cell's SSH connections: one per way of logging in (user, port, key, jump host, host key
//! policy), shared by the probes that log in that way and made again once it has died.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::Handle;
use russh::keys::{HashAlg, PrivateKey};
use tokio::sync::watch;

use super::verify::{KnownHostsKey, MachineKey};
use super::{connect, Failure, SshCheck};
use crate::probe::host_key::ConsoleHostKeys;
use crate::probe::{Endpoint, TargetPolicy};
use crate::provider::lock;

/// A cell's SSH state: the run's key, the host keys its console announced (kept current by the
/// engine as it reads the console), the key accepted under `accept-new`, and open connections.
pub struct SshContext {
    pub run_key: Option<Arc<PrivateKey>>,
    pub console_keys: watch::Receiver<ConsoleHostKeys>,
    pub secrets: Arc<Vec<String>>,
    /// Under `accept-new`: the key first seen at each `host:port`.
    pub(super) accepted: Arc<Mutex<HashMap<String, String>>>,
    /// Per way of logging in, its open connection, if any.
    connections: Mutex<HashMap<String, Arc<Connection>>>,
}

/// A logged-in connection to the machine.
pub(super) struct Connection {
    pub handle: Handle<MachineKey>,
    /// Kept open while the connection through it is used.
    pub _jump: Option<Handle<KnownHostsKey>>,
    /// The machine's host key as [`super::SshExchange::host_key`] shows it.
    pub host_key: Option<String>,
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
        lock(&self.connections).clear();
    }

    /// Drops the connection of one way of logging in: it died, and the next attempt makes another.
    /// Only `dead` itself: another attempt may have logged in anew meanwhile.
    pub(super) fn forget(&self, check: &SshCheck, endpoint: &Endpoint, key: &PrivateKey, dead: &Arc<Connection>) {
        let mut open = lock(&self.connections);
        let id = connection_key(check, endpoint, key);
        if open.get(&id).is_some_and(|known| Arc::ptr_eq(known, dead)) {
            open.remove(&id);
        }
    }

    /// `text` with the spec's secrets masked.
    pub(in crate::probe) fn mask(&self, text: &str) -> String {
        crate::text::mask(text, &self.secrets)
    }
}

/// What tells one way of logging in from another.
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

/// The cell's open connection for this way of logging in, or a new one.
///
/// Nothing waits for another attempt's connecting: while the machine is silent, a probe's attempts
/// overlap (see `probe::schedule`), and a newer one must not queue behind an older one stuck on a
/// dropped SYN. Several may log in at once then; the first to finish is kept and shared, the others
/// use it and close their own.
pub(super) async fn connection(
    check: &SshCheck,
    ctx: &SshContext,
    key: &Arc<PrivateKey>,
    endpoint: &Endpoint,
    policy: &TargetPolicy,
    limit: Option<Duration>,
    target: &str,
) -> Result<Arc<Connection>, Failure> {
    let id = connection_key(check, endpoint, key);
    let live = |c: &&Arc<Connection>| !c.handle.is_closed();
    if let Some(known) = lock(&ctx.connections).get(&id).filter(live) {
        return Ok(known.clone());
    }
    let connection = Arc::new(connect::open(check, ctx, key, endpoint, policy, limit, target).await?);
    let known = {
        let mut open = lock(&ctx.connections);
        match open.get(&id).filter(live) {
            Some(known) => known.clone(),
            None => {
                open.insert(id, connection.clone());
                return Ok(connection);
            }
        }
    };
    // Another attempt logged in first: ours is closed at once rather than left to linger.
    let _ = connection.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    Ok(known)
}
