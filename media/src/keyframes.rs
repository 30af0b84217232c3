//! How far apart a publisher's keyframes are, and whether that defeats the segment target.
//!
//! Segments are cut on keyframes (RFC 8216 6.2.1 needs each to start with one for players to join), so a
//! segment can be no shorter than the publisher's keyframe interval: OBS's default ("0", auto) of 250
//! frames gives 8.3 s segments and `#EXT-X-TARGETDURATION:8` when the operator asked for 2 s, and every
//! viewer's latency grows with it. Nothing on our side can fix that; the streamer's encoder setting
//! can, so the meter measures the interval and says which setting to change. Pure: video frame
//! timestamps in, figures out.

/// Keyframe intervals remembered: the figures describe the recent past, so a streamer who fixed the
/// setting sees the warning clear within a few keyframes.
const RECENT: usize = 4;

/// Slack before an interval counts as longer than the target: millisecond timestamps put a 2 s GOP at
/// 2000 or 2001 ms, and a target that is not a whole number of frames is met to within a frame.
const SLACK_MS: u64 = 100;

/// Measures the interval between one broadcast's keyframes.
#[derive(Debug, Clone)]
pub struct KeyframeMeter {
    target_ms: u64,
    last_keyframe_ms: Option<u64>,
    /// The most recent intervals, oldest first, at most [`RECENT`].
    recent: Vec<u64>,
    /// The first interval measured over the target (for the one log line per broadcast).
    first_over: Option<u64>,
}

/// What the meter says about the recent keyframes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeReport {
    /// The most recent interval between keyframes, ms.
    pub last_ms: u64,
    /// The longest of the recent intervals, ms.
    pub max_ms: u64,
    /// The segment target, ms.
    pub target_ms: u64,
}

impl KeyframeReport {
    /// Whether the recent keyframes are further apart than segments are meant to be long.
    pub fn over_target(&self) -> bool {
        self.max_ms
            > self
                .target_ms
                .saturating_add(SLACK_MS.max(self.target_ms / 20))
    }

    /// The advice for the streamer, when there is any: "keyframe interval 8.3 s; set your encoder's
    /// keyframe interval to 2 s".
    pub fn advice(&self) -> Option<String> {
        self.over_target().then(|| {
            format!(
                "keyframe interval {} s; set your encoder's keyframe interval to {} s",
                seconds(self.max_ms),
                seconds(self.target_ms)
            )
        })
    }
}

/// Milliseconds as seconds with at most one decimal, without a trailing `.0` ("8.3", "2").
fn seconds(ms: u64) -> String {
    let tenths = ms / 100 + u64::from(ms % 100 >= 50);
    if tenths % 10 == 0 {
        format!("{}", tenths / 10)
    } else {
        format!("{}.{}", tenths / 10, tenths % 10)
    }
}

impl KeyframeMeter {
    /// A meter for a broadcast whose segments target `target_ms`.
    pub fn new(target_ms: u64) -> Self {
        Self {
            target_ms: target_ms.max(1),
            last_keyframe_ms: None,
            recent: Vec::with_capacity(RECENT),
            first_over: None,
        }
    }

    /// Notes a video frame (not a sequence header) at RTMP timestamp `timestamp_ms`. Returns the report
    /// when this keyframe is the first to show the interval over the target, so the caller says so
    /// once per broadcast.
    pub fn frame(&mut self, timestamp_ms: u64, keyframe: bool) -> Option<KeyframeReport> {
        if !keyframe {
            return None;
        }
        let previous = self.last_keyframe_ms.replace(timestamp_ms)?;
        // A timestamp going backwards (publisher restarted its clock) measures nothing; the next
        // keyframe measures from this one.
        let interval = timestamp_ms.checked_sub(previous)?;
        if self.recent.len() == RECENT {
            self.recent.remove(0);
        }
        self.recent.push(interval);
        let report = self.report()?;
        if report.over_target() && self.first_over.is_none() {
            self.first_over = Some(interval);
            return Some(report);
        }
        None
    }

    /// The figures so far; `None` before two keyframes were seen.
    pub fn report(&self) -> Option<KeyframeReport> {
        Some(KeyframeReport {
            last_ms: *self.recent.last()?,
            max_ms: self.recent.iter().copied().max()?,
            target_ms: self.target_ms,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Feeds `frames` video frames at `fps` with a keyframe every `gop` frames, as an encoder would.
    fn feed(
        m: &mut KeyframeMeter,
        start: u64,
        frames: u64,
        fps: u64,
        gop: u64,
    ) -> Vec<KeyframeReport> {
        (0..frames)
            .filter_map(|i| m.frame(start + i * 1000 / fps, i % gop == 0))
            .collect()
    }

    #[test]
    fn obs_default_gop_is_reported_once_with_the_setting_to_change() {
        // OBS's automatic keyframe interval: 250 frames at 30 fps.
        let mut m = KeyframeMeter::new(2000);
        let said = feed(&mut m, 0, 30 * 60, 30, 250);
        assert_eq!(said.len(), 1, "{said:?}");
        let r = m.report().unwrap();
        assert!(
            (8333..=8334).contains(&r.last_ms) && (8333..=8334).contains(&r.max_ms),
            "{r:?}"
        );
        assert!(r.over_target());
        assert_eq!(
            r.advice().unwrap(),
            "keyframe interval 8.3 s; set your encoder's keyframe interval to 2 s"
        );
    }

    #[test]
    fn a_gop_matching_the_target_is_fine_despite_millisecond_rounding() {
        for (fps, gop) in [(30, 60), (25, 50), (60, 120), (30, 30)] {
            let mut m = KeyframeMeter::new(2000);
            assert!(feed(&mut m, 12_345, 600, fps, gop).is_empty());
            let r = m.report().unwrap();
            assert!(!r.over_target(), "{fps} fps, {gop}: {r:?}");
            assert_eq!(r.advice(), None);
        }
        // 29.97 fps with a 60-frame GOP: 2002 ms.
        let mut m = KeyframeMeter::new(2000);
        for i in 0..600u64 {
            m.frame(i * 1001 / 30, i % 60 == 0);
        }
        assert!(!m.report().unwrap().over_target());
    }

    #[test]
    fn the_warning_clears_once_the_streamer_fixes_the_setting() {
        let mut m = KeyframeMeter::new(2000);
        assert_eq!(feed(&mut m, 0, 500, 30, 250).len(), 1);
        // Reconfigured to 2 s (in OBS that means a new broadcast, but encoders that change on the fly
        // exist): after a few keyframes the recent ones are all in line.
        feed(&mut m, 20_000, 600, 30, 60);
        let r = m.report().unwrap();
        assert_eq!(r.max_ms, 2000);
        assert!(!r.over_target());
    }

    #[test]
    fn odd_input_measures_nothing_and_never_panics() {
        let mut m = KeyframeMeter::new(0);
        assert_eq!(m.report(), None);
        assert_eq!(m.frame(u64::MAX, true), None);
        assert_eq!(
            m.frame(5, true),
            None,
            "timestamps going back measure nothing"
        );
        assert_eq!(m.report(), None);
        assert!(m.frame(5 + 10_000, true).is_some());
        assert_eq!(m.report().unwrap().last_ms, 10_000);
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_950), "2");
        assert!(!seconds(u64::MAX).is_empty());
    }
}
