//! The live media playlist of one stream (RFC 8216), as a pure state machine: segments and stream
//! events in, playlist text out.
//!
//! Every edge must serve byte-identical playlists for the same topic contents, whether it has been
//! running for hours or started a second ago. So the state is derived only from the messages (sequence
//! numbers, durations, discontinuity numbers and broadcast ids fixed at the origin), never from local
//! arrival times or counters.

use std::collections::VecDeque;

use common::hls::{self, MediaPlaylist, Millis};
use common::{SegmentMeta, StreamEnd};

/// Longest `#EXTINF` rendered, in milliseconds. A bogus duration from a broken origin is clamped rather
/// than allowed to print as an absurd number; one day is far beyond any real segment.
const MAX_EXTINF_MS: u64 = 86_400_000;

/// What [`Playlist::push`] did with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentOutcome {
    /// The segment directly follows the previous one (or is the stream's first) and was appended.
    Appended,
    /// The segment's sequence number skipped ahead (e.g. the origin restarted and numbers from a new
    /// base): the window restarted with it.
    WindowRestarted,
    /// The segment's sequence number is not above the last one; nothing changed.
    Duplicate,
}

/// The sliding window of one stream's most recent segments, and whether its broadcast ended.
#[derive(Debug, Clone)]
pub struct Playlist {
    window: usize,
    segments: VecDeque<SegmentMeta>,
    ended: bool,
}

impl Playlist {
    /// An empty playlist keeping the last `window` segments (at least one).
    pub fn new(window: usize) -> Self {
        let window = window.max(1);
        Self {
            window,
            segments: VecDeque::with_capacity(window),
            ended: false,
        }
    }

    /// Sequence number of the newest segment, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.segments.back().map(|s| s.seq)
    }

    /// Whether no segment has been added yet.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Whether the playlist currently ends with `#EXT-X-ENDLIST`.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The segments in the window, oldest first.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = &SegmentMeta> {
        self.segments.iter()
    }

    /// The newest segment, if any.
    pub fn newest(&self) -> Option<&SegmentMeta> {
        self.segments.back()
    }

    /// `#EXT-X-TARGETDURATION` as rendered: the largest of the segments' own target durations and
    /// rounded `#EXTINF` values, at least 1.
    pub fn target_duration(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| u64::from(s.target_duration).max(rounded_seconds(extinf_ms(s.duration))))
            .max()
            .unwrap_or(1)
            .max(1)
    }

    /// Adds a complete segment. Segments of a stream arrive in sequence order (one partition), so
    /// anything at or below the last number is a redelivery and is ignored.
    ///
    /// The discontinuity numbers are rendered as given: a new origin process that counts them from 0
    /// again is moved on before the segment gets here, once for both renditions
    /// (`crate::renumber`), so this playlist and the low-latency one always agree.
    pub fn push(&mut self, meta: SegmentMeta) -> SegmentOutcome {
        let outcome = match self.segments.back() {
            Some(last) if meta.seq <= last.seq => return SegmentOutcome::Duplicate,
            Some(last) if meta.seq != last.seq + 1 => {
                // Segments in between never reached us; listing them side by side would promise
                // players a continuous sequence that does not exist.
                self.segments.clear();
                SegmentOutcome::WindowRestarted
            }
            _ => SegmentOutcome::Appended,
        };
        if self.segments.len() == self.window {
            self.segments.pop_front();
        }
        self.segments.push_back(meta);
        // A newer segment means the stream is live again, whatever ended before.
        self.ended = false;
        outcome
    }

    /// Applies a broadcast's end ([`hls::ends_newest`]); returns whether the playlist changed.
    pub fn end(&mut self, end: &StreamEnd) -> bool {
        let Some(last) = self.segments.back() else {
            return false;
        };
        if hls::ends_newest(end, &last.broadcast, last.seq) && !self.ended {
            self.ended = true;
            return true;
        }
        false
    }

    /// The playlist as the HLS model (RFC 8216 section 4, version 3).
    pub fn to_hls(&self) -> MediaPlaylist {
        // The sequence numbers are the first segment's own (see `common::hls` for the discontinuity
        // rule); hls.js refuses a reload that renumbers a segment it already has.
        let (media_sequence, disc_seq) = self
            .segments
            .front()
            .map_or((0, 0), |first| (first.seq, first.disc_seq));
        MediaPlaylist {
            version: 3,
            target_duration: self.target_duration(),
            media_sequence,
            discontinuity_sequence: Some(disc_seq),
            segments: self
                .segments
                .iter()
                .map(|s| {
                    hls::Segment::new(
                        format!("{}.ts", s.seq),
                        Millis(extinf_ms(s.duration)),
                        s.discontinuity,
                    )
                })
                .collect(),
            ended: self.ended,
            ..MediaPlaylist::default()
        }
    }

    /// Renders the playlist text.
    pub fn render(&self) -> String {
        self.to_hls().render()
    }
}

/// The `#EXTINF` value in whole milliseconds, as rendered (three decimals). Target duration is computed
/// from this rendered value, so a player rounding what it reads never finds a segment above the target.
fn extinf_ms(duration: f64) -> u64 {
    let ms = (duration * 1000.0).round();
    if ms.is_nan() || ms < 1.0 {
        // RFC 8216 requires a positive duration; a zero or negative one is a broken origin.
        1
    } else if ms >= MAX_EXTINF_MS as f64 {
        MAX_EXTINF_MS
    } else {
        ms as u64
    }
}

/// Milliseconds rounded to the nearest second, halves up (as RFC 8216 4.3.3.1's "rounded to the nearest
/// integer" is read by players).
fn rounded_seconds(ms: u64) -> u64 {
    (ms + 500) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(seq: u64, broadcast: &str) -> SegmentMeta {
        SegmentMeta::sample("cam", broadcast, seq)
    }

    fn end(broadcast: &str, last_seq: Option<u64>) -> StreamEnd {
        StreamEnd {
            stream: "cam".into(),
            broadcast: broadcast.into(),
            ended_at_ms: 0,
            last_seq,
        }
    }

    fn seqs(p: &Playlist) -> Vec<u64> {
        p.segments().map(|s| s.seq).collect()
    }

    #[test]
    fn renders_the_documented_shape() {
        let mut p = Playlist::new(6);
        let mut first = seg(17_000_000_003, "b");
        first.discontinuity = true;
        first.disc_seq = 1;
        p.push(first);
        let mut second = seg(17_000_000_004, "b");
        second.duration = 1.9994;
        second.disc_seq = 1;
        p.push(second);
        assert_eq!(
            p.render(),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:17000000003\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXTINF:2.000,\n17000000003.ts\n#EXTINF:1.999,\n\
             17000000004.ts\n"
        );
    }

    #[test]
    fn keeps_the_last_window_segments() {
        let mut p = Playlist::new(3);
        for seq in 10..20 {
            assert_eq!(p.push(seg(seq, "b")), SegmentOutcome::Appended);
        }
        assert_eq!(seqs(&p), [17, 18, 19]);
        assert!(p.render().contains("#EXT-X-MEDIA-SEQUENCE:17\n"));
    }

    #[test]
    fn duplicates_and_older_segments_are_ignored() {
        let mut p = Playlist::new(6);
        p.push(seg(5, "b"));
        p.push(seg(6, "b"));
        let before = p.render();
        assert_eq!(p.push(seg(6, "b")), SegmentOutcome::Duplicate);
        assert_eq!(p.push(seg(2, "b")), SegmentOutcome::Duplicate);
        assert_eq!(p.render(), before);
    }

    #[test]
    fn discontinuity_numbers_are_rendered_as_given() {
        // Moving a new origin process's numbers on is `renumber`'s job, for both renditions at once;
        // the playlist renders what it is given, across a gap too.
        let mut p = Playlist::new(6);
        let mut a = seg(1, "old");
        a.disc_seq = 3;
        p.push(a);
        let mut b = seg(9, "new");
        b.disc_seq = 1;
        b.discontinuity = true;
        assert_eq!(p.push(b), SegmentOutcome::WindowRestarted);
        assert!(p.render().contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
    }

    #[test]
    fn a_gap_restarts_the_window() {
        let mut p = Playlist::new(6);
        for seq in 1..=4 {
            p.push(seg(seq, "old"));
        }
        let mut restarted = seg(1_000, "new");
        restarted.discontinuity = true;
        restarted.disc_seq = 7;
        assert_eq!(p.push(restarted), SegmentOutcome::WindowRestarted);
        let mut next = seg(1_001, "new");
        next.disc_seq = 7;
        assert_eq!(p.push(next), SegmentOutcome::Appended);
        assert_eq!(seqs(&p), [1_000, 1_001]);
        let text = p.render();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1000\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:7\n"), "{text}");
        // The first segment's own discontinuity is folded into the sequence number, not rendered.
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
    }

    #[test]
    fn discontinuity_inside_the_window_is_tagged_and_counted_once_it_is_first() {
        let mut p = Playlist::new(2);
        p.push(seg(1, "a"));
        let mut republished = seg(2, "b");
        republished.discontinuity = true;
        republished.disc_seq = 1;
        p.push(republished.clone());
        let text = p.render();
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{text}");
        assert!(
            text.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n2.ts\n"),
            "{text}"
        );
        let mut next = seg(3, "b");
        next.disc_seq = 1;
        p.push(next);
        // Segment 2 is first now: its tag is no longer rendered and the sequence number counts it, so
        // segments 2 and 3 keep the discontinuity number 1 they had before.
        let text = p.render();
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"), "{text}");
        let mut after = seg(4, "b");
        after.disc_seq = 1;
        p.push(after);
        assert!(p.render().contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
    }

    #[test]
    fn endlist_follows_the_broadcast_of_the_newest_segment() {
        let mut p = Playlist::new(6);
        p.push(seg(1, "a"));
        p.push(seg(2, "a"));
        assert!(!p.end(&end("other", Some(1))), "older broadcast's end");
        assert!(!p.end(&end("other", None)), "end without segments");
        assert!(!p.render().contains("#EXT-X-ENDLIST"));
        assert!(p.end(&end("a", Some(2))));
        assert!(!p.end(&end("a", Some(2))), "idempotent");
        assert!(p.render().ends_with("2.ts\n#EXT-X-ENDLIST\n"));

        // A new broadcast's segment takes the end away again.
        let mut next = seg(3, "b");
        next.discontinuity = true;
        p.push(next);
        assert!(!p.ended());
        assert!(!p.render().contains("#EXT-X-ENDLIST"));

        // The end of a broadcast whose segments we never saw, but that ended at or after ours.
        assert!(p.end(&end("c", Some(3))));
        assert!(p.ended());
    }

    #[test]
    fn end_before_any_segment_does_nothing() {
        let mut p = Playlist::new(6);
        assert!(!p.end(&end("a", Some(1))));
        assert!(!p.ended());
    }

    #[test]
    fn target_duration_covers_every_rounded_extinf() {
        let mut p = Playlist::new(6);
        let mut a = seg(1, "b");
        a.target_duration = 2;
        a.duration = 2.4996; // renders 2.500, which players round to 3
        p.push(a);
        let text = p.render();
        assert!(text.contains("#EXTINF:2.500,"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:3\n"), "{text}");

        let mut b = seg(2, "b");
        b.target_duration = 6;
        b.duration = 1.0;
        p.push(b);
        assert!(p.render().contains("#EXT-X-TARGETDURATION:6\n"));
    }

    #[test]
    fn broken_durations_still_render_a_valid_playlist() {
        let mut p = Playlist::new(6);
        let mut zero = seg(1, "b");
        zero.duration = 0.0;
        zero.target_duration = 0;
        p.push(zero);
        let mut huge = seg(2, "b");
        huge.duration = 1e300;
        p.push(huge);
        let text = p.render();
        assert!(text.contains("#EXTINF:0.001,"), "{text}");
        assert!(text.contains("#EXTINF:86400.000,"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:86400\n"), "{text}");
    }

    #[test]
    fn a_cold_edge_renders_the_same_bytes_as_a_warm_one() {
        let mut messages = Vec::new();
        for seq in 100..112 {
            let mut s = seg(seq, if seq < 106 { "a" } else { "b" });
            s.disc_seq = if seq < 106 { 4 } else { 5 };
            s.discontinuity = seq == 106;
            s.duration = 2.0 + (seq % 3) as f64 / 10.0;
            messages.push(s);
        }
        let mut warm = Playlist::new(6);
        for s in &messages {
            warm.push(s.clone());
        }
        // The cold edge read only the last window's worth of the topic.
        let mut cold = Playlist::new(6);
        for s in &messages[6..] {
            cold.push(s.clone());
        }
        assert_eq!(warm.render(), cold.render());
        warm.end(&end("b", Some(111)));
        cold.end(&end("b", Some(111)));
        assert_eq!(warm.render(), cold.render());
    }

    /// A minimal reader of what `render` produces, checking the rules a player relies on.
    struct Parsed {
        target: u64,
        media_seq: u64,
        entries: Vec<(f64, u64)>,
        ended: bool,
    }

    fn parse(text: &str) -> Result<Parsed, String> {
        let mut lines = text.lines();
        if lines.next() != Some("#EXTM3U") {
            return Err("no #EXTM3U".into());
        }
        let (mut target, mut media_seq, mut ended) = (None, None, false);
        let mut entries = Vec::new();
        let mut pending = None;
        for line in lines {
            if ended {
                return Err(format!("{line} after ENDLIST"));
            }
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                target = Some(v.parse::<u64>().map_err(|e| e.to_string())?);
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                media_seq = Some(v.parse::<u64>().map_err(|e| e.to_string())?);
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                let d = v.strip_suffix(',').ok_or("EXTINF without comma")?;
                let d: f64 = d
                    .parse()
                    .map_err(|e: std::num::ParseFloatError| e.to_string())?;
                if d <= 0.0 {
                    return Err(format!("EXTINF {d}"));
                }
                pending = Some(d);
            } else if line == "#EXT-X-ENDLIST" {
                ended = true;
            } else if line.starts_with('#') {
            } else {
                let seq = line
                    .strip_suffix(".ts")
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or("bad URI")?;
                entries.push((pending.take().ok_or("URI without EXTINF")?, seq));
            }
        }
        Ok(Parsed {
            target: target.ok_or("no TARGETDURATION")?,
            media_seq: media_seq.ok_or("no MEDIA-SEQUENCE")?,
            entries,
            ended,
        })
    }

    #[derive(Debug, Clone)]
    enum Input {
        Segment {
            seq_step: u64,
            broadcast: u8,
            disc_seq: u64,
            discontinuity: bool,
            duration: f64,
            target: u32,
        },
        End {
            broadcast: u8,
            last_seq_delta: Option<i64>,
        },
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            4 => (0u64..4, 0u8..3, 0u64..5, any::<bool>(), -1.0f64..15.0, 0u32..8).prop_map(
                |(seq_step, broadcast, disc_seq, discontinuity, duration, target)| Input::Segment {
                    seq_step,
                    broadcast,
                    disc_seq,
                    discontinuity,
                    duration,
                    target,
                }
            ),
            1 => (0u8..3, proptest::option::of(-3i64..3)).prop_map(|(broadcast, last_seq_delta)| {
                Input::End { broadcast, last_seq_delta }
            }),
        ]
    }

    /// Discontinuity number of every segment URI of a rendered playlist, as a player counts them: the
    /// sequence plus the DISCONTINUITY tags before the segment.
    fn discontinuity_numbers(text: &str) -> Vec<(String, u64)> {
        let mut number = 0;
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
                number = v.parse().expect("number");
            } else if line == "#EXT-X-DISCONTINUITY" {
                number += 1;
            } else if !line.starts_with('#') && !line.is_empty() {
                out.push((line.to_owned(), number));
            }
        }
        out
    }

    proptest! {
        /// What hls.js checks on every reload: a segment keeps its discontinuity number while it stays
        /// in the window, and that number is the origin's `disc_seq`.
        #[test]
        fn segments_keep_their_discontinuity_number_as_the_window_slides(
            window in 1usize..8,
            first_disc in 0u64..2_000_000_000,
            breaks in proptest::collection::vec(any::<bool>(), 1..40),
        ) {
            let mut p = Playlist::new(window);
            let mut disc = first_disc;
            let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
            for (i, &discontinuity) in breaks.iter().enumerate() {
                // The first segment of a stream always starts a discontinuity, as the origin sends it.
                let discontinuity = discontinuity || i == 0;
                if discontinuity && i > 0 {
                    disc += 1;
                }
                let mut s = seg(100 + i as u64, "b");
                s.discontinuity = discontinuity;
                s.disc_seq = disc;
                p.push(s);
                let text = p.render();
                let numbers = discontinuity_numbers(&text);
                for (uri, number) in numbers {
                    let seq: u64 = uri.trim_end_matches(".ts").parse().expect("seq");
                    let expected = p.segments().find(|m| m.seq == seq).map(|m| m.disc_seq);
                    prop_assert_eq!(Some(number), expected, "{}", text);
                    if let Some(before) = seen.insert(uri.clone(), number) {
                        prop_assert_eq!(before, number, "{} renumbered:\n{}", uri, text);
                    }
                }
            }
        }

        #[test]
        fn any_input_sequence_renders_a_valid_playlist(
            window in 1usize..8,
            inputs in proptest::collection::vec(input(), 1..60),
        ) {
            let mut p = Playlist::new(window);
            let mut seq = 1_000u64;
            let mut last_media_seq = 0;
            for input in inputs {
                match input {
                    Input::Segment { seq_step, broadcast, disc_seq, discontinuity, duration, target } => {
                        // A step of 0 redelivers, 1 continues, more leaves a gap; sometimes go back.
                        seq = if seq_step == 3 { seq.saturating_sub(2) } else { seq + seq_step };
                        let mut s = seg(seq, &broadcast.to_string());
                        s.disc_seq = disc_seq;
                        s.discontinuity = discontinuity;
                        s.duration = duration;
                        s.target_duration = target;
                        p.push(s);
                    }
                    Input::End { broadcast, last_seq_delta } => {
                        let last_seq = last_seq_delta.map(|d| seq.saturating_add_signed(d));
                        p.end(&end(&broadcast.to_string(), last_seq));
                    }
                }
                if p.is_empty() {
                    continue;
                }
                let text = p.render();
                let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}:\n{text}")))?;
                prop_assert!(parsed.entries.len() <= window);
                prop_assert!(!parsed.entries.is_empty());
                for (i, (d, s)) in parsed.entries.iter().enumerate() {
                    // RFC 8216 4.3.3.1: each EXTINF rounded to the nearest integer <= target duration.
                    prop_assert!(d.round() as u64 <= parsed.target, "{}", text);
                    prop_assert_eq!(*s, parsed.media_seq + i as u64, "{}", text);
                }
                prop_assert!(parsed.media_seq >= last_media_seq, "media sequence went back:\n{}", text);
                last_media_seq = parsed.media_seq;
                prop_assert_eq!(parsed.ended, p.ended());
                prop_assert_eq!(text, p.clone().render(), "rendering is a pure function");
            }
        }
    }
}
