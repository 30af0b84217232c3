//! Message types and their JSON header encoding: schema version 1 here, version 2 in
//! [`crate::wire_v2`]; both decode into the same [`LiveMessage`].

use serde::{Deserialize, Serialize};

/// Name of the Kafka record header that carries the JSON metadata of every message.
pub const META_HEADER: &str = "livedto";

/// Version of the metadata schema [`encode_meta`] writes. A consumer drops (and counts) messages of a
/// version it does not read ([`READ_VERSIONS`]) instead of guessing at their meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// Every schema version [`decode_meta`] reads.
pub const READ_VERSIONS: [u32; 2] = [1, 2];

/// A schema version an origin can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaVersion {
    /// Version 1: flat fields, durations in seconds as floats. Every edge reads it.
    #[default]
    V1,
    /// Version 2: chunk framing apart, integer millisecond durations, a rendition id. Edges read it
    /// since this version of `common`; write it only once every edge does (edges first, then origins).
    V2,
}

impl SchemaVersion {
    /// From the number (`1` or `2`).
    pub fn from_number(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }
}

/// One message on the topic. Serialized as `{"v":1,"kind":"segment",...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveMessage {
    /// A broadcast started on a stream name (record value empty).
    StreamStart(StreamStart),
    /// One chunk of a closed segment (record value: the chunk's bytes).
    Segment(SegmentMeta),
    /// A broadcast ended (record value empty); playlists get `#EXT-X-ENDLIST`.
    StreamEnd(StreamEnd),
    /// The fMP4 initialization segment of the low-latency rendition (record value: its bytes).
    Init(InitMeta),
    /// One fMP4 partial segment of the low-latency rendition (record value: its bytes).
    Part(PartMeta),
}

impl LiveMessage {
    /// The stream name the message belongs to (also the record key).
    pub fn stream(&self) -> &str {
        match self {
            LiveMessage::StreamStart(m) => &m.stream,
            LiveMessage::Segment(m) => &m.stream,
            LiveMessage::StreamEnd(m) => &m.stream,
            LiveMessage::Init(m) => &m.stream,
            LiveMessage::Part(m) => &m.stream,
        }
    }
}

/// A broadcast began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStart {
    /// Stream name (`live/<stream>` at the RTMP side, `/live/<stream>/` at the edge).
    pub stream: String,
    /// Identifier of this broadcast, unique across media restarts.
    pub broadcast: String,
    /// Wall-clock time the publisher was accepted, Unix milliseconds.
    pub started_at_ms: u64,
    /// Media sequence number the first segment of this broadcast will carry.
    pub first_seq: u64,
}

/// A broadcast ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// Stream name.
    pub stream: String,
    /// The broadcast that ended.
    pub broadcast: String,
    /// Wall-clock time the broadcast ended, Unix milliseconds.
    pub ended_at_ms: u64,
    /// Sequence number of the broadcast's last segment, if it produced any.
    pub last_seq: Option<u64>,
}

/// Metadata of one chunk of one closed MPEG-TS segment. Every chunk of a segment carries the same
/// metadata except `chunk`; the record value is bytes `[offset, offset + len)` of the segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Stream name.
    pub stream: String,
    /// Broadcast the segment belongs to.
    pub broadcast: String,
    /// Media sequence number (RFC 8216 6.2.1), fixed at the origin; never goes backwards for a stream name.
    pub seq: u64,
    /// Discontinuity sequence number of this segment: how many discontinuities the stream had up to and
    /// including this segment. Lets every edge render the same `#EXT-X-DISCONTINUITY-SEQUENCE`.
    pub disc_seq: u64,
    /// The segment starts a new timeline or codec configuration (`#EXT-X-DISCONTINUITY` before it).
    pub discontinuity: bool,
    /// Media duration in seconds (`#EXTINF`).
    pub duration: f64,
    /// Target duration in whole seconds the playlist should announce; >= every rounded segment duration
    /// the broadcast produced so far.
    pub target_duration: u32,
    /// First presentation timestamp in the segment, 90 kHz units.
    pub pts: u64,
    /// Wall-clock time the origin closed the segment, Unix milliseconds (availability-latency base).
    pub closed_at_ms: u64,
    /// RFC 6381 codecs of the tracks, e.g. `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    /// Size of the whole segment in bytes.
    pub size: u64,
    /// CRC-32 (IEEE 802.3, as zlib's `crc32`) of the whole segment.
    pub crc32: u32,
    /// Index of this chunk, 0-based.
    pub chunk: u32,
    /// Number of chunks the segment was split into (>= 1).
    pub chunks: u32,
    /// Byte offset of this chunk in the segment.
    pub offset: u64,
}

/// The initialization segment (`ftyp` + `moov`) that the parts of the low-latency rendition from
/// segment `init` on need. Sent once per broadcast and again after a codec or track change, always
/// before the first part that uses it, in one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitMeta {
    /// Stream name.
    pub stream: String,
    /// Broadcast the init segment belongs to.
    pub broadcast: String,
    /// Identifier: the media sequence number of the first segment that uses it (`init-<init>.mp4`).
    pub init: u64,
    /// RFC 6381 codecs of its tracks.
    pub codecs: String,
    /// Size of the record value in bytes.
    pub size: u64,
    /// CRC-32 (IEEE) of the record value.
    pub crc32: u32,
}

/// One partial segment (RFC 8216bis 4.4.4.9) of the low-latency rendition: a `moof` + `mdat` fragment
/// holding the frames of part `part` of segment `seq`, in one record. The parts of a segment together
/// hold exactly the frames of the MPEG-TS segment with the same `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartMeta {
    /// Stream name.
    pub stream: String,
    /// Broadcast the part belongs to.
    pub broadcast: String,
    /// Media sequence number of the segment the part belongs to.
    pub seq: u64,
    /// Index of the part in its segment, from 0.
    pub part: u32,
    /// Media duration in seconds (`#EXT-X-PART:DURATION`).
    pub duration: f64,
    /// Starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// The last part of its segment: the segment is complete.
    pub last: bool,
    /// Discontinuity sequence number of the segment (as in [`SegmentMeta::disc_seq`]).
    pub disc_seq: u64,
    /// The segment starts a new timeline or codec configuration.
    pub discontinuity: bool,
    /// The init segment the part needs ([`InitMeta::init`]).
    pub init: u64,
    /// Target duration in whole seconds (as in [`SegmentMeta::target_duration`]).
    pub target_duration: u32,
    /// Part target duration in seconds (`#EXT-X-PART-INF:PART-TARGET`): never below the configured
    /// one, raised by any longer part of the broadcast.
    pub part_target: f64,
    /// Wall-clock time the origin closed the part, Unix milliseconds.
    pub closed_at_ms: u64,
    /// Size of the record value in bytes.
    pub size: u64,
    /// CRC-32 (IEEE) of the record value.
    pub crc32: u32,
}

#[cfg(any(test, feature = "test-util"))]
impl SegmentMeta {
    /// A plain 2-second, single-chunk segment with every other number zero: the starting point of test
    /// fixtures, which override what they care about (`SegmentMeta { size, ..SegmentMeta::sample(..) }`).
    pub fn sample(stream: &str, broadcast: &str, seq: u64) -> Self {
        Self {
            stream: stream.into(),
            broadcast: broadcast.into(),
            seq,
            disc_seq: 0,
            discontinuity: false,
            duration: 2.0,
            target_duration: 2,
            pts: 0,
            closed_at_ms: 0,
            codecs: String::new(),
            size: 0,
            crc32: 0,
            chunk: 0,
            chunks: 1,
            offset: 0,
        }
    }
}

/// Why a record's metadata could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record has no `livedto` header.
    #[error("record has no `{META_HEADER}` header")]
    MissingHeader,
    /// The header is not JSON of the expected shape.
    #[error("malformed metadata: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The header names a schema version this build does not read.
    #[error("unsupported schema version {0} (this build reads 1 and 2)")]
    UnsupportedVersion(u64),
    /// A version-2 record of a rendition other than 0, which a consumer of [`decode_meta`] (one
    /// rendition per stream) must not mix into its stream. Consumers skip such records.
    #[error("record of rendition {0}; this build serves rendition 0 only; skipped")]
    UnservedRendition(crate::wire_v2::Rendition),
    /// A `kind` this build does not know: a newer origin added it. Consumers skip such records.
    #[error("unknown message kind `{0}` (from a newer origin?); skipped")]
    UnknownKind(String),
}

/// Every `kind` this build reads.
const KINDS: [&str; 5] = ["stream_start", "segment", "stream_end", "init", "part"];

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    v: u32,
    #[serde(flatten)]
    msg: &'a LiveMessage,
}

#[derive(Serialize)]
struct EnvelopeOutV2 {
    v: u32,
    #[serde(flatten)]
    msg: crate::wire_v2::MessageV2,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u64,
    #[serde(default)]
    kind: Option<String>,
}

/// Encodes a message's metadata as the JSON value of the `livedto` header, in schema version 1.
pub fn encode_meta(msg: &LiveMessage) -> Vec<u8> {
    encode_meta_as(msg, SchemaVersion::V1, 0)
}

/// Encodes a message's metadata in schema `version`; `rendition` is written by version 2 only (version 1
/// has no renditions: it is rendition 0).
pub fn encode_meta_as(
    msg: &LiveMessage,
    version: SchemaVersion,
    rendition: crate::wire_v2::Rendition,
) -> Vec<u8> {
    // Serializing plain structs of strings and numbers into a Vec cannot fail.
    match version {
        SchemaVersion::V1 => serde_json::to_vec(&EnvelopeOut {
            v: SCHEMA_VERSION,
            msg,
        }),
        SchemaVersion::V2 => serde_json::to_vec(&EnvelopeOutV2 {
            v: 2,
            msg: crate::wire_v2::MessageV2::from_message(msg, rendition),
        }),
    }
    .unwrap_or_default()
}

/// Decodes the JSON value of a `livedto` header (version 1 or 2) for a consumer of rendition 0;
/// `None` means the record had no such header.
pub fn decode_meta(header: Option<&[u8]>) -> Result<LiveMessage, DecodeError> {
    match decode_record(header)? {
        (msg, 0) => Ok(msg),
        (_, rendition) => Err(DecodeError::UnservedRendition(rendition)),
    }
}

/// Decodes the JSON value of a `livedto` header (version 1 or 2) with the rendition it belongs to
/// (always 0 in version 1).
pub fn decode_record(
    header: Option<&[u8]>,
) -> Result<(LiveMessage, crate::wire_v2::Rendition), DecodeError> {
    let raw = header.ok_or(DecodeError::MissingHeader)?;
    // Check the version before the shape, so a future schema is reported as such, not as garbage.
    let VersionOnly { v, kind } = serde_json::from_slice(raw)?;
    if !READ_VERSIONS.iter().any(|r| u64::from(*r) == v) {
        return Err(DecodeError::UnsupportedVersion(v));
    }
    if let Some(kind) = kind.filter(|k| !KINDS.contains(&k.as_str())) {
        return Err(DecodeError::UnknownKind(kind));
    }
    if v == 1 {
        Ok((serde_json::from_slice(raw)?, 0))
    } else {
        let msg: crate::wire_v2::MessageV2 = serde_json::from_slice(raw)?;
        Ok(msg.into_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment() -> SegmentMeta {
        SegmentMeta {
            stream: "cam1".into(),
            broadcast: "b1".into(),
            seq: 17_000_000_001,
            disc_seq: 3,
            discontinuity: false,
            duration: 2.002,
            target_duration: 2,
            pts: 123_456,
            closed_at_ms: 1_700_000_000_000,
            codecs: "avc1.64001f,mp4a.40.2".into(),
            size: 3_000_000,
            crc32: 0xdead_beef,
            chunk: 1,
            chunks: 3,
            offset: 999_000,
        }
    }

    #[test]
    fn round_trips_every_kind() {
        let msgs = [
            LiveMessage::Segment(segment()),
            LiveMessage::StreamStart(StreamStart {
                stream: "cam1".into(),
                broadcast: "b1".into(),
                started_at_ms: 5,
                first_seq: 7,
            }),
            LiveMessage::StreamEnd(StreamEnd {
                stream: "cam1".into(),
                broadcast: "b1".into(),
                ended_at_ms: 9,
                last_seq: None,
            }),
            LiveMessage::Init(InitMeta {
                stream: "cam1".into(),
                broadcast: "b1".into(),
                init: 17_000_000_001,
                codecs: "avc1.64001f,mp4a.40.2".into(),
                size: 700,
                crc32: 1,
            }),
            LiveMessage::Part(PartMeta {
                stream: "cam1".into(),
                broadcast: "b1".into(),
                seq: 17_000_000_001,
                part: 3,
                duration: 0.334,
                independent: false,
                last: true,
                disc_seq: 3,
                discontinuity: false,
                init: 17_000_000_001,
                target_duration: 2,
                part_target: 0.334,
                closed_at_ms: 1_700_000_000_000,
                size: 40_000,
                crc32: 2,
            }),
        ];
        for msg in msgs {
            let raw = encode_meta(&msg);
            assert_eq!(decode_meta(Some(&raw)).expect("decodes"), msg);
        }
    }

    #[test]
    fn wire_shape_is_flat_json_with_version_and_kind() {
        let raw = encode_meta(&LiveMessage::Segment(segment()));
        let v: serde_json::Value = serde_json::from_slice(&raw).expect("json");
        assert_eq!(v["v"], 1);
        assert_eq!(v["kind"], "segment");
        assert_eq!(v["seq"], 17_000_000_001u64);
        assert_eq!(v["chunks"], 3);
    }

    #[test]
    fn rejects_missing_garbage_and_future_versions() {
        assert!(matches!(decode_meta(None), Err(DecodeError::MissingHeader)));
        assert!(matches!(
            decode_meta(Some(b"{not json")),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_meta(Some(br#"{"v":3,"kind":"segment"}"#)),
            Err(DecodeError::UnsupportedVersion(3))
        ));
        assert!(matches!(
            decode_meta(Some(br#"{"v":1,"kind":"teleport"}"#)),
            Err(DecodeError::UnknownKind(k)) if k == "teleport"
        ));
        assert!(matches!(
            decode_meta(Some(br#"{"v":1,"kind":"segment"}"#)),
            Err(DecodeError::Malformed(_))
        ));
    }
}
