//! Pure RTMP/FLV -> MPEG-TS remuxing: bytes in, bytes out, no I/O.
//!
//! [`Segmenter`] takes RTMP video/audio message bodies (FLV tag bodies) with their timestamps and
//! returns finished HLS-ready MPEG-TS [`Segment`]s (and, with low latency on, fMP4 [`Part`]s). Inside,
//! the path is codec-neutral and one responsibility per file:
//!
//! - `flv.rs`: the thin adapter from a typed FLV tag to a track's configuration or frame, finding the
//!   codec in the table of `codec/` (one module per codec: configuration record, keyframe test, TS
//!   payload conversion, MP4 sample entry).
//! - `timestamp.rs`: 32-bit millisecond RTMP clocks to one monotonic 90 kHz timeline, on which frames
//!   become [`sample::Sample`]s.
//! - `track.rs`: the stream's tracks as a list (configurations, what onMetaData announced) and the
//!   [`track::Program`] a segment declares; PIDs and fMP4 track ids follow from a track's position.
//! - `cutter.rs`: where segments and parts begin and end, for any number of tracks.
//! - `mux/`: the [`mux::Muxer`] trait and its MPEG-TS and fMP4 muxers, over the packetizer (`ts.rs`)
//!   and the box writer (`fmp4.rs`).
//! - `segmenter.rs`: the entry that passes each message along these, and starts the stream.
//!
//! The submodules are public so tools and tests can use them directly.

mod bits;
pub mod codec;
pub mod cutter;
mod error;
pub mod flv;
pub mod fmp4;
pub mod mux;
pub mod sample;
pub mod segmenter;
pub mod sps;
pub mod timestamp;
pub mod track;
pub mod ts;

/// The codec modules under their former paths (`remux::avc`, `remux::aac`).
pub use codec::{aac, avc};
pub use error::RemuxError;
pub use mux::fmp4::Part;
pub use mux::ts::PCR_DELAY_MS;
pub use segmenter::{Segment, Segmenter, SegmenterConfig, AUDIO_HOLD_MS};
pub use timestamp::TIMESTAMP_OFFSET_MS;
pub use track::{AudioInfo, TrackInfo, VideoInfo};
