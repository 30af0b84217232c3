//! The MPEG-TS rendition: one segment's samples as PES packets (ISO/IEC 13818-1 2.4.3.6) behind a
//! PAT and a PMT, through the packetizer of [`crate::remux::ts`] (whose continuity counters continue
//! across segments).
//!
//! Which tracks the PMT lists comes from the segment's program: every track whose codec has a TS
//! mapping, on PID 0x100 + its track index. A codec's samples are converted by the codec itself
//! ([`TrackConfig::ts_payload`]); this muxer decides only how they are packed: one PES per sample for
//! tracks whose samples vary in length (video), and for fixed-length frames (audio) several frames per
//! PES, because one PES per 20 ms AAC frame costs ~40% TS overhead at 128 kbit/s.

use bytes::Bytes;

use super::Muxer;
use crate::remux::codec::{MediaKind, TrackConfig};
use crate::remux::sample::{Sample, TrackId};
use crate::remux::timestamp::ms_to_90khz;
use crate::remux::track::{ts_pid, Program, Tracks};
use crate::remux::ts::{self, ElementaryStream, PacketBlocks, PesChunk, PesHeader, TsMuxer};

/// PCR is written this far behind the DTS of the PES that carries it.
///
/// A PCR tells the decoder "now"; every byte that follows must still be on time relative to it. The
/// muxer writes frames in arrival order, so after a video PES with DTS T (PCR T - delay) may come
/// audio with DTS down to T - (RTMP interleave skew, typically < 300 ms) - (audio aggregation,
/// <= 100 ms). 700 ms covers that with margin and is the value nginx-rtmp (`NGX_RTMP_HLS_DELAY`) and
/// ffmpeg (`-muxdelay` default) use, so players are known to accept it. It is smaller than
/// [`TIMESTAMP_OFFSET_MS`](crate::remux::timestamp::TIMESTAMP_OFFSET_MS), so PCR never goes below
/// zero.
pub const PCR_DELAY_MS: u64 = 700;

/// Fixed-length frames are grouped into one PES until it holds this much...
const GROUP_TARGET_US: u64 = 90_000;
/// ... but never more than this, which keeps the PCR interval of audio-only streams within the
/// 100 ms of ISO/IEC 13818-1 2.7.2.
const GROUP_MAX_US: u64 = 100_000;
/// PES_packet_length is 16 bits and must be exact for audio: 65535 - 3 flag bytes - 5 PTS bytes.
const GROUP_MAX_PAYLOAD: usize = 65_535 - 3 - 5;

/// PCR_PID of a program without a PCR (13818-1 2.4.4.9: the null packet PID).
const NO_PCR_PID: u16 = 0x1fff;

/// One elementary stream of the open segment.
#[derive(Debug, Clone, Copy)]
struct Stream {
    track: TrackId,
    kind: MediaKind,
    pid: u16,
    stream_id: u8,
    stream_type: u8,
    /// The PCR rides on it, and it says where segments start.
    reference: bool,
    /// A grouped PES of it was written in this segment.
    pes_written: bool,
}

/// Fixed-length frames collected for the next PES of one track.
#[derive(Debug, Default)]
struct Group {
    chunks: Vec<PesChunk>,
    frames: usize,
    first_dts: u64,
    duration_us: u64,
    bytes: usize,
}

impl Group {
    fn clear(&mut self) {
        self.chunks.clear();
        self.frames = 0;
        self.duration_us = 0;
        self.bytes = 0;
    }
}

/// Writes the TS segments of one stream.
#[derive(Debug, Default)]
pub struct TsSegmentMuxer {
    packets: TsMuxer,
    buf: PacketBlocks,
    program: ts::Program,
    streams: Vec<Stream>,
    /// Indexed by [`TrackId`], kept across segments for their capacity.
    groups: Vec<Group>,
    /// Reused for every ungrouped sample's chunks.
    scratch: Vec<PesChunk>,
}

fn pcr_for(dts_90k: u64) -> u64 {
    dts_90k.saturating_sub(ms_to_90khz(PCR_DELAY_MS))
}

/// Microseconds of a 90 kHz time.
fn us(ticks: u64) -> u64 {
    ticks.saturating_mul(100) / 9
}

impl TsSegmentMuxer {
    /// A muxer whose continuity counters start at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one PES into the open segment. PAT/PMT go in with the first PES rather than at open, so
    /// a segment that ends up empty (and is discarded) consumes no continuity counter values and
    /// leaves no gap in the stream.
    fn write_pes(
        packets: &mut TsMuxer,
        buf: &mut PacketBlocks,
        program: &ts::Program,
        header: &PesHeader,
        chunks: &[PesChunk],
    ) {
        if buf.is_empty() {
            packets.write_psi(buf, program);
        }
        packets.write_pes(buf, header, chunks.iter().map(PesChunk::as_slice));
    }

    /// Writes the frames grouped for `track` as one PES.
    fn flush(&mut self, track: TrackId) {
        let Some(group) = self.groups.get_mut(track.index()) else {
            return;
        };
        let stream = self.streams.iter_mut().find(|s| s.track == track);
        let (Some(stream), true) = (stream, group.frames > 0) else {
            group.clear();
            return;
        };
        let pts = group.first_dts;
        let header = PesHeader {
            pid: stream.pid,
            stream_id: stream.stream_id,
            pts,
            dts: pts,
            pcr: stream.reference.then(|| pcr_for(pts)),
            // Every frame is a random access point; saying so once, at the start of a segment that
            // begins with this track, is what tells demuxers where to start.
            random_access: stream.reference && !stream.pes_written,
        };
        Self::write_pes(
            &mut self.packets,
            &mut self.buf,
            &self.program,
            &header,
            &group.chunks,
        );
        stream.pes_written = true;
        group.clear();
    }

    fn flush_all(&mut self) {
        for i in 0..self.groups.len() {
            self.flush(TrackId(u8::try_from(i).unwrap_or(u8::MAX)));
        }
    }

    /// Adds a fixed-length frame (`frame_us` long) to its track's group, flushing first when it would
    /// not belong with the frames already there.
    fn push_grouped(&mut self, sample: &Sample, config: &dyn TrackConfig, frame_us: u64) {
        let track = sample.track;
        if self.groups.len() <= track.index() {
            self.groups.resize_with(track.index() + 1, Group::default);
        }
        self.scratch.clear();
        config.ts_payload(sample, &mut self.scratch);
        let bytes: usize = self.scratch.iter().map(|c| c.as_slice().len()).sum();
        if let Some(group) = self.groups.get(track.index()).filter(|g| g.frames > 0) {
            // The decoder derives each frame's time from the PES PTS plus frame durations, so a frame
            // that is not where that arithmetic puts it (a gap, a jump) must start a new PES.
            let expected_us = us(group.first_dts).saturating_add(group.duration_us);
            let tolerance_us = frame_us / 2 + 1000;
            let contiguous = us(sample.dts).abs_diff(expected_us) <= tolerance_us;
            let fits = group.duration_us + frame_us <= GROUP_MAX_US
                && group.bytes + bytes <= GROUP_MAX_PAYLOAD;
            if !contiguous || !fits {
                self.flush(track);
            }
        }
        let Some(group) = self.groups.get_mut(track.index()) else {
            return;
        };
        if group.frames == 0 {
            group.first_dts = sample.dts;
        }
        group.frames += 1;
        group.duration_us += frame_us;
        group.bytes += bytes;
        group.chunks.append(&mut self.scratch);
        if group.duration_us >= GROUP_TARGET_US {
            self.flush(track);
        }
    }
}

impl Muxer for TsSegmentMuxer {
    fn start_segment(&mut self, program: &Program, tracks: &Tracks, _discontinuity: bool) {
        // Rebuilt in place, so a segment costs no allocation here.
        self.streams.clear();
        for id in program.tracks() {
            let Some(codec) = tracks.get(id).and_then(|t| t.codec()) else {
                continue;
            };
            let Some(mapping) = codec.ts else {
                continue; // fMP4 only
            };
            // The first stream of a kind gets the kind's first stream_id, the next ones the next.
            let nth = self.streams.iter().filter(|s| s.kind == codec.kind).count();
            self.streams.push(Stream {
                track: id,
                kind: codec.kind,
                pid: ts_pid(id),
                stream_id: mapping
                    .stream_id
                    .wrapping_add(u8::try_from(nth).unwrap_or(0)),
                stream_type: mapping.stream_type,
                reference: false,
                pes_written: false,
            });
        }
        // PCR rides on the first video stream when there is one (its PES are the most regular), else
        // on the first stream.
        let reference = self
            .streams
            .iter()
            .position(|s| s.kind == MediaKind::Video)
            .or((!self.streams.is_empty()).then_some(0));
        if let Some(stream) = reference.and_then(|i| self.streams.get_mut(i)) {
            stream.reference = true;
        }
        self.program.streams.clear();
        self.program
            .streams
            .extend(self.streams.iter().map(|s| ElementaryStream {
                pid: s.pid,
                stream_type: s.stream_type,
            }));
        self.program.pcr_pid = self
            .streams
            .iter()
            .find(|s| s.reference)
            .map_or(NO_PCR_PID, |s| s.pid);
        self.buf = PacketBlocks::default();
    }

    fn push(&mut self, sample: &Sample, config: &dyn TrackConfig) {
        let Some(stream) = self
            .streams
            .iter()
            .find(|s| s.track == sample.track)
            .copied()
        else {
            return;
        };
        if let Some(frame_us) = config.fixed_frame_us() {
            self.push_grouped(sample, config, frame_us);
            return;
        }
        self.scratch.clear();
        config.ts_payload(sample, &mut self.scratch);
        let header = PesHeader {
            pid: stream.pid,
            stream_id: stream.stream_id,
            pts: sample.pts,
            dts: sample.dts,
            pcr: stream.reference.then(|| pcr_for(sample.dts)),
            random_access: sample.keyframe,
        };
        Self::write_pes(
            &mut self.packets,
            &mut self.buf,
            &self.program,
            &header,
            &self.scratch,
        );
        self.scratch.clear();
    }

    /// One PES must not mix frames of two configurations.
    fn reconfigure(&mut self, track: TrackId) {
        self.flush(track);
    }

    /// Writes what is still grouped, and hands over the segment's packets.
    fn finish_segment(&mut self) -> Option<Bytes> {
        self.flush_all();
        Some(std::mem::take(&mut self.buf).freeze())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::any::Any;

    use bytes::Bytes;

    use super::*;
    use crate::flv::FourCc;
    use crate::remux::codec::aac::AudioSpecificConfig;
    use crate::remux::codec::{Codec, MediaKind};
    use crate::remux::track::{Program, Tracks};

    /// A video codec with no TS mapping (as VP9 and AV1 are for players).
    static NO_TS: Codec = Codec {
        name: "fMP4 only",
        kind: MediaKind::Video,
        flv_legacy_id: None,
        fourcc: FourCc::VP9,
        ts: None,
        parse_config: |_| Err(crate::remux::RemuxError::NoVideoConfig),
    };

    #[derive(Debug, PartialEq)]
    struct NoTsConfig;

    impl TrackConfig for NoTsConfig {
        fn codec(&self) -> &'static Codec {
            &NO_TS
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
        fn same_config(&self, other: &dyn TrackConfig) -> bool {
            other.as_any().is::<Self>()
        }
        fn codec_string(&self) -> String {
            "vp09".into()
        }
        fn timescale(&self) -> u32 {
            90_000
        }
        fn write_sample_entry(&self, _: &mut bytes::BytesMut) {}
        fn inspect(&self, _: &Bytes, flv_keyframe: bool) -> Result<Option<bool>, RemuxError> {
            Ok(Some(flv_keyframe))
        }
    }

    use crate::remux::RemuxError;

    fn aac() -> Box<dyn TrackConfig> {
        Box::new(AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap())
    }

    /// (stream_type, PID) of every stream the segment's PMT lists, and its PCR_PID.
    fn pmt(segment: &[u8]) -> (Vec<(u8, u16)>, u16) {
        let p = &segment[188..376];
        let len = usize::from(p[6] & 0x0f) << 8 | usize::from(p[7]);
        let section = &p[5..5 + 3 + len];
        let pcr = u16::from(section[8] & 0x1f) << 8 | u16::from(section[9]);
        let streams = section[12..section.len() - 4]
            .chunks(5)
            .map(|e| (e[0], u16::from(e[1] & 0x1f) << 8 | u16::from(e[2])))
            .collect();
        (streams, pcr)
    }

    fn audio_sample(track: u8) -> Sample {
        Sample {
            track: TrackId(track),
            dts: 900_000,
            pts: 900_000,
            keyframe: true,
            duration: 1_890,
            data: Bytes::from_static(&[0x21, 0x10]),
        }
    }

    #[test]
    fn a_track_without_a_ts_mapping_has_no_stream_and_the_pcr_moves() {
        let mut tracks = Tracks::new([MediaKind::Video, MediaKind::Audio]);
        tracks.get_mut(TrackId(0)).unwrap().config = Some(Box::new(NoTsConfig));
        tracks.get_mut(TrackId(1)).unwrap().config = Some(aac());
        let program = tracks.desired();
        assert!(
            program.is_reference(TrackId(0)),
            "the video track still paces cuts"
        );
        let mut m = TsSegmentMuxer::new();
        m.start_segment(&program, &tracks, false);
        let config = tracks.get(TrackId(1)).unwrap().config.as_deref().unwrap();
        m.push(&audio_sample(1), config);
        let video = Sample {
            track: TrackId(0),
            keyframe: true,
            ..audio_sample(0)
        };
        m.push(&video, &NoTsConfig);
        let segment = m.finish_segment().unwrap();
        assert_eq!(pmt(&segment), (vec![(0x0f, 0x101)], 0x101));
        assert_eq!(segment.len(), 3 * 188, "PAT, PMT, one audio PES");
    }

    #[test]
    fn pids_and_stream_ids_follow_the_track_list() {
        let mut tracks = Tracks::new([MediaKind::Video, MediaKind::Audio, MediaKind::Audio]);
        tracks.get_mut(TrackId(1)).unwrap().config = Some(aac());
        tracks.get_mut(TrackId(2)).unwrap().config = Some(aac());
        let program = Program::new([
            (TrackId(1), MediaKind::Audio),
            (TrackId(2), MediaKind::Audio),
        ]);
        let mut m = TsSegmentMuxer::new();
        m.start_segment(&program, &tracks, false);
        for track in [1, 2] {
            let config = tracks
                .get(TrackId(track))
                .unwrap()
                .config
                .as_deref()
                .unwrap();
            m.push(&audio_sample(track), config);
        }
        let segment = m.finish_segment().unwrap();
        assert_eq!(pmt(&segment), (vec![(0x0f, 0x101), (0x0f, 0x102)], 0x101));
        // The second audio track gets the next audio stream_id.
        let ids: Vec<u8> = segment[376..]
            .chunks(188)
            .filter(|p| p[1] & 0x40 != 0)
            .map(|p| p[4 + 1 + usize::from(p[4]) + 3])
            .collect();
        assert_eq!(ids, [0xc0, 0xc1]);
    }
}
