//! Pure RTMP/FLV -> MPEG-TS remuxing: bytes in, bytes out, no I/O.
//!
//! [`Segmenter`] takes RTMP video/audio message bodies (FLV tag bodies) with their timestamps and
//! returns finished HLS-ready MPEG-TS [`Segment`]s. The submodules are the single-concept pieces it is
//! built from; they are public so tools and tests can use them directly.

mod bits;
pub mod codec;
mod error;
pub mod flv;
pub mod fmp4;
pub mod parts;
pub mod segmenter;
pub mod sps;
pub mod timestamp;
pub mod ts;

/// The codec modules under their former paths (`remux::avc`, `remux::aac`).
pub use codec::{aac, avc};
pub use error::RemuxError;
pub use parts::Part;
pub use segmenter::{
    AudioInfo, Segment, Segmenter, SegmenterConfig, TrackInfo, VideoInfo, AUDIO_HOLD_MS,
    PCR_DELAY_MS,
};
pub use timestamp::TIMESTAMP_OFFSET_MS;
