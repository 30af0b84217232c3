//! Counters shared by the consumer, the store and the `/metrics` endpoint (the ingest step keeps its
//! own: `crate::kafka::IngestStats`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Monotonic counters (plus one gauge), updated with relaxed atomics: they are for observation only and
/// never order other memory accesses.
#[derive(Debug, Default)]
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

/// A Prometheus histogram over [`LATENCY_BUCKETS`], lock-free. The sum is kept in microseconds so it
/// can be an integer atomic.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A consistent-enough copy of a [`Histogram`] for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, cumulative count)` per bucket, `+Inf` last.
    pub cumulative: Vec<(f64, u64)>,
    /// Sum of observations in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(bucket) = self.buckets.get(slot) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The buckets made cumulative, as the exposition format wants them. The count is taken as the
    /// `+Inf` bucket so the two always agree even while observations race with the read.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        for (i, bucket) in self.buckets.iter().enumerate() {
            running += bucket.load(Ordering::Relaxed);
            cumulative.push((
                LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY),
                running,
            ));
        }
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: running,
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
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = Histogram::default();
        for ms in [0, 5, 6, 40, 1000, 60_000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 6);
        assert_eq!(s.cumulative.len(), LATENCY_BUCKETS.len() + 1);
        // `le` is inclusive: 5 ms falls in the 0.005 bucket.
        assert_eq!(s.cumulative[0], (0.005, 2));
        assert_eq!(s.cumulative[1], (0.01, 3));
        assert_eq!(s.cumulative[3], (0.05, 4));
        assert_eq!(s.cumulative[7], (1.0, 5));
        assert_eq!(s.cumulative[11], (30.0, 5));
        assert_eq!(s.cumulative[12], (f64::INFINITY, 6));
        assert!((s.sum_seconds - 61.051).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
