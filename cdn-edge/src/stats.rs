//! Counters shared by the consumer, the store and the `/metrics` endpoint (the ingest step keeps its
//! own: `crate::kafka::IngestStats`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Monotonic counters (plus one gauge), updated with relaxed atomics: they are for observation only and
/// never order other memory accesses.
#[derive(Debug)]
pub struct Stats {
    /// Complete, verified segments added to a playlist and the cache.
    pub segments_stored: AtomicU64,
    /// Complete segments ignored because their sequence number was already covered.
    pub segments_duplicate: AtomicU64,
    /// Live playlists ended because their origin went silent (no stream end arrived).
    pub streams_ended_silent: AtomicU64,
    /// Times a partition's next record had been deleted by retention before this edge read it, and the
    /// edge moved on to the live window.
    pub retention_skips: AtomicU64,
    /// Partitions currently assigned to the consumer (a gauge).
    pub partitions_assigned: AtomicU64,
    /// Segment lookups answered from the cache.
    pub cache_hits: AtomicU64,
    /// Segment lookups for a segment not (or no longer) in the cache.
    pub cache_misses: AtomicU64,
    /// Time from the origin closing a segment to this edge listing it.
    pub availability_latency: Histogram,
    /// Origin closed an LL-HLS part -> this edge listed it (while caught up).
    pub part_availability_latency: Histogram,
}

impl Stats {
    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Adds `n` to a counter and returns the new value.
    pub fn add(counter: &AtomicU64, n: u64) -> u64 {
        counter.fetch_add(n, Ordering::Relaxed) + n
    }

    /// Sets a gauge.
    pub fn set_gauge(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }
}

/// Upper bounds (seconds) of the availability latency buckets: a healthy path is tens of milliseconds,
/// a struggling one seconds; beyond 30 s a viewer has long since stalled.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram in seconds over [`LATENCY_BUCKETS`] (the `prometheus` crate's: lock-free, and
/// shared by cloning); observe it with [`observe`].
pub type Histogram = prometheus::Histogram;

/// Records one latency.
pub fn observe(histogram: &Histogram, value: Duration) {
    histogram.observe(value.as_secs_f64());
}

impl Default for Stats {
    fn default() -> Self {
        let latency = |name: &str, help: &str| service::histogram(name, help, &LATENCY_BUCKETS);
        Self {
            segments_stored: AtomicU64::default(),
            segments_duplicate: AtomicU64::default(),
            streams_ended_silent: AtomicU64::default(),
            retention_skips: AtomicU64::default(),
            partitions_assigned: AtomicU64::default(),
            cache_hits: AtomicU64::default(),
            cache_misses: AtomicU64::default(),
            availability_latency: latency(
                "cdn_edge_segment_availability_latency_seconds",
                "Time from the origin closing a segment (closed_at_ms) to this edge listing it; negative clock skew counts as 0.",
            ),
            part_availability_latency: latency(
                "cdn_edge_part_availability_latency_seconds",
                "Time from the origin closing an LL-HLS part (closed_at_ms) to this edge listing it; negative clock skew counts as 0.",
            ),
        }
    }
}

/// Consumer lag per partition (high watermark minus the next offset to be handed to the edge), as last
/// reported by librdkafka's statistics.
#[derive(Debug, Default)]
pub struct ConsumerLag {
    partitions: Mutex<BTreeMap<i32, i64>>,
}

impl ConsumerLag {
    /// Replaces every partition's lag: partitions missing from `lags` are no longer assigned.
    pub fn replace(&self, lags: BTreeMap<i32, i64>) {
        *self.lock() = lags;
    }

    /// Lag per partition, by partition id.
    pub fn get(&self) -> BTreeMap<i32, i64> {
        self.lock().clone()
    }

    // Only whole-map assignments happen under the lock, so a poisoned one still holds a valid map.
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, i64>> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_inclusive() {
        let stats = Stats::default();
        let h = &stats.availability_latency;
        for ms in [0, 5, 6, 40, 1000, 60_000] {
            observe(h, Duration::from_millis(ms));
        }
        assert_eq!(h.get_sample_count(), 6);
        let text = {
            let x = service::Scrape::new();
            x.add(h.clone());
            x.render()
        };
        let name = "cdn_edge_segment_availability_latency_seconds";
        // `le` is inclusive: 5 ms falls in the 0.005 bucket.
        for (le, n) in [
            ("0.005", 2),
            ("0.01", 3),
            ("0.05", 4),
            ("1", 5),
            ("30", 5),
            ("+Inf", 6),
        ] {
            let line = format!("{name}_bucket{{le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line}{text}");
        }
        assert!((h.get_sample_sum() - 61.051).abs() < 1e-9);
    }
}
