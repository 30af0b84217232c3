//! Which partitions this edge reads: the seam between the poll loop and the strategy.
//!
//! Today's strategy is [`AssignAll`]: every edge reads every partition (every edge serves every
//! stream), `assign`ed explicitly under a group id unique to the process, so no two edges ever share
//! partitions or offsets, and partitions added to the topic are picked up from their beginning. The
//! next one, edges sharing partitions in a consumer group, subscribes instead and is told by the
//! broker: librdkafka's rebalance callbacks reach [`Rebalances`] through `EdgeContext` (a real
//! `ConsumerContext`), the poll loop drains them, drops the ingest state of revoked partitions and
//! hands every event to [`Assignment::rebalanced`].

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer as _, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::context::EdgeContext;

/// A change of assignment a consumer group decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// These partitions are ours now.
    Assigned(Vec<i32>),
    /// These partitions are no longer ours: forget everything about them.
    Revoked(Vec<i32>),
    /// The rebalance failed (librdkafka's reason).
    Failed(String),
}

/// Rebalances noted by librdkafka's callbacks, waiting for the poll loop (the callbacks run inside
/// `poll`, on the loop's own thread, so this never blocks anyone).
#[derive(Debug, Default)]
pub struct Rebalances(Mutex<Vec<RebalanceEvent>>);

impl Rebalances {
    /// Notes one rebalance callback.
    pub fn note(&self, rebalance: &Rebalance<'_>) {
        let ids = |tpl: &TopicPartitionList| tpl.elements().iter().map(|e| e.partition()).collect();
        let event = match rebalance {
            Rebalance::Assign(tpl) => RebalanceEvent::Assigned(ids(tpl)),
            Rebalance::Revoke(tpl) => RebalanceEvent::Revoked(ids(tpl)),
            Rebalance::Error(e) => RebalanceEvent::Failed(e.to_string()),
        };
        self.lock().push(event);
    }

    /// Takes the rebalances noted so far, oldest first.
    pub fn drain(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RebalanceEvent>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How the edge gets its partitions.
pub trait Assignment: Send {
    /// The `group.id` the client is built with.
    fn group_id(&self) -> String;
    /// Starts reading at `offsets` (every partition at its start offset).
    fn start(
        &mut self,
        consumer: &BaseConsumer<EdgeContext>,
        offsets: &TopicPartitionList,
    ) -> KafkaResult<()>;
    /// The topic's partitions as of now (periodic metadata refresh).
    fn refresh(&mut self, consumer: &BaseConsumer<EdgeContext>, topic: &str, partitions: &[i32]);
    /// A consumer group moved partitions to or from this edge.
    fn rebalanced(&mut self, event: &RebalanceEvent);
    /// Partitions this edge reads now.
    fn assigned(&self) -> usize;
}

/// Every partition, assigned explicitly (see the module docs).
#[derive(Debug, Default)]
pub struct AssignAll {
    known: BTreeSet<i32>,
}

impl Assignment for AssignAll {
    fn group_id(&self) -> String {
        // librdkafka wants a group id even though partitions are assigned, never subscribed:
        // a unique one makes sure this edge never shares partitions or offsets with another.
        unique_group_id()
    }

    fn start(
        &mut self,
        consumer: &BaseConsumer<EdgeContext>,
        offsets: &TopicPartitionList,
    ) -> KafkaResult<()> {
        consumer.assign(offsets)?;
        self.known = offsets.elements().iter().map(|e| e.partition()).collect();
        Ok(())
    }

    /// Picks up partitions added to the topic since the last look, from their beginning: they did not
    /// exist then, so everything in them is recent.
    fn refresh(&mut self, consumer: &BaseConsumer<EdgeContext>, topic: &str, partitions: &[i32]) {
        let new: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| !self.known.contains(p))
            .collect();
        if new.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &p in &new {
            if let Err(e) = tpl.add_partition_offset(topic, p, Offset::Beginning) {
                warn!(partition = p, error = %e, "cannot add partition");
                return;
            }
        }
        match consumer.incremental_assign(&tpl) {
            Ok(()) => {
                info!(partitions = ?new, "consuming partitions added to the topic");
                self.known.extend(new);
            }
            Err(e) => warn!(partitions = ?new, error = %e, "cannot assign new partitions"),
        }
    }

    fn rebalanced(&mut self, event: &RebalanceEvent) {
        // Assign-all never joins a group, so librdkafka never rebalances it; should it, the set of
        // partitions read follows what the group said.
        match event {
            RebalanceEvent::Assigned(ps) => self.known.extend(ps.iter().copied()),
            RebalanceEvent::Revoked(ps) => ps.iter().for_each(|p| {
                self.known.remove(p);
            }),
            RebalanceEvent::Failed(reason) => warn!(%reason, "rebalance failed"),
        }
    }

    fn assigned(&self) -> usize {
        self.known.len()
    }
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

    #[test]
    fn rebalance_callbacks_are_queued_in_order_and_followed() {
        let r = Rebalances::default();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("live-topic", 1);
        tpl.add_partition("live-topic", 3);
        r.note(&Rebalance::Assign(&tpl));
        let mut gone = TopicPartitionList::new();
        gone.add_partition("live-topic", 3);
        r.note(&Rebalance::Revoke(&gone));
        let events = r.drain();
        assert_eq!(
            events,
            [
                RebalanceEvent::Assigned(vec![1, 3]),
                RebalanceEvent::Revoked(vec![3])
            ]
        );
        assert!(r.drain().is_empty());
        let mut all = AssignAll::default();
        for e in &events {
            all.rebalanced(e);
        }
        assert_eq!(all.assigned(), 1);
    }
}
