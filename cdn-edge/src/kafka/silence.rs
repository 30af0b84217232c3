//! The silent-origin verdict: a live playlist whose origin stopped sending (killed, no stream end on
//! the topic) is ended, but only when the silence cannot be the broker's or this edge's fault.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::Offset;
use tracing::{debug, info};

use super::context::EdgeContext;
use super::ingest::Ingest;
use super::{ConsumerSettings, WATERMARK_TIMEOUT};
use crate::stats::Stats;
use crate::store::Store;

/// How often live streams are checked for an origin that went silent.
pub(super) const SILENCE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Ends the playlists of live streams whose origin went silent: no segment for `stale_after` target
/// durations (counted from the last broker trouble, if later), while this edge has read everything
/// the broker holds in the stream's partition. Both conditions are needed: a broker outage or a
/// backlog also look like silence, but then the origin's segments are only delayed, and ending
/// the playlist would stop every player. The broker is asked for the partition's high watermark
/// here, so the verdict rests on an answer it gave just now.
///
/// Each edge decides on its own clock, so edges end a playlist up to about a check period apart;
/// the ended playlists are identical (same window, `#EXT-X-ENDLIST`).
pub(super) fn end_silent_streams(
    consumer: &BaseConsumer<EdgeContext>,
    settings: &ConsumerSettings,
    store: &Store,
    ingest: &mut Ingest,
) {
    if settings.stale_after == 0 {
        return;
    }
    if ingest.stream_count() > store.stream_count() {
        ingest.retain_streams(|name| store.playlist(name).is_some());
    }
    let context = consumer.context();
    let silent = store.silent_streams(Instant::now(), settings.stale_after, context.trouble_at());
    if silent.is_empty() {
        return;
    }
    let topic = settings.topic.as_str();
    // The statistics see a leader move only every few seconds; a verdict must not fall in between,
    // when this edge already reads the new leader and the origin's producer is still finding it.
    match consumer.fetch_metadata(Some(topic), WATERMARK_TIMEOUT) {
        Ok(metadata) => {
            let leaders = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic)
                .flat_map(|t| t.partitions())
                .map(|p| (p.id(), p.leader()));
            if context.observe_leaders(leaders) {
                return;
            }
        }
        Err(e) => {
            context.note_trouble();
            return debug!(error = %e, "metadata unavailable; not judging silence");
        }
    }
    let positions = match consumer.position() {
        Ok(p) => p,
        Err(e) => return debug!(error = %e, "cannot read consumer positions"),
    };
    let mut caught_up: HashMap<i32, bool> = HashMap::new();
    for s in silent {
        let Some(partition) = ingest.partition_of(&s.stream) else {
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
                match consumer.fetch_watermarks(topic, partition, WATERMARK_TIMEOUT) {
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
                settings.stale_after
            );
        }
    }
}
