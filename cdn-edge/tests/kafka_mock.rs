//! The consumer against librdkafka's in-process mock cluster: waiting for a topic that does not exist
//! yet, assigning every partition, and records produced by a real client reaching the store.
//!
//! The mock answers every timestamp lookup with "no such record" (offset -1), so here the consumer
//! always starts at the end of each partition and the test produces after the assignment. Seeking by
//! time against a real broker is covered by the end-to-end tests (cold edge).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cdn_edge::kafka::{Consumer, ConsumerSettings, IngestStats};
use cdn_edge::stats::Stats;
use cdn_edge::store::{Store, StoreConfig};
use common::{
    encode_meta, split_segment, ChunkPlan, LiveMessage, SegmentMeta, StreamEnd, META_HEADER,
};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "live-topic";

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn segment_meta(stream: &str, seq: u64) -> SegmentMeta {
    SegmentMeta {
        chunks: 0,
        ..SegmentMeta::sample(stream, "b1", seq)
    }
}

fn data(seq: u64) -> Bytes {
    Bytes::from(
        (0..5_000u64)
            .map(|i| (i * 7 + seq) as u8)
            .collect::<Vec<_>>(),
    )
}

fn send(producer: &BaseProducer, partition: i32, stream: &str, header: &[u8], value: &[u8]) {
    producer
        .send(
            BaseRecord::to(TOPIC)
                .partition(partition)
                .key(stream)
                .payload(value)
                .headers(OwnedHeaders::new().insert(Header {
                    key: META_HEADER,
                    value: Some(header),
                })),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
}

fn produce_segment(producer: &BaseProducer, partition: i32, stream: &str, seq: u64) {
    let parts = split_segment(
        ChunkPlan {
            meta: segment_meta(stream, seq),
            max_chunk_bytes: 2_000,
        },
        &data(seq),
    );
    for (meta, value) in parts {
        send(
            producer,
            partition,
            stream,
            &encode_meta(&LiveMessage::Segment(meta)),
            &value,
        );
    }
    producer.flush(Duration::from_secs(5)).expect("flush");
}

struct Running {
    /// The consumer's ingest counters.
    ingest: Arc<IngestStats>,
    cancel: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(bootstrap: &str, store: &Arc<Store>) -> Running {
    start_with(
        ConsumerSettings {
            retry_every: Duration::from_millis(200),
            ..ConsumerSettings::new(bootstrap, TOPIC)
        },
        store,
    )
}

fn start_with(settings: ConsumerSettings, store: &Arc<Store>) -> Running {
    let consumer = Consumer::new(settings).expect("consumer");
    let ingest = consumer.ingest_stats();
    let cancel = CancellationToken::new();
    let thread = std::thread::spawn({
        let (store, cancel) = (store.clone(), cancel.clone());
        move || consumer.run(store, cancel)
    });
    Running {
        ingest,
        cancel,
        thread: Some(thread),
    }
}

#[test]
fn consumes_every_partition_of_a_topic_created_after_start() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let store = Arc::new(Store::new(&StoreConfig {
        cache_bytes: 64 << 20,
        segment_ttl: Duration::from_secs(60),
        window_segments: 6,
    }));
    let running = start(&bootstrap, &store);

    // The topic is missing: the consumer keeps retrying instead of exiting.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(Stats::get(&store.stats().partitions_assigned), 0);
    assert!(!running.thread.as_ref().expect("running").is_finished());
    cluster.create_topic(TOPIC, 2, 1).expect("create topic");
    wait_until("both partitions assigned", Duration::from_secs(10), || {
        Stats::get(&store.stats().partitions_assigned) == 2
    });

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    // The assignment starts at the end of each partition, which librdkafka resolves asynchronously:
    // keep producing numbered segments until the stream shows up, then check the next ones exactly.
    let mut seq = 100;
    wait_until("first segment of cam", Duration::from_secs(15), || {
        produce_segment(&producer, 0, "cam", seq);
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
        store.playlist("cam").is_some()
    });
    let first = seq;
    for s in first..first + 3 {
        produce_segment(&producer, 0, "cam", s);
    }
    // Another stream on the other partition.
    let mut other = 7;
    wait_until("first segment of other", Duration::from_secs(15), || {
        produce_segment(&producer, 1, "other", other);
        other += 1;
        std::thread::sleep(Duration::from_millis(100));
        store.playlist("other").is_some()
    });
    wait_until("cam's last segment", Duration::from_secs(10), || {
        store.segment("cam", first + 2).is_some()
    });
    for s in first..first + 3 {
        assert_eq!(store.segment("cam", s), Some(data(s)), "segment {s}");
    }

    // A garbage record is counted and dropped; the end of the broadcast ends the playlist.
    send(&producer, 0, "cam", b"{not json", b"junk");
    let end = LiveMessage::StreamEnd(StreamEnd {
        stream: "cam".into(),
        broadcast: "b1".into(),
        ended_at_ms: 0,
        last_seq: Some(first + 2),
    });
    send(&producer, 0, "cam", &encode_meta(&end), b"");
    producer.flush(Duration::from_secs(5)).expect("flush");
    wait_until("ENDLIST", Duration::from_secs(10), || {
        store
            .playlist("cam")
            .is_some_and(|p| p.ends_with(b"#EXT-X-ENDLIST\n"))
    });
    assert_eq!(Stats::get(&running.ingest.bad_messages), 1);
    let text = String::from_utf8(store.playlist("cam").expect("known").to_vec()).expect("utf8");
    assert!(text.contains(&format!("\n{}.ts\n", first + 2)), "{text}");

    // Cancelling stops the consumer promptly.
    let stopped = Instant::now();
    drop(running);
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
}

#[test]
fn bad_records_through_kafka_are_counted_dropped_and_never_served() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 1, 1).expect("create topic");
    let store = Arc::new(Store::new(&StoreConfig {
        cache_bytes: 64 << 20,
        segment_ttl: Duration::from_secs(60),
        window_segments: 20,
    }));
    let running = start(&bootstrap, &store);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    let mut seq = 100;
    wait_until("first segment", Duration::from_secs(15), || {
        produce_segment(&producer, 0, "cam", seq);
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
        store.playlist("cam").is_some()
    });
    let stats = running.ingest.clone();
    let (bad0, rejected0) = (
        Stats::get(&stats.bad_messages),
        Stats::get(&stats.rejected_chunks),
    );
    let chunks = |s: u64| {
        split_segment(
            ChunkPlan {
                meta: segment_meta("cam", s),
                max_chunk_bytes: 2_000,
            },
            &data(s),
        )
    };
    // Truncated: the last chunk of `seq` never comes.
    let truncated = seq;
    let parts = chunks(truncated);
    for (meta, value) in &parts[..parts.len() - 1] {
        send(
            &producer,
            0,
            "cam",
            &encode_meta(&LiveMessage::Segment(meta.clone())),
            value,
        );
    }
    // Bad checksum: one byte of the middle chunk flipped.
    let corrupt = seq + 1;
    for (i, (meta, value)) in chunks(corrupt).into_iter().enumerate() {
        let mut v = value.to_vec();
        if i == 1 {
            v[10] ^= 0xff;
        }
        send(
            &producer,
            0,
            "cam",
            &encode_meta(&LiveMessage::Segment(meta)),
            &v,
        );
    }
    // An unknown schema version, a header that is not JSON, and no header at all.
    send(
        &producer,
        0,
        "cam",
        br#"{"v":2,"kind":"segment","stream":"cam"}"#,
        b"x",
    );
    send(&producer, 0, "cam", b"\xff\xfe{", b"x");
    producer
        .send(
            BaseRecord::to(TOPIC)
                .partition(0)
                .key("cam")
                .payload(&b"x"[..]),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
    // Then good segments again.
    let good = seq + 2;
    for s in good..good + 2 {
        produce_segment(&producer, 0, "cam", s);
    }
    wait_until(
        "the good segments after the bad ones",
        Duration::from_secs(10),
        || store.segment("cam", good + 1).is_some(),
    );
    assert_eq!(store.segment("cam", truncated), None);
    assert_eq!(store.segment("cam", corrupt), None);
    assert_eq!(store.segment("cam", good), Some(data(good)));
    assert_eq!(
        Stats::get(&stats.bad_messages) - bad0,
        3,
        "v2, not JSON, no header"
    );
    // The checksum failure; the truncated segment is abandoned when the next one of its stream starts.
    assert!(Stats::get(&stats.rejected_chunks) - rejected0 >= 1);
    let text = String::from_utf8(store.playlist("cam").expect("known").to_vec()).expect("utf8");
    assert!(
        !text.contains(&format!("{truncated}.ts")) && !text.contains(&format!("{corrupt}.ts")),
        "{text}"
    );
}

fn ended(store: &Store, stream: &str) -> bool {
    store
        .playlist(stream)
        .is_some_and(|p| p.ends_with(b"#EXT-X-ENDLIST\n"))
}

/// An origin that goes silent has its playlist ended, but only on silence while the broker answers:
/// a broker outage counts for nothing, and neither does the time before the last sign of trouble.
#[test]
fn silence_ends_a_playlist_only_while_the_broker_answers() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, 1, 1).expect("create topic");
    let bootstrap = cluster.bootstrap_servers();
    let store = Arc::new(Store::new(&StoreConfig {
        cache_bytes: 64 << 20,
        segment_ttl: Duration::from_secs(60),
        window_segments: 6,
    }));
    // `sample` segments have a 2 s target duration: 2 of them are 4 s of silence.
    let _running = start_with(
        ConsumerSettings {
            retry_every: Duration::from_millis(200),
            stale_after: 2,
            ..ConsumerSettings::new(&bootstrap, TOPIC)
        },
        &store,
    );
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    let mut seq = 100;
    wait_until("first segment of cam", Duration::from_secs(15), || {
        produce_segment(&producer, 0, "cam", seq);
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
        store.playlist("cam").is_some()
    });

    // The broker goes away for twice the limit: the playlist stays live.
    cluster.broker_down(1).expect("broker down");
    std::thread::sleep(Duration::from_secs(8));
    assert!(!ended(&store, "cam"), "ended during a broker outage");
    assert_eq!(Stats::get(&store.stats().streams_ended_silent), 0);

    // Back: the silence counts from the last trouble, not from the last segment.
    cluster.broker_up(1).expect("broker up");
    let up = Instant::now();
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(
        !ended(&store, "cam"),
        "ended {:?} after the broker came back",
        up.elapsed()
    );
    wait_until("ENDLIST after silence", Duration::from_secs(10), || {
        ended(&store, "cam")
    });
    eprintln!("ended {:?} after the broker came back", up.elapsed());
    assert_eq!(Stats::get(&store.stats().streams_ended_silent), 1);

    // The origin was only late: its next segment opens the playlist again, contiguously.
    produce_segment(&producer, 0, "cam", seq);
    wait_until("reopened", Duration::from_secs(10), || {
        !ended(&store, "cam")
    });
    assert!(store.segment("cam", seq).is_some());
}
