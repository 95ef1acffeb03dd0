//! An ended invocation, as GetCommandInvocation tells it, read into the command's outcome: how it
//! exited and what it wrote, or why it did not run.

use std::time::Duration;

use crate::provider::{AgentError, AgentOutput};

/// SSM keeps at most this much of standard output in the invocation (the rest only in S3).
pub const STDOUT_KEPT: usize = 24_000;
/// ... and this much of standard error.
pub const STDERR_KEPT: usize = 8_000;

/// What GetCommandInvocation answered for one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// `Success`, `Failed`, `TimedOut`, `Cancelled`.
    pub status: String,
    /// Finer: `DeliveryTimedOut`, `ExecutionTimedOut`, `Undeliverable`, `Terminated`...
    pub details: String,
    /// The exit status; -1 when the command did not run.
    pub response_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Invocation {
    /// The command's outcome: an exit status and output when it ran to its end (a failing exit
    /// status is the probe's to judge), else why it did not. `limit`: the command's own limit.
    pub fn outcome(self, limit: Duration) -> Result<AgentOutput, AgentError> {
        let ran = self.response_code >= 0;
        match (self.status.as_str(), self.details.as_str()) {
            ("Success", _) | ("Failed", "Failed") if ran => Ok(self.output()),
            ("TimedOut", "ExecutionTimedOut") => Err(AgentError::Timeout(limit)),
            // The agent went away (a reboot, a crash) before it took the command: it may be back.
            ("TimedOut", _) | (_, "Undeliverable") => Err(AgentError::NotYet(format!(
                "SSM could not deliver the command ({}): the agent stopped answering",
                self.details
            ))),
            (_, "Terminated") => Err(AgentError::Failed("the instance ended before the command ran".into())),
            (_, "InvalidPlatform") => Err(AgentError::Failed(
                "the command's document does not run on this instance's platform (is `os` right?)".into(),
            )),
            (status, details) => Err(AgentError::Failed(format!(
                "the command ended {status} ({details}) with exit status {}",
                self.response_code
            ))),
        }
    }

    /// SSM cuts each stream silently: a stream that fills what SSM keeps was cut.
    fn output(self) -> AgentOutput {
        let truncated = self.stdout.chars().count() >= STDOUT_KEPT || self.stderr.chars().count() >= STDERR_KEPT;
        AgentOutput {
            exit_status: u32::try_from(self.response_code).ok(),
            stdout: self.stdout.into_bytes(),
            stderr: self.stderr.into_bytes(),
            exit_signal: None,
            truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(status: &str, details: &str, code: i32, stdout: &str) -> Invocation {
        Invocation {
            status: status.into(),
            details: details.into(),
            response_code: code,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn a_command_that_ran_gives_its_exit_status_whatever_it_is() {
        let limit = Duration::from_secs(30);
        let passed = ended("Success", "Success", 0, "active\n").outcome(limit).unwrap();
        assert_eq!(
            (passed.exit_status, passed.stdout.as_slice(), passed.truncated),
            (Some(0), &b"active\n"[..], false)
        );
        let failed = ended("Failed", "Failed", 3, "inactive\n").outcome(limit).unwrap();
        assert_eq!(failed.exit_status, Some(3));
    }

    #[test]
    fn output_that_fills_what_ssm_keeps_is_marked_cut() {
        let long = "x".repeat(STDOUT_KEPT);
        let cut = ended("Success", "Success", 0, &long).outcome(Duration::from_secs(1)).unwrap();
        assert!(cut.truncated);
    }

    #[test]
    fn what_did_not_run_says_why() {
        let limit = Duration::from_secs(5);
        assert_eq!(ended("TimedOut", "ExecutionTimedOut", -1, "").outcome(limit), Err(AgentError::Timeout(limit)));
        assert!(matches!(ended("TimedOut", "DeliveryTimedOut", -1, "").outcome(limit), Err(AgentError::NotYet(_))));
        assert!(matches!(ended("Failed", "Undeliverable", -1, "").outcome(limit), Err(AgentError::NotYet(_))));
        let Err(AgentError::Failed(why)) = ended("Failed", "InvalidPlatform", -1, "").outcome(limit) else {
            panic!("a document for another platform is not a passing command");
        };
        assert!(why.contains("platform"), "{why}");
        let Err(AgentError::Failed(why)) = ended("Cancelled", "Cancelled", -1, "").outcome(limit) else {
            panic!("a cancelled command did not run");
        };
        assert_eq!(why, "the command ended Cancelled (Cancelled) with exit status -1");
    }
}
