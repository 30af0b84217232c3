//! The low-latency rendition: the same frames as the MPEG-TS segments, cut into fMP4 partial
//! segments (RFC 8216bis 4.4.4.9) of at most about the part target each.
//!
//! The [`Segmenter`](super::Segmenter) drives this: it hands every frame it writes into a TS segment
//! to [`PartBuilder`] as well, and closes the open part whenever it cuts a segment, so the parts of
//! segment N hold exactly the frames of TS segment N. Parts are closed when the frame that opens the
//! next one arrives, because only then is the part's duration (and its last sample's) known.

use bytes::Bytes;

use super::aac::AudioSpecificConfig;
use super::avc::AvcDecoderConfig;
use super::fmp4::{self, InitTracks, Sample, TrackRun, AUDIO_TRACK_ID, VIDEO_TRACK_ID};
use super::timestamp::ms_to_90khz;

/// One closed partial segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// A `moof` + `mdat` fragment.
    pub data: Bytes,
    /// Media duration: first DTS of the next part minus this part's first DTS, ms.
    pub duration_ms: u64,
    /// Starts with a random access point (`INDEPENDENT=YES`).
    pub independent: bool,
    /// Index of the part in its segment, from 0.
    pub index: u32,
    /// The last part of its segment (the segment was cut after it).
    pub last: bool,
    /// A new initialization segment that this part and the ones after it need; set on the first part
    /// of a stream and after a codec or track change.
    pub init: Option<Bytes>,
}

#[derive(Debug)]
struct VideoSample {
    dts_ms: u64,
    pts_ms: u64,
    keyframe: bool,
    data: Bytes,
}

/// Collects the samples of the open part.
#[derive(Debug)]
pub(crate) struct PartBuilder {
    target_ms: u64,
    /// `mfhd` sequence number of the next fragment.
    sequence: u32,
    /// An init segment not yet attached to a part.
    pending_init: Option<Bytes>,
    /// Whether an init segment was made at all.
    initialized: bool,
    has_video: bool,
    /// Audio timescale and samples per frame, if the current init has an audio track.
    audio: Option<(u32, u32)>,
    /// Next audio decode time in the audio timescale, to keep the audio timeline gapless across
    /// fragments despite millisecond RTMP timestamps.
    audio_next: Option<u64>,
    video_samples: Vec<VideoSample>,
    audio_samples: Vec<Sample>,
    /// DTS (ms) of the first frame of the open part, the one its timing is measured from.
    first_ms: Option<u64>,
    first_keyframe: bool,
    /// Estimated end of the open part's media (for the last part of a stream): the end of its last
    /// video frame, or of its last audio frame in an audio-only stream.
    end_ms: u64,
    index: u32,
    closed: Vec<Part>,
}

impl PartBuilder {
    /// A builder cutting parts of at most about `target_ms`.
    pub(crate) fn new(target_ms: u64) -> Self {
        Self {
            target_ms: target_ms.max(1),
            sequence: 1,
            pending_init: None,
            initialized: false,
            has_video: false,
            audio: None,
            audio_next: None,
            video_samples: Vec::new(),
            audio_samples: Vec::new(),
            first_ms: None,
            first_keyframe: false,
            end_ms: 0,
            index: 0,
            closed: Vec::new(),
        }
    }

    /// Starts a new initialization segment for what follows (the open part must be empty).
    pub(crate) fn set_init(
        &mut self,
        video: Option<&AvcDecoderConfig>,
        audio: Option<&AudioSpecificConfig>,
    ) {
        self.pending_init = Some(fmp4::init_segment(InitTracks { video, audio }));
        self.initialized = true;
        self.has_video = video.is_some();
        self.audio = audio.map(|a| (fmp4::audio_timescale(a), a.samples_per_frame));
        self.audio_next = None;
    }

    /// Whether the init in use declares exactly these tracks (else a new one is needed).
    pub(crate) fn init_matches(&self, video: bool, audio: bool) -> bool {
        self.initialized && self.has_video == video && self.audio.is_some() == audio
    }

    /// Whether the open part must be closed before a frame at `dts_ms` (of the track that paces the
    /// parts), so that it does not outgrow the target: the part would end one frame interval
    /// (`gap_ms`) after that frame at the earliest.
    pub(crate) fn is_due(&self, dts_ms: u64, gap_ms: u64) -> bool {
        self.first_ms.is_some_and(|first| {
            dts_ms.saturating_sub(first).saturating_add(gap_ms) > self.target_ms
        })
    }

    /// Adds a video access unit (length-prefixed NAL units, as in FLV).
    pub(crate) fn push_video(
        &mut self,
        dts_ms: u64,
        pts_ms: u64,
        keyframe: bool,
        data: Bytes,
        interval_ms: u64,
    ) {
        if !self.has_video {
            return;
        }
        if self.first_ms.is_none() {
            self.first_ms = Some(dts_ms);
            self.first_keyframe = keyframe;
        }
        self.end_ms = self.end_ms.max(dts_ms.saturating_add(interval_ms));
        self.video_samples.push(VideoSample {
            dts_ms,
            pts_ms,
            keyframe,
            data,
        });
    }

    /// Adds a raw AAC frame.
    pub(crate) fn push_audio(&mut self, dts_ms: u64, data: Bytes, duration_us: u64) {
        let Some((timescale, per_frame)) = self.audio else {
            return;
        };
        if self.first_ms.is_none() && !self.has_video {
            self.first_ms = Some(dts_ms);
            self.first_keyframe = true;
        }
        // With video, the video frames pace the parts and say where the last one ends: audio
        // running on past the last video frame must not stretch it beyond the part target.
        if !self.has_video {
            self.end_ms = self
                .end_ms
                .max(dts_ms.saturating_add(duration_us.div_ceil(1000)));
        }
        let at = dts_ms.saturating_mul(u64::from(timescale)) / 1000;
        // Within half a frame of where the previous frame ended: continue the timeline exactly.
        let decode_time = match self.audio_next {
            Some(next) if next.abs_diff(at) <= u64::from(per_frame / 2) => next,
            _ => at,
        };
        self.audio_next = Some(decode_time + u64::from(per_frame));
        self.audio_samples.push(Sample {
            decode_time,
            duration: per_frame,
            composition_offset: 0,
            sync: true,
            data,
        });
    }

    /// Closes the open part at `next_dts_ms` (the first DTS of what follows; `None` at the end of the
    /// stream). `last` marks the end of its segment. An empty part produces nothing.
    pub(crate) fn close(&mut self, next_dts_ms: Option<u64>, last: bool) {
        let Some(first_ms) = self.first_ms.take() else {
            if last {
                self.index = 0;
            }
            return;
        };
        let end_ms = next_dts_ms.unwrap_or(self.end_ms).max(first_ms);
        let video = self.video_samples(end_ms);
        let audio = std::mem::take(&mut self.audio_samples);
        let data = fmp4::fragment(
            self.sequence,
            &[
                TrackRun {
                    track_id: VIDEO_TRACK_ID,
                    samples: &video,
                },
                TrackRun {
                    track_id: AUDIO_TRACK_ID,
                    samples: &audio,
                },
            ],
        );
        self.sequence = self.sequence.wrapping_add(1);
        self.closed.push(Part {
            data,
            duration_ms: end_ms - first_ms,
            independent: self.first_keyframe,
            index: self.index,
            last,
            init: self.pending_init.take(),
        });
        self.index = if last { 0 } else { self.index + 1 };
        self.end_ms = 0;
    }

    /// The open part's video as fMP4 samples; each lasts until the next one's DTS, the last one until
    /// `end_ms`.
    fn video_samples(&mut self, end_ms: u64) -> Vec<Sample> {
        let frames = std::mem::take(&mut self.video_samples);
        let ends = frames
            .iter()
            .skip(1)
            .map(|f| f.dts_ms)
            .chain(std::iter::once(end_ms));
        frames
            .iter()
            .zip(ends)
            .map(|(f, end)| {
                let dts = ms_to_90khz(f.dts_ms);
                Sample {
                    decode_time: dts,
                    // A part is seconds long at most; the 90 kHz tick count fits easily.
                    duration: u32::try_from(ms_to_90khz(end).saturating_sub(dts))
                        .unwrap_or(u32::MAX),
                    composition_offset: u32::try_from(ms_to_90khz(f.pts_ms).saturating_sub(dts))
                        .unwrap_or(u32::MAX),
                    sync: f.keyframe,
                    data: f.data.clone(),
                }
            })
            .collect()
    }

    /// Closed parts, oldest first, emptying the list.
    pub(crate) fn take(&mut self) -> Vec<Part> {
        std::mem::take(&mut self.closed)
    }
}
