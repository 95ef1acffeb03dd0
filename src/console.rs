//! Console log assertions: what must and must not appear, plus built-in signs of a broken boot.
//!
//! The built-in set exists because a machine can boot, answer on its ports and still be broken: the
//! seed of this project was an image whose files failed with I/O errors while it looked fine. The
//! generic signs here hold for any machine (boot loaders, firmware, Linux); a platform's own (what
//! its launch agent prints when it gives up, the line it prints once ready) come in from the caller
//! as [`PlatformRules`], which the provider supplies (EC2Launch's for Windows on EC2).
//!
//! [`ConsoleRules::check`] judges a whole log once it is collected; [`ConsoleWatch`] follows it while
//! the machine runs, to stop a broken machine at its first fatal line.

mod phases;
mod watch;

use regex::Regex;

use crate::spec::{ConsoleSpec, FieldPath, Problem};

pub use phases::{boot_phases, BootPhase, BootPhases, LaunchTimes, PhaseBound, PhaseClock, PhaseName, TimedBy};
pub use watch::{ConsoleWatch, FatalSign};

/// A built-in sign of a broken boot: the name reports give it, and the regex of the lines showing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleRule {
    pub name: &'static str,
    pub pattern: &'static str,
}

/// What a platform adds to the generic rules, chosen by the caller for the machine at hand. Both
/// parts are built-ins: `console.builtin: false` turns them off with the generic ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformRules {
    /// Signs of a failed boot of this platform, checked after the generic ones.
    pub failures: Vec<ConsoleRule>,
    /// Lines every good boot of this platform prints: a built-in `must_contain` each.
    pub must_contain: Vec<&'static str>,
}

/// Built-in failure patterns, most telling first. When several match, the cell's reason names the
/// first of this list: a panic or an emergency shell is the cause, a call trace or an I/O error
/// often the symptom around it.
const BUILTIN: &[ConsoleRule] = &[
    // GRUB's own errors that stop a boot come before the kernel they failed to load panics ("VFS:
    // Unable to mount root fs on unknown-block(0,0)" after an initrd that did not fit in memory).
    // Only those: GRUB also prints harmless ones (a missing font file) on boots that go on.
    ConsoleRule {
        name: "boot loader error",
        pattern: r"^error: (\S+:\d+:)?(out of memory|you need to load the kernel first)|Failed to boot both default and fallback entries|grub rescue>",
    },
    ConsoleRule { name: "kernel panic", pattern: r"Kernel panic - not syncing" },
    // OVMF's own words on the serial console when no disk holds a boot loader it can start: it falls
    // back to its shell. (SeaBIOS says "No bootable device" on the screen only: see
    // providers/qemu/firmware.rs.)
    ConsoleRule {
        name: "nothing to boot",
        pattern: r"No bootable device|BdsDxe: No bootable option|UEFI Interactive Shell",
    },
    ConsoleRule {
        name: "emergency or rescue shell",
        pattern: r"(?i)(you are in (emergency|rescue) mode|entering (emergency|rescue) mode)",
    },
    ConsoleRule {
        name: "dracut or initramfs shell",
        pattern: r"Dropping to debug shell|dracut-initqueue\[\d+\]: Warning: Could not boot|\(initramfs\)\s|Gave up waiting for root",
    },
    ConsoleRule { name: "kernel oops", pattern: r"\bOops(: | - )|BUG: unable to handle" },
    ConsoleRule { name: "out of memory", pattern: r"Out of memory: Kill|invoked oom-killer" },
    ConsoleRule {
        name: "file system error",
        pattern: r"(EXT4-fs|XFS|BTRFS)( \([^)]*\))?:? .*(error|corruption|Corruption)",
    },
    ConsoleRule { name: "I/O error", pattern: r"I/O error" },
    ConsoleRule { name: "soft or hard lockup", pattern: r"soft lockup|hard LOCKUP" },
    ConsoleRule { name: "call trace", pattern: r"Call Trace:" },
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

    /// How telling a failed finding is, lowest first: built-in signs in [`BUILTIN`]'s order (then a
    /// platform's), then the spec's own forbidden lines, then a missing line (often only the consequence of the others).
    pub fn rank(&self) -> (u8, usize) {
        match self.kind {
            // A platform's rules rank after the generic ones, all alike: a stable sort keeps them in
            // the order they were checked, which is their table's.
            RuleKind::Builtin => (0, BUILTIN.iter().position(|r| r.name == self.rule).unwrap_or(BUILTIN.len())),
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
    /// The spec's rules, with the generic built-ins and `platform`'s unless `builtin: false`.
    pub fn compile(
        spec: &ConsoleSpec,
        platform: &PlatformRules,
        path: &FieldPath,
        problems: &mut Vec<Problem>,
    ) -> ConsoleRules {
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
        let none = PlatformRules::default();
        let platform = if spec.builtin { platform } else { &none };
        let builtin_rules = if spec.builtin { BUILTIN } else { &[] };
        let builtin = builtin_rules
            .iter()
            .chain(&platform.failures)
            .filter_map(|rule| Regex::new(rule.pattern).ok().map(|re| (rule.name, re)))
            .collect();
        let mut must_contain = spec.must_contain.clone();
        for line in &platform.must_contain {
            if !must_contain.iter().any(|l| l == line) {
                must_contain.push(line.to_string());
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{clean, printable};

    /// The generic rules and the spec's, with no platform's.
    pub(crate) fn rules(yaml: &str) -> ConsoleRules {
        let spec: ConsoleSpec = serde_yaml::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        let rules = ConsoleRules::compile(&spec, &PlatformRules::default(), &FieldPath::root(), &mut problems);
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
