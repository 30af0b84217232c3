//! The Kafka side of the edge: the topic's records, from a little while ago, into the store.
//!
//! Layers, each in its own module:
//! - [`ingest`]: the pure step, one record in, what it changes out, with per-partition state that is
//!   dropped when a partition is revoked, and its counters.
//! - [`apply`]: the thin shell applying those changes to the store.
//! - [`assignment`]: which partitions this edge reads (today every one, `assign`ed; a consumer group
//!   shared by several edges plugs in behind the same seam, its rebalances arriving through
//!   [`context`]).
//! - [`start_offsets`]: how far back to start (a full window by default), the offsets of that moment,
//!   and the skip to the live window when retention deleted the next record.
//! - [`silence`]: the verdict that an origin went silent.
//! - [`context`]: librdkafka's callbacks (errors, statistics and lag, rebalances).
//!
//! [`Consumer::run`] is the poll loop tying them together, with librdkafka's `BaseConsumer` on one
//! blocking thread: the store is synchronous, so a plain poll loop is the simplest correct shape.

pub mod apply;
pub mod assignment;
pub mod context;
pub mod ingest;
pub mod silence;
pub mod start_offsets;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::META_HEADER;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::stats::{ConsumerLag, Stats};
use crate::store::Store;
use apply::Apply;
use assignment::{AssignAll, Assignment, RebalanceEvent};
use context::EdgeContext;
pub use ingest::{Ingest, IngestStats, ReassemblyLimits, Record};
use start_offsets::StartOffsets;
pub use start_offsets::{window_lookback, Lookback};

/// Longest a poll blocks, which is also how quickly the loop notices cancellation.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a watermark lookup (silence verdict, retention skip, target duration probe) may take; a
/// broker that does not answer in time counts as unreachable.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(1);

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

/// Why the consumer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// librdkafka refused the configuration (e.g. an unknown `--kafka-option`).
    #[error("invalid Kafka consumer configuration: {0}")]
    Config(#[from] KafkaError),
}

/// The Kafka consumer of the edge.
pub struct Consumer {
    inner: BaseConsumer<EdgeContext>,
    settings: ConsumerSettings,
    assignment: Box<dyn Assignment>,
    lag: Arc<ConsumerLag>,
    ingest_stats: Arc<IngestStats>,
}

impl Consumer {
    /// Builds the librdkafka client (no connection is made yet).
    pub fn new(settings: ConsumerSettings) -> Result<Self, ConsumerError> {
        let assignment: Box<dyn Assignment> = Box::<AssignAll>::default();
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &settings.brokers)
            .set("group.id", assignment.group_id())
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
            // What librdkafka prefetches into the consumer queue (one queue for all partitions with this
            // consumer API), overshot by at most one fetch. The store copies every record out at once,
            // so a few fetches' worth is plenty.
            .set("queued.max.messages.kbytes", "16384")
            // Once that queue is over its bound, librdkafka postpones the next fetch of a partition by
            // this long (default 1 s). A starting edge reads a whole window of every stream (~180 MB for
            // 20 streams with LL-HLS parts) and crossed the bound within the first fetches, then sat out
            // a second doing nothing: cold starts took 1.6-5 s instead of 0.6-0.9 s. The queue drains in
            // milliseconds, so look again soon; live reading never reaches the bound.
            .set("fetch.queue.backoff.ms", "10")
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
        let context = EdgeContext::new(lag.clone());
        let inner: BaseConsumer<EdgeContext> = cfg.create_with_context(context)?;
        Ok(Self {
            inner,
            settings,
            assignment,
            lag,
            ingest_stats: Arc::default(),
        })
    }

    /// Per-partition lag, refreshed from librdkafka's statistics while [`Consumer::run`] polls.
    pub fn lag(&self) -> Arc<ConsumerLag> {
        self.lag.clone()
    }

    /// The ingest step's counters, updated while [`Consumer::run`] polls.
    pub fn ingest_stats(&self) -> Arc<IngestStats> {
        self.ingest_stats.clone()
    }

    fn start_offsets(&self) -> StartOffsets<'_> {
        StartOffsets {
            consumer: &self.inner,
            settings: &self.settings,
        }
    }

    /// Consumes until `cancel` fires: waits for the topic, seeks every partition to `now - lookback`,
    /// then feeds every record into `store`. Blocks; run it on a blocking thread.
    pub fn run(mut self, store: Arc<Store>, cancel: CancellationToken) {
        let Some((offsets, lookback)) = self.start_offsets().wait(&cancel) else {
            return;
        };
        if let Err(e) = self.assignment.start(&self.inner, &offsets) {
            // Only fails for a malformed list, which we built; nothing to retry.
            warn!(error = %e, "cannot assign partitions; consumer stopped");
            return;
        }
        Stats::set_gauge(
            &store.stats().partitions_assigned,
            self.assignment.assigned() as u64,
        );
        info!(
            topic = %self.settings.topic,
            partitions = self.assignment.assigned(),
            lookback = ?self.settings.lookback,
            "consuming every partition"
        );
        for e in offsets.elements() {
            debug!(partition = e.partition(), offset = ?e.offset(), "start offset");
        }

        let mut ingest = Ingest::with_stats(self.settings.reassembly, self.ingest_stats.clone());
        let mut apply = Apply::new(store.clone());
        apply.set_caught_up(false);
        let mut next_refresh = Instant::now() + self.settings.metadata_refresh;
        let mut next_silence_check = Instant::now() + silence::SILENCE_CHECK_EVERY;
        while !cancel.is_cancelled() {
            match self.inner.poll(POLL_TIMEOUT) {
                // Nothing waiting: the lookback backlog is behind us.
                None => apply.set_caught_up(true),
                Some(Ok(msg)) => {
                    let record = Record {
                        partition: msg.partition(),
                        offset: msg.offset(),
                        header: meta_header(&msg),
                        value: msg.payload().unwrap_or_default(),
                    };
                    apply.record(&mut ingest, record);
                }
                Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
                    self.start_offsets().skip_to_live_window(&store, lookback);
                }
                // Already reported (rate-limited) through `EdgeContext::error`; librdkafka recovers
                // from these by itself.
                Some(Err(e)) => debug!(error = %e, "Kafka consumer error"),
            }
            for event in self.inner.context().rebalances.drain() {
                if let RebalanceEvent::Revoked(partitions) = &event {
                    partitions.iter().for_each(|&p| ingest.revoke(p));
                }
                self.assignment.rebalanced(&event);
                Stats::set_gauge(
                    &store.stats().partitions_assigned,
                    self.assignment.assigned() as u64,
                );
            }
            if Instant::now() >= next_silence_check {
                silence::end_silent_streams(&self.inner, &self.settings, &store, &mut ingest);
                next_silence_check = Instant::now() + silence::SILENCE_CHECK_EVERY;
            }
            if Instant::now() >= next_refresh {
                match self.start_offsets().partitions() {
                    Ok(partitions) => {
                        self.assignment
                            .refresh(&self.inner, &self.settings.topic, &partitions)
                    }
                    Err(e) => debug!(error = %e, "metadata refresh failed; will retry"),
                }
                Stats::set_gauge(
                    &store.stats().partitions_assigned,
                    self.assignment.assigned() as u64,
                );
                next_refresh = Instant::now() + self.settings.metadata_refresh;
            }
        }
        info!("consumer stopped");
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
