//! The codec seam: one module per codec, each owning what only it knows (its configuration record and
//! that record's parser, its RFC 6381 codec string, its MP4 sample entry, its MPEG-TS stream type where
//! one exists, its keyframe test), and one table, [`CODECS`], through which the rest of the remuxer
//! finds them from what an FLV tag names.
//!
//! Adding a codec is a new file beside `avc.rs` with a [`Codec`] entry and a [`TrackConfig`]
//! implementation, and a line in [`CODECS`]: the cutter and the muxers see only [`TrackConfig`] (sample
//! entry, codec string, timescale, keyframe test, TS payload conversion) and [`Codec`] (kind, TS
//! mapping), so none of them names a concrete codec. A codec without a TS mapping (Opus, VP9) simply
//! has no stream in the TS muxer's program and goes out in fMP4 only.

pub mod aac;
pub mod avc;

use std::any::Any;

use bytes::{Bytes, BytesMut};

use super::sample::Sample;
use super::ts::PesChunk;
use super::RemuxError;
use crate::flv::{AudioCodec, FourCc, VideoCodec};

/// Whether a codec is a picture or a sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// Video.
    Video,
    /// Audio.
    Audio,
}

/// How MPEG-TS carries a codec (ISO/IEC 13818-1 Table 2-34, Table 2-22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsMapping {
    /// PMT `stream_type`.
    pub stream_type: u8,
    /// PES `stream_id` of the first stream of this kind.
    pub stream_id: u8,
}

/// Parses a codec's configuration record (the body of an FLV sequence header).
pub type ParseConfig = fn(&Bytes) -> Result<Box<dyn TrackConfig>, RemuxError>;

/// One registered codec.
#[derive(Debug)]
pub struct Codec {
    /// Name for logs and refusals.
    pub name: &'static str,
    /// Picture or sound.
    pub kind: MediaKind,
    /// The legacy FLV CodecID (video) or SoundFormat (audio), if the codec has one.
    pub flv_legacy_id: Option<u8>,
    /// The Enhanced RTMP FourCC.
    pub fourcc: FourCc,
    /// The MPEG-TS mapping; `None`: the codec goes out in fMP4 only.
    pub ts: Option<TsMapping>,
    /// Its configuration record's parser.
    pub parse_config: ParseConfig,
}

impl PartialEq for Codec {
    /// One entry per codec: the FourCC names it (comparing the parser's address would not be reliable).
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.fourcc == other.fourcc
    }
}

impl Eq for Codec {}

impl Codec {
    /// PMT `stream_type`, 0 for a codec without a TS mapping.
    pub const fn ts_stream_type(&self) -> u8 {
        match self.ts {
            Some(m) => m.stream_type,
            None => 0,
        }
    }

    /// PES `stream_id`, 0 for a codec without a TS mapping.
    pub const fn ts_stream_id(&self) -> u8 {
        match self.ts {
            Some(m) => m.stream_id,
            None => 0,
        }
    }
}

/// Every codec the remuxer serves.
pub static CODECS: &[&Codec] = &[&avc::CODEC, &aac::CODEC];

/// The registered video codec an FLV tag names, if any.
pub fn video(codec: VideoCodec) -> Option<&'static Codec> {
    CODECS.iter().copied().find(|c| {
        c.kind == MediaKind::Video
            && match codec {
                VideoCodec::Legacy(id) => c.flv_legacy_id == Some(id),
                VideoCodec::FourCc(f) => c.fourcc == f,
            }
    })
}

/// The registered audio codec an FLV tag names, if any.
pub fn audio(codec: AudioCodec) -> Option<&'static Codec> {
    CODECS.iter().copied().find(|c| {
        c.kind == MediaKind::Audio
            && match codec {
                AudioCodec::Legacy { sound_format, .. } => c.flv_legacy_id == Some(sound_format),
                AudioCodec::FourCc(f) => c.fourcc == f,
            }
    })
}

/// A track's decoder configuration, as its codec module parsed it from the sequence header: everything
/// the cutter and the muxers need to know about a codec, so that none of them names one.
pub trait TrackConfig: std::fmt::Debug + Send + Sync + 'static {
    /// The codec's table entry.
    fn codec(&self) -> &'static Codec;
    /// For [`TrackConfig::same_config`].
    fn as_any(&self) -> &dyn Any;
    /// Whether `other` configures the decoder the same way (a repeated sequence header changes
    /// nothing; a different one is a discontinuity).
    fn same_config(&self, other: &dyn TrackConfig) -> bool;
    /// RFC 6381 codec string (`avc1.64001f`, `mp4a.40.2`).
    fn codec_string(&self) -> String;
    /// Timescale of the track in MP4: ticks per second its sample durations are counted in.
    fn timescale(&self) -> u32;
    /// Picture size, for video tracks whose configuration tells it.
    fn dimensions(&self) -> Option<(u32, u32)> {
        None
    }
    /// Output channel count, for audio tracks.
    fn channels(&self) -> u16 {
        0
    }
    /// Output sampling rate in Hz, for audio tracks.
    fn sample_rate(&self) -> u32 {
        0
    }
    /// The duration of every sample in the track's timescale, for codecs whose frames all last the
    /// same (audio); `None` when samples last until the next one's decode time (video). The TS muxer
    /// groups fixed-length frames into one PES; the fMP4 muxer keeps their timeline gapless.
    fn frame_duration(&self) -> Option<u32> {
        None
    }
    /// [`TrackConfig::frame_duration`] in microseconds, rounded down (what the TS muxer groups
    /// frames by, and, rounded up to the millisecond, how long a frame lasts on the timeline).
    fn fixed_frame_us(&self) -> Option<u64> {
        self.frame_duration()
            .map(|d| u64::from(d) * 1_000_000 / u64::from(self.timescale().max(1)))
    }
    /// Checks one coded frame before it enters the timeline and answers whether it is a random access
    /// point; `Ok(None)`: it holds nothing to mux. An error drops the message and leaves the clock
    /// where it was.
    fn inspect(&self, data: &Bytes, flv_keyframe: bool) -> Result<Option<bool>, RemuxError>;
    /// Appends the chunks of `sample`'s PES payload in MPEG-TS (for codecs with a TS mapping): the
    /// conversion from the FLV/MP4 storage form, e.g. Annex-B for AVC, an ADTS header for AAC. The
    /// sample passed [`TrackConfig::inspect`] under this configuration. Codecs without a TS mapping
    /// are never asked.
    fn ts_payload(&self, sample: &Sample, out: &mut Vec<PesChunk>) {
        let _ = (sample, out);
    }
    /// Writes the MP4 sample entry (the child of `stsd`, ISO/IEC 14496-12 8.5.2), e.g. `avc1` with
    /// its `avcC`.
    fn write_sample_entry(&self, out: &mut BytesMut);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flv_names_find_their_codecs() {
        assert_eq!(video(VideoCodec::Legacy(7)), Some(&avc::CODEC));
        assert_eq!(video(VideoCodec::FourCc(FourCc::AVC)), Some(&avc::CODEC));
        assert_eq!(video(VideoCodec::Legacy(12)), None);
        assert_eq!(video(VideoCodec::FourCc(FourCc::HEVC)), None);
        let aac = AudioCodec::Legacy {
            sound_format: 10,
            flags: 0xf,
        };
        assert_eq!(audio(aac), Some(&aac::CODEC));
        assert_eq!(audio(AudioCodec::FourCc(FourCc::AAC)), Some(&aac::CODEC));
        assert_eq!(audio(AudioCodec::FourCc(FourCc::OPUS)), None);
        // One entry per codec, each findable by its FourCC.
        for c in CODECS {
            let found = match c.kind {
                MediaKind::Video => video(VideoCodec::FourCc(c.fourcc)),
                MediaKind::Audio => audio(AudioCodec::FourCc(c.fourcc)),
            };
            assert_eq!(found, Some(*c));
        }
    }
}
