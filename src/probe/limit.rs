//! How long one attempt may wait for a first sign of the guest while it has never given one: short
//! at first, then longer after each silent attempt, up to the probe's own timeouts.

use std::time::Duration;

use super::{rdp, tcp, Check, Probe};

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

#[cfg(test)]
mod tests {
    use crate::probe::compile::tests::probe;
    use std::time::Duration;

    #[test]
    fn the_first_sign_limit_grows_until_it_is_the_probes_own() {
        let p = probe("name: h\nhttp: {port: 80, timeout: 5s}\ninterval: 2s");
        let limits: Vec<Option<Duration>> = (0..4).map(|n| p.attempt_limit(Some(n))).collect();
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(limits, [secs(1), secs(2), secs(4), None]);
        assert_eq!(p.attempt_limit(None), None, "once answered, the probe's own timeouts");
    }
}
