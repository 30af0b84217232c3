//! AAC: the AudioSpecificConfig of the FLV sequence header (ISO/IEC 14496-3 1.6.2.1) and the ADTS header
//! (ISO/IEC 13818-7 6.2) that MPEG-TS needs in front of every raw frame, because a TS carries no
//! out-of-band decoder configuration for stream_type 0x0F.

use std::any::Any;

use bytes::{BufMut, Bytes, BytesMut};

use super::{Codec, MediaKind, TrackConfig, TsMapping};
use crate::flv::FourCc;
use crate::remux::bits::BitReader;
use crate::remux::fmp4::{boxed, full_box};
use crate::remux::sample::Sample;
use crate::remux::ts::PesChunk;
use crate::remux::RemuxError;

/// samplingFrequencyIndex table, ISO/IEC 14496-3 1.6.3.4 (Table 1.18); indexes 13/14 are reserved.
pub const SAMPLING_FREQUENCIES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// ADTS frame_length is a 13-bit field that includes the header.
pub const MAX_ADTS_FRAME_LEN: usize = 8191;
/// Header size without CRC (protection_absent = 1).
pub const ADTS_HEADER_LEN: usize = 7;

const AOT_SBR: u8 = 5;
const AOT_PS: u8 = 29;
const FREQ_INDEX_EXPLICIT: u32 = 15;

/// The parts of an AudioSpecificConfig needed to describe the track and write ADTS headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// audioObjectType as signalled (2 = AAC-LC, 5 = HE-AAC, 29 = HE-AACv2); the RFC 6381 codec suffix.
    pub object_type: u8,
    /// Output sampling frequency in Hz (the SBR rate for HE-AAC).
    pub sample_rate: u32,
    /// Output channel count (2 for parametric stereo).
    pub channels: u8,
    /// channelConfiguration, 1..=7.
    pub channel_config: u8,
    /// Samples per frame at the core rate: 1024, or 960 when GASpecificConfig frameLengthFlag is set.
    pub samples_per_frame: u32,
    /// Sampling frequency of the AAC core, which is what ADTS signals and what paces frames.
    pub core_sample_rate: u32,
    adts_profile: u8,
    adts_frequency_index: u8,
}

impl AudioSpecificConfig {
    /// Parses an AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1), keeping only what can be expressed in
    /// an ADTS header: object types 1..=4 directly, and SBR/PS (5, 29) as their AAC-LC core, which is
    /// how ADTS signals HE-AAC (the SBR/PS data is found implicitly by the decoder).
    pub fn parse(data: &[u8]) -> Result<Self, RemuxError> {
        let short = || RemuxError::InvalidAudioConfig("too short");
        let mut r = BitReader::new(data);
        let object_type = read_object_type(&mut r).ok_or_else(short)?;
        let core_rate = read_frequency(&mut r).ok_or_else(short)??;
        let channel_config = u8::try_from(r.bits(4).ok_or_else(short)?)
            .map_err(|_| RemuxError::InvalidAudioConfig("channel configuration"))?;

        let mut sample_rate = core_rate;
        let mut core_object_type = object_type;
        if object_type == AOT_SBR || object_type == AOT_PS {
            sample_rate = read_frequency(&mut r).ok_or_else(short)??;
            core_object_type = read_object_type(&mut r).ok_or_else(short)?;
        }

        let adts_profile = match (object_type, core_object_type) {
            // ADTS has no way to signal SBR/PS explicitly; LC + implicit signalling is the standard
            // carriage (ISO/IEC 14496-3 1.6.5.2) and every HE-AAC decoder handles it.
            (AOT_SBR | AOT_PS, _) => 1,
            (1..=4, _) => object_type - 1,
            // Sound format 10 but no AAC ADTS can carry (ER/ELD, USAC, ...): as unplayable here as a
            // non-AAC format, so refused the same way.
            _ => {
                return Err(RemuxError::UnsupportedAudioObjectType {
                    object_type,
                    name: object_type_name(object_type),
                })
            }
        };
        let adts_frequency_index = SAMPLING_FREQUENCIES
            .iter()
            .position(|&f| f == core_rate)
            .and_then(|i| u8::try_from(i).ok())
            .ok_or(RemuxError::InvalidAudioConfig(
                "sampling frequency has no ADTS index",
            ))?;
        let channels = match channel_config {
            // 0 means a program_config_element defines the layout; ADTS would need it in every frame.
            0 => {
                return Err(RemuxError::InvalidAudioConfig(
                    "channel configuration 0 (PCE) is not supported",
                ))
            }
            1..=6 => channel_config,
            7 => 8,
            _ => {
                return Err(RemuxError::InvalidAudioConfig(
                    "reserved channel configuration",
                ))
            }
        };
        let channels = if object_type == AOT_PS { 2 } else { channels };

        // GASpecificConfig frameLengthFlag (ISO/IEC 14496-3 4.4.1): a missing bit on a truncated but
        // otherwise usable config just means the common 1024.
        let samples_per_frame = match r.bit() {
            Some(true) => 960,
            _ => 1024,
        };

        Ok(Self {
            object_type,
            sample_rate,
            channels,
            channel_config,
            samples_per_frame,
            core_sample_rate: core_rate,
            adts_profile,
            adts_frequency_index,
        })
    }

    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// The AudioSpecificConfig of what the ADTS headers signal (ISO/IEC 14496-3 1.6.2.1): the AAC core
    /// with SBR/PS left implicit, frameLengthFlag kept. The fMP4 rendition (`esds`) declares this, so
    /// both renditions describe the audio the same way.
    pub fn core_config(&self) -> [u8; 2] {
        let object_type = self.adts_profile + 1;
        let frame_length_flag = u8::from(self.samples_per_frame == 960);
        [
            (object_type << 3) | (self.adts_frequency_index >> 1),
            ((self.adts_frequency_index & 1) << 7)
                | ((self.channel_config & 0x0f) << 3)
                | (frame_length_flag << 2),
        ]
    }

    /// Duration of one frame in microseconds, used to decide how many frames share one PES.
    pub fn frame_duration_us(&self) -> u64 {
        u64::from(self.samples_per_frame) * 1_000_000 / u64::from(self.core_sample_rate.max(1))
    }

    /// Builds the 7-byte ADTS header (ISO/IEC 13818-7 6.2.1, protection_absent = 1) for a raw frame of
    /// `payload_len` bytes.
    pub fn adts_header(&self, payload_len: usize) -> Result<[u8; ADTS_HEADER_LEN], RemuxError> {
        let frame_len = payload_len
            .checked_add(ADTS_HEADER_LEN)
            .filter(|&l| l <= MAX_ADTS_FRAME_LEN)
            .ok_or(RemuxError::AdtsFrameTooLong { payload_len })?;
        // frame_len <= 8191 so these narrowing casts keep every bit.
        let len = frame_len as u16;
        let ch = self.channel_config;
        Ok([
            0xff,
            // syncword low nibble, ID = 0 (MPEG-4), layer = 00, protection_absent = 1
            0xf1,
            (self.adts_profile << 6) | (self.adts_frequency_index << 2) | ((ch >> 2) & 0x1),
            ((ch & 0x3) << 6) | ((len >> 11) as u8 & 0x3),
            (len >> 3) as u8,
            (((len & 0x7) as u8) << 5) | 0x1f,
            // buffer fullness 0x7FF (VBR) low bits, number_of_raw_data_blocks_in_frame = 0
            0xfc,
        ])
    }
}

/// Fields of an ADTS fixed + variable header (ISO/IEC 13818-7 6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// profile_ObjectType (audioObjectType - 1).
    pub profile: u8,
    /// sampling_frequency_index.
    pub frequency_index: u8,
    /// channel_configuration.
    pub channel_config: u8,
    /// frame_length: header + payload bytes.
    pub frame_length: u16,
    /// Whether the 16-bit CRC is absent.
    pub protection_absent: bool,
}

impl AdtsHeader {
    /// Parses the first 7 bytes of an ADTS frame.
    pub fn parse(data: &[u8]) -> Result<Self, RemuxError> {
        let h = data
            .get(..ADTS_HEADER_LEN)
            .ok_or_else(|| RemuxError::truncated("ADTS header", ADTS_HEADER_LEN, data.len()))?;
        let mut r = BitReader::new(h);
        let field = |r: &mut BitReader<'_>, n| r.bits(n).ok_or(RemuxError::InvalidAdts("short"));
        if field(&mut r, 12)? != 0xfff {
            return Err(RemuxError::InvalidAdts("no syncword"));
        }
        let _id = field(&mut r, 1)?;
        if field(&mut r, 2)? != 0 {
            return Err(RemuxError::InvalidAdts("layer is not 0"));
        }
        let protection_absent = field(&mut r, 1)? == 1;
        let profile = field(&mut r, 2)? as u8;
        let frequency_index = field(&mut r, 4)? as u8;
        let _private = field(&mut r, 1)?;
        let channel_config = field(&mut r, 3)? as u8;
        let _orig_home_copyright = field(&mut r, 4)?;
        let frame_length = field(&mut r, 13)? as u16;
        if usize::from(frame_length) < ADTS_HEADER_LEN {
            return Err(RemuxError::InvalidAdts("frame_length shorter than header"));
        }
        Ok(Self {
            profile,
            frequency_index,
            channel_config,
            frame_length,
            protection_absent,
        })
    }
}

/// GetAudioObjectType(), ISO/IEC 14496-3 1.6.2.1: 5 bits, 31 escapes to 32 + 6 more bits.
/// Names of the MPEG-4 audio object types publishers may plausibly send (ISO/IEC 14496-3 1.5.1.1).
fn object_type_name(object_type: u8) -> &'static str {
    match object_type {
        0 => "null",
        6 => "AAC scalable",
        7 => "TwinVQ",
        8 => "CELP",
        9 => "HVXC",
        17 => "ER AAC-LC",
        19 => "ER AAC-LTP",
        20 => "ER AAC scalable",
        23 => "ER AAC-LD",
        32..=34 => "MPEG-1/2 Layer 1-3",
        36 => "ALS",
        39 => "ER AAC-ELD",
        42 => "USAC (xHE-AAC)",
        _ => "not carried in ADTS",
    }
}

fn read_object_type(r: &mut BitReader<'_>) -> Option<u8> {
    let ot = r.bits(5)?;
    let ot = if ot == 31 { 32 + r.bits(6)? } else { ot };
    u8::try_from(ot).ok()
}

/// samplingFrequencyIndex with its 24-bit explicit escape. Outer `None` = out of data.
fn read_frequency(r: &mut BitReader<'_>) -> Option<Result<u32, RemuxError>> {
    let index = r.bits(4)?;
    if index == FREQ_INDEX_EXPLICIT {
        let f = r.bits(24)?;
        return Some(if f == 0 {
            Err(RemuxError::InvalidAudioConfig("zero sampling frequency"))
        } else {
            Ok(f)
        });
    }
    Some(
        SAMPLING_FREQUENCIES
            .get(index as usize)
            .copied()
            .ok_or(RemuxError::InvalidAudioConfig(
                "reserved sampling frequency index",
            )),
    )
}

/// AAC's entry in the codec table: legacy SoundFormat 10, FourCC `mp4a`, TS stream_type 0x0f (ADTS).
pub const CODEC: Codec = Codec {
    name: "AAC",
    kind: MediaKind::Audio,
    flv_legacy_id: Some(10),
    fourcc: FourCc::AAC,
    ts: Some(TsMapping {
        stream_type: 0x0f,
        stream_id: 0xc0,
    }),
    parse_config: |data| Ok(Box::new(AudioSpecificConfig::parse(data)?)),
};

impl TrackConfig for AudioSpecificConfig {
    fn codec(&self) -> &'static Codec {
        &CODEC
    }

    fn codec_string(&self) -> String {
        AudioSpecificConfig::codec_string(self)
    }

    /// The AAC core's sampling rate, so every frame lasts exactly `samples_per_frame` ticks.
    fn timescale(&self) -> u32 {
        self.core_sample_rate.max(1)
    }

    fn channels(&self) -> u16 {
        u16::from(self.channels)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn same_config(&self, other: &dyn TrackConfig) -> bool {
        other.as_any().downcast_ref::<Self>() == Some(self)
    }

    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn frame_duration(&self) -> Option<u32> {
        Some(self.samples_per_frame)
    }

    /// Every AAC frame is a random access point; one too long for an ADTS header is refused here,
    /// for both renditions alike. An empty frame has nothing to mux.
    fn inspect(&self, data: &Bytes, _flv_keyframe: bool) -> Result<Option<bool>, RemuxError> {
        self.adts_header(data.len())?;
        Ok((!data.is_empty()).then_some(true))
    }

    /// The ADTS header, then the raw frame.
    fn ts_payload(&self, sample: &Sample, out: &mut Vec<PesChunk>) {
        // `inspect` refused frames too long for ADTS, so the header always exists.
        if let Ok(header) = self.adts_header(sample.data.len()) {
            out.push(PesChunk::inline(&header));
            out.push(PesChunk::Shared(sample.data.clone()));
        }
    }

    /// `mp4a` with its `esds` (ISO/IEC 14496-14 6.7).
    fn write_sample_entry(&self, out: &mut BytesMut) {
        let timescale = self.timescale();
        boxed(out, b"mp4a", |out| {
            out.put_bytes(0, 6);
            out.put_u16(1); // data_reference_index
            out.put_bytes(0, 8);
            out.put_u16(u16::from(self.channel_config.max(1)));
            out.put_u16(16); // samplesize
            out.put_u32(0); // pre_defined, reserved
                            // 16.16 fixed point; rates above 65535 Hz do not fit and are left to the esds.
            out.put_u32(u32::from(u16::try_from(timescale).unwrap_or(0)) << 16);
            full_box(out, b"esds", 0, 0, |out| put_es_descriptor(out, self));
        });
    }
}

/// ES_Descriptor with DecoderConfigDescriptor (MPEG-4 audio) and the AudioSpecificConfig, ISO/IEC
/// 14496-1 7.2.6.5. Every descriptor here is shorter than 128 bytes, so sizes take one byte.
fn put_es_descriptor(out: &mut BytesMut, config: &AudioSpecificConfig) {
    let asc = config.core_config();
    let dec_specific = 2 + asc.len();
    let dec_config = 2 + 13 + dec_specific;
    let sl_config = 2 + 1;
    let es = 3 + dec_config + sl_config;
    out.put_u8(0x03); // ES_DescrTag
    out.put_u8(es as u8);
    out.put_u16(0); // ES_ID
    out.put_u8(0); // no dependence, URL or OCR stream
    out.put_u8(0x04); // DecoderConfigDescrTag
    out.put_u8((dec_config - 2) as u8);
    out.put_u8(0x40); // objectTypeIndication: MPEG-4 audio
    out.put_u8(0x15); // streamType 5 (audio) << 2 | upStream 0 | reserved 1
    out.put_slice(&[0, 0, 0]); // bufferSizeDB
    out.put_u32(0); // maxBitrate
    out.put_u32(0); // avgBitrate
    out.put_u8(0x05); // DecSpecificInfoTag
    out.put_u8(asc.len() as u8);
    out.put_slice(&asc);
    out.put_u8(0x06); // SLConfigDescrTag
    out.put_u8(1);
    out.put_u8(2); // predefined: MP4 file
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_48k_stereo() {
        // 00010 0011 0010 0 0 0 : LC, 48 kHz, stereo
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap();
        assert_eq!(asc.object_type, 2);
        assert_eq!(asc.sample_rate, 48_000);
        assert_eq!(asc.channels, 2);
        assert_eq!(asc.samples_per_frame, 1024);
        assert_eq!(asc.codec_string(), "mp4a.40.2");
        assert_eq!(asc.frame_duration_us(), 21_333);
    }

    #[test]
    fn adts_header_round_trips() {
        let asc = AudioSpecificConfig::parse(&[0x12, 0x10]).unwrap(); // LC 44.1k stereo
        let h = asc.adts_header(100).unwrap();
        // Known-good header for LC/44.1k/stereo/107 bytes, as written by common encoders.
        assert_eq!(h, [0xff, 0xf1, 0x50, 0x80, 0x0d, 0x7f, 0xfc]);
        let parsed = AdtsHeader::parse(&h).unwrap();
        assert_eq!(
            parsed,
            AdtsHeader {
                profile: 1,
                frequency_index: 4,
                channel_config: 2,
                frame_length: 107,
                protection_absent: true
            }
        );
        assert!(asc
            .adts_header(MAX_ADTS_FRAME_LEN - ADTS_HEADER_LEN)
            .is_ok());
        assert_eq!(
            asc.adts_header(MAX_ADTS_FRAME_LEN - ADTS_HEADER_LEN + 1),
            Err(RemuxError::AdtsFrameTooLong { payload_len: 8185 })
        );
        assert_eq!(
            asc.adts_header(usize::MAX),
            Err(RemuxError::AdtsFrameTooLong {
                payload_len: usize::MAX
            })
        );
    }

    #[test]
    fn he_aac_uses_lc_profile_and_core_rate() {
        // SBR (5), core 24 kHz (idx 6), stereo, ext 48 kHz (idx 3), core AOT 2:
        // 00101 0110 0010 0011 00010 0.. -> 0x2b 0x11 0x88 0x00
        let asc = AudioSpecificConfig::parse(&[0x2b, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!(asc.object_type, 5);
        assert_eq!(asc.sample_rate, 48_000);
        assert_eq!(asc.core_sample_rate, 24_000);
        assert_eq!(asc.codec_string(), "mp4a.40.5");
        let h = AdtsHeader::parse(&asc.adts_header(10).unwrap()).unwrap();
        assert_eq!(h.profile, 1);
        assert_eq!(h.frequency_index, 6);

        // PS (29): 11101 0110 0001 0011 00010 -> mono core, stereo output
        let asc = AudioSpecificConfig::parse(&[0xeb, 0x09, 0x88, 0x00]).unwrap();
        assert_eq!(asc.object_type, 29);
        assert_eq!(asc.channels, 2);
        assert_eq!(asc.channel_config, 1);
    }

    #[test]
    fn escapes() {
        // AOT escape: 11111 000000 (= 32, MPEG-1 Layer 1, not ADTS-able) -> refused, naming it
        let err = AudioSpecificConfig::parse(&[0xf8, 0x00, 0x00]).unwrap_err();
        assert_eq!(
            err,
            RemuxError::UnsupportedAudioObjectType {
                object_type: 32,
                name: "MPEG-1/2 Layer 1-3"
            }
        );
        assert!(err.is_fatal());
        // AAC-ELD (39 = 11111 000111), 48 kHz, stereo, as some encoders send with SoundFormat 10.
        let err = AudioSpecificConfig::parse(&[0xf8, 0xe6, 0x20, 0x00]).unwrap_err();
        assert!(err.to_string().contains("39 (ER AAC-ELD)"), "{err}");
        assert!(err.is_fatal());
        // explicit frequency 48000 = 0x00bb80: 00010 1111 <24 bits> 0010
        let mut bits: u64 = 0b00010;
        bits = (bits << 4) | 0b1111;
        bits = (bits << 24) | 48_000;
        bits = (bits << 4) | 0b0010;
        bits <<= 64 - 37;
        let bytes = bits.to_be_bytes();
        let asc = AudioSpecificConfig::parse(&bytes[..5]).unwrap();
        assert_eq!(asc.sample_rate, 48_000);
        assert_eq!(asc.channels, 2);
        // explicit 44000 Hz has no ADTS index
        let mut bits: u64 = 0b00010;
        bits = (bits << 4) | 0b1111;
        bits = (bits << 24) | 44_000;
        bits = (bits << 4) | 0b0010;
        bits <<= 64 - 37;
        assert!(AudioSpecificConfig::parse(&bits.to_be_bytes()[..5]).is_err());
    }

    #[test]
    fn malformed_configs_are_typed_errors() {
        for bad in [
            &[][..],
            &[0x11],
            &[0x17, 0x90],
            &[0x11, 0x80],
            &[0x11, 0xc0],
        ] {
            let err = AudioSpecificConfig::parse(bad).unwrap_err();
            assert!(matches!(err, RemuxError::InvalidAudioConfig(_)), "{bad:?}");
            assert!(!err.is_fatal());
        }
        assert!(matches!(
            AdtsHeader::parse(&[0xff, 0xf1]),
            Err(RemuxError::Truncated { .. })
        ));
        assert!(matches!(
            AdtsHeader::parse(&[0; 7]),
            Err(RemuxError::InvalidAdts(_))
        ));
    }
}
