//! RTMP timestamps -> monotonic 64-bit media time.
//!
//! RTMP message timestamps are 32-bit milliseconds that wrap after ~49.7 days, may start anywhere
//! (some publishers start near 2^32 and wrap within seconds), jitter between the audio and video
//! tracks, and occasionally jump when an encoder restarts. MPEG-TS players on the other hand want
//! per-track monotonic DTS on one continuous timeline. One unwrapper is shared by both tracks so that
//! a rebase after a glitch moves both tracks together and A/V sync survives.

/// Every output timestamp is offset by this much so the first frames sit well above zero.
///
/// Why 10 s: after the first frame, the other track may legitimately be behind it (interleaving
/// jitter, audio sent slightly late), and anything up to [`MAX_JUMP_MS`] backwards is accepted as
/// jitter rather than a glitch, so that much room below the first timestamp is needed to never clamp
/// at zero. It also keeps `PCR = DTS - PCR delay` positive from the first packet (see `ts.rs`).
pub const TIMESTAMP_OFFSET_MS: u64 = 10_000;

/// A step larger than this (either direction, versus the previous message of either track) is a
/// publisher glitch (encoder restart, timestamp reset), not media time passing.
pub const MAX_JUMP_MS: i64 = 10_000;

/// Gap assumed after a glitch when the track has no history yet: about one frame at 50 fps or one
/// AAC frame at 48 kHz, small enough to be invisible.
const DEFAULT_GAP_MS: u64 = 20;

/// Gaps above this are pauses or glitches, not a frame interval worth remembering.
const MAX_TYPICAL_GAP_MS: u64 = 1_000;

/// Which elementary stream a timestamp belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// H.264: DTS must strictly increase.
    Video,
    /// AAC: DTS must not decrease.
    Audio,
}

#[derive(Debug, Default, Clone, Copy)]
struct TrackState {
    last: Option<u64>,
    gap: Option<u64>,
}

/// Shared (per stream) unwrapper, see the module doc.
#[derive(Debug, Default, Clone)]
pub struct TimestampUnwrapper {
    /// Previous raw timestamp of either track.
    last_raw: Option<u32>,
    /// Unwrapped position of `last_raw` in ms relative to the first message, before per-track clamping.
    position: i64,
    video: TrackState,
    audio: TrackState,
}

impl TimestampUnwrapper {
    /// A fresh unwrapper; the first timestamp it sees maps to [`TIMESTAMP_OFFSET_MS`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps one raw RTMP timestamp of `track` to output milliseconds (offset included). The result is
    /// strictly increasing per call for video and non-decreasing for audio.
    pub fn unwrap(&mut self, track: Track, raw: u32) -> u64 {
        if let Some(last_raw) = self.last_raw {
            // The signed 32-bit difference is right across the 2^32 wrap, in both directions.
            let delta = i64::from(raw.wrapping_sub(last_raw) as i32);
            if delta.abs() > MAX_JUMP_MS {
                // Land the frame just after the latest output of either track, so neither track
                // sees time run backwards and the two stay aligned on the new timeline.
                let latest = self
                    .video
                    .last
                    .max(self.audio.last)
                    .map_or(self.position, |l| {
                        i64::try_from(l)
                            .unwrap_or(i64::MAX)
                            .saturating_sub(TIMESTAMP_OFFSET_MS as i64)
                    })
                    .max(self.position);
                let gap = self.state(track).gap.unwrap_or(DEFAULT_GAP_MS);
                self.position = latest.saturating_add(gap as i64);
            } else {
                self.position = self.position.saturating_add(delta);
            }
        }
        self.last_raw = Some(raw);

        // Clamp at zero: a long sequence of in-tolerance backward steps must not underflow.
        let candidate =
            u64::try_from(self.position.saturating_add(TIMESTAMP_OFFSET_MS as i64)).unwrap_or(0);
        let state = self.state_mut(track);
        let out = match (track, state.last) {
            // Two video access units with the same DTS break decoders' ordering, so a late/duplicate
            // timestamp is pushed 1 ms (RTMP's resolution) after the previous one. The shift is not
            // carried into `position`, so the next good timestamp re-syncs.
            (Track::Video, Some(last)) => candidate.max(last.saturating_add(1)),
            (Track::Audio, Some(last)) => candidate.max(last),
            (_, None) => candidate,
        };
        if let Some(last) = state.last {
            let gap = out - last;
            if gap > 0 && gap <= MAX_TYPICAL_GAP_MS {
                state.gap = Some(gap);
            }
        }
        state.last = Some(out);
        out
    }

    /// Most recent interval between two consecutive frames of `track`, if one was seen.
    pub fn last_gap(&self, track: Track) -> Option<u64> {
        self.state(track).gap
    }

    fn state(&self, track: Track) -> &TrackState {
        match track {
            Track::Video => &self.video,
            Track::Audio => &self.audio,
        }
    }

    fn state_mut(&mut self, track: Track) -> &mut TrackState {
        match track {
            Track::Video => &mut self.video,
            Track::Audio => &mut self.audio,
        }
    }
}

/// Converts milliseconds to the 90 kHz MPEG system clock (ISO/IEC 13818-1 2.4.3.7).
pub fn ms_to_90khz(ms: u64) -> u64 {
    ms.saturating_mul(90)
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: u64 = TIMESTAMP_OFFSET_MS;

    #[test]
    fn starts_at_offset_and_follows_deltas() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(Track::Video, 5_000), O);
        assert_eq!(u.unwrap(Track::Audio, 4_990), O - 10);
        assert_eq!(u.unwrap(Track::Video, 5_033), O + 33);
        assert_eq!(u.unwrap(Track::Audio, 5_013), O + 13);
        assert_eq!(u.last_gap(Track::Video), Some(33));
        assert_eq!(u.last_gap(Track::Audio), Some(23));
    }

    #[test]
    fn continuous_across_32_bit_wrap() {
        let mut u = TimestampUnwrapper::new();
        let start = u32::MAX - 100;
        let mut raw = start;
        let mut expected = O;
        for _ in 0..10 {
            assert_eq!(u.unwrap(Track::Video, raw), expected);
            raw = raw.wrapping_add(33);
            expected += 33;
        }
        assert!(raw < start, "the test must cross the wrap");
    }

    #[test]
    fn glitch_rebases_both_tracks() {
        let mut u = TimestampUnwrapper::new();
        u.unwrap(Track::Video, 100_000);
        u.unwrap(Track::Audio, 100_010);
        u.unwrap(Track::Video, 100_033);
        let a = u.unwrap(Track::Audio, 100_031);
        // Encoder restart: timestamps go back to 0.
        let v = u.unwrap(Track::Video, 0);
        assert_eq!(v, O + 33 + 33, "latest output + video gap");
        assert_eq!(u.unwrap(Track::Audio, 10), v + 10);
        assert!(u.unwrap(Track::Audio, 31) > a);
        // Forward jump of an hour.
        let before = u.unwrap(Track::Video, 33);
        assert_eq!(u.unwrap(Track::Video, 3_600_033), before + 33);
    }

    #[test]
    fn per_track_monotonic() {
        let mut u = TimestampUnwrapper::new();
        assert_eq!(u.unwrap(Track::Video, 100), O);
        assert_eq!(u.unwrap(Track::Video, 100), O + 1);
        assert_eq!(u.unwrap(Track::Video, 90), O + 2);
        assert_eq!(u.unwrap(Track::Video, 133), O + 33);
        assert_eq!(u.unwrap(Track::Audio, 120), O + 20);
        assert_eq!(u.unwrap(Track::Audio, 110), O + 20);
    }
}
