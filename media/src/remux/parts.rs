//! The low-latency rendition: the same frames as the MPEG-TS segments, cut into fMP4 partial
//! segments (RFC 8216bis 4.4.4.9) of at most about the part target each.
//!
//! The [`Segmenter`](super::Segmenter) drives this: it hands every frame it writes into a TS segment
//! to [`PartBuilder`] as well, and closes the open part whenever it cuts a segment, so the parts of
//! segment N hold exactly the frames of TS segment N. Parts are closed when the frame that opens the
//! next one arrives, because only then is the part's duration (and its last sample's) known.
//!
//! Video decode times are shifted later by the composition delay of the init's first video frame
//! (B-frames make an encoder present its keyframe a frame or two after decoding it), so a keyframe is
//! presented at its part's `tfdt`. Players that place a part by its `tfdt` (shaka-player, which sets
//! the SourceBuffer's timestamp offset from it) otherwise see the video of every segment start that
//! delay (67 ms with x264's two B-frames at 30 fps) after the part's start: a gap they jump by seeking,
//! and after a seek they reset the SourceBuffer, which then drops every frame up to the next keyframe, so
//! the video freezes until the next segment and waits there. Presentation times stay those of the TS
//! segments, so audio and video stay in sync; the composition offsets become signed (`trun` version 1).

use bytes::Bytes;

use super::codec::aac::AudioSpecificConfig;
use super::codec::avc::AvcDecoderConfig;
use super::codec::TrackConfig;
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

/// Most composition delay taken into the video decode-time shift (real encoders: well under 1 s).
const MAX_VIDEO_DELAY_MS: u64 = 1_000;

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
    /// How much later than the encoder's DTS video decode times are written, in 90 kHz ticks: the
    /// composition delay of the first video frame under the current init (see the module doc).
    video_delay: Option<u64>,
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
            video_delay: None,
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
        self.pending_init = Some(fmp4::init_segment(InitTracks {
            video: video.map(|v| v as &dyn TrackConfig),
            audio: audio.map(|a| a as &dyn TrackConfig),
        }));
        self.initialized = true;
        self.has_video = video.is_some();
        self.audio = audio.map(|a| (fmp4::audio_timescale(a), a.samples_per_frame));
        self.audio_next = None;
        self.video_delay = None;
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
        if self.video_delay.is_none() {
            // Bounded: a publisher's bogus composition time cannot push decode times further than
            // MAX_VIDEO_DELAY_MS, and the signed offsets below stay far inside an i32.
            let delay_ms = pts_ms.saturating_sub(dts_ms).min(MAX_VIDEO_DELAY_MS);
            self.video_delay = Some(ms_to_90khz(delay_ms));
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
        let delay = self.video_delay.unwrap_or(0);
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
                let decode_time = dts.saturating_add(delay);
                let offset = i128::from(ms_to_90khz(f.pts_ms)) - i128::from(decode_time);
                Sample {
                    decode_time,
                    // A part is seconds long at most; the 90 kHz tick count fits easily.
                    duration: u32::try_from(ms_to_90khz(end).saturating_sub(dts))
                        .unwrap_or(u32::MAX),
                    composition_offset: i32::try_from(offset).unwrap_or(if offset < 0 {
                        i32::MIN
                    } else {
                        i32::MAX
                    }),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::type_complexity)]
mod tests {
    use super::*;

    /// Track id, tfdt, and (duration, composition offset) per sample, of one `traf`.
    type Traf = (u32, u64, Vec<(u32, i32)>);

    /// Every `traf` of a fragment.
    fn trafs(frag: &[u8]) -> Vec<Traf> {
        let be32 = |at: usize| u32::from_be_bytes(frag[at..at + 4].try_into().unwrap());
        let mut out = Vec::new();
        let mut pos = 8 + 16; // moof header, mfhd
        while &frag[pos + 4..pos + 8] == b"traf" {
            let end = pos + be32(pos) as usize;
            let tfhd = pos + 8;
            let tfdt = tfhd + be32(tfhd) as usize;
            let trun = tfdt + be32(tfdt) as usize;
            assert_eq!(frag[trun + 8], 1, "trun version 1");
            let samples = (0..be32(trun + 12) as usize)
                .map(|i| trun + 20 + i * 16)
                .map(|e| (be32(e), be32(e + 12) as i32))
                .collect();
            out.push((
                be32(tfhd + 12),
                u64::from_be_bytes(frag[tfdt + 12..tfdt + 20].try_into().unwrap()),
                samples,
            ));
            pos = end;
        }
        out
    }

    fn avc() -> AvcDecoderConfig {
        AvcDecoderConfig::parse(&Bytes::from_static(&[
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xeb,
        ]))
        .unwrap()
    }

    #[test]
    fn keyframes_are_presented_at_their_parts_decode_start_and_presentation_is_kept() {
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap(); // AAC-LC 48 kHz stereo
        let mut b = PartBuilder::new(334);
        b.set_init(Some(&avc()), Some(&asc));
        // x264 with two B-frames at 30 fps: I P B B P B B ..., the keyframe presented 67 ms after
        // its decode time; a keyframe every 2 s (60 frames), audio 5 ms after each video frame.
        let mut presented = Vec::new();
        for i in 0..120u64 {
            let dts = 10_000 + i * 1000 / 30;
            let shown = match i % 3 {
                0 => i + 2,
                1 => i - 1,
                _ => i - 1,
            };
            let pts = 10_000 + shown * 1000 / 30 + 34;
            let at_part_start = b.is_due(dts, 33);
            if i % 60 == 0 && i > 0 {
                b.close(Some(dts), true);
            } else if at_part_start {
                b.close(Some(dts), false);
            }
            b.push_video(dts, pts, i % 60 == 0, Bytes::from_static(b"v"), 33);
            b.push_audio(dts + 5, Bytes::from_static(b"a"), 21_333);
            presented.push(pts);
        }
        b.close(None, true);
        let parts = b.take();
        assert_eq!(parts.iter().filter(|p| p.last).count(), 2);
        let mut video_pts = Vec::new();
        for p in &parts {
            let t = trafs(&p.data);
            let (track, tfdt, samples) = &t[0];
            assert_eq!(*track, VIDEO_TRACK_ID);
            if p.independent {
                // The keyframe opening the part is presented exactly at the part's tfdt.
                assert_eq!(samples[0].1, 0, "part {}", p.index);
            }
            let mut at = *tfdt;
            for (duration, offset) in samples {
                video_pts.push((i128::from(at) + i128::from(*offset)) as u64);
                at += u64::from(*duration);
            }
            assert_eq!(t[1].0, AUDIO_TRACK_ID);
        }
        // Audio keeps its own timeline (48 kHz): not shifted with the video's decode times.
        assert_eq!(trafs(&parts[0].data)[1].1, 10_005 * 48);
        // Every frame is presented when the publisher said (to the 90 kHz tick).
        let expected: Vec<u64> = presented.iter().map(|&p| ms_to_90khz(p)).collect();
        assert_eq!(video_pts, expected);
    }
}
