//! Console log assertions: what must and must not appear, plus built-in signs of a broken boot.
//!
//! The built-in set exists because a machine can boot, answer on its ports and still be broken: the
//! seed of this project was an image whose files failed with I/O errors while it looked fine.

use regex::Regex;

use crate::spec::{ConsoleSpec, FieldPath, Os, Problem};

/// Built-in failure patterns: (name, regex), most telling first. When several match, the cell's
/// reason names the first of this list: a panic or an emergency shell is the cause, a call trace or
/// an I/O error often the symptom around it.
const BUILTIN: &[(&str, &str)] = &[
    // GRUB's own errors that stop a boot come before the kernel they failed to load panics ("VFS:
    // Unable to mount root fs on unknown-block(0,0)" after an initrd that did not fit in memory).
    // Only those: GRUB also prints harmless ones (a missing font file) on boots that go on.
    (
        "boot loader error",
        r"^error: (\S+:\d+:)?(out of memory|you need to load the kernel first)|Failed to boot both default and fallback entries|grub rescue>",
    ),
    ("kernel panic", r"Kernel panic - not syncing"),
    // OVMF's own words on the serial console when no disk holds a boot loader it can start: it falls
    // back to its shell. (SeaBIOS says "No bootable device" on the screen only: see
    // provider/qemu/firmware.rs.)
    ("nothing to boot", r"No bootable device|BdsDxe: No bootable option|UEFI Interactive Shell"),
    ("emergency or rescue shell", r"(?i)(you are in (emergency|rescue) mode|entering (emergency|rescue) mode)"),
    (
        "dracut or initramfs shell",
        r"Dropping to debug shell|dracut-initqueue\[\d+\]: Warning: Could not boot|\(initramfs\)\s|Gave up waiting for root",
    ),
    ("kernel oops", r"\bOops(: | - )|BUG: unable to handle"),
    ("out of memory", r"Out of memory: Kill|invoked oom-killer"),
    ("file system error", r"(EXT4-fs|XFS|BTRFS)( \([^)]*\))?:? .*(error|corruption|Corruption)"),
    ("I/O error", r"I/O error"),
    ("soft or hard lockup", r"soft lockup|hard LOCKUP"),
    ("call trace", r"Call Trace:"),
];

/// The line EC2Launch (v1 and v2) and EC2Config print once Windows is ready: with `os: windows` a
/// console must show it (a built-in `must_contain`).
pub const WINDOWS_READY: &str = "Windows is Ready to use";

/// Built-in failure patterns of Windows on EC2, after the Linux ones (which never match there): the
/// messages EC2Launch v2 prints on the console when it gives up (its documented message list). Not
/// any line with "Error" in it: a good boot prints `EC2LaunchTelemetry: AgentCommandErrorCode=1`.
/// EC2Launch v1 writes its failures to its log file only; such a boot just never shows
/// [`WINDOWS_READY`].
const WINDOWS_BUILTIN: &[(&str, &str)] = &[
    (
        "ec2launch stopped",
        r"Error EC2Launch service is stopping|Error (setting up EC2Launch agent folders|initializing service)",
    ),
    ("ec2launch: no metadata", r"Metadata is not available for this instance|Timed out waiting for access to metadata"),
    ("ec2launch: bad administrator account", r"Invalid administrator (username|password)"),
];

#[derive(Debug, Clone)]
pub struct ConsoleRules {
    must_contain: Vec<String>,
    must_not_contain: Vec<String>,
    builtin: Vec<(&'static str, Regex)>,
    ignore: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    MustContain,
    MustNotContain,
    Builtin,
}

/// The outcome of one rule on one console log.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleFinding {
    pub kind: RuleKind,
    /// The pattern as written, or the built-in rule's name.
    pub rule: String,
    pub passed: bool,
    /// The lines (1-based) that matched, with their text; at most [`MAX_HITS`].
    pub hits: Vec<ConsoleHit>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleHit {
    pub line: usize,
    pub text: String,
    /// Seconds since the cell's launch when the line was first seen on the console (known for lines
    /// that appeared while the machine ran; the console is polled, so it is late by up to a poll).
    pub first_seen_s: Option<f64>,
}

impl ConsoleFinding {
    /// A failed rule that means the machine is broken whatever the probes say.
    pub fn is_fatal(&self) -> bool {
        !self.passed && self.kind != RuleKind::MustContain
    }

    /// How telling a failed finding is, lowest first: built-in signs in [`BUILTIN`]'s order, then the
    /// spec's own forbidden lines, then a missing line (often only the consequence of the others).
    pub fn rank(&self) -> (u8, usize) {
        match self.kind {
            RuleKind::Builtin => {
                let all = BUILTIN.iter().chain(WINDOWS_BUILTIN);
                (0, all.clone().position(|(name, _)| *name == self.rule).unwrap_or(all.count()))
            }
            RuleKind::MustNotContain => (1, self.hits.first().map_or(usize::MAX, |h| h.line)),
            RuleKind::MustContain => (2, 0),
        }
    }

    /// The finding as the one-line reason of a cell.
    pub fn reason(&self) -> String {
        match self.kind {
            RuleKind::MustContain => format!("console never showed `{}`", self.rule),
            _ => {
                let hit =
                    self.hits.first().map(|h| format!(" at line {}: {}", h.line, h.text.trim())).unwrap_or_default();
                format!("console matched `{}`{hit}", self.rule)
            }
        }
    }
}

const MAX_HITS: usize = 20;

impl ConsoleRules {
    pub fn compile(spec: &ConsoleSpec, os: Os, path: &FieldPath, problems: &mut Vec<Problem>) -> ConsoleRules {
        for (key, list) in [
            ("must_contain", &spec.must_contain),
            ("must_not_contain", &spec.must_not_contain),
            ("ignore", &spec.ignore),
        ] {
            for (i, pattern) in list.iter().enumerate() {
                if pattern.is_empty() {
                    problems.push(Problem::at(path.key(key).index(i), "empty pattern matches every line"));
                }
            }
        }
        let windows = os == Os::Windows && spec.builtin;
        let builtin = match spec.builtin {
            true => BUILTIN.iter().chain(if windows { WINDOWS_BUILTIN } else { &[] }),
            false => [].iter().chain(&[]),
        };
        let builtin = builtin.filter_map(|(name, re)| Regex::new(re).ok().map(|r| (*name, r))).collect();
        let mut must_contain = spec.must_contain.clone();
        if windows && !must_contain.iter().any(|l| l == WINDOWS_READY) {
            must_contain.push(WINDOWS_READY.to_string());
        }
        ConsoleRules {
            must_contain,
            must_not_contain: spec.must_not_contain.clone(),
            builtin,
            ignore: spec.ignore.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.must_contain.is_empty() && self.must_not_contain.is_empty() && self.builtin.is_empty()
    }

    /// The rule a line breaks, if it is a fatal sign (built-in or `must_not_contain`, not exempt).
    fn fatal_rule(&self, line: &str) -> Option<&str> {
        if self.ignore.iter().any(|i| line.contains(i.as_str())) {
            return None;
        }
        self.builtin
            .iter()
            .find(|(_, re)| re.is_match(line))
            .map(|(name, _)| *name)
            .or_else(|| self.must_not_contain.iter().find(|p| line.contains(p.as_str())).map(String::as_str))
    }

    /// Checks a whole console log. Every rule yields a finding, passed or not.
    pub fn check(&self, log: &str) -> Vec<ConsoleFinding> {
        let lines: Vec<(usize, &str)> =
            log.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r'))).collect();
        let exempt = |line: &str| self.ignore.iter().any(|i| line.contains(i.as_str()));
        let hits = |matches: &dyn Fn(&str) -> bool, skip_exempt: bool| -> Vec<ConsoleHit> {
            lines
                .iter()
                .filter(|(_, l)| matches(l) && !(skip_exempt && exempt(l)))
                .take(MAX_HITS)
                .map(|(n, l)| ConsoleHit { line: *n, text: l.to_string(), first_seen_s: None })
                .collect()
        };
        let mut findings = Vec::new();
        for pattern in &self.must_contain {
            let found = hits(&|l| l.contains(pattern.as_str()), false);
            findings.push(ConsoleFinding {
                kind: RuleKind::MustContain,
                rule: pattern.clone(),
                passed: !found.is_empty(),
                hits: found,
            });
        }
        for pattern in &self.must_not_contain {
            let found = hits(&|l| l.contains(pattern.as_str()), true);
            findings.push(ConsoleFinding {
                kind: RuleKind::MustNotContain,
                rule: pattern.clone(),
                passed: found.is_empty(),
                hits: found,
            });
        }
        for (name, re) in &self.builtin {
            let found = hits(&|l| re.is_match(l), true);
            findings.push(ConsoleFinding {
                kind: RuleKind::Builtin,
                rule: name.to_string(),
                passed: found.is_empty(),
                hits: found,
            });
        }
        findings
    }
}

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

/// The console as a person reads it: ANSI escape sequences (colours, cursor moves, titles) and
/// control characters removed, `\n` and `\t` kept. Guests print these freely (systemd colours its
/// status lines); matching, reports and the terminal all use this text. The raw bytes stay on disk.
pub fn clean(raw: &[u8]) -> String {
    struct Text(String);
    impl vte::Perform for Text {
        fn print(&mut self, c: char) {
            // C1 controls and other non-printing characters that the parser passes through.
            if !c.is_control() {
                self.0.push(c);
            }
        }
        fn execute(&mut self, byte: u8) {
            if byte == b'\t' {
                self.0.push('\t');
            }
        }
    }
    let mut text = Text(String::with_capacity(raw.len()));
    // A line at a time, with a fresh parser: a stray or hostile string sequence (OSC, DCS, APC run
    // until their terminator) must not swallow the lines after it, a panic among them.
    for (i, line) in raw.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            text.0.push('\n');
        }
        vte::Parser::new().advance(&mut text, line);
    }
    text.0
}

/// Text from outside amiprobe (a guest, an API error) made safe for a terminal: one line, no
/// escape sequences or control characters.
pub fn printable(text: &str) -> String {
    clean(text.as_bytes()).replace(['\n', '\t'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> ConsoleRules {
        let spec: ConsoleSpec = serde_yaml::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        let rules = ConsoleRules::compile(&spec, Os::Linux, &FieldPath::root(), &mut problems);
        assert!(problems.is_empty());
        rules
    }

    #[test]
    fn finds_required_forbidden_and_builtin_lines() {
        let log =
            "boot\nblk_update_request: I/O error, dev vda, sector 0\nlogin: \n[ 1.0] Kernel panic - not syncing: VFS\n";
        let findings = rules("must_contain: ['login:']\nmust_not_contain: ['sector 0']").check(log);
        let failed: Vec<(&str, Vec<usize>)> = findings
            .iter()
            .filter(|f| !f.passed)
            .map(|f| (f.rule.as_str(), f.hits.iter().map(|h| h.line).collect()))
            .collect();
        assert_eq!(failed, [("sector 0", vec![2]), ("kernel panic", vec![4]), ("I/O error", vec![2])]);
        assert!(findings.iter().any(|f| f.rule == "login:" && f.passed && f.hits[0].line == 3));
    }

    #[test]
    fn colour_codes_and_control_characters_are_removed() {
        let raw = b"[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mlighttpd.service\x1b[0m - Lighttpd.\r\n\x1b]0;title\x07a\tb\x08\x07c\n";
        assert_eq!(clean(raw), "[  OK  ] Started lighttpd.service - Lighttpd.\na\tbc\n");
        let findings = rules("must_contain: ['Started lighttpd.service']").check(&clean(raw));
        assert!(findings[0].passed);
        assert_eq!(printable("FAIL\x1b[2J\x1b]0;pwned\x07 line\nnext"), "FAIL line next");
        // An unterminated string sequence ends with its line, not with the log.
        let noisy = b"noise \x1b]garbage\nline2\x1bPdcs\n[ 4.2] Kernel panic - not syncing: x\nlogin:\n";
        assert_eq!(clean(noisy), "noise \nline2\n[ 4.2] Kernel panic - not syncing: x\nlogin:\n");
    }

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
    fn a_boot_loader_error_ranks_above_the_panic_it_causes() {
        let log = "error: out of memory.\n[ 2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n";
        let mut failed: Vec<ConsoleFinding> = rules("").check(log).into_iter().filter(|f| !f.passed).collect();
        failed.sort_by_key(|f| f.rank());
        assert_eq!(failed[0].reason(), "console matched `boot loader error` at line 1: error: out of memory.");
        assert_eq!(failed[1].rule, "kernel panic");
        let grub_212 = "error: ../../grub-core/kern/mm.c:561:out of memory.\n";
        assert!(rules("").check(grub_212).iter().any(|f| !f.passed && f.rule == "boot loader error"));
        // Harmless ones, on boots that go on, are not failures.
        let harmless = "error: file `/boot/grub/fonts/unicode.pf2' not found.\nerror: no such device: root.\n";
        assert!(rules("").check(harmless).iter().all(|f| f.passed), "{:?}", rules("").check(harmless));
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

    #[test]
    fn the_most_telling_finding_ranks_first() {
        let log = "I/O error, dev vda\nCall Trace:\nKernel panic - not syncing: VFS\n";
        let mut failed: Vec<ConsoleFinding> = rules("must_contain: ['login:']\nmust_not_contain: ['vda']")
            .check(log)
            .into_iter()
            .filter(|f| !f.passed)
            .collect();
        failed.sort_by_key(ConsoleFinding::rank);
        let order: Vec<&str> = failed.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(order, ["kernel panic", "I/O error", "call trace", "vda", "login:"]);
        assert!(failed[0].reason().starts_with("console matched `kernel panic` at line 3"));
    }

    #[test]
    fn ignore_exempts_lines_and_builtin_can_be_off() {
        let log = "Buffer I/O error on dev fd0\n";
        assert!(rules("ignore: [fd0]").check(log).iter().all(|f| f.passed));
        assert!(rules("builtin: false").check(log).is_empty());
    }
}
