//! A minimal QMP client: JSON lines over QEMU's unix socket, one command at a time.
//!
//! Every command carries an `id`, so a reply that arrives after its command timed out is recognised
//! and skipped instead of being taken for the next command's. Asynchronous events (SHUTDOWN,
//! GUEST_PANICKED, ...) read along the way are kept: they say why a VM stopped.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::time::timeout;

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a QMP exchange did not work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QmpError {
    /// QEMU closed the socket: it is exiting or has exited.
    #[error("qmp connection closed")]
    Closed,
    #[error("qmp did not answer {command} within {}s", .limit.as_secs_f64())]
    Timeout { command: String, limit: Duration },
    /// QEMU refused the command.
    #[error("{command} failed: {desc}")]
    Command { command: String, desc: String },
    #[error("{0}")]
    Protocol(String),
}

/// An asynchronous QMP event, e.g. `SHUTDOWN` with `{"guest": true, "reason": "guest-shutdown"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
}

pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// Bytes of a message not yet complete: kept across a timed-out read, so no message is torn.
    partial: Vec<u8>,
    next_id: u64,
    events: Vec<QmpEvent>,
    closed: bool,
}

impl Qmp {
    /// Connects and leaves capabilities negotiation mode.
    pub async fn connect(socket: &Path) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| QmpError::Protocol(format!("failed to connect to qmp: {e}")))?;
        let (read, writer) = stream.into_split();
        let mut qmp = Qmp {
            reader: BufReader::new(read),
            writer,
            partial: Vec::new(),
            next_id: 0,
            events: Vec::new(),
            closed: false,
        };
        let greeting = timeout(REPLY_TIMEOUT, qmp.read_message())
            .await
            .map_err(|_| QmpError::Timeout { command: "greeting".into(), limit: REPLY_TIMEOUT })??;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!("unexpected qmp greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    /// Runs a command and returns its `return` value; events read meanwhile are kept.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        self.execute_within(command, arguments, REPLY_TIMEOUT).await
    }

    /// [`Qmp::execute`] with its own limit on the wait for the reply.
    pub async fn execute_within(
        &mut self,
        command: &str,
        arguments: Value,
        limit: Duration,
    ) -> Result<Value, QmpError> {
        if self.closed {
            return Err(QmpError::Closed);
        }
        self.next_id += 1;
        let id = self.next_id;
        let mut line = serde_json::to_string(&json!({ "execute": command, "arguments": arguments, "id": id }))
            .map_err(|e| QmpError::Protocol(format!("failed to encode qmp command: {e}")))?;
        line.push('\n');
        if let Err(e) = self.writer.write_all(line.as_bytes()).await {
            return Err(self.io_error(&format!("failed to send {command}"), e));
        }
        let reply = timeout(limit, async {
            loop {
                let message = self.read_message().await?;
                // A reply to an earlier command that timed out: not ours.
                if message.get("id").and_then(Value::as_u64) != Some(id) {
                    continue;
                }
                if let Some(ret) = message.get("return") {
                    return Ok(ret.clone());
                }
                let desc =
                    message.get("error").and_then(|e| e.get("desc")).and_then(Value::as_str).unwrap_or("unknown error");
                return Err(QmpError::Command { command: command.to_string(), desc: desc.to_string() });
            }
        })
        .await;
        reply.unwrap_or_else(|_| Err(QmpError::Timeout { command: command.to_string(), limit }))
    }

    /// Reads what QEMU has already sent, waiting at most briefly: the events a QEMU that exited
    /// wrote before it went.
    pub async fn drain(&mut self) {
        while !self.closed {
            if timeout(Duration::from_millis(50), self.read_message()).await.is_err() {
                break;
            }
        }
    }

    /// The events read so far, oldest first.
    pub fn events(&self) -> &[QmpEvent] {
        &self.events
    }

    /// Whether QEMU closed the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next message that is not an event; events are recorded. Cancel-safe: a partly read line
    /// stays in `partial`.
    async fn read_message(&mut self) -> Result<Value, QmpError> {
        loop {
            if self.closed {
                return Err(QmpError::Closed);
            }
            let n = match self.reader.read_until(b'\n', &mut self.partial).await {
                Ok(n) => n,
                Err(e) => return Err(self.io_error("failed to read from qmp", e)),
            };
            if n == 0 || !self.partial.ends_with(b"\n") {
                self.closed = true;
                return Err(QmpError::Closed);
            }
            let line = std::mem::take(&mut self.partial);
            let message: Value =
                serde_json::from_slice(&line).map_err(|e| QmpError::Protocol(format!("bad qmp message: {e}")))?;
            match message.get("event").and_then(Value::as_str) {
                Some(name) => self.events.push(QmpEvent {
                    name: name.to_string(),
                    data: message.get("data").cloned().unwrap_or(Value::Null),
                }),
                None => return Ok(message),
            }
        }
    }

    /// A broken or reset connection means QEMU went away; anything else is reported as it is.
    fn io_error(&mut self, doing: &str, e: std::io::Error) -> QmpError {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
        if matches!(e.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof) {
            self.closed = true;
            QmpError::Closed
        } else {
            QmpError::Protocol(format!("{doing}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixListener;

    /// A fake QEMU: greets, then answers each command with the scripted lines (`{id}` replaced by
    /// the command's id); after the script, closes the socket.
    async fn fake_qemu(script: Vec<Vec<String>>) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n").await.unwrap();
            let mut buf = Vec::new();
            for answers in std::iter::once(vec![r#"{"return": {}, "id": {id}}"#.to_string()]).chain(script) {
                // Read one command line.
                let id = loop {
                    let mut byte = [0u8; 1];
                    if stream.read(&mut byte).await.unwrap() == 0 {
                        return;
                    }
                    if byte[0] == b'\n' {
                        let cmd: Value = serde_json::from_slice(&buf).unwrap();
                        buf.clear();
                        break cmd["id"].as_u64().unwrap();
                    }
                    buf.push(byte[0]);
                };
                for answer in answers {
                    let line = answer.replace("{id}", &id.to_string()).replace("{prev}", &(id - 1).to_string());
                    stream.write_all(format!("{line}\n").as_bytes()).await.unwrap();
                }
            }
        });
        (dir, path)
    }

    #[tokio::test]
    async fn events_are_kept_and_stale_replies_skipped() {
        let (_dir, path) = fake_qemu(vec![
            vec![
                r#"{"return": {"status": "stale"}, "id": {prev}}"#.into(),
                r#"{"event": "GUEST_PANICKED", "data": {"action": "pause"}}"#.into(),
                r#"{"event": "STOP"}"#.into(),
                r#"{"return": {"status": "guest-panicked"}, "id": {id}}"#.into(),
            ],
            vec![r#"{"error": {"class": "GenericError", "desc": "no such thing"}, "id": {id}}"#.into()],
        ])
        .await;
        let mut qmp = Qmp::connect(&path).await.unwrap();
        let status = qmp.execute("query-status", json!({})).await.unwrap();
        assert_eq!(status["status"], "guest-panicked");
        let names: Vec<&str> = qmp.events().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["GUEST_PANICKED", "STOP"]);
        assert_eq!(qmp.events()[0].data["action"], "pause");
        let err = qmp.execute("screendump", json!({})).await.unwrap_err();
        assert_eq!(err.to_string(), "screendump failed: no such thing");
        // The fake closes after its script: a closed connection, not an I/O error text.
        assert_eq!(qmp.execute("quit", json!({})).await.unwrap_err(), QmpError::Closed);
        assert!(qmp.is_closed());
        assert_eq!(qmp.execute("quit", json!({})).await.unwrap_err(), QmpError::Closed);
    }

    #[tokio::test]
    async fn drain_reads_the_events_of_a_closed_connection() {
        let (_dir, path) = fake_qemu(vec![vec![
            r#"{"return": {"status": "running"}, "id": {id}}"#.into(),
            r#"{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#.into(),
        ]])
        .await;
        let mut qmp = Qmp::connect(&path).await.unwrap();
        qmp.execute("query-status", json!({})).await.unwrap();
        qmp.drain().await;
        assert_eq!(qmp.events().len(), 1);
        assert_eq!(qmp.events()[0].data["reason"], "guest-shutdown");
    }

    #[tokio::test]
    async fn a_slow_reply_times_out_and_is_skipped_later() {
        let (_dir, path) = fake_qemu(vec![
            vec![],
            vec![
                r#"{"return": {"status": "late"}, "id": {prev}}"#.into(),
                r#"{"return": {"status": "running"}, "id": {id}}"#.into(),
            ],
        ])
        .await;
        let mut qmp = Qmp::connect(&path).await.unwrap();
        let err = qmp.execute_within("query-status", json!({}), Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(err, QmpError::Timeout { .. }), "{err:?}");
        let status = qmp.execute("query-status", json!({})).await.unwrap();
        assert_eq!(status["status"], "running");
    }
}
