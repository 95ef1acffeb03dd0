//! Agent probes: a command run inside the machine by its platform's own agent (the QEMU guest agent),
//! with no port open and no route to the machine, its outcome checked exactly like an SSH command's.
//!
//! An agent that does not answer yet makes the attempt silent, like a port that does not answer:
//! the guest is still booting. At the deadline the probe's message says what is usually missing.

use std::sync::Arc;
use std::time::Duration;

use super::ssh::{command_shown, judge_output, Failure, Run, SshContext, SshExchange, SshExpectations};
use crate::provider::{Agent, AgentCommand, AgentError};

#[derive(Debug, Clone)]
pub struct AgentCheck {
    pub run: Run,
    pub timeout: Duration,
    pub expect: SshExpectations,
}

/// The command as the agent runs it: `sh -c` for a command line, a script's text on `sh -s`.
fn command(run: &Run) -> AgentCommand {
    match run {
        Run::Command(line) => AgentCommand { argv: vec!["/bin/sh".into(), "-c".into(), line.clone()], stdin: None },
        Run::Script { text, .. } => {
            AgentCommand { argv: vec!["/bin/sh".into(), "-s".into()], stdin: Some(text.clone().into_bytes()) }
        }
    }
}

/// One run of the probe's command through `agent`.
pub async fn attempt(
    check: &AgentCheck,
    agent: &Arc<dyn Agent>,
    ctx: &SshContext,
) -> Result<(String, SshExchange), Failure> {
    let exchange = SshExchange {
        target: agent.channel().to_string(),
        command: ctx.mask(&command_shown(&check.run)),
        host_key: None,
        exit_status: None,
        exit_signal: None,
        stdout: String::new(),
        stderr: String::new(),
        truncated: false,
    };
    match agent.run(&command(&check.run), check.timeout).await {
        Ok(output) => judge_output(&check.expect, exchange, output, ctx),
        Err(AgentError::NotYet(why)) => {
            let message = format!("{}: {why} ({})", agent.channel(), agent.never_answered());
            Err(Failure { silent: true, ..Failure::new(message) })
        }
        Err(e) => Err(Failure::new(format!("{}: {e}", agent.channel()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_goes_to_the_shell_on_its_standard_input() {
        let script = command(&Run::Script { name: "check.sh".into(), text: "echo hi\n".into() });
        assert_eq!(script.argv, ["/bin/sh", "-s"]);
        assert_eq!(script.stdin.as_deref(), Some(&b"echo hi\n"[..]));
        let line = command(&Run::Command("systemctl is-active nginx".into()));
        assert_eq!(line.argv, ["/bin/sh", "-c", "systemctl is-active nginx"]);
        assert_eq!(line.stdin, None);
    }
}
