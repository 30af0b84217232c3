//! The RTMP handshake (C0/C1/C2 <-> S0/S1/S2, Adobe RTMP specification 1.0 section 5.2) on rml_rtmp.

use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult, PeerType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a connection never got past the handshake.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeFailure {
    /// The client did not finish within the handshake timeout.
    #[error("handshake did not complete within {0:?}")]
    Timeout(Duration),
    /// The bytes are not an RTMP handshake (e.g. C0 is not version 3: HTTP, TLS or RTMPE).
    #[error("invalid handshake: {0:?}")]
    Invalid(HandshakeError),
    /// The client closed the connection mid-handshake.
    #[error("connection closed during the handshake")]
    Closed,
    /// Reading or writing the socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the handshake within `timeout`; returns the bytes the client sent after it.
pub async fn run(socket: &mut TcpStream, timeout: Duration) -> Result<Vec<u8>, HandshakeFailure> {
    tokio::time::timeout(timeout, exchange(socket))
        .await
        .map_err(|_| HandshakeFailure::Timeout(timeout))?
}

async fn exchange(socket: &mut TcpStream) -> Result<Vec<u8>, HandshakeFailure> {
    let mut hs = Handshake::new(PeerType::Server);
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Err(HandshakeFailure::Closed);
        }
        match hs
            .process_bytes(&buf[..n])
            .map_err(HandshakeFailure::Invalid)?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                socket.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                socket.write_all(&response_bytes).await?;
                return Ok(remaining_bytes);
            }
        }
    }
}
