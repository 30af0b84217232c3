//! Chunk stream -> messages (Adobe RTMP specification 1.0, section 5.3): the reading half of the chunk
//! layer; [`super::chunk_writer`] is the writing half.
//!
//! Our own because rml_rtmp 0.8's chunk deserializer keeps one payload buffer for all chunk streams, so
//! chunks of two messages interleaved across chunk stream ids (legal, and what encoders do when a large
//! video frame and audio share the wire) corrupt each other; it refuses a type 1 header on a chunk stream
//! id it has not seen; it reserves the whole declared message length (up to 16 MB) as soon as the first
//! chunk arrives; and it accepts a chunk size of 0. (Its closed PR #50 lists the same problems.) This
//! reader keeps state per chunk stream and bounds what a peer can make it buffer.
//!
//! The socket is read straight into its buffer ([`ChunkReader::read_buffer`]) and every message's
//! payload is a slice of it, frozen, so audio and video reach the broadcast without a copy.
//!
//! Pure: bytes in, messages out, no I/O.

use std::collections::HashMap;

use bytes::{Buf, BytesMut};

use super::Message;

/// Largest message accepted. nginx-rtmp's `max_message` defaults to 1 MB; a 4K keyframe at a high
/// bitrate can be a few MB, so allow 8 MiB. Anything larger ends the connection.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Bytes of unfinished messages (all chunk streams together) one connection may make us hold.
const MAX_PARTIAL_BYTES: usize = 2 * MAX_MESSAGE_BYTES;
/// Chunk streams one connection may use; encoders use fewer than ten.
const MAX_CHUNK_STREAMS: usize = 256;
/// Chunk size every peer starts with (section 5.4.1).
const INITIAL_CHUNK_SIZE: u32 = 128;
/// Largest chunk size (section 5.4.1: 31 bits).
const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Protocol control message type ids (section 5.4).
const SET_CHUNK_SIZE: u8 = 1;
const ABORT: u8 = 2;
/// A timestamp field of this value means a 4-byte extended timestamp follows (section 5.3.1.3).
const EXTENDED: u32 = 0xFF_FFFF;
/// Most of a message's declared length reserved on its first chunk: a typical keyframe gets its exact
/// size (no regrowth, no slack kept alive while frames are cached), while a peer that declares large
/// messages and never sends them cannot make us reserve more than this per chunk stream.
const RESERVE_LIMIT: usize = 512 * 1024;
/// Why the chunk stream cannot be read any further; the connection must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A type 2 or 3 header on a chunk stream with no previous header: the message length is unknown.
    #[error("chunk header type {fmt} on chunk stream {csid}, which has no previous message, so its length is unknown")]
    UnknownChunkStream {
        /// The chunk stream id.
        csid: u32,
        /// The header format (2 or 3).
        fmt: u8,
    },
    /// A message longer than [`MAX_MESSAGE_BYTES`].
    #[error("message of {length} bytes (type {type_id}) exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Declared message length.
        length: usize,
        /// Message type id.
        type_id: u8,
        /// The limit.
        max: usize,
    },
    /// Set Chunk Size with 0 or the top bit set (section 5.4.1).
    #[error("invalid chunk size {0}: must be 1..=2147483647")]
    InvalidChunkSize(u32),
    /// A protocol control message with a payload too short for it.
    #[error("malformed {0} message")]
    Malformed(&'static str),
    /// Too many unfinished messages at once.
    #[error("more than {0} bytes of unfinished messages")]
    TooMuchBuffered(usize),
    /// Too many chunk stream ids in use.
    #[error("more than {0} chunk streams")]
    TooManyChunkStreams(usize),
}

/// What the last header on one chunk stream said, and the message being assembled on it.
#[derive(Debug, Default)]
struct ChunkStream {
    last: Inherited,
    partial: Option<BytesMut>,
}

/// The fields of a chunk message header (section 5.3.1.2) that later compressed headers on the same
/// chunk stream inherit.
#[derive(Debug, Default, Clone, Copy)]
struct Inherited {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last header carried an extended timestamp, so type 3 chunks carry one too (section 5.3.1.3).
    extended: bool,
}

/// A header read from the buffer, applied only once the chunk's payload is there too.
struct Header {
    csid: u32,
    fmt: u8,
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    /// Bytes of basic + message header + extended timestamp.
    size: usize,
    /// Continues the message already being assembled on this chunk stream.
    continues: bool,
}

/// Reassembles a peer's chunk stream into messages; see the module doc.
#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    buf: BytesMut,
    partial_bytes: usize,
    /// Message stream id of the latest header, assumed for a type 1 header on a new chunk stream.
    last_stream_id: u32,
}

impl Default for ChunkReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkReader {
    /// A reassembler at the initial chunk size of 128.
    pub fn new() -> Self {
        Self {
            chunk_size: INITIAL_CHUNK_SIZE,
            streams: HashMap::new(),
            buf: BytesMut::new(),
            partial_bytes: 0,
            last_stream_id: 0,
        }
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bytes held: unfinished messages plus the unread part of the input.
    pub fn buffered(&self) -> usize {
        self.partial_bytes + self.buf.len()
    }

    /// Feeds bytes as they come off the socket (any split); returns the messages they complete, in
    /// order. Set Chunk Size and Abort are applied here and not returned.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Message>, ChunkError> {
        self.buf.extend_from_slice(bytes);
        self.messages()
    }

    /// The input buffer with room for at least `room` more bytes, for reading the socket straight into
    /// it (no intermediate buffer, no copy); [`ChunkReader::messages`] then takes what completed.
    pub fn read_buffer(&mut self, room: usize) -> &mut BytesMut {
        self.buf.reserve(room);
        &mut self.buf
    }

    /// The messages the input buffer completes, in order; see [`ChunkReader::push`].
    pub fn messages(&mut self) -> Result<Vec<Message>, ChunkError> {
        let mut out = Vec::new();
        while let Some(message) = self.next_message()? {
            out.push(message);
        }
        Ok(out)
    }

    /// The next message the input buffer completes, if any (Set Chunk Size and Abort are applied and
    /// not returned). One at a time, so the session can act on each before reading the next: a
    /// `publish` right behind `connect` must find the connection accepted.
    pub fn next_message(&mut self) -> Result<Option<Message>, ChunkError> {
        while let Some(header) = self.header()? {
            let have = if header.continues {
                self.streams
                    .get(&header.csid)
                    .and_then(|s| s.partial.as_ref())
                    .map_or(0, BytesMut::len)
            } else {
                0
            };
            let piece = (header.length as usize - have).min(self.chunk_size as usize);
            if self.buf.len() < header.size + piece {
                break;
            }
            self.buf.advance(header.size);
            let data = self.buf.split_to(piece);
            if let Some(message) = self.apply(header, &data)? {
                match message.type_id {
                    SET_CHUNK_SIZE => self.chunk_size = chunk_size(&message.data)?,
                    ABORT => self.abort(&message.data)?,
                    _ => return Ok(Some(message)),
                }
            }
        }
        Ok(None)
    }

    /// Reads the next chunk's header without consuming it; `None` until enough bytes arrived.
    fn header(&self) -> Result<Option<Header>, ChunkError> {
        let b = &self.buf[..];
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3f {
            0 if b.len() >= 2 => (64 + u32::from(b[1]), 2),
            1 if b.len() >= 3 => (64 + u32::from(b[1]) + 256 * u32::from(b[2]), 3),
            0 | 1 => return Ok(None),
            n => (u32::from(n), 1),
        };
        let prev = self.streams.get(&csid);
        let in_progress = prev.is_some_and(|p| p.partial.is_some());
        if prev.is_none() {
            if fmt >= 2 {
                return Err(ChunkError::UnknownChunkStream { csid, fmt });
            }
            if self.streams.len() >= MAX_CHUNK_STREAMS {
                return Err(ChunkError::TooManyChunkStreams(MAX_CHUNK_STREAMS));
            }
        }
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        if b.len() < pos + header_len {
            return Ok(None);
        }
        let h = &b[pos..pos + header_len];
        pos += header_len;
        let u24 = |s: &[u8]| u32::from_be_bytes([0, s[0], s[1], s[2]]);
        // A type 1 header on a new chunk stream (sent by some encoders) has everything but the message
        // stream id, which is the one in use; its delta counts from 0 like nginx-rtmp does.
        let base = prev.map_or(
            Inherited {
                stream_id: self.last_stream_id,
                ..Inherited::default()
            },
            |p| p.last,
        );
        let field = if fmt < 3 { u24(&h[0..3]) } else { 0 };
        let extended = if fmt < 3 {
            field == EXTENDED
        } else {
            base.extended
        };
        let ext = if extended {
            let Some(e) = b.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some(u32::from_be_bytes([e[0], e[1], e[2], e[3]]))
        } else {
            None
        };
        let (length, type_id) = if fmt <= 1 {
            (u24(&h[3..6]), h[6])
        } else {
            (base.length, base.type_id)
        };
        let stream_id = if fmt == 0 {
            u32::from_le_bytes([h[7], h[8], h[9], h[10]])
        } else {
            base.stream_id
        };
        let continues = fmt == 3 && in_progress;
        let (timestamp, delta) = match fmt {
            0 => {
                let t = ext.unwrap_or(field);
                (t, t)
            }
            1 | 2 => {
                let d = ext.unwrap_or(field);
                (base.timestamp.wrapping_add(d), d)
            }
            // Continuation of a message: its timestamp is already known, an extended field is repeated.
            _ if continues => (base.timestamp, base.delta),
            // A new message with the previous delta (section 5.3.1.2.4).
            _ => (base.timestamp.wrapping_add(base.delta), base.delta),
        };
        if !continues && length as usize > MAX_MESSAGE_BYTES {
            return Err(ChunkError::MessageTooLarge {
                length: length as usize,
                type_id,
                max: MAX_MESSAGE_BYTES,
            });
        }
        Ok(Some(Header {
            csid,
            fmt,
            timestamp,
            delta,
            length,
            type_id,
            stream_id,
            extended,
            size: pos,
            continues,
        }))
    }

    /// Records the header and appends the piece; returns the message it completes.
    fn apply(&mut self, h: Header, piece: &[u8]) -> Result<Option<Message>, ChunkError> {
        self.last_stream_id = h.stream_id;
        let stream = self.streams.entry(h.csid).or_default();
        if !h.continues {
            // A new header while a message was unfinished on this chunk stream abandons that message,
            // as an Abort would have.
            if let Some(old) = stream.partial.take() {
                self.partial_bytes -= old.len();
            }
        }
        stream.last.timestamp = h.timestamp;
        stream.last.delta = h.delta;
        stream.last.length = h.length;
        stream.last.type_id = h.type_id;
        stream.last.stream_id = h.stream_id;
        if h.fmt < 3 {
            stream.last.extended = h.extended;
        }
        // Reserved from the declared length only up to a limit, so a lying header costs little.
        let partial = stream
            .partial
            .get_or_insert_with(|| BytesMut::with_capacity((h.length as usize).min(RESERVE_LIMIT)));
        partial.extend_from_slice(piece);
        self.partial_bytes += piece.len();
        if partial.len() < h.length as usize {
            if self.partial_bytes > MAX_PARTIAL_BYTES {
                return Err(ChunkError::TooMuchBuffered(MAX_PARTIAL_BYTES));
            }
            return Ok(None);
        }
        let data = stream.partial.take().unwrap_or_default().freeze();
        self.partial_bytes -= data.len();
        Ok(Some(Message {
            timestamp: h.timestamp,
            type_id: h.type_id,
            stream_id: h.stream_id,
            data,
        }))
    }

    fn abort(&mut self, data: &[u8]) -> Result<(), ChunkError> {
        let csid = read_u32(data).ok_or(ChunkError::Malformed("Abort"))?;
        if let Some(old) = self.streams.get_mut(&csid).and_then(|s| s.partial.take()) {
            self.partial_bytes -= old.len();
        }
        Ok(())
    }
}

pub(super) fn read_u32(data: &[u8]) -> Option<u32> {
    let b = data.get(..4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn chunk_size(data: &[u8]) -> Result<u32, ChunkError> {
    let size = read_u32(data).ok_or(ChunkError::Malformed("Set Chunk Size"))?;
    if size == 0 || size > MAX_CHUNK_SIZE {
        return Err(ChunkError::InvalidChunkSize(size));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    //! rml_rtmp's serializer writes chunk streams here as an independent client would.

    use super::*;
    use bytes::Bytes;
    use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
    use rml_rtmp::messages::MessagePayload;
    use rml_rtmp::time::RtmpTimestamp;

    fn msg(type_id: u8, ts: u32, len: usize, fill: u8) -> MessagePayload {
        MessagePayload {
            timestamp: RtmpTimestamp::new(ts),
            type_id,
            message_stream_id: 1,
            data: Bytes::from(vec![fill; len]),
        }
    }

    /// Basic header for `csid` (1, 2 or 3 bytes, section 5.3.1.1).
    fn basic(fmt: u8, csid: u32) -> Vec<u8> {
        match csid {
            2..=63 => vec![fmt << 6 | csid as u8],
            64..=319 => vec![fmt << 6, (csid - 64) as u8],
            _ => vec![
                fmt << 6 | 1,
                ((csid - 64) % 256) as u8,
                ((csid - 64) / 256) as u8,
            ],
        }
    }

    fn type0(csid: u32, m: &MessagePayload) -> Vec<u8> {
        let mut v = basic(0, csid);
        v.extend_from_slice(&m.timestamp.value.to_be_bytes()[1..]);
        v.extend_from_slice(&(m.data.len() as u32).to_be_bytes()[1..]);
        v.push(m.type_id);
        v.extend_from_slice(&m.message_stream_id.to_le_bytes());
        v
    }

    /// Our messages as rml_rtmp's, to compare with what its serializer was given.
    fn all(d: &mut ChunkReader, bytes: &[u8]) -> Vec<MessagePayload> {
        d.push(bytes)
            .expect("valid chunk stream")
            .into_iter()
            .map(|m| MessagePayload {
                timestamp: RtmpTimestamp::new(m.timestamp),
                type_id: m.type_id,
                message_stream_id: m.stream_id,
                data: m.data,
            })
            .collect()
    }

    #[test]
    fn reads_what_rml_rtmp_serializes_in_any_split() {
        let mut ser = ChunkSerializer::new();
        let mut wire = ser
            .set_max_chunk_size(100, RtmpTimestamp::new(0))
            .expect("size")
            .bytes;
        let input: Vec<_> = (0..20u32)
            .map(|i| msg(9, i * 33, 50 + 37 * i as usize, i as u8))
            .collect();
        for m in &input {
            wire.extend(ser.serialize(m, false, false).expect("ser").bytes);
        }
        for split in [1, 7, 100, wire.len()] {
            let mut d = ChunkReader::new();
            let got: Vec<_> = wire.chunks(split).flat_map(|c| all(&mut d, c)).collect();
            assert_eq!(got, input, "split {split}");
            assert_eq!(d.chunk_size(), 100);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn interleaved_chunk_streams_extended_ids_and_type1_on_a_new_stream() {
        let video = msg(9, 1000, 300, 0xaa);
        let audio = msg(8, 1005, 20, 0xbb);
        let mut wire = type0(300, &video); // 2-byte basic header
        wire.extend_from_slice(&video.data[..128]);
        // Audio on a chunk stream never seen, with a type 1 header and a 3-byte basic header.
        wire.extend(basic(1, 40_000));
        wire.extend_from_slice(&1005u32.to_be_bytes()[1..]);
        wire.extend_from_slice(&20u32.to_be_bytes()[1..]);
        wire.push(8);
        wire.extend_from_slice(&audio.data);
        wire.extend(basic(3, 300));
        wire.extend_from_slice(&video.data[128..256]);
        wire.extend(basic(3, 300));
        wire.extend_from_slice(&video.data[256..]);
        let mut d = ChunkReader::new();
        assert_eq!(all(&mut d, &wire), vec![audio, video]);
    }

    /// Why this module exists: the same inputs given to rml_rtmp 0.8's deserializer alone. If an rml_rtmp
    /// upgrade makes this fail, the reassembler may no longer be needed.
    #[test]
    fn rml_rtmp_alone_mishandles_these_inputs() {
        let read_all = |wire: &[u8]| {
            std::panic::catch_unwind(|| {
                let mut de = ChunkDeserializer::new();
                let mut got = Vec::new();
                let mut bytes = wire;
                loop {
                    match de.get_next_message(bytes) {
                        Ok(Some(m)) => got.push(m),
                        Ok(None) => return Ok(got),
                        Err(e) => return Err(format!("{e:?}")),
                    }
                    bytes = &[];
                }
            })
            .unwrap_or_else(|_| Err("panicked".to_string()))
        };
        // Interleaved chunks of two messages on two chunk streams.
        let video = msg(9, 1000, 300, 0xaa);
        let audio = msg(8, 1005, 20, 0xbb);
        let mut wire = type0(6, &video);
        wire.extend_from_slice(&video.data[..128]);
        wire.extend(type0(4, &audio));
        wire.extend_from_slice(&audio.data);
        wire.extend(basic(3, 6));
        wire.extend_from_slice(&video.data[128..256]);
        wire.extend(basic(3, 6));
        wire.extend_from_slice(&video.data[256..]);
        assert_eq!(
            all(&mut ChunkReader::new(), &wire),
            vec![msg(8, 1005, 20, 0xbb), msg(9, 1000, 300, 0xaa)]
        );
        assert_ne!(
            read_all(&wire),
            Ok(vec![msg(8, 1005, 20, 0xbb), msg(9, 1000, 300, 0xaa)]),
            "rml_rtmp 0.8 mixes the payloads of interleaved messages (and panics on the overflow in debug builds)"
        );
        // A type 1 header on a chunk stream not seen before.
        let mut wire = basic(1, 7);
        wire.extend_from_slice(&[0, 0, 5, 0, 0, 3, 8, 1, 2, 3]);
        assert_eq!(all(&mut ChunkReader::new(), &wire).len(), 1);
        assert!(read_all(&wire).is_err(), "rml_rtmp 0.8 refuses it");
    }

    #[test]
    fn chunk_size_change_mid_stream_and_abort() {
        let mut d = ChunkReader::new();
        let set = |size: u32| {
            let mut v = type0(2, &msg(1, 0, 4, 0));
            v.extend_from_slice(&size.to_be_bytes());
            v
        };
        let big = msg(9, 40, 5000, 7);
        let mut wire = set(4096);
        wire.extend(type0(6, &big));
        wire.extend_from_slice(&big.data[..4096]);
        wire.extend(basic(3, 6));
        wire.extend_from_slice(&big.data[4096..]);
        assert_eq!(all(&mut d, &wire), vec![msg(9, 40, 5000, 7)]);
        // Abort drops the unfinished message on chunk stream 6.
        let mut wire = type0(6, &big);
        wire.extend_from_slice(&big.data[..4096]);
        let mut abort = type0(2, &msg(2, 0, 4, 0));
        abort.extend_from_slice(&6u32.to_be_bytes());
        wire.extend(abort);
        assert!(all(&mut d, &wire).is_empty());
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn bad_chunk_sizes_unknown_streams_and_huge_messages_are_errors() {
        for size in [0u32, 1 << 31, u32::MAX] {
            let mut v = type0(2, &msg(1, 0, 4, 0));
            v.extend_from_slice(&size.to_be_bytes());
            assert_eq!(
                ChunkReader::new().push(&v),
                Err(ChunkError::InvalidChunkSize(size))
            );
        }
        for fmt in [2u8, 3] {
            assert_eq!(
                ChunkReader::new().push(&[fmt << 6 | 5, 0, 0, 0]),
                Err(ChunkError::UnknownChunkStream { csid: 5, fmt })
            );
        }
        // 16 MB declared: refused from the header, before any of it is buffered.
        let mut d = ChunkReader::new();
        let mut v = vec![0x06, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
        v.extend_from_slice(&[0; 100]);
        assert!(matches!(
            d.push(&v),
            Err(ChunkError::MessageTooLarge {
                length: 0xff_ffff,
                ..
            })
        ));
    }

    #[test]
    fn what_a_peer_can_make_us_hold_is_bounded() {
        // Unfinished 8 MiB messages on many chunk streams: refused once 16 MiB are held.
        let mut d = ChunkReader::new();
        let mut set = type0(2, &msg(1, 0, 4, 0));
        set.extend_from_slice(&(1u32 << 20).to_be_bytes());
        d.push(&set).expect("chunk size");
        let piece = vec![0u8; 1 << 20];
        let mut result = Ok(Vec::new());
        for csid in 3..40 {
            let mut v = type0(csid, &msg(9, 0, MAX_MESSAGE_BYTES, 0));
            v.extend_from_slice(&piece);
            result = d.push(&v);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ChunkError::TooMuchBuffered(MAX_PARTIAL_BYTES)));
        assert!(d.buffered() <= MAX_PARTIAL_BYTES + (1 << 20) + 64);
        // Hundreds of chunk streams: refused past 256.
        let mut d = ChunkReader::new();
        let mut wire = Vec::new();
        for csid in 64..64 + 300 {
            wire.extend(type0(csid, &msg(9, 0, 0, 0)));
        }
        assert_eq!(
            d.push(&wire),
            Err(ChunkError::TooManyChunkStreams(MAX_CHUNK_STREAMS))
        );
    }

    #[test]
    fn extended_timestamps_and_wrap() {
        let mut ser = ChunkSerializer::new();
        let input = vec![
            msg(9, u32::MAX - 40, 300, 1),
            msg(9, u32::MAX - 7, 300, 2),
            msg(9, 26, 300, 3),
            msg(9, 0x0100_0000, 10, 4),
        ];
        let mut wire = Vec::new();
        for m in &input {
            wire.extend(ser.serialize(m, false, false).expect("ser").bytes);
        }
        let mut d = ChunkReader::new();
        assert_eq!(all(&mut d, &wire), input);
    }
}
