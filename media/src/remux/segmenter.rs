//! Glues the parsers and the TS muxer together: RTMP messages in, finished MPEG-TS segments out.
//!
//! Timeline: every frame gets one DTS from the shared [`TimestampUnwrapper`]; a segment runs from the
//! DTS of the frame that opened it to the DTS of the frame that opened the next one. Frames go into
//! whatever segment is open when they arrive (RTMP interleaves the tracks in roughly DTS order), and
//! aggregated audio is flushed into the old segment before a cut, so no frame is lost or duplicated.

use std::iter;

use bytes::Bytes;

use super::aac::{AudioSpecificConfig, ADTS_HEADER_LEN};
use super::avc::{self, AvcDecoderConfig, AUD, START_CODE};
use super::flv::{self, AudioTag, VideoTag};
use super::parts::{Part, PartBuilder};
use super::timestamp::{ms_to_90khz, TimestampUnwrapper, Track};
use super::ts::{
    PacketBlocks, PesHeader, ProgramTracks, TsMuxer, AUDIO_PID, STREAM_ID_AUDIO, STREAM_ID_VIDEO,
    VIDEO_PID,
};
use super::RemuxError;

/// PCR is written this far behind the DTS of the PES that carries it.
///
/// A PCR tells the decoder "now"; every byte that follows must still be on time relative to it. The
/// muxer writes frames in arrival order, so after a video PES with DTS T (PCR T - delay) may come
/// audio with DTS down to T - (RTMP interleave skew, typically < 300 ms) - (audio aggregation,
/// <= 100 ms). 700 ms covers that with margin and is the value nginx-rtmp (`NGX_RTMP_HLS_DELAY`) and
/// ffmpeg (`-muxdelay` default) use, so players are known to accept it. It is smaller than
/// [`TIMESTAMP_OFFSET_MS`](super::timestamp::TIMESTAMP_OFFSET_MS), so PCR never goes below zero.
pub const PCR_DELAY_MS: u64 = 700;

/// Without onMetaData, audio that arrives first is held this long in case video follows.
pub const AUDIO_HOLD_MS: u64 = 1_000;

/// Audio frames are grouped into one PES until it holds this much; one PES per 20 ms AAC frame costs
/// ~40% TS overhead at 128 kbit/s.
const AUDIO_PES_TARGET_US: u64 = 90_000;
/// ... but never more than this, which keeps the PCR interval of audio-only streams within the
/// 100 ms of ISO/IEC 13818-1 2.7.2.
const AUDIO_PES_MAX_US: u64 = 100_000;
/// PES_packet_length is 16 bits and must be exact for audio: 65535 - 3 flag bytes - 5 PTS bytes.
const AUDIO_PES_MAX_PAYLOAD: usize = 65_535 - 3 - 5;

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
    /// Starts with an H.264 keyframe (always true for audio-only segments, every AAC frame is one).
    pub starts_with_keyframe: bool,
}

/// The video track as known so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoInfo {
    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub codec: String,
    /// Cropped width from the SPS, if it parsed.
    pub width: Option<u32>,
    /// Cropped height from the SPS, if it parsed.
    pub height: Option<u32>,
}

/// The audio track as known so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub codec: String,
    /// Output sampling rate in Hz.
    pub sample_rate: u32,
    /// Output channel count.
    pub channels: u8,
}

/// What is known about the tracks of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackInfo {
    /// From the latest AVC sequence header.
    pub video: Option<VideoInfo>,
    /// From the latest AAC sequence header.
    pub audio: Option<AudioInfo>,
}

impl TrackInfo {
    /// RFC 6381 CODECS value for the tracks present, e.g. "avc1.64001f,mp4a.40.2".
    pub fn codecs(&self) -> String {
        let video = self.video.as_ref().map(|v| v.codec.as_str());
        let audio = self.audio.as_ref().map(|a| a.codec.as_str());
        video.into_iter().chain(audio).collect::<Vec<_>>().join(",")
    }
}

/// Timing of the frame that opened a segment.
#[derive(Debug, Clone, Copy)]
struct FirstFrame {
    dts_ms: u64,
    pts_90k: u64,
    dts_90k: u64,
    keyframe: bool,
}

#[derive(Debug)]
struct OpenSegment {
    buf: PacketBlocks,
    tracks: ProgramTracks,
    discontinuity: bool,
    first: Option<FirstFrame>,
    /// Estimated end of the media seen so far: max over frames of DTS + frame interval.
    end_ms: u64,
    audio_pes_written: bool,
}

impl OpenSegment {
    /// PAT/PMT go in with the first PES rather than at open, so a segment that ends up empty (and is
    /// discarded) consumes no continuity counter values and leaves no gap in the stream.
    fn write_psi_once(&mut self, muxer: &mut TsMuxer) {
        if self.buf.is_empty() {
            muxer.write_psi(&mut self.buf, self.tracks);
        }
    }

    fn note_frame(&mut self, dts_ms: u64, pts_ms: u64, keyframe: bool, interval_ms: u64) {
        if self.first.is_none() {
            self.first = Some(FirstFrame {
                dts_ms,
                pts_90k: ms_to_90khz(pts_ms),
                dts_90k: ms_to_90khz(dts_ms),
                keyframe,
            });
        }
        self.end_ms = self.end_ms.max(dts_ms.saturating_add(interval_ms));
    }

    fn duration_to(&self, dts_ms: u64) -> u64 {
        self.first
            .map_or(0, |first| dts_ms.saturating_sub(first.dts_ms))
    }

    /// `next_dts_ms` is the first DTS of the following segment, or `None` at end of stream.
    fn close(self, next_dts_ms: Option<u64>) -> Option<Segment> {
        let first = self.first?;
        let end = next_dts_ms.unwrap_or(self.end_ms);
        Some(Segment {
            data: self.buf.freeze(),
            duration_ms: end.saturating_sub(first.dts_ms),
            start_pts: first.pts_90k,
            start_dts: first.dts_90k,
            discontinuity: self.discontinuity,
            starts_with_keyframe: first.keyframe,
        })
    }
}

/// One raw AAC frame with its ADTS header, waiting to be written.
#[derive(Debug, Clone)]
struct AudioFrame {
    dts_ms: u64,
    adts: [u8; ADTS_HEADER_LEN],
    data: Bytes,
    duration_us: u64,
}

/// Audio frames collected for the next audio PES.
#[derive(Debug, Default)]
struct PendingAudio {
    frames: Vec<AudioFrame>,
    duration_us: u64,
    bytes: usize,
}

/// Turns one RTMP stream into MPEG-TS segments. See the module doc for the timeline rules.
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    expected_video: Option<bool>,
    expected_audio: Option<bool>,
    clock: TimestampUnwrapper,
    muxer: TsMuxer,
    video_config: Option<AvcDecoderConfig>,
    /// A sequence header that differs from `video_config`; takes over at the next keyframe.
    pending_video_config: Option<AvcDecoderConfig>,
    audio_config: Option<AudioSpecificConfig>,
    /// A different AudioSpecificConfig replaced the one the open segment started with.
    audio_config_changed: bool,
    /// `None` until the first segment starts, and again after `finish`.
    segment: Option<OpenSegment>,
    /// Audio that arrived before any video, kept while deciding whether the stream is audio-only.
    held_audio: Vec<AudioFrame>,
    pending_audio: PendingAudio,
    /// Reused per access unit so splitting NAL units does not allocate.
    nalus: Vec<Bytes>,
    /// The fMP4 partial-segment rendition, when enabled.
    parts: Option<PartBuilder>,
}

impl Segmenter {
    /// A segmenter for one stream.
    pub fn new(config: SegmenterConfig) -> Self {
        Self {
            config,
            expected_video: None,
            expected_audio: None,
            clock: TimestampUnwrapper::new(),
            muxer: TsMuxer::new(),
            video_config: None,
            pending_video_config: None,
            audio_config: None,
            audio_config_changed: false,
            segment: None,
            held_audio: Vec::new(),
            pending_audio: PendingAudio::default(),
            nalus: Vec::with_capacity(16),
            parts: None,
        }
    }

    /// Also cuts every segment into fMP4 partial segments of about `part_target_ms` (low-latency HLS);
    /// collect them with [`Segmenter::take_parts`] after every push. Call before the first push.
    pub fn enable_parts(&mut self, part_target_ms: u64) {
        self.parts = Some(PartBuilder::new(part_target_ms));
    }

    /// Partial segments closed since the last call, oldest first. The parts a push closed belong to
    /// the segment that is open after it, unless that push (or `finish`) also returned a segment: then
    /// they are that segment's last parts.
    pub fn take_parts(&mut self) -> Vec<Part> {
        self.parts
            .as_mut()
            .map(PartBuilder::take)
            .unwrap_or_default()
    }

    /// From onMetaData: whether the publisher announced a video / audio track (None = not announced).
    pub fn set_expected_tracks(&mut self, video: Option<bool>, audio: Option<bool>) {
        self.expected_video = video;
        self.expected_audio = audio;
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
        match flv::video_input(tag)? {
            VideoTag::Ignored => Ok(None),
            VideoTag::SequenceHeader(body) => {
                let config = AvcDecoderConfig::parse(&body)?;
                self.on_video_config(config);
                Ok(None)
            }
            VideoTag::Frame {
                keyframe,
                composition_time_ms,
                data,
            } => self.on_video_frame(timestamp_ms, keyframe, composition_time_ms, &data),
        }
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
        match flv::audio_input(tag)? {
            AudioTag::SequenceHeader(body) => {
                let config = AudioSpecificConfig::parse(&body)?;
                self.on_audio_config(config);
                Ok(None)
            }
            AudioTag::Frame(data) => self.on_audio_frame(timestamp_ms, data),
        }
    }

    /// End of stream: closes and returns the open segment, if it holds any media.
    pub fn finish(&mut self) -> Option<Segment> {
        if self.segment.is_none() && !self.held_audio.is_empty() && !self.video_expected() {
            // A stream shorter than the hold window still deserves its audio.
            self.start_audio_only();
        }
        self.held_audio.clear();
        self.flush_audio();
        if let Some(parts) = &mut self.parts {
            parts.close(None, true);
        }
        self.segment.take()?.close(None)
    }

    /// Whether the open segment starts a new timeline or codec configuration (what its
    /// `Segment::discontinuity` will say); false when no segment is open.
    pub fn open_segment_discontinuous(&self) -> bool {
        self.segment.as_ref().is_some_and(|s| s.discontinuity)
    }

    /// What is known about the tracks so far (for the stream's metadata/logs).
    pub fn tracks(&self) -> TrackInfo {
        let video = self
            .pending_video_config
            .as_ref()
            .or(self.video_config.as_ref())
            .map(|c| VideoInfo {
                codec: c.codec_string(),
                width: c.dimensions.map(|(w, _)| w),
                height: c.dimensions.map(|(_, h)| h),
            });
        let audio = self.audio_config.as_ref().map(|a| AudioInfo {
            codec: a.codec_string(),
            sample_rate: a.sample_rate,
            channels: a.channels,
        });
        TrackInfo { video, audio }
    }

    fn video_expected(&self) -> bool {
        self.expected_video == Some(true)
            || self.video_config.is_some()
            || self.pending_video_config.is_some()
    }

    /// Tracks the next segment should declare in its PMT.
    fn desired_tracks(&self) -> ProgramTracks {
        ProgramTracks {
            video: self.video_config.is_some() || self.pending_video_config.is_some(),
            // An announced audio track is declared up front, so its late sequence header does not
            // force a discontinuity.
            audio: self.audio_config.is_some() || self.expected_audio == Some(true),
        }
    }

    fn on_video_config(&mut self, config: AvcDecoderConfig) {
        if self.segment.is_none() {
            // Nothing muxed with the old one yet: just take the newest.
            self.video_config = Some(config);
            self.pending_video_config = None;
            return;
        }
        if self.video_config.as_ref() == Some(&config) {
            // Repeated (or reverted-to) header: nothing changes, and a pending change is void.
            self.pending_video_config = None;
        } else {
            self.pending_video_config = Some(config);
        }
    }

    fn on_audio_config(&mut self, config: AudioSpecificConfig) {
        if self.audio_config.as_ref() == Some(&config) {
            return;
        }
        if self.audio_config.is_some() && self.segment.is_some() {
            // One PES must not mix frames of two configurations.
            self.flush_audio();
            self.audio_config_changed = true;
        }
        self.audio_config = Some(config);
    }

    fn on_video_frame(
        &mut self,
        timestamp_ms: u32,
        flv_keyframe: bool,
        composition_time_ms: i32,
        data: &Bytes,
    ) -> Result<Option<Segment>, RemuxError> {
        let length_size = self
            .pending_video_config
            .as_ref()
            .or(self.video_config.as_ref())
            .map(|c| c.nalu_length_size)
            .ok_or(RemuxError::NoVideoConfig)?;
        let kind = avc::split_nalus(data, length_size, &mut self.nalus)?;
        // Nothing below can fail: the message is accepted and the clock advances.
        let dts_ms = self.clock.unwrap(Track::Video, timestamp_ms);
        if self.nalus.is_empty() {
            return Ok(None);
        }
        let keyframe = avc::is_keyframe(flv_keyframe, &kind);
        let pts_ms = dts_ms
            .saturating_add_signed(i64::from(composition_time_ms))
            .max(dts_ms);

        let mut finished = None;
        let Some(segment) = &self.segment else {
            if !keyframe {
                return Ok(None); // a stream can only start at a keyframe
            }
            // Audio held so far precedes the keyframe and cannot be in a segment that starts with it.
            self.held_audio.clear();
            self.open_segment(self.desired_tracks(), false);
            self.write_video(dts_ms, pts_ms, keyframe, &kind, data);
            return Ok(None);
        };
        let tracks = segment.tracks;
        let duration = segment.duration_to(dts_ms);
        let desired = self.desired_tracks();
        let reconfigure =
            self.pending_video_config.is_some() || self.audio_config_changed || desired != tracks;
        if reconfigure && keyframe {
            if let Some(config) = self.pending_video_config.take() {
                self.video_config = Some(config);
            }
            finished = self.cut(dts_ms, desired, true);
        } else if reconfigure && (self.pending_video_config.is_some() || !tracks.video) {
            // Inter frames of a new configuration cannot be decoded before its first keyframe, and
            // without a video PID there is nowhere to put them.
            return Ok(None);
        } else if (keyframe && duration >= self.config.target_duration_ms)
            || duration >= self.config.max_duration_ms
        {
            finished = self.cut(dts_ms, tracks, false);
        }
        if finished.is_none() {
            let gap = self.clock.last_gap(Track::Video).unwrap_or(0);
            if let Some(parts) = self.parts.as_mut().filter(|p| p.is_due(dts_ms, gap)) {
                parts.close(Some(dts_ms), false);
            }
        }
        self.write_video(dts_ms, pts_ms, keyframe, &kind, data);
        Ok(finished)
    }

    fn on_audio_frame(
        &mut self,
        timestamp_ms: u32,
        data: Bytes,
    ) -> Result<Option<Segment>, RemuxError> {
        let config = self
            .audio_config
            .as_ref()
            .ok_or(RemuxError::NoAudioConfig)?;
        let adts = config.adts_header(data.len())?;
        let duration_us = config.frame_duration_us();
        let dts_ms = self.clock.unwrap(Track::Audio, timestamp_ms);
        if data.is_empty() {
            return Ok(None);
        }
        let frame = AudioFrame {
            dts_ms,
            adts,
            data,
            duration_us,
        };

        let Some(segment) = &self.segment else {
            if self.video_expected() {
                // Waiting for the first video keyframe; audio before it has no segment.
                return Ok(None);
            }
            let first_held = self.held_audio.first().map_or(dts_ms, |f| f.dts_ms);
            self.held_audio.push(frame);
            if self.expected_video == Some(false)
                || dts_ms.saturating_sub(first_held) >= AUDIO_HOLD_MS
            {
                self.start_audio_only();
            }
            return Ok(None);
        };
        let tracks = segment.tracks;
        let duration = segment.duration_to(dts_ms);
        let mut finished = None;
        if tracks.video {
            if duration >= self.config.max_duration_ms {
                finished = self.cut(dts_ms, tracks, false);
            }
        } else {
            let desired = self.desired_tracks();
            if !desired.video && (self.audio_config_changed || desired != tracks) {
                finished = self.cut(dts_ms, desired, true);
            } else if duration >= self.config.target_duration_ms {
                // Audio-only: every frame is a random access point. (With video pending, this keeps
                // the audio-only track set until the video keyframe switches it.)
                finished = self.cut(dts_ms, tracks, false);
            }
        }
        // Audio-only: the audio paces the parts.
        if finished.is_none() && !tracks.video {
            let frame_ms = frame.duration_us.div_ceil(1000);
            if let Some(parts) = self.parts.as_mut().filter(|p| p.is_due(dts_ms, frame_ms)) {
                parts.close(Some(dts_ms), false);
            }
        }
        if tracks.audio {
            self.write_audio(frame);
        }
        Ok(finished)
    }

    /// Opens the first segment of an audio-only stream with the held audio.
    fn start_audio_only(&mut self) {
        self.open_segment(
            ProgramTracks {
                video: false,
                audio: true,
            },
            false,
        );
        let mut held = std::mem::take(&mut self.held_audio);
        for frame in held.drain(..) {
            let frame_ms = frame.duration_us.div_ceil(1000);
            if let Some(parts) = self
                .parts
                .as_mut()
                .filter(|p| p.is_due(frame.dts_ms, frame_ms))
            {
                parts.close(Some(frame.dts_ms), false);
            }
            self.write_audio(frame);
        }
        self.held_audio = held; // keep the capacity
    }

    fn open_segment(&mut self, tracks: ProgramTracks, discontinuity: bool) {
        self.audio_config_changed = false;
        if let Some(parts) = &mut self.parts {
            let video = self.video_config.as_ref().filter(|_| tracks.video);
            let audio = self.audio_config.as_ref().filter(|_| tracks.audio);
            // A discontinuity may mean new parameter sets or another track set: a new init segment.
            if discontinuity || !parts.init_matches(video.is_some(), audio.is_some()) {
                parts.set_init(video, audio);
            }
        }
        self.segment = Some(OpenSegment {
            buf: PacketBlocks::default(),
            tracks,
            discontinuity,
            first: None,
            end_ms: 0,
            audio_pes_written: false,
        });
    }

    /// Closes the open segment at `next_dts_ms` and opens a new one with `tracks`.
    fn cut(
        &mut self,
        next_dts_ms: u64,
        tracks: ProgramTracks,
        discontinuity: bool,
    ) -> Option<Segment> {
        self.flush_audio();
        let old = self.segment.take();
        // A discontinuity flagged on a segment that ended up empty must reach the next one.
        let carried = old
            .as_ref()
            .is_some_and(|s| s.discontinuity && s.first.is_none());
        let closed = old.and_then(|s| s.close(Some(next_dts_ms)));
        if let Some(parts) = &mut self.parts {
            parts.close(Some(next_dts_ms), true);
        }
        self.open_segment(tracks, discontinuity || carried);
        closed
    }

    /// Writes the access unit in `self.nalus` as one PES: AUD, parameter sets if an IDR lacks them,
    /// then the NAL units, each behind a start code.
    fn write_video(
        &mut self,
        dts_ms: u64,
        pts_ms: u64,
        keyframe: bool,
        kind: &avc::AccessUnitKind,
        data: &Bytes,
    ) {
        let interval = self.clock.last_gap(Track::Video).unwrap_or(0);
        let Self {
            segment: Some(segment),
            video_config: Some(config),
            nalus,
            muxer,
            parts,
            ..
        } = self
        else {
            return;
        };
        if !segment.tracks.video {
            return;
        }
        // Every segment must be decodable on its own, and publishers usually send SPS/PPS only once
        // in the sequence header, so IDRs carry them in-band.
        let parameter_sets: &[Bytes] = if keyframe && !(kind.has_sps && kind.has_pps) {
            &config.parameter_sets
        } else {
            &[]
        };
        let chunks = iter::once(&AUD[..]).chain(
            parameter_sets
                .iter()
                .chain(nalus.iter())
                .flat_map(|nalu| [&START_CODE[..], nalu.as_ref()]),
        );
        let dts = ms_to_90khz(dts_ms);
        let header = PesHeader {
            pid: VIDEO_PID,
            stream_id: STREAM_ID_VIDEO,
            pts: ms_to_90khz(pts_ms),
            dts,
            pcr: (segment.tracks.pcr_pid() == VIDEO_PID).then(|| pcr_for(dts)),
            random_access: keyframe,
        };
        segment.write_psi_once(muxer);
        muxer.write_pes(&mut segment.buf, &header, chunks);
        segment.note_frame(dts_ms, pts_ms, keyframe, interval);
        if let Some(parts) = parts {
            parts.push_video(dts_ms, pts_ms, keyframe, data.clone(), interval);
        }
    }

    /// Adds one frame to the pending audio PES, flushing first when it would not belong with the
    /// frames already there.
    fn write_audio(&mut self, frame: AudioFrame) {
        let Some(segment) = &mut self.segment else {
            return;
        };
        if let Some(parts) = &mut self.parts {
            parts.push_audio(frame.dts_ms, frame.data.clone(), frame.duration_us);
        }
        segment.note_frame(
            frame.dts_ms,
            frame.dts_ms,
            !segment.tracks.video,
            frame.duration_us.div_ceil(1000),
        );
        let pending = &self.pending_audio;
        if let Some(first) = pending.frames.first() {
            // The decoder derives each frame's time from the PES PTS plus frame durations, so a frame
            // that is not where that arithmetic puts it (a gap, a jump) must start a new PES.
            let expected_us = first
                .dts_ms
                .saturating_mul(1000)
                .saturating_add(pending.duration_us);
            let actual_us = frame.dts_ms.saturating_mul(1000);
            let tolerance_us = frame.duration_us / 2 + 1000;
            let contiguous = actual_us.abs_diff(expected_us) <= tolerance_us;
            let fits = pending.duration_us + frame.duration_us <= AUDIO_PES_MAX_US
                && pending.bytes + ADTS_HEADER_LEN + frame.data.len() <= AUDIO_PES_MAX_PAYLOAD;
            if !contiguous || !fits {
                self.flush_audio();
            }
        }
        let pending = &mut self.pending_audio;
        pending.duration_us += frame.duration_us;
        pending.bytes += ADTS_HEADER_LEN + frame.data.len();
        pending.frames.push(frame);
        if pending.duration_us >= AUDIO_PES_TARGET_US {
            self.flush_audio();
        }
    }

    /// Writes the pending audio frames as one PES into the open segment.
    fn flush_audio(&mut self) {
        let Self {
            segment,
            pending_audio,
            muxer,
            ..
        } = self;
        let (Some(segment), Some(first)) = (segment.as_mut(), pending_audio.frames.first()) else {
            pending_audio.frames.clear();
            pending_audio.duration_us = 0;
            pending_audio.bytes = 0;
            return;
        };
        let pts = ms_to_90khz(first.dts_ms);
        let header = PesHeader {
            pid: AUDIO_PID,
            stream_id: STREAM_ID_AUDIO,
            pts,
            dts: pts,
            pcr: (segment.tracks.pcr_pid() == AUDIO_PID).then(|| pcr_for(pts)),
            random_access: !segment.tracks.video && !segment.audio_pes_written,
        };
        let chunks = pending_audio
            .frames
            .iter()
            .flat_map(|f| [&f.adts[..], f.data.as_ref()]);
        segment.write_psi_once(muxer);
        muxer.write_pes(&mut segment.buf, &header, chunks);
        segment.audio_pes_written = true;
        pending_audio.frames.clear();
        pending_audio.duration_us = 0;
        pending_audio.bytes = 0;
    }
}

fn pcr_for(dts_90k: u64) -> u64 {
    dts_90k.saturating_sub(ms_to_90khz(PCR_DELAY_MS))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::remux::timestamp::TIMESTAMP_OFFSET_MS;

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
