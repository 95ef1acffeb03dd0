//! Running a command over an open SSH connection: a new session channel, the command or script fed
//! to it, and its output, exit status or signal collected, up to a size and a time limit.

use std::time::Duration;

use russh::client::{self, Handle};
use russh::ChannelMsg;

use super::Run;

/// Output kept for the expectations; the report keeps an excerpt of it.
const MAX_OUTPUT: usize = 256 * 1024;

/// How long output is still read after the exit status: a command that leaves a background job
/// holding its stdout has still ended.
const AFTER_EXIT: Duration = Duration::from_secs(1);

/// What a command wrote and how it ended.
#[derive(Debug, Default)]
pub(super) struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_status: Option<u32>,
    pub exit_signal: Option<String>,
    /// Either stream was longer than [`MAX_OUTPUT`].
    pub truncated: bool,
}

/// Why a command did not run to its end.
#[derive(Debug, thiserror::Error)]
pub(super) enum ExecError {
    #[error("could not open a session: {0}")]
    Session(#[source] russh::Error),
    #[error("failed to start the command: {0}")]
    Start(#[source] russh::Error),
    #[error("the command did not finish within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// Runs the command on a new channel of the connection and collects what it wrote, for at most
/// `limit`; the channel is closed either way (servers allow a few sessions per connection, and an
/// abandoned one would hold its place).
pub(super) async fn execute<H: client::Handler>(
    handle: &Handle<H>,
    run: &Run,
    limit: Duration,
) -> Result<Output, ExecError> {
    let mut channel = handle.channel_open_session().await.map_err(ExecError::Session)?;
    let mut out = Output::default();
    let outcome = tokio::time::timeout(limit, collect(&mut channel, run, &mut out)).await;
    let _ = channel.close().await;
    match outcome {
        Ok(result) => result.map(|()| out),
        Err(_) => Err(ExecError::Timeout(limit)),
    }
}

/// Starts the command: a command line as it is, a script's text on `sh -s`'s standard input.
async fn start(channel: &mut russh::Channel<client::Msg>, run: &Run) -> Result<(), russh::Error> {
    match run {
        Run::Command(command) => channel.exec(true, command.as_bytes()).await,
        Run::Script { text, .. } => {
            channel.exec(true, &b"sh -s"[..]).await?;
            channel.data(text.as_bytes()).await?;
            channel.eof().await
        }
    }
}

async fn collect(channel: &mut russh::Channel<client::Msg>, run: &Run, out: &mut Output) -> Result<(), ExecError> {
    start(channel, run).await.map_err(ExecError::Start)?;
    loop {
        let next = if out.exit_status.is_some() || out.exit_signal.is_some() {
            match tokio::time::timeout(AFTER_EXIT, channel.wait()).await {
                Ok(message) => message,
                Err(_) => return Ok(()),
            }
        } else {
            channel.wait().await
        };
        match next {
            None => return Ok(()),
            Some(ChannelMsg::Data { data }) => keep(&mut out.stdout, &data, &mut out.truncated),
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => keep(&mut out.stderr, &data, &mut out.truncated),
            Some(ChannelMsg::ExitStatus { exit_status }) => out.exit_status = Some(exit_status),
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => out.exit_signal = Some(format!("{signal_name:?}")),
            Some(_) => {}
        }
    }
}

fn keep(buffer: &mut Vec<u8>, data: &[u8], truncated: &mut bool) {
    let room = MAX_OUTPUT.saturating_sub(buffer.len());
    *truncated |= data.len() > room;
    buffer.extend_from_slice(&data[..data.len().min(room)]);
}
