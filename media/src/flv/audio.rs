//! AUDIODATA: the legacy header (FLV spec v10.1 E.4.2.1, AACAUDIODATA E.4.2.2) and the Enhanced RTMP v2
//! extended header (`SoundFormat` 9 = `ExHeader`, `AudioPacketType`, `AudioFourCc`, multitrack, ModEx).

use bytes::Bytes;

use super::{FlvError, FourCc, MultitrackType, Reader};

/// Legacy SoundFormat of AAC (E.4.2.1), whose body has the AACAUDIODATA layout.
const LEGACY_AAC: u8 = 10;
/// SoundFormat 9: an extended header follows.
const EX_HEADER: u8 = 9;
/// Extended `AudioPacketType` values (Enhanced RTMP v2).
const SEQUENCE_START: u8 = 0;
const CODED_FRAMES: u8 = 1;
const SEQUENCE_END: u8 = 2;
const MULTICHANNEL_CONFIG: u8 = 4;
const MULTITRACK: u8 = 5;
const MOD_EX: u8 = 7;

/// How a tag names its codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// A legacy 4-bit SoundFormat (10 = AAC), with the rate/size/type bits of the same byte.
    Legacy {
        /// SoundFormat.
        sound_format: u8,
        /// SoundRate, SoundSize and SoundType, the low nibble.
        flags: u8,
    },
    /// An Enhanced RTMP FourCC.
    FourCc(FourCc),
}

/// What one track of an audio tag carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioPacket {
    /// The decoder configuration (AACPacketType 0, `SequenceStart`): AAC's AudioSpecificConfig,
    /// Opus's ID header.
    SequenceStart(Bytes),
    /// One or more coded frames (AACPacketType 1, `CodedFrames`).
    CodedFrames(Bytes),
    /// `SequenceEnd`.
    SequenceEnd,
    /// `MultichannelConfig`: the channel order and count.
    MultichannelConfig(Bytes),
    /// The body of a legacy format other than AAC, which has no packet type: everything after byte 0.
    Raw(Bytes),
}

/// One track of an audio tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrack {
    /// Track id: 0 unless a multitrack tag names another.
    pub track: u8,
    /// The codec.
    pub codec: AudioCodec,
    /// What the track carries.
    pub packet: AudioPacket,
}

/// The first byte of an AUDIODATA body decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioHeader {
    /// The high nibble: SoundFormat (9 = extended header).
    pub sound_format: u8,
    /// The low nibble: rate/size/type bits, or the extended `AudioPacketType`.
    pub low: u8,
}

impl AudioHeader {
    /// Reads the first byte; `None` for an empty body.
    pub fn read(body: &[u8]) -> Option<Self> {
        let first = *body.first()?;
        Some(Self {
            sound_format: first >> 4,
            low: first & 0x0f,
        })
    }

    /// An Enhanced RTMP header.
    pub fn enhanced(&self) -> bool {
        self.sound_format == EX_HEADER
    }
}

/// One AUDIODATA body, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTag {
    /// The decoded first byte.
    pub header: AudioHeader,
    /// Set for an Enhanced RTMP multitrack tag.
    pub multitrack: Option<MultitrackType>,
    /// The first (usually only) track.
    pub first: AudioTrack,
    /// Further tracks of a multitrack tag, in tag order.
    pub more: Vec<AudioTrack>,
}

impl AudioTag {
    /// Parses an AUDIODATA body (legacy or extended header).
    pub fn parse(body: &Bytes) -> Result<Self, FlvError> {
        let header = AudioHeader::read(body).ok_or(FlvError::Truncated {
            what: "AUDIODATA header",
            needed: 1,
            available: 0,
        })?;
        if header.enhanced() {
            return parse_enhanced(body, header);
        }
        let codec = AudioCodec::Legacy {
            sound_format: header.sound_format,
            flags: header.low,
        };
        let mut r = Reader::new(body, 1);
        let packet = if header.sound_format == LEGACY_AAC {
            match r.u8("AACAUDIODATA header")? {
                0 => AudioPacket::SequenceStart(r.rest()),
                1 => AudioPacket::CodedFrames(r.rest()),
                other => return Err(FlvError::UnknownAacPacketType(other)),
            }
        } else {
            AudioPacket::Raw(r.rest())
        };
        Ok(Self {
            header,
            multitrack: None,
            first: AudioTrack {
                track: 0,
                codec,
                packet,
            },
            more: Vec::new(),
        })
    }

    /// Every track of the tag, in order.
    pub fn tracks(&self) -> impl Iterator<Item = &AudioTrack> {
        std::iter::once(&self.first).chain(self.more.iter())
    }

    /// Whether any track carries a decoder configuration.
    pub fn is_sequence_start(&self) -> bool {
        self.tracks()
            .any(|t| matches!(t.packet, AudioPacket::SequenceStart(_)))
    }
}

fn parse_enhanced(body: &Bytes, header: AudioHeader) -> Result<AudioTag, FlvError> {
    let mut r = Reader::new(body, 1);
    let mut packet_type = r.skip_mod_ex(header.low, MOD_EX)?;
    let mut kind = None;
    let mut shared = None;
    if packet_type == MULTITRACK {
        let b = r.u8("multitrack header")?;
        let k = MultitrackType::from_nibble(b >> 4)?;
        packet_type = b & 0x0f;
        if matches!(packet_type, MULTITRACK | MOD_EX) {
            return Err(FlvError::NestedPacketType(packet_type));
        }
        if k != MultitrackType::ManyTracksManyCodecs {
            shared = Some(r.fourcc("AudioFourCc")?);
        }
        kind = Some(k);
    } else {
        shared = Some(r.fourcc("AudioFourCc")?);
    }
    let mut tracks = Vec::new();
    loop {
        let fourcc = match shared {
            Some(f) => f,
            None => r.fourcc("AudioFourCc")?,
        };
        let (track, end) = match kind {
            None => (0, body.len()),
            Some(k) => {
                let track = r.u8("audio track id")?;
                if k == MultitrackType::OneTrack {
                    (track, body.len())
                } else {
                    let size = r.u24("audio track size")? as usize;
                    (track, r.pos.saturating_add(size))
                }
            }
        };
        if end > body.len() {
            return Err(FlvError::Truncated {
                what: "audio track",
                needed: end,
                available: body.len(),
            });
        }
        let len = end - r.pos.min(end);
        let packet = match packet_type {
            SEQUENCE_START => AudioPacket::SequenceStart(r.slice(len, "SequenceStart")?),
            CODED_FRAMES => AudioPacket::CodedFrames(r.slice(len, "CodedFrames")?),
            SEQUENCE_END => AudioPacket::SequenceEnd,
            MULTICHANNEL_CONFIG => {
                AudioPacket::MultichannelConfig(r.slice(len, "MultichannelConfig")?)
            }
            other => return Err(FlvError::UnknownPacketType(other)),
        };
        r.pos = end;
        tracks.push(AudioTrack {
            track,
            codec: AudioCodec::FourCc(fourcc),
            packet,
        });
        let many = matches!(
            kind,
            Some(MultitrackType::ManyTracks | MultitrackType::ManyTracksManyCodecs)
        );
        if !many || r.pos >= body.len() {
            break;
        }
    }
    let mut tracks = tracks.into_iter();
    let Some(first) = tracks.next() else {
        return Err(FlvError::Truncated {
            what: "audio track",
            needed: r.pos + 1,
            available: body.len(),
        });
    };
    Ok(AudioTag {
        header,
        multitrack: kind,
        first,
        more: tracks.collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Result<AudioTag, FlvError> {
        AudioTag::parse(&Bytes::copy_from_slice(b))
    }

    #[test]
    fn legacy() {
        let t = parse(&[0xaf, 0, 0x12, 0x10]).unwrap();
        assert!(t.is_sequence_start());
        assert_eq!(
            t.first.codec,
            AudioCodec::Legacy {
                sound_format: 10,
                flags: 0xf
            }
        );
        assert_eq!(
            parse(&[0xaf, 1]).unwrap().first.packet,
            AudioPacket::CodedFrames(Bytes::new())
        );
        assert_eq!(parse(&[0xaf, 2]), Err(FlvError::UnknownAacPacketType(2)));
        assert!(matches!(
            parse(&[0xaf]),
            Err(FlvError::Truncated { needed: 2, .. })
        ));
        assert!(matches!(
            parse(&[]),
            Err(FlvError::Truncated { needed: 1, .. })
        ));
        assert_eq!(
            parse(&[0x2f, 0xff]).unwrap().first.packet,
            AudioPacket::Raw(Bytes::from_static(&[0xff]))
        );
    }

    #[test]
    fn enhanced() {
        let t = parse(b"\x90Opus\x01\x02").unwrap();
        assert!(t.header.enhanced());
        assert_eq!(t.first.codec, AudioCodec::FourCc(FourCc::OPUS));
        assert!(t.is_sequence_start());
        assert_eq!(
            parse(b"\x91Opusxy").unwrap().first.packet,
            AudioPacket::CodedFrames(Bytes::from_static(b"xy"))
        );
        assert_eq!(
            parse(b"\x92mp4a").unwrap().first.packet,
            AudioPacket::SequenceEnd
        );
        assert!(matches!(parse(b"\x90Op"), Err(FlvError::Truncated { .. })));
        assert_eq!(parse(b"\x93Opus"), Err(FlvError::UnknownPacketType(3)));
    }

    #[test]
    fn multitrack() {
        let t = parse(b"\x95\x11Opus\x00\x00\x00\x01a\x01\x00\x00\x02bc").unwrap();
        let ids: Vec<u8> = t.tracks().map(|t| t.track).collect();
        assert_eq!(ids, [0, 1]);
        assert_eq!(
            t.more[0].packet,
            AudioPacket::CodedFrames(Bytes::from_static(b"bc"))
        );
        let t = parse(b"\x95\x21Opus\x00\x00\x00\x01amp4a\x01\x00\x00\x01b").unwrap();
        let codecs: Vec<AudioCodec> = t.tracks().map(|t| t.codec).collect();
        assert_eq!(
            codecs,
            [
                AudioCodec::FourCc(FourCc::OPUS),
                AudioCodec::FourCc(FourCc::AAC)
            ]
        );
        let t = parse(b"\x95\x01Opus\x03abc").unwrap();
        assert_eq!((t.first.track, t.more.len()), (3, 0));
        assert!(matches!(
            parse(b"\x95\x11Opus\x00\x00\x00\x05a"),
            Err(FlvError::Truncated { .. })
        ));
    }
}
