//! The Kafka side of the edge: every partition of the topic, from a little while ago, into the store.
//!
//! Every edge must see every message, so partitions are `assign`ed explicitly instead of joining a
//! consumer group (which would share them out between edges). On start the consumer seeks each partition
//! to the first record newer than `now - lookback`, so a new or restarted edge serves the whole live
//! window at once instead of waiting for it to fill.
//!
//! [`Ingest`] is the broker-free part (record -> metadata -> reassembled segment -> store), driven by
//! [`Consumer::run`] with librdkafka's `BaseConsumer` on one blocking thread: the store is synchronous,
//! so a plain poll loop is the simplest correct shape.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    decode_meta, CompleteSegment, LiveMessage, Reassembler, ReassemblyError, SegmentMeta,
    META_HEADER,
};
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::stats::{ConsumerLag, Stats};
use crate::store::{Inserted, Store};

/// How long one metadata or offset lookup may take before it is retried.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a poll blocks, which is also how quickly the loop notices cancellation.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Least time between two warnings about consumption errors (a down broker reports many).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// Least time between two start-up "still waiting" warnings: visible, without a line every retry.
const RETRY_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// How often live streams are checked for an origin that went silent.
const SILENCE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the high-watermark lookup behind a silence verdict may take; a broker that does not answer
/// in time counts as unreachable, which postpones the verdict.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);

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

/// Where and how to consume.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Kafka bootstrap servers, comma-separated.
    pub brokers: String,
    /// Topic to read.
    pub topic: String,
    /// How far back to start reading on start.
    pub lookback: Lookback,
    /// Extra librdkafka settings (TLS, SASL, tuning), applied last.
    pub kafka_options: Vec<(String, String)>,
    /// Bounds of segment reassembly.
    pub reassembly: ReassemblyLimits,
    /// How often to look for partitions added to the topic.
    pub metadata_refresh: Duration,
    /// Pause between attempts while the broker is unreachable or the topic missing.
    pub retry_every: Duration,
    /// Target durations without a new segment after which a live playlist is ended; 0: never.
    pub stale_after: u32,
}

impl ConsumerSettings {
    /// Settings with the usual timings for `brokers` and `topic`.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topic.into(),
            lookback: Lookback::Window(6),
            kafka_options: Vec::new(),
            reassembly: ReassemblyLimits::default(),
            metadata_refresh: Duration::from_secs(30),
            retry_every: Duration::from_secs(2),
            stale_after: 4,
        }
    }
}

/// How far back a starting edge reads the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookback {
    /// Exactly this far.
    Fixed(Duration),
    /// Far enough for a full window of this many segments: (segments + 1) target durations, taking
    /// the longest target duration named by the newest records of the partitions (see
    /// [`window_lookback`]).
    Window(usize),
}

/// Records read from the end of each partition to learn the streams' target durations.
const PROBE_RECORDS: i64 = 4;
/// Longest wait for those records.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Lookback when the topic names no target duration (empty, or only foreign records).
const FALLBACK_LOOKBACK: Duration = Duration::from_secs(30);
/// Bounds of a window-derived lookback.
const MIN_LOOKBACK: Duration = Duration::from_secs(4);
const MAX_WINDOW_LOOKBACK: Duration = Duration::from_secs(60);

/// The lookback a full window of `window` segments needs when the longest target duration (seconds)
/// among the streams is `target`: the oldest listed segment closed (and was produced) at most
/// `window` target durations ago; one more covers a late close. `None` without a target.
///
/// Why not a fixed 30 s: with low-latency parts on, the topic carries every stream twice (TS segments
/// and fMP4 parts), and reading 30 s of it made a starting edge take 1.3 s for 20 streams where
/// 14 s, all a 6-segment window of 2 s segments needs, take 0.7 s.
pub fn window_lookback(window: usize, target: Option<u32>) -> Option<Duration> {
    let target = target.filter(|&t| t > 0)?;
    let secs = (window as u64 + 1).saturating_mul(u64::from(target));
    Some(Duration::from_secs(secs).clamp(MIN_LOOKBACK, MAX_WINDOW_LOOKBACK))
}

/// Why the consumer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// librdkafka refused the configuration (e.g. an unknown `--kafka-option`).
    #[error("invalid Kafka consumer configuration: {0}")]
    Config(#[from] KafkaError),
}

/// Why looking up the topic's partitions or start offsets failed (retried, never fatal).
#[derive(Debug, thiserror::Error)]
enum LookupError {
    /// The broker did not answer or answered with an error.
    #[error("{0}")]
    Kafka(#[from] KafkaError),
    /// The broker answered, but the topic is not there (yet).
    #[error("topic `{topic}` is not available: {code}")]
    Topic {
        /// Topic name.
        topic: String,
        /// What the broker said about it.
        code: RDKafkaErrorCode,
    },
    /// One partition's offset lookup failed (e.g. its leader is being elected).
    #[error("partition {partition}: {error}")]
    Partition {
        /// Partition id.
        partition: i32,
        /// The failure.
        error: KafkaError,
    },
}

/// What an operator should do about a failed start-up lookup, in one phrase.
fn start_advice(e: &LookupError, settings: &ConsumerSettings) -> String {
    match e {
        LookupError::Topic {
            code: RDKafkaErrorCode::UnknownTopicOrPartition,
            ..
        } => format!(
            "topic `{}` does not exist: create it (README, Deployment) or fix --topic",
            settings.topic
        ),
        LookupError::Kafka(KafkaError::MetadataFetch(
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::Resolve,
        )) => format!(
            "cannot reach the Kafka broker at {} (is it running? are --kafka-brokers and any \
             TLS/SASL --kafka-option settings right?)",
            settings.brokers
        ),
        LookupError::Kafka(KafkaError::MetadataFetch(
            RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        )) => "the broker refused this client (check the SASL/TLS --kafka-option settings and the \
               topic's ACLs)"
            .to_owned(),
        _ => format!("cannot look up topic `{}`", settings.topic),
    }
}

/// The broker-free ingest path: records in, verified segments and stream events into the store.
pub struct Ingest {
    store: Arc<Store>,
    limits: ReassemblyLimits,
    reassemblers: HashMap<i32, Reassembler>,
    /// The partition each stream's segments come from (pruned to the streams the store still knows).
    partitions: HashMap<String, i32>,
    /// Whether records now arrive as they are produced. Segments read from the lookback window at start
    /// became available late because this edge just started, not because the path is slow, so their
    /// latency is not observed.
    caught_up: bool,
}

impl Ingest {
    /// An ingest path feeding `store`.
    pub fn new(store: Arc<Store>, limits: ReassemblyLimits) -> Self {
        Self {
            store,
            limits,
            reassemblers: HashMap::new(),
            partitions: HashMap::new(),
            caught_up: true,
        }
    }

    /// Says whether records are being read as they are produced (see the `caught_up` field).
    pub fn set_caught_up(&mut self, caught_up: bool) {
        self.caught_up = caught_up;
    }

    /// Handles one record of `partition`: its `livedto` header (if any) and its value. Never panics on
    /// bad input: unusable records are logged, counted and dropped.
    pub fn record(&mut self, partition: i32, meta_header: Option<&[u8]>, value: &[u8]) {
        Stats::add(&self.store.stats().records, 1);
        let msg = match decode_meta(meta_header) {
            Ok(msg) => msg,
            Err(e) => return self.bad_message(partition, &e),
        };
        if let Err(e) = common::validate_stream_name(msg.stream()) {
            return self.bad_message(partition, &e);
        }
        match msg {
            LiveMessage::StreamStart(s) => info!(
                stream = %s.stream,
                broadcast = %s.broadcast,
                first_seq = s.first_seq,
                "broadcast started"
            ),
            LiveMessage::StreamEnd(e) => {
                let ended = self.store.end_stream(&e);
                info!(
                    stream = %e.stream,
                    broadcast = %e.broadcast,
                    last_seq = ?e.last_seq,
                    playlist_ended = ended,
                    "broadcast ended"
                );
            }
            LiveMessage::Segment(meta) => self.chunk(partition, meta, value),
            LiveMessage::Init(meta) => {
                if self.verified(partition, meta.size, meta.crc32, value) {
                    self.store.insert_init(&meta, Bytes::copy_from_slice(value));
                }
            }
            LiveMessage::Part(meta) => {
                if self.verified(partition, meta.size, meta.crc32, value)
                    && self.store.insert_part(&meta, Bytes::copy_from_slice(value))
                {
                    let latency_ms = i128::from(now_ms()) - i128::from(meta.closed_at_ms);
                    if self.caught_up {
                        let observed = u64::try_from(latency_ms.max(0)).unwrap_or(u64::MAX);
                        self.store
                            .stats()
                            .part_availability_latency
                            .observe(Duration::from_millis(observed));
                    }
                    debug!(stream = %meta.stream, seq = meta.seq, part = meta.part, latency_ms, "part available");
                }
            }
        }
    }

    /// Whether a single-record object (init segment, part) arrived as the origin sent it.
    fn verified(&self, partition: i32, size: u64, crc32: u32, value: &[u8]) -> bool {
        if value.len() as u64 == size && crc32fast::hash(value) == crc32 {
            return true;
        }
        let n = Stats::add(&self.store.stats().rejected_chunks, 1);
        if should_log(n) {
            warn!(
                partition,
                rejected_so_far = n,
                "low-latency record with wrong size or checksum dropped"
            );
        }
        false
    }

    fn chunk(&mut self, partition: i32, meta: SegmentMeta, value: &[u8]) {
        let limits = self.limits;
        let reassembler = self
            .reassemblers
            .entry(partition)
            .or_insert_with(|| Reassembler::new(limits.max_bytes, limits.max_segments));
        let evicted_before = reassembler.evicted();
        let result = reassembler.push(meta, value);
        let evicted = reassembler.evicted() - evicted_before;
        let stats = self.store.stats();
        if evicted > 0 && should_log(Stats::add(&stats.reassembly_evictions, evicted)) {
            warn!(
                partition,
                evicted,
                evicted_so_far = Stats::get(&stats.reassembly_evictions),
                "incomplete segments dropped to stay within reassembly bounds"
            );
        }
        match result {
            Ok(None) => {}
            Ok(Some(segment)) => self.store_segment(partition, segment),
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
            }
        }
    }

    fn store_segment(&mut self, partition: i32, segment: CompleteSegment) {
        let stream = segment.meta.stream.clone();
        if self.partitions.get(&stream) != Some(&partition) {
            self.partitions.insert(stream.clone(), partition);
        }
        let broadcast = segment.meta.broadcast.clone();
        let seq = segment.meta.seq;
        let size = segment.data.len();
        let closed_at_ms = segment.meta.closed_at_ms;
        let outcome = self.store.insert_segment(segment);
        match outcome {
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
            self.store
                .stats()
                .availability_latency
                .observe(Duration::from_millis(observed));
        }
        debug!(stream = %stream, seq, size, latency_ms, "segment available");
    }

    fn bad_message(&self, partition: i32, error: &dyn std::error::Error) {
        let n = Stats::add(&self.store.stats().bad_messages, 1);
        if should_log(n) {
            warn!(partition, dropped_so_far = n, error = %error, "dropping record with unusable metadata");
        }
    }
}

/// A stream of bad records must not turn into a stream of log lines: log the first few, then at
/// powers of two.
fn should_log(n: u64) -> bool {
    n <= 10 || n.is_power_of_two()
}

/// librdkafka callbacks: like the default, except that client errors are rate-limited (while a broker
/// is down librdkafka reports "all brokers down" many times a second, which would bury everything else)
/// and statistics are turned into per-partition lag.
#[derive(Default)]
struct EdgeContext {
    /// When an error was last logged, and how many were suppressed since.
    last_error: Mutex<(Option<Instant>, u64)>,
    /// Where the lag from the latest statistics goes.
    lag: Arc<ConsumerLag>,
    /// When the client last reported trouble reaching the brokers (any error event): silence before
    /// then says nothing about the origins.
    trouble: Mutex<Option<Instant>>,
}

impl EdgeContext {
    fn note_trouble(&self) {
        *self.trouble.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    fn trouble_at(&self) -> Option<Instant> {
        *self.trouble.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ClientContext for EdgeContext {
    fn stats(&self, statistics: Statistics) {
        self.lag.replace(partition_lags(&statistics));
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel as L;
        match level {
            // Connection failures also come through `error` (rate-limited) and the start-up retry
            // message says what to do; at error level they would only repeat it.
            _ if fac == "FAIL" => debug!(target: "librdkafka", "{fac} {message}"),
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "{fac} {message}")
            }
            L::Warning => warn!(target: "librdkafka", "{fac} {message}"),
            L::Notice | L::Info => info!(target: "librdkafka", "{fac} {message}"),
            L::Debug => debug!(target: "librdkafka", "{fac} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.note_trouble();
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.0.is_none_or(|t| t.elapsed() >= ERROR_LOG_INTERVAL) {
            warn!(error = %error, reason, suppressed = last.1, "Kafka client error");
            *last = (Some(Instant::now()), 0);
        } else {
            last.1 += 1;
        }
    }
}

impl ConsumerContext for EdgeContext {}

/// Lag of every assigned partition in `statistics` (the edge reads one topic). librdkafka's own
/// `consumer_lag` is not used: it counts from the committed offset, and an edge never commits.
fn partition_lags(statistics: &Statistics) -> BTreeMap<i32, i64> {
    statistics
        .topics
        .values()
        .flat_map(|t| t.partitions.values())
        // -1 is librdkafka's internal "unassigned" partition.
        .filter(|p| p.partition >= 0)
        .filter_map(|p| Some((p.partition, lag(p.hi_offset, p.app_offset, p.next_offset)?)))
        .collect()
}

/// The high watermark minus the offset of the next record the edge will be handed. Before anything was
/// consumed (no application offset) the fetch position stands in; without a known high watermark
/// there is no lag to report, rather than a made-up number. librdkafka marks unknown offsets negative.
fn lag(high_watermark: i64, app_offset: i64, next_offset: i64) -> Option<i64> {
    if high_watermark < 0 {
        return None;
    }
    let position = if app_offset >= 0 {
        app_offset
    } else {
        next_offset
    };
    (position >= 0).then(|| (high_watermark - position).max(0))
}

/// The Kafka consumer of the edge.
pub struct Consumer {
    inner: BaseConsumer<EdgeContext>,
    settings: ConsumerSettings,
    lag: Arc<ConsumerLag>,
}

impl Consumer {
    /// Builds the librdkafka client (no connection is made yet).
    pub fn new(settings: ConsumerSettings) -> Result<Self, ConsumerError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &settings.brokers)
            // librdkafka wants a group id even though partitions are assigned, never subscribed:
            // a unique one makes sure this edge never shares partitions or offsets with another.
            .set("group.id", unique_group_id())
            .set("client.id", "cdn-edge")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("allow.auto.create.topics", "false")
            // Reached when the next offset to read is gone: this edge fell further behind than the
            // topic's retention, or the topic was recreated. librdkafka's `earliest` would replay the
            // whole retention (an hour of every stream) before anything live, `latest` would skip the
            // window a player needs; `error` hands it to `run`, which skips to the live window.
            .set("auto.offset.reset", "error")
            // librdkafka's and the Java client's default. Apache Kafka answers a waiting fetch as soon as
            // a record arrives (fetch.min.bytes=1), so this costs no latency; it only bounds how often an
            // idle edge asks each broker.
            .set("fetch.wait.max.ms", "500")
            // librdkafka's prefetch queue is per partition; its default (64 MiB) times many partitions
            // would be unbounded in practice.
            .set("queued.max.messages.kbytes", "16384")
            // Statistics carry each partition's high watermark and position, i.e. the lag /metrics
            // shows, at no extra broker request; a few seconds is fresh enough for a scrape.
            .set("statistics.interval.ms", "5000")
            // librdkafka backs reconnection attempts off up to 10 s by default; after a broker outage
            // that would keep viewers waiting for segments already on the broker. One attempt a second
            // is cheap.
            .set("reconnect.backoff.max.ms", "1000");
        for (k, v) in &settings.kafka_options {
            cfg.set(k, v);
        }
        let lag = Arc::new(ConsumerLag::default());
        let context = EdgeContext {
            lag: lag.clone(),
            ..EdgeContext::default()
        };
        let inner: BaseConsumer<EdgeContext> = cfg.create_with_context(context)?;
        Ok(Self {
            inner,
            settings,
            lag,
        })
    }

    /// Per-partition lag, refreshed from librdkafka's statistics while [`Consumer::run`] polls.
    pub fn lag(&self) -> Arc<ConsumerLag> {
        self.lag.clone()
    }

    /// Consumes until `cancel` fires: waits for the topic, seeks every partition to `now - lookback`,
    /// then feeds every record into `store`. Blocks; run it on a blocking thread.
    pub fn run(self, store: Arc<Store>, cancel: CancellationToken) {
        let Some((assignment, lookback)) = self.wait_for_start_offsets(&cancel) else {
            return;
        };
        if let Err(e) = self.inner.assign(&assignment) {
            // Only fails for a malformed list, which we built; nothing to retry.
            warn!(error = %e, "cannot assign partitions; consumer stopped");
            return;
        }
        let mut known: BTreeSet<i32> = assignment
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        Stats::set_gauge(&store.stats().partitions_assigned, known.len() as u64);
        info!(
            topic = %self.settings.topic,
            partitions = known.len(),
            lookback = ?self.settings.lookback,
            "consuming every partition"
        );
        for e in assignment.elements() {
            debug!(partition = e.partition(), offset = ?e.offset(), "start offset");
        }

        let mut ingest = Ingest::new(store.clone(), self.settings.reassembly);
        ingest.set_caught_up(false);
        let mut next_refresh = Instant::now() + self.settings.metadata_refresh;
        let mut next_silence_check = Instant::now() + SILENCE_CHECK_EVERY;
        while !cancel.is_cancelled() {
            match self.inner.poll(POLL_TIMEOUT) {
                // Nothing waiting: the lookback backlog is behind us.
                None => ingest.set_caught_up(true),
                Some(Ok(msg)) => {
                    let header = meta_header(&msg);
                    ingest.record(msg.partition(), header, msg.payload().unwrap_or_default());
                }
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                    self.skip_to_live_window(&store, lookback);
                }
                // Already reported (rate-limited) through `EdgeContext::error`; librdkafka recovers
                // from these by itself.
                Some(Err(e)) => debug!(error = %e, "Kafka consumer error"),
            }
            if Instant::now() >= next_silence_check {
                self.end_silent_streams(&store, &mut ingest);
                next_silence_check = Instant::now() + SILENCE_CHECK_EVERY;
            }
            if Instant::now() >= next_refresh {
                self.assign_new_partitions(&mut known);
                Stats::set_gauge(&store.stats().partitions_assigned, known.len() as u64);
                next_refresh = Instant::now() + self.settings.metadata_refresh;
            }
        }
        info!("consumer stopped");
    }

    /// Ends the playlists of live streams whose origin went silent: no segment for `stale_after` target
    /// durations (counted from the last broker trouble, if later), while this edge has read everything
    /// the broker holds in the stream's partition. Both conditions are needed: a broker outage or a
    /// backlog also look like silence, but then the origin's segments are only delayed, and ending
    /// the playlist would stop every player. The broker is asked for the partition's high watermark
    /// here, so the verdict rests on an answer it gave just now.
    ///
    /// Each edge decides on its own clock, so edges end a playlist up to about a check period apart;
    /// the ended playlists are identical (same window, `#EXT-X-ENDLIST`).
    fn end_silent_streams(&self, store: &Store, ingest: &mut Ingest) {
        if self.settings.stale_after == 0 {
            return;
        }
        if ingest.partitions.len() > store.stream_count() {
            ingest
                .partitions
                .retain(|name, _| store.playlist(name).is_some());
        }
        let context = self.inner.context();
        let silent = store.silent_streams(
            Instant::now(),
            self.settings.stale_after,
            context.trouble_at(),
        );
        if silent.is_empty() {
            return;
        }
        let positions = match self.inner.position() {
            Ok(p) => p,
            Err(e) => return debug!(error = %e, "cannot read consumer positions"),
        };
        let topic = self.settings.topic.as_str();
        let mut caught_up: HashMap<i32, bool> = HashMap::new();
        for s in silent {
            let Some(&partition) = ingest.partitions.get(&s.stream) else {
                continue;
            };
            let verdict = match caught_up.get(&partition) {
                Some(&v) => v,
                None => {
                    let position = positions
                        .find_partition(topic, partition)
                        .map(|e| e.offset());
                    let Some(Offset::Offset(position)) = position else {
                        caught_up.insert(partition, false);
                        continue;
                    };
                    match self
                        .inner
                        .fetch_watermarks(topic, partition, WATERMARK_TIMEOUT)
                    {
                        Ok((_, high)) => {
                            caught_up.insert(partition, position >= high);
                            position >= high
                        }
                        Err(e) => {
                            // The broker did not answer: no verdict now, and the silence so far
                            // does not count.
                            context.note_trouble();
                            debug!(partition, error = %e, "high watermark unavailable; not judging silence");
                            return;
                        }
                    }
                }
            };
            if verdict && store.end_silent(&s) {
                Stats::add(&store.stats().streams_ended_silent, 1);
                info!(
                    stream = %s.stream,
                    broadcast = %s.broadcast,
                    last_seq = s.last_seq,
                    silent_ms = s.silent_for.as_millis() as u64,
                    "no segment for {} target durations while caught up with the broker; playlist ended",
                    self.settings.stale_after
                );
            }
        }
    }

    /// Retries the start-offset lookup until it succeeds; `None` if cancelled first. Says what is wrong
    /// and what to do at the first failure, then again every [`RETRY_LOG_INTERVAL`].
    fn wait_for_start_offsets(
        &self,
        cancel: &CancellationToken,
    ) -> Option<(TopicPartitionList, Duration)> {
        let started = Instant::now();
        let mut last_logged: Option<Instant> = None;
        loop {
            if cancel.is_cancelled() {
                return None;
            }
            match self.start_offsets() {
                Ok(assignment) => {
                    if last_logged.is_some() {
                        info!(
                            topic = %self.settings.topic,
                            "broker and topic available after {:.0?}",
                            started.elapsed()
                        );
                    }
                    return Some(assignment);
                }
                Err(e) if last_logged.is_none_or(|t| t.elapsed() >= RETRY_LOG_INTERVAL) => {
                    warn!(
                        brokers = %self.settings.brokers,
                        topic = %self.settings.topic,
                        error = %e,
                        "{}; waiting for the broker and topic, retrying every {:?}",
                        start_advice(&e, &self.settings),
                        self.settings.retry_every
                    );
                    last_logged = Some(Instant::now());
                }
                Err(e) => debug!(error = %e, "broker or topic still unavailable"),
            }
            if !self.idle_unless_cancelled(self.settings.retry_every, cancel) {
                return None;
            }
        }
    }

    /// Waits `total` while serving librdkafka's event queue (its logs and errors would otherwise pile
    /// up there during a long outage); returns false if cancelled meanwhile.
    fn idle_unless_cancelled(&self, total: Duration, cancel: &CancellationToken) -> bool {
        let deadline = Instant::now() + total;
        while Instant::now() < deadline {
            if cancel.is_cancelled() {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // Nothing is assigned yet, so no message can come; errors went to `EdgeContext::error`.
            if let Some(Err(e)) = self.inner.poll(left.min(POLL_TIMEOUT)) {
                debug!(error = %e, "Kafka client error while waiting");
            }
        }
        !cancel.is_cancelled()
    }

    /// Every partition at the first offset whose record is newer than `now - lookback` (the end if
    /// none is), and the lookback that was used.
    fn start_offsets(&self) -> Result<(TopicPartitionList, Duration), LookupError> {
        let partitions = self.partitions()?;
        let lookback = match self.settings.lookback {
            Lookback::Fixed(d) => d,
            Lookback::Window(window) => {
                let target = self.newest_target_duration(&partitions)?;
                let lookback = window_lookback(window, target).unwrap_or(FALLBACK_LOOKBACK);
                info!(
                    target_duration_s = ?target,
                    lookback_s = lookback.as_secs(),
                    "reading back far enough for a full window"
                );
                lookback
            }
        };
        Ok((self.window_offsets(&partitions, lookback)?, lookback))
    }

    /// `partitions` at the first offset whose record is newer than `now - lookback` (the end if none
    /// is).
    fn window_offsets(
        &self,
        partitions: &[i32],
        lookback: Duration,
    ) -> Result<TopicPartitionList, LookupError> {
        let topic = self.settings.topic.as_str();
        let lookback_ms = u64::try_from(lookback.as_millis()).unwrap_or(u64::MAX);
        let since = i64::try_from(now_ms().saturating_sub(lookback_ms)).unwrap_or(i64::MAX);
        let mut query = TopicPartitionList::new();
        for &p in partitions {
            query.add_partition_offset(topic, p, Offset::Offset(since))?;
        }
        let found = self.inner.offsets_for_times(query, LOOKUP_TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        for e in found.elements() {
            e.error().map_err(|error| LookupError::Partition {
                partition: e.partition(),
                error,
            })?;
            // The broker answers -1 (`End`) when no record is that recent: start at the end.
            let offset = match e.offset() {
                Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                _ => Offset::End,
            };
            assignment.add_partition_offset(topic, e.partition(), offset)?;
        }
        Ok(assignment)
    }

    /// librdkafka found a partition's next offset deleted (it does not say which partition): every
    /// partition whose position is below the oldest record the broker still has (or that has no
    /// position yet) moves to the live window, as a starting edge would. The records in between are
    /// gone; what a player needs now is the live window, not the oldest survivors of retention. If the
    /// broker does not answer, the partition stays stopped and the next poll reports the reset again.
    fn skip_to_live_window(&self, store: &Store, lookback: Duration) {
        let topic = self.settings.topic.as_str();
        let positions = match self.inner.position() {
            Ok(p) => p,
            Err(e) => return warn!(error = %e, "cannot read consumer positions"),
        };
        let mut behind = Vec::new();
        for e in positions.elements_for_topic(topic) {
            let p = e.partition();
            match self.inner.fetch_watermarks(topic, p, WATERMARK_TIMEOUT) {
                Ok((low, _)) => match e.offset() {
                    Offset::Offset(o) if o >= low => {}
                    position => behind.push((p, position, low)),
                },
                Err(error) => return warn!(partition = p, %error, "low watermark unavailable"),
            }
        }
        if behind.is_empty() {
            return;
        }
        let partitions: Vec<i32> = behind.iter().map(|&(p, _, _)| p).collect();
        // librdkafka refuses to seek a partition stopped by a failed reset ("erroneous state"); handing
        // it back and assigning it afresh at the new offset restarts its fetcher.
        let result = self.window_offsets(&partitions, lookback).and_then(|tpl| {
            let mut gone = TopicPartitionList::new();
            for &p in &partitions {
                gone.add_partition(topic, p);
            }
            self.inner.incremental_unassign(&gone)?;
            self.inner.incremental_assign(&tpl)?;
            Ok(tpl)
        });
        match result {
            Ok(done) => {
                for e in done.elements() {
                    Stats::add(&store.stats().retention_skips, 1);
                    let (_, position, oldest) = behind
                        .iter()
                        .find(|&&(p, _, _)| p == e.partition())
                        .copied()
                        .unwrap_or((e.partition(), Offset::Invalid, -1));
                    warn!(
                        partition = e.partition(),
                        ?position,
                        oldest_offset = oldest,
                        resumed_at = ?e.offset(),
                        lookback_s = lookback.as_secs(),
                        "fell behind the topic's retention: the next records were deleted before this \
                         edge read them; skipped to the live window"
                    );
                }
            }
            Err(error) => warn!(%error, "cannot skip to the live window; will retry"),
        }
    }

    /// The longest target duration the last few records of each partition name, read by assigning
    /// the partitions just before their ends (unassigned again before returning).
    fn newest_target_duration(&self, partitions: &[i32]) -> Result<Option<u32>, LookupError> {
        let topic = self.settings.topic.as_str();
        let mut probe = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for &p in partitions {
            let (low, high) = self.inner.fetch_watermarks(topic, p, WATERMARK_TIMEOUT)?;
            if high > low {
                probe.add_partition_offset(
                    topic,
                    p,
                    Offset::Offset((high - PROBE_RECORDS).max(low)),
                )?;
                ends.insert(p, high);
            }
        }
        if ends.is_empty() {
            return Ok(None);
        }
        self.inner.assign(&probe)?;
        let mut target = None;
        let deadline = Instant::now() + PROBE_TIMEOUT;
        while !ends.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                debug!(partitions = ?ends.keys(), "no answer for the newest records in time");
                break;
            }
            let Some(Ok(msg)) = self.inner.poll(left) else {
                continue;
            };
            let named = match decode_meta(meta_header(&msg)) {
                Ok(LiveMessage::Segment(m)) => Some(m.target_duration),
                Ok(LiveMessage::Part(m)) => Some(m.target_duration),
                _ => None,
            };
            target = target.max(named);
            if ends
                .get(&msg.partition())
                .is_some_and(|&end| msg.offset() + 1 >= end)
            {
                ends.remove(&msg.partition());
            }
        }
        self.inner.unassign()?;
        Ok(target)
    }

    fn partitions(&self) -> Result<Vec<i32>, LookupError> {
        let topic = self.settings.topic.as_str();
        let metadata = self.inner.fetch_metadata(Some(topic), LOOKUP_TIMEOUT)?;
        let missing = |code| LookupError::Topic {
            topic: topic.to_owned(),
            code,
        };
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or(missing(RDKafkaErrorCode::UnknownTopicOrPartition))?;
        if let Some(err) = t.error() {
            return Err(missing(err.into()));
        }
        let ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        if ids.is_empty() {
            return Err(missing(RDKafkaErrorCode::UnknownTopicOrPartition));
        }
        Ok(ids)
    }

    /// Picks up partitions added to the topic since the last look, from their beginning: they did not
    /// exist then, so everything in them is recent.
    fn assign_new_partitions(&self, known: &mut BTreeSet<i32>) {
        let partitions = match self.partitions() {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, "metadata refresh failed; will retry");
                return;
            }
        };
        let new: Vec<i32> = partitions
            .into_iter()
            .filter(|p| !known.contains(p))
            .collect();
        if new.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &new {
            if let Err(e) = tpl.add_partition_offset(&self.settings.topic, p, Offset::Beginning) {
                warn!(partition = p, error = %e, "cannot add partition");
                return;
            }
        }
        match self.inner.incremental_assign(&tpl) {
            Ok(()) => {
                info!(partitions = ?new, "consuming partitions added to the topic");
                known.extend(new);
            }
            Err(e) => warn!(partitions = ?new, error = %e, "cannot assign new partitions"),
        }
    }
}

/// The LiveDTO header of a record, if it has one.
fn meta_header<'a>(msg: &'a BorrowedMessage<'_>) -> Option<&'a [u8]> {
    msg.headers()?
        .iter()
        .find(|h| h.key == META_HEADER)
        .and_then(|h| h.value)
}

/// Wall-clock milliseconds since the Unix epoch, the clock `closed_at_ms` is stamped with.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `cdn-edge-<host>-<pid>-<nanos>`: unique per process start, readable in broker tools.
fn unique_group_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "cdn-edge-{}-{}-{nanos}",
        if host.is_empty() { "host" } else { &host },
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use bytes::Bytes;
    use common::{encode_meta, split_segment, ChunkPlan, StreamEnd, StreamStart};

    #[test]
    fn lookback_covers_the_window_plus_one_target_duration() {
        let s = Duration::from_secs;
        assert_eq!(window_lookback(6, Some(2)), Some(s(14)));
        assert_eq!(window_lookback(6, Some(6)), Some(s(42)));
        assert_eq!(window_lookback(1, Some(1)), Some(MIN_LOOKBACK));
        assert_eq!(window_lookback(20, Some(10)), Some(MAX_WINDOW_LOOKBACK));
        assert_eq!(window_lookback(6, Some(0)), None);
        assert_eq!(window_lookback(6, None), None);
    }

    #[test]
    fn the_newest_records_of_each_partition_name_the_target_duration() {
        use rdkafka::message::{Header, OwnedHeaders};
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
        let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
        let topic = "live-topic";
        cluster.create_topic(topic, 3, 1).expect("topic");
        let consumer = Consumer::new(ConsumerSettings::new(cluster.bootstrap_servers(), topic))
            .expect("consumer");
        assert_eq!(
            consumer.newest_target_duration(&[0, 1, 2]).ok(),
            Some(None),
            "empty topic"
        );

        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .expect("producer");
        let send = |partition: i32, target: u32, seq: u64| {
            let meta = LiveMessage::Segment(SegmentMeta {
                target_duration: target,
                ..SegmentMeta::sample("s", "b", seq)
            });
            let header = encode_meta(&meta);
            producer
                .send(
                    BaseRecord::to(topic)
                        .partition(partition)
                        .key("s")
                        .payload(&b"x"[..])
                        .headers(OwnedHeaders::new().insert(Header {
                            key: META_HEADER,
                            value: Some(&header[..]),
                        })),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue");
        };
        // Partition 0: an old 9 s stream, then only 2 s ones among its newest records.
        send(0, 9, 1);
        for seq in 2..8 {
            send(0, 2, seq);
        }
        // Partition 1: a 6 s stream among the newest; partition 2 stays empty.
        send(1, 2, 1);
        send(1, 6, 2);
        send(1, 2, 3);
        producer.flush(Duration::from_secs(5)).expect("flush");
        assert_eq!(
            consumer.newest_target_duration(&[0, 1, 2]).ok(),
            Some(Some(6))
        );
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
        let mut ingest = Ingest::new(store.clone(), ReassemblyLimits::default());
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
        assert_eq!(Stats::get(&store.stats().rejected_chunks), 1);
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
        assert_eq!(store.stats().part_availability_latency.snapshot().count, 1);
        // A kind from a newer origin is skipped and counted, not fatal.
        ingest.record(0, Some(br#"{"v":1,"kind":"hologram","stream":"cam"}"#), b"");
        assert_eq!(Stats::get(&store.stats().bad_messages), 1);
    }

    #[test]
    fn chunked_segments_are_reassembled_into_the_store() {
        let store = store();
        let mut ingest = Ingest::new(store.clone(), ReassemblyLimits::default());
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
        assert_eq!(store.stats().availability_latency.snapshot().count, 6);
        // Backlog read at start is not observed.
        ingest.set_caught_up(false);
        for (h, v) in records("cam", 103, 1_000, 3_000) {
            ingest.record(0, Some(&h), &v);
        }
        assert_eq!(Stats::get(&store.stats().segments_stored), 7);
        assert_eq!(store.stats().availability_latency.snapshot().count, 6);
        assert_eq!(
            Stats::get(&store.stats().records),
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
        let mut ingest = Ingest::new(store.clone(), ReassemblyLimits::default());
        ingest.record(0, None, b"x");
        ingest.record(0, Some(b"{not json"), b"x");
        ingest.record(0, Some(br#"{"v":2,"kind":"segment"}"#), b"x");
        ingest.record(0, Some(br#"{"v":1,"kind":"segment","stream":"cam"}"#), b"x");
        let mut evil = meta("../etc", 1);
        evil.size = 1;
        evil.chunks = 1;
        ingest.record(0, Some(&encode_meta(&LiveMessage::Segment(evil))), b"x");
        assert_eq!(Stats::get(&store.stats().bad_messages), 5);
        assert_eq!(store.stream_count(), 0);
    }

    #[test]
    fn corrupt_truncated_or_partial_segments_are_not_served() {
        let store = store();
        let mut ingest = Ingest::new(store.clone(), ReassemblyLimits::default());
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
        assert_eq!(Stats::get(&store.stats().rejected_chunks), 1 + 2 + 1);

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
        let mut ingest = Ingest::new(store.clone(), limits);
        for seq in 1..=5 {
            let (h, v) = &records("cam", seq, 9_000, 3_000)[0];
            ingest.record(0, Some(h), v);
        }
        assert_eq!(Stats::get(&store.stats().reassembly_evictions), 3);
        // Partitions reassemble independently.
        for (h, v) in &records("cam", 6, 9_000, 3_000) {
            ingest.record(1, Some(h), v);
        }
        assert!(store.segment("cam", 6).is_some());
    }

    #[test]
    fn lag_counts_from_the_next_record_to_hand_out() {
        assert_eq!(lag(100, 90, 95), Some(10));
        // Nothing handed out yet: the fetch position stands in.
        assert_eq!(lag(100, -1001, 40), Some(60));
        assert_eq!(lag(100, -1001, -1001), None);
        assert_eq!(lag(-1001, 5, 5), None);
        // A watermark older than the position (stale statistics) is no lag, not a negative one.
        assert_eq!(lag(10, 12, 12), Some(0));
    }

    #[test]
    fn group_ids_are_unique_and_tidy() {
        let a = unique_group_id();
        assert!(a.starts_with("cdn-edge-"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.')),
            "{a}"
        );
    }
}
