//! The low-latency rendition: the same samples as the MPEG-TS segments, cut into fMP4 partial
//! segments (RFC 8216bis 4.4.4.9) where the [`Cutter`](crate::remux::cutter::Cutter) says, so the
//! parts of segment N hold exactly the samples of TS segment N. Boxes are written by
//! [`crate::remux::fmp4`]; each track's sample entry comes from its codec.
//!
//! Video decode times are shifted later by the composition delay of the init's first video frame
//! (B-frames make an encoder present its keyframe a frame or two after decoding it), so a keyframe is
//! presented at its part's `tfdt`. Players that place a part by its `tfdt` (shaka-player, which sets
//! the SourceBuffer's timestamp offset from it) otherwise see the video of every segment start that
//! delay (67 ms with x264's two B-frames at 30 fps) after the part's start: a gap they jump by seeking,
//! and after a seek they reset the SourceBuffer, which then drops every frame up to the next keyframe, so
//! the video freezes until the next segment and waits there. Presentation times stay those of the TS
//! segments, so audio and video stay in sync; the composition offsets become signed (`trun` version 1).
//!
//! Samples are kept per track as fMP4 samples from the moment they arrive (only the last video
//! duration waits for the part's end), in lists reused from part to part.

use bytes::Bytes;

use super::Muxer;
use crate::remux::codec::TrackConfig;
use crate::remux::cutter::PartSpan;
use crate::remux::fmp4::{self, InitTrack, Sample as Mp4Sample, TrackRun};
use crate::remux::sample::{ticks_to_ms, Sample, TrackId};
use crate::remux::track::{mp4_track_id, Program, Tracks};

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

/// Most composition delay taken into the video decode-time shift, 90 kHz (real encoders: well under
/// 1 s).
const MAX_VIDEO_DELAY: u64 = 90_000;

/// The open part's samples of one track.
#[derive(Debug, Default)]
struct Run {
    /// The current init declares the track.
    in_init: bool,
    /// Timescale and samples per frame, for tracks whose frames all last the same (audio).
    fixed: Option<(u32, u32)>,
    /// Next decode time of a fixed-length track in its timescale, to keep its timeline gapless across
    /// fragments despite millisecond RTMP timestamps.
    next: Option<u64>,
    /// How much later than the encoder's DTS decode times of a variable-length (video) track are
    /// written, 90 kHz: the composition delay of its first sample under the current init.
    delay: Option<u64>,
    samples: Vec<Mp4Sample>,
}

/// Cuts the fMP4 parts of one stream.
#[derive(Debug, Default)]
pub struct Fmp4Muxer {
    /// `mfhd` sequence number of the next fragment.
    sequence: u32,
    /// An init segment not yet attached to a part.
    pending_init: Option<Bytes>,
    /// The tracks of the current init; `None` before the first.
    init_tracks: Option<Vec<TrackId>>,
    /// Indexed by [`TrackId`].
    runs: Vec<Run>,
    index: u32,
    closed: Vec<Part>,
}

impl Fmp4Muxer {
    /// A muxer for a new stream.
    pub fn new() -> Self {
        Self {
            sequence: 1,
            ..Self::default()
        }
    }

    /// Closed parts, oldest first, emptying the list.
    pub fn take(&mut self) -> Vec<Part> {
        std::mem::take(&mut self.closed)
    }

    fn set_init(&mut self, configured: Vec<(TrackId, &dyn TrackConfig)>, next_track_id: u32) {
        let init: Vec<InitTrack<'_>> = configured
            .iter()
            .map(|(id, config)| InitTrack {
                track_id: mp4_track_id(*id),
                config: *config,
            })
            .collect();
        self.pending_init = Some(fmp4::init_segment(&init, next_track_id));
        for run in &mut self.runs {
            run.in_init = false;
            run.next = None;
            run.delay = None;
        }
        for (id, config) in &configured {
            if self.runs.len() <= id.index() {
                self.runs.resize_with(id.index() + 1, Run::default);
            }
            if let Some(run) = self.runs.get_mut(id.index()) {
                run.in_init = true;
                run.fixed = config.frame_duration().map(|d| (config.timescale(), d));
            }
        }
        self.init_tracks = Some(configured.into_iter().map(|(id, _)| id).collect());
    }
}

impl Muxer for Fmp4Muxer {
    /// A discontinuity may mean new parameter sets, another track set a new track list: either way
    /// a new init segment.
    fn start_segment(&mut self, program: &Program, tracks: &Tracks, discontinuity: bool) {
        let configured = || {
            program
                .tracks()
                .filter_map(|id| Some((id, tracks.get(id)?.config.as_deref()?)))
        };
        let same = self
            .init_tracks
            .as_ref()
            .is_some_and(|ids| ids.iter().copied().eq(configured().map(|(id, _)| id)));
        if discontinuity || !same {
            let next_track_id = u32::try_from(tracks.len()).unwrap_or(u32::MAX - 1) + 1;
            self.set_init(configured().collect(), next_track_id);
        }
    }

    fn push(&mut self, sample: &Sample, _config: &dyn TrackConfig) {
        let Some(run) = self
            .runs
            .get_mut(sample.track.index())
            .filter(|r| r.in_init)
        else {
            return;
        };
        let entry = match run.fixed {
            Some((timescale, per_frame)) => {
                let at = sample.dts.saturating_mul(u64::from(timescale)) / 90_000;
                // Within half a frame of where the previous frame ended: continue the timeline exactly.
                let decode_time = match run.next {
                    Some(next) if next.abs_diff(at) <= u64::from(per_frame / 2) => next,
                    _ => at,
                };
                run.next = Some(decode_time + u64::from(per_frame));
                Mp4Sample {
                    decode_time,
                    duration: per_frame,
                    composition_offset: 0,
                    sync: sample.keyframe,
                    data: sample.data.clone(),
                }
            }
            None => {
                // Bounded: a publisher's bogus composition time cannot push decode times further
                // than MAX_VIDEO_DELAY, and the signed offsets below stay far inside an i32.
                let delay = *run.delay.get_or_insert_with(|| {
                    sample.pts.saturating_sub(sample.dts).min(MAX_VIDEO_DELAY)
                });
                let decode_time = sample.dts.saturating_add(delay);
                let offset = i128::from(sample.pts) - i128::from(decode_time);
                Mp4Sample {
                    decode_time,
                    // Filled in when the part closes: until the next sample's decode time.
                    duration: 0,
                    composition_offset: i32::try_from(offset).unwrap_or(if offset < 0 {
                        i32::MIN
                    } else {
                        i32::MAX
                    }),
                    sync: sample.keyframe,
                    data: sample.data.clone(),
                }
            }
        };
        run.samples.push(entry);
    }

    /// An empty part produces nothing (and keeps what non-reference tracks sent, for the next one).
    fn close_part(&mut self, span: Option<PartSpan>, last: bool) {
        let Some(span) = span else {
            if last {
                self.index = 0;
            }
            return;
        };
        for run in self.runs.iter_mut().filter(|r| r.fixed.is_none()) {
            // Each video sample lasts until the next one's DTS, the last one until the part's end.
            let delay = run.delay.unwrap_or(0);
            let mut end = span.end;
            for s in run.samples.iter_mut().rev() {
                let dts = s.decode_time.saturating_sub(delay);
                // A part is seconds long at most; the 90 kHz tick count fits easily.
                s.duration = u32::try_from(end.saturating_sub(dts)).unwrap_or(u32::MAX);
                end = dts;
            }
        }
        let data = fmp4::fragment(
            self.sequence,
            self.runs.iter().enumerate().map(|(i, r)| TrackRun {
                track_id: mp4_track_id(TrackId(u8::try_from(i).unwrap_or(u8::MAX))),
                samples: &r.samples,
            }),
        );
        for run in &mut self.runs {
            run.samples.clear();
        }
        self.sequence = self.sequence.wrapping_add(1);
        self.closed.push(Part {
            data,
            duration_ms: ticks_to_ms(span.end - span.start),
            independent: span.independent,
            index: self.index,
            last,
            init: self.pending_init.take(),
        });
        self.index = if last { 0 } else { self.index + 1 };
    }

    /// Parts are the output; the segment's last one was closed with `last`.
    fn finish_segment(&mut self) -> Option<Bytes> {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::type_complexity)]
mod tests {
    use super::*;
    use crate::remux::codec::aac::AudioSpecificConfig;
    use crate::remux::codec::avc::AvcDecoderConfig;
    use crate::remux::codec::MediaKind;
    use crate::remux::cutter::Cutter;
    use crate::remux::timestamp::ms_to_90khz;

    const VIDEO_TRACK_ID: u32 = 1;
    const AUDIO_TRACK_ID: u32 = 2;

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
        let mut tracks = Tracks::new([MediaKind::Video, MediaKind::Audio]);
        tracks.get_mut(TrackId(0)).unwrap().config = Some(Box::new(avc()));
        tracks.get_mut(TrackId(1)).unwrap().config = Some(Box::new(asc.clone()));
        let program = tracks.desired();
        let mut cutter = Cutter::new(2000, 10_000);
        cutter.enable_parts(334);
        cutter.open(program, false);
        let mut b = Fmp4Muxer::new();
        b.start_segment(&program, &tracks, false);
        let sample = |track, ms: u64, pts_ms: u64, keyframe, duration_ms, data| Sample {
            track: TrackId(track),
            dts: ms_to_90khz(ms),
            pts: ms_to_90khz(pts_ms),
            keyframe,
            duration: ms_to_90khz(duration_ms),
            data: Bytes::from_static(data),
        };
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
            let video = sample(0, dts, pts, i % 60 == 0, 33, b"v");
            if i % 60 == 0 && i > 0 {
                b.close_part(cutter.close_part(Some(video.dts)), true);
                cutter.close_segment(Some(video.dts));
                cutter.open(program, false);
                b.start_segment(&program, &tracks, false);
            } else if cutter.part_due(&video) {
                b.close_part(cutter.close_part(Some(video.dts)), false);
            }
            let audio = sample(1, dts + 5, dts + 5, true, 22, b"a");
            for s in [video, audio] {
                cutter.wrote(&s);
                let config = tracks.get(s.track).unwrap().config.as_deref().unwrap();
                b.push(&s, config);
            }
            presented.push(pts);
        }
        b.close_part(cutter.close_part(None), true);
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
