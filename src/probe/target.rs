//! Where a probe may connect: the [`TargetPolicy`] (`--allow-targets`), checked on every address a
//! provider's host resolves to, right before connecting.

use std::net::{IpAddr, SocketAddr};

use super::Endpoint;

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

/// Why an endpoint gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("refused to contact {0}: not within --allow-targets")]
    Refused(IpAddr),
    #[error("failed to resolve {host}: {source}")]
    Lookup { host: String, source: std::io::Error },
    #[error("{0} resolves to no address")]
    NoAddress(String),
}

/// The address to connect to for `endpoint`, once the policy allows it.
pub(crate) async fn resolve(endpoint: &Endpoint, policy: &TargetPolicy) -> Result<SocketAddr, ResolveError> {
    // An address needs no lookup: `lookup_host` would take a blocking thread for each attempt.
    if let Ok(ip) = endpoint.host.parse::<IpAddr>() {
        if !policy.allows(ip) {
            return Err(ResolveError::Refused(ip));
        }
        return Ok(SocketAddr::new(ip, endpoint.port));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|source| ResolveError::Lookup { host: endpoint.host.clone(), source })?
        .collect();
    // Every address the name resolves to must be allowed: a name is not a way around the policy.
    if let Some(denied) = addrs.iter().find(|a| !policy.allows(a.ip())) {
        return Err(ResolveError::Refused(denied.ip()));
    }
    addrs.into_iter().next().ok_or_else(|| ResolveError::NoAddress(endpoint.host.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_addresses_within_the_policy_are_contacted() {
        let policy = TargetPolicy { allowed: vec!["127.0.0.0/8".parse().unwrap()] };
        let outside = Endpoint { host: "10.0.0.1".into(), port: 22 };
        let refused = resolve(&outside, &policy).await.unwrap_err();
        assert_eq!(refused.to_string(), "refused to contact 10.0.0.1: not within --allow-targets");
        let inside = Endpoint { host: "127.0.0.1".into(), port: 22 };
        assert_eq!(resolve(&inside, &policy).await.unwrap(), "127.0.0.1:22".parse().unwrap());
    }
}
