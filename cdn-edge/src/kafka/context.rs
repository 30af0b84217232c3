//! librdkafka's callbacks into the edge: rate-limited client errors, statistics turned into
//! per-partition lag, the moment of the last broker trouble (for the silence verdict), and rebalances
//! handed to the assignment seam.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use tracing::{debug, info, warn};

use super::assignment::Rebalances;
use crate::stats::ConsumerLag;

/// Least time between two warnings about consumption errors (a down broker reports many).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// librdkafka callbacks: like the default, except that client errors are rate-limited (while a broker
/// is down librdkafka reports "all brokers down" many times a second, which would bury everything else),
/// statistics are turned into per-partition lag, and rebalances are queued for the poll loop.
#[derive(Default)]
pub struct EdgeContext {
    /// When an error was last logged, and how many were suppressed since.
    last_error: Mutex<(Option<Instant>, u64)>,
    /// Where the lag from the latest statistics goes.
    pub(super) lag: Arc<ConsumerLag>,
    /// When the client last reported trouble reaching the brokers (any error event): silence before
    /// then says nothing about the origins.
    trouble: Mutex<Option<Instant>>,
    /// Assignments and revocations of a consumer group, for the poll loop to apply.
    pub(super) rebalances: Rebalances,
    /// Each partition's leader in the latest statistics.
    leaders: Mutex<BTreeMap<i32, i32>>,
}

impl EdgeContext {
    /// Callbacks putting the lag from librdkafka's statistics into `lag`.
    pub fn new(lag: Arc<ConsumerLag>) -> Self {
        Self {
            lag,
            ..Self::default()
        }
    }

    /// Notes that the brokers could not be reached just now.
    pub fn note_trouble(&self) {
        *self.trouble.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Records (partition, leader) pairs, from the statistics or from metadata fetched just now; a
    /// partition whose leader moved is broker trouble (see `stats`). Returns whether one moved.
    pub fn observe_leaders(&self, leaders: impl IntoIterator<Item = (i32, i32)>) -> bool {
        let mut known = self.leaders.lock().unwrap_or_else(PoisonError::into_inner);
        let moved = note_leaders(&mut known, leaders);
        if moved.is_empty() {
            return false;
        }
        debug!(partitions = ?moved, "partition leadership moved; not judging silence for now");
        self.note_trouble();
        true
    }

    /// When the brokers last could not be reached.
    pub fn trouble_at(&self) -> Option<Instant> {
        *self.trouble.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ClientContext for EdgeContext {
    fn stats(&self, statistics: Statistics) {
        self.lag.replace(partition_lags(&statistics));
        // A partition that changed leader is broker trouble too: this edge may already read from the
        // new leader while the origins' producers are still finding it (after a leader died, the
        // controllers take their session timeout to move it, then every client must refresh its
        // metadata), so the silence of those seconds says nothing about the origins.
        let leaders = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .map(|p| (p.partition, p.leader));
        self.observe_leaders(leaders);
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

impl ConsumerContext for EdgeContext {
    // Only a consumer group rebalances (today's assign-all never does): revocations are noted before
    // the partitions go, assignments once they are ours, and the poll loop applies both.
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            self.rebalances.note(rebalance);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) | Rebalance::Error(_) = rebalance {
            self.rebalances.note(rebalance);
        }
    }
}

/// Lag of every assigned partition in `statistics` (the edge reads one topic). librdkafka's own
/// `consumer_lag` is not used: it counts from the committed offset, and an edge never commits.
/// Updates `known` (each partition's last known leader, a broker id) from (partition, leader) pairs of
/// the latest statistics and returns the partitions whose leader changed. While librdkafka looks a new
/// leader up it reports -1; that keeps the last known one, so the move is seen when the new leader is.
/// Partition -1 is librdkafka's internal "unassigned" partition.
fn note_leaders(
    known: &mut BTreeMap<i32, i32>,
    leaders: impl IntoIterator<Item = (i32, i32)>,
) -> Vec<i32> {
    let mut moved = Vec::new();
    for (partition, leader) in leaders {
        if partition < 0 || leader < 0 {
            continue;
        }
        if known.insert(partition, leader).is_some_and(|l| l != leader) {
            moved.push(partition);
        }
    }
    moved
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_that_changes_leader_is_noticed_once_the_new_leader_is_known() {
        let mut known = BTreeMap::new();
        assert!(note_leaders(&mut known, [(-1, 0), (0, 1), (1, 2)]).is_empty());
        assert!(note_leaders(&mut known, [(0, 1), (1, 2)]).is_empty());
        // Leader 1 died: librdkafka knows no leader for a while, then the new one.
        assert!(note_leaders(&mut known, [(0, -1), (1, 2)]).is_empty());
        assert_eq!(note_leaders(&mut known, [(0, 3), (1, 2)]), vec![0]);
        assert!(note_leaders(&mut known, [(0, 3), (1, 2)]).is_empty());
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
}
