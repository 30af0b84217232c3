//! Where reading starts: how far back (a fixed lookback, or a full window of the newest target
//! duration, probed from the last records of each partition), the offsets of that moment in every
//! partition, the start-up wait for broker and topic, and the skip back to the live window when
//! retention deleted the next record.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{decode_meta, LiveMessage};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::context::EdgeContext;
use super::{meta_header, now_ms, ConsumerSettings, POLL_TIMEOUT, WATERMARK_TIMEOUT};
use crate::stats::Stats;
use crate::store::Store;

/// How long one metadata or offset lookup may take before it is retried.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Least time between two start-up "still waiting" warnings: visible, without a line every retry.
const RETRY_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// Records read from the end of each partition to learn the streams' target durations.
const PROBE_RECORDS: i64 = 4;
/// Longest wait for those records.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Lookback when the topic names no target duration (empty, or only foreign records).
const FALLBACK_LOOKBACK: Duration = Duration::from_secs(30);
/// Bounds of a window-derived lookback.
const MIN_LOOKBACK: Duration = Duration::from_secs(4);
const MAX_WINDOW_LOOKBACK: Duration = Duration::from_secs(60);

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

/// Why looking up the topic's partitions or start offsets failed (retried, never fatal).
#[derive(Debug, thiserror::Error)]
pub(super) enum LookupError {
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

/// The start-offset logic over one client.
pub(super) struct StartOffsets<'a> {
    pub(super) consumer: &'a BaseConsumer<EdgeContext>,
    pub(super) settings: &'a ConsumerSettings,
}

impl StartOffsets<'_> {
    /// Retries the start-offset lookup until it succeeds; `None` if cancelled first. Says what is wrong
    /// and what to do at the first failure, then again every [`RETRY_LOG_INTERVAL`].
    pub(super) fn wait(
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
                        start_advice(&e, self.settings),
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
            if let Some(Err(e)) = self.consumer.poll(left.min(POLL_TIMEOUT)) {
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
        let found = self.consumer.offsets_for_times(query, LOOKUP_TIMEOUT)?;
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
    pub(super) fn skip_to_live_window(&self, store: &Store, lookback: Duration) {
        let topic = self.settings.topic.as_str();
        let positions = match self.consumer.position() {
            Ok(p) => p,
            Err(e) => return warn!(error = %e, "cannot read consumer positions"),
        };
        let mut behind = Vec::new();
        for e in positions.elements_for_topic(topic) {
            let p = e.partition();
            match self.consumer.fetch_watermarks(topic, p, WATERMARK_TIMEOUT) {
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
            self.consumer.incremental_unassign(&gone)?;
            self.consumer.incremental_assign(&tpl)?;
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
    pub(super) fn newest_target_duration(
        &self,
        partitions: &[i32],
    ) -> Result<Option<u32>, LookupError> {
        let topic = self.settings.topic.as_str();
        let mut probe = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for &p in partitions {
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, p, WATERMARK_TIMEOUT)?;
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
        self.consumer.assign(&probe)?;
        let mut target = None;
        let deadline = Instant::now() + PROBE_TIMEOUT;
        while !ends.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                debug!(partitions = ?ends.keys(), "no answer for the newest records in time");
                break;
            }
            let Some(Ok(msg)) = self.consumer.poll(left) else {
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
        self.consumer.unassign()?;
        Ok(target)
    }

    /// The topic's partition ids.
    pub(super) fn partitions(&self) -> Result<Vec<i32>, LookupError> {
        let topic = self.settings.topic.as_str();
        let metadata = self.consumer.fetch_metadata(Some(topic), LOOKUP_TIMEOUT)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Consumer;
    use common::{encode_meta, SegmentMeta, META_HEADER};
    use rdkafka::config::ClientConfig;

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
            consumer
                .start_offsets()
                .newest_target_duration(&[0, 1, 2])
                .ok(),
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
            consumer
                .start_offsets()
                .newest_target_duration(&[0, 1, 2])
                .ok(),
            Some(Some(6))
        );
    }
}
