//! H.264 in FLV: the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) and the conversion of
//! its length-prefixed NAL units (14496-15 5.3.4.2) to the Annex-B byte stream (ITU-T H.264 Annex B)
//! that MPEG-TS carries (ISO/IEC 13818-1 2.14).

use std::any::Any;

use bytes::{BufMut, Bytes, BytesMut};

use super::{Codec, MediaKind, TrackConfig, TsMapping};
use crate::flv::FourCc;
use crate::remux::fmp4::boxed;
use crate::remux::sample::Sample;
use crate::remux::sps;
use crate::remux::ts::PesChunk;
use crate::remux::RemuxError;

/// Annex-B start code. The 4-byte form is used everywhere because it is required before parameter sets
/// and the first NALU of an AU, and using it for every NALU keeps the writer branch-free.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// Access unit delimiter with primary_pic_type = 7 ("any slice type"), ITU-T H.264 7.3.2.4. Apple's HLS
/// authoring spec requires an AUD at the start of every access unit in TS.
pub const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];

/// nal_unit_type values, ITU-T H.264 Table 7-1.
pub const NAL_IDR: u8 = 5;
/// Sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// Picture parameter set.
pub const NAL_PPS: u8 = 8;
/// Access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// Decoded AVCDecoderConfigurationRecord.
#[derive(Debug, Clone)]
pub struct AvcDecoderConfig {
    /// AVCProfileIndication.
    pub profile: u8,
    /// profile_compatibility.
    pub compatibility: u8,
    /// AVCLevelIndication.
    pub level: u8,
    /// Size of the NALU length prefix in coded frames: 1, 2 or 4.
    pub nalu_length_size: u8,
    /// Every SPS then every PPS, in record order: the order they must be sent before an IDR.
    pub parameter_sets: Vec<Bytes>,
    /// How many of `parameter_sets` are SPS.
    pub sps_count: usize,
    /// Coded width/height from the first SPS, when it parses.
    pub dimensions: Option<(u32, u32)>,
}

impl PartialEq for AvcDecoderConfig {
    /// Two records configure the decoder the same way when the parameter sets and length size match;
    /// trailing high-profile extension bytes and derived fields add nothing.
    fn eq(&self, other: &Self) -> bool {
        self.nalu_length_size == other.nalu_length_size
            && self.sps_count == other.sps_count
            && self.parameter_sets == other.parameter_sets
    }
}

impl Eq for AvcDecoderConfig {}

impl AvcDecoderConfig {
    /// Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1.2). Parameter sets are
    /// slices of `data`, not copies.
    pub fn parse(data: &Bytes) -> Result<Self, RemuxError> {
        let Some(&[version, profile, compatibility, level, length_byte, sps_byte]) = data.get(..6)
        else {
            return Err(RemuxError::truncated(
                "AVCDecoderConfigurationRecord",
                6,
                data.len(),
            ));
        };
        if version != 1 {
            return Err(RemuxError::InvalidAvcConfig(
                "configurationVersion is not 1",
            ));
        }
        let nalu_length_size = (length_byte & 0x03) + 1;
        // lengthSizeMinusOne = 2 is forbidden by 14496-15; nothing we could decode would use it.
        if nalu_length_size == 3 {
            return Err(RemuxError::InvalidAvcConfig("lengthSizeMinusOne is 2"));
        }
        let num_sps = usize::from(sps_byte & 0x1f);
        let mut pos = 6;
        let mut parameter_sets = Vec::with_capacity(num_sps + 1);
        read_parameter_sets(data, &mut pos, num_sps, &mut parameter_sets)?;
        let num_pps = usize::from(*data.get(pos).ok_or_else(|| {
            RemuxError::truncated("numOfPictureParameterSets", pos + 1, data.len())
        })?);
        pos += 1;
        read_parameter_sets(data, &mut pos, num_pps, &mut parameter_sets)?;
        if num_sps == 0 || num_pps == 0 {
            return Err(RemuxError::InvalidAvcConfig("no SPS or no PPS"));
        }
        let dimensions = parameter_sets.first().and_then(|s| sps::dimensions(s));
        Ok(Self {
            profile,
            compatibility,
            level,
            nalu_length_size,
            parameter_sets,
            sps_count: num_sps,
            dimensions,
        })
    }

    /// RFC 6381 codec string, e.g. `avc1.64001f` (profile, compatibility, level as hex).
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile, self.compatibility, self.level
        )
    }
}

fn read_parameter_sets(
    data: &Bytes,
    pos: &mut usize,
    count: usize,
    out: &mut Vec<Bytes>,
) -> Result<(), RemuxError> {
    for _ in 0..count {
        // Offsets stay below data.len() + 2, far from overflow.
        let Some(&[hi, lo]) = data.get(*pos..*pos + 2) else {
            return Err(RemuxError::truncated(
                "parameter set length",
                *pos + 2,
                data.len(),
            ));
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let start = *pos + 2;
        let end = start + len;
        if end > data.len() {
            return Err(RemuxError::truncated("parameter set", end, data.len()));
        }
        if len == 0 {
            return Err(RemuxError::InvalidAvcConfig("empty parameter set"));
        }
        out.push(data.slice(start..end));
        *pos = end;
    }
    Ok(())
}

/// What [`split_nalus`] found in an access unit, so the caller knows whether an IDR needs the parameter
/// sets prepended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessUnitKind {
    /// Contains an IDR slice (nal_unit_type 5).
    pub has_idr: bool,
    /// Contains an SPS.
    pub has_sps: bool,
    /// Contains a PPS.
    pub has_pps: bool,
}

/// Splits length-prefixed NAL units (ISO/IEC 14496-15 5.3.4.2.1) into `out` as slices of `data`,
/// dropping access unit delimiters (the muxer writes its own first) and empty NALUs. On error `out` is
/// left empty so nothing of a damaged access unit is muxed.
pub fn split_nalus(
    data: &Bytes,
    length_size: u8,
    out: &mut Vec<Bytes>,
) -> Result<AccessUnitKind, RemuxError> {
    out.clear();
    let result = split_into(data, usize::from(length_size), out);
    if result.is_err() {
        out.clear();
    }
    result
}

fn split_into(
    data: &Bytes,
    length_size: usize,
    out: &mut Vec<Bytes>,
) -> Result<AccessUnitKind, RemuxError> {
    for_each_nalu(data, length_size, |start, end| {
        out.push(data.slice(start..end))
    })
}

/// Walks the length-prefixed NAL units of `data`, calling `f` with the byte range of every one the
/// TS rendition carries (not AUDs, not empty ones), and says what the access unit holds.
fn for_each_nalu(
    data: &[u8],
    length_size: usize,
    mut f: impl FnMut(usize, usize),
) -> Result<AccessUnitKind, RemuxError> {
    if !matches!(length_size, 1 | 2 | 4) {
        return Err(RemuxError::InvalidAvcConfig("NALU length size"));
    }
    let mut kind = AccessUnitKind::default();
    let mut pos = 0usize;
    while pos < data.len() {
        let prefix = data.get(pos..pos + length_size).ok_or_else(|| {
            RemuxError::truncated("NALU length prefix", pos + length_size, data.len())
        })?;
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        let start = pos + length_size;
        let remaining = data.len() - start;
        if len > remaining {
            return Err(RemuxError::NaluLengthOverflow {
                declared: len,
                remaining,
            });
        }
        let end = start + len;
        pos = end;
        if len == 0 {
            continue; // zero-length NALU: nothing to carry
        }
        let Some(&header) = data.get(start) else {
            continue;
        };
        match header & 0x1f {
            NAL_AUD => continue,
            NAL_IDR => kind.has_idr = true,
            NAL_SPS => kind.has_sps = true,
            NAL_PPS => kind.has_pps = true,
            _ => {}
        }
        f(start, end);
    }
    Ok(kind)
}

/// AVC's entry in the codec table: legacy CodecID 7, FourCC `avc1`, TS stream_type 0x1b.
pub const CODEC: Codec = Codec {
    name: "H.264/AVC",
    kind: MediaKind::Video,
    flv_legacy_id: Some(7),
    fourcc: FourCc::AVC,
    ts: Some(TsMapping {
        stream_type: 0x1b,
        stream_id: 0xe0,
    }),
    parse_config: |data| Ok(Box::new(AvcDecoderConfig::parse(data)?)),
};

/// Timescale of an AVC track in MP4: the MPEG 90 kHz clock, so decode times equal the TS rendition's.
pub const TIMESCALE: u32 = 90_000;

/// AVC's keyframe test: the publisher's FLV frame type, or an IDR slice in the access unit (encoders
/// that mark every frame inter still send IDRs).
pub fn is_keyframe(flv_keyframe: bool, kind: &AccessUnitKind) -> bool {
    flv_keyframe || kind.has_idr
}

impl TrackConfig for AvcDecoderConfig {
    fn codec(&self) -> &'static Codec {
        &CODEC
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn same_config(&self, other: &dyn TrackConfig) -> bool {
        other.as_any().downcast_ref::<Self>() == Some(self)
    }

    /// The NAL unit lengths must tile the access unit; one without NAL units (only AUDs or empty
    /// ones) has nothing to mux.
    fn inspect(&self, data: &Bytes, flv_keyframe: bool) -> Result<Option<bool>, RemuxError> {
        let mut nalus = 0usize;
        let kind = for_each_nalu(data, usize::from(self.nalu_length_size), |_, _| nalus += 1)?;
        Ok((nalus > 0).then(|| is_keyframe(flv_keyframe, &kind)))
    }

    /// Annex-B: an AUD, the parameter sets if a keyframe lacks them (every segment must be decodable
    /// on its own, and publishers usually send SPS/PPS only once, in the sequence header), then every
    /// NAL unit behind a start code.
    fn ts_payload(&self, sample: &Sample, out: &mut Vec<PesChunk>) {
        let data = &sample.data;
        out.push(PesChunk::Static(&AUD));
        let first_nalu = out.len();
        let kind = for_each_nalu(data, usize::from(self.nalu_length_size), |start, end| {
            out.push(PesChunk::Static(&START_CODE));
            out.push(PesChunk::Shared(data.slice(start..end)));
        });
        // `inspect` accepted the sample under this configuration, so the walk cannot fail; if it
        // did, the NAL units before the fault are what there is to carry.
        let kind = kind.unwrap_or(AccessUnitKind {
            has_idr: false,
            has_sps: true,
            has_pps: true,
        });
        if sample.keyframe && !(kind.has_sps && kind.has_pps) {
            let sets = self
                .parameter_sets
                .iter()
                .flat_map(|set| [PesChunk::Static(&START_CODE), PesChunk::Shared(set.clone())]);
            out.splice(first_nalu..first_nalu, sets);
        }
    }

    fn codec_string(&self) -> String {
        AvcDecoderConfig::codec_string(self)
    }

    fn timescale(&self) -> u32 {
        TIMESCALE
    }

    fn dimensions(&self) -> Option<(u32, u32)> {
        self.dimensions
    }

    /// `avc1` with its `avcC` (ISO/IEC 14496-15 5.4.2.1).
    fn write_sample_entry(&self, out: &mut BytesMut) {
        let (width, height) = self.dimensions.unwrap_or((0, 0));
        // 16-bit fields in the sample entry; the SPS is what decoders use anyway.
        let (w16, h16) = (
            u16::try_from(width).unwrap_or(u16::MAX),
            u16::try_from(height).unwrap_or(u16::MAX),
        );
        boxed(out, b"avc1", |out| {
            out.put_bytes(0, 6); // reserved
            out.put_u16(1); // data_reference_index
            out.put_bytes(0, 16); // pre_defined, reserved
            out.put_u16(w16);
            out.put_u16(h16);
            out.put_u32(0x0048_0000); // 72 dpi
            out.put_u32(0x0048_0000);
            out.put_u32(0);
            out.put_u16(1); // frame_count
            out.put_bytes(0, 32); // compressorname
            out.put_u16(0x0018); // depth
            out.put_i16(-1);
            boxed(out, b"avcC", |out| put_avcc(out, self));
        });
    }
}

/// AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1.2) from the parsed record.
fn put_avcc(out: &mut BytesMut, config: &AvcDecoderConfig) {
    let (sps, pps) = config
        .parameter_sets
        .split_at(config.sps_count.min(config.parameter_sets.len()));
    out.put_u8(1);
    out.put_u8(config.profile);
    out.put_u8(config.compatibility);
    out.put_u8(config.level);
    out.put_u8(0xfc | (config.nalu_length_size.saturating_sub(1) & 3));
    // The parser read at most 31 SPS and 255 PPS, each under 64 KiB (16-bit lengths).
    out.put_u8(0xe0 | (sps.len().min(31) as u8));
    for set in sps.iter().take(31) {
        out.put_u16(set.len() as u16);
        out.put_slice(set);
    }
    out.put_u8(pps.len().min(255) as u8);
    for set in pps.iter().take(255) {
        out.put_u16(set.len() as u16);
        out.put_slice(set);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A record with one SPS (`67 64 00 1f ..`) and one PPS, 4-byte lengths.
    fn record() -> Vec<u8> {
        let sps = [0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9];
        let pps = [0x68, 0xeb, 0xe3, 0xcb];
        let mut r = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, sps.len() as u8];
        r.extend_from_slice(&sps);
        r.extend_from_slice(&[1, 0, pps.len() as u8]);
        r.extend_from_slice(&pps);
        r
    }

    #[test]
    fn parses_record() {
        let cfg = AvcDecoderConfig::parse(&Bytes::from(record())).unwrap();
        assert_eq!(cfg.nalu_length_size, 4);
        assert_eq!(cfg.sps_count, 1);
        assert_eq!(cfg.parameter_sets.len(), 2);
        assert_eq!(cfg.parameter_sets[1].as_ref(), &[0x68, 0xeb, 0xe3, 0xcb]);
        assert_eq!(cfg.codec_string(), "avc1.64001f");
        // trailing high-profile extension bytes do not change equality
        let mut ext = record();
        ext.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0]);
        assert_eq!(cfg, AvcDecoderConfig::parse(&Bytes::from(ext)).unwrap());
    }

    #[test]
    fn malformed_records_are_typed_errors() {
        let full = record();
        for len in 0..full.len() {
            let err = AvcDecoderConfig::parse(&Bytes::copy_from_slice(&full[..len])).unwrap_err();
            assert!(
                matches!(err, RemuxError::Truncated { .. }),
                "len {len}: {err:?}"
            );
        }
        let mut bad = full.clone();
        bad[0] = 0;
        assert!(matches!(
            AvcDecoderConfig::parse(&Bytes::from(bad)),
            Err(RemuxError::InvalidAvcConfig(_))
        ));
        let mut bad = full.clone();
        bad[4] = 0xfe; // length size 3
        assert!(matches!(
            AvcDecoderConfig::parse(&Bytes::from(bad)),
            Err(RemuxError::InvalidAvcConfig(_))
        ));
        let mut bad = full;
        bad[7] = 200; // SPS length past the end
        assert!(matches!(
            AvcDecoderConfig::parse(&Bytes::from(bad)),
            Err(RemuxError::Truncated { .. })
        ));
    }

    #[test]
    fn splits_nalus_and_drops_auds() {
        let data = Bytes::from_static(&[
            0, 0, 0, 2, 0x09, 0xf0, // AUD (dropped)
            0, 0, 0, 3, 0x65, 1, 2, // IDR
            0, 0, 0, 0, // empty (dropped)
            0, 0, 0, 1, 0x06, // SEI
        ]);
        let mut out = Vec::new();
        let kind = split_nalus(&data, 4, &mut out).unwrap();
        assert!(kind.has_idr && !kind.has_sps && !kind.has_pps);
        assert_eq!(
            out,
            vec![Bytes::from_static(&[0x65, 1, 2]), Bytes::from_static(&[6])]
        );

        let data = Bytes::from_static(&[2, 0x67, 1, 1, 0x68]);
        let kind = split_nalus(&data, 1, &mut out).unwrap();
        assert!(kind.has_sps && kind.has_pps && !kind.has_idr);
        let data = Bytes::from_static(&[0, 1, 0x41]);
        split_nalus(&data, 2, &mut out).unwrap();
        assert_eq!(out, vec![Bytes::from_static(&[0x41])]);
    }

    #[test]
    fn bad_lengths_leave_nothing() {
        let mut out = Vec::new();
        let data = Bytes::from_static(&[0, 0, 0, 1, 0x65, 0, 0, 0, 9, 0x41]);
        assert_eq!(
            split_nalus(&data, 4, &mut out),
            Err(RemuxError::NaluLengthOverflow {
                declared: 9,
                remaining: 1
            })
        );
        assert!(out.is_empty());
        let data = Bytes::from_static(&[0, 0, 0, 1, 0x65, 0, 0]);
        assert!(matches!(
            split_nalus(&data, 4, &mut out),
            Err(RemuxError::Truncated { .. })
        ));
        assert!(out.is_empty());
        assert!(split_nalus(&data, 3, &mut out).is_err());
    }
}
