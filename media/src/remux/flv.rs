//! FLV tag bodies as carried in RTMP video/audio messages (Adobe FLV spec v10.1, E.4.2 AUDIODATA and
//! E.4.3 VIDEODATA). Only the codec this origin serves is unpacked (AVC, AAC); anything else is reported
//! as a fatal error so the publisher learns why it is refused instead of producing an empty stream.

use bytes::Bytes;

use super::RemuxError;

/// FLV VIDEODATA CodecID of AVC (E.4.3.1).
const CODEC_ID_AVC: u8 = 7;
/// FLV AUDIODATA SoundFormat of AAC (E.4.2.1).
const SOUND_FORMAT_AAC: u8 = 10;
/// FrameType 5: "video info/command frame", carries no picture (E.4.3.1).
const FRAME_TYPE_COMMAND: u8 = 5;
/// Enhanced RTMP sets the top bit of the first byte and replaces CodecID by a FourCC.
const IS_EX_HEADER: u8 = 0x80;

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
    let first = *payload
        .first()
        .ok_or_else(|| RemuxError::truncated("VIDEODATA header", 1, 0))?;
    if first & IS_EX_HEADER != 0 {
        // Enhanced RTMP: bytes 1..5 are the FourCC. Report what we got even from a short tag, because
        // the publisher is using a codec we do not serve either way.
        let fourcc = (1..5)
            .map(|i| match payload.get(i) {
                Some(b) if b.is_ascii_graphic() => char::from(*b),
                _ => '?',
            })
            .collect();
        return Err(RemuxError::EnhancedRtmpUnsupported { fourcc });
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if frame_type == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Ignored);
    }
    if codec_id != CODEC_ID_AVC {
        return Err(RemuxError::UnsupportedVideoCodec {
            codec_id,
            name: video_codec_name(codec_id),
        });
    }
    let header = payload
        .get(1..5)
        .ok_or_else(|| RemuxError::truncated("AVCVIDEOPACKET header", 5, payload.len()))?;
    let (packet_type, cts) = match header {
        [t, a, b, c] => (*t, i24(*a, *b, *c)),
        _ => {
            return Err(RemuxError::truncated(
                "AVCVIDEOPACKET header",
                5,
                payload.len(),
            ))
        }
    };
    let body = payload.slice(5..);
    match packet_type {
        0 => Ok(VideoTag::SequenceHeader(body)),
        1 => Ok(VideoTag::Frame {
            keyframe: frame_type == 1,
            composition_time_ms: cts,
            data: body,
        }),
        2 => Ok(VideoTag::Ignored),
        other => Err(RemuxError::UnknownAvcPacketType(other)),
    }
}

/// Parses an AUDIODATA body (FLV spec E.4.2.1 AUDIODATA, E.4.2.2 AACAUDIODATA).
pub fn parse_audio_tag(payload: &Bytes) -> Result<AudioTag, RemuxError> {
    let first = *payload
        .first()
        .ok_or_else(|| RemuxError::truncated("AUDIODATA header", 1, 0))?;
    let sound_format = first >> 4;
    if sound_format != SOUND_FORMAT_AAC {
        return Err(RemuxError::UnsupportedAudioFormat {
            sound_format,
            name: sound_format_name(sound_format),
        });
    }
    let packet_type = *payload
        .get(1)
        .ok_or_else(|| RemuxError::truncated("AACAUDIODATA header", 2, payload.len()))?;
    let body = payload.slice(2..);
    match packet_type {
        0 => Ok(AudioTag::SequenceHeader(body)),
        1 => Ok(AudioTag::Frame(body)),
        other => Err(RemuxError::UnknownAacPacketType(other)),
    }
}

/// Sign-extends a big-endian SI24: B-frames make PTS < DTS of neighbours possible, and some encoders
/// really do send negative composition offsets.
fn i24(a: u8, b: u8, c: u8) -> i32 {
    // Put the 24 bits in the top of an i32 and shift back arithmetically to extend the sign.
    i32::from_be_bytes([a, b, c, 0]) >> 8
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
