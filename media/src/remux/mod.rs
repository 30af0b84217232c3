//! Pure RTMP/FLV -> MPEG-TS remuxing: bytes in, bytes out, no I/O.
//!
//! [`Segmenter`] takes RTMP video/audio message bodies (FLV tag bodies) with their timestamps and
//! returns finished HLS-ready MPEG-TS [`Segment`]s. The submodules are the single-concept pieces it is
//! built from; they are public so tools and tests can use them directly.

pub mod aac;
pub mod avc;
mod bits;
mod error;
pub mod flv;
pub mod fmp4;
pub mod parts;
pub mod segmenter;
pub mod sps;
pub mod timestamp;
pub mod ts;

pub use error::RemuxError;
pub use parts::Part;
pub use segmenter::{
    AudioInfo, Segment, Segmenter, SegmenterConfig, TrackInfo, VideoInfo, AUDIO_HOLD_MS,
    PCR_DELAY_MS,
};
pub use timestamp::TIMESTAMP_OFFSET_MS;
