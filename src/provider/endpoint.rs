//! Where a probe reaches a guest port, and how far a provider's network can be trusted to tell a
//! listener from no listener: what a machine tells the probes.

use serde::{Deserialize, Serialize};

/// Where a probe connects: a host (name or address) and a port, as the provider reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
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

/// Why a guest port can't be reached from here, as a lowercase fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);
