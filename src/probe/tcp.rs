//! TCP probes: connect, optionally send a greeting, and read what the peer says.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{ConnectMeaning, TcpCheck};

pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Why an attempt failed; `silent`: nothing came back in time (no connection, or no data).
pub struct Failure {
    pub message: String,
    pub silent: bool,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { message, silent: false }
    }
}

fn silent(message: String) -> Failure {
    Failure { message, silent: true }
}

/// One connection; `limit`, when given, shortens both the connect and the wait for data.
pub async fn attempt(
    check: &TcpCheck,
    addr: SocketAddr,
    meaning: ConnectMeaning,
    limit: Option<Duration>,
) -> Result<String, Failure> {
    let connect_limit = limit.map_or(CONNECT_TIMEOUT, |l| l.min(CONNECT_TIMEOUT));
    let read_limit = limit.map_or(READ_TIMEOUT, |l| l.min(READ_TIMEOUT));
    let wait = format_secs(read_limit);
    let mut stream = match timeout(connect_limit, TcpStream::connect(addr)).await {
        Err(_) => return Err(silent(format!("connect to port {} timed out", check.port))),
        Ok(Err(e)) => return Err(format!("connect to port {} failed: {e}", check.port).into()),
        Ok(Ok(s)) => s,
    };
    let needs_data = check.send.is_some() || check.contains.is_some() || meaning == ConnectMeaning::MaybeProxy;
    if !needs_data {
        return Ok(format!("port {} open", check.port));
    }
    if let Some(greeting) = &check.send {
        let greeting = greeting.replace("\\r", "\r").replace("\\n", "\n");
        stream.write_all(greeting.as_bytes()).await.map_err(|e| format!("failed to send greeting: {e}"))?;
    }
    let mut buf = vec![0u8; 4096];
    let n = match timeout(read_limit, stream.read(&mut buf)).await {
        Err(_) if check.send.is_none() && check.contains.is_none() => {
            // Under a proxying network the guest must speak: a silent socket proves nothing.
            return Err(silent(format!("port {} accepted but sent nothing in {wait} (the network may accept for the guest; add `send` for a protocol that waits for the client)", check.port)));
        }
        Err(_) => return Err(silent(format!("port {} sent nothing in {wait}", check.port))),
        Ok(Err(e)) => return Err(format!("read from port {} failed: {e}", check.port).into()),
        Ok(Ok(0)) => return Err(format!("port {} closed the connection without data", check.port).into()),
        Ok(Ok(n)) => n,
    };
    let text = String::from_utf8_lossy(&buf[..n]);
    let first_line = text.lines().next().unwrap_or_default().chars().take(120).collect::<String>();
    if let Some(expected) = &check.contains {
        if !text.contains(expected.as_str()) {
            return Err(
                format!("port {} answered `{first_line}`, expected it to contain `{expected}`", check.port).into()
            );
        }
    }
    Ok(format!("port {} answered `{first_line}`", check.port))
}

/// `3s`, `0.5s`.
fn format_secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
