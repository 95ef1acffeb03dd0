//! TCP probes: connect, optionally send a greeting, and read what the peer says.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::{ConnectMeaning, TcpCheck};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn attempt(check: &TcpCheck, addr: SocketAddr, meaning: ConnectMeaning) -> Result<String, String> {
    let mut stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Err(_) => return Err(format!("connect to port {} timed out", check.port)),
        Ok(Err(e)) => return Err(format!("connect to port {} failed: {e}", check.port)),
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
    let n = match timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
        Err(_) if check.send.is_none() && check.contains.is_none() => {
            // Under a proxying network the guest must speak: a silent socket proves nothing.
            return Err(format!("port {} accepted but sent nothing in {}s (the network may accept for the guest; add `send` for a protocol that waits for the client)", check.port, READ_TIMEOUT.as_secs()));
        }
        Err(_) => return Err(format!("port {} sent nothing in {}s", check.port, READ_TIMEOUT.as_secs())),
        Ok(Err(e)) => return Err(format!("read from port {} failed: {e}", check.port)),
        Ok(Ok(0)) => return Err(format!("port {} closed the connection without data", check.port)),
        Ok(Ok(n)) => n,
    };
    let text = String::from_utf8_lossy(&buf[..n]);
    let first_line = text.lines().next().unwrap_or_default().chars().take(120).collect::<String>();
    if let Some(expected) = &check.contains {
        if !text.contains(expected.as_str()) {
            return Err(format!("port {} answered `{first_line}`, expected it to contain `{expected}`", check.port));
        }
    }
    Ok(format!("port {} answered `{first_line}`", check.port))
}
