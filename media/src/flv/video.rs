//! VIDEODATA: the legacy header (FLV spec v10.1 E.4.3.1, AVCVIDEOPACKET E.4.3.2) and the Enhanced RTMP
//! v2 extended header (`IsExHeader`, `VideoPacketType`, `VideoFourCc`, multitrack, ModEx).

use bytes::Bytes;

use super::{i24, FlvError, FourCc, MultitrackType, Reader};

/// Legacy CodecID of AVC (E.4.3.1), whose body has the AVCVIDEOPACKET layout.
const LEGACY_AVC: u8 = 7;
/// Extended `VideoPacketType` values (Enhanced RTMP v2).
const SEQUENCE_START: u8 = 0;
const CODED_FRAMES: u8 = 1;
const SEQUENCE_END: u8 = 2;
const CODED_FRAMES_X: u8 = 3;
const METADATA: u8 = 4;
const MPEG2TS_SEQUENCE_START: u8 = 5;
const MULTITRACK: u8 = 6;
const MOD_EX: u8 = 7;

/// `VideoFrameType` (E.4.3.1; 3 bits in an extended header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// 1: a key frame (for AVC, a seekable frame).
    Key,
    /// 2: an inter frame.
    Inter,
    /// 3: a disposable inter frame (H.263 only).
    DisposableInter,
    /// 4: a generated key frame (reserved for server use).
    GeneratedKey,
    /// 5: a video info / command frame, no picture.
    Command,
    /// Any other value (0, 6, 7, or 8..15 in a legacy header).
    Other(u8),
}

impl FrameType {
    fn from_bits(v: u8) -> Self {
        match v {
            1 => Self::Key,
            2 => Self::Inter,
            3 => Self::DisposableInter,
            4 => Self::GeneratedKey,
            5 => Self::Command,
            other => Self::Other(other),
        }
    }
}

/// How a tag names its codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// A legacy 4-bit CodecID (7 = AVC).
    Legacy(u8),
    /// An Enhanced RTMP FourCC.
    FourCc(FourCc),
}

/// What one track of a video tag carries, payloads sliced from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoPacket {
    /// The decoder configuration record (AVCPacketType 0, `SequenceStart`).
    SequenceStart(Bytes),
    /// One access unit (AVCPacketType 1, `CodedFrames`, `CodedFramesX` with composition time 0).
    CodedFrames {
        /// PTS - DTS in milliseconds (SI24, may be negative).
        composition_time_ms: i32,
        /// The coded frame, as the codec's FLV binding stores it (AVC: length-prefixed NAL units).
        data: Bytes,
    },
    /// End of sequence (AVCPacketType 2, `SequenceEnd`).
    SequenceEnd,
    /// A command frame (FrameType 5): the `VideoCommand` byte if present, no picture.
    Command(Option<u8>),
    /// `Metadata` (an AMF0 `colorInfo` object and the like).
    Metadata(Bytes),
    /// `MPEG2TSSequenceStart`: a TS descriptor as configuration.
    Mpeg2TsSequenceStart(Bytes),
    /// The body of a legacy codec other than AVC, which has no packet type: everything after byte 0.
    Raw(Bytes),
}

/// One track of a video tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrack {
    /// Track id: 0 unless a multitrack tag names another.
    pub track: u8,
    /// The codec named by the tag (or by the track, in a many-codecs multitrack tag).
    pub codec: VideoCodec,
    /// What the track carries.
    pub packet: VideoPacket,
}

/// The first byte of a VIDEODATA body decoded (and the packet type, where it is the next byte): enough
/// to tell keyframes apart without reading on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoHeader {
    /// `IsExHeader`: an Enhanced RTMP header (FourCC follows).
    pub enhanced: bool,
    /// The frame type.
    pub frame_type: FrameType,
    /// The low nibble: the legacy CodecID, or the extended `VideoPacketType`.
    pub low: u8,
    /// The packet type of the frames: AVCPacketType (legacy AVC), the extended `VideoPacketType`
    /// (that of the tracks in a multitrack tag); `None` if the body is too short, behind ModEx, or a
    /// legacy codec without packet types.
    pub packet_type: Option<u8>,
}

impl VideoHeader {
    /// Reads the first byte (and the second where it holds the packet type); `None` for an empty body.
    pub fn read(body: &[u8]) -> Option<Self> {
        let first = *body.first()?;
        let enhanced = first & 0x80 != 0;
        let frame_bits = if enhanced {
            (first >> 4) & 0x07
        } else {
            first >> 4
        };
        let low = first & 0x0f;
        let packet_type = match (enhanced, low) {
            (true, MULTITRACK) => body.get(1).map(|b| b & 0x0f),
            (true, MOD_EX) => None,
            (true, t) => Some(t),
            (false, LEGACY_AVC) => body.get(1).copied(),
            (false, _) => None,
        };
        Some(Self {
            enhanced,
            frame_type: FrameType::from_bits(frame_bits),
            low,
            packet_type,
        })
    }

    /// For a body holding coded frames (not a configuration, end of sequence, command or metadata),
    /// whether they are a keyframe. Read from the header alone, so it holds for any codec.
    pub fn coded_keyframe(&self) -> Option<bool> {
        if self.frame_type == FrameType::Command {
            return None;
        }
        let coded = if self.enhanced {
            matches!(self.packet_type, Some(CODED_FRAMES | CODED_FRAMES_X))
        } else if self.low == LEGACY_AVC {
            self.packet_type == Some(1)
        } else {
            true
        };
        coded.then_some(self.frame_type == FrameType::Key)
    }
}

/// One VIDEODATA body, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTag {
    /// The decoded first byte.
    pub header: VideoHeader,
    /// Set for an Enhanced RTMP multitrack tag.
    pub multitrack: Option<MultitrackType>,
    /// The first (usually only) track.
    pub first: VideoTrack,
    /// Further tracks of a multitrack tag, in tag order.
    pub more: Vec<VideoTrack>,
}

impl VideoTag {
    /// Parses a VIDEODATA body (legacy or extended header).
    pub fn parse(body: &Bytes) -> Result<Self, FlvError> {
        let header = VideoHeader::read(body).ok_or(FlvError::Truncated {
            what: "VIDEODATA header",
            needed: 1,
            available: 0,
        })?;
        if header.enhanced {
            return parse_enhanced(body, header);
        }
        let codec = VideoCodec::Legacy(header.low);
        let mut r = Reader::new(body, 1);
        let packet = if header.frame_type == FrameType::Command {
            VideoPacket::Command(body.get(1).copied())
        } else if header.low == LEGACY_AVC {
            let h = r.take(4, "AVCVIDEOPACKET header")?;
            let cts = i24(&h[1..]);
            match h[0] {
                0 => VideoPacket::SequenceStart(r.rest()),
                1 => VideoPacket::CodedFrames {
                    composition_time_ms: cts,
                    data: r.rest(),
                },
                2 => VideoPacket::SequenceEnd,
                other => return Err(FlvError::UnknownAvcPacketType(other)),
            }
        } else {
            VideoPacket::Raw(r.rest())
        };
        Ok(Self {
            header,
            multitrack: None,
            first: VideoTrack {
                track: 0,
                codec,
                packet,
            },
            more: Vec::new(),
        })
    }

    /// Every track of the tag, in order.
    pub fn tracks(&self) -> impl Iterator<Item = &VideoTrack> {
        std::iter::once(&self.first).chain(self.more.iter())
    }

    /// For a tag holding coded frames, whether they are a keyframe ([`VideoHeader::coded_keyframe`]).
    pub fn coded_keyframe(&self) -> Option<bool> {
        self.header.coded_keyframe()
    }

    /// Whether any track carries a decoder configuration.
    pub fn is_sequence_start(&self) -> bool {
        self.tracks()
            .any(|t| matches!(t.packet, VideoPacket::SequenceStart(_)))
    }
}

fn parse_enhanced(body: &Bytes, header: VideoHeader) -> Result<VideoTag, FlvError> {
    let mut r = Reader::new(body, 1);
    let mut packet_type = r.skip_mod_ex(header.low, MOD_EX)?;
    let mut multitrack = None;
    let mut shared_fourcc = None;
    if packet_type == MULTITRACK {
        let b = r.u8("multitrack header")?;
        let kind = MultitrackType::from_nibble(b >> 4)?;
        packet_type = b & 0x0f;
        if matches!(packet_type, MULTITRACK | MOD_EX) {
            return Err(FlvError::NestedPacketType(packet_type));
        }
        if kind != MultitrackType::ManyTracksManyCodecs {
            shared_fourcc = Some(r.fourcc("VideoFourCc")?);
        }
        multitrack = Some(kind);
    } else {
        shared_fourcc = Some(r.fourcc("VideoFourCc")?);
    }
    let Some(kind) = multitrack else {
        let fourcc = shared_fourcc.unwrap_or(FourCc([0; 4]));
        let end = body.len();
        let packet = enhanced_packet(&mut r, header, packet_type, fourcc, end)?;
        return Ok(VideoTag {
            header,
            multitrack: None,
            first: VideoTrack {
                track: 0,
                codec: VideoCodec::FourCc(fourcc),
                packet,
            },
            more: Vec::new(),
        });
    };
    let mut tracks = Vec::new();
    loop {
        let fourcc = match shared_fourcc {
            Some(f) => f,
            None => r.fourcc("VideoFourCc")?,
        };
        let track = r.u8("video track id")?;
        let end = if kind == MultitrackType::OneTrack {
            body.len()
        } else {
            let size = r.u24("video track size")? as usize;
            r.pos.saturating_add(size)
        };
        if end > body.len() {
            return Err(FlvError::Truncated {
                what: "video track",
                needed: end,
                available: body.len(),
            });
        }
        let packet = enhanced_packet(&mut r, header, packet_type, fourcc, end)?;
        r.pos = end;
        tracks.push(VideoTrack {
            track,
            codec: VideoCodec::FourCc(fourcc),
            packet,
        });
        if kind == MultitrackType::OneTrack || r.pos >= body.len() {
            break;
        }
    }
    let mut tracks = tracks.into_iter();
    let Some(first) = tracks.next() else {
        return Err(FlvError::Truncated {
            what: "video track",
            needed: r.pos + 1,
            available: body.len(),
        });
    };
    Ok(VideoTag {
        header,
        multitrack: Some(kind),
        first,
        more: tracks.collect(),
    })
}

/// The body of one extended packet, which ends at `end`.
fn enhanced_packet(
    r: &mut Reader<'_>,
    header: VideoHeader,
    packet_type: u8,
    fourcc: FourCc,
    end: usize,
) -> Result<VideoPacket, FlvError> {
    let len = end.saturating_sub(r.pos);
    if header.frame_type == FrameType::Command && packet_type != METADATA {
        return Ok(VideoPacket::Command(r.body.get(r.pos).copied()));
    }
    Ok(match packet_type {
        SEQUENCE_START => VideoPacket::SequenceStart(r.slice(len, "SequenceStart")?),
        CODED_FRAMES => {
            // Only AVC and HEVC carry a composition time in CodedFrames.
            let cts = if fourcc == FourCc::AVC || fourcc == FourCc::HEVC {
                if len < 3 {
                    return Err(FlvError::Truncated {
                        what: "CodedFrames composition time",
                        needed: r.pos + 3,
                        available: end,
                    });
                }
                i24(r.take(3, "CodedFrames composition time")?)
            } else {
                0
            };
            let len = end.saturating_sub(r.pos);
            VideoPacket::CodedFrames {
                composition_time_ms: cts,
                data: r.slice(len, "CodedFrames")?,
            }
        }
        CODED_FRAMES_X => VideoPacket::CodedFrames {
            composition_time_ms: 0,
            data: r.slice(len, "CodedFramesX")?,
        },
        SEQUENCE_END => VideoPacket::SequenceEnd,
        METADATA => VideoPacket::Metadata(r.slice(len, "video Metadata")?),
        MPEG2TS_SEQUENCE_START => {
            VideoPacket::Mpeg2TsSequenceStart(r.slice(len, "MPEG2TSSequenceStart")?)
        }
        other => return Err(FlvError::UnknownPacketType(other)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Result<VideoTag, FlvError> {
        VideoTag::parse(&Bytes::copy_from_slice(b))
    }

    #[test]
    fn legacy_avc() {
        let t = parse(&[0x17, 1, 0xff, 0xff, 0xfe, 9]).unwrap();
        assert_eq!(t.header.frame_type, FrameType::Key);
        assert_eq!(t.first.codec, VideoCodec::Legacy(7));
        assert_eq!(
            t.first.packet,
            VideoPacket::CodedFrames {
                composition_time_ms: -2,
                data: Bytes::from_static(&[9])
            }
        );
        assert_eq!(t.coded_keyframe(), Some(true));
        let t = parse(&[0x17, 0, 0, 0, 0, 1, 2]).unwrap();
        assert!(t.is_sequence_start());
        assert_eq!(t.coded_keyframe(), None);
        assert_eq!(
            parse(&[0x27, 2, 0, 0, 0]).unwrap().first.packet,
            VideoPacket::SequenceEnd
        );
        assert_eq!(
            parse(&[0x57, 1]).unwrap().first.packet,
            VideoPacket::Command(Some(1))
        );
        assert_eq!(
            parse(&[0x17, 3, 0, 0, 0]),
            Err(FlvError::UnknownAvcPacketType(3))
        );
        assert!(matches!(
            parse(&[0x17, 1, 0]),
            Err(FlvError::Truncated { needed: 5, .. })
        ));
        assert!(matches!(
            parse(&[]),
            Err(FlvError::Truncated { needed: 1, .. })
        ));
        let t = parse(&[0x22, 7, 7]).unwrap();
        assert_eq!(t.first.codec, VideoCodec::Legacy(2));
        assert_eq!(
            t.first.packet,
            VideoPacket::Raw(Bytes::from_static(&[7, 7]))
        );
    }

    #[test]
    fn enhanced_single_track() {
        // HEVC keyframe CodedFrames with a composition time of 33.
        let t = parse(b"\x91hvc1\x00\x00\x21\xaa\xbb").unwrap();
        assert!(t.header.enhanced);
        assert_eq!(t.header.frame_type, FrameType::Key);
        assert_eq!(t.first.codec, VideoCodec::FourCc(FourCc::HEVC));
        assert_eq!(
            t.first.packet,
            VideoPacket::CodedFrames {
                composition_time_ms: 33,
                data: Bytes::from_static(&[0xaa, 0xbb])
            }
        );
        // AV1 inter frame: CodedFrames without composition time; CodedFramesX for HEVC.
        let t = parse(b"\xa1av01\x01\x02").unwrap();
        assert_eq!(t.coded_keyframe(), Some(false));
        assert!(
            matches!(&t.first.packet, VideoPacket::CodedFrames { composition_time_ms: 0, data } if data.len() == 2)
        );
        assert_eq!(parse(b"\x93hvc1\x05").unwrap().coded_keyframe(), Some(true));
        assert!(parse(b"\x90hvc1\x01\x02").unwrap().is_sequence_start());
        assert_eq!(
            parse(b"\x92vp09").unwrap().first.packet,
            VideoPacket::SequenceEnd
        );
        assert!(matches!(
            parse(b"\x94av01\x02").unwrap().first.packet,
            VideoPacket::Metadata(_)
        ));
        assert!(matches!(parse(b"\x90hv"), Err(FlvError::Truncated { .. })));
        assert_eq!(parse(b"\x98hvc1"), Err(FlvError::UnknownPacketType(8)));
    }

    #[test]
    fn enhanced_mod_ex_is_skipped() {
        // ModEx with 3 bytes of data (size - 1 = 2), then type 0 / packet type CodedFramesX.
        let t = parse(b"\x97\x02abc\x03hvc1\x07").unwrap();
        assert!(matches!(t.first.packet, VideoPacket::CodedFrames { .. }));
        assert!(matches!(
            parse(b"\x97\x05ab"),
            Err(FlvError::Truncated { .. })
        ));
    }

    #[test]
    fn multitrack() {
        // ManyTracks of AVC, CodedFramesX: track 1 (2 bytes), track 2 (1 byte).
        let t = parse(b"\x96\x13avc1\x01\x00\x00\x02xy\x02\x00\x00\x01z").unwrap();
        assert_eq!(t.multitrack, Some(MultitrackType::ManyTracks));
        let ids: Vec<u8> = t.tracks().map(|t| t.track).collect();
        assert_eq!(ids, [1, 2]);
        assert!(
            matches!(&t.more[0].packet, VideoPacket::CodedFrames { data, .. } if data.as_ref() == b"z")
        );
        // ManyTracksManyCodecs: a FourCC per track.
        let t = parse(b"\x96\x20hvc1\x00\x00\x00\x01Aav01\x01\x00\x00\x01B").unwrap();
        let codecs: Vec<VideoCodec> = t.tracks().map(|t| t.codec).collect();
        assert_eq!(
            codecs,
            [
                VideoCodec::FourCc(FourCc::HEVC),
                VideoCodec::FourCc(FourCc::AV1)
            ]
        );
        assert!(t.is_sequence_start());
        // OneTrack: the rest of the body is the track.
        let t = parse(b"\x96\x03vp09\x05abc").unwrap();
        assert_eq!((t.first.track, t.more.len()), (5, 0));
        // A track size past the end, a nested multitrack, an unknown layout.
        assert!(matches!(
            parse(b"\x96\x13avc1\x01\x00\x00\x09xy"),
            Err(FlvError::Truncated { .. })
        ));
        assert_eq!(parse(b"\x96\x16avc1"), Err(FlvError::NestedPacketType(6)));
        assert_eq!(
            parse(b"\x96\x33avc1"),
            Err(FlvError::UnknownMultitrackType(3))
        );
    }
}
