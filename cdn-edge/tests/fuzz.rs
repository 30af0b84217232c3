//! Fuzz target for the edge's Kafka record decoder (LiveDTO header JSON + chunk reassembly into the
//! store), run by the stable-toolchain harness `common::fuzz` (cargo-fuzz needs nightly). An input is a
//! sequence of records: partition (1 byte), header length (2 bytes) and header, value length (2 bytes)
//! and value. Seeds in `fuzz/corpus/kafka_record/` are real records (`write_seed_corpus`, ignored).
//! 8 s by default; `FUZZ_SECONDS=600 cargo test -p cdn-edge --test fuzz` runs longer.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cdn_edge::kafka::apply::Apply;
use cdn_edge::kafka::{Ingest, ReassemblyLimits, Record};
use cdn_edge::store::{Store, StoreConfig};
use common::fuzz::{self, Target};
use common::{
    encode_meta, split_segment, ChunkPlan, LiveMessage, SegmentMeta, StreamEnd, StreamStart,
};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

/// Splits the input into (partition, header, value) records; a short tail is one last value.
fn records(mut data: &[u8]) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let take = |n: usize, d: &mut &[u8]| -> Vec<u8> {
        let n = n.min(d.len());
        let (a, b) = d.split_at(n);
        *d = b;
        a.to_vec()
    };
    let mut out = Vec::new();
    while !data.is_empty() {
        let p = take(1, &mut data);
        let hl = take(2, &mut data);
        let hl = if hl.len() == 2 {
            u16::from_be_bytes([hl[0], hl[1]]) as usize
        } else {
            0
        };
        let header = take(hl, &mut data);
        let vl = take(2, &mut data);
        let vl = if vl.len() == 2 {
            u16::from_be_bytes([vl[0], vl[1]]) as usize
        } else {
            0
        };
        let value = take(vl, &mut data);
        out.push((i32::from(p[0] % 4), header, value));
    }
    out
}

fn encode(recs: &[(i32, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (p, h, v) in recs {
        out.push(*p as u8);
        out.extend_from_slice(&(h.len() as u16).to_be_bytes());
        out.extend_from_slice(h);
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

#[test]
fn fuzz_kafka_record_decoder() {
    let crash_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes");
    let target = Target {
        name: "kafka_record",
        corpus: &corpus(),
        crash_dir: &crash_dir,
        default_budget: Duration::from_secs(8),
        max_len: 16 * 1024,
    };
    fuzz::run(&target, |data| {
        ingest(data);
    });
}

/// Feeds the records of `data` to a fresh store; returns it.
fn ingest(data: &[u8]) -> Arc<Store> {
    {
        let store = Arc::new(Store::new(&StoreConfig {
            cache_bytes: 1 << 20,
            segment_ttl: Duration::from_secs(60),
            window_segments: 6,
        }));
        // Small bounds so that eviction of never-completed segments is exercised too.
        let mut ingest = Ingest::new(ReassemblyLimits {
            max_bytes: 4096,
            max_segments: 2,
        });
        let mut apply = Apply::new(store.clone());
        for (partition, header, value) in records(data) {
            let record = Record {
                partition,
                offset: 0,
                header: (!header.is_empty()).then_some(&header[..]),
                value: &value,
            };
            apply.record(&mut ingest, record);
        }
        for summary in store.streams() {
            let _ = store.playlist(&summary.name);
        }
        store
    }
}

/// The seed is real: fed as is, it yields a stream with both segments.
#[test]
fn the_seed_makes_a_stream() {
    let seed = std::fs::read(corpus().join("kafka_record/broadcast-two-chunked-segments")).unwrap();
    let store = ingest(&seed);
    assert!(store.segment("cam", 7).is_some() && store.segment("cam", 8).is_some());
}

/// Writes the seed corpus: `cargo test -p cdn-edge --test fuzz -- --ignored`.
#[test]
#[ignore]
fn write_seed_corpus() {
    let start = LiveMessage::StreamStart(StreamStart {
        stream: "cam".into(),
        broadcast: "b1".into(),
        started_at_ms: 1_795_000_000_000,
        first_seq: 7,
    });
    let mut recs = vec![(0, encode_meta(&start), Vec::new())];
    for seq in 7..9u64 {
        let data: Vec<u8> = (0..600u32).map(|i| (i as u64 ^ seq) as u8).collect();
        let meta = SegmentMeta {
            disc_seq: 1,
            discontinuity: seq == 7,
            ..SegmentMeta::sample("cam", "b1", seq)
        };
        for (m, v) in split_segment(
            ChunkPlan {
                meta,
                max_chunk_bytes: 250,
            },
            &Bytes::from(data),
        ) {
            recs.push((0, encode_meta(&LiveMessage::Segment(m)), v.to_vec()));
        }
    }
    let end = LiveMessage::StreamEnd(StreamEnd {
        stream: "cam".into(),
        broadcast: "b1".into(),
        ended_at_ms: 1_795_000_004_000,
        last_seq: Some(8),
    });
    recs.push((0, encode_meta(&end), Vec::new()));
    let dir = corpus().join("kafka_record");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("broadcast-two-chunked-segments"), encode(&recs)).unwrap();
    std::fs::write(dir.join("one-segment-record"), encode(&recs[1..2])).unwrap();
}
