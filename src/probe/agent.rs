//! Agent probes: a command run inside the machine by its platform's own agent (the QEMU guest agent,
//! SSM Run Command),
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

/// The command as the probe wrote it: each agent hands it to the guest's shell its own way.
fn command(run: &Run) -> AgentCommand {
    match run {
        Run::Command(line) => AgentCommand::Line(line.clone()),
        Run::Script { text, .. } => AgentCommand::Script(text.clone()),
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
        Err(AgentError::Refused(why)) => {
            let message = format!("{}: {why}", agent.channel());
            Err(Failure { settled: true, platform: true, ..Failure::new(message) })
        }
        Err(e) => Err(Failure::new(format!("{}: {e}", agent.channel()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_stays_a_script() {
        let script = command(&Run::Script {
            name: "check.sh".into(),
            text: "echo hi
"
            .into(),
        });
        assert_eq!(
            script,
            AgentCommand::Script(
                "echo hi
"
                .into()
            )
        );
        let line = command(&Run::Command("systemctl is-active nginx".into()));
        assert_eq!(line, AgentCommand::Line("systemctl is-active nginx".into()));
        assert_eq!(line.text(), "systemctl is-active nginx");
    }
}
