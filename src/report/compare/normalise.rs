//! Console lines made comparable across boots: what differs from one boot to the next (timestamps,
//! addresses, ids, counters) is replaced by a placeholder, so that the same line from another boot
//! normalises to the same text.
//!
//! Replaced, in this order (each placeholder holds no digit, so later rules leave it alone): kernel
//! `[    1.234567]` stamps, UUIDs and MAC addresses (before times, which a MAC of digits looks
//! like), dates and times (ISO 8601, syslog's `Dec  7`, `12:34:56`), IPv6 and IPv4 addresses (with a
//! port), `0x` hex numbers, EC2 ids (`i-`, `ami-`, `vol-`, `sg-`, `eni-`, `snap-`), pids in brackets
//! (`systemd[1]`), then every other number (`N`). Runs of blanks become one space.

use std::sync::OnceLock;

use regex::Regex;

/// The rules, in order: a pattern and what replaces it.
const RULES: &[(&str, &str)] = &[
    (r"^\s*\[\s*\d+\.\d+\]", "[T]"),
    (r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<uuid>"),
    (r"(?i)\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b", "<mac>"),
    (r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?\b", "<time>"),
    (r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{1,2}\b", "<date>"),
    (r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "<time>"),
    (r"(?i)\b[0-9a-f]{1,4}(?::[0-9a-f]{0,4}){2,7}\b|::(?:ffff:)?[0-9a-f]{1,4}\b", "<ip>"),
    (r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", "<ip>"),
    (r"(?i)\b0x[0-9a-f]+\b", "<hex>"),
    (r"(?i)\b(?:i|ami|vol|sg|eni|snap)-[0-9a-f]{8,17}\b", "<id>"),
    (r"\[\d+\]", "[<pid>]"),
    (r"\d+", "N"),
    (r"\s+", " "),
];

fn rules() -> &'static [(Regex, &'static str)] {
    static RULES_COMPILED: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RULES_COMPILED.get_or_init(|| {
        RULES.iter().map(|(pattern, with)| (Regex::new(pattern).expect("a valid built-in pattern"), *with)).collect()
    })
}

/// The line with what changes between boots replaced.
pub fn normalise(line: &str) -> String {
    let mut text = line.trim().to_owned();
    for (pattern, with) in rules() {
        text = pattern.replace_all(&text, *with).into_owned();
    }
    text
}

/// A line worth reporting when new: a warning or an error (`warn`, `error`, `fail`, `panic`, `oops`,
/// `call trace`, `timed out`, whatever the case).
pub fn is_warning(line: &str) -> bool {
    static WARNING: OnceLock<Regex> = OnceLock::new();
    WARNING
        .get_or_init(|| {
            Regex::new(r"(?i)warn|error|fail|panic|oops|call trace|timed out").expect("a valid built-in pattern")
        })
        .is_match(line)
}

/// Lines that come and go between boots of the same build, whatever the build: never new. The
/// kernel's fast TSC calibration fails or not depending on how busy the host is (under QEMU's TCG
/// and on shared cloud hosts alike), and then it falls back to a slower one.
const NOISE: [&str; 2] = [r"tsc: Fast TSC calibration (failed|using PIT)", r"tsc: Marking TSC unstable"];

/// Console lines a comparison never counts as new: [`NOISE`] and the user's own patterns (regular
/// expressions, matched against the raw line anywhere in it).
#[derive(Debug, Clone)]
pub struct Ignored(Vec<Regex>);

impl Ignored {
    pub fn new(patterns: &[String]) -> Result<Ignored, regex::Error> {
        let all = NOISE.iter().map(|p| p.to_string()).chain(patterns.iter().cloned());
        all.map(|p| Regex::new(&p)).collect::<Result<Vec<_>, _>>().map(Ignored)
    }

    pub fn matches(&self, line: &str) -> bool {
        self.0.iter().any(|r| r.is_match(line))
    }
}

impl Default for Ignored {
    /// [`NOISE`] only.
    fn default() -> Self {
        Ignored::new(&[]).expect("the built-in patterns are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_and_the_user_s_patterns_are_ignored() {
        let ignored = Ignored::new(&["ACPI BIOS Error".to_string()]).unwrap();
        assert!(ignored.matches("[    0.000000] tsc: Fast TSC calibration failed"));
        assert!(ignored.matches("[    0.52] ACPI BIOS Error (bug): Could not resolve symbol"));
        assert!(!ignored.matches("[    3.5] WARNING: CPU: 0 PID: 1 at drivers/foo.c:12"));
        assert!(Ignored::new(&["(".to_string()]).is_err());
    }

    /// Two boots' versions of a line normalise to the same text, and that text is `expected`.
    fn same(a: &str, b: &str, expected: &str) {
        assert_eq!(normalise(a), expected, "{a}");
        assert_eq!(normalise(b), expected, "{b}");
    }

    #[test]
    fn kernel_stamps_and_hex_addresses() {
        same(
            "[    1.234567] WARNING: CPU: 0 PID: 1 at mm/page_alloc.c:5525 __alloc_pages+0x2f1/0x330",
            "[   12.000001] WARNING: CPU: 1 PID: 213 at mm/page_alloc.c:5525 __alloc_pages+0x2e1/0x330",
            "[T] WARNING: CPU: N PID: N at mm/page_alloc.c:N __alloc_pages+<hex>/<hex>",
        );
    }

    #[test]
    fn systemd_pids_and_syslog_dates() {
        same(
            "Dec  7 01:02:03 host systemd[1]: Failed to start chronyd.service - NTP client/server.",
            "Dec 16 23:59:59 host systemd[1342]: Failed to start chronyd.service - NTP client/server.",
            "<date> <time> host systemd[<pid>]: Failed to start chronyd.service - NTP client/server.",
        );
    }

    #[test]
    fn cloud_init_with_iso_times_addresses_and_ids() {
        same(
            "2026-12-06 01:00:01,123 - util.py[WARNING]: Failed to reach 169.254.169.254:80 for i-0abc1234def567890",
            "2026-12-07 01:00:09,987 - util.py[WARNING]: Failed to reach 10.0.3.17:80 for i-0fff9999aaa000111",
            "<time> - util.py[WARNING]: Failed to reach <ip> for <id>",
        );
    }

    #[test]
    fn macs_uuids_and_ipv6() {
        same(
            "ens5: error: link 0a:1b:2c:3d:4e:5f fe80::81b:2cff:fe3d:4e5f uuid 123e4567-e89b-12d3-a456-426614174000",
            "ens5: error: link 0a:ff:2c:3d:00:01 fe80::8ff:2cff:fe3d:1 uuid 9b2e4567-aaaa-42d3-b456-000014174999",
            "ensN: error: link <mac> <ip> uuid <uuid>",
        );
    }

    #[test]
    fn a_different_message_stays_different() {
        assert_ne!(normalise("[ 1.0] EXT4-fs error (device vda1)"), normalise("[ 1.0] XFS error (device vda1)"));
    }

    #[test]
    fn warning_patterns_ignore_case() {
        for line in ["WARNING: x", "kernel panic", "Oops: 0000", "Call Trace:", "request timed out", "FAILED"] {
            assert!(is_warning(line), "{line}");
        }
        assert!(!is_warning("Reached target multi-user.target"));
    }
}
