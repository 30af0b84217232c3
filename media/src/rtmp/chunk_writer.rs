//! Messages -> chunk stream (Adobe RTMP specification 1.0, section 5.3): the writing half of the chunk
//! layer, as a normal RTMP server writes it.
//!
//! Each kind of message has its chunk stream (the ids rml_rtmp 0.8 used, so clients see the layout
//! they always saw: protocol and user control on 2, data on 3, video on 4, audio on 5, commands on 6),
//! and each header is compressed against the previous message on the same chunk stream: type 0 for the
//! first or for another message stream, type 1 when the length or type changes, type 2 when only the
//! timestamp delta changes, type 3 when nothing does (section 5.3.1.2). Timestamps (or deltas) of
//! 0xFFFFFF and more go in an extended timestamp, repeated in every continuation chunk (5.3.1.3).
//!
//! Everything the server sends goes through one writer, acknowledgements included, so no header ever
//! leans on a message the peer did not see.

use super::{kind, Message};

/// Chunk size every peer starts with (section 5.4.1).
const INITIAL_CHUNK_SIZE: u32 = 128;
/// Largest chunk size (section 5.4.1: 31 bits).
const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// A timestamp field of this value means a 4-byte extended timestamp follows.
const EXTENDED: u32 = 0xFF_FFFF;
/// Largest message length a chunk header can state (24 bits).
const MAX_LENGTH: usize = 0xFF_FFFF;
/// Chunk stream ids used: 2 ..= 6.
const CHUNK_STREAMS: usize = 5;

/// Why a message cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Longer than a chunk header can state.
    #[error("message of {0} bytes is longer than RTMP allows (16 MiB)")]
    TooLong(usize),
    /// A chunk size of 0 or with the top bit set.
    #[error("invalid chunk size {0}: must be 1..=2147483647")]
    InvalidChunkSize(u32),
}

/// The header fields of a message to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Timestamp, ms.
    pub timestamp: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
}

/// What the peer holds for one chunk stream: the last header written on it.
#[derive(Debug, Clone, Copy)]
struct Sent {
    header: Header,
    length: u32,
    /// The timestamp field as written: absolute after a type 0 header, else the delta.
    field: u32,
}

/// Writes messages as chunks; see the module doc.
#[derive(Debug)]
pub struct ChunkWriter {
    chunk_size: u32,
    last: [Option<Sent>; CHUNK_STREAMS],
}

impl Default for ChunkWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkWriter {
    /// A writer at the initial chunk size of 128.
    pub fn new() -> Self {
        Self {
            chunk_size: INITIAL_CHUNK_SIZE,
            last: [None; CHUNK_STREAMS],
        }
    }

    /// The chunk size in use.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Announces `size` with Set Chunk Size (a full header, as the first thing a server says) and
    /// writes every later chunk at that size.
    pub fn set_chunk_size(&mut self, size: u32, out: &mut Vec<u8>) -> Result<(), WriteError> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(WriteError::InvalidChunkSize(size));
        }
        let header = Header {
            timestamp: 0,
            type_id: kind::SET_CHUNK_SIZE,
            stream_id: 0,
        };
        self.write_full(header, &size.to_be_bytes(), out)?;
        self.chunk_size = size;
        Ok(())
    }

    /// Appends the chunks of one message to `out`, its header compressed against the previous one on
    /// its chunk stream.
    pub fn write(
        &mut self,
        header: Header,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), WriteError> {
        self.write_with(header, data, false, out)
    }

    /// Like [`ChunkWriter::write`], with a type 0 header whatever came before (for the messages that
    /// open a connection, as rml_rtmp wrote them).
    pub fn write_full(
        &mut self,
        header: Header,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), WriteError> {
        self.write_with(header, data, true, out)
    }

    /// Appends `message`; see [`ChunkWriter::write`].
    pub fn write_message(
        &mut self,
        message: &Message,
        out: &mut Vec<u8>,
    ) -> Result<(), WriteError> {
        let header = Header {
            timestamp: message.timestamp,
            type_id: message.type_id,
            stream_id: message.stream_id,
        };
        self.write(header, &message.data, out)
    }

    fn write_with(
        &mut self,
        header: Header,
        data: &[u8],
        full: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), WriteError> {
        if data.len() > MAX_LENGTH {
            return Err(WriteError::TooLong(data.len()));
        }
        let length = data.len() as u32;
        let csid = chunk_stream(header.type_id);
        let slot = usize::from(csid - 2);
        let (fmt, field) = match self.last[slot] {
            Some(prev) if !full && prev.header.stream_id == header.stream_id => {
                let delta = header.timestamp.wrapping_sub(prev.header.timestamp);
                let fmt = if prev.header.type_id != header.type_id || prev.length != length {
                    1
                } else if prev.field != delta {
                    2
                } else {
                    3
                };
                (fmt, delta)
            }
            _ => (0, header.timestamp),
        };
        self.last[slot] = Some(Sent {
            header,
            length,
            field,
        });
        let extended = field >= EXTENDED;
        out.reserve(data.len() + 16 + data.len() / self.chunk_size as usize * 5);
        out.push(fmt << 6 | csid);
        if fmt < 3 {
            out.extend_from_slice(&field.min(EXTENDED).to_be_bytes()[1..]);
        }
        if fmt < 2 {
            out.extend_from_slice(&length.to_be_bytes()[1..]);
            out.push(header.type_id);
        }
        if fmt == 0 {
            out.extend_from_slice(&header.stream_id.to_le_bytes());
        }
        if extended {
            out.extend_from_slice(&field.to_be_bytes());
        }
        let mut pieces = data.chunks(self.chunk_size as usize);
        if let Some(first) = pieces.next() {
            out.extend_from_slice(first);
        }
        for piece in pieces {
            out.push(3 << 6 | csid);
            if extended {
                out.extend_from_slice(&field.to_be_bytes());
            }
            out.extend_from_slice(piece);
        }
        Ok(())
    }
}

/// The chunk stream a message type goes on (rml_rtmp 0.8's choice, kept).
fn chunk_stream(type_id: u8) -> u8 {
    match type_id {
        1..=6 => 2,
        kind::AMF0_DATA | 19 => 3,
        kind::VIDEO => 4,
        kind::AUDIO => 5,
        _ => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::ChunkReader;
    use bytes::Bytes;
    use rml_rtmp::chunk_io::ChunkDeserializer;

    fn msg(type_id: u8, timestamp: u32, stream_id: u32, len: usize, fill: u8) -> Message {
        Message {
            timestamp,
            type_id,
            stream_id,
            data: Bytes::from(vec![fill; len]),
        }
    }

    /// Every header form: first messages, a stream change, length and type changes, equal deltas,
    /// a delta change, extended timestamps and deltas, a wrap, a timestamp going back, multi-chunk
    /// messages, an empty one.
    fn input() -> Vec<Message> {
        vec![
            msg(20, 0, 0, 200, 1),
            msg(9, 1000, 1, 5000, 2),
            msg(9, 1033, 1, 5000, 3),
            msg(9, 1066, 1, 5000, 4),
            msg(9, 1099, 1, 4000, 5),
            msg(8, 1000, 1, 10, 6),
            msg(8, 1023, 1, 10, 7),
            msg(8, 1046, 1, 10, 8),
            msg(8, 1080, 1, 10, 9),
            msg(9, 0x0100_0000, 1, 9000, 10),
            msg(9, 0x0100_0021, 1, 9000, 11),
            msg(9, u32::MAX - 5, 1, 300, 12),
            msg(9, 27, 1, 300, 13),
            msg(9, 20, 1, 300, 14),
            msg(18, 5, 1, 0, 0),
            msg(20, 7, 1, 100, 15),
            msg(4, 9, 0, 6, 16),
            msg(3, 0, 0, 4, 17),
        ]
    }

    fn written(chunk_size: u32) -> Vec<u8> {
        let mut w = ChunkWriter::new();
        let mut out = Vec::new();
        w.set_chunk_size(chunk_size, &mut out).expect("size");
        for m in input() {
            w.write_message(&m, &mut out).expect("write");
        }
        out
    }

    #[test]
    fn uses_every_header_form() {
        let mut formats = [0usize; 4];
        let mut w = ChunkWriter::new();
        let mut out = Vec::new();
        w.set_chunk_size(4096, &mut out).expect("size");
        for m in input() {
            let start = out.len();
            w.write_message(&m, &mut out).expect("write");
            formats[usize::from(out[start] >> 6)] += 1;
        }
        assert!(formats.iter().all(|&n| n > 0), "formats used: {formats:?}");
    }

    #[test]
    fn our_reader_reads_it_in_any_split() {
        for chunk_size in [1, 128, 4096] {
            let wire = written(chunk_size);
            for split in [1, 3, 128, 1000, wire.len()] {
                let mut r = ChunkReader::new();
                let got: Vec<Message> = wire
                    .chunks(split)
                    .flat_map(|c| r.push(c).expect("valid"))
                    .collect();
                assert_eq!(got, input(), "chunk size {chunk_size}, split {split}");
                assert_eq!(r.buffered(), 0);
            }
        }
    }

    #[test]
    fn rml_rtmp_reads_it_in_any_split() {
        for chunk_size in [128, 4096] {
            let wire = written(chunk_size);
            for split in [1, 7, 500, wire.len()] {
                let mut de = ChunkDeserializer::new();
                let mut got = Vec::new();
                for piece in wire.chunks(split) {
                    let mut bytes = piece;
                    while let Some(m) = de.get_next_message(bytes).expect("rml reads it") {
                        bytes = &[];
                        if m.type_id == kind::SET_CHUNK_SIZE {
                            de.set_max_chunk_size(chunk_size as usize).expect("size");
                            continue;
                        }
                        got.push(Message {
                            timestamp: m.timestamp.value,
                            type_id: m.type_id,
                            stream_id: m.message_stream_id,
                            data: m.data,
                        });
                    }
                }
                assert_eq!(got, input(), "chunk size {chunk_size}, split {split}");
            }
        }
    }

    #[test]
    fn refuses_what_cannot_be_written() {
        let mut w = ChunkWriter::new();
        let mut out = Vec::new();
        assert_eq!(
            w.set_chunk_size(0, &mut out),
            Err(WriteError::InvalidChunkSize(0))
        );
        let header = Header {
            timestamp: 0,
            type_id: 9,
            stream_id: 1,
        };
        assert_eq!(
            w.write(header, &vec![0; MAX_LENGTH + 1], &mut out),
            Err(WriteError::TooLong(MAX_LENGTH + 1))
        );
        assert!(out.is_empty());
    }
}
