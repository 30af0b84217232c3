//! The remuxer's entry: RTMP messages in, finished MPEG-TS segments (and fMP4 parts) out.
//!
//! It owns the stream's pieces and passes each message along them: the FLV adapter (`flv.rs`) turns
//! a tag into a track's configuration or frame; the track layout (`track.rs`) keeps the
//! configurations and decides which tracks a segment declares; the shared timestamp unwrapper puts
//! frames on one 90 kHz timeline as [`Sample`]s; the [`Cutter`] says where segments and parts end; the
//! muxers (`mux/`) write them. What is left here is when a stream starts: at the first video keyframe,
//! or, when no video is announced or configured, with the audio held for [`AUDIO_HOLD_MS`] in case
//! video follows.

use bytes::Bytes;

use super::codec::{MediaKind, TrackConfig};
use super::cutter::{Cutter, Verdict};
use super::flv::{self, Frame, TrackInput};
use super::mux::fmp4::{Fmp4Muxer, Part};
use super::mux::ts::TsSegmentMuxer;
use super::mux::Muxer;
use super::sample::{ticks_to_ms, Sample};
use super::timestamp::{ms_to_90khz, TimestampUnwrapper, Track as ClockTrack};
use super::track::{Program, TrackInfo, Tracks};
use super::RemuxError;

/// Without onMetaData, audio that arrives first is held this long in case video follows.
pub const AUDIO_HOLD_MS: u64 = 1_000;

/// Segmenting policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Cut at the first keyframe once a segment is at least this long (milliseconds).
    pub target_duration_ms: u64,
    /// Force a cut even without a keyframe once a segment is this long (guards memory with huge GOPs), ms.
    pub max_duration_ms: u64,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self {
            target_duration_ms: 4_000,
            max_duration_ms: 12_000,
        }
    }
}

/// One finished MPEG-TS segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Whole MPEG-TS segment, a multiple of 188 bytes, starting with PAT and PMT.
    pub data: Bytes,
    /// Media duration: first DTS of the next segment minus first DTS of this one (estimated for the
    /// last segment of a stream).
    pub duration_ms: u64,
    /// 90 kHz PTS of the first frame, un-wrapped (before the 33-bit mask), offset included.
    pub start_pts: u64,
    /// 90 kHz DTS of the first frame, un-wrapped, offset included.
    pub start_dts: u64,
    /// The codec configuration or track set changed: the player must reset its decoder.
    pub discontinuity: bool,
    /// Starts with a keyframe of the reference track (always true for audio-only segments: every
    /// AAC frame is one).
    pub starts_with_keyframe: bool,
}

/// Turns one RTMP stream into MPEG-TS segments. See the module doc.
#[derive(Debug)]
pub struct Segmenter {
    tracks: Tracks,
    clock: TimestampUnwrapper,
    cutter: Cutter,
    ts: TsSegmentMuxer,
    /// The fMP4 partial-segment rendition, when enabled.
    fmp4: Option<Fmp4Muxer>,
    /// Audio that arrived before any video, kept while deciding whether the stream is audio-only,
    /// each with the number of configuration changes seen before it (an index into `held_configs`).
    held: Vec<(Sample, usize)>,
    /// Configurations replaced while audio was held: a held frame is muxed with the one it came
    /// under (its ADTS header, its PES grouping), as when frames were converted on arrival.
    held_configs: Vec<Box<dyn TrackConfig>>,
}

impl Segmenter {
    /// A segmenter for one stream.
    pub fn new(config: SegmenterConfig) -> Self {
        Self {
            tracks: Tracks::flv(),
            clock: TimestampUnwrapper::new(),
            cutter: Cutter::new(config.target_duration_ms, config.max_duration_ms),
            ts: TsSegmentMuxer::new(),
            fmp4: None,
            held: Vec::new(),
            held_configs: Vec::new(),
        }
    }

    /// Also cuts every segment into fMP4 partial segments of about `part_target_ms` (low-latency HLS);
    /// collect them with [`Segmenter::take_parts`] after every push. Call before the first push.
    pub fn enable_parts(&mut self, part_target_ms: u64) {
        self.cutter.enable_parts(part_target_ms);
        self.fmp4 = Some(Fmp4Muxer::new());
    }

    /// Partial segments closed since the last call, oldest first. The parts a push closed belong to
    /// the segment that is open after it, unless that push (or `finish`) also returned a segment: then
    /// they are that segment's last parts.
    pub fn take_parts(&mut self) -> Vec<Part> {
        self.fmp4.as_mut().map(Fmp4Muxer::take).unwrap_or_default()
    }

    /// From onMetaData: whether the publisher announced a video / audio track (None = not announced).
    pub fn set_expected_tracks(&mut self, video: Option<bool>, audio: Option<bool>) {
        for track in self.tracks.iter_mut() {
            track.announced = match track.kind {
                MediaKind::Video => video,
                MediaKind::Audio => audio,
            };
        }
    }

    /// One RTMP video message (= FLV VIDEODATA tag body, starting with the frametype/codecid byte) and its RTMP timestamp in ms.
    pub fn push_video(
        &mut self,
        timestamp_ms: u32,
        payload: Bytes,
    ) -> Result<Option<Segment>, RemuxError> {
        match crate::flv::VideoTag::parse(&payload) {
            Ok(tag) => self.push_video_tag(timestamp_ms, tag),
            Err(e) => Err(flv::video_error(&payload, e)),
        }
    }

    /// One video message already parsed into a typed tag, and its RTMP timestamp in ms.
    pub fn push_video_tag(
        &mut self,
        timestamp_ms: u32,
        tag: crate::flv::VideoTag,
    ) -> Result<Option<Segment>, RemuxError> {
        let input = flv::video_track_input(tag)?;
        self.push_input(timestamp_ms, input)
    }

    /// One RTMP audio message (= FLV AUDIODATA tag body).
    pub fn push_audio(
        &mut self,
        timestamp_ms: u32,
        payload: Bytes,
    ) -> Result<Option<Segment>, RemuxError> {
        match crate::flv::AudioTag::parse(&payload) {
            Ok(tag) => self.push_audio_tag(timestamp_ms, tag),
            Err(e) => Err(flv::audio_error(&payload, e)),
        }
    }

    /// One audio message already parsed into a typed tag.
    pub fn push_audio_tag(
        &mut self,
        timestamp_ms: u32,
        tag: crate::flv::AudioTag,
    ) -> Result<Option<Segment>, RemuxError> {
        let input = flv::audio_track_input(tag)?;
        self.push_input(timestamp_ms, input)
    }

    /// One message as track input, and its RTMP timestamp in ms.
    pub fn push_input(
        &mut self,
        timestamp_ms: u32,
        input: TrackInput,
    ) -> Result<Option<Segment>, RemuxError> {
        match input {
            TrackInput::Ignored => Ok(None),
            TrackInput::Config { track, config } => {
                self.on_config(track, config);
                Ok(None)
            }
            TrackInput::Frame(frame) => match self.sample(timestamp_ms, frame)? {
                Some(sample) => Ok(self.on_sample(sample)),
                None => Ok(None),
            },
        }
    }

    /// End of stream: closes and returns the open segment, if it holds any media.
    pub fn finish(&mut self) -> Option<Segment> {
        if self.cutter.program().is_none() && !self.held.is_empty() && !self.tracks.video_expected()
        {
            // A stream shorter than the hold window still deserves its audio.
            self.start_audio_only();
        }
        self.held.clear();
        self.held_configs.clear();
        let closed = self.close(None).0;
        // Nothing is muxed with an outgoing configuration any more: should the stream go on, it
        // starts with the newest, as a sequence header arriving before any segment would. (Before the
        // split, frames pushed after `finish` were read with the newest configuration but muxed with
        // the parameter sets of the old one.)
        for track in self.tracks.iter_mut() {
            if let Some(config) = track.pending.take() {
                track.config = Some(config);
            }
        }
        closed
    }

    /// Whether the open segment starts a new timeline or codec configuration (what its
    /// `Segment::discontinuity` will say); false when no segment is open.
    pub fn open_segment_discontinuous(&self) -> bool {
        self.cutter.discontinuous()
    }

    /// What is known about the tracks so far (for the stream's metadata/logs).
    pub fn tracks(&self) -> TrackInfo {
        self.tracks.info()
    }

    /// Takes a new configuration: a video track's waits for its next keyframe (its inter frames
    /// cannot be decoded with another), an audio track's takes over at once (every frame is a random
    /// access point) and makes the next segment a discontinuity.
    fn on_config(&mut self, id: super::sample::TrackId, config: Box<dyn TrackConfig>) {
        let open = self.cutter.program().is_some();
        let Some(track) = self.tracks.get_mut(id) else {
            return;
        };
        let same = track
            .config
            .as_deref()
            .is_some_and(|c| c.same_config(&*config));
        match track.kind {
            MediaKind::Video => {
                if !open {
                    // Nothing muxed with the old one yet: just take the newest.
                    track.config = Some(config);
                    track.pending = None;
                } else if same {
                    // Repeated (or reverted-to) header: nothing changes, and a pending change is void.
                    track.pending = None;
                } else {
                    track.pending = Some(config);
                }
            }
            MediaKind::Audio => {
                if same {
                    return;
                }
                if track.config.is_some() && open {
                    track.changed = true;
                    self.ts.reconfigure(id);
                    if let Some(fmp4) = &mut self.fmp4 {
                        fmp4.reconfigure(id);
                    }
                }
                let replaced = track.config.replace(config);
                if let Some(old) = replaced.filter(|_| !open && !self.held.is_empty()) {
                    self.held_configs.push(old);
                }
            }
        }
    }

    /// Puts a frame on the timeline, checked by its codec under the track's newest configuration.
    fn sample(&mut self, timestamp_ms: u32, frame: Frame) -> Result<Option<Sample>, RemuxError> {
        let track = self.tracks.get(frame.track);
        let kind = track.map_or(MediaKind::Video, |t| t.kind);
        let Some(config) = track.and_then(|t| t.newest()) else {
            return Err(match kind {
                MediaKind::Video => RemuxError::NoVideoConfig,
                MediaKind::Audio => RemuxError::NoAudioConfig,
            });
        };
        let keyframe = config.inspect(&frame.data, frame.keyframe)?;
        let frame_us = config.fixed_frame_us();
        // Nothing below can fail: the message is accepted and the clock advances.
        let clock_track = match kind {
            MediaKind::Video => ClockTrack::Video,
            MediaKind::Audio => ClockTrack::Audio,
        };
        let dts_ms = self.clock.unwrap(clock_track, timestamp_ms);
        let Some(keyframe) = keyframe else {
            return Ok(None);
        };
        let pts_ms = dts_ms
            .saturating_add_signed(i64::from(frame.composition_time_ms))
            .max(dts_ms);
        // Fixed-length frames last their length (rounded up to RTMP's millisecond); others until the
        // next one, estimated from the last interval.
        let duration_ms = match frame_us {
            Some(us) => us.div_ceil(1000),
            None => self.clock.last_gap(clock_track).unwrap_or(0),
        };
        Ok(Some(Sample {
            track: frame.track,
            dts: ms_to_90khz(dts_ms),
            pts: ms_to_90khz(pts_ms),
            keyframe,
            duration: ms_to_90khz(duration_ms),
            data: frame.data,
        }))
    }

    fn on_sample(&mut self, sample: Sample) -> Option<Segment> {
        let kind = self.tracks.get(sample.track).map(|t| t.kind)?;
        if self.cutter.program().is_none() {
            self.before_start(sample, kind);
            return None;
        }
        let desired = self.tracks.desired();
        let pending = self
            .tracks
            .get(sample.track)
            .is_some_and(|t| t.pending.is_some());
        let mut finished = None;
        match self
            .cutter
            .verdict(&sample, &desired, self.tracks.reconfigured(), pending)
        {
            Verdict::Drop => return None,
            Verdict::Cut {
                program,
                discontinuity,
            } => {
                if discontinuity {
                    // The keyframe the new configuration waited for.
                    if let Some(track) = self.tracks.get_mut(sample.track) {
                        if let Some(config) = track.pending.take() {
                            track.config = Some(config);
                        }
                    }
                }
                let (closed, carried) = self.close(Some(sample.dts));
                finished = closed;
                self.open(program, discontinuity || carried);
            }
            Verdict::ClosePart => self.close_part(Some(sample.dts), false),
            Verdict::Append => {}
        }
        self.write(sample);
        finished
    }

    /// Before the first segment: a video keyframe starts the stream; audio waits for it, or is held
    /// until the stream turns out to be audio-only.
    fn before_start(&mut self, sample: Sample, kind: MediaKind) {
        match kind {
            MediaKind::Video => {
                if !sample.keyframe {
                    return; // a stream can only start at a keyframe
                }
                // Audio held so far precedes the keyframe and cannot be in a segment that starts with it.
                self.held.clear();
                self.held_configs.clear();
                self.open(self.tracks.desired(), false);
                self.write(sample);
            }
            MediaKind::Audio => {
                if self.tracks.video_expected() {
                    // Waiting for the first video keyframe; audio before it has no segment.
                    return;
                }
                let first_held = self.held.first().map_or(sample.dts, |(s, _)| s.dts);
                let held_ms = ticks_to_ms(sample.dts.saturating_sub(first_held));
                self.held.push((sample, self.held_configs.len()));
                if self.tracks.video_denied() || held_ms >= AUDIO_HOLD_MS {
                    self.start_audio_only();
                }
            }
        }
    }

    /// Opens the first segment of an audio-only stream with the held audio.
    fn start_audio_only(&mut self) {
        // The tracks that sent audio, and only them: a video track, even announced, has none yet.
        let program = Program::new(self.held.iter().map(|(s, _)| (s.track, MediaKind::Audio)));
        self.open(program, false);
        let mut held = std::mem::take(&mut self.held);
        let configs = std::mem::take(&mut self.held_configs);
        for (sample, generation) in held.drain(..) {
            if self.cutter.part_due(&sample) {
                self.close_part(Some(sample.dts), false);
            }
            self.write_with(sample, configs.get(generation).map(|c| &**c));
        }
        self.held = held; // keep the capacity
    }

    /// Writes a sample of a declared track into the open segment (and part).
    fn write(&mut self, sample: Sample) {
        self.write_with(sample, None);
    }

    /// [`Segmenter::write`] under `config` rather than the track's current configuration.
    fn write_with(&mut self, sample: Sample, config: Option<&dyn TrackConfig>) {
        if !self
            .cutter
            .program()
            .is_some_and(|p| p.contains(sample.track))
        {
            return; // no stream for it in this segment
        }
        let Some(config) = config.or_else(|| {
            self.tracks
                .get(sample.track)
                .and_then(|t| t.config.as_deref())
        }) else {
            return;
        };
        self.cutter.wrote(&sample);
        self.ts.push(&sample, config);
        if let Some(fmp4) = &mut self.fmp4 {
            fmp4.push(&sample, config);
        }
    }

    fn open(&mut self, program: Program, discontinuity: bool) {
        for track in self.tracks.iter_mut() {
            track.changed = false;
        }
        self.ts.start_segment(&program, &self.tracks, discontinuity);
        if let Some(fmp4) = &mut self.fmp4 {
            fmp4.start_segment(&program, &self.tracks, discontinuity);
        }
        self.cutter.open(program, discontinuity);
    }

    fn close_part(&mut self, next_dts: Option<u64>, last: bool) {
        let span = self.cutter.close_part(next_dts);
        if let Some(fmp4) = &mut self.fmp4 {
            fmp4.close_part(span, last);
        }
    }

    /// Closes the open segment (and its last part) before `next_dts` (`None`: end of stream). A
    /// discontinuity flagged on a segment that ended up empty is carried to the next one.
    fn close(&mut self, next_dts: Option<u64>) -> (Option<Segment>, bool) {
        let data = self.ts.finish_segment();
        self.close_part(next_dts, true);
        if let Some(fmp4) = &mut self.fmp4 {
            fmp4.finish_segment();
        }
        let (span, carried) = self.cutter.close_segment(next_dts);
        let Some(span) = span else {
            return (None, carried);
        };
        let segment = Segment {
            data: data.unwrap_or_default(),
            duration_ms: ticks_to_ms(span.duration),
            start_pts: span.first_pts,
            start_dts: span.first_dts,
            discontinuity: span.discontinuity,
            starts_with_keyframe: span.starts_with_keyframe,
        };
        (Some(segment), false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::remux::codec::avc::{AUD, START_CODE};
    use crate::remux::mux::ts::PCR_DELAY_MS;
    use crate::remux::timestamp::TIMESTAMP_OFFSET_MS;

    const VIDEO_PID: u16 = 0x100;
    const AUDIO_PID: u16 = 0x101;

    const SPS: [u8; 25] = [
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
    ];
    const PPS: [u8; 4] = [0x68, 0xeb, 0xe3, 0xcb];

    fn seq_header(sps: &[u8], pps: &[u8]) -> Bytes {
        let mut b = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        b.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        b.extend_from_slice(sps);
        b.push(1);
        b.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        b.extend_from_slice(pps);
        Bytes::from(b)
    }

    fn frame(key: bool, cts: i32, nalus: &[&[u8]]) -> Bytes {
        let c = cts.to_be_bytes();
        let mut b = vec![if key { 0x17 } else { 0x27 }, 1, c[1], c[2], c[3]];
        for n in nalus {
            b.extend_from_slice(&(n.len() as u32).to_be_bytes());
            b.extend_from_slice(n);
        }
        Bytes::from(b)
    }

    fn idr(i: usize) -> Bytes {
        frame(true, 0, &[&[0x65, 0x88, i as u8]])
    }

    fn inter(i: usize) -> Bytes {
        frame(false, 0, &[&[0x41, 0x9a, i as u8]])
    }

    fn asc() -> Bytes {
        Bytes::from_static(&[0xaf, 0x00, 0x11, 0x90]) // AAC-LC 48 kHz stereo
    }

    fn aac(i: usize) -> Bytes {
        Bytes::from(vec![0xaf, 0x01, 0x21, i as u8, 0x55])
    }

    #[derive(Debug)]
    struct Pes {
        pid: u16,
        pts: u64,
        dts: u64,
        data: Vec<u8>,
        random_access: bool,
        pcr: Option<u64>,
    }

    fn read_ts(b: &[u8]) -> u64 {
        (u64::from(b[0] >> 1) & 7) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1)
    }

    /// Minimal demuxer for assertions on our own output.
    fn demux(seg: &[u8]) -> Vec<Pes> {
        assert_eq!(seg.len() % 188, 0);
        let mut out: Vec<Pes> = Vec::new();
        for p in seg.chunks(188) {
            assert_eq!(p[0], 0x47);
            let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
            let pusi = p[1] & 0x40 != 0;
            let afc = p[3] >> 4;
            let mut start = 4;
            let (mut rai, mut pcr) = (false, None);
            if afc & 2 != 0 {
                let len = usize::from(p[4]);
                if len > 0 {
                    rai = p[5] & 0x40 != 0;
                    if p[5] & 0x10 != 0 {
                        let b = &p[6..12];
                        pcr = Some(
                            u64::from(b[0]) << 25
                                | u64::from(b[1]) << 17
                                | u64::from(b[2]) << 9
                                | u64::from(b[3]) << 1
                                | u64::from(b[4] >> 7),
                        );
                    }
                }
                start = 5 + len;
            }
            if pid == 0 || pid == 0x1000 {
                continue;
            }
            let payload = &p[start..];
            if pusi {
                let flags = payload[7] >> 6;
                let hlen = usize::from(payload[8]);
                let pts = read_ts(&payload[9..14]);
                let dts = if flags == 3 {
                    read_ts(&payload[14..19])
                } else {
                    pts
                };
                out.push(Pes {
                    pid,
                    pts,
                    dts,
                    data: payload[9 + hlen..].to_vec(),
                    random_access: rai,
                    pcr,
                });
            } else {
                out.iter_mut()
                    .rev()
                    .find(|x| x.pid == pid)
                    .unwrap()
                    .data
                    .extend_from_slice(payload);
            }
        }
        out
    }

    fn ms90(ms: u64) -> u64 {
        (ms + TIMESTAMP_OFFSET_MS) * 90
    }

    fn config(target: u64, max: u64) -> SegmenterConfig {
        SegmenterConfig {
            target_duration_ms: target,
            max_duration_ms: max,
        }
    }

    #[test]
    fn waits_for_sequence_header_and_keyframe() {
        let mut s = Segmenter::new(config(2000, 6000));
        assert_eq!(s.push_video(0, idr(0)), Err(RemuxError::NoVideoConfig));
        assert!(!RemuxError::NoVideoConfig.is_fatal());
        s.push_video(0, seq_header(&SPS, &PPS)).unwrap();
        s.push_audio(0, asc()).unwrap();
        assert_eq!(s.push_video(0, inter(0)).unwrap(), None);
        assert_eq!(s.push_audio(10, aac(0)).unwrap(), None); // dropped: before the keyframe
        assert_eq!(s.push_video(33, idr(1)).unwrap(), None);
        assert_eq!(s.push_audio(40, aac(1)).unwrap(), None);
        let seg = s.finish().unwrap();
        assert!(seg.starts_with_keyframe);
        assert!(!seg.discontinuity);
        assert_eq!(seg.start_dts, ms90(33));
        let pes = demux(&seg.data);
        assert_eq!(pes.len(), 2);
        let v = &pes[0];
        assert_eq!(v.pid, VIDEO_PID);
        assert!(v.random_access);
        assert_eq!(v.pcr, Some(ms90(33) - PCR_DELAY_MS * 90));
        // AUD, SPS, PPS inserted before the IDR
        let mut expected = AUD.to_vec();
        for n in [&SPS[..], &PPS[..], &[0x65, 0x88, 1][..]] {
            expected.extend_from_slice(&START_CODE);
            expected.extend_from_slice(n);
        }
        assert_eq!(v.data, expected);
        let a = &pes[1];
        assert_eq!(a.pid, AUDIO_PID);
        assert_eq!(a.pts, ms90(40));
        assert_eq!(&a.data[7..], &[0x21, 1, 0x55]);
        assert_eq!(a.data.len(), 10);
        // end = max(video 33 + 33 ms gap, audio 40 + 22 ms frame)
        assert_eq!(seg.duration_ms, 33);
    }

    #[test]
    fn au_with_own_parameter_sets_and_aud_is_not_duplicated() {
        let mut s = Segmenter::new(config(2000, 6000));
        s.push_video(0, seq_header(&SPS, &PPS)).unwrap();
        let f = frame(true, 66, &[&[0x09, 0xf0], &SPS, &PPS, &[0x65, 1]]);
        s.push_video(0, f).unwrap();
        s.push_video(33, frame(false, -10, &[&[0x41, 2]])).unwrap();
        let seg = s.finish().unwrap();
        let pes = demux(&seg.data);
        let mut expected = AUD.to_vec();
        for n in [&SPS[..], &PPS[..], &[0x65, 1][..]] {
            expected.extend_from_slice(&START_CODE);
            expected.extend_from_slice(n);
        }
        assert_eq!(pes[0].data, expected);
        assert_eq!((pes[0].pts, pes[0].dts), (ms90(66), ms90(0)));
        // negative composition time is clamped to PTS = DTS
        assert_eq!((pes[1].pts, pes[1].dts), (ms90(33), ms90(33)));
        assert!(!pes[1].random_access);
    }

    #[test]
    fn cuts_on_keyframes_after_target() {
        let mut s = Segmenter::new(config(2000, 10_000));
        s.push_video(0, seq_header(&SPS, &PPS)).unwrap();
        let mut segments = Vec::new();
        // 30 fps, keyframe every 30 frames, 7 s
        for i in 0..210usize {
            let ts = (i as u64 * 1000 / 30) as u32;
            let f = if i % 30 == 0 { idr(i) } else { inter(i) };
            segments.extend(s.push_video(ts, f).unwrap());
        }
        segments.extend(s.finish());
        let durations: Vec<u64> = segments.iter().map(|s| s.duration_ms).collect();
        let ts = |i: u64| i * 1000 / 30;
        let last = ts(209) + (ts(209) - ts(208)) - 6000;
        assert_eq!(durations, vec![2000, 2000, 2000, last]);
        assert!(segments.iter().all(|s| s.starts_with_keyframe));
        let frames: usize = segments.iter().map(|s| demux(&s.data).len()).sum();
        assert_eq!(frames, 210);
    }

    #[test]
    fn forces_cut_at_max_duration() {
        let mut s = Segmenter::new(config(2000, 3000));
        s.push_video(0, seq_header(&SPS, &PPS)).unwrap();
        let mut segments = Vec::new();
        for i in 0..200usize {
            let f = if i == 0 { idr(i) } else { inter(i) };
            segments.extend(s.push_video((i * 40) as u32, f).unwrap());
        }
        segments.extend(s.finish());
        assert_eq!(segments.len(), 3);
        assert_eq!(segments[0].duration_ms, 3000);
        assert!(!segments[1].starts_with_keyframe);
        let total: u64 = segments.iter().map(|s| s.duration_ms).sum();
        assert_eq!(total, 200 * 40);
    }

    #[test]
    fn new_sequence_header_starts_discontinuous_segment_at_keyframe() {
        let mut s = Segmenter::new(config(2000, 10_000));
        s.push_video(0, seq_header(&SPS, &PPS)).unwrap();
        s.push_video(0, idr(0)).unwrap();
        s.push_video(33, inter(1)).unwrap();
        // identical repeat: nothing happens
        s.push_video(50, seq_header(&SPS, &PPS)).unwrap();
        assert_eq!(s.push_video(66, inter(2)).unwrap(), None);
        let mut sps2 = SPS;
        sps2[3] = 0x1f;
        s.push_video(90, seq_header(&sps2, &PPS)).unwrap();
        assert_eq!(s.tracks().video.unwrap().codec, "avc1.64001f");
        // inter frame of the new config: dropped
        assert_eq!(s.push_video(100, inter(3)).unwrap(), None);
        let seg = s.push_video(133, idr(4)).unwrap().unwrap();
        assert!(!seg.discontinuity);
        assert_eq!(demux(&seg.data).len(), 3);
        assert_eq!(seg.duration_ms, 133);
        let next = s.finish().unwrap();
        assert!(next.discontinuity);
        let pes = demux(&next.data);
        assert_eq!(pes.len(), 1);
        assert!(pes[0]
            .data
            .windows(sps2.len())
            .any(|w| w == sps2.as_slice()));
    }

    #[test]
    fn audio_only_after_hold_window() {
        let mut s = Segmenter::new(config(2000, 6000));
        s.push_audio(0, asc()).unwrap();
        let mut segments = Vec::new();
        for i in 0..300usize {
            let ts = (i as u64 * 1024 * 1000 / 48_000) as u32;
            segments.extend(s.push_audio(ts, aac(i)).unwrap());
        }
        segments.extend(s.finish());
        assert!(segments.len() >= 3);
        assert_eq!(segments[0].start_dts, ms90(0), "held audio is kept");
        let total: u64 = segments.iter().map(|s| s.duration_ms).sum();
        let expected = 300 * 1024 * 1000 / 48_000;
        assert!(total.abs_diff(expected) <= 2, "{total} vs {expected}");
        let mut frames = 0;
        for seg in &segments {
            assert!(seg.starts_with_keyframe);
            let pes = demux(&seg.data);
            assert!(pes[0].random_access);
            for p in &pes {
                assert_eq!(p.pid, AUDIO_PID);
                assert_eq!(p.pcr, Some(p.pts - PCR_DELAY_MS * 90));
                // grouped: several 10-byte ADTS frames per PES, at most 100 ms
                assert_eq!(p.data.len() % 10, 0);
                assert!(p.data.len() / 10 <= 4);
                frames += p.data.len() / 10;
            }
        }
        assert_eq!(frames, 300);
        assert_eq!(s.tracks().codecs(), "mp4a.40.2");
    }

    #[test]
    fn audio_only_immediately_when_metadata_says_no_video() {
        let mut s = Segmenter::new(config(2000, 6000));
        s.set_expected_tracks(Some(false), Some(true));
        s.push_audio(0, asc()).unwrap();
        s.push_audio(5, aac(0)).unwrap();
        let seg = s.finish().unwrap();
        // the first message of the stream is the time origin
        assert_eq!(seg.start_pts, ms90(0));
        assert_eq!(seg.duration_ms, 22);
    }

    #[test]
    fn audio_dropped_while_metadata_promises_video() {
        let mut s = Segmenter::new(config(2000, 6000));
        s.set_expected_tracks(Some(true), Some(true));
        s.push_audio(0, asc()).unwrap();
        for i in 0..100usize {
            assert_eq!(s.push_audio((i * 21) as u32, aac(i)).unwrap(), None);
        }
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn late_audio_track_is_added_with_discontinuity() {
        let mut s = Segmenter::new(config(2000, 10_000));
        s.push_video(0, seq_header(&SPS, &PPS)).unwrap();
        s.push_video(0, idr(0)).unwrap();
        s.push_audio(10, asc()).unwrap();
        assert_eq!(s.push_audio(10, aac(0)).unwrap(), None); // no audio PID yet
        let first = s.push_video(33, idr(1)).unwrap().unwrap();
        assert!(!first.discontinuity);
        s.push_audio(40, aac(1)).unwrap();
        let second = s.finish().unwrap();
        assert!(second.discontinuity);
        let pids: Vec<u16> = demux(&second.data).iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![VIDEO_PID, AUDIO_PID]);
        assert_eq!(s.tracks().codecs(), "avc1.64000d,mp4a.40.2");
        let v = s.tracks().video.unwrap();
        assert_eq!((v.width, v.height), (Some(320), Some(240)));
    }

    #[test]
    fn video_joining_an_audio_only_stream_starts_a_discontinuity() {
        let mut s = Segmenter::new(config(2000, 6000));
        s.push_audio(0, asc()).unwrap();
        let mut segments = Vec::new();
        for i in 0..60usize {
            segments.extend(s.push_audio((i * 21) as u32, aac(i)).unwrap());
        }
        // After the hold window the stream is audio-only; now video shows up.
        s.push_video(1260, seq_header(&SPS, &PPS)).unwrap();
        assert_eq!(s.push_video(1270, inter(0)).unwrap(), None);
        segments.extend(s.push_audio(1281, aac(61)).unwrap());
        let audio_only = s.push_video(1300, idr(1)).unwrap().unwrap();
        assert!(!audio_only.discontinuity);
        assert!(demux(&audio_only.data).iter().all(|p| p.pid == AUDIO_PID));
        s.push_audio(1302, aac(62)).unwrap();
        let joined = s.finish().unwrap();
        assert!(joined.discontinuity);
        assert!(joined.starts_with_keyframe);
        let pids: Vec<u16> = demux(&joined.data).iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![VIDEO_PID, AUDIO_PID]);
        assert!(segments.is_empty());
    }

    #[test]
    fn parts_tile_each_segment_and_stay_under_the_target() {
        let mut s = Segmenter::new(config(2000, 10_000));
        s.enable_parts(334);
        s.push_video(0, seq_header(&SPS, &PPS)).unwrap();
        s.push_audio(0, asc()).unwrap();
        let mut segments = Vec::new();
        let mut parts = Vec::new();
        // 30 fps with millisecond timestamps (33/34 ms apart), a keyframe every 2 s, AAC frames in
        // between: 6 s.
        for i in 0..180usize {
            let ts = (i as u64 * 1000 / 30) as u32;
            let f = if i % 60 == 0 { idr(i) } else { inter(i) };
            segments.extend(s.push_video(ts, f).unwrap());
            parts.extend(s.take_parts());
            s.push_audio(ts + 5, aac(i)).unwrap();
            parts.extend(s.take_parts());
        }
        segments.extend(s.finish());
        parts.extend(s.take_parts());
        assert_eq!(segments.len(), 3);
        // Each segment's parts run up to the one marked last.
        let mut groups: Vec<Vec<Part>> = vec![Vec::new()];
        for p in parts {
            let last = p.last;
            groups.last_mut().unwrap().push(p);
            if last {
                groups.push(Vec::new());
            }
        }
        assert!(groups.pop().unwrap().is_empty());
        assert_eq!(groups.len(), 3);
        for (n, (seg, mine)) in segments.iter().zip(&groups).enumerate() {
            let durations: Vec<u64> = mine.iter().map(|p| p.duration_ms).collect();
            assert_eq!(
                durations.iter().sum::<u64>(),
                seg.duration_ms,
                "{durations:?}"
            );
            assert_eq!(mine.len(), 6, "{durations:?}");
            assert!(
                durations.iter().all(|&d| (284..=334).contains(&d)),
                "{durations:?}"
            );
            assert!(mine[0].independent && mine[1..].iter().all(|p| !p.independent));
            let indexes: Vec<u32> = mine.iter().map(|p| p.index).collect();
            assert_eq!(indexes, [0, 1, 2, 3, 4, 5]);
            assert_eq!(mine[0].init.is_some(), n == 0);
        }
    }

    #[test]
    fn a_codec_change_brings_a_new_init_segment() {
        let mut s = Segmenter::new(config(2000, 10_000));
        s.enable_parts(334);
        s.push_video(0, seq_header(&SPS, &PPS)).unwrap();
        s.push_video(0, idr(0)).unwrap();
        s.push_video(33, inter(1)).unwrap();
        let mut sps2 = SPS;
        sps2[3] = 0x1f;
        s.push_video(50, seq_header(&sps2, &PPS)).unwrap();
        s.push_video(66, idr(2)).unwrap().unwrap();
        let first = s.take_parts();
        assert_eq!(first.len(), 1);
        assert!(first[0].init.is_some() && first[0].last);
        s.finish().unwrap();
        let second = s.take_parts();
        assert_eq!(second.len(), 1);
        let init = second[0].init.as_ref().expect("new init after the change");
        assert!(init.windows(sps2.len()).any(|w| w == sps2.as_slice()));
    }

    #[test]
    fn segmenter_is_send() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Segmenter>();
        assert_send::<Segment>();
    }

    #[test]
    fn errors_leave_state_usable() {
        let mut s = Segmenter::new(config(2000, 6000));
        s.push_video(0, seq_header(&SPS, &PPS)).unwrap();
        s.push_audio(0, asc()).unwrap();
        s.push_video(0, idr(0)).unwrap();
        let bad_len = Bytes::from_static(&[0x27, 1, 0, 0, 0, 0, 0, 0, 9, 0x41]);
        assert!(matches!(
            s.push_video(33, bad_len),
            Err(RemuxError::NaluLengthOverflow { .. })
        ));
        let err = s
            .push_video(33, Bytes::from_static(&[0x22, 0, 0]))
            .unwrap_err();
        assert!(err.is_fatal());
        let err = s
            .push_audio(33, Bytes::from_static(&[0x2f, 0]))
            .unwrap_err();
        assert!(err.is_fatal());
        assert!(s
            .push_audio(33, Bytes::from_static(&[0xaf, 0, 0xff]))
            .is_err());
        assert!(s
            .push_audio(33, Bytes::from(vec![0u8; 9000]).slice(..))
            .is_err());
        let mut big = vec![0xaf, 1];
        big.resize(9000, 0);
        assert_eq!(
            s.push_audio(40, Bytes::from(big)),
            Err(RemuxError::AdtsFrameTooLong { payload_len: 8998 })
        );
        s.push_video(66, inter(1)).unwrap();
        let seg = s.finish().unwrap();
        let pes = demux(&seg.data);
        assert_eq!(pes.len(), 2);
        assert_eq!(pes[1].dts, ms90(66));
    }
}
