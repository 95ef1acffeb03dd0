//! The console rules of Windows on EC2: what EC2Launch (v1 and v2) and EC2Config print once Windows
//! is ready, and the messages EC2Launch v2 prints when it gives up. Handed to
//! `ConsoleRules::compile` as [`PlatformRules`] for `os: windows` on ec2.
//!
//! Self-contained: it needs only the rule types of [`crate::console`].

use crate::console::{ConsoleRule, PlatformRules};

/// The line EC2Launch (v1 and v2) and EC2Config print once Windows is ready: with `os: windows` a
/// console must show it (a built-in `must_contain`).
pub const WINDOWS_READY: &str = "Windows is Ready to use";

/// Failure patterns of Windows on EC2, checked after the generic ones (which never match there): the
/// messages EC2Launch v2 prints on the console when it gives up (its documented message list). Not
/// any line with "Error" in it: a good boot prints `EC2LaunchTelemetry: AgentCommandErrorCode=1`.
/// EC2Launch v1 writes its failures to its log file only; such a boot just never shows
/// [`WINDOWS_READY`].
const FAILURES: &[ConsoleRule] = &[
    ConsoleRule {
        name: "ec2launch stopped",
        pattern: r"Error EC2Launch service is stopping|Error (setting up EC2Launch agent folders|initializing service)",
    },
    ConsoleRule {
        name: "ec2launch: no metadata",
        pattern: r"Metadata is not available for this instance|Timed out waiting for access to metadata",
    },
    ConsoleRule { name: "ec2launch: bad administrator account", pattern: r"Invalid administrator (username|password)" },
];

/// EC2Launch's rules: its failure messages, and the ready line every good boot prints.
pub fn rules() -> PlatformRules {
    PlatformRules { failures: FAILURES.to_vec(), must_contain: vec![WINDOWS_READY] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::ConsoleRules;
    use crate::spec::{ConsoleSpec, FieldPath};

    fn windows_rules() -> ConsoleRules {
        let spec: ConsoleSpec = serde_yaml::from_str("{}").unwrap();
        ConsoleRules::compile(&spec, &rules(), &FieldPath::root(), &mut Vec::new())
    }

    fn failed(log: &str) -> Vec<String> {
        windows_rules().check(log).into_iter().filter(|f| !f.passed).map(|f| f.rule).collect()
    }

    #[test]
    fn good_boots_of_both_versions_pass() {
        for log in [
            include_str!("../../../tests/fixtures/ec2/windows-ec2launch-v1-ready.log"),
            include_str!("../../../tests/fixtures/ec2/windows-ec2launch-v2-ready.log"),
        ] {
            assert!(failed(log).is_empty(), "{:?}", failed(log));
        }
    }

    #[test]
    fn ec2launch_giving_up_is_fatal_and_the_ready_line_missing() {
        let log = include_str!("../../../tests/fixtures/ec2/windows-ec2launch-v2-failed.log");
        assert_eq!(failed(log), [WINDOWS_READY, "ec2launch stopped"]);
    }

    #[test]
    fn builtin_false_turns_the_platform_rules_off() {
        let spec: ConsoleSpec = serde_yaml::from_str("builtin: false").unwrap();
        let rules = ConsoleRules::compile(&spec, &rules(), &FieldPath::root(), &mut Vec::new());
        assert!(rules.is_empty());
    }
}
