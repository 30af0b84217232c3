//! The LiveDTO: what travels on the Kafka topic between `media` (the origin) and `cdn-edge`.
//!
//! A record's key is the stream name (so one stream's records stay ordered in one partition), its value is
//! raw media bytes (a chunk of an MPEG-TS segment, or empty for control messages), and its metadata is one
//! JSON record header, [`message::META_HEADER`], so a consumer in any language can read it.
//! This crate does no I/O: it defines the messages, their encoding, chunking and reassembly, and the HLS
//! media playlist model both binaries render ([`hls`]).

pub mod chunking;
/// Stable-toolchain mutation fuzzer for other crates' tests.
#[cfg(any(test, feature = "test-util"))]
pub mod fuzz;
pub mod hls;
pub mod message;
pub mod partition;
pub mod reassembly;
pub mod stream_name;
pub mod wire_v2;

pub use chunking::{split_segment, ChunkPlan};
pub use message::{
    decode_meta, decode_record, encode_meta, encode_meta_as, DecodeError, InitMeta, LiveMessage,
    PartMeta, SchemaVersion, SegmentMeta, StreamEnd, StreamStart, META_HEADER, READ_VERSIONS,
    SCHEMA_VERSION,
};
pub use partition::partition_for;
pub use reassembly::{CompleteSegment, Reassembler, ReassemblyError};
pub use stream_name::{validate_stream_name, StreamNameError};
pub use wire_v2::{Framing, Rendition};
