//! RDP probes: the first exchange of a Remote Desktop connection (MS-RDPBCGR 1.3.1.1), enough to
//! prove that Windows' Remote Desktop service answers, which an open port does not (a load balancer
//! or QEMU's port forwarding accepts connections too).
//!
//! Sent: a TPKT header and an X.224 Connection Request carrying an RDP Negotiation Request for TLS
//! and CredSSP. Expected: an X.224 Connection Confirm, with a Negotiation Response (the protocol the
//! server chose) or a Negotiation Failure (which still proves an RDP server).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one attempt may take in all, unless it overlaps others with a shorter limit.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// TPKT (version 3, length 19) + X.224 CR (length indicator 14, code 0xE0, dst-ref 0, src-ref 0,
/// class 0) + RDP_NEG_REQ (type 1, flags 0, length 8, PROTOCOL_SSL | PROTOCOL_HYBRID).
const CONNECTION_REQUEST: [u8; 19] =
    [0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00];

/// Why an attempt failed; `silent`: nothing came back in time (see [`super::Attempt::silent`]).
pub struct Failure {
    pub message: String,
    pub silent: bool,
}

/// An answer that is not an RDP server's Connection Confirm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NotRdp {
    #[error("not an X.224 connection confirm (code {0:#04x})")]
    NotConfirm(u8),
    #[error("malformed RDP negotiation in the connection confirm")]
    Malformed,
}

/// One Connection Request and its answer, within `limit` (at most [`TIMEOUT`]).
pub async fn attempt(addr: SocketAddr, limit: Option<Duration>) -> Result<String, Failure> {
    let limit = limit.unwrap_or(TIMEOUT).min(TIMEOUT);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| Failure { message: format!("connect failed: {e}"), silent: false })?;
        stream
            .write_all(&CONNECTION_REQUEST)
            .await
            .map_err(|e| Failure { message: format!("failed to send the connection request: {e}"), silent: false })?;
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).await.map_err(|e| Failure {
            message: format!("no RDP answer: {e}"),
            // Closed without a byte: under QEMU's forwarding, what a guest that isn't up does.
            silent: e.kind() == std::io::ErrorKind::UnexpectedEof,
        })?;
        if header[0] != 0x03 {
            return Err(Failure {
                message: format!("not an RDP answer (first byte {:#04x})", header[0]),
                silent: false,
            });
        }
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if !(7..=512).contains(&length) {
            return Err(Failure { message: format!("not an RDP answer (TPKT length {length})"), silent: false });
        }
        let mut body = vec![0u8; length - 4];
        stream
            .read_exact(&mut body)
            .await
            .map_err(|e| Failure { message: format!("incomplete RDP answer: {e}"), silent: false })?;
        parse_confirm(&body).map_err(|e| Failure { message: e.to_string(), silent: false })
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure {
            message: format!("no RDP answer within {}", humantime::format_duration(limit)),
            silent: true,
        }),
    }
}

/// The X.224 part after the TPKT header: a Connection Confirm and what it says.
fn parse_confirm(body: &[u8]) -> Result<String, NotRdp> {
    if body.len() < 2 || body[1] & 0xf0 != 0xd0 {
        return Err(NotRdp::NotConfirm(body.get(1).copied().unwrap_or(0)));
    }
    // Length indicator, code, dst-ref (2), src-ref (2), class: 7 bytes, then the negotiation part.
    let negotiation = body.get(7..).unwrap_or_default();
    let value = |at: usize| negotiation.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    match (negotiation.first(), value(4)) {
        (Some(0x02), Some(protocol)) => Ok(format!("RDP answered (protocol {})", protocol_name(protocol))),
        (Some(0x03), Some(code)) => Ok(format!("RDP answered, refusing the offered security (failure code {code})")),
        (None, _) => Ok("RDP answered (standard RDP security)".to_string()),
        _ => Err(NotRdp::Malformed),
    }
}

fn protocol_name(protocol: u32) -> &'static str {
    match protocol {
        0 => "standard RDP security",
        1 => "tls",
        2 | 3 => "credssp",
        8 => "rdstls",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_negotiation_response() {
        // What Windows Server answers to the request above: TLS chosen.
        let body = [0x0e, 0xd0, 0x00, 0x00, 0x12, 0x34, 0x00, 0x02, 0x1f, 0x08, 0x00, 0x02, 0x00, 0x00, 0x00];
        assert_eq!(parse_confirm(&body).unwrap(), "RDP answered (protocol credssp)");
    }

    #[test]
    fn anything_else_is_not_rdp() {
        assert!(parse_confirm(b"\x02\xf0\x80").unwrap_err().to_string().starts_with("not an X.224"));
    }

    #[tokio::test]
    async fn an_open_port_that_says_nothing_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(socket);
        });
        let failure = attempt(addr, Some(Duration::from_millis(300))).await.unwrap_err();
        assert!(failure.silent && failure.message.starts_with("no RDP answer within"), "{}", failure.message);
        hold.abort();
    }
}
