//! Counters shared by the consumer, the store and (later) a metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters (plus one gauge), updated with relaxed atomics: they are for observation only and
/// never order other memory accesses.
#[derive(Debug, Default)]
pub struct Stats {
    /// Kafka records handed to the ingest path.
    pub records: AtomicU64,
    /// Complete, verified segments added to a playlist and the cache.
    pub segments_stored: AtomicU64,
    /// Complete segments ignored because their sequence number was already covered.
    pub segments_duplicate: AtomicU64,
    /// Records dropped because their metadata was missing, malformed, of another schema version, or
    /// named an invalid stream.
    pub bad_messages: AtomicU64,
    /// Segment chunks refused by reassembly (inconsistent, checksum mismatch, too large, or the start of
    /// the segment was never seen).
    pub rejected_chunks: AtomicU64,
    /// Incomplete segments dropped by reassembly to stay within its memory bounds.
    pub reassembly_evictions: AtomicU64,
    /// Partitions currently assigned to the consumer (a gauge).
    pub partitions_assigned: AtomicU64,
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
