//! Schema version 2 of the `livedto` header: the same messages as version 1 ([`crate::message`]) with
//! chunk framing apart from the media metadata, durations as integer milliseconds, and a rendition id.
//!
//! Both versions decode into the one in-memory form, [`LiveMessage`], so a consumer's code does not
//! care which version an origin wrote; see `docs/livedto.md` for the fields and the upgrade order.
//! Durations in memory stay seconds as `f64` computed as `ms / 1000`, exactly what version-1 origins
//! wrote, so an edge renders the same playlists from either version.

use serde::{Deserialize, Serialize};

use crate::message::{InitMeta, LiveMessage, PartMeta, SegmentMeta, StreamEnd, StreamStart};

/// Identifies one rendition (a track set at one quality) of a broadcast; 0 is the one every origin
/// produces today. Stream events (`stream_start`, `stream_end`) concern all renditions and carry none.
pub type Rendition = u32;

/// How a record's value relates to the object it carries: a whole init segment or part (`chunk` 0 of
/// 1), or one chunk of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Framing {
    /// Size of the whole object in bytes.
    pub size: u64,
    /// CRC-32 (IEEE) of the whole object.
    pub crc32: u32,
    /// Index of this record's chunk, from 0.
    #[serde(default)]
    pub chunk: u32,
    /// Number of chunks the object was split into (>= 1).
    #[serde(default = "one")]
    pub chunks: u32,
    /// Byte offset of this record's value in the object.
    #[serde(default)]
    pub offset: u64,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SegmentV2 {
    rendition: Rendition,
    stream: String,
    broadcast: String,
    seq: u64,
    disc_seq: u64,
    discontinuity: bool,
    duration_ms: u64,
    target_duration: u32,
    pts: u64,
    closed_at_ms: u64,
    codecs: String,
    framing: Framing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct InitV2 {
    rendition: Rendition,
    stream: String,
    broadcast: String,
    init: u64,
    codecs: String,
    framing: Framing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartV2 {
    rendition: Rendition,
    stream: String,
    broadcast: String,
    seq: u64,
    part: u32,
    duration_ms: u64,
    independent: bool,
    last: bool,
    disc_seq: u64,
    discontinuity: bool,
    init: u64,
    target_duration: u32,
    part_target_ms: u64,
    closed_at_ms: u64,
    framing: Framing,
}

/// A version-2 message as it is on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum MessageV2 {
    StreamStart(StreamStart),
    Segment(SegmentV2),
    StreamEnd(StreamEnd),
    Init(InitV2),
    Part(PartV2),
}

/// Seconds (as version 1 and the in-memory form hold them) to whole milliseconds. Exact for every
/// value an origin computes as `ms / 1000`; negative or non-finite values become 0.
fn to_ms(seconds: f64) -> u64 {
    let ms = (seconds * 1000.0).round();
    if ms.is_finite() && ms > 0.0 {
        ms as u64
    } else {
        0
    }
}

fn to_seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

impl MessageV2 {
    /// The wire form of an in-memory message, for `rendition`.
    pub(crate) fn from_message(msg: &LiveMessage, rendition: Rendition) -> Self {
        match msg.clone() {
            LiveMessage::StreamStart(m) => Self::StreamStart(m),
            LiveMessage::StreamEnd(m) => Self::StreamEnd(m),
            LiveMessage::Segment(m) => Self::Segment(SegmentV2 {
                rendition,
                stream: m.stream,
                broadcast: m.broadcast,
                seq: m.seq,
                disc_seq: m.disc_seq,
                discontinuity: m.discontinuity,
                duration_ms: to_ms(m.duration),
                target_duration: m.target_duration,
                pts: m.pts,
                closed_at_ms: m.closed_at_ms,
                codecs: m.codecs,
                framing: Framing {
                    size: m.size,
                    crc32: m.crc32,
                    chunk: m.chunk,
                    chunks: m.chunks,
                    offset: m.offset,
                },
            }),
            LiveMessage::Init(m) => Self::Init(InitV2 {
                rendition,
                stream: m.stream,
                broadcast: m.broadcast,
                init: m.init,
                codecs: m.codecs,
                framing: Framing {
                    size: m.size,
                    crc32: m.crc32,
                    chunk: 0,
                    chunks: 1,
                    offset: 0,
                },
            }),
            LiveMessage::Part(m) => Self::Part(PartV2 {
                rendition,
                stream: m.stream,
                broadcast: m.broadcast,
                seq: m.seq,
                part: m.part,
                duration_ms: to_ms(m.duration),
                independent: m.independent,
                last: m.last,
                disc_seq: m.disc_seq,
                discontinuity: m.discontinuity,
                init: m.init,
                target_duration: m.target_duration,
                part_target_ms: to_ms(m.part_target),
                closed_at_ms: m.closed_at_ms,
                framing: Framing {
                    size: m.size,
                    crc32: m.crc32,
                    chunk: 0,
                    chunks: 1,
                    offset: 0,
                },
            }),
        }
    }

    /// The in-memory form and the rendition (0 for stream events).
    pub(crate) fn into_message(self) -> (LiveMessage, Rendition) {
        match self {
            Self::StreamStart(m) => (LiveMessage::StreamStart(m), 0),
            Self::StreamEnd(m) => (LiveMessage::StreamEnd(m), 0),
            Self::Segment(m) => (
                LiveMessage::Segment(SegmentMeta {
                    stream: m.stream,
                    broadcast: m.broadcast,
                    seq: m.seq,
                    disc_seq: m.disc_seq,
                    discontinuity: m.discontinuity,
                    duration: to_seconds(m.duration_ms),
                    target_duration: m.target_duration,
                    pts: m.pts,
                    closed_at_ms: m.closed_at_ms,
                    codecs: m.codecs,
                    size: m.framing.size,
                    crc32: m.framing.crc32,
                    chunk: m.framing.chunk,
                    chunks: m.framing.chunks,
                    offset: m.framing.offset,
                }),
                m.rendition,
            ),
            Self::Init(m) => (
                LiveMessage::Init(InitMeta {
                    stream: m.stream,
                    broadcast: m.broadcast,
                    init: m.init,
                    codecs: m.codecs,
                    size: m.framing.size,
                    crc32: m.framing.crc32,
                }),
                m.rendition,
            ),
            Self::Part(m) => (
                LiveMessage::Part(PartMeta {
                    stream: m.stream,
                    broadcast: m.broadcast,
                    seq: m.seq,
                    part: m.part,
                    duration: to_seconds(m.duration_ms),
                    independent: m.independent,
                    last: m.last,
                    disc_seq: m.disc_seq,
                    discontinuity: m.discontinuity,
                    init: m.init,
                    target_duration: m.target_duration,
                    part_target: to_seconds(m.part_target_ms),
                    closed_at_ms: m.closed_at_ms,
                    size: m.framing.size,
                    crc32: m.framing.crc32,
                }),
                m.rendition,
            ),
        }
    }
}
