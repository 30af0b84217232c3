//! What an edge serves: segment bytes in a byte-bounded LRU cache, and per-stream playlist state whose
//! rendered text is kept ready so a playlist request is a map lookup and a reference-count increment.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{CompleteSegment, InitMeta, PartMeta, StreamEnd};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::ll::{LlPlaylist, PartOutcome};
use crate::playlist::{Playlist, SegmentOutcome};
use crate::renumber::{Mapped, Renumbering};
use crate::stats::Stats;

/// Bytes charged per cache entry on top of the segment itself (key, map slot, moka's bookkeeping), so a
/// flood of tiny segments is bounded too.
const ENTRY_OVERHEAD: usize = 128;

/// What the byte cache holds for a stream: segments of both renditions share one budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Object {
    /// MPEG-TS segment `<seq>.ts`.
    Ts(u64),
    /// fMP4 init segment `init-<id>.mp4`.
    Init(u64),
    /// fMP4 part `<seq>.<part>.m4s`.
    Part(u64, u32),
}

/// The low-latency playlist of a stream, rendered, and the signal blocking requests wait on.
struct LlState {
    playlist: LlPlaylist,
    rendered: Bytes,
    last_activity: Instant,
    /// Bumped whenever the playlist changes; blocking requests wait for it (woken by the consumer,
    /// never by polling).
    changed: watch::Sender<u64>,
}

/// Sizes and lifetimes of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Most bytes of segments kept in memory (least recently used go first).
    pub cache_bytes: u64,
    /// How long a segment stays servable after it arrived, and how long a stream without any message
    /// keeps its playlist.
    pub segment_ttl: Duration,
    /// Segments listed in a live playlist.
    pub window_segments: usize,
}

/// What [`Store::insert_segment`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// First segment of a stream this edge did not know (or had forgotten).
    FirstOfStream,
    /// Appended to the stream's window.
    Appended,
    /// A gap in sequence numbers: the stream's window restarted with this segment.
    WindowRestarted,
    /// Already covered by the stream's window: ignored.
    Duplicate,
}

struct StreamState {
    playlist: Playlist,
    /// `playlist.render()`, refreshed on every change so requests never render.
    rendered: Bytes,
    /// Last time any message of the stream arrived; only used to forget idle streams, never rendered.
    last_activity: Instant,
    /// When the newest segment arrived; only used to notice an origin that died silently.
    last_segment_at: Instant,
}

/// A live stream whose origin has sent nothing for too long (see [`Store::silent_streams`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silent {
    /// Stream name.
    pub stream: String,
    /// Broadcast of its newest segment.
    pub broadcast: String,
    /// Sequence number of its newest segment.
    pub last_seq: u64,
    /// How long the silence counted.
    pub silent_for: Duration,
}

/// Segments and playlists of every stream this edge has seen recently.
pub struct Store {
    segments: Cache<(String, Object), Bytes>,
    streams: RwLock<HashMap<String, StreamState>>,
    ll: RwLock<HashMap<String, LlState>>,
    /// Offsets for origins that number a stream lower than this edge listed it (see [`Renumbering`]).
    renumber: Mutex<Renumbering>,
    window: usize,
    idle_after: Duration,
    capacity: u64,
    stats: Stats,
}

/// One stream as the stream list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// Stream name (already validated).
    pub name: String,
    /// Whether its playlist ends with `#EXT-X-ENDLIST` (the broadcast stopped).
    pub ended: bool,
    /// Segments in its playlist window.
    pub segments: usize,
}

impl Store {
    /// An empty store.
    pub fn new(config: &StoreConfig) -> Self {
        let segments = Cache::builder()
            .max_capacity(config.cache_bytes)
            .weigher(|key: &(String, Object), value: &Bytes| {
                u32::try_from(value.len() + key.0.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .time_to_live(config.segment_ttl)
            // moka's default (TinyLFU) refuses new keys once full when they have no access history, and
            // live video is nothing but new keys: plain LRU keeps the newest segments.
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self {
            segments,
            streams: RwLock::new(HashMap::new()),
            ll: RwLock::new(HashMap::new()),
            renumber: Mutex::new(Renumbering::default()),
            window: config.window_segments.max(1),
            idle_after: config.segment_ttl,
            capacity: config.cache_bytes,
            stats: Stats::default(),
        }
    }

    /// Counters of the ingest path.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Adds a verified segment: its bytes to the cache, its metadata to the stream's playlist.
    pub fn insert_segment(&self, segment: CompleteSegment) -> Inserted {
        let CompleteSegment { mut meta, data } = segment;
        let m = self.map_numbers(&meta.stream, &meta.broadcast, meta.seq, Some(meta.disc_seq));
        meta.seq = m.seq;
        meta.disc_seq = m.disc_seq.unwrap_or(meta.disc_seq);
        let known_last = self
            .read()
            .get(&meta.stream)
            .and_then(|s| s.playlist.last_seq());
        if known_last.is_some_and(|last| meta.seq <= last) {
            Stats::add(&self.stats.segments_duplicate, 1);
            return Inserted::Duplicate;
        }
        // Bytes first, playlist second: a player never sees a URI whose bytes are not there yet.
        self.segments
            .insert((meta.stream.clone(), Object::Ts(meta.seq)), data);

        let mut streams = self.write();
        let (state, first) = match streams.entry(meta.stream.clone()) {
            Entry::Occupied(e) => (e.into_mut(), false),
            Entry::Vacant(e) => (
                e.insert(StreamState {
                    playlist: Playlist::new(self.window),
                    rendered: Bytes::new(),
                    last_activity: Instant::now(),
                    last_segment_at: Instant::now(),
                }),
                true,
            ),
        };
        state.last_activity = Instant::now();
        state.last_segment_at = state.last_activity;
        let outcome = state.playlist.push(meta);
        if outcome == SegmentOutcome::Duplicate {
            // Only reachable if another writer raced us between the two locks; the consumer is the
            // only writer, so this is defensive.
            Stats::add(&self.stats.segments_duplicate, 1);
            return Inserted::Duplicate;
        }
        state.rendered = Bytes::from(state.playlist.render());
        Stats::add(&self.stats.segments_stored, 1);

        match outcome {
            _ if first => Inserted::FirstOfStream,
            SegmentOutcome::WindowRestarted => Inserted::WindowRestarted,
            _ => Inserted::Appended,
        }
    }

    /// Applies the end of a broadcast; returns whether the stream's playlist changed.
    pub fn end_stream(&self, end: &StreamEnd) -> bool {
        let mut end = end.clone();
        end.last_seq = end
            .last_seq
            .map(|seq| self.renumbering().peek(&end.stream, &end.broadcast, seq));
        let end = &end;
        let ll_changed = self.update_ll(&end.stream, |p| p.end(end));
        self.end_ts_stream(end) || ll_changed
    }

    fn end_ts_stream(&self, end: &StreamEnd) -> bool {
        let mut streams = self.write();
        let Some(state) = streams.get_mut(&end.stream) else {
            return false;
        };
        state.last_activity = Instant::now();
        if !state.playlist.end(end) {
            return false;
        }
        state.rendered = Bytes::from(state.playlist.render());
        true
    }

    /// Live streams whose newest segment arrived more than `factor` target durations before `now`.
    /// Silence is counted from `quiet_since` when that is later: time in which this edge could not
    /// have received anything (the broker was unreachable) is no sign of the origin's death.
    pub fn silent_streams(
        &self,
        now: Instant,
        factor: u32,
        quiet_since: Option<Instant>,
    ) -> Vec<Silent> {
        self.read()
            .iter()
            .filter(|(_, state)| !state.playlist.ended())
            .filter_map(|(name, state)| {
                let newest = state.playlist.newest()?;
                let from =
                    quiet_since.map_or(state.last_segment_at, |q| q.max(state.last_segment_at));
                let silent_for = now.saturating_duration_since(from);
                let limit = Duration::from_secs(state.playlist.target_duration()) * factor.max(1);
                (silent_for >= limit).then(|| Silent {
                    stream: name.clone(),
                    broadcast: newest.broadcast.clone(),
                    last_seq: newest.seq,
                    silent_for,
                })
            })
            .collect()
    }

    /// Ends the playlist of a silent stream, unless a segment arrived since it was found silent;
    /// returns whether the playlist changed. A segment arriving later opens it again
    /// ([`Playlist::push`]): the origin was slow, not dead, and nothing it produced is dropped.
    pub fn end_silent(&self, silent: &Silent) -> bool {
        let mut streams = self.write();
        let Some(state) = streams.get_mut(&silent.stream) else {
            return false;
        };
        if state.playlist.last_seq() != Some(silent.last_seq) {
            return false;
        }
        let end = StreamEnd {
            stream: silent.stream.clone(),
            broadcast: silent.broadcast.clone(),
            ended_at_ms: 0,
            last_seq: Some(silent.last_seq),
        };
        if !state.playlist.end(&end) {
            return false;
        }
        state.rendered = Bytes::from(state.playlist.render());
        true
    }

    /// The rendered playlist of a stream, if the stream is known.
    pub fn playlist(&self, stream: &str) -> Option<Bytes> {
        self.read().get(stream).map(|s| s.rendered.clone())
    }

    /// A segment's bytes, if still cached (shared, not copied). Counts a cache hit or miss.
    pub fn segment(&self, stream: &str, seq: u64) -> Option<Bytes> {
        self.object(stream, Object::Ts(seq))
    }

    /// Any cached object's bytes (shared, not copied). Counts a cache hit or miss.
    pub fn object(&self, stream: &str, object: Object) -> Option<Bytes> {
        let found = self.segments.get(&(stream.to_owned(), object));
        let counter = if found.is_some() {
            &self.stats.cache_hits
        } else {
            &self.stats.cache_misses
        };
        Stats::add(counter, 1);
        found
    }

    /// Every stream with playlist state (live, or ended but not yet forgotten), by name.
    pub fn streams(&self) -> Vec<StreamSummary> {
        let mut list: Vec<StreamSummary> = self
            .read()
            .iter()
            .map(|(name, state)| StreamSummary {
                name: name.clone(),
                ended: state.playlist.ended(),
                segments: state.playlist.segments().len(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Number of streams with playlist state.
    pub fn stream_count(&self) -> usize {
        self.read().len()
    }

    /// Segments currently in the cache (eventually consistent).
    pub fn cached_segments(&self) -> u64 {
        self.segments.entry_count()
    }

    /// Most bytes the segment cache may charge.
    pub fn cache_capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes the segment cache currently charges (including per-entry overhead; eventually consistent).
    pub fn cached_bytes(&self) -> u64 {
        self.segments.weighted_size()
    }

    /// Runs the cache's pending evictions now (they otherwise happen in the background of later calls).
    pub fn run_pending_tasks(&self) {
        self.segments.run_pending_tasks();
    }

    /// Forgets streams without any message for longer than the segment TTL; returns how many.
    pub fn sweep(&self) -> usize {
        self.sweep_at(Instant::now())
    }

    /// [`Store::sweep`] as if it were `now`.
    pub fn sweep_at(&self, now: Instant) -> usize {
        self.ll_write().retain(|_, state| {
            now.saturating_duration_since(state.last_activity) < self.idle_after
        });
        let mut streams = self.write();
        let before = streams.len();
        streams.retain(|stream, state| {
            let keep = now.saturating_duration_since(state.last_activity) < self.idle_after;
            if !keep {
                info!(stream = %stream, "stream idle for longer than the segment TTL; forgotten");
            }
            keep
        });
        let forgotten = before - streams.len();
        let ll = self.ll_read();
        self.renumbering()
            .retain(|name| streams.contains_key(name) || ll.contains_key(name));
        forgotten
    }

    /// Adds a verified init segment of the low-latency rendition (repeats are ignored).
    pub fn insert_init(&self, meta: &InitMeta, data: Bytes) {
        let mut meta = meta.clone();
        meta.init = self
            .map_numbers(&meta.stream, &meta.broadcast, meta.init, None)
            .seq;
        let meta = &meta;
        let key = (meta.stream.clone(), Object::Init(meta.init));
        if !self.segments.contains_key(&key) {
            self.segments.insert(key, data);
        }
        self.update_ll(&meta.stream, |p| {
            p.push_init(meta.init);
            // Knowing an init changes nothing listed until its parts come.
            false
        });
    }

    /// Adds a verified part of the low-latency rendition: bytes first, then the playlist, then wakes
    /// the requests waiting for it. Returns whether the playlist changed.
    pub fn insert_part(&self, meta: &PartMeta, data: Bytes) -> bool {
        let mut meta = meta.clone();
        let m = self.map_numbers(&meta.stream, &meta.broadcast, meta.seq, Some(meta.disc_seq));
        meta.seq = m.seq;
        meta.disc_seq = m.disc_seq.unwrap_or(meta.disc_seq);
        meta.init = self
            .renumbering()
            .peek(&meta.stream, &meta.broadcast, meta.init);
        let meta = &meta;
        let key = (meta.stream.clone(), Object::Part(meta.seq, meta.part));
        let known = self
            .ll_read()
            .get(&meta.stream)
            .is_some_and(|s| s.playlist.has(meta.seq, Some(meta.part)) && !s.playlist.ended());
        if known {
            return false;
        }
        self.segments.insert(key, data);
        self.update_ll(&meta.stream, |p| p.push_part(meta) == PartOutcome::Added)
    }

    /// The numbers this edge serves for a record (see [`Renumbering`]); says so once per renumbered
    /// broadcast.
    fn map_numbers(&self, stream: &str, broadcast: &str, seq: u64, disc: Option<u64>) -> Mapped {
        let m = self.renumbering().map(stream, broadcast, seq, disc);
        if m.first_of_broadcast && m.renumbered {
            info!(
                stream = %stream,
                broadcast = %broadcast,
                origin_seq = seq,
                seq = m.seq,
                "broadcast numbered at or below what this edge listed for the stream (an origin \
                 restarted on a lower numbering base): renumbered to continue the window"
            );
        }
        m
    }

    fn renumbering(&self) -> std::sync::MutexGuard<'_, Renumbering> {
        self.renumber.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to a stream's low-latency playlist (created if new); when it says the playlist
    /// changed, re-renders it and wakes waiting requests.
    fn update_ll(&self, stream: &str, change: impl FnOnce(&mut LlPlaylist) -> bool) -> bool {
        let mut all = self.ll_write();
        let state = all.entry(stream.to_owned()).or_insert_with(|| LlState {
            playlist: LlPlaylist::new(self.window),
            rendered: Bytes::new(),
            last_activity: Instant::now(),
            changed: watch::Sender::new(0),
        });
        state.last_activity = Instant::now();
        if !change(&mut state.playlist) {
            return false;
        }
        state.rendered = Bytes::from(state.playlist.render());
        state.changed.send_modify(|v| *v = v.wrapping_add(1));
        true
    }

    /// The rendered low-latency playlist, if the stream has one with at least one part.
    pub fn ll_playlist(&self, stream: &str) -> Option<Bytes> {
        self.ll_read()
            .get(stream)
            .filter(|s| !s.playlist.is_empty())
            .map(|s| s.rendered.clone())
    }

    /// Reads the stream's low-latency playlist state with `f`, if the stream is known.
    pub fn ll_with<T>(&self, stream: &str, f: impl FnOnce(&LlPlaylist) -> T) -> Option<T> {
        self.ll_read().get(stream).map(|s| f(&s.playlist))
    }

    /// A receiver that wakes when the stream's low-latency playlist changes; subscribe before
    /// checking the condition waited for, so no change in between is missed.
    pub fn ll_subscribe(&self, stream: &str) -> Option<watch::Receiver<u64>> {
        self.ll_read().get(stream).map(|s| s.changed.subscribe())
    }

    /// The whole fMP4 segment `seq` (its parts concatenated), if it is complete and every part is
    /// still cached.
    pub fn ll_segment(&self, stream: &str, seq: u64) -> Option<Bytes> {
        let parts = self.ll_with(stream, |p| p.complete_parts(seq))??;
        let mut out = BytesMut::new();
        for k in 0..parts {
            out.extend_from_slice(&self.object(stream, Object::Part(seq, k))?);
        }
        Some(out.freeze())
    }

    fn ll_read(&self) -> RwLockReadGuard<'_, HashMap<String, LlState>> {
        self.ll.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn ll_write(&self) -> RwLockWriteGuard<'_, HashMap<String, LlState>> {
        self.ll.write().unwrap_or_else(PoisonError::into_inner)
    }

    // A panic while holding the lock cannot leave a stream half-updated in a way that matters (each
    // state change is a few plain assignments), so a poisoned lock is used as is rather than taking
    // every later request down with it.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, StreamState>> {
        self.streams.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, StreamState>> {
        self.streams.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Calls [`Store::sweep`] every `every` until `cancel` fires.
pub async fn sweep_periodically(store: Arc<Store>, every: Duration, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                let forgotten = store.sweep();
                if forgotten > 0 {
                    debug!(forgotten, streams = store.stream_count(), "swept idle streams");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::SegmentMeta;

    fn config() -> StoreConfig {
        StoreConfig {
            cache_bytes: 1 << 20,
            segment_ttl: Duration::from_secs(120),
            window_segments: 3,
        }
    }

    fn segment(stream: &str, seq: u64, len: usize) -> CompleteSegment {
        let data = Bytes::from(vec![(seq % 251) as u8; len]);
        CompleteSegment {
            meta: SegmentMeta {
                size: len as u64,
                // crc32 stays 0: the store trusts reassembly to have checked it.
                ..SegmentMeta::sample(stream, "b", seq)
            },
            data,
        }
    }

    #[test]
    fn serves_what_was_inserted_and_renders_once_per_change() {
        let store = Store::new(&config());
        assert_eq!(store.playlist("cam"), None);
        assert_eq!(
            store.insert_segment(segment("cam", 1, 10)),
            Inserted::FirstOfStream
        );
        assert_eq!(
            store.insert_segment(segment("cam", 2, 10)),
            Inserted::Appended
        );
        assert_eq!(
            store.insert_segment(segment("cam", 2, 10)),
            Inserted::Duplicate
        );
        assert_eq!(
            store.insert_segment(segment("cam", 9, 10)),
            Inserted::WindowRestarted
        );
        assert_eq!(store.segment("cam", 2).as_deref(), Some(&[2u8; 10][..]));
        assert_eq!(store.segment("cam", 3), None);
        assert_eq!(store.segment("other", 2), None);
        let a = store.playlist("cam").expect("known stream");
        let b = store.playlist("cam").expect("known stream");
        // The same buffer is handed out, not a re-render.
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert!(std::str::from_utf8(&a).expect("utf8").contains("9.ts"));
        assert_eq!(Stats::get(&store.stats().segments_stored), 3);
        assert_eq!(Stats::get(&store.stats().segments_duplicate), 1);
        // Three lookups found something, two did not.
        assert_eq!(Stats::get(&store.stats().cache_hits), 1);
        assert_eq!(Stats::get(&store.stats().cache_misses), 2);
    }

    #[test]
    fn streams_are_listed_by_name_with_their_state() {
        let store = Store::new(&config());
        store.insert_segment(segment("zed", 1, 10));
        store.insert_segment(segment("alpha", 1, 10));
        store.insert_segment(segment("alpha", 2, 10));
        store.end_stream(&StreamEnd {
            stream: "zed".into(),
            broadcast: "b".into(),
            ended_at_ms: 0,
            last_seq: Some(1),
        });
        let list = store.streams();
        assert_eq!(
            list,
            [
                StreamSummary {
                    name: "alpha".into(),
                    ended: false,
                    segments: 2
                },
                StreamSummary {
                    name: "zed".into(),
                    ended: true,
                    segments: 1
                },
            ]
        );
        store.run_pending_tasks();
        assert_eq!(store.cached_segments(), 3);
        assert_eq!(store.cache_capacity(), 1 << 20);
    }

    #[test]
    fn stream_end_re_renders_with_endlist() {
        let store = Store::new(&config());
        store.insert_segment(segment("cam", 1, 10));
        let end = StreamEnd {
            stream: "cam".into(),
            broadcast: "b".into(),
            ended_at_ms: 0,
            last_seq: Some(1),
        };
        assert!(store.end_stream(&end));
        assert!(!store.end_stream(&end));
        let text = store.playlist("cam").expect("known");
        assert!(text.ends_with(b"#EXT-X-ENDLIST\n"));
        let unknown = StreamEnd {
            stream: "nobody".into(),
            ..end
        };
        assert!(!store.end_stream(&unknown));
        assert_eq!(store.stream_count(), 1);
    }

    #[test]
    fn silence_is_counted_in_target_durations_from_the_later_of_segment_and_quiet_since() {
        let store = Store::new(&config());
        store.insert_segment(segment("cam", 1, 10));
        store.insert_segment(segment("ended", 1, 10));
        store.end_stream(&StreamEnd {
            stream: "ended".into(),
            broadcast: "b".into(),
            ended_at_ms: 0,
            last_seq: Some(1),
        });
        let t0 = Instant::now();
        // `sample` segments have a 2 s target duration: 4 of them are 8 s.
        assert!(store
            .silent_streams(t0 + Duration::from_secs(7), 4, None)
            .is_empty());
        let silent = store.silent_streams(t0 + Duration::from_secs(9), 4, None);
        assert_eq!(silent.len(), 1, "{silent:?}");
        assert_eq!((silent[0].stream.as_str(), silent[0].last_seq), ("cam", 1));
        // The broker was unreachable until t0 + 5 s: silence counts from there.
        assert!(store
            .silent_streams(
                t0 + Duration::from_secs(9),
                4,
                Some(t0 + Duration::from_secs(5))
            )
            .is_empty());

        // A segment that arrived after the decision wins over it.
        store.insert_segment(segment("cam", 2, 10));
        assert!(!store.end_silent(&silent[0]));
        assert!(!store
            .playlist("cam")
            .expect("known")
            .ends_with(b"#EXT-X-ENDLIST\n"));
        let silent = store.silent_streams(Instant::now() + Duration::from_secs(9), 4, None);
        assert!(store.end_silent(&silent[0]));
        assert!(store
            .playlist("cam")
            .expect("known")
            .ends_with(b"#EXT-X-ENDLIST\n"));
        assert!(store
            .silent_streams(Instant::now() + Duration::from_secs(60), 4, None)
            .is_empty());
        // A late segment of the same broadcast opens the playlist again, contiguously.
        assert_eq!(
            store.insert_segment(segment("cam", 3, 10)),
            Inserted::Appended
        );
        assert!(!store
            .playlist("cam")
            .expect("known")
            .ends_with(b"#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn cache_is_bounded_in_bytes_and_keeps_the_newest() {
        let store = Store::new(&StoreConfig {
            cache_bytes: 100_000,
            ..config()
        });
        for seq in 1..=50 {
            store.insert_segment(segment("cam", seq, 10_000));
            store.run_pending_tasks();
        }
        assert!(store.cached_bytes() <= 100_000, "{}", store.cached_bytes());
        // LRU, not TinyLFU: the newest keys are admitted and the oldest are gone.
        assert!(store.segment("cam", 50).is_some());
        assert!(store.segment("cam", 49).is_some());
        assert!(store.segment("cam", 1).is_none());
    }

    #[test]
    fn segments_expire_after_the_ttl() {
        let store = Store::new(&StoreConfig {
            segment_ttl: Duration::from_millis(200),
            ..config()
        });
        store.insert_segment(segment("cam", 1, 10));
        assert!(store.segment("cam", 1).is_some());
        std::thread::sleep(Duration::from_millis(300));
        assert!(store.segment("cam", 1).is_none());
    }

    #[test]
    fn idle_streams_are_swept() {
        let store = Store::new(&config());
        store.insert_segment(segment("old", 1, 10));
        store.insert_segment(segment("new", 1, 10));
        assert_eq!(store.sweep(), 0);
        assert_eq!(store.sweep_at(Instant::now() + Duration::from_secs(121)), 2);
        assert_eq!(store.playlist("old"), None);
        // A forgotten stream comes back as new on its next segment.
        assert_eq!(
            store.insert_segment(segment("old", 2, 10)),
            Inserted::FirstOfStream
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod renumber_tests {
    use super::*;
    use common::SegmentMeta;

    fn store() -> Store {
        Store::new(&StoreConfig {
            cache_bytes: 1 << 20,
            segment_ttl: Duration::from_secs(120),
            window_segments: 4,
        })
    }

    fn segment(broadcast: &str, seq: u64, disc_seq: u64, first: bool) -> CompleteSegment {
        CompleteSegment {
            meta: SegmentMeta {
                size: 3,
                disc_seq,
                discontinuity: first,
                ..SegmentMeta::sample("cam", broadcast, seq)
            },
            data: Bytes::from(vec![(seq % 251) as u8; 3]),
        }
    }

    fn part(broadcast: &str, seq: u64, part: u32, disc_seq: u64, init: u64) -> PartMeta {
        PartMeta {
            stream: "cam".into(),
            broadcast: broadcast.into(),
            seq,
            part,
            duration: 1.0,
            independent: part == 0,
            last: part == 1,
            disc_seq,
            discontinuity: part == 0 && seq == init,
            init,
            target_duration: 2,
            part_target: 1.0,
            closed_at_ms: 0,
            size: 1,
            crc32: 0,
        }
    }

    fn init(broadcast: &str, id: u64) -> InitMeta {
        InitMeta {
            stream: "cam".into(),
            broadcast: broadcast.into(),
            init: id,
            codecs: String::new(),
            size: 1,
            crc32: 0,
        }
    }

    /// The rolling upgrade: an origin numbering in tenths of a second since 1970 is replaced by one
    /// numbering in seconds since 2025. Both playlists go on from where they were, never back.
    #[test]
    fn a_broadcast_numbered_lower_continues_both_playlists() {
        let s = store();
        let old = 17_961_619_135;
        s.insert_init(&init("old", old), Bytes::from_static(b"i"));
        for seq in old..old + 2 {
            for k in 0..2 {
                s.insert_part(&part("old", seq, k, 1, old), Bytes::from_static(b"p"));
            }
            s.insert_segment(segment("old", seq, 1, seq == old));
        }
        let new = 60_000_000;
        s.insert_init(&init("new", new), Bytes::from_static(b"j"));
        for seq in new..new + 2 {
            for k in 0..2 {
                assert!(s.insert_part(&part("new", seq, k, new + 1, new), Bytes::from_static(b"q")));
            }
            assert_eq!(
                s.insert_segment(segment("new", seq, new + 1, seq == new)),
                Inserted::Appended
            );
        }
        let ts = String::from_utf8(s.playlist("cam").expect("listed").to_vec()).expect("utf8");
        assert!(ts.contains("#EXT-X-MEDIA-SEQUENCE:17961619135\n"), "{ts}");
        assert!(
            ts.contains("17961619136.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n17961619137.ts\n"),
            "{ts}"
        );
        assert!(ts.contains("17961619138.ts"), "{ts}");
        assert!(!ts.contains("60000000"), "{ts}");
        // The new broadcast's bytes are served under the numbers the playlist lists.
        assert_eq!(
            s.segment("cam", 17_961_619_137).as_deref(),
            Some(&[(new % 251) as u8; 3][..])
        );
        let ll = String::from_utf8(s.ll_playlist("cam").expect("listed").to_vec()).expect("utf8");
        assert!(
            ll.contains("#EXT-X-MAP:URI=\"init-17961619137.mp4\""),
            "{ll}"
        );
        assert!(ll.contains("URI=\"17961619138.1.m4s\""), "{ll}");
        assert!(!ll.contains("60000000"), "{ll}");
        assert_eq!(
            s.object("cam", Object::Init(17_961_619_137)).as_deref(),
            Some(&b"j"[..])
        );
        // The end of the new broadcast names its last segment in the edge's numbers.
        assert!(s.end_stream(&StreamEnd {
            stream: "cam".into(),
            broadcast: "new".into(),
            ended_at_ms: 0,
            last_seq: Some(new + 1),
        }));
        let ts = String::from_utf8(s.playlist("cam").expect("listed").to_vec()).expect("utf8");
        assert!(ts.ends_with("17961619138.ts\n#EXT-X-ENDLIST\n"), "{ts}");
        // Forgotten streams start over with the origin's numbers.
        assert_eq!(s.sweep_at(Instant::now() + Duration::from_secs(121)), 1);
        assert_eq!(s.renumbering().len(), 0);
        assert_eq!(
            s.insert_segment(segment("newer", new + 2, new + 2, true)),
            Inserted::FirstOfStream
        );
        let ts = String::from_utf8(s.playlist("cam").expect("listed").to_vec()).expect("utf8");
        assert!(ts.contains("#EXT-X-MEDIA-SEQUENCE:60000002\n"), "{ts}");
    }

    /// Discontinuity number of every segment URI in `text`, as a player counts them (the sequence plus
    /// the DISCONTINUITY tags before it), keyed by media sequence number.
    fn player_disc_numbers(text: &str) -> Vec<(u64, u64)> {
        let mut number = 0;
        let mut out = Vec::new();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
                number = v.parse().expect("number");
            } else if line == "#EXT-X-DISCONTINUITY" {
                number += 1;
            } else if let Some(seq) = line
                .strip_suffix(".ts")
                .or_else(|| line.strip_suffix(".mp4"))
                .and_then(|s| s.parse().ok())
            {
                out.push((seq, number));
            }
        }
        out
    }

    /// A new origin process numbers higher (a gap) but counts discontinuities from 0 again: both
    /// renditions move its numbers on past the old ones, by the same amount, so a player switching
    /// between them (or a check comparing them) sees one numbering.
    #[test]
    fn both_renditions_agree_on_discontinuity_numbers_after_an_origin_restart() {
        let s = store();
        let old = 100;
        s.insert_init(&init("old", old), Bytes::from_static(b"i"));
        for seq in old..old + 3 {
            for k in 0..2 {
                s.insert_part(&part("old", seq, k, 3, old), Bytes::from_static(b"p"));
            }
            s.insert_segment(segment("old", seq, 3, seq == old));
        }
        let new = 5_000;
        s.insert_init(&init("new", new), Bytes::from_static(b"j"));
        for seq in new..new + 3 {
            for k in 0..2 {
                s.insert_part(&part("new", seq, k, 1, new), Bytes::from_static(b"q"));
            }
            let inserted = s.insert_segment(segment("new", seq, 1, seq == new));
            let expected = if seq == new {
                Inserted::WindowRestarted
            } else {
                Inserted::Appended
            };
            assert_eq!(inserted, expected);
        }
        let ts = String::from_utf8(s.playlist("cam").expect("listed").to_vec()).expect("utf8");
        let ll = String::from_utf8(s.ll_playlist("cam").expect("listed").to_vec()).expect("utf8");
        assert!(ts.contains("#EXT-X-MEDIA-SEQUENCE:5000\n"), "{ts}");
        assert!(ts.contains("#EXT-X-DISCONTINUITY-SEQUENCE:4\n"), "{ts}");
        assert!(ll.contains("#EXT-X-MEDIA-SEQUENCE:5000\n"), "{ll}");
        assert!(ll.contains("#EXT-X-DISCONTINUITY-SEQUENCE:4\n"), "{ll}");
        let ts_numbers = player_disc_numbers(&ts);
        let ll_numbers = player_disc_numbers(&ll);
        assert_eq!(ts_numbers.len(), 3, "{ts}");
        assert_eq!(ts_numbers, ll_numbers, "{ts}\n{ll}");
        // A republish on the new process counts on from there in both.
        for k in 0..2 {
            let mut p = part("newer", new + 3, k, 2, new);
            p.discontinuity = k == 0;
            s.insert_part(&p, Bytes::from_static(b"r"));
        }
        s.insert_segment(segment("newer", new + 3, 2, true));
        let ts = String::from_utf8(s.playlist("cam").expect("listed").to_vec()).expect("utf8");
        let ll = String::from_utf8(s.ll_playlist("cam").expect("listed").to_vec()).expect("utf8");
        let ts_numbers = player_disc_numbers(&ts);
        assert_eq!(ts_numbers.last(), Some(&(new + 3, 5)), "{ts}");
        assert_eq!(ts_numbers, player_disc_numbers(&ll), "{ts}\n{ll}");
    }
}
