//! Which stream names are live, and how each broadcast numbers its segments.
//!
//! # Numbering rule
//!
//! Players parse media sequence numbers, discontinuity sequence numbers and part numbers as integers, and
//! some hold them in a signed 32-bit int (GStreamer 1.22's hlsdemux2 read 17961578627 as 0 and stalled),
//! so every number stays below 2^31. They must also never go backwards for a stream name, not across a
//! republish and not across a restart of this process (players and every edge key segments by them).
//!
//! - A name this process has not seen yet starts its media sequence at the wall clock in whole seconds
//!   since [`NUMBERING_EPOCH_UNIX_S`] (2025-01-01 UTC): about 6e7 in 2026, 2^31 in 2093.
//! - Within one process a republish continues from the last number, so an edge's window stays
//!   contiguous across the discontinuity.
//! - Discontinuity sequence numbers of a name new to this process start at the wall clock in whole
//!   hours since the same epoch (about 16800 in 2026). They must stay small, not just below 2^31: hls.js
//!   1.7 copies an array indexed by them on every playlist it loads (a base of about 1.8e9 froze it for
//!   ~20 s before the first frame; the seconds base, 6e7, would still copy 6e7 entries per load). A
//!   restart does not number them lower unless the name had more than one discontinuity (republish or
//!   codec change) per hour since this process first saw it; edges renumber a broadcast whose discontinuity numbers would go back
//!   (cdn-edge `renumber`), so players still never see them decrease.
//! - Part numbers count from 0 within a segment.
//!
//! Why a restart cannot go backwards: segments are cut on keyframes at least `--segment-seconds` of
//! media apart, so a process numbering from the clock stays behind the clock as long as its segments
//! average at least one second of wall-clock time each (the default is 2 s from a real-time encoder).
//!
//! Limits, and what happens past them:
//! - Segments shorter than a second (`--segment-seconds` below 1), or a publisher sending faster than
//!   real time, let a long-running name's numbers get ahead of the clock: 0.5 s segments get one day ahead
//!   per day of broadcasting. A restart then numbers the name lower than before. The same happens if
//!   the clock is stepped back by more than the numbers are behind it (a stream of 2 s segments is behind by
//!   half the time since its name was first published in this process).
//! - An edge that still lists the old numbers does not go backwards then either: it renumbers the new
//!   broadcast to continue its window (cdn-edge `renumber`), and only a fresh edge shows the lower numbers.
//! - 2^31 is reached in 2093 at one segment per second, sooner only by as much as sub-second segments
//!   get ahead of the clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::live::LiveStream;

/// Where numbering bases count from: 2025-01-01T00:00:00Z, in Unix seconds.
pub const NUMBERING_EPOCH_UNIX_S: u64 = 1_735_689_600;

/// The first media (and discontinuity) sequence number of a name new to this process started at Unix
/// time `unix_ms`: whole seconds since [`NUMBERING_EPOCH_UNIX_S`] (0 for a clock before it).
pub fn numbering_base(unix_ms: u64) -> u64 {
    (unix_ms / 1000).saturating_sub(NUMBERING_EPOCH_UNIX_S)
}

/// The first discontinuity sequence number (before the first `+1`) of a name new to this process
/// started at Unix time `unix_ms`: whole hours since [`NUMBERING_EPOCH_UNIX_S`].
pub fn discontinuity_base(unix_ms: u64) -> u64 {
    numbering_base(unix_ms) / 3600
}

/// Current wall-clock time in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct History {
    live: Option<Arc<LiveStream>>,
    next_seq: u64,
    next_disc: u64,
}

/// Shared registry of live stream names.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<String, History>>>,
}

/// A name is already being published.
#[derive(Debug, thiserror::Error)]
#[error("stream `{0}` is already being published")]
pub struct AlreadyLive(pub String);

/// The right to publish one name; released on drop, recording where numbering continues.
pub struct Claim {
    registry: Registry,
    stream: String,
    /// Identifier of this broadcast, unique across restarts.
    pub broadcast: String,
    /// The stream as players and the control API see it.
    pub live: Arc<LiveStream>,
    next_seq: u64,
    disc_seq: u64,
    first: bool,
}

/// Numbers assigned to one closed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbering {
    /// Media sequence number.
    pub seq: u64,
    /// Discontinuity sequence number (counts discontinuities up to and including this segment).
    pub disc_seq: u64,
    /// Whether `#EXT-X-DISCONTINUITY` precedes the segment.
    pub discontinuity: bool,
}

impl Registry {
    /// Claims `stream` for a new broadcast from `app`/`client_addr`, or refuses if it is live.
    pub fn claim(
        &self,
        stream: &str,
        app: &str,
        client_addr: String,
    ) -> Result<Claim, AlreadyLive> {
        let mut map = self.lock();
        let now = unix_ms();
        let entry = map.entry(stream.to_owned()).or_insert_with(|| History {
            live: None,
            next_seq: numbering_base(now),
            next_disc: discontinuity_base(now),
        });
        if entry.live.is_some() {
            return Err(AlreadyLive(stream.to_owned()));
        }
        let broadcast = format!("{now}-{:08x}", rand_u32());
        let live = Arc::new(LiveStream::new(
            stream,
            app,
            client_addr,
            broadcast.clone(),
            now,
        ));
        entry.live = Some(live.clone());
        Ok(Claim {
            registry: self.clone(),
            stream: stream.to_owned(),
            broadcast,
            live,
            next_seq: entry.next_seq,
            disc_seq: entry.next_disc,
            first: true,
        })
    }

    /// The live stream of that name, if any.
    pub fn get(&self, stream: &str) -> Option<Arc<LiveStream>> {
        self.lock().get(stream).and_then(|h| h.live.clone())
    }

    /// Every live stream, by name.
    pub fn live_streams(&self) -> Vec<Arc<LiveStream>> {
        let mut v: Vec<_> = self
            .lock()
            .values()
            .filter_map(|h| h.live.clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Names currently live.
    pub fn live_count(&self) -> usize {
        self.lock().values().filter(|h| h.live.is_some()).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, History>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Claim {
    /// The stream name claimed.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Sequence number the next segment will get.
    pub fn peek_seq(&self) -> u64 {
        self.next_seq
    }

    /// Sequence number of the last segment numbered, if any.
    pub fn last_seq(&self) -> Option<u64> {
        (!self.first).then(|| self.next_seq - 1)
    }

    /// The numbering [`Claim::next`] would give the next segment, without taking it: what the parts
    /// of the open segment carry before the segment itself is numbered.
    pub fn peek(&self, codec_changed: bool) -> Numbering {
        let discontinuity = self.first || codec_changed;
        Numbering {
            seq: self.next_seq,
            disc_seq: self.disc_seq + u64::from(discontinuity),
            discontinuity,
        }
    }

    /// Numbers the next segment. The first segment of every broadcast starts a new timeline, and so does a
    /// segment the remuxer flags (codec configuration changed).
    pub fn next(&mut self, codec_changed: bool) -> Numbering {
        let discontinuity = self.first || codec_changed;
        if discontinuity {
            self.disc_seq += 1;
        }
        self.first = false;
        let n = Numbering {
            seq: self.next_seq,
            disc_seq: self.disc_seq,
            discontinuity,
        };
        self.next_seq += 1;
        n
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.live.close();
        let mut map = self.registry.lock();
        if let Some(h) = map.get_mut(&self.stream) {
            h.live = None;
            h.next_seq = self.next_seq;
            h.next_disc = self.disc_seq;
        }
    }
}

/// A little randomness for broadcast ids without another dependency: the std hasher is randomly keyed.
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(unix_ms());
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_publisher_is_refused_until_the_first_leaves() {
        let r = Registry::default();
        let a = r.claim("s", "live", String::new()).expect("first claim");
        assert!(r.claim("s", "live", String::new()).is_err());
        assert!(r.claim("other", "live", String::new()).is_ok());
        drop(a);
        assert!(r.claim("s", "live", String::new()).is_ok());
    }

    #[test]
    fn republish_continues_numbering_with_a_discontinuity() {
        let r = Registry::default();
        let mut a = r.claim("s", "live", String::new()).expect("claim");
        let first = a.next(false);
        assert!(first.discontinuity);
        let second = a.next(false);
        assert_eq!(second.seq, first.seq + 1);
        assert_eq!(second.disc_seq, first.disc_seq);
        assert!(!second.discontinuity);
        let changed = a.next(true);
        assert_eq!(changed.disc_seq, first.disc_seq + 1);
        drop(a);
        let mut b = r.claim("s", "live", String::new()).expect("claim");
        let again = b.next(false);
        assert_eq!(again.seq, changed.seq + 1);
        assert_eq!(again.disc_seq, changed.disc_seq + 1);
        assert!(again.discontinuity);
    }

    #[test]
    fn a_fresh_process_starts_ahead_of_any_earlier_numbering() {
        // A previous process that started 10 s ago with 2 s segments got 5 segments ahead of its base;
        // one that started two hours ago had one broadcast an hour.
        let earlier_base = numbering_base(unix_ms() - 10_000);
        let earlier_disc = discontinuity_base(unix_ms() - 7_200_000) + 2;
        let r = Registry::default();
        let mut c = r.claim("s", "live", String::new()).expect("claim");
        let n = c.next(false);
        assert!(n.seq > earlier_base + 5, "{n:?}");
        assert!(n.disc_seq >= earlier_disc, "{n:?}");
        // Small enough for hls.js's per-playlist array copy, for decades.
        assert!(n.disc_seq < 1_000_000, "{n:?}");
    }

    #[test]
    fn numbers_fit_a_signed_32_bit_int_for_decades() {
        // 2026-12-01: about 6.2e7; 2090-01-01 (at one segment per second since the base): still below 2^31.
        assert_eq!(numbering_base(1_796_083_200_000), 60_393_600);
        assert_eq!(discontinuity_base(1_796_083_200_000), 16_776);
        let in_2090 = 3_786_825_600_000;
        assert!(numbering_base(in_2090) + 1 < i32::MAX as u64);
        let now = numbering_base(unix_ms());
        assert!(now > 30_000_000 && now < i32::MAX as u64 / 20, "{now}");
        // A clock before the epoch (unset RTC) starts at 0 rather than wrapping.
        assert_eq!(numbering_base(1_000), 0);
    }
}
