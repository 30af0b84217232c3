//! What enters the cutter and the muxers: codec-neutral samples on one 90 kHz timeline.
//!
//! The issue sketched `Sample { track, dts, pts, keyframe, data }`; a sample here also carries its
//! `duration`, because the end of the last segment and part of a stream (and whether a part would
//! outgrow its target) is estimated from it, and only the input side knows it: the frame interval the
//! timestamp unwrapper last saw for video, the fixed frame length for audio.

use bytes::Bytes;

/// Which track of the stream a sample or configuration belongs to: its index in the stream's track
/// layout ([`super::track::Tracks`]). MPEG-TS PIDs and fMP4 track ids are derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrackId(pub u8);

impl TrackId {
    /// The index into per-track tables.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One access unit (video) or frame (audio) as its codec stores it in FLV and MP4: length-prefixed NAL
/// units for AVC, a raw frame for AAC. The TS muxer asks the track's codec to convert it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The track it belongs to.
    pub track: TrackId,
    /// Decode time, 90 kHz, un-wrapped and offset (see `timestamp.rs`).
    pub dts: u64,
    /// Presentation time, 90 kHz, never below `dts`.
    pub pts: u64,
    /// A random access point: an IDR for AVC, every frame for AAC.
    pub keyframe: bool,
    /// Estimated duration, 90 kHz (see the module doc); 0 when unknown.
    pub duration: u64,
    /// The sample's bytes, a slice of the RTMP message (never copied on the way in).
    pub data: Bytes,
}

/// Milliseconds (RTMP's resolution) of a 90 kHz span, for the durations segments and parts report.
pub fn ticks_to_ms(ticks: u64) -> u64 {
    ticks / 90
}
