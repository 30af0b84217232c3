//! The muxers: each turns the samples of a segment's program into one container, told by the
//! [`Segmenter`](super::Segmenter) where the [`Cutter`](super::cutter::Cutter) put the boundaries.
//!
//! A muxer asks a track's codec for anything codec-specific (its TS stream type and payload
//! conversion, its MP4 sample entry) through [`TrackConfig`] and [`Codec`](super::codec::Codec); a
//! track its container cannot carry (a codec without a TS mapping) it leaves out.
//!
//! The trait is segment-shaped (start, push, finish) with parts as an optional refinement, rather
//! than one method per container event: the cutter's verdicts are the same for every muxer, so the
//! segmenter applies each to all of them in one place. `finish_segment` returns bytes only for
//! muxers whose output is whole segments; the fMP4 muxer's output is its parts, taken as they close.

pub mod fmp4;
pub mod ts;

use super::codec::TrackConfig;
use super::cutter::PartSpan;
use super::sample::{Sample, TrackId};
use super::track::{Program, Tracks};

/// One container writer, driven segment by segment.
pub trait Muxer {
    /// Opens a segment declaring `program` (configurations from `tracks`); `discontinuity`: it
    /// starts a new timeline or configuration.
    fn start_segment(&mut self, program: &Program, tracks: &Tracks, discontinuity: bool);
    /// Adds one sample of a track of the program, with the configuration it is muxed with.
    fn push(&mut self, sample: &Sample, config: &dyn TrackConfig);
    /// `track`'s configuration is about to change within the segment: whatever the muxer still holds
    /// under the old one must be written first.
    fn reconfigure(&mut self, track: TrackId) {
        let _ = track;
    }
    /// Closes the open part (`span` `None`: it holds no reference-track sample); `last`: the segment
    /// ends with it. Muxers without parts ignore it.
    fn close_part(&mut self, span: Option<PartSpan>, last: bool) {
        let _ = (span, last);
    }
    /// Closes the segment: its bytes, for muxers whose output is whole segments.
    fn finish_segment(&mut self) -> Option<bytes::Bytes>;
}
