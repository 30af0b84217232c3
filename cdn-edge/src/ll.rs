//! The low-latency media playlist of one stream (RFC 8216bis, LL-HLS), as a pure state machine: parts
//! and stream events in, playlist text out.
//!
//! Like the plain playlist, everything rendered comes from the messages (sequence and part numbers,
//! durations, init ids, discontinuity numbers fixed at the origin), so every edge that has read the
//! same records answers with the same bytes. Segments are listed as `<seq>.mp4` (the concatenation of
//! their parts), parts as `<seq>.<part>.m4s`, init segments as `init-<id>.mp4`.

use std::collections::{BTreeSet, VecDeque};

use common::hls::{self, MediaPlaylist, Millis, ServerControl};
use common::{PartMeta, StreamEnd};

/// Parts are listed for the segments that start within this many target durations of the playlist's
/// end (RFC 8216bis 4.4.4.9: a server SHOULD remove parts greater than three target durations from the
/// end).
const PART_TARGETS_LISTED: u64 = 3;
/// ... and for at most this many segments (the open one included): how `hls-parser`'s strict mode reads
/// the same rule. The two agree whenever segments last about a target duration; the count keeps the
/// playlist valid for that reader when segments are shorter. Three segments still hold every part a
/// player joining at PART-HOLD-BACK (three part targets from the end) needs.
const PART_SEGMENTS_LISTED: usize = 3;
/// PART-HOLD-BACK in part targets (RFC 8216bis 4.4.3.8: at least 2, SHOULD be 3).
const PART_HOLD_BACK_PARTS: u64 = 3;
/// Init ids remembered per stream (one per codec change; a handful at most in any window).
const MAX_INITS: usize = 16;

/// What [`LlPlaylist::push_part`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartOutcome {
    /// The part was added to the playlist.
    Added,
    /// Already listed, out of order, or its init segment is unknown here: nothing changed.
    Ignored,
}

#[derive(Debug, Clone)]
struct Part {
    duration_ms: u64,
    independent: bool,
}

#[derive(Debug, Clone)]
struct Segment {
    seq: u64,
    broadcast: String,
    disc_seq: u64,
    discontinuity: bool,
    init: u64,
    target_duration: u32,
    part_target_ms: u64,
    parts: Vec<Part>,
    complete: bool,
}

impl Segment {
    fn duration_ms(&self) -> u64 {
        self.parts.iter().map(|p| p.duration_ms).sum()
    }
}

/// The window of one stream's most recent low-latency segments and their parts.
#[derive(Debug, Clone)]
pub struct LlPlaylist {
    window: usize,
    segments: VecDeque<Segment>,
    inits: BTreeSet<u64>,
    ended: bool,
}

impl LlPlaylist {
    /// An empty playlist listing the last `window` complete segments (plus the open one).
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(1),
            segments: VecDeque::new(),
            inits: BTreeSet::new(),
            ended: false,
        }
    }

    /// Notes that init segment `id` is available; returns whether it was new.
    pub fn push_init(&mut self, id: u64) -> bool {
        let added = self.inits.insert(id);
        while self.inits.len() > MAX_INITS {
            self.inits.pop_first();
        }
        added
    }

    /// Whether no segment is listed.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Whether the playlist ends with `#EXT-X-ENDLIST`.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Adds a part. Parts of a stream arrive in order (one partition): a segment is listed from its
    /// part 0 on; a part that does not continue the newest segment or start the next one means parts
    /// were lost, and the window restarts at the next part 0, as the plain playlist does at a gap.
    pub fn push_part(&mut self, meta: &PartMeta) -> PartOutcome {
        if !self.inits.contains(&meta.init) {
            return PartOutcome::Ignored;
        }
        let new_segment = || Segment {
            seq: meta.seq,
            broadcast: meta.broadcast.clone(),
            disc_seq: meta.disc_seq,
            discontinuity: meta.discontinuity,
            init: meta.init,
            target_duration: meta.target_duration,
            part_target_ms: seconds_to_ms(meta.part_target),
            parts: Vec::new(),
            complete: false,
        };
        let part = Part {
            duration_ms: seconds_to_ms(meta.duration).max(1),
            independent: meta.independent,
        };
        match self.segments.back_mut() {
            Some(last) if meta.seq == last.seq => {
                if last.complete || meta.part as usize != last.parts.len() {
                    if meta.part as usize > last.parts.len() && !last.complete {
                        // A part of this segment never arrived: it cannot be listed.
                        self.segments.pop_back();
                    }
                    return PartOutcome::Ignored;
                }
                last.parts.push(part);
                last.complete = meta.last;
                last.target_duration = last.target_duration.max(meta.target_duration);
                last.part_target_ms = last.part_target_ms.max(seconds_to_ms(meta.part_target));
            }
            Some(last) if meta.seq > last.seq => {
                if meta.part != 0 {
                    return PartOutcome::Ignored;
                }
                if meta.seq == last.seq + 1 {
                    // The next segment began, so the previous one is over even if its last part
                    // was not marked.
                    last.complete = true;
                } else {
                    self.segments.clear();
                }
                let mut s = new_segment();
                s.complete = meta.last;
                s.parts.push(part);
                self.segments.push_back(s);
            }
            Some(_) => return PartOutcome::Ignored,
            None => {
                if meta.part != 0 {
                    return PartOutcome::Ignored;
                }
                let mut s = new_segment();
                s.complete = meta.last;
                s.parts.push(part);
                self.segments.push_back(s);
            }
        }
        let complete = self.segments.iter().filter(|s| s.complete).count();
        if complete > self.window {
            self.segments.pop_front();
        }
        self.ended = false;
        PartOutcome::Added
    }

    /// Applies a broadcast's end ([`hls::ends_newest`], as the plain playlist); returns whether it
    /// changed.
    pub fn end(&mut self, end: &StreamEnd) -> bool {
        let Some(last) = self.segments.back_mut() else {
            return false;
        };
        if hls::ends_newest(end, &last.broadcast, last.seq) && !self.ended {
            // Nothing more will come: the open segment is as complete as it will get.
            last.complete = true;
            self.ended = true;
            return true;
        }
        false
    }

    /// Whether the playlist holds part `part` of segment `msn` (or the whole segment when `part` is
    /// `None`), or anything later: what a blocking reload waits for (RFC 8216bis 6.2.5.2).
    pub fn has(&self, msn: u64, part: Option<u32>) -> bool {
        let Some(last) = self.segments.back() else {
            return false;
        };
        if self.ended || last.seq > msn {
            return true;
        }
        if last.seq < msn {
            return false;
        }
        match part {
            None => last.complete,
            Some(p) => last.complete || (p as usize) < last.parts.len(),
        }
    }

    /// Sequence number of the newest segment listed, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.segments.back().map(|s| s.seq)
    }

    /// Target duration in seconds as rendered (at least 1).
    pub fn target_duration(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| u64::from(s.target_duration).max((s.duration_ms() + 500) / 1000))
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// Number of parts of segment `seq` if it is listed and complete (its `<seq>.mp4` can be served).
    pub fn complete_parts(&self, seq: u64) -> Option<u32> {
        self.segments
            .iter()
            .find(|s| s.seq == seq && s.complete)
            .map(|s| s.parts.len() as u32)
    }

    /// Whether part `part` of segment `seq` is the one the playlist's preload hint announces, or
    /// otherwise about to come: a request for it may wait (blocking part request).
    pub fn is_upcoming(&self, seq: u64, part: u32) -> bool {
        match self.next_part() {
            Some((s, p)) => (seq == s && part >= p && part <= p + 1) || (seq == s + 1 && part == 0),
            None => false,
        }
    }

    /// The part the preload hint names: the next one of the open segment, or the next segment's first.
    fn next_part(&self) -> Option<(u64, u32)> {
        if self.ended {
            return None;
        }
        let last = self.segments.back()?;
        Some(if last.complete {
            (last.seq + 1, 0)
        } else {
            (last.seq, last.parts.len() as u32)
        })
    }

    /// The playlist as the HLS model (RFC 8216bis section 4, version 6 for `EXT-X-MAP`); `None` while
    /// no segment is listed.
    pub fn to_hls(&self) -> Option<MediaPlaylist> {
        let first = self.segments.front()?;
        let target = self.target_duration();
        let part_target_ms = self
            .segments
            .iter()
            .flat_map(|s| {
                std::iter::once(s.part_target_ms).chain(s.parts.iter().map(|p| p.duration_ms))
            })
            .max()
            .unwrap_or(1)
            .max(1);
        // Parts are listed for the segments that start within three target durations of the end
        // (so none of their parts is further away), the last three at most. A preload hint for part 0
        // of the next segment opens that segment for hls-parser, so it counts as one of the three.
        let hint_opens_segment = self.next_part().is_some_and(|(_, part)| part == 0);
        let segments_listed = PART_SEGMENTS_LISTED - usize::from(hint_opens_segment);
        let mut from_end = 0;
        let mut listed_from = self.segments.len();
        for (n, (i, s)) in self.segments.iter().enumerate().rev().enumerate() {
            from_end += s.duration_ms();
            if n >= segments_listed || from_end > PART_TARGETS_LISTED * target * 1000 {
                break;
            }
            listed_from = i;
        }
        let mut prev_init = None;
        let segments = self
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let map = (prev_init != Some(s.init)).then(|| format!("init-{}.mp4", s.init));
                prev_init = Some(s.init);
                // An ended playlist lists whole segments only. Its parts would add nothing (every
                // segment is complete), and hls.js 1.7.4, which plays parts up to the end and then
                // reads #EXT-X-ENDLIST, never loads a final part it has not fetched yet, so the video
                // stalls a frame before the end instead of ending; with whole segments it loads the
                // rest.
                let parts = if i >= listed_from && !self.ended {
                    s.parts
                        .iter()
                        .enumerate()
                        .map(|(k, p)| hls::Part {
                            uri: format!("{}.{k}.m4s", s.seq),
                            duration: Millis(p.duration_ms),
                            independent: p.independent,
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                hls::Segment {
                    uri: format!("{}.mp4", s.seq),
                    duration: s.complete.then(|| Millis(s.duration_ms())),
                    discontinuity: s.discontinuity,
                    map,
                    parts,
                }
            })
            .collect();
        Some(MediaPlaylist {
            version: 6,
            target_duration: target,
            server_control: Some(ServerControl {
                can_block_reload: true,
                part_hold_back: Millis(part_target_ms * PART_HOLD_BACK_PARTS),
            }),
            part_target: Some(Millis(part_target_ms)),
            media_sequence: first.seq,
            discontinuity_sequence: Some(first.disc_seq),
            segments,
            preload_hint: self
                .next_part()
                .map(|(seq, part)| format!("{seq}.{part}.m4s")),
            ended: self.ended,
            ..MediaPlaylist::default()
        })
    }

    /// Renders the playlist text (empty while no segment is listed).
    pub fn render(&self) -> String {
        self.to_hls().map(|p| p.render()).unwrap_or_default()
    }
}

/// Whole milliseconds of a duration in seconds from the origin (clamped: a broken origin must not
/// print absurd numbers).
fn seconds_to_ms(s: f64) -> u64 {
    let ms = (s * 1000.0).round();
    if ms.is_nan() || ms < 0.0 {
        0
    } else {
        ms.min(86_400_000.0) as u64
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn part(seq: u64, part: u32, ms: u64, last: bool) -> PartMeta {
        PartMeta {
            stream: "cam".into(),
            broadcast: "b".into(),
            seq,
            part,
            duration: ms as f64 / 1000.0,
            independent: part == 0,
            last,
            disc_seq: 1,
            discontinuity: seq == 10,
            init: 10,
            target_duration: 2,
            part_target: 0.334,
            closed_at_ms: 0,
            size: 0,
            crc32: 0,
        }
    }

    /// Segments 10.. of six 334 ms parts each; `open` parts of the next one.
    fn playlist(window: usize, segments: u64, open: u32) -> LlPlaylist {
        let mut p = LlPlaylist::new(window);
        p.push_init(10);
        for seq in 10..10 + segments {
            for k in 0..6 {
                assert_eq!(p.push_part(&part(seq, k, 334, k == 5)), PartOutcome::Added);
            }
        }
        for k in 0..open {
            p.push_part(&part(10 + segments, k, 334, false));
        }
        p
    }

    #[test]
    fn renders_parts_for_the_recent_segments_and_a_preload_hint() {
        let p = playlist(6, 4, 2);
        let text = p.render();
        let head = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.002\n\
             #EXT-X-PART-INF:PART-TARGET=0.334\n#EXT-X-MEDIA-SEQUENCE:10\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-MAP:URI=\"init-10.mp4\"\n\
             #EXTINF:2.004,\n10.mp4\n";
        assert!(text.starts_with(head), "{text}");
        // Parts are listed for the segments starting at most 6 s (three target durations) from the
        // end: the open segment (0.668 s), 13 (2.672 s) and 12 (4.676 s); 11 starts 6.68 s from the end
        // and has no part lines any more, nor has 10.
        assert!(!text.contains("\"10.0.m4s\""), "{text}");
        assert!(!text.contains("\"11.0.m4s\""), "{text}");
        assert!(text.contains("#EXT-X-PART:DURATION=0.334,URI=\"12.0.m4s\",INDEPENDENT=YES\n"));
        assert!(
            text.contains("#EXT-X-PART:DURATION=0.334,URI=\"13.5.m4s\"\n#EXTINF:2.004,\n13.mp4\n")
        );
        assert!(text.ends_with(
            "#EXT-X-PART:DURATION=0.334,URI=\"14.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PART:DURATION=0.334,URI=\"14.1.m4s\"\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"14.2.m4s\"\n"
        ));
    }

    /// Seconds from each listed part's start to the end of the playlist, per segment listing parts.
    fn listed_parts_from_end(text: &str) -> Vec<Vec<u64>> {
        let mut segments: Vec<Vec<u64>> = vec![Vec::new()];
        let mut durations = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("#EXT-X-PART:DURATION=") {
                let d: f64 = rest
                    .split(',')
                    .next()
                    .and_then(|d| d.parse().ok())
                    .expect("duration");
                segments
                    .last_mut()
                    .expect("one")
                    .push(durations.len() as u64);
                durations.push(seconds_to_ms(d));
            } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
                let d: f64 = rest.trim_end_matches(',').parse().expect("duration");
                if segments.last().expect("one").is_empty() {
                    durations.push(seconds_to_ms(d));
                }
                segments.push(Vec::new());
            }
        }
        let total: u64 = durations.iter().sum();
        let mut start = 0;
        let starts: Vec<u64> = durations
            .iter()
            .map(|d| {
                let s = start;
                start += d;
                total - s
            })
            .collect();
        segments
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.into_iter().map(|i| starts[i as usize]).collect())
            .collect()
    }

    #[test]
    fn parts_stay_within_three_target_durations_of_the_end_and_cover_part_hold_back() {
        for segments in 1..8 {
            for open in 0..6 {
                let text = playlist(6, segments, open).render();
                let listed = listed_parts_from_end(&text);
                // A preload hint to part 0 opens one more segment with a part (as hls-parser reads it).
                let hint_segment = usize::from(
                    text.lines()
                        .any(|l| l.starts_with("#EXT-X-PRELOAD-HINT") && l.ends_with(".0.m4s\"")),
                );
                assert!(listed.len() + hint_segment <= 3, "{text}");
                for from_end in listed.iter().flatten() {
                    assert!(*from_end <= 6_000, "{from_end} ms from the end:\n{text}");
                }
                // A player joining PART-HOLD-BACK (1.002 s) from the end finds that point in parts.
                let oldest = listed.iter().flatten().max().copied().unwrap_or(0);
                assert!(
                    oldest >= 1_002.min(segments * 2_004 + u64::from(open) * 334),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn blocking_conditions_follow_msn_and_part() {
        let p = playlist(6, 2, 2);
        assert!(p.has(11, None) && p.has(11, Some(99)));
        assert!(p.has(12, Some(1)));
        assert!(!p.has(12, Some(2)));
        assert!(!p.has(12, None));
        assert!(!p.has(13, Some(0)));
        assert!(p.is_upcoming(12, 2) && p.is_upcoming(13, 0));
        assert!(!p.is_upcoming(12, 5) && !p.is_upcoming(14, 0));
        assert_eq!(p.complete_parts(11), Some(6));
        assert_eq!(p.complete_parts(12), None);
    }

    #[test]
    fn the_window_slides_and_a_lost_part_drops_its_segment() {
        let mut p = playlist(3, 5, 0);
        let text = p.render();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:12\n"), "{text}");
        assert_eq!(text.matches("#EXTINF").count(), 3);
        // Part 1 of segment 15 never arrives.
        p.push_part(&part(15, 0, 334, false));
        assert_eq!(p.push_part(&part(15, 2, 334, false)), PartOutcome::Ignored);
        assert_eq!(p.last_seq(), Some(14));
        // The rest of 15 is ignored; 16 continues nothing, so the window restarts there.
        assert_eq!(p.push_part(&part(15, 3, 334, false)), PartOutcome::Ignored);
        assert_eq!(p.push_part(&part(16, 0, 334, false)), PartOutcome::Added);
        assert!(p.render().contains("#EXT-X-MEDIA-SEQUENCE:16\n"));
    }

    #[test]
    fn parts_need_their_init_and_the_end_closes_the_playlist() {
        let mut p = LlPlaylist::new(6);
        assert_eq!(p.push_part(&part(10, 0, 334, false)), PartOutcome::Ignored);
        assert!(p.push_init(10));
        assert!(!p.push_init(10));
        assert_eq!(p.push_part(&part(10, 0, 334, false)), PartOutcome::Added);
        assert!(p.end(&StreamEnd {
            stream: "cam".into(),
            broadcast: "b".into(),
            ended_at_ms: 0,
            last_seq: Some(10),
        }));
        let text = p.render();
        assert!(
            text.ends_with("#EXTINF:0.334,\n10.mp4\n#EXT-X-ENDLIST\n"),
            "{text}"
        );
        assert!(
            !text.contains("PRELOAD-HINT") && !text.contains("#EXT-X-PART:"),
            "{text}"
        );
        assert!(
            p.has(99, Some(0)),
            "an ended playlist answers every blocking request"
        );
    }
}
