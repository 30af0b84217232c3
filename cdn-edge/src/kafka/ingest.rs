//! The broker-free, store-free ingest step: one record in (partition, offset, header, value), what it
//! changes out ([`Change`]). Per-partition state (segment reassembly, which streams the partition
//! carries) lives in [`Ingest`] and is dropped with [`Ingest::revoke`] when the partition goes to
//! another consumer; the counters of this step ([`IngestStats`]) live here too. Applying a change to
//! the store is the shell's job (`super::apply`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use common::{
    decode_meta, CompleteSegment, InitMeta, LiveMessage, PartMeta, Reassembler, ReassemblyError,
    SegmentMeta, StreamEnd, StreamStart,
};
use tracing::{debug, info, warn};

use crate::stats::Stats;

/// Memory bounds of the reassembly of chunked segments, per partition.
#[derive(Debug, Clone, Copy)]
pub struct ReassemblyLimits {
    /// Most bytes of incomplete segments held.
    pub max_bytes: usize,
    /// Most incomplete segments held (one per stream that is mid-segment in the partition).
    pub max_segments: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            max_segments: 64,
        }
    }
}

/// One Kafka record as the ingest step sees it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Partition it came from.
    pub partition: i32,
    /// Its offset in the partition (for logs).
    pub offset: i64,
    /// Its `livedto` header, if it has one.
    pub header: Option<&'a [u8]>,
    /// Its value.
    pub value: &'a [u8],
}

/// Why a record changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Its metadata was missing, malformed, of another schema version, or named an invalid stream.
    BadMetadata(String),
    /// A single-record object (init segment, part) whose size or checksum is wrong.
    Corrupt,
    /// A segment chunk reassembly refused (see [`ReassemblyError`]).
    Chunk(ReassemblyError),
}

/// What one record changes.
#[derive(Debug)]
pub enum Change {
    /// Nothing yet (a chunk of a segment still being reassembled).
    None,
    /// A broadcast began (nothing to store: a start alone lists nothing).
    Started(StreamStart),
    /// A broadcast ended.
    Ended(StreamEnd),
    /// A complete, verified segment.
    Segment(CompleteSegment),
    /// A verified init segment of the low-latency rendition.
    Init(InitMeta, Bytes),
    /// A verified part of the low-latency rendition.
    Part(PartMeta, Bytes),
    /// The record was unusable, counted and dropped.
    Rejected(Rejected),
}

/// Counters of the ingest step (relaxed atomics, shared with `/metrics`).
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Kafka records handed to the ingest step.
    pub records: AtomicU64,
    /// Records dropped because their metadata was missing, malformed, of another schema version, or
    /// named an invalid stream.
    pub bad_messages: AtomicU64,
    /// Segment chunks refused by reassembly (inconsistent, checksum mismatch, too large, or the start of
    /// the segment was never seen) and single-record objects with a wrong size or checksum.
    pub rejected_chunks: AtomicU64,
    /// Incomplete segments dropped by reassembly to stay within its memory bounds.
    pub reassembly_evictions: AtomicU64,
}

/// What ingest keeps for one partition.
struct PartitionState {
    reassembler: Reassembler,
    /// Streams whose segments came from this partition.
    streams: HashSet<String>,
}

/// The ingest step.
pub struct Ingest {
    limits: ReassemblyLimits,
    partitions: HashMap<i32, PartitionState>,
    stats: Arc<IngestStats>,
}

impl Ingest {
    /// An ingest step with fresh counters.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self::with_stats(limits, Arc::default())
    }

    /// An ingest step counting into `stats`.
    pub fn with_stats(limits: ReassemblyLimits, stats: Arc<IngestStats>) -> Self {
        Self {
            limits,
            partitions: HashMap::new(),
            stats,
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }

    /// Forgets everything about `partition` (half-reassembled segments, its streams): it was revoked,
    /// and whoever reads it next starts from its own offsets.
    pub fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// The partition `stream`'s segments came from, if any did.
    pub fn partition_of(&self, stream: &str) -> Option<i32> {
        self.partitions
            .iter()
            .find(|(_, p)| p.streams.contains(stream))
            .map(|(&id, _)| id)
    }

    /// Forgets the streams `keep` says no to (the store forgot them).
    pub fn retain_streams(&mut self, mut keep: impl FnMut(&str) -> bool) {
        for p in self.partitions.values_mut() {
            p.streams.retain(|s| keep(s));
        }
    }

    /// Streams remembered across partitions.
    pub fn stream_count(&self) -> usize {
        self.partitions.values().map(|p| p.streams.len()).sum()
    }

    /// Handles one record. Never panics on bad input: unusable records are logged, counted and
    /// returned as [`Change::Rejected`].
    pub fn record(&mut self, record: Record<'_>) -> Change {
        let Record {
            partition,
            header,
            value,
            ..
        } = record;
        Stats::add(&self.stats.records, 1);
        let msg = match decode_meta(header) {
            Ok(msg) => msg,
            Err(e) => return self.bad_message(partition, &e),
        };
        if let Err(e) = common::validate_stream_name(msg.stream()) {
            return self.bad_message(partition, &e);
        }
        match msg {
            LiveMessage::StreamStart(s) => Change::Started(s),
            LiveMessage::StreamEnd(e) => Change::Ended(e),
            LiveMessage::Segment(meta) => self.chunk(partition, meta, value),
            LiveMessage::Init(meta) => match self.verified(partition, meta.size, meta.crc32, value)
            {
                Ok(()) => Change::Init(meta, Bytes::copy_from_slice(value)),
                Err(r) => Change::Rejected(r),
            },
            LiveMessage::Part(meta) => match self.verified(partition, meta.size, meta.crc32, value)
            {
                Ok(()) => Change::Part(meta, Bytes::copy_from_slice(value)),
                Err(r) => Change::Rejected(r),
            },
        }
    }

    /// Whether a single-record object (init segment, part) arrived as the origin sent it.
    fn verified(
        &self,
        partition: i32,
        size: u64,
        crc32: u32,
        value: &[u8],
    ) -> Result<(), Rejected> {
        if value.len() as u64 == size && crc32fast::hash(value) == crc32 {
            return Ok(());
        }
        let n = Stats::add(&self.stats.rejected_chunks, 1);
        if should_log(n) {
            warn!(
                partition,
                rejected_so_far = n,
                "low-latency record with wrong size or checksum dropped"
            );
        }
        Err(Rejected::Corrupt)
    }

    fn chunk(&mut self, partition: i32, meta: SegmentMeta, value: &[u8]) -> Change {
        let limits = self.limits;
        let state = self
            .partitions
            .entry(partition)
            .or_insert_with(|| PartitionState {
                reassembler: Reassembler::new(limits.max_bytes, limits.max_segments),
                streams: HashSet::new(),
            });
        let reassembler = &mut state.reassembler;
        let evicted_before = reassembler.evicted();
        let result = reassembler.push(meta, value);
        let evicted = reassembler.evicted() - evicted_before;
        let stats = &self.stats;
        if evicted > 0 && should_log(Stats::add(&stats.reassembly_evictions, evicted)) {
            warn!(
                partition,
                evicted,
                evicted_so_far = Stats::get(&stats.reassembly_evictions),
                "incomplete segments dropped to stay within reassembly bounds"
            );
        }
        match result {
            Ok(None) => Change::None,
            Ok(Some(segment)) => {
                let stream = &segment.meta.stream;
                if !state.streams.contains(stream) {
                    state.streams.insert(stream.clone());
                    // A stream lives in one partition; if it moved (partitions were added), the
                    // newest one is where its segments come from now.
                    for (&id, other) in self.partitions.iter_mut() {
                        if id != partition {
                            other.streams.remove(stream);
                        }
                    }
                }
                Change::Segment(segment)
            }
            Err(e) => {
                let n = Stats::add(&stats.rejected_chunks, 1);
                // Starting mid-segment (the seek landed inside one) is expected once per stream
                // on start; anything else means a broken producer or lost records.
                let expected = matches!(e, ReassemblyError::MissingStart { .. });
                if expected {
                    debug!(partition, error = %e, "skipping chunk of a segment begun before our start");
                } else if should_log(n) {
                    warn!(partition, rejected_so_far = n, error = %e, "segment chunk rejected");
                }
                Change::Rejected(Rejected::Chunk(e))
            }
        }
    }

    fn bad_message(&self, partition: i32, error: &dyn std::error::Error) -> Change {
        let n = Stats::add(&self.stats.bad_messages, 1);
        if should_log(n) {
            warn!(partition, dropped_so_far = n, error = %error, "dropping record with unusable metadata");
        }
        Change::Rejected(Rejected::BadMetadata(error.to_string()))
    }
}

/// Logs a broadcast's start (the only thing a start changes at an edge).
pub(super) fn log_start(s: &StreamStart) {
    info!(
        stream = %s.stream,
        broadcast = %s.broadcast,
        first_seq = s.first_seq,
        "broadcast started"
    );
}

/// A stream of bad records must not turn into a stream of log lines: log the first few, then at
/// powers of two.
pub(super) fn should_log(n: u64) -> bool {
    n <= 10 || n.is_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{encode_meta, split_segment, ChunkPlan};

    fn chunks(stream: &str, seq: u64) -> Vec<(Vec<u8>, Bytes)> {
        let data = Bytes::from(vec![7u8; 9_000]);
        split_segment(
            ChunkPlan {
                meta: SegmentMeta {
                    chunks: 0,
                    ..SegmentMeta::sample(stream, "b", seq)
                },
                max_chunk_bytes: 3_000,
            },
            &data,
        )
        .into_iter()
        .map(|(m, v)| (encode_meta(&LiveMessage::Segment(m)), v))
        .collect()
    }

    fn record<'a>(partition: i32, h: &'a [u8], v: &'a [u8]) -> Record<'a> {
        Record {
            partition,
            offset: 0,
            header: Some(h),
            value: v,
        }
    }

    #[test]
    fn a_record_says_what_it_changes_and_a_revoked_partition_is_forgotten() {
        let mut ingest = Ingest::new(ReassemblyLimits::default());
        let recs = chunks("cam", 1);
        assert!(matches!(
            ingest.record(record(3, &recs[0].0, &recs[0].1)),
            Change::None
        ));
        assert!(matches!(
            ingest.record(record(3, &recs[1].0, &recs[1].1)),
            Change::None
        ));
        match ingest.record(record(3, &recs[2].0, &recs[2].1)) {
            Change::Segment(s) => assert_eq!((s.meta.seq, s.data.len()), (1, 9_000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(ingest.partition_of("cam"), Some(3));

        // Half a segment, then the partition goes to another edge: its state goes with it, so the
        // rest of the segment (if the partition ever comes back) starts nothing half-built.
        let recs = chunks("cam", 2);
        ingest.record(record(3, &recs[0].0, &recs[0].1));
        ingest.revoke(3);
        assert_eq!(ingest.partition_of("cam"), None);
        assert!(matches!(
            ingest.record(record(3, &recs[1].0, &recs[1].1)),
            Change::Rejected(Rejected::Chunk(ReassemblyError::MissingStart { .. }))
        ));
        assert!(matches!(
            ingest.record(Record {
                partition: 3,
                offset: 9,
                header: None,
                value: b"x",
            }),
            Change::Rejected(Rejected::BadMetadata(_))
        ));
        assert_eq!(Stats::get(&ingest.stats().records), 6);
        assert_eq!(Stats::get(&ingest.stats().rejected_chunks), 1);
        assert_eq!(Stats::get(&ingest.stats().bad_messages), 1);
    }
}
