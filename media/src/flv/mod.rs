//! Typed FLV tag bodies, as RTMP audio (8) and video (9) messages carry them: the legacy headers of the
//! Adobe FLV spec v10.1 (E.4.2.1 AUDIODATA, E.4.3.1 VIDEODATA) and the extended headers of Enhanced RTMP
//! v2 (veovera `enhanced-rtmp-v2.md`: `IsExHeader`, FourCC, packet types, multitrack, ModEx).
//!
//! A message is parsed once into a [`VideoTag`] or [`AudioTag`]; everything downstream (the remuxer's
//! codec table, the keyframe meter, the players' GOP cache) reads the typed tag instead of bits of the
//! first byte. Parsing is codec-neutral: a FourCC or legacy codec id is named, not judged; which codecs
//! are served is the remuxer's decision ([`crate::remux::codec`]). Payloads are sliced, never copied.
//! Pure: no I/O, never panics, a short or malformed body is a typed [`FlvError`].

mod audio;
mod metadata;
mod video;

pub use audio::{AudioCodec, AudioHeader, AudioPacket, AudioTag, AudioTrack};
pub use metadata::Metadata;
pub use video::{FrameType, VideoCodec, VideoHeader, VideoPacket, VideoTag, VideoTrack};

use bytes::Bytes;
use thiserror::Error;

/// A four-character code naming a codec in an extended header (`avc1`, `hvc1`, `av01`, `vp09`, `Opus`,
/// `mp4a`, ...).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    /// AVC (H.264), Enhanced RTMP.
    pub const AVC: FourCc = FourCc(*b"avc1");
    /// HEVC (H.265).
    pub const HEVC: FourCc = FourCc(*b"hvc1");
    /// AV1.
    pub const AV1: FourCc = FourCc(*b"av01");
    /// VP9.
    pub const VP9: FourCc = FourCc(*b"vp09");
    /// AAC.
    pub const AAC: FourCc = FourCc(*b"mp4a");
    /// Opus.
    pub const OPUS: FourCc = FourCc(*b"Opus");

    /// The code as text, `?` for bytes that are not printable ASCII (for logs and refusals).
    pub fn lossy(&self) -> String {
        lossy_fourcc(&self.0)
    }
}

impl std::fmt::Debug for FourCc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FourCc({:?})", self.lossy())
    }
}

impl std::fmt::Display for FourCc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.lossy())
    }
}

/// Up to four bytes as text, `?` for a byte missing or not printable.
pub fn lossy_fourcc(bytes: &[u8]) -> String {
    (0..4)
        .map(|i| match bytes.get(i) {
            Some(b) if b.is_ascii_graphic() => char::from(*b),
            _ => '?',
        })
        .collect()
}

/// How the tracks of an Enhanced RTMP multitrack tag are laid out (`AvMultitrackType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultitrackType {
    /// One track, its id given (0).
    OneTrack,
    /// Several tracks of one codec, each with a size (1).
    ManyTracks,
    /// Several tracks, each with its own FourCC and size (2).
    ManyTracksManyCodecs,
}

impl MultitrackType {
    fn from_nibble(n: u8) -> Result<Self, FlvError> {
        match n {
            0 => Ok(Self::OneTrack),
            1 => Ok(Self::ManyTracks),
            2 => Ok(Self::ManyTracksManyCodecs),
            other => Err(FlvError::UnknownMultitrackType(other)),
        }
    }
}

/// Why a tag body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FlvError {
    /// The body ends before a structure it announces is complete.
    #[error("truncated {what}: need {needed} bytes, have {available}")]
    Truncated {
        /// Which structure was being read.
        what: &'static str,
        /// Bytes the structure needs (counted from the start of the body).
        needed: usize,
        /// Bytes the body has.
        available: usize,
    },
    /// A legacy AVCPacketType other than 0, 1, 2 (FLV spec E.4.3.2).
    #[error("unknown AVCPacketType {0}")]
    UnknownAvcPacketType(u8),
    /// A legacy AACPacketType other than 0, 1 (FLV spec E.4.2.2).
    #[error("unknown AACPacketType {0}")]
    UnknownAacPacketType(u8),
    /// An extended video or audio packet type this parser does not know.
    #[error("unknown enhanced RTMP packet type {0}")]
    UnknownPacketType(u8),
    /// An `AvMultitrackType` other than 0, 1, 2.
    #[error("unknown multitrack type {0}")]
    UnknownMultitrackType(u8),
    /// A multitrack tag whose inner packet type is again multitrack (or ModEx), which the spec forbids.
    #[error("nested multitrack or ModEx packet type {0}")]
    NestedPacketType(u8),
}

/// A reader over one tag body that reports how much it needed when it runs out.
struct Reader<'a> {
    body: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(body: &'a Bytes, pos: usize) -> Self {
        Self { body, pos }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FlvError> {
        let end = self.pos.saturating_add(n);
        let slice = self.body.get(self.pos..end).ok_or(FlvError::Truncated {
            what,
            needed: end,
            available: self.body.len(),
        })?;
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, FlvError> {
        Ok(self.take(1, what)?[0])
    }

    fn u24(&mut self, what: &'static str) -> Result<u32, FlvError> {
        let b = self.take(3, what)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    fn fourcc(&mut self, what: &'static str) -> Result<FourCc, FlvError> {
        let b = self.take(4, what)?;
        Ok(FourCc([b[0], b[1], b[2], b[3]]))
    }

    /// The rest of the body, sliced.
    fn rest(&mut self) -> Bytes {
        let start = self.pos.min(self.body.len());
        self.pos = self.body.len();
        self.body.slice(start..)
    }

    /// The next `n` bytes, sliced.
    fn slice(&mut self, n: usize, what: &'static str) -> Result<Bytes, FlvError> {
        let start = self.pos;
        self.take(n, what)?;
        Ok(self.body.slice(start..self.pos))
    }

    /// Skips Enhanced RTMP ModEx prefixes (`ModEx` packet type 7) and returns the real packet type.
    /// Their data (a nanosecond timestamp offset today) refines nothing this server does.
    fn skip_mod_ex(&mut self, mut packet_type: u8, mod_ex: u8) -> Result<u8, FlvError> {
        while packet_type == mod_ex {
            let mut size = usize::from(self.u8("ModEx size")?) + 1;
            if size == 256 {
                let b = self.take(2, "ModEx size")?;
                size = usize::from(u16::from_be_bytes([b[0], b[1]])) + 1;
            }
            self.take(size, "ModEx data")?;
            packet_type = self.u8("ModEx type")? & 0x0f;
        }
        Ok(packet_type)
    }
}

/// Sign-extends a big-endian SI24: B-frames make PTS < DTS of neighbours possible, and some encoders
/// really do send negative composition offsets.
fn i24(b: &[u8]) -> i32 {
    match b {
        [a, b, c] => i32::from_be_bytes([*a, *b, *c, 0]) >> 8,
        _ => 0,
    }
}
