//! The verdict on a cell: from what it found, its status and the one-line reason. One pure
//! function, used for the cell's result and for which machines `--keep-failed` keeps alike.

use super::cell::CellError;
use crate::console::{ConsoleFinding, FatalSign};
use crate::provider::CleanupStep;
use crate::results::{CellStatus, ProbeResult};

/// How the watching of a machine ended (from launch to "done capturing").
#[derive(Debug)]
pub enum Ending {
    Finished,
    TimedOut,
    Interrupted,
    /// The platform failed a step (the machine did not start, the reboot failed).
    Error(CellError),
    /// A fatal sign on the console (with `console.stop_on_fatal`): no point probing further.
    Fatal(FatalSign),
    /// The machine stopped by itself (powered off, panicked, its process exited).
    Stopped(String),
    /// The provider found the machine unwell (a failed status check): an image failure, the reason
    /// in full.
    Unwell(String),
    /// The provider found its platform at fault, not the image (a failed system status check).
    Infrastructure(String),
}

/// What a cell found, as far as its verdict goes.
pub struct Found<'a> {
    pub ending: &'a Ending,
    pub console: &'a [ConsoleFinding],
    pub probes: &'a [ProbeResult],
    /// Empty until the machine was removed.
    pub cleanup: &'a [CleanupStep],
    /// Set when the console stayed empty and the provider knows what came last before it (the
    /// firmware's words): the cause when the cell then fails.
    pub silent_console: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub status: CellStatus,
    /// One line, printable; `None` for a cell that passed.
    pub reason: Option<String>,
}

/// The cell's status and the one-line reason: the most telling finding, in this order: fatal
/// console signs (the cause), the machine stopping by itself or failing its status check, failed
/// probes (often the consequence), a line that never appeared, the run timeout, and last a failed
/// cleanup. What the image did is `failed`; what the platform did (API errors, a failed system
/// status check, a failed removal) is `error`.
pub fn verdict(found: &Found) -> Verdict {
    let (status, reason) = status_and_reason(found, &Evidence::of(found));
    Verdict { status, reason: reason.map(|text| crate::text::printable(&text)) }
}

/// Whether what ran shows the image failing (the cells `--keep-failed` keeps): a fatal console sign,
/// the machine stopping or unwell, a failed probe or console rule, the run timeout. Not a launch or
/// an API error (even with a fatal sign on the console), nor the platform's fault.
pub fn image_failed(found: &Found) -> bool {
    !matches!(found.ending, Ending::Error(_))
        && matches!(verdict(found).status, CellStatus::Failed | CellStatus::TimedOut)
}

/// The candidate reasons, each the most telling of its kind.
struct Evidence {
    /// The most telling fatal console finding.
    fatal: Option<String>,
    /// The first failed probe (after the console's silence, if it stayed silent), or else the first
    /// missing line.
    symptom: Option<String>,
    /// The first required line the console never showed.
    missing: Option<String>,
    cleanup_failed: Option<String>,
}

impl Evidence {
    fn of(found: &Found) -> Evidence {
        let mut failed: Vec<&ConsoleFinding> = found.console.iter().filter(|f| !f.passed).collect();
        failed.sort_by_key(|f| f.rank());
        let fatal = failed.iter().find(|f| f.is_fatal()).map(|f| f.reason());
        let missing = failed.iter().find(|f| !f.is_fatal()).map(|f| f.reason());
        let failed_probe =
            found.probes.iter().find(|p| !p.passed).map(|p| format!("probe `{}` failed: {}", p.name, p.message));
        let cleanup_failed =
            found.cleanup.iter().find(|s| !s.ok).map(|s| format!("cleanup failed: {} ({})", s.action, s.message));
        // A console that stayed empty after the provider saw the boot start (the firmware jumping to a
        // disk with no boot code) is where it went wrong: the failed probes are what followed.
        let failed_probe = match (found.silent_console, failed_probe.or(missing.clone())) {
            (Some(last), Some(symptom)) => Some(format!("the console stayed empty after {last}; {symptom}")),
            (_, failed_probe) => failed_probe,
        };
        Evidence { fatal, symptom: failed_probe, missing, cleanup_failed }
    }
}

fn status_and_reason(found: &Found, evidence: &Evidence) -> (CellStatus, Option<String>) {
    let Evidence { fatal, symptom, missing, cleanup_failed } = evidence;
    let fatal = fatal.clone();
    let failed = |reason: String| (CellStatus::Failed, Some(reason));
    match found.ending {
        Ending::Interrupted => (CellStatus::Interrupted, Some("interrupted".to_string())),
        // A machine that did not come up but panicked on its way: the panic is the news, and the
        // image's doing.
        Ending::Error(e) => fatal.map_or_else(|| (CellStatus::Error, Some(e.to_string())), failed),
        Ending::TimedOut => match fatal {
            Some(reason) => failed(reason),
            None => {
                let reason = symptom.clone().or(missing.clone());
                (CellStatus::TimedOut, Some(reason.unwrap_or_else(|| "timed out (timeouts.run)".to_string())))
            }
        },
        Ending::Fatal(sign) => failed(
            fatal.unwrap_or_else(|| format!("console matched `{}` at line {}: {}", sign.rule, sign.line, sign.text)),
        ),
        Ending::Stopped(why) => failed(fatal.unwrap_or_else(|| format!("machine stopped by itself: {why}"))),
        Ending::Unwell(why) => failed(fatal.unwrap_or_else(|| why.clone())),
        // The platform's fault whatever the console showed: the image is not to blame.
        Ending::Infrastructure(why) => (CellStatus::Error, Some(why.clone())),
        Ending::Finished => match fatal.or(symptom.clone()).or(missing.clone()) {
            Some(reason) => failed(reason),
            // What the image did passed; a failed removal is the API's doing.
            None => match cleanup_failed {
                Some(reason) => (CellStatus::Error, Some(reason.clone())),
                None => (CellStatus::Passed, None),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::{ConsoleHit, RuleKind};
    use crate::provider::ProviderError;

    fn finding(kind: RuleKind, rule: &str, line: usize) -> ConsoleFinding {
        let hits = match kind {
            RuleKind::MustContain => Vec::new(),
            _ => vec![ConsoleHit { line, text: format!("line {line}"), first_seen_s: None }],
        };
        ConsoleFinding { kind, rule: rule.into(), passed: false, hits }
    }

    fn panic_sign() -> ConsoleFinding {
        finding(RuleKind::Builtin, "kernel panic", 7)
    }

    fn missing_login() -> ConsoleFinding {
        finding(RuleKind::MustContain, "login:", 0)
    }

    fn failed_probe() -> ProbeResult {
        ProbeResult {
            name: "http".into(),
            kind: "http".into(),
            target: None,
            passed: false,
            first_passed_s: None,
            attempts_count: 3,
            message: "connection refused".into(),
            attempts: Vec::new(),
            last_exchange: None,
            last_ssh: None,
        }
    }

    /// What a cell found, with an ending and everything else empty unless given.
    struct Case {
        ending: Ending,
        console: Vec<ConsoleFinding>,
        probes: Vec<ProbeResult>,
        cleanup: Vec<CleanupStep>,
        silent_console: Option<&'static str>,
    }

    impl Case {
        fn new(ending: Ending) -> Case {
            Case { ending, console: Vec::new(), probes: Vec::new(), cleanup: Vec::new(), silent_console: None }
        }
        fn console(mut self, finding: ConsoleFinding) -> Case {
            self.console.push(finding);
            self
        }
        fn probe(mut self, probe: ProbeResult) -> Case {
            self.probes.push(probe);
            self
        }
        fn cleanup(mut self, step: CleanupStep) -> Case {
            self.cleanup.push(step);
            self
        }
        fn found(&self) -> Found<'_> {
            Found {
                ending: &self.ending,
                console: &self.console,
                probes: &self.probes,
                cleanup: &self.cleanup,
                silent_console: self.silent_console,
            }
        }
        fn verdict(&self) -> (CellStatus, Option<String>) {
            let v = verdict(&self.found());
            (v.status, v.reason)
        }
        fn kept(&self) -> bool {
            image_failed(&self.found())
        }
    }

    fn reason(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    #[test]
    fn a_cell_that_finished_clean_passes_and_a_failed_removal_is_an_error() {
        assert_eq!(Case::new(Ending::Finished).verdict(), (CellStatus::Passed, None));
        let case = Case::new(Ending::Finished).cleanup(CleanupStep::failed("terminate i-1", "throttled"));
        assert_eq!(case.verdict(), (CellStatus::Error, reason("cleanup failed: terminate i-1 (throttled)")));
        assert!(!case.kept());
    }

    #[test]
    fn a_fatal_console_sign_comes_before_a_failed_probe_and_a_missing_line() {
        let case = Case::new(Ending::Finished).console(missing_login()).probe(failed_probe()).console(panic_sign());
        assert_eq!(case.verdict(), (CellStatus::Failed, reason("console matched `kernel panic` at line 7: line 7")));
        assert!(case.kept());
    }

    #[test]
    fn a_failed_probe_comes_before_a_missing_line_and_a_failed_cleanup() {
        let case = Case::new(Ending::Finished)
            .console(missing_login())
            .probe(failed_probe())
            .cleanup(CleanupStep::failed("terminate i-1", "throttled"));
        assert_eq!(case.verdict(), (CellStatus::Failed, reason("probe `http` failed: connection refused")));
        let case = Case::new(Ending::Finished).console(missing_login());
        assert_eq!(case.verdict(), (CellStatus::Failed, reason("console never showed `login:`")));
        assert!(case.kept());
    }

    #[test]
    fn builtin_signs_come_before_the_specs_own_forbidden_lines() {
        let own = finding(RuleKind::MustNotContain, "oops", 1);
        let case = Case::new(Ending::Finished).console(own).console(panic_sign());
        assert_eq!(case.verdict().1, reason("console matched `kernel panic` at line 7: line 7"));
    }

    #[test]
    fn a_silent_console_is_the_cause_of_the_failed_probe() {
        let mut case = Case::new(Ending::Finished).probe(failed_probe());
        case.silent_console = Some("`Booting from Hard Disk...`");
        let expected =
            "the console stayed empty after `Booting from Hard Disk...`; probe `http` failed: connection refused";
        assert_eq!(case.verdict(), (CellStatus::Failed, reason(expected)));
    }

    #[test]
    fn a_console_match_comes_before_a_health_failure_and_the_machine_stopping() {
        let case = Case::new(Ending::Unwell("instance status check failed".into())).console(panic_sign());
        assert_eq!(case.verdict().1, reason("console matched `kernel panic` at line 7: line 7"));
        let case = Case::new(Ending::Unwell("instance status check failed".into())).probe(failed_probe());
        assert_eq!(case.verdict(), (CellStatus::Failed, reason("instance status check failed")));
        assert!(case.kept());
        let case = Case::new(Ending::Stopped("guest panicked".into())).probe(failed_probe());
        assert_eq!(case.verdict(), (CellStatus::Failed, reason("machine stopped by itself: guest panicked")));
        assert!(case.kept());
    }

    #[test]
    fn the_sign_the_cell_stopped_on_is_the_reason_without_a_finding() {
        let sign = FatalSign { rule: "kernel panic".into(), line: 3, text: "Kernel panic".into(), at_s: 1.0 };
        let case = Case::new(Ending::Fatal(sign));
        assert_eq!(
            case.verdict(),
            (CellStatus::Failed, reason("console matched `kernel panic` at line 3: Kernel panic"))
        );
        assert!(case.kept());
    }

    #[test]
    fn the_platforms_fault_is_an_error_whatever_the_console_showed() {
        let case = Case::new(Ending::Infrastructure("system status check failed".into())).console(panic_sign());
        assert_eq!(case.verdict(), (CellStatus::Error, reason("system status check failed")));
        assert!(!case.kept());
    }

    #[test]
    fn an_api_error_is_an_error_unless_the_console_shows_a_fatal_sign() {
        let error = || Ending::Error(CellError::DidNotStart(ProviderError::new("instance terminated")));
        let case = Case::new(error()).probe(failed_probe());
        assert_eq!(case.verdict(), (CellStatus::Error, reason("machine did not start: instance terminated")));
        assert!(!case.kept());
        let case = Case::new(error()).console(panic_sign());
        assert_eq!(case.verdict().0, CellStatus::Failed);
        // Failed, but the machine that did not start is not kept.
        assert!(!case.kept());
    }

    #[test]
    fn a_timeout_says_what_was_still_missing() {
        let case = Case::new(Ending::TimedOut);
        assert_eq!(case.verdict(), (CellStatus::TimedOut, reason("timed out (timeouts.run)")));
        assert!(case.kept());
        let case = Case::new(Ending::TimedOut).console(missing_login()).probe(failed_probe());
        assert_eq!(case.verdict(), (CellStatus::TimedOut, reason("probe `http` failed: connection refused")));
        let case = Case::new(Ending::TimedOut).console(panic_sign());
        assert_eq!(case.verdict().0, CellStatus::Failed);
    }

    #[test]
    fn an_interrupted_cell_proves_nothing() {
        let case = Case::new(Ending::Interrupted).console(panic_sign()).probe(failed_probe());
        assert_eq!(case.verdict(), (CellStatus::Interrupted, reason("interrupted")));
        assert!(!case.kept());
    }

    #[test]
    fn the_reason_is_one_printable_line() {
        let mut probe = failed_probe();
        probe.message = "refused\nby\tpeer".into();
        let case = Case::new(Ending::Finished).probe(probe);
        assert_eq!(case.verdict().1, reason("probe `http` failed: refused by peer"));
    }
}
