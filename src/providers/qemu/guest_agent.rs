//! The QEMU guest agent (`qemu-guest-agent` in the image) as the machine's [`Agent`]: JSON over a
//! virtio-serial port named `org.qemu.guest_agent.0`, whose host end is a unix socket of the cell's.
//!
//! Each command starts with `guest-sync-delimited`: the agent may have been restarted, or may never
//! have read what an earlier, abandoned exchange left in the channel; its answer comes after a
//! 0xFF byte, which marks where stale bytes end. Then `guest-exec` with captured output, and
//! `guest-exec-status` until the process has exited. One exchange at a time: the socket takes one
//! client, and the agent serves one request at a time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio::time::{sleep, timeout, Instant};

use crate::provider::{Agent, AgentCommand, AgentError, AgentOutput};

/// The port's name, as the guest's agent looks for it.
pub const PORT_NAME: &str = "org.qemu.guest_agent.0";
/// How long the agent gets to answer the sync: a running agent answers in milliseconds.
const SYNC_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a running command's status is asked.
const STATUS_EVERY: Duration = Duration::from_millis(100);

/// The guest agent of one cell's QEMU.
pub struct GuestAgent {
    socket: PathBuf,
    /// The open connection, if any: dropped after a failure, opened again on the next command.
    stream: Mutex<Option<UnixStream>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl GuestAgent {
    pub fn new(socket: &Path) -> Self {
        GuestAgent { socket: socket.to_path_buf(), stream: Mutex::new(None), next_id: 1.into() }
    }

    /// QEMU's options for the channel: a virtio-serial bus and the named port on `socket`.
    pub fn qemu_args(socket: &Path) -> Vec<std::ffi::OsString> {
        let mut chardev = std::ffi::OsString::from("socket,id=qga0,server=on,wait=off,path=");
        chardev.push(super::argv::opt_value(socket.as_os_str()));
        vec![
            "-chardev".into(),
            chardev,
            "-device".into(),
            "virtio-serial-pci,id=agent-serial".into(),
            "-device".into(),
            format!("virtserialport,chardev=qga0,name={PORT_NAME}").into(),
        ]
    }
}

#[async_trait]
impl Agent for GuestAgent {
    fn channel(&self) -> &'static str {
        "QEMU guest agent"
    }

    fn never_answered(&self) -> String {
        format!("the image needs qemu-guest-agent, installed and started, to answer on {PORT_NAME}")
    }

    async fn run(&self, command: &AgentCommand, limit: Duration) -> Result<AgentOutput, AgentError> {
        let mut held = self.stream.lock().await;
        let outcome = match timeout(limit, self.exchange(&mut held, command, limit)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(AgentError::Timeout(limit)),
        };
        if outcome.is_err() {
            // Whatever the agent still sends for it must not be read as the next command's answer.
            *held = None;
        }
        outcome
    }
}

impl GuestAgent {
    async fn exchange(
        &self,
        held: &mut Option<UnixStream>,
        command: &AgentCommand,
        limit: Duration,
    ) -> Result<AgentOutput, AgentError> {
        let deadline = Instant::now() + limit;
        if held.is_none() {
            let stream = UnixStream::connect(&self.socket)
                .await
                .map_err(|e| AgentError::Failed(format!("failed to connect to the guest agent's socket: {e}")))?;
            *held = Some(stream);
        }
        let stream = held.as_mut().ok_or_else(|| AgentError::Failed("no connection to the guest agent".into()))?;
        let mut conn = Conn { stream, buffer: Vec::new() };
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        conn.sync(id).await?;
        let pid = conn.exec(command).await?;
        loop {
            if let Some(output) = conn.status(pid).await? {
                return Ok(output);
            }
            if Instant::now() >= deadline {
                return Err(AgentError::Timeout(limit));
            }
            sleep(STATUS_EVERY).await;
        }
    }
}

/// One connection's exchanges: a request, then its one JSON answer.
struct Conn<'a> {
    stream: &'a mut UnixStream,
    /// Bytes read past the last answer.
    buffer: Vec<u8>,
}

impl Conn<'_> {
    async fn send(&mut self, request: Value) -> Result<(), AgentError> {
        let mut line = request.to_string().into_bytes();
        line.push(b'\n');
        self.stream.write_all(&line).await.map_err(|e| AgentError::Failed(format!("guest agent channel: {e}")))
    }

    /// The next complete JSON value the agent sent.
    async fn answer(&mut self) -> Result<Value, AgentError> {
        loop {
            let mut values = serde_json::Deserializer::from_slice(&self.buffer).into_iter::<Value>();
            match values.next() {
                Some(Ok(value)) => {
                    let used = values.byte_offset();
                    self.buffer.drain(..used);
                    return Ok(value);
                }
                Some(Err(e)) if !e.is_eof() => {
                    return Err(AgentError::Failed(format!("the guest agent sent something that is not JSON: {e}")))
                }
                _ => {}
            }
            self.fill().await?;
        }
    }

    /// Reads what the agent sent next into the buffer.
    async fn fill(&mut self) -> Result<(), AgentError> {
        let mut chunk = [0u8; 8192];
        let n =
            self.stream.read(&mut chunk).await.map_err(|e| AgentError::Failed(format!("guest agent channel: {e}")))?;
        if n == 0 {
            return Err(AgentError::Failed("the guest agent's socket closed".into()));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// `guest-sync-delimited`: everything before the agent's 0xFF is stale and dropped.
    async fn sync(&mut self, id: u64) -> Result<(), AgentError> {
        self.send(json!({"execute": "guest-sync-delimited", "arguments": {"id": id}})).await?;
        let synced = async {
            loop {
                let answer = self.answer_after_delimiter().await?;
                if answer.get("return").and_then(Value::as_u64) == Some(id) {
                    return Ok(());
                }
            }
        };
        match timeout(SYNC_TIMEOUT, synced).await {
            Ok(result) => result,
            Err(_) => {
                Err(AgentError::NotYet(format!("the guest agent did not answer within {}s", SYNC_TIMEOUT.as_secs())))
            }
        }
    }

    async fn answer_after_delimiter(&mut self) -> Result<Value, AgentError> {
        loop {
            if let Some(at) = self.buffer.iter().position(|b| *b == 0xFF) {
                self.buffer.drain(..=at);
                return self.answer().await;
            }
            self.fill().await?;
        }
    }

    /// The answer's `return`, or the agent's refusal.
    async fn call(&mut self, request: Value) -> Result<Value, AgentError> {
        self.send(request).await?;
        let answer = self.answer().await?;
        if let Some(error) = answer.get("error") {
            let desc = error.get("desc").and_then(Value::as_str).unwrap_or("no description");
            return Err(AgentError::Failed(format!("the guest agent refused: {desc}")));
        }
        answer
            .get("return")
            .cloned()
            .ok_or_else(|| AgentError::Failed(format!("unexpected guest agent answer: {answer}")))
    }

    /// Starts the command: `sh -c` for a command line, a script's text on `sh -s`'s standard input
    /// (no length limit of the command line, and no file left in the guest).
    async fn exec(&mut self, command: &AgentCommand) -> Result<u64, AgentError> {
        let mut arguments = match command {
            AgentCommand::Line(line) => json!({"path": "/bin/sh", "arg": ["-c", line]}),
            AgentCommand::Script(text) => json!({
                "path": "/bin/sh",
                "arg": ["-s"],
                "input-data": base64::engine::general_purpose::STANDARD.encode(text),
            }),
        };
        arguments["capture-output"] = true.into();
        let started = self.call(json!({"execute": "guest-exec", "arguments": arguments})).await?;
        started
            .get("pid")
            .and_then(Value::as_u64)
            .ok_or_else(|| AgentError::Failed(format!("guest-exec gave no pid: {started}")))
    }

    /// The command's output once it has exited; `None` while it runs.
    async fn status(&mut self, pid: u64) -> Result<Option<AgentOutput>, AgentError> {
        let status = self.call(json!({"execute": "guest-exec-status", "arguments": {"pid": pid}})).await?;
        if status.get("exited").and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        Ok(Some(output_of(&status)))
    }
}

/// A finished `guest-exec-status`, decoded.
fn output_of(status: &Value) -> AgentOutput {
    let data = |key: &str| {
        let text = status.get(key).and_then(Value::as_str).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_else(|_| text.as_bytes().to_vec())
    };
    let flag = |key: &str| status.get(key).and_then(Value::as_bool).unwrap_or(false);
    AgentOutput {
        stdout: data("out-data"),
        stderr: data("err-data"),
        exit_status: status.get("exitcode").and_then(Value::as_u64).map(|c| c as u32),
        exit_signal: status.get("signal").and_then(Value::as_u64).map(|s| format!("signal {s}")),
        truncated: flag("out-truncated") || flag("err-truncated"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixListener;

    /// A guest agent as qemu-ga answers: stale bytes first (what an abandoned exchange left), the
    /// sync's answer after 0xFF, a command that runs for two status polls, then its output.
    async fn fake_agent(socket: &Path) {
        let listener = UnixListener::bind(socket).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            let mut polls = 0;
            while let Ok(Some(line)) = lines.next_line().await {
                let request: Value = serde_json::from_str(&line).unwrap();
                let args = &request["arguments"];
                let answer = match request["execute"].as_str().unwrap() {
                    "guest-sync-delimited" => {
                        write.write_all(b"{\"return\": {\"stale\": 1}}\n\xff").await.unwrap();
                        json!({"return": args["id"]})
                    }
                    "guest-exec" if args["arg"][1] == "refuse" => {
                        json!({"error": {"class": "GenericError", "desc": "Guest agent command failed"}})
                    }
                    "guest-exec" => {
                        assert_eq!(args["capture-output"], true);
                        json!({"return": {"pid": 42}})
                    }
                    "guest-exec-status" if polls < 2 => {
                        polls += 1;
                        json!({"return": {"exited": false}})
                    }
                    "guest-exec-status" => {
                        let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
                        json!({"return": {"exited": true, "exitcode": 3, "out-data": b64("active\n"), "err-data": b64("oops")}})
                    }
                    other => panic!("unexpected {other}"),
                };
                write.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
            }
        });
    }

    #[tokio::test]
    async fn a_command_runs_and_its_output_comes_back_past_stale_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        fake_agent(&socket).await;
        let agent = GuestAgent::new(&socket);
        let command = AgentCommand::Line("systemctl is-active x".into());
        let output = agent.run(&command, Duration::from_secs(10)).await.unwrap();
        assert_eq!(output.exit_status, Some(3));
        assert_eq!((output.stdout.as_slice(), output.stderr.as_slice()), (&b"active\n"[..], &b"oops"[..]));
        // The same connection serves the next command, and a refusal is named.
        let refused = AgentCommand::Line("refuse".into());
        let why = agent.run(&refused, Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(why, AgentError::Failed("the guest agent refused: Guest agent command failed".into()));
    }

    /// A channel nobody reads (the guest has no agent): the sync gets no answer, which may change.
    #[tokio::test]
    async fn a_silent_channel_is_not_yet_an_answer() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            let (_stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let agent = GuestAgent::new(&socket);
        let command = AgentCommand::Line("true".into());
        let why = agent.run(&command, Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(why, AgentError::NotYet(_)), "{why:?}");
    }

    #[test]
    fn qemu_gets_a_named_virtio_serial_port() {
        let args = GuestAgent::qemu_args(Path::new("/tmp/x,y/agent.sock"));
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args[1], "socket,id=qga0,server=on,wait=off,path=/tmp/x,,y/agent.sock");
        assert_eq!(args[5], "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0");
    }
}
