//! A minimal QMP client: JSON lines over QEMU's unix socket, one command at a time.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::time::timeout;

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Qmp {
    /// Connects and leaves capabilities negotiation mode.
    pub async fn connect(socket: &Path) -> Result<Qmp, String> {
        let stream = UnixStream::connect(socket).await.map_err(|e| format!("failed to connect to qmp: {e}"))?;
        let (read, writer) = stream.into_split();
        let mut qmp = Qmp { reader: BufReader::new(read), writer };
        let greeting = qmp.read_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(format!("unexpected qmp greeting: {greeting}"));
        }
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    /// Runs a command and returns its `return` value; asynchronous events in between are skipped.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let mut line = serde_json::to_string(&json!({ "execute": command, "arguments": arguments }))
            .map_err(|e| format!("failed to encode qmp command: {e}"))?;
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await.map_err(|e| format!("failed to send {command}: {e}"))?;
        loop {
            let message = self.read_message().await?;
            if let Some(ret) = message.get("return") {
                return Ok(ret.clone());
            }
            if let Some(error) = message.get("error") {
                let desc = error.get("desc").and_then(Value::as_str).unwrap_or("unknown error");
                return Err(format!("{command} failed: {desc}"));
            }
        }
    }

    async fn read_message(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let n = timeout(REPLY_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| "qmp did not answer in time".to_string())?
            .map_err(|e| format!("failed to read from qmp: {e}"))?;
        if n == 0 {
            return Err("qmp connection closed".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("bad qmp message: {e}"))
    }
}
