//! Which stream names are live, and how each broadcast numbers its segments.
//!
//! Media sequence numbers must never go backwards for a stream name, not across a republish and not across
//! a restart of this process (players and every edge key segments by them). Within one process a
//! republish continues from the last number, so an edge's window stays contiguous across the
//! discontinuity. A name this process has not seen yet starts from a wall-clock base in tenths of a second:
//! segments are cut on keyframes at least `--segment-seconds` (>= 0.1 s) apart, so a previous process
//! cannot have got ahead of the clock.
//!
//! Discontinuity sequence numbers need no such base: within an edge's window they only have to step by
//! one per `#EXT-X-DISCONTINUITY`, and a new process's jump in media sequence numbers restarts every
//! edge's window anyway. So they start at 0 for a name new to this process. (A wall-clock base, about
//! 1.8e9, made hls.js 1.7 spend ~20 s before the first frame.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::live::LiveStream;

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
            next_seq: now / 100,
            next_disc: 0,
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
        // A previous process that started 10 s ago with 2 s segments got 5 segments ahead of its base.
        let earlier_base = unix_ms() / 100 - 100;
        let r = Registry::default();
        let mut c = r.claim("s", "live", String::new()).expect("claim");
        assert!(c.next(false).seq > earlier_base + 5);
    }
}
