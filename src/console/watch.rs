//! The console followed while the machine runs: when each line was first seen, and the first fatal
//! sign among them, so that a broken machine is stopped at once instead of probed until its deadline.

use super::{ConsoleFinding, ConsoleRules};

/// The console as it grows while the machine runs: when each line was first seen, and the first
/// fatal sign, so that a broken machine is stopped at once instead of probed until its deadline.
#[derive(Debug, Default)]
pub struct ConsoleWatch {
    /// Seconds since launch at which each complete line was first seen, by line index.
    first_seen: Vec<f64>,
    /// The last line while it has no newline yet, and when it was first seen as it is.
    tail: Option<(String, f64)>,
    /// Every `must_contain` text has been on the console (a prompt without its newline counts).
    required_seen: bool,
    /// Where the required lines are looked for: after this byte of the log (a reboot starts a new
    /// boot, which must show them again); `None` before any reboot.
    required_after: Option<usize>,
    /// The log's length at the last scan.
    scanned_len: usize,
}

/// A fatal line seen while the machine ran.
#[derive(Debug, Clone, PartialEq)]
pub struct FatalSign {
    pub rule: String,
    pub line: usize,
    pub text: String,
    pub at_s: f64,
}

impl ConsoleWatch {
    /// Looks at the lines added to the (cleaned) log since the last call, stamping them with `at_s`;
    /// returns the first fatal sign among them.
    pub fn scan(&mut self, rules: &ConsoleRules, log: &str, at_s: f64) -> Option<FatalSign> {
        // The last line is incomplete until its newline arrives: a pattern may still be cut in two.
        let (complete, tail) = match log.rfind('\n') {
            Some(end) => (&log[..end], &log[end + 1..]),
            None => ("", log),
        };
        self.scanned_len = log.len();
        if !self.required_seen {
            self.required_seen = self.missing_since_reboot(rules, log).is_empty();
        }
        let mut sign = None;
        for (index, line) in complete.lines().enumerate().skip(self.first_seen.len()) {
            self.first_seen.push(at_s);
            if sign.is_none() {
                sign = fatal(rules, index + 1, line, at_s);
            }
        }
        // A tail that stays as it is over two reads is a prompt waiting for input (`(initramfs) `, a
        // rescue shell's): it will never get its newline, so it is checked as it stands.
        self.tail = match self.tail.take() {
            _ if tail.is_empty() => None,
            Some((seen, since)) if seen == tail => {
                if sign.is_none() {
                    sign = fatal(rules, self.first_seen.len() + 1, tail, since);
                }
                Some((seen, since))
            }
            _ => Some((tail.to_string(), at_s)),
        };
        sign
    }

    /// From now on the required lines must appear again, after the lines seen so far: the machine
    /// was rebooted.
    pub fn require_again(&mut self) {
        self.required_seen = false;
        self.required_after = Some(self.scanned_len);
    }

    /// When each complete line was first seen, in seconds since launch, by line index.
    pub fn first_seen(&self) -> &[f64] {
        &self.first_seen
    }

    /// Whether the machine was rebooted since the console was first watched.
    pub fn rebooted(&self) -> bool {
        self.required_after.is_some()
    }

    /// The `must_contain` texts not in the log since the last reboot (since the start without one).
    pub fn missing_since_reboot<'r>(&self, rules: &'r ConsoleRules, log: &str) -> Vec<&'r str> {
        let since = log.get(self.required_after.unwrap_or(0)..).unwrap_or_default();
        rules
            .must_contain
            .iter()
            .filter(|text| !since.lines().any(|l| l.contains(text.as_str())))
            .map(String::as_str)
            .collect()
    }

    /// Whether every `must_contain` text was on the console at the last scan (true without any).
    pub fn required_seen(&self, rules: &ConsoleRules) -> bool {
        self.required_seen || rules.must_contain.is_empty()
    }

    /// Adds when each hit's line was first seen to the findings of a final check.
    pub fn stamp(&self, findings: &mut [ConsoleFinding]) {
        let tail_seen = self.tail.as_ref().map(|(_, since)| *since);
        for hit in findings.iter_mut().flat_map(|f| f.hits.iter_mut()) {
            hit.first_seen_s = match self.first_seen.get(hit.line - 1) {
                Some(at) => Some(*at),
                None if hit.line - 1 == self.first_seen.len() => tail_seen,
                None => None,
            };
        }
    }
}

fn fatal(rules: &ConsoleRules, line: usize, text: &str, at_s: f64) -> Option<FatalSign> {
    rules.fatal_rule(text).map(|rule| FatalSign { rule: rule.to_string(), line, text: text.trim().to_string(), at_s })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::tests::rules;

    #[test]
    fn the_watch_finds_the_first_fatal_line_once_complete_and_stamps_it() {
        let rules = rules("must_not_contain: ['segfault']");
        let mut watch = ConsoleWatch::default();
        assert_eq!(watch.scan(&rules, "boot\nKernel panic - not sync", 1.0), None, "an incomplete line waits");
        let sign = watch.scan(&rules, "boot\nKernel panic - not syncing: VFS\napp segfault\n", 2.5).unwrap();
        assert_eq!((sign.rule.as_str(), sign.line, sign.at_s), ("kernel panic", 2, 2.5));
        assert_eq!(watch.scan(&rules, "boot\nKernel panic - not syncing: VFS\napp segfault\n", 3.0), None);
        let mut findings = rules.check("boot\nKernel panic - not syncing: VFS\napp segfault\n");
        watch.stamp(&mut findings);
        let panic = findings.iter().find(|f| f.rule == "kernel panic").unwrap();
        assert_eq!(panic.hits[0].first_seen_s, Some(2.5));
    }

    #[test]
    fn required_lines_are_seen_once_all_are_there_prompts_included() {
        let required = rules("must_contain: ['Reached target', 'login:']");
        let mut watch = ConsoleWatch::default();
        assert!(!watch.required_seen(&required));
        watch.scan(&required, "[  OK  ] Reached target multi-user.target\n", 1.0);
        assert!(!watch.required_seen(&required), "login: is still missing");
        watch.scan(&required, "[  OK  ] Reached target multi-user.target\n\ndebian login: ", 2.0);
        assert!(watch.required_seen(&required));
        assert!(ConsoleWatch::default().required_seen(&rules("")), "nothing required");
    }

    #[test]
    fn firmware_with_nothing_to_boot_is_fatal() {
        let rules = rules("");
        let log = "BdsDxe: failed to load Boot0001 \"UEFI Misc Device\": Not Found\r\nUEFI Interactive Shell v2.2\n";
        let sign = ConsoleWatch::default().scan(&rules, log, 9.0).map(|s| s.rule);
        assert_eq!(sign.as_deref(), Some("nothing to boot"));
        let sign = ConsoleWatch::default().scan(&rules, "Booting from Hard Disk...\nNo bootable device.\n", 2.0);
        assert_eq!(sign.map(|s| s.rule).as_deref(), Some("nothing to boot"));
    }

    #[test]
    fn a_prompt_without_a_newline_is_checked_once_it_stays() {
        let rules = rules("");
        let mut watch = ConsoleWatch::default();
        let log = "Begin: Mounting root\nGave up waiting for root file system device.\n(initramfs) ";
        let sign = watch.scan(&rules, log, 1.0).unwrap();
        assert_eq!(sign.rule, "dracut or initramfs shell", "the complete line first");
        let mut watch = ConsoleWatch::default();
        let log = "boot\n(initramfs) ";
        assert_eq!(watch.scan(&rules, log, 1.0), None, "it may still change");
        let sign = watch.scan(&rules, log, 2.0).unwrap();
        assert_eq!((sign.line, sign.at_s), (2, 1.0));
    }
}
