//! Concurrent viewers per stream: distinct client addresses that fetched a stream's playlist or
//! segments within a recent window.
//!
//! Memory is bounded by a fixed number of (stream, address) entries. Once full, expired entries are
//! pruned; if it is still full, new clients are not tracked (and counted as such) rather than evicting
//! someone who is really watching. Viewers behind one NAT or proxy share an address and count once.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How recently a client must have fetched to count as watching: several playlist reloads of a 2 s
/// segment stream, so a player that briefly stalls is not dropped.
pub const VIEWER_WINDOW: Duration = Duration::from_secs(30);
/// Most (stream, address) pairs remembered; about 100 bytes each, so a few megabytes at most.
pub const MAX_TRACKED_VIEWERS: usize = 100_000;

/// Who fetched what recently.
#[derive(Debug)]
pub struct Viewers {
    window: Duration,
    max_entries: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    streams: HashMap<String, HashMap<IpAddr, Instant>>,
    entries: usize,
    /// Clients not tracked because the table was full of live entries.
    untracked: u64,
}

impl Default for Viewers {
    fn default() -> Self {
        Self::new(VIEWER_WINDOW, MAX_TRACKED_VIEWERS)
    }
}

impl Viewers {
    /// A tracker counting clients seen within `window`, remembering at most `max_entries` pairs.
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Self {
            window,
            max_entries,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Notes that `client` fetched part of `stream` at `now`.
    pub fn seen(&self, stream: &str, client: IpAddr, now: Instant) {
        let mut inner = self.lock();
        if let Some(last) = inner
            .streams
            .get_mut(stream)
            .and_then(|clients| clients.get_mut(&client))
        {
            *last = now;
            return;
        }
        if inner.entries >= self.max_entries {
            self.prune(&mut inner, now);
            if inner.entries >= self.max_entries {
                inner.untracked += 1;
                return;
            }
        }
        inner
            .streams
            .entry(stream.to_owned())
            .or_default()
            .insert(client, now);
        inner.entries += 1;
    }

    /// Distinct clients per stream seen within the window before `now` (streams without any are left
    /// out), after forgetting everything older.
    pub fn counts(&self, now: Instant) -> BTreeMap<String, usize> {
        let mut inner = self.lock();
        self.prune(&mut inner, now);
        inner
            .streams
            .iter()
            .map(|(stream, clients)| (stream.clone(), clients.len()))
            .collect()
    }

    /// Clients that could not be tracked because the table was full.
    pub fn untracked(&self) -> u64 {
        self.lock().untracked
    }

    fn prune(&self, inner: &mut Inner, now: Instant) {
        let window = self.window;
        let mut entries = 0;
        inner.streams.retain(|_, clients| {
            clients.retain(|_, last| now.saturating_duration_since(*last) < window);
            entries += clients.len();
            !clients.is_empty()
        });
        inner.entries = entries;
    }

    // Every update leaves the maps consistent before it can panic, so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn distinct_addresses_within_the_window_are_counted_per_stream() {
        let v = Viewers::new(Duration::from_secs(30), 100);
        let t0 = Instant::now();
        v.seen("cam", ip(1), t0);
        v.seen("cam", ip(1), t0 + Duration::from_secs(2));
        v.seen("cam", ip(2), t0 + Duration::from_secs(3));
        v.seen("other", ip(1), t0 + Duration::from_secs(4));
        let counts = v.counts(t0 + Duration::from_secs(5));
        assert_eq!(counts.get("cam"), Some(&2));
        assert_eq!(counts.get("other"), Some(&1));

        // ip(1) keeps watching cam, ip(2) left 30 s ago; other's only viewer too.
        v.seen("cam", ip(1), t0 + Duration::from_secs(32));
        let counts = v.counts(t0 + Duration::from_secs(34));
        assert_eq!(counts.get("cam"), Some(&1));
        assert_eq!(counts.get("other"), None, "{counts:?}");
    }

    #[test]
    fn memory_is_bounded_and_expired_entries_make_room() {
        let v = Viewers::new(Duration::from_secs(30), 10);
        let t0 = Instant::now();
        for n in 0..25 {
            v.seen("cam", ip(n), t0);
        }
        assert_eq!(v.counts(t0).get("cam"), Some(&10));
        assert_eq!(v.untracked(), 15);
        assert_eq!(v.lock().entries, 10);
        // Once the old entries expire, new clients are tracked again.
        let later = t0 + Duration::from_secs(31);
        v.seen("cam", ip(100), later);
        assert_eq!(v.counts(later).get("cam"), Some(&1));
        assert_eq!(v.lock().entries, 1);
        assert_eq!(v.lock().streams.len(), 1);
    }
}
