//! What the remuxer takes from a typed FLV tag ([`crate::flv`]): the tags of codecs in the codec
//! table, with everything else reported as a fatal error so the publisher learns why it is refused
//! instead of producing an empty stream. Enhanced RTMP headers are refused whatever their FourCC until
//! the session negotiates them (`fourCcList` in `connect`), so a publisher never sends them today.
//!
//! The thin adapter between FLV and the codec-neutral remuxer is [`video_track_input`] /
//! [`audio_track_input`]: a tag becomes a track's configuration (parsed by its codec) or a frame of a
//! track ([`TrackInput`]), in legacy FLV's layout of one video and one audio track. The
//! [`Segmenter`](super::Segmenter) puts frames on the timeline as [`Sample`](super::sample::Sample)s,
//! because that needs the stream's clock and the track's configuration.

use bytes::Bytes;

use super::codec::TrackConfig;
use super::sample::TrackId;
use super::track;
use super::{codec, RemuxError};
use crate::flv::{self, AudioPacket, FlvError, FrameType, VideoCodec, VideoPacket};

/// What one tag means for the remuxer's tracks.
#[derive(Debug)]
pub enum TrackInput {
    /// A track's decoder configuration, parsed by its codec from the sequence header.
    Config {
        /// The track.
        track: TrackId,
        /// The parsed record.
        config: Box<dyn TrackConfig>,
    },
    /// A coded frame, not yet on the timeline.
    Frame(Frame),
    /// Nothing to mux.
    Ignored,
}

/// One coded frame of a track as the tag carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The track.
    pub track: TrackId,
    /// The publisher's claim (FLV FrameType 1); the codec checks it against the data.
    pub keyframe: bool,
    /// PTS - DTS in milliseconds (0 for audio).
    pub composition_time_ms: i32,
    /// The frame in its FLV storage form, sliced from the message.
    pub data: Bytes,
}

/// A typed video tag as track input (FLV's one video track).
pub fn video_track_input(tag: flv::VideoTag) -> Result<TrackInput, RemuxError> {
    let found = codec::video(tag.first.codec);
    Ok(match (video_input(tag)?, found) {
        (VideoTag::SequenceHeader(body), Some(codec)) => TrackInput::Config {
            track: track::VIDEO,
            config: (codec.parse_config)(&body)?,
        },
        (
            VideoTag::Frame {
                keyframe,
                composition_time_ms,
                data,
            },
            Some(_),
        ) => TrackInput::Frame(Frame {
            track: track::VIDEO,
            keyframe,
            composition_time_ms,
            data,
        }),
        // `video_input` refused codecs outside the table.
        _ => TrackInput::Ignored,
    })
}

/// A typed audio tag as track input (FLV's one audio track).
pub fn audio_track_input(tag: flv::AudioTag) -> Result<TrackInput, RemuxError> {
    let found = codec::audio(tag.first.codec);
    Ok(match (audio_input(tag)?, found) {
        (AudioTag::SequenceHeader(body), Some(codec)) => TrackInput::Config {
            track: track::AUDIO,
            config: (codec.parse_config)(&body)?,
        },
        (AudioTag::Frame(data), Some(_)) => TrackInput::Frame(Frame {
            track: track::AUDIO,
            keyframe: true,
            composition_time_ms: 0,
            data,
        }),
        _ => TrackInput::Ignored,
    })
}

/// What one VIDEODATA body holds, with its payload sliced (not copied) from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// AVCPacketType 0: an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1).
    SequenceHeader(Bytes),
    /// AVCPacketType 1: one access unit of length-prefixed NAL units.
    Frame {
        /// FrameType 1 ("key frame"); the publisher's claim, checked against the NAL types later.
        keyframe: bool,
        /// CompositionTime (SI24, may be negative): PTS - DTS in milliseconds.
        composition_time_ms: i32,
        /// The length-prefixed NAL units.
        data: Bytes,
    },
    /// AVCPacketType 2 (end of sequence) or FrameType 5 (command frame): nothing to mux.
    Ignored,
}

/// What one AUDIODATA body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// AACPacketType 0: an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).
    SequenceHeader(Bytes),
    /// AACPacketType 1: one raw AAC frame (raw_data_block, no ADTS header).
    Frame(Bytes),
}

/// Parses a VIDEODATA body (FLV spec E.4.3.1 VIDEODATA, E.4.3.2 AVCVIDEOPACKET).
pub fn parse_video_tag(payload: &Bytes) -> Result<VideoTag, RemuxError> {
    match flv::VideoTag::parse(payload) {
        Ok(tag) => video_input(tag),
        Err(e) => Err(video_error(payload, e)),
    }
}

/// The remuxer's view of a typed video tag: the codec it names must be in the codec table.
pub fn video_input(tag: flv::VideoTag) -> Result<VideoTag, RemuxError> {
    if tag.header.enhanced {
        let fourcc = match tag.first.codec {
            VideoCodec::FourCc(f) => f.lossy(),
            VideoCodec::Legacy(_) => flv::lossy_fourcc(&[]),
        };
        return Err(RemuxError::EnhancedRtmpUnsupported { fourcc });
    }
    if tag.header.frame_type == FrameType::Command {
        return Ok(VideoTag::Ignored);
    }
    if codec::video(tag.first.codec).is_none() {
        let codec_id = match tag.first.codec {
            VideoCodec::Legacy(id) => id,
            VideoCodec::FourCc(_) => 0,
        };
        return Err(RemuxError::UnsupportedVideoCodec {
            codec_id,
            name: video_codec_name(codec_id),
        });
    }
    Ok(match tag.first.packet {
        VideoPacket::SequenceStart(body) => VideoTag::SequenceHeader(body),
        VideoPacket::CodedFrames {
            composition_time_ms,
            data,
        } => VideoTag::Frame {
            keyframe: tag.header.frame_type == FrameType::Key,
            composition_time_ms,
            data,
        },
        _ => VideoTag::Ignored,
    })
}

/// The remuxer's error for a video body that does not parse: an enhanced header is refused as such
/// even when too short to name its FourCC, because the publisher uses a codec we do not serve anyway.
pub fn video_error(payload: &[u8], e: FlvError) -> RemuxError {
    if flv::VideoHeader::read(payload).is_some_and(|h| h.enhanced) {
        let fourcc = flv::lossy_fourcc(payload.get(1..).unwrap_or_default());
        return RemuxError::EnhancedRtmpUnsupported { fourcc };
    }
    e.into()
}

/// Parses an AUDIODATA body (FLV spec E.4.2.1 AUDIODATA, E.4.2.2 AACAUDIODATA).
pub fn parse_audio_tag(payload: &Bytes) -> Result<AudioTag, RemuxError> {
    match flv::AudioTag::parse(payload) {
        Ok(tag) => audio_input(tag),
        Err(e) => Err(audio_error(payload, e)),
    }
}

/// The remuxer's view of a typed audio tag: the codec it names must be in the codec table (an
/// extended header is refused, as for video).
pub fn audio_input(tag: flv::AudioTag) -> Result<AudioTag, RemuxError> {
    let served = !tag.header.enhanced() && codec::audio(tag.first.codec).is_some();
    if !served {
        return Err(unsupported_audio(tag.header.sound_format));
    }
    match tag.first.packet {
        AudioPacket::SequenceStart(body) => Ok(AudioTag::SequenceHeader(body)),
        AudioPacket::CodedFrames(body) | AudioPacket::Raw(body) => Ok(AudioTag::Frame(body)),
        AudioPacket::SequenceEnd | AudioPacket::MultichannelConfig(_) => {
            Err(RemuxError::UnknownAacPacketType(2))
        }
    }
}

/// The remuxer's error for an audio body that does not parse: a format we do not serve is refused
/// whatever follows its first byte.
pub fn audio_error(payload: &[u8], e: FlvError) -> RemuxError {
    match flv::AudioHeader::read(payload) {
        Some(h)
            if h.enhanced()
                || !codec::CODECS.iter().any(|c| {
                    c.kind == codec::MediaKind::Audio && c.flv_legacy_id == Some(h.sound_format)
                }) =>
        {
            unsupported_audio(h.sound_format)
        }
        _ => e.into(),
    }
}

fn unsupported_audio(sound_format: u8) -> RemuxError {
    RemuxError::UnsupportedAudioFormat {
        sound_format,
        name: sound_format_name(sound_format),
    }
}

impl From<FlvError> for RemuxError {
    fn from(e: FlvError) -> Self {
        match e {
            FlvError::Truncated {
                what,
                needed,
                available,
            } => RemuxError::truncated(what, needed, available),
            FlvError::UnknownAvcPacketType(t) => RemuxError::UnknownAvcPacketType(t),
            FlvError::UnknownAacPacketType(t) => RemuxError::UnknownAacPacketType(t),
            other => RemuxError::Flv(other),
        }
    }
}

fn video_codec_name(codec_id: u8) -> &'static str {
    match codec_id {
        1 => "JPEG",
        2 => "Sorenson H.263",
        3 => "Screen video",
        4 => "On2 VP6",
        5 => "On2 VP6 with alpha",
        6 => "Screen video v2",
        7 => "AVC",
        12 => "HEVC (non-standard FLV extension)",
        _ => "unknown",
    }
}

fn sound_format_name(sound_format: u8) -> &'static str {
    match sound_format {
        0 | 3 => "linear PCM",
        1 => "ADPCM",
        2 | 14 => "MP3",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        9 => "enhanced RTMP audio",
        10 => "AAC",
        11 => "Speex",
        15 => "device-specific",
        _ => "unknown",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn video(bytes: &[u8]) -> Result<VideoTag, RemuxError> {
        parse_video_tag(&Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn avc_sequence_header() {
        let tag = video(&[0x17, 0, 0, 0, 0, 1, 2, 3]).unwrap();
        assert_eq!(
            tag,
            VideoTag::SequenceHeader(Bytes::from_static(&[1, 2, 3]))
        );
    }

    #[test]
    fn avc_frame_with_negative_composition_time() {
        let tag = video(&[0x27, 1, 0xff, 0xff, 0xfe, 9]).unwrap();
        assert_eq!(
            tag,
            VideoTag::Frame {
                keyframe: false,
                composition_time_ms: -2,
                data: Bytes::from_static(&[9])
            }
        );
        let tag = video(&[0x17, 1, 0, 0, 66]).unwrap();
        assert!(matches!(
            tag,
            VideoTag::Frame {
                keyframe: true,
                composition_time_ms: 66,
                ..
            }
        ));
    }

    #[test]
    fn end_of_sequence_and_command_frames_are_ignored() {
        assert_eq!(video(&[0x17, 2, 0, 0, 0]).unwrap(), VideoTag::Ignored);
        assert_eq!(video(&[0x57, 0]).unwrap(), VideoTag::Ignored);
        assert_eq!(video(&[0x52]).unwrap(), VideoTag::Ignored);
    }

    #[test]
    fn short_video_tags_are_typed_errors() {
        assert!(matches!(
            video(&[]),
            Err(RemuxError::Truncated { needed: 1, .. })
        ));
        for len in 1..5 {
            let err = video(&[0x17, 1, 0, 0][..len]).unwrap_err();
            assert!(matches!(err, RemuxError::Truncated { needed: 5, .. }));
            assert!(!err.is_fatal());
        }
        assert_eq!(
            video(&[0x17, 3, 0, 0, 0]),
            Err(RemuxError::UnknownAvcPacketType(3))
        );
    }

    #[test]
    fn other_codecs_are_fatal() {
        let err = video(&[0x12, 0, 0]).unwrap_err();
        assert!(err.is_fatal());
        assert!(err.to_string().contains("H.263"), "{err}");

        let err = video(b"\x90hvc1\x00").unwrap_err();
        assert!(err.is_fatal());
        assert_eq!(
            err.to_string(),
            "enhanced RTMP (codec fourcc \"hvc1\") is not supported; send H.264"
        );
        let err = video(&[0x90, b'a']).unwrap_err();
        assert!(err.is_fatal());
        assert!(err.to_string().contains("a???"), "{err}");
    }

    #[test]
    fn audio_tags() {
        let a = |b: &[u8]| parse_audio_tag(&Bytes::copy_from_slice(b));
        assert_eq!(
            a(&[0xaf, 0, 0x12, 0x10]).unwrap(),
            AudioTag::SequenceHeader(Bytes::from_static(&[0x12, 0x10]))
        );
        assert_eq!(
            a(&[0xaf, 1, 7]).unwrap(),
            AudioTag::Frame(Bytes::from_static(&[7]))
        );
        assert_eq!(a(&[0xaf, 1]).unwrap(), AudioTag::Frame(Bytes::new()));
        assert!(matches!(a(&[]), Err(RemuxError::Truncated { .. })));
        assert!(matches!(a(&[0xaf]), Err(RemuxError::Truncated { .. })));
        assert_eq!(a(&[0xaf, 2]), Err(RemuxError::UnknownAacPacketType(2)));
        let err = a(&[0x2f, 0xff]).unwrap_err();
        assert!(err.is_fatal());
        assert!(err.to_string().contains("MP3"), "{err}");
    }
}
