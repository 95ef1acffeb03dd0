//! Commands run inside a machine by its platform's own agent, with no port open and no route to the
//! machine: the QEMU guest agent over a virtio-serial channel locally, SSM Run Command on EC2. The
//! probe decides what to run and what the outcome must be; the agent hands it to the guest's shell
//! its own way and says how it ended.

use std::time::Duration;

use async_trait::async_trait;

/// What to run, as the probe wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCommand {
    /// One command line, for the guest's shell.
    Line(String),
    /// A script's text, run by the guest's shell as a whole.
    Script(String),
}

impl AgentCommand {
    /// The shell text, whichever it is: SSM takes both as its document's `commands`.
    pub fn text(&self) -> &str {
        match self {
            AgentCommand::Line(text) | AgentCommand::Script(text) => text,
        }
    }
}

/// How a command ended and what it wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_status: Option<u32>,
    /// The signal that killed it, where the agent says.
    pub exit_signal: Option<String>,
    /// The agent cut an output stream short.
    pub truncated: bool,
}

/// Why a command did not run to its end, as a lowercase fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The agent has not answered yet (the guest is still booting, or has no agent): trying again
    /// may help, and a probe's deadline names the likely cause.
    #[error("{0}")]
    NotYet(String),
    /// The agent answered and refused, or the channel broke.
    #[error("{0}")]
    Failed(String),
    /// The platform's API refused or failed the call (a missing permission, throttling that outlasted
    /// the retries): not the image's doing, and trying again can't help.
    #[error("{0}")]
    Refused(String),
    #[error("the command did not finish within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

#[async_trait]
pub trait Agent: Send + Sync {
    /// The channel, as the report names it: "QEMU guest agent", "SSM Run Command".
    fn channel(&self) -> &'static str;

    /// What is usually missing when the agent does not answer, for the probe's message.
    fn never_answered(&self) -> String;

    /// Runs `command` and waits for it to end, for at most `limit`.
    async fn run(&self, command: &AgentCommand, limit: Duration) -> Result<AgentOutput, AgentError>;
}
