//! Console log assertions: what must and must not appear, plus built-in signs of a broken boot.
//!
//! The built-in set exists because a machine can boot, answer on its ports and still be broken: the
//! seed of this project was an image whose files failed with I/O errors while it looked fine.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::spec::{ConsoleSpec, FieldPath, Problem};

/// Built-in failure patterns: (name, regex).
const BUILTIN: &[(&str, &str)] = &[
    ("kernel panic", r"Kernel panic - not syncing"),
    ("kernel oops", r"\bOops(: | - )|BUG: unable to handle"),
    ("I/O error", r"I/O error"),
    ("file system error", r"(EXT4-fs|XFS|BTRFS)( \([^)]*\))?:? .*(error|corruption|Corruption)"),
    ("emergency or rescue shell", r"(?i)(you are in (emergency|rescue) mode|entering (emergency|rescue) mode)"),
    (
        "dracut or initramfs shell",
        r"Dropping to debug shell|dracut-initqueue\[\d+\]: Warning: Could not boot|\(initramfs\)\s|Gave up waiting for root",
    ),
    ("soft or hard lockup", r"soft lockup|hard LOCKUP"),
    ("call trace", r"Call Trace:"),
];

#[derive(Debug, Clone)]
pub struct ConsoleRules {
    must_contain: Vec<String>,
    must_not_contain: Vec<String>,
    builtin: Vec<(&'static str, Regex)>,
    ignore: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    MustContain,
    MustNotContain,
    Builtin,
}

/// The outcome of one rule on one console log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConsoleFinding {
    pub kind: RuleKind,
    /// The pattern as written, or the built-in rule's name.
    pub rule: String,
    pub passed: bool,
    /// The lines (1-based) that matched, with their text; at most [`MAX_HITS`].
    pub hits: Vec<ConsoleHit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConsoleHit {
    pub line: usize,
    pub text: String,
}

const MAX_HITS: usize = 20;

impl ConsoleRules {
    pub fn compile(spec: &ConsoleSpec, path: &FieldPath, problems: &mut Vec<Problem>) -> ConsoleRules {
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
        let builtin = if spec.builtin {
            BUILTIN.iter().filter_map(|(name, re)| Regex::new(re).ok().map(|r| (*name, r))).collect()
        } else {
            Vec::new()
        };
        ConsoleRules {
            must_contain: spec.must_contain.clone(),
            must_not_contain: spec.must_not_contain.clone(),
            builtin,
            ignore: spec.ignore.clone(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.must_contain.is_empty() && self.must_not_contain.is_empty() && self.builtin.is_empty()
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
                .map(|(n, l)| ConsoleHit { line: *n, text: l.to_string() })
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

    fn rules(yaml: &str) -> ConsoleRules {
        let spec: ConsoleSpec = serde_yaml::from_str(yaml).unwrap();
        let mut problems = Vec::new();
        let rules = ConsoleRules::compile(&spec, &FieldPath::root(), &mut problems);
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
    fn ignore_exempts_lines_and_builtin_can_be_off() {
        let log = "Buffer I/O error on dev fd0\n";
        assert!(rules("ignore: [fd0]").check(log).iter().all(|f| f.passed));
        assert!(rules("builtin: false").check(log).is_empty());
    }
}
