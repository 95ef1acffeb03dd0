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
            // The command as a whole was stopped (its MaxErrors reached): this invocation may pass
            // when sent again.
            (_, "Terminated") => Err(AgentError::NotYet("SSM stopped the command before it ran here".into())),
            (_, "InvalidPlatform") => Err(AgentError::Failed(
                "the command's document does not run on this instance's platform (is `os` right?)".into(),
            )),
            (status, details) => Err(AgentError::Failed(format!(
                "the command ended {status} ({details}) with exit status {}",
                self.response_code
            ))),
        }
    }

    /// The agent cuts each stream at its limit in bytes and ends it with [`CUT_MARK`]: the mark is
    /// taken off (it is not the command's output) and the stream marked cut; a stream that fills
    /// what SSM keeps without it was cut too.
    fn output(self) -> AgentOutput {
        let (stdout, out_cut) = uncut(self.stdout, STDOUT_KEPT);
        let (stderr, err_cut) = uncut(self.stderr, STDERR_KEPT);
        AgentOutput {
            exit_status: u32::try_from(self.response_code).ok(),
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
            exit_signal: None,
            truncated: out_cut || err_cut,
        }
    }
}

/// What the SSM agent appends to a stream it cut.
pub const CUT_MARK: &str = "--output truncated--";

/// `text` without the agent's cut mark, and whether it was cut (marked, or as long as SSM keeps).
fn uncut(text: String, kept: usize) -> (String, bool) {
    if let Some(before) = text.trim_end().strip_suffix(CUT_MARK) {
        return (before.to_string(), true);
    }
    let full = text.len() >= kept - CUT_MARK.len();
    (text, full)
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
        // Cut in bytes: multibyte output has fewer characters than that.
        let wide = "é".repeat(STDOUT_KEPT / 2);
        assert!(ended("Success", "Success", 0, &wide).outcome(Duration::from_secs(1)).unwrap().truncated);
        // The agent's mark is not the command's output.
        let marked = format!("{{\"a\": 1}}\n{CUT_MARK}\n");
        let out = ended("Success", "Success", 0, &marked).outcome(Duration::from_secs(1)).unwrap();
        assert!(out.truncated);
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "{\"a\": 1}\n");
        let short = ended("Success", "Success", 0, "ok\n").outcome(Duration::from_secs(1)).unwrap();
        assert!(!short.truncated);
    }

    #[test]
    fn what_did_not_run_says_why() {
        let limit = Duration::from_secs(5);
        assert_eq!(ended("TimedOut", "ExecutionTimedOut", -1, "").outcome(limit), Err(AgentError::Timeout(limit)));
        assert!(matches!(ended("TimedOut", "DeliveryTimedOut", -1, "").outcome(limit), Err(AgentError::NotYet(_))));
        assert!(matches!(ended("Failed", "Undeliverable", -1, "").outcome(limit), Err(AgentError::NotYet(_))));
        assert!(matches!(ended("Failed", "Terminated", -1, "").outcome(limit), Err(AgentError::NotYet(_))));
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
