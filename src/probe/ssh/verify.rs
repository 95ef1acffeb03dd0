//! Host key checks during the SSH handshake: the machine's key against what its console announced
//! (or the key accepted first, under `accept-new`), a jump host's against a known_hosts file. Each
//! check records what it saw, so that a refused handshake can say why.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::{HashAlg, PublicKeyOrCertificate};
use tokio::sync::watch;

use crate::probe::host_key::ConsoleHostKeys;
use crate::provider::lock;
use crate::spec::HostKeyPolicy;

/// The machine's host key as seen in the handshake, and why it was refused if it was.
#[derive(Debug, Clone)]
pub(super) struct KeySeen {
    pub fingerprint: String,
    pub algorithm: String,
    pub rejection: Option<Rejection>,
}

impl KeySeen {
    /// `SHA256:... (ssh-ed25519)`.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.fingerprint, self.algorithm)
    }
}

#[derive(Debug, Clone)]
pub(super) enum Rejection {
    /// The console has shown no fingerprints yet: try again later.
    NotAnnounced,
    /// What the key was checked against: the console's fingerprints, or the key accepted first.
    Mismatch(String),
}

/// Checks the machine's host key during the handshake.
pub(super) struct MachineKey {
    pub policy: HostKeyPolicy,
    pub console: watch::Receiver<ConsoleHostKeys>,
    pub accepted: Arc<Mutex<HashMap<String, String>>>,
    /// `host:port`, whose first key `accept-new` keeps.
    pub target: String,
    pub seen: Arc<Mutex<Option<KeySeen>>>,
}

impl MachineKey {
    /// Why `fingerprint` is refused under the policy, if it is.
    fn rejection(&self, fingerprint: &str) -> Option<Rejection> {
        match self.policy {
            HostKeyPolicy::Console => {
                let known = self.console.borrow().clone();
                if known.vouches_for(fingerprint) {
                    None
                } else if known.is_empty() {
                    Some(Rejection::NotAnnounced)
                } else {
                    let list: Vec<&str> = known.fingerprints.iter().map(String::as_str).collect();
                    Some(Rejection::Mismatch(format!("the console's fingerprints ({})", list.join(", "))))
                }
            }
            HostKeyPolicy::AcceptNew => {
                let mut accepted = lock(&self.accepted);
                match accepted.get(&self.target) {
                    None => {
                        accepted.insert(self.target.clone(), fingerprint.to_string());
                        None
                    }
                    Some(first) if first == fingerprint => None,
                    Some(first) => Some(Rejection::Mismatch(format!("the key accepted first ({first})"))),
                }
            }
        }
    }
}

impl client::Handler for MachineKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let data = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.key_data().clone(),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key().clone(),
        };
        let fingerprint = data.fingerprint(HashAlg::Sha256).to_string();
        let rejection = self.rejection(&fingerprint);
        let ok = rejection.is_none();
        let seen = KeySeen { fingerprint, algorithm: data.algorithm().to_string(), rejection };
        *lock(&self.seen) = Some(seen);
        Ok(ok)
    }
}

/// Checks a jump host's key against a known_hosts file.
pub(super) struct KnownHostsKey {
    pub host: String,
    pub port: u16,
    pub file: PathBuf,
    /// Why the key was refused, if it was.
    pub verdict: Arc<Mutex<Option<String>>>,
    /// The key differs from the one on record: no point trying again.
    pub changed: Arc<AtomicBool>,
}

impl KnownHostsKey {
    pub fn new(host: String, port: u16, file: PathBuf) -> KnownHostsKey {
        KnownHostsKey { host, port, file, verdict: Arc::default(), changed: Arc::default() }
    }
}

impl client::Handler for KnownHostsKey {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *lock(&self.verdict) = Some("host certificates are not supported for jump hosts".into());
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let why = match russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.file) {
            Ok(true) => return Ok(true),
            Ok(false) => format!("host key {fingerprint} is not in {}", self.file.display()),
            Err(russh::keys::Error::KeyChanged { line }) => {
                self.changed.store(true, Ordering::Relaxed);
                format!("host key {fingerprint} does not match {} line {line}: refusing to log in", self.file.display())
            }
            Err(e) => format!("failed to read {}: {e}", self.file.display()),
        };
        *lock(&self.verdict) = Some(why);
        Ok(false)
    }
}
