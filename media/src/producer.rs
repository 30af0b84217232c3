//! The Kafka side of the origin: a single task that turns closed segments and stream start/end events into
//! records on the topic.
//!
//! RTMP sessions never wait for the broker. They hand work over through a bounded channel and reserve the
//! segment's bytes from a byte budget (`--max-queue-bytes`); the reservation is returned only when the
//! broker acknowledged every chunk. While the broker is down, segments accumulate up to that budget and
//! are delivered in order when it returns (librdkafka retries them for ever: `message.timeout.ms=0`);
//! beyond it new segments are dropped and counted, so memory stays bounded and publishers keep streaming.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    encode_meta_as, split_segment, ChunkPlan, LiveMessage, SchemaVersion, SegmentMeta, META_HEADER,
};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _};
use rdkafka::ClientContext;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, error, info, warn};

/// Room reserved in each record for key, headers and Kafka's own framing, below `--max-message-bytes`.
const RECORD_OVERHEAD: usize = 16 * 1024;
/// The byte budget is counted in KiB so that a `u32` permit count covers any realistic budget.
const BUDGET_UNIT: usize = 1024;

/// Least time between two warnings about broker errors: an unreachable broker reports several a second.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Routes librdkafka's errors and logs into `tracing`, at most one warning per interval with a count of
/// what was suppressed, so a broker outage is visible without flooding the log.
#[derive(Default)]
pub struct ProducerContext {
    last: std::sync::Mutex<(Option<Instant>, u64)>,
}

impl ProducerContext {
    fn warn_limited(&self, what: &str, detail: &str) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.0.is_none_or(|t| t.elapsed() >= ERROR_LOG_INTERVAL) {
            warn!(suppressed = last.1, "Kafka producer {what}: {detail}");
            *last = (Some(Instant::now()), 0);
        } else {
            last.1 += 1;
        }
    }
}

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => self.warn_limited("error", &format!("{fac}: {message}")),
            RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice => {
                debug!(fac, "librdkafka: {message}")
            }
            _ => {}
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.warn_limited("error", &format!("{error} ({reason})"));
    }
}

impl rdkafka::producer::ProducerContext for ProducerContext {
    type DeliveryOpaque = Arc<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, in_flight: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            in_flight.fail(e.clone());
        }
    }
}

/// What one queued piece of work is, for counting and logging once the broker has answered for it.
enum Delivered {
    Control {
        stream: String,
    },
    Part {
        stream: String,
    },
    Segment {
        stream: String,
        seq: u64,
        chunks: usize,
        queued_at: Instant,
    },
}

/// The records of one piece of work (a segment's chunks, a part, a stream event) while librdkafka holds
/// them: each record's delivery report owns a clone, and the last clone dropped settles the work (counts
/// it, logs a failure, returns its budget) on librdkafka's delivery thread.
///
/// Why not a oneshot per record and a task awaiting them: that woke the runtime for every record
/// (four a second per stream with LL-HLS parts) to do what the delivery thread can do in passing.
pub struct InFlight {
    what: Delivered,
    failed: std::sync::Mutex<Option<KafkaError>>,
    stats: Arc<ProducerStats>,
    /// The queue budget this work holds; returned when the last record is settled (dropped after
    /// `drop` has counted it).
    _permit: Option<OwnedSemaphorePermit>,
}

impl InFlight {
    fn new(
        what: Delivered,
        stats: &Arc<ProducerStats>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Arc<Self> {
        Arc::new(Self {
            what,
            failed: std::sync::Mutex::new(None),
            stats: stats.clone(),
            _permit: permit,
        })
    }

    /// Notes that one of the records failed for good (the first failure is the one logged).
    fn fail(&self, e: KafkaError) {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let failed = self
            .failed
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let stats = &self.stats;
        match (&self.what, failed) {
            (Delivered::Control { .. }, None) => {}
            (Delivered::Part { .. }, None) => {
                stats.parts_delivered.fetch_add(1, Ordering::Relaxed);
            }
            (
                Delivered::Segment {
                    stream,
                    seq,
                    chunks,
                    queued_at,
                },
                None,
            ) => {
                stats.segments_delivered.fetch_add(1, Ordering::Relaxed);
                stats.produce_latency.observe(queued_at.elapsed());
                debug!(%stream, seq, chunks, ms = queued_at.elapsed().as_millis() as u64, "segment delivered");
            }
            (what, Some(e)) => {
                stats.delivery_errors.fetch_add(1, Ordering::Relaxed);
                match what {
                    Delivered::Control { stream } => {
                        error!(%stream, error = %e, "stream event not delivered")
                    }
                    Delivered::Part { stream } => {
                        error!(%stream, error = %e, "low-latency part not delivered")
                    }
                    Delivered::Segment { stream, seq, .. } => {
                        error!(%stream, seq, error = %e, "segment not delivered")
                    }
                }
            }
        }
    }
}

/// How long each call of the delivery-report thread waits for an event. rdkafka's own polling thread
/// (`FutureProducer`) uses 100 ms, and its wait loop spins for the sub-millisecond rest of every period
/// (the remaining time is truncated to whole milliseconds, so the last call does not block): about 1%
/// of a core whatever the load, ~12% of media's CPU at 20 publishers. A longer period makes that spin
/// ten times rarer; reports still arrive at once, and a stop takes at most this long.
const DELIVERY_POLL: Duration = Duration::from_secs(1);

/// librdkafka's producer plus the thread that serves its delivery reports (what `FutureProducer`
/// does, with a longer poll period). Dropping the last clone stops and joins the thread.
struct Kafka {
    producer: Arc<BaseProducer<ProducerContext>>,
    stop: Arc<AtomicBool>,
    poller: Option<JoinHandle<()>>,
}

impl Kafka {
    fn new(cfg: &ClientConfig) -> Result<Self, KafkaError> {
        let producer: Arc<BaseProducer<ProducerContext>> =
            Arc::new(cfg.create_with_context(ProducerContext::default())?);
        let stop = Arc::new(AtomicBool::new(false));
        let poller = std::thread::Builder::new()
            .name("kafka-delivery".into())
            .spawn({
                let (producer, stop) = (producer.clone(), stop.clone());
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        producer.poll(DELIVERY_POLL);
                    }
                }
            })
            .map_err(|e| {
                KafkaError::ClientCreation(format!("cannot start the delivery thread: {e}"))
            })?;
        Ok(Self {
            producer,
            stop,
            poller: Some(poller),
        })
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.poller.take() {
            let _ = t.join();
        }
    }
}

type Client = Arc<Kafka>;

/// Why the producer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// librdkafka refused the configuration.
    #[error("invalid Kafka producer configuration: {0}")]
    Config(#[from] KafkaError),
}

/// Why a segment was not queued. The caller logs it; the stream goes on.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The broker is not keeping up and the queue budget is spent.
    #[error("producer queue is full ({0} bytes waiting for the broker); segment dropped")]
    Full(usize),
    /// The producer task has stopped (shutting down).
    #[error("producer has stopped")]
    Closed,
    /// A low-latency part or init segment larger than one record (parts are never chunked: they
    /// are small, and the TS rendition still carries the media).
    #[error("{0} bytes do not fit in one record; dropped")]
    TooLarge(usize),
}

/// Settings of the producer.
pub struct ProducerSettings {
    pub brokers: String,
    pub topic: String,
    pub max_message_bytes: usize,
    /// Schema version of the `livedto` header written.
    pub livedto_version: SchemaVersion,
    pub max_queue_bytes: usize,
    pub extra: Vec<(String, String)>,
}

/// Counters shared with the HTTP endpoint and tests.
#[derive(Default)]
pub struct ProducerStats {
    /// Segments whose every chunk the broker acknowledged.
    pub segments_delivered: AtomicU64,
    /// Segments dropped because the queue budget was spent.
    pub segments_dropped: AtomicU64,
    /// Records that failed permanently.
    pub delivery_errors: AtomicU64,
    /// Segment close -> broker acknowledged its last chunk.
    pub produce_latency: crate::metrics::Histogram,
    /// Low-latency parts and init segments the broker acknowledged.
    pub parts_delivered: AtomicU64,
    /// Low-latency parts and init segments dropped (queue budget spent, or larger than a record).
    pub parts_dropped: AtomicU64,
}

enum Work {
    Control(LiveMessage),
    /// A low-latency part or init segment: one record.
    Single {
        msg: LiveMessage,
        data: Bytes,
        permit: OwnedSemaphorePermit,
    },
    Segment {
        meta: SegmentMeta,
        data: Bytes,
        permit: OwnedSemaphorePermit,
    },
}

/// Cheap handle the RTMP sessions use to publish.
#[derive(Clone)]
pub struct ProducerHandle {
    tx: mpsc::Sender<Work>,
    budget: Arc<Semaphore>,
    budget_units: usize,
    /// Largest record value (below `--max-message-bytes`).
    max_record_bytes: usize,
    /// Counters.
    pub stats: Arc<ProducerStats>,
}

/// Builds the librdkafka producer and returns the handle plus the task that drives it. The task ends when
/// every handle is dropped, after flushing what is queued (bounded by `flush_timeout`).
pub fn start(
    settings: ProducerSettings,
    flush_timeout: Duration,
) -> Result<(ProducerHandle, impl std::future::Future<Output = ()>), ProducerError> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &settings.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // The client refuses anything larger, so no record can exceed what the topic accepts.
        .set("message.max.bytes", settings.max_message_bytes.to_string())
        .set("batch.size", settings.max_message_bytes.to_string())
        // Retry for as long as it takes; the byte budget, not a timer, bounds what waits.
        .set("message.timeout.ms", "0")
        // librdkafka backs reconnection attempts off up to 10 s by default, so after an outage the
        // queued segments could wait that long for a broker that is already back, and edges would
        // take the silence for this origin's death (`--stale-after-target-durations`). One attempt a
        // second is cheap.
        .set("reconnect.backoff.max.ms", "1000")
        .set(
            "queue.buffering.max.kbytes",
            (settings.max_queue_bytes / 1024 + 64 * 1024).to_string(),
        )
        .set("queue.buffering.max.messages", "1000000")
        // Segments are already compressed video; a short linger keeps availability latency low.
        .set("linger.ms", "1")
        .set("compression.type", "none")
        // Records are keyed by stream name; partition them as the Java client does, so any client can
        // compute a stream's partition (`common::partition`).
        .set("partitioner", "murmur2_random");
    for (k, v) in &settings.extra {
        cfg.set(k, v);
    }
    let producer: Client = Arc::new(Kafka::new(&cfg)?);
    tokio::spawn(check_topic(producer.clone(), settings.topic.clone()));

    let budget_units = (settings.max_queue_bytes / BUDGET_UNIT).max(1);
    let budget = Arc::new(Semaphore::new(budget_units));
    let (tx, rx) = mpsc::channel(4096);
    let stats = Arc::new(ProducerStats::default());
    let handle = ProducerHandle {
        tx,
        budget: budget.clone(),
        budget_units,
        max_record_bytes: settings.max_message_bytes.saturating_sub(RECORD_OVERHEAD),
        stats: stats.clone(),
    };
    let task = run(
        producer,
        settings.topic,
        settings.max_message_bytes.saturating_sub(RECORD_OVERHEAD),
        settings.livedto_version,
        rx,
        stats,
        flush_timeout,
    );
    Ok((handle, task))
}

impl ProducerHandle {
    /// Queues a closed segment without waiting; refuses it when the budget is spent.
    pub fn send_segment(&self, meta: SegmentMeta, data: Bytes) -> Result<(), EnqueueError> {
        let units = data.len().div_ceil(BUDGET_UNIT).clamp(1, self.budget_units);
        let permit = match self.budget.clone().try_acquire_many_owned(units as u32) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(EnqueueError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.stats.segments_dropped.fetch_add(1, Ordering::Relaxed);
                let waiting = (self.budget_units - self.budget.available_permits()) * BUDGET_UNIT;
                return Err(EnqueueError::Full(waiting));
            }
        };
        self.tx
            .try_send(Work::Segment { meta, data, permit })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    self.stats.segments_dropped.fetch_add(1, Ordering::Relaxed);
                    EnqueueError::Full(self.budget_units * BUDGET_UNIT)
                }
                mpsc::error::TrySendError::Closed(_) => EnqueueError::Closed,
            })
    }

    /// Queues a low-latency part or init segment (`msg` is its metadata) as one record, without
    /// waiting; it shares the queue budget with segments, and is refused when that is spent. Records
    /// of one stream keep the order they were queued in.
    pub fn send_single(&self, msg: LiveMessage, data: Bytes) -> Result<(), EnqueueError> {
        let refuse = |e| {
            self.stats.parts_dropped.fetch_add(1, Ordering::Relaxed);
            Err(e)
        };
        if data.len() > self.max_record_bytes {
            return refuse(EnqueueError::TooLarge(data.len()));
        }
        let units = data.len().div_ceil(BUDGET_UNIT).clamp(1, self.budget_units);
        let permit = match self.budget.clone().try_acquire_many_owned(units as u32) {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(EnqueueError::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                return refuse(EnqueueError::Full(self.queued_bytes()))
            }
        };
        match self.tx.try_send(Work::Single { msg, data, permit }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                refuse(EnqueueError::Full(self.budget_units * BUDGET_UNIT))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EnqueueError::Closed),
        }
    }

    /// Queues a stream start/end message. These are small and must not be lost, so this waits for room
    /// in the channel, but never longer than a few seconds.
    pub async fn send_control(&self, msg: LiveMessage) -> Result<(), EnqueueError> {
        match tokio::time::timeout(Duration::from_secs(5), self.tx.send(Work::Control(msg))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EnqueueError::Closed),
            Err(_) => Err(EnqueueError::Full(self.budget_units * BUDGET_UNIT)),
        }
    }

    /// Bytes of segments waiting for the broker.
    pub fn queued_bytes(&self) -> usize {
        (self.budget_units - self.budget.available_permits()) * BUDGET_UNIT
    }
}

async fn run(
    producer: Client,
    topic: String,
    max_chunk_bytes: usize,
    version: SchemaVersion,
    mut rx: mpsc::Receiver<Work>,
    stats: Arc<ProducerStats>,
    flush_timeout: Duration,
) {
    info!(%topic, max_chunk_bytes, "kafka producer started");
    while let Some(work) = rx.recv().await {
        match work {
            Work::Control(msg) => {
                let stream = msg.stream().to_owned();
                let meta = encode_meta_as(&msg, version, 0);
                let in_flight = InFlight::new(
                    Delivered::Control {
                        stream: stream.clone(),
                    },
                    &stats,
                    None,
                );
                enqueue(&producer, &topic, &stream, &meta, &[], in_flight).await;
            }
            Work::Single { msg, data, permit } => {
                let stream = msg.stream().to_owned();
                let header = encode_meta_as(&msg, version, 0);
                let in_flight = InFlight::new(
                    Delivered::Part {
                        stream: stream.clone(),
                    },
                    &stats,
                    Some(permit),
                );
                enqueue(&producer, &topic, &stream, &header, &data, in_flight).await;
            }
            Work::Segment { meta, data, permit } => {
                let queued_at = Instant::now();
                let (stream, seq) = (meta.stream.clone(), meta.seq);
                let plan = ChunkPlan {
                    meta,
                    max_chunk_bytes,
                };
                let chunks = split_segment(plan, &data);
                let in_flight = InFlight::new(
                    Delivered::Segment {
                        stream: stream.clone(),
                        seq,
                        chunks: chunks.len(),
                        queued_at,
                    },
                    &stats,
                    Some(permit),
                );
                for (chunk_meta, value) in chunks {
                    let header = encode_meta_as(&LiveMessage::Segment(chunk_meta), version, 0);
                    enqueue(
                        &producer,
                        &topic,
                        &stream,
                        &header,
                        &value,
                        in_flight.clone(),
                    )
                    .await;
                }
            }
        }
    }
    info!("producer draining: flushing queued records");
    let flushed = tokio::task::spawn_blocking(move || producer.producer.flush(flush_timeout)).await;
    match flushed {
        Ok(Ok(())) => info!("producer flushed"),
        Ok(Err(e)) => {
            warn!(error = %e, "producer flush incomplete; some records were not delivered")
        }
        Err(e) => warn!(error = %e, "producer flush task failed"),
    }
}

/// Tells the operator, in words, whether the broker is reachable and the topic exists, retrying until
/// both hold: librdkafka alone would retry silently while segments pile up in the queue.
async fn check_topic(producer: Client, topic: String) {
    let mut delay = Duration::from_secs(2);
    loop {
        let (p, t) = (producer.clone(), topic.clone());
        let looked_up = tokio::task::spawn_blocking(move || {
            p.producer
                .client()
                .fetch_metadata(Some(&t), Duration::from_secs(5))
                .map(|m| {
                    m.topics()
                        .first()
                        .map(|t| (t.error().is_none(), t.partitions().len()))
                })
        })
        .await;
        match looked_up {
            Ok(Ok(Some((true, partitions)))) if partitions > 0 => {
                info!(%topic, partitions, "connected to Kafka");
                return;
            }
            Ok(Ok(_)) => warn!(
                %topic,
                "topic `{topic}` does not exist on the brokers: create it (see README, Deployment); segments wait in the queue meanwhile"
            ),
            Ok(Err(e)) => {
                warn!(error = %e, "Kafka brokers unreachable; retrying (segments wait in the queue)")
            }
            Err(_) => return,
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Hands one record to librdkafka, waiting (without blocking the runtime) while its local queue is full;
/// its delivery report settles `in_flight`, or a refusal here fails it.
async fn enqueue(
    producer: &Client,
    topic: &str,
    key: &str,
    header: &[u8],
    value: &[u8],
    in_flight: Arc<InFlight>,
) {
    let mut record = BaseRecord::with_opaque_to(topic, in_flight)
        .key(key)
        .payload(value)
        .headers(OwnedHeaders::new().insert(Header {
            key: META_HEADER,
            value: Some(header),
        }));
    let mut warned = false;
    loop {
        match producer.producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                if !warned {
                    warn!("librdkafka queue full; waiting for the broker");
                    warned = true;
                }
                record = back;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err((e, back)) => return back.delivery_opaque.fail(e),
        }
    }
}

/// A producer for tests of the code around it: no broker listens at its address, so nothing is ever
/// acknowledged and what is queued waits in the `max_queue_bytes` budget. The task is returned unrun:
/// while it is held, the channel stays open; once dropped, sends say the producer has stopped.
#[cfg(test)]
pub fn unconnected(
    max_queue_bytes: usize,
) -> (ProducerHandle, impl std::future::Future<Output = ()>) {
    let settings = ProducerSettings {
        brokers: "127.0.0.1:1".into(),
        topic: "t".into(),
        max_message_bytes: 1_000_000,
        livedto_version: SchemaVersion::V1,
        max_queue_bytes,
        extra: Vec::new(),
    };
    start(settings, Duration::from_secs(1)).expect("producer config accepted by librdkafka")
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{decode_meta, Reassembler};
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::mocking::MockCluster;
    use rdkafka::{Offset, TopicPartitionList};

    /// A producer to the mock cluster at `brokers`, topic `live`, with its driving task spawned.
    fn mock_producer(
        brokers: &str,
        max_message_bytes: usize,
        livedto_version: common::SchemaVersion,
    ) -> (ProducerHandle, tokio::task::JoinHandle<()>) {
        let (handle, task) = start(
            ProducerSettings {
                brokers: brokers.to_owned(),
                topic: "live".into(),
                max_message_bytes,
                livedto_version,
                max_queue_bytes: 64 << 20,
                extra: Vec::new(),
            },
            Duration::from_secs(5),
        )
        .expect("producer config accepted by librdkafka");
        (handle, tokio::spawn(task))
    }

    fn meta(seq: u64) -> SegmentMeta {
        SegmentMeta {
            disc_seq: 1,
            duration: 4.0,
            target_duration: 4,
            codecs: "avc1.64001f".into(),
            chunks: 0,
            ..SegmentMeta::sample("cam", "b", seq)
        }
    }

    /// A 3 MB segment (4 s at 6 Mbps) travels as records under the 1,000,000-byte bound and comes back whole.
    #[tokio::test]
    async fn large_segments_are_chunked_under_the_record_bound() {
        chunked_round_trip(common::SchemaVersion::V1).await;
    }

    /// The same with `--livedto-version 2`: the records say version 2 and decode to the same segment.
    #[tokio::test]
    async fn large_segments_round_trip_in_livedto_v2() {
        chunked_round_trip(common::SchemaVersion::V2).await;
    }

    async fn chunked_round_trip(version: common::SchemaVersion) {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("live", 1, 1).expect("topic");
        let (handle, task) = mock_producer(&cluster.bootstrap_servers(), 1_000_000, version);
        let data: Bytes = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        handle.send_segment(meta(7), data.clone()).expect("queued");
        let stats = handle.stats.clone();
        drop(handle);
        task.await.expect("producer task");
        assert_eq!(stats.segments_delivered.load(Ordering::Relaxed), 1);

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "t")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("live", 0, Offset::Beginning)
            .expect("tpl");
        consumer.assign(&tpl).expect("assign");
        let mut reassembler = Reassembler::new(16 << 20, 4);
        let mut whole = None;
        let mut records = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while whole.is_none() && Instant::now() < deadline {
            let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let msg = msg.expect("record");
            records += 1;
            let value = msg.payload().unwrap_or_default();
            assert!(
                value.len() + 16 * 1024 <= 1_000_000,
                "record of {} bytes",
                value.len()
            );
            assert_eq!(msg.key(), Some(&b"cam"[..]));
            let header = msg.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == META_HEADER)
                    .and_then(|h| h.value)
            });
            let v: serde_json::Value =
                serde_json::from_slice(header.expect("header")).expect("json");
            let expected = if version == common::SchemaVersion::V2 {
                2
            } else {
                1
            };
            assert_eq!(v["v"], expected);
            let LiveMessage::Segment(m) = decode_meta(header).expect("meta") else {
                panic!("expected a segment chunk");
            };
            whole = reassembler.push(m, value).expect("consistent");
        }
        let whole = whole.expect("segment reassembled");
        assert_eq!(records, 4);
        assert_eq!(whole.meta.seq, 7);
        assert_eq!(whole.data, data);
    }

    /// Each stream's records land on the partition `common::partition_for` computes, the Java client's
    /// choice for that key.
    #[tokio::test]
    async fn streams_land_on_the_java_clients_partition() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("live", 12, 1).expect("topic");
        let (handle, task) = mock_producer(
            &cluster.bootstrap_servers(),
            1_000_000,
            common::SchemaVersion::V1,
        );
        let streams = ["mystream", "cam-1", "fault-cam", "a", "studio/b", "x-9"];
        for stream in streams {
            let meta = SegmentMeta {
                chunks: 0,
                ..SegmentMeta::sample(stream, "b", 1)
            };
            handle
                .send_segment(meta, Bytes::from_static(b"ts"))
                .expect("queued");
        }
        drop(handle);
        task.await.expect("producer task");

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "t")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..12 {
            tpl.add_partition_offset("live", p, Offset::Beginning)
                .expect("tpl");
        }
        consumer.assign(&tpl).expect("assign");
        let mut seen = std::collections::BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < streams.len() && Instant::now() < deadline {
            let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let msg = msg.expect("record");
            let key = String::from_utf8(msg.key().expect("keyed").to_vec()).expect("utf-8");
            seen.insert(key, msg.partition() as u32);
        }
        assert_eq!(seen.len(), streams.len(), "every stream's record arrived");
        let distinct: std::collections::BTreeSet<u32> = seen.values().copied().collect();
        assert!(
            distinct.len() > 1,
            "streams spread over partitions: {seen:?}"
        );
        for (stream, partition) in seen {
            assert_eq!(partition, common::partition_for(&stream, 12), "{stream}");
        }
    }

    /// A low-latency part goes out as one record with its metadata; one larger than a record is
    /// refused and counted, never chunked.
    #[tokio::test]
    async fn parts_travel_as_single_records_and_oversized_ones_are_dropped() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic("live", 1, 1).expect("topic");
        let (handle, task) = mock_producer(
            &cluster.bootstrap_servers(),
            100_000,
            common::SchemaVersion::V1,
        );
        let part = |size: usize| common::PartMeta {
            stream: "cam".into(),
            broadcast: "b".into(),
            seq: 7,
            part: 2,
            duration: 0.334,
            independent: false,
            last: false,
            disc_seq: 1,
            discontinuity: false,
            init: 7,
            target_duration: 2,
            part_target: 0.334,
            closed_at_ms: 0,
            size: size as u64,
            crc32: 0,
        };
        let data = Bytes::from(vec![5u8; 50_000]);
        handle
            .send_single(LiveMessage::Part(part(data.len())), data.clone())
            .expect("queued");
        let big = Bytes::from(vec![0u8; 100_000]);
        assert!(matches!(
            handle.send_single(LiveMessage::Part(part(big.len())), big),
            Err(EnqueueError::TooLarge(100_000))
        ));
        let stats = handle.stats.clone();
        drop(handle);
        task.await.expect("producer task");
        assert_eq!(stats.parts_delivered.load(Ordering::Relaxed), 1);
        assert_eq!(stats.parts_dropped.load(Ordering::Relaxed), 1);

        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "t")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("live", 0, Offset::Beginning)
            .expect("tpl");
        consumer.assign(&tpl).expect("assign");
        let deadline = Instant::now() + Duration::from_secs(20);
        let msg = loop {
            assert!(Instant::now() < deadline, "no record");
            if let Some(m) = consumer.poll(Duration::from_millis(200)) {
                break m.expect("record");
            }
        };
        assert_eq!(msg.key(), Some(&b"cam"[..]));
        assert_eq!(msg.payload(), Some(&data[..]));
        let header = msg.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == META_HEADER)
                .and_then(|h| h.value)
        });
        assert_eq!(
            decode_meta(header).expect("meta"),
            LiveMessage::Part(part(data.len()))
        );
    }

    #[tokio::test]
    async fn a_full_budget_drops_new_segments_instead_of_blocking() {
        // No broker at all: nothing is ever acknowledged, so the budget only fills.
        let (handle, _task) = unconnected(1 << 20);
        let seg = Bytes::from(vec![0u8; 400_000]);
        assert!(handle.send_segment(meta(1), seg.clone()).is_ok());
        assert!(handle.send_segment(meta(2), seg.clone()).is_ok());
        assert!(matches!(
            handle.send_segment(meta(3), seg),
            Err(EnqueueError::Full(_))
        ));
        assert_eq!(handle.stats.segments_dropped.load(Ordering::Relaxed), 1);
    }
}
