//! Where segments and parts begin and end, over samples of any number of tracks.
//!
//! A segment runs from the DTS of the sample that opened it to the DTS of the sample that opened the
//! next one. It is cut at the first keyframe of the program's reference track (its video track, see
//! [`Program::reference`]) once it is at least the target long, and without one once it reaches the
//! maximum (a guard against huge GOPs; audio-only streams, whose every frame is a keyframe, cut on the
//! target alone). A change of configuration or of the declared tracks cuts at the next keyframe of the
//! reference track of the program to come, and that segment starts a discontinuity. Samples go into
//! whatever segment is open when they arrive (RTMP interleaves the tracks in roughly DTS order).
//!
//! Parts (low-latency HLS) tile each segment: the open part is closed before a sample of the
//! reference track that would make it outgrow the part target, and whenever the segment is cut.
//! Parts are closed when the sample that opens the next one arrives, because only then is the part's
//! duration (and its last sample's) known.
//!
//! The cutter only decides and keeps time; the [`Segmenter`](super::Segmenter) applies its verdicts to
//! the muxers. All times are 90 kHz ticks.

use super::codec::MediaKind;
use super::sample::Sample;
use super::track::Program;

/// What to do with one sample of a stream whose segment is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it out: it cannot be decoded in the open segment (an inter frame of a configuration not
    /// yet in force, a track the program does not declare).
    Drop,
    /// Cut the segment before it; the next one declares `program`.
    Cut {
        /// The tracks of the next segment.
        program: Program,
        /// The next segment starts a new timeline or configuration.
        discontinuity: bool,
    },
    /// Close the open part before it.
    ClosePart,
    /// Add it to the open segment and part.
    Append,
}

/// How a closed segment's media lies on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSpan {
    /// DTS of the first sample.
    pub first_dts: u64,
    /// PTS of the first sample.
    pub first_pts: u64,
    /// The first sample is a keyframe of the reference track.
    pub starts_with_keyframe: bool,
    /// Duration: up to the next segment's first DTS, or estimated from the last samples' durations.
    pub duration: u64,
    /// The segment starts a discontinuity.
    pub discontinuity: bool,
}

/// How a closed part's media lies on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSpan {
    /// DTS of its first reference-track sample.
    pub start: u64,
    /// Where it ends: the next part's start, or estimated at the end of the stream.
    pub end: u64,
    /// It starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
}

/// Timing of the sample that opened a segment.
#[derive(Debug, Clone, Copy)]
struct First {
    dts: u64,
    pts: u64,
    keyframe: bool,
}

#[derive(Debug)]
struct OpenSegment {
    program: Program,
    discontinuity: bool,
    first: Option<First>,
    /// Estimated end of the media so far: max over samples of DTS + duration.
    end: u64,
}

#[derive(Debug, Clone, Copy)]
struct OpenPart {
    start: u64,
    independent: bool,
    /// Estimated end of the part's reference-track media.
    end: u64,
}

/// The segment and part boundaries of one stream.
#[derive(Debug)]
pub struct Cutter {
    target: u64,
    max: u64,
    /// `None`: no parts are cut.
    part_target: Option<u64>,
    segment: Option<OpenSegment>,
    part: Option<OpenPart>,
}

/// Milliseconds to 90 kHz ticks.
fn ticks(ms: u64) -> u64 {
    ms.saturating_mul(90)
}

impl Cutter {
    /// Segments of `target_ms` (cut at keyframes), at most `max_ms` without one.
    pub fn new(target_ms: u64, max_ms: u64) -> Self {
        Self {
            target: ticks(target_ms),
            max: ticks(max_ms),
            part_target: None,
            segment: None,
            part: None,
        }
    }

    /// Also cut parts of at most about `part_target_ms`.
    pub fn enable_parts(&mut self, part_target_ms: u64) {
        self.part_target = Some(ticks(part_target_ms.max(1)));
    }

    /// The program of the open segment, if one is open.
    pub fn program(&self) -> Option<&Program> {
        self.segment.as_ref().map(|s| &s.program)
    }

    /// Whether the open segment starts a discontinuity; false when none is open.
    pub fn discontinuous(&self) -> bool {
        self.segment.as_ref().is_some_and(|s| s.discontinuity)
    }

    /// The verdict on `sample` while a segment is open (`Drop` when none is). `desired` is the
    /// program the tracks want now, `reconfigured` whether a configuration changed or waits, and
    /// `pending` whether the sample's own track has a configuration waiting for its keyframe.
    pub fn verdict(
        &self,
        sample: &Sample,
        desired: &Program,
        reconfigured: bool,
        pending: bool,
    ) -> Verdict {
        let Some(segment) = &self.segment else {
            return Verdict::Drop;
        };
        let current = &segment.program;
        if (reconfigured || desired != current) && desired.is_reference(sample.track) {
            if sample.keyframe {
                return Verdict::Cut {
                    program: *desired,
                    discontinuity: true,
                };
            }
            if pending || !current.contains(sample.track) {
                return Verdict::Drop;
            }
        }
        let duration = segment
            .first
            .map_or(0, |f| sample.dts.saturating_sub(f.dts));
        let reference = current.reference();
        let is_reference = reference.is_some_and(|(id, _)| id == sample.track);
        let gop_guard = reference.is_some_and(|(_, kind)| kind == MediaKind::Video);
        if (is_reference && sample.keyframe && duration >= self.target)
            || (gop_guard && duration >= self.max)
        {
            return Verdict::Cut {
                program: *current,
                discontinuity: false,
            };
        }
        if is_reference && self.part_due(sample) {
            return Verdict::ClosePart;
        }
        Verdict::Append
    }

    /// Whether the open part must be closed before `sample` (of the reference track) so that it does
    /// not outgrow the target: the part would end one sample duration after it at the earliest.
    pub fn part_due(&self, sample: &Sample) -> bool {
        match (self.part_target, self.part) {
            (Some(target), Some(part)) => {
                sample
                    .dts
                    .saturating_sub(part.start)
                    .saturating_add(sample.duration)
                    > target
            }
            _ => false,
        }
    }

    /// Opens a segment declaring `program`.
    pub fn open(&mut self, program: Program, discontinuity: bool) {
        self.segment = Some(OpenSegment {
            program,
            discontinuity,
            first: None,
            end: 0,
        });
    }

    /// Notes a sample written into the open segment.
    pub fn wrote(&mut self, sample: &Sample) {
        let Some(segment) = &mut self.segment else {
            return;
        };
        let is_reference = segment.program.is_reference(sample.track);
        let end = sample.dts.saturating_add(sample.duration);
        segment.first.get_or_insert(First {
            dts: sample.dts,
            pts: sample.pts,
            keyframe: sample.keyframe && is_reference,
        });
        segment.end = segment.end.max(end);
        // With video, the video samples pace the parts and say where the last one ends: audio running
        // on past the last video frame must not stretch it beyond the part target.
        if is_reference && self.part_target.is_some() {
            let part = self.part.get_or_insert(OpenPart {
                start: sample.dts,
                independent: sample.keyframe,
                end: 0,
            });
            part.end = part.end.max(end);
        }
    }

    /// Closes the open part before `next` (the first DTS of what follows; `None` at the end of the
    /// stream); `None` if it holds no reference-track sample.
    pub fn close_part(&mut self, next: Option<u64>) -> Option<PartSpan> {
        let part = self.part.take()?;
        Some(PartSpan {
            start: part.start,
            end: next.unwrap_or(part.end).max(part.start),
            independent: part.independent,
        })
    }

    /// Closes the open segment before `next` (`None` at the end of the stream). `None` if it holds no
    /// media; the flag says whether a discontinuity it started must pass to the next segment.
    pub fn close_segment(&mut self, next: Option<u64>) -> (Option<SegmentSpan>, bool) {
        let Some(segment) = self.segment.take() else {
            return (None, false);
        };
        let Some(first) = segment.first else {
            return (None, segment.discontinuity);
        };
        let end = next.unwrap_or(segment.end);
        let span = SegmentSpan {
            first_dts: first.dts,
            first_pts: first.pts,
            starts_with_keyframe: first.keyframe,
            duration: end.saturating_sub(first.dts),
            discontinuity: segment.discontinuity,
        };
        (Some(span), false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::remux::sample::TrackId;

    const V: TrackId = TrackId(0);
    const A: TrackId = TrackId(1);

    fn sample(track: TrackId, ms: u64, keyframe: bool) -> Sample {
        Sample {
            track,
            dts: ms * 90,
            pts: ms * 90,
            keyframe,
            duration: 33 * 90,
            data: Bytes::new(),
        }
    }

    fn av() -> Program {
        Program::new([(V, MediaKind::Video), (A, MediaKind::Audio)])
    }

    #[test]
    fn video_cuts_at_the_first_keyframe_after_the_target_and_audio_only_at_the_maximum() {
        let mut c = Cutter::new(2000, 5000);
        c.open(av(), false);
        c.wrote(&sample(V, 0, true));
        let p = av();
        assert_eq!(
            c.verdict(&sample(V, 1000, true), &p, false, false),
            Verdict::Append
        );
        assert_eq!(
            c.verdict(&sample(V, 2000, false), &p, false, false),
            Verdict::Append
        );
        assert_eq!(
            c.verdict(&sample(A, 4999, true), &p, false, false),
            Verdict::Append
        );
        let cut = Verdict::Cut {
            program: p,
            discontinuity: false,
        };
        assert_eq!(c.verdict(&sample(V, 2033, true), &p, false, false), cut);
        assert_eq!(c.verdict(&sample(A, 5000, true), &p, false, false), cut);
        let (span, carried) = c.close_segment(Some(2033 * 90));
        assert!(!carried);
        let span = span.unwrap();
        assert_eq!(
            (span.duration, span.starts_with_keyframe),
            (2033 * 90, true)
        );
    }

    #[test]
    fn audio_only_cuts_on_the_target_alone() {
        let audio = Program::new([(A, MediaKind::Audio)]);
        let mut c = Cutter::new(2000, 1000);
        c.open(audio, false);
        c.wrote(&sample(A, 0, true));
        assert_eq!(
            c.verdict(&sample(A, 1500, true), &audio, false, false),
            Verdict::Append
        );
        assert!(matches!(
            c.verdict(&sample(A, 2000, true), &audio, false, false),
            Verdict::Cut {
                discontinuity: false,
                ..
            }
        ));
    }

    #[test]
    fn a_new_configuration_waits_for_the_keyframe_of_the_programs_reference() {
        let mut c = Cutter::new(2000, 10_000);
        c.open(av(), false);
        c.wrote(&sample(V, 0, true));
        let p = av();
        // Inter frames of the waiting configuration cannot be decoded: dropped.
        assert_eq!(
            c.verdict(&sample(V, 33, false), &p, true, true),
            Verdict::Drop
        );
        // Audio neither cuts nor is dropped: the video keyframe will cut.
        assert_eq!(
            c.verdict(&sample(A, 40, true), &p, true, false),
            Verdict::Append
        );
        assert_eq!(
            c.verdict(&sample(V, 66, true), &p, true, true),
            Verdict::Cut {
                program: p,
                discontinuity: true
            }
        );
    }

    #[test]
    fn parts_close_before_the_reference_sample_that_would_outgrow_them() {
        let mut c = Cutter::new(2000, 10_000);
        c.enable_parts(334);
        c.open(av(), false);
        let p = av();
        for ms in [0, 33, 66, 100, 133, 166, 200, 233, 266] {
            let s = sample(V, ms, ms == 0);
            assert_eq!(c.verdict(&s, &p, false, false), Verdict::Append);
            c.wrote(&s);
            c.wrote(&sample(A, ms + 5, true)); // audio does not pace parts
        }
        // 300 + 33 ms of frame: still within 334.
        assert_eq!(
            c.verdict(&sample(V, 300, false), &p, false, false),
            Verdict::Append
        );
        assert_eq!(
            c.verdict(&sample(A, 400, true), &p, false, false),
            Verdict::Append
        );
        assert_eq!(
            c.verdict(&sample(V, 302, false), &p, false, false),
            Verdict::ClosePart
        );
        let span = c.close_part(Some(302 * 90)).unwrap();
        assert_eq!(
            (span.start, span.end, span.independent),
            (0, 302 * 90, true)
        );
        assert_eq!(c.close_part(None), None, "nothing written since");
    }
}
