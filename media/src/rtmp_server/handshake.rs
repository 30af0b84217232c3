//! The handshake over a socket, within a timeout; the protocol is `media::rtmp::handshake`.

use std::time::Duration;

use media::rtmp::handshake::{Handshake, HandshakeError, Progress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a connection never got past the handshake.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeFailure {
    /// The client did not finish within the handshake timeout.
    #[error("handshake did not complete within {0:?}")]
    Timeout(Duration),
    /// The bytes are not an RTMP handshake (e.g. C0 is not version 3: HTTP, TLS or RTMPE).
    #[error("invalid handshake: {0}")]
    Invalid(#[from] HandshakeError),
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
    let mut hs = Handshake::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Err(HandshakeFailure::Closed);
        }
        match hs.push(&buf[..n])? {
            Progress::InProgress { response } => socket.write_all(&response).await?,
            Progress::Done {
                response,
                remaining,
            } => {
                socket.write_all(&response).await?;
                return Ok(remaining);
            }
        }
    }
}
