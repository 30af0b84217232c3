//! The thin shell around the ingest step: applies each [`Change`] to the store, logs what the store
//! did, and observes availability latency.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info};

use super::ingest::{self, Change, Ingest, Record};
use super::now_ms;
use crate::stats;
use crate::store::{Inserted, Store};

/// Applies ingest's changes to a store.
pub struct Apply {
    store: Arc<Store>,
    /// Whether records now arrive as they are produced. Segments read from the lookback window at start
    /// became available late because this edge just started, not because the path is slow, so their
    /// latency is not observed.
    caught_up: bool,
}

impl Apply {
    /// A shell writing into `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            caught_up: true,
        }
    }

    /// Says whether records are being read as they are produced (see the `caught_up` field).
    pub fn set_caught_up(&mut self, caught_up: bool) {
        self.caught_up = caught_up;
    }

    /// Runs `record` through `ingest` and applies what it changed.
    pub fn record(&mut self, ingest: &mut Ingest, record: Record<'_>) {
        let change = ingest.record(record);
        self.apply(change);
    }

    /// Applies one change to the store.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::None | Change::Rejected(_) => {}
            Change::Started(s) => ingest::log_start(&s),
            Change::Ended(e) => {
                let ended = self.store.end_stream(&e);
                info!(
                    stream = %e.stream,
                    broadcast = %e.broadcast,
                    last_seq = ?e.last_seq,
                    playlist_ended = ended,
                    "broadcast ended"
                );
            }
            Change::Init(meta, bytes) => self.store.insert_init(&meta, bytes),
            Change::Part(meta, bytes) => {
                if self.store.insert_part(&meta, bytes) {
                    let latency_ms = i128::from(now_ms()) - i128::from(meta.closed_at_ms);
                    if self.caught_up {
                        let observed = u64::try_from(latency_ms.max(0)).unwrap_or(u64::MAX);
                        stats::observe(
                            &self.store.stats().part_availability_latency,
                            Duration::from_millis(observed),
                        );
                    }
                    debug!(stream = %meta.stream, seq = meta.seq, part = meta.part, latency_ms, "part available");
                }
            }
            Change::Segment(segment) => {
                let stream = segment.meta.stream.clone();
                let broadcast = segment.meta.broadcast.clone();
                let seq = segment.meta.seq;
                let size = segment.data.len();
                let closed_at_ms = segment.meta.closed_at_ms;
                match self.store.insert_segment(segment) {
                    Inserted::Duplicate => {
                        debug!(stream = %stream, seq, "segment already in the playlist; ignored");
                        return;
                    }
                    Inserted::FirstOfStream => {
                        info!(stream = %stream, broadcast = %broadcast, seq, "first segment of stream");
                    }
                    Inserted::WindowRestarted => {
                        info!(stream = %stream, seq, "sequence numbers jumped; playlist window restarted");
                    }
                    Inserted::Appended => {}
                }
                // Signed: clocks of origin and edge may disagree by more than the true latency.
                let latency_ms = i128::from(now_ms()) - i128::from(closed_at_ms);
                if self.caught_up {
                    // A histogram cannot hold a negative time: an origin clock ahead of ours shows as 0.
                    let observed = u64::try_from(latency_ms.max(0)).unwrap_or(u64::MAX);
                    stats::observe(
                        &self.store.stats().availability_latency,
                        Duration::from_millis(observed),
                    );
                }
                debug!(stream = %stream, seq, size, latency_ms, "segment available");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::ReassemblyLimits;
    use crate::stats::Stats;
    use crate::store::StoreConfig;
    use bytes::Bytes;
    use common::{
        encode_meta, split_segment, ChunkPlan, LiveMessage, SegmentMeta, StreamEnd, StreamStart,
    };

    /// The ingest step and its shell, as the poll loop drives them.
    struct Pipe {
        ingest: Ingest,
        apply: Apply,
    }

    impl Pipe {
        fn new(store: &Arc<Store>, limits: ReassemblyLimits) -> Self {
            Self {
                ingest: Ingest::new(limits),
                apply: Apply::new(store.clone()),
            }
        }

        fn record(&mut self, partition: i32, header: Option<&[u8]>, value: &[u8]) {
            let record = Record {
                partition,
                offset: 0,
                header,
                value,
            };
            self.apply.record(&mut self.ingest, record);
        }

        fn set_caught_up(&mut self, caught_up: bool) {
            self.apply.set_caught_up(caught_up);
        }

        fn stats(&self) -> &ingest::IngestStats {
            self.ingest.stats()
        }
    }

    fn store() -> Arc<Store> {
        Arc::new(Store::new(&StoreConfig {
            cache_bytes: 64 << 20,
            segment_ttl: Duration::from_secs(60),
            window_segments: 6,
        }))
    }

    fn meta(stream: &str, seq: u64) -> SegmentMeta {
        SegmentMeta {
            disc_seq: 1,
            discontinuity: seq == 100,
            closed_at_ms: now_ms(),
            codecs: "avc1.64001f,mp4a.40.2".into(),
            chunks: 0,
            ..SegmentMeta::sample(stream, "b1", seq)
        }
    }

    fn data(seq: u64, len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| (i as u64 ^ seq) as u8).collect::<Vec<_>>())
    }

    /// The records an origin would produce for one segment: (header, value).
    fn records(stream: &str, seq: u64, len: usize, max_chunk: usize) -> Vec<(Vec<u8>, Bytes)> {
        split_segment(
            ChunkPlan {
                meta: meta(stream, seq),
                max_chunk_bytes: max_chunk,
            },
            &data(seq, len),
        )
        .into_iter()
        .map(|(m, v)| (encode_meta(&LiveMessage::Segment(m)), v))
        .collect()
    }

    #[test]
    fn ll_records_reach_the_ll_playlist_and_bad_ones_are_counted() {
        let store = store();
        let mut ingest = Pipe::new(&store, ReassemblyLimits::default());
        let init = Bytes::from_static(b"ftyp-moov");
        let init_meta = common::InitMeta {
            stream: "cam".into(),
            broadcast: "b1".into(),
            init: 100,
            codecs: "avc1.64001f".into(),
            size: init.len() as u64,
            crc32: crc32fast::hash(&init),
        };
        let part = |k: u32, value: &Bytes, crc32: u32| {
            encode_meta(&LiveMessage::Part(common::PartMeta {
                stream: "cam".into(),
                broadcast: "b1".into(),
                seq: 100,
                part: k,
                duration: 0.334,
                independent: k == 0,
                last: false,
                disc_seq: 1,
                discontinuity: true,
                init: 100,
                target_duration: 2,
                part_target: 0.334,
                closed_at_ms: now_ms(),
                size: value.len() as u64,
                crc32,
            }))
        };
        let p0 = data(1, 500);
        // A part before its init cannot be listed.
        ingest.record(0, Some(&part(0, &p0, crc32fast::hash(&p0))), &p0);
        assert_eq!(store.ll_playlist("cam"), None);
        ingest.record(0, Some(&encode_meta(&LiveMessage::Init(init_meta))), &init);
        ingest.record(0, Some(&part(0, &p0, crc32fast::hash(&p0))), &p0);
        // Part 1 damaged in transit: dropped and counted, not listed.
        let p1 = data(2, 500);
        ingest.record(0, Some(&part(1, &p1, 7)), &p1);
        assert_eq!(Stats::get(&ingest.stats().rejected_chunks), 1);
        let text =
            String::from_utf8(store.ll_playlist("cam").expect("listed").to_vec()).expect("utf8");
        assert!(text.contains("#EXT-X-MAP:URI=\"init-100.mp4\"\n"), "{text}");
        assert!(
            text.contains("URI=\"100.0.m4s\",INDEPENDENT=YES\n"),
            "{text}"
        );
        assert!(
            !text.contains("100.1.m4s\"\n#")
                && text.contains("PRELOAD-HINT:TYPE=PART,URI=\"100.1.m4s\"")
        );
        assert_eq!(
            store.object("cam", crate::store::Object::Part(100, 0)),
            Some(p0)
        );
        assert_eq!(
            store.stats().part_availability_latency.get_sample_count(),
            1
        );
        // A kind from a newer origin is skipped and counted, not fatal.
        ingest.record(0, Some(br#"{"v":1,"kind":"hologram","stream":"cam"}"#), b"");
        assert_eq!(Stats::get(&ingest.stats().bad_messages), 1);
    }

    #[test]
    fn chunked_segments_are_reassembled_into_the_store() {
        let store = store();
        let mut ingest = Pipe::new(&store, ReassemblyLimits::default());
        ingest.record(
            0,
            Some(&encode_meta(&LiveMessage::StreamStart(StreamStart {
                stream: "cam".into(),
                broadcast: "b1".into(),
                started_at_ms: 0,
                first_seq: 100,
            }))),
            b"",
        );
        assert_eq!(store.playlist("cam"), None, "a start alone lists nothing");
        // Two streams interleaved in one partition, as they are when their keys hash alike.
        let a: Vec<_> = (100..103)
            .flat_map(|s| records("cam", s, 10_000, 3_000))
            .collect();
        let b: Vec<_> = (7..10)
            .flat_map(|s| records("other", s, 5_000, 3_000))
            .collect();
        for i in 0..a.len().max(b.len()) {
            for recs in [&a, &b] {
                if let Some((h, v)) = recs.get(i) {
                    ingest.record(0, Some(h), v);
                }
            }
        }
        assert_eq!(store.segment("cam", 101), Some(data(101, 10_000)));
        assert_eq!(store.segment("other", 9), Some(data(9, 5_000)));
        let text = String::from_utf8(store.playlist("cam").expect("known").to_vec()).expect("utf8");
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:100\n"), "{text}");
        assert!(text.contains("102.ts\n"), "{text}");
        assert_eq!(Stats::get(&store.stats().segments_stored), 6);
        assert_eq!(store.stats().availability_latency.get_sample_count(), 6);
        // Backlog read at start is not observed.
        ingest.set_caught_up(false);
        for (h, v) in records("cam", 103, 1_000, 3_000) {
            ingest.record(0, Some(&h), &v);
        }
        assert_eq!(Stats::get(&store.stats().segments_stored), 7);
        assert_eq!(store.stats().availability_latency.get_sample_count(), 6);
        assert_eq!(
            Stats::get(&ingest.stats().records),
            (a.len() + b.len() + 2) as u64
        );

        ingest.record(
            0,
            Some(&encode_meta(&LiveMessage::StreamEnd(StreamEnd {
                stream: "cam".into(),
                broadcast: "b1".into(),
                ended_at_ms: 0,
                last_seq: Some(102),
            }))),
            b"",
        );
        assert!(store
            .playlist("cam")
            .expect("known")
            .ends_with(b"#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn bad_records_are_counted_and_dropped() {
        let store = store();
        let mut ingest = Pipe::new(&store, ReassemblyLimits::default());
        ingest.record(0, None, b"x");
        ingest.record(0, Some(b"{not json"), b"x");
        ingest.record(0, Some(br#"{"v":2,"kind":"segment"}"#), b"x");
        ingest.record(0, Some(br#"{"v":1,"kind":"segment","stream":"cam"}"#), b"x");
        let mut evil = meta("../etc", 1);
        evil.size = 1;
        evil.chunks = 1;
        ingest.record(0, Some(&encode_meta(&LiveMessage::Segment(evil))), b"x");
        assert_eq!(Stats::get(&ingest.stats().bad_messages), 5);
        assert_eq!(store.stream_count(), 0);
    }

    #[test]
    fn corrupt_truncated_or_partial_segments_are_not_served() {
        let store = store();
        let mut ingest = Pipe::new(&store, ReassemblyLimits::default());
        // Corrupted bytes: CRC mismatch.
        let mut recs = records("cam", 1, 9_000, 3_000);
        let mut bad = recs[1].1.to_vec();
        bad[0] ^= 0xff;
        recs[1].1 = Bytes::from(bad);
        for (h, v) in &recs {
            ingest.record(0, Some(h), v);
        }
        // Started mid-segment: the first chunk never arrives.
        for (h, v) in records("cam", 2, 9_000, 3_000).iter().skip(1) {
            ingest.record(0, Some(h), v);
        }
        // A value longer than its metadata says.
        let (h, _) = &records("cam", 3, 10, 100)[0];
        ingest.record(0, Some(h), &[0u8; 20]);
        assert_eq!(store.playlist("cam"), None);
        assert_eq!(Stats::get(&ingest.stats().rejected_chunks), 1 + 2 + 1);

        // The next good segment starts the stream.
        for (h, v) in &records("cam", 4, 9_000, 3_000) {
            ingest.record(0, Some(h), v);
        }
        assert_eq!(store.segment("cam", 4), Some(data(4, 9_000)));
    }

    #[test]
    fn never_completed_segments_are_evicted_and_counted() {
        let store = store();
        let limits = ReassemblyLimits {
            max_bytes: 1 << 20,
            max_segments: 2,
        };
        let mut ingest = Pipe::new(&store, limits);
        for seq in 1..=5 {
            let (h, v) = &records("cam", seq, 9_000, 3_000)[0];
            ingest.record(0, Some(h), v);
        }
        assert_eq!(Stats::get(&ingest.stats().reassembly_evictions), 3);
        // Partitions reassemble independently.
        for (h, v) in &records("cam", 6, 9_000, 3_000) {
            ingest.record(1, Some(h), v);
        }
        assert!(store.segment("cam", 6).is_some());
    }
}
