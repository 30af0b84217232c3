//! The one error type of the remux code.

use thiserror::Error;

/// Why one RTMP message could not be remuxed.
///
/// Only the variants for which [`RemuxError::is_fatal`] is true mean the publisher can never be served
/// (wrong codec); every other variant concerns that one message, which the caller drops, and the
/// [`Segmenter`](super::Segmenter) stays usable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RemuxError {
    /// FLV VIDEODATA CodecID other than 7 (AVC), Adobe FLV spec v10.1 E.4.3.1.
    #[error("unsupported video codec id {codec_id} ({name}); send H.264")]
    UnsupportedVideoCodec {
        /// The 4-bit CodecID of the tag.
        codec_id: u8,
        /// Human-readable codec name for the publisher.
        name: &'static str,
    },
    /// Enhanced RTMP VIDEODATA (IsExHeader bit set), e.g. HEVC or AV1, which only H.264 players could not handle.
    #[error("enhanced RTMP (codec fourcc {fourcc:?}) is not supported; send H.264")]
    EnhancedRtmpUnsupported {
        /// The FourCC of the tag, lossily decoded ("?" for bytes missing from a short tag).
        fourcc: String,
    },
    /// FLV AUDIODATA SoundFormat other than 10 (AAC), Adobe FLV spec v10.1 E.4.2.1.
    #[error("unsupported audio format {sound_format} ({name}); send AAC")]
    UnsupportedAudioFormat {
        /// The 4-bit SoundFormat of the tag.
        sound_format: u8,
        /// Human-readable format name for the publisher.
        name: &'static str,
    },
    /// The message ends before a structure it announces is complete.
    #[error("truncated {what}: need {needed} bytes, have {available}")]
    Truncated {
        /// Which structure was being read.
        what: &'static str,
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes actually available.
        available: usize,
    },
    /// AVCPacketType (FLV spec E.4.3.1) is not 0, 1 or 2.
    #[error("unknown AVCPacketType {0}")]
    UnknownAvcPacketType(u8),
    /// AACPacketType (FLV spec E.4.2.2) is not 0 or 1.
    #[error("unknown AACPacketType {0}")]
    UnknownAacPacketType(u8),
    /// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) violates the syntax.
    #[error("invalid AVCDecoderConfigurationRecord: {0}")]
    InvalidAvcConfig(&'static str),
    /// A NAL unit length prefix points past the end of the tag (ISO/IEC 14496-15 5.3.4.2.1).
    #[error("NAL unit length {declared} exceeds the {remaining} bytes left in the tag")]
    NaluLengthOverflow {
        /// Length read from the prefix.
        declared: usize,
        /// Bytes left after the prefix.
        remaining: usize,
    },
    /// Coded video arrived before any AVC sequence header, so its NALU length size is unknown.
    #[error("video frame before any AVC sequence header")]
    NoVideoConfig,
    /// AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) is malformed or cannot be carried in ADTS.
    #[error("invalid AudioSpecificConfig: {0}")]
    InvalidAudioConfig(&'static str),
    /// SoundFormat 10 whose AudioSpecificConfig names an object type ADTS cannot carry (e.g. AAC-ELD,
    /// USAC), ISO/IEC 14496-3 1.5.1.1 and ISO/IEC 13818-7 6.2.
    #[error("unsupported AAC audio object type {object_type} ({name}); send AAC-LC or HE-AAC")]
    UnsupportedAudioObjectType {
        /// The audioObjectType of the config.
        object_type: u8,
        /// Human-readable name for the publisher.
        name: &'static str,
    },
    /// Raw AAC arrived before any AAC sequence header, so no ADTS header can be built.
    #[error("AAC frame before any AAC sequence header")]
    NoAudioConfig,
    /// ADTS frame_length is 13 bits (ISO/IEC 13818-7 6.2.1): header + payload must be <= 8191 bytes.
    #[error("AAC frame of {payload_len} bytes does not fit an ADTS frame")]
    AdtsFrameTooLong {
        /// Raw AAC payload length.
        payload_len: usize,
    },
    /// An Enhanced RTMP structure of the tag is malformed (the legacy ones have their own variants).
    #[error("malformed FLV tag: {0}")]
    Flv(crate::flv::FlvError),
    /// Bytes that should start an ADTS header (ISO/IEC 13818-7 6.2) do not.
    #[error("invalid ADTS header: {0}")]
    InvalidAdts(&'static str),
}

impl RemuxError {
    /// True when the publisher sends a codec this origin cannot serve at all, so dropping single
    /// messages would only produce an empty stream: the connection should be closed with this message.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::UnsupportedVideoCodec { .. }
                | Self::EnhancedRtmpUnsupported { .. }
                | Self::UnsupportedAudioFormat { .. }
                | Self::UnsupportedAudioObjectType { .. }
        )
    }

    pub(crate) fn truncated(what: &'static str, needed: usize, available: usize) -> Self {
        Self::Truncated {
            what,
            needed,
            available,
        }
    }
}
