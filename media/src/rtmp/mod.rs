//! The RTMP protocol, server side, I/O-free: bytes in, events and bytes out (Adobe RTMP specification
//! 1.0; AMF0 specification; Enhanced RTMP v2 for what `connect` may carry).
//!
//! Layered as the specification is:
//!
//! - [`handshake`]: C0/C1/C2 against S0/S1/S2 (on rml_rtmp, the one thing it is still used for);
//! - [`chunk_reader`] and [`chunk_writer`]: the chunk stream (section 5.3) to and from [`Message`]s;
//! - [`control`]: protocol control and user control messages (sections 5.4, 6.2), typed;
//! - [`amf0`]: the bounded AMF0 reader and writer commands and data are made of;
//! - [`command`]: typed commands (`connect`, `createStream`, `publish`, `play`, ...), the answers the
//!   server writes, and `@setDataFrame`/`onMetaData`;
//! - [`aggregate`]: aggregate messages split into their audio and video;
//! - [`session`]: the server session state machine driving them all, which the binary's connection
//!   task feeds with socket bytes and asks to accept or refuse what clients request.

pub mod aggregate;
pub mod amf0;
pub mod chunk_reader;
pub mod chunk_writer;
pub mod command;
pub mod control;
pub mod handshake;
pub mod session;

use bytes::Bytes;

pub use chunk_reader::{ChunkError, ChunkReader, MAX_MESSAGE_BYTES};
pub use chunk_writer::ChunkWriter;
pub use session::{Event, ServerSession, SessionError};

/// One RTMP message (section 6.1): what chunks reassemble into, and what the writer chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Timestamp in milliseconds (32 bits, wrapping).
    pub timestamp: u32,
    /// Message type id (the constants in [`kind`]).
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// The payload; for media a slice of the read buffer, not a copy.
    pub data: Bytes,
}

/// Message type ids (sections 5.4, 6.2, 7.1).
pub mod kind {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message.
    pub const ABORT: u8 = 2;
    /// Acknowledgement.
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio.
    pub const AUDIO: u8 = 8;
    /// Video.
    pub const VIDEO: u8 = 9;
    /// Data, AMF3 flavour (clients send AMF0 in it; read as AMF0, as rml_rtmp did).
    pub const AMF3_DATA: u8 = 15;
    /// Command, AMF3 flavour: a 0 byte, then AMF0 (read as such, as rml_rtmp did).
    pub const AMF3_COMMAND: u8 = 17;
    /// Data (AMF0): `@setDataFrame`, `onMetaData`, ...
    pub const AMF0_DATA: u8 = 18;
    /// Command (AMF0).
    pub const AMF0_COMMAND: u8 = 20;
    /// Aggregate.
    pub const AGGREGATE: u8 = 22;
}
