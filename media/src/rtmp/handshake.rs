//! The RTMP handshake (C0/C1/C2 <-> S0/S1/S2, Adobe RTMP specification 1.0 section 5.2), I/O-free, on
//! rml_rtmp: the one part of it this server still uses (its digest handshake is what Flash-era clients
//! expect, and it holds no state past the handshake).

use rml_rtmp::handshake::{self as rml, HandshakeProcessResult, PeerType};

/// The bytes are not an RTMP handshake; the names are those this server has always logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// C0 is not version 3 (HTTP, TLS or RTMPE on the RTMP port).
    #[error("BadVersionId")]
    BadVersionId,
    /// C1's second time field is not zero.
    #[error("NonZeroedTimeInPacket1")]
    NonZeroedTimeInPacket1,
    /// C2 does not echo our time.
    #[error("IncorrectPeerTime")]
    IncorrectPeerTime,
    /// C2 does not echo our random bytes.
    #[error("IncorrectRandomData")]
    IncorrectRandomData,
    /// C1 matches no known format.
    #[error("UnknownPacket1Format")]
    UnknownPacket1Format,
    /// C2 is invalid.
    #[error("InvalidP2Packet")]
    InvalidP2Packet,
    /// Anything else rml_rtmp reports.
    #[error("Other")]
    Other,
}

impl From<rml::HandshakeError> for HandshakeError {
    fn from(e: rml::HandshakeError) -> Self {
        match e {
            rml::HandshakeError::BadVersionId => Self::BadVersionId,
            rml::HandshakeError::NonZeroedTimeInPacket1 => Self::NonZeroedTimeInPacket1,
            rml::HandshakeError::IncorrectPeerTime => Self::IncorrectPeerTime,
            rml::HandshakeError::IncorrectRandomData => Self::IncorrectRandomData,
            rml::HandshakeError::UnknownPacket1Format => Self::UnknownPacket1Format,
            rml::HandshakeError::InvalidP2Packet => Self::InvalidP2Packet,
            _ => Self::Other,
        }
    }
}

/// How far the handshake got with the bytes given.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Send `response`, then read more.
    InProgress {
        /// Bytes for the client.
        response: Vec<u8>,
    },
    /// Done: send `response`; `remaining` is what the client sent after C2 (chunk stream bytes).
    Done {
        /// Bytes for the client.
        response: Vec<u8>,
        /// Bytes after the handshake.
        remaining: Vec<u8>,
    },
}

/// The server side of a handshake.
pub struct Handshake(rml::Handshake);

impl Default for Handshake {
    fn default() -> Self {
        Self::new()
    }
}

impl Handshake {
    /// A server handshake waiting for C0/C1.
    pub fn new() -> Self {
        Self(rml::Handshake::new(PeerType::Server))
    }

    /// Feeds bytes from the client (any split).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Progress, HandshakeError> {
        Ok(match self.0.process_bytes(bytes)? {
            HandshakeProcessResult::InProgress { response_bytes } => Progress::InProgress {
                response: response_bytes,
            },
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => Progress::Done {
                response: response_bytes,
                remaining: remaining_bytes,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_handshake_completes_and_keeps_what_follows() {
        let mut c = vec![3u8];
        c.extend(std::iter::repeat_n(0u8, 1536 * 2));
        c.extend_from_slice(b"after");
        let mut hs = Handshake::new();
        let Ok(Progress::InProgress { response }) = hs.push(&c[..1000]) else {
            panic!("in progress");
        };
        assert!(response.is_empty() || response[0] == 3);
        match hs.push(&c[1000..]) {
            Ok(Progress::Done { remaining, .. }) => assert_eq!(remaining, b"after"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Handshake::new().push(b"GET / HTTP/1.1\r\n"),
            Err(HandshakeError::BadVersionId)
        );
    }
}
