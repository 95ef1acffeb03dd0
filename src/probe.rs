//! Probes: checks of a running machine over the network (TCP, HTTP, RDP, and commands over SSH) or
//! through its platform's agent (commands, no port), compiled from the spec and retried until their
//! deadline.
//!
//! A probe never picks its own target: the provider says where a guest port is reachable, and a
//! [`TargetPolicy`] must allow the address before any packet is sent, so that no spec can be turned
//! into a scanner of somebody else's network.
//!
//! Here: what a probe is and what one attempt of it records. `compile` makes probes from the spec,
//! `attempt` runs one attempt of any kind (one module a kind: `tcp`, `http`, `rdp`, `ssh`,
//! `agent`, `windows_password`), `schedule` runs a probe's attempts on its cadence (overlapping while the
//! target has given no sign), and `target` holds the policy on addresses.

mod agent;
mod attempt;
mod compile;
mod expect;
pub mod host_key;
mod http;
mod rdp;
pub mod schedule;
pub mod ssh;
mod target;
mod tcp;
mod windows_password;

use std::time::Duration;

use regex::Regex;
use serde_json_path::JsonPath;

use crate::spec::{HttpMethod, HttpScheme, StatusMatcher};

pub use crate::provider::{ConnectMeaning, Endpoint};
pub use agent::AgentCheck;
pub use attempt::{attempt, ProbeEnv, Session};
pub use compile::CompileContext;
pub use http::HttpExchange;
pub use ssh::{SshCheck, SshContext, SshExchange};
pub use target::TargetPolicy;

/// Where a probe's attempts go: a guest port over the network, or the machine's own agent.
#[derive(Clone)]
pub enum Target {
    Port(Endpoint),
    Agent(std::sync::Arc<dyn crate::provider::Agent>),
}

impl Target {
    /// As the report shows it: `host:port`, or the agent's channel.
    pub fn shown(&self) -> String {
        match self {
            Target::Port(e) => format!("{}:{}", e.host, e.port),
            Target::Agent(agent) => agent.channel().to_string(),
        }
    }
}

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
    /// A command run inside the machine by the platform's agent.
    Agent(Box<AgentCheck>),
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

impl Probe {
    /// The guest port this probe connects to; `None` for commands through the agent, which need
    /// no port.
    pub fn port(&self) -> Option<u16> {
        match &self.check {
            Check::Tcp(t) => Some(t.port),
            Check::Http(h) => Some(h.port),
            Check::Ssh(s) => Some(s.port),
            Check::Agent(_) => None,
            Check::Rdp { port } => Some(*port),
            // Asked of the platform's API, not the machine: RDP's port stands for it in reports.
            Check::WindowsPassword => Some(3389),
        }
    }

    /// Whether its attempts go through the machine's agent.
    pub fn through_agent(&self) -> bool {
        matches!(self.check, Check::Agent(_))
    }

    pub fn kind(&self) -> &'static str {
        match &self.check {
            Check::Tcp(_) => "tcp",
            Check::Http(_) => "http",
            Check::Ssh(_) => "ssh",
            Check::Agent(_) => "agent",
            Check::Rdp { .. } => "rdp",
            Check::WindowsPassword => "windows_password",
        }
    }
}

/// One try of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// Seconds since launch when the attempt started.
    pub at_s: f64,
    pub passed: bool,
    /// What was seen, as a lowercase fragment: "status 503, expected 200".
    pub message: String,
    pub latency_ms: u64,
    pub exchange: Option<HttpExchange>,
    /// The SSH command and what it wrote.
    pub ssh: Option<SshExchange>,
    /// Trying again can't help (a host key that doesn't match): the probe fails now.
    pub settled: bool,
    /// The platform refused what the probe asked of it (with `settled`): the cell ends in error,
    /// the image is not to blame.
    pub platform: bool,
    /// Nothing at all came back before the time ran out: no data, no refusal, no close. What a
    /// port forwarded by QEMU looks like while the guest is not up yet.
    pub silent: bool,
}
