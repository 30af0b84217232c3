//! `/metrics`: the edge's counters, read at scrape time and encoded by the `prometheus` crate (text
//! exposition format 0.0.4, through `service::Scrape`).
//!
//! Label values are bounded: routes are a fixed set, statuses are HTTP codes, partitions are the
//! topic's, and streams are the ones in the store (the viewer tracker is bounded on its own).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use service::Scrape;

use crate::kafka::IngestStats;
use crate::stats::{ConsumerLag, Stats};
use crate::store::Store;
use crate::viewers::Viewers;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = service::METRICS_CONTENT_TYPE;

/// Route label of requests no route matched.
pub const OTHER_ROUTE: &str = "other";

/// Everything `/metrics` shows besides the store's own counters.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Requests and bytes by route.
    pub http: HttpMetrics,
    /// Concurrent viewers per stream.
    pub viewers: Viewers,
    /// Consumer lag per partition, filled by the consumer.
    pub lag: Arc<ConsumerLag>,
    /// The ingest step's counters, filled by the consumer.
    pub ingest: Arc<IngestStats>,
}

impl Telemetry {
    /// Telemetry showing the lag that `lag` is updated with.
    pub fn with_lag(lag: Arc<ConsumerLag>) -> Self {
        Self {
            lag,
            ..Self::default()
        }
    }
}

/// Requests by route and status, and response body bytes by route.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    routes: Mutex<BTreeMap<&'static str, RouteCounters>>,
}

#[derive(Debug, Default, Clone)]
struct RouteCounters {
    statuses: BTreeMap<u16, u64>,
    bytes: u64,
}

impl HttpMetrics {
    /// Counts one answered request and the body bytes it sent.
    pub fn record(&self, route: &'static str, status: u16, body_bytes: u64) {
        let mut routes = self.lock();
        let counters = routes.entry(route).or_default();
        *counters.statuses.entry(status).or_default() += 1;
        counters.bytes += body_bytes;
    }

    /// Route labels counted so far.
    pub fn routes(&self) -> Vec<&'static str> {
        self.lock().keys().copied().collect()
    }

    fn snapshot(&self) -> BTreeMap<&'static str, RouteCounters> {
        self.lock().clone()
    }

    // Counters are plain additions; a poisoned lock still holds valid numbers.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, RouteCounters>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The whole exposition, as of `now`.
pub fn render(store: &Store, telemetry: &Telemetry, now: Instant) -> String {
    let stats = store.stats();
    let ingest = &telemetry.ingest;
    let x = Scrape::new();

    x.gauges(
        "cdn_edge_build_info",
        "Always 1; the version label says which cdn-edge is running.",
        &["version"],
        [(vec![env!("CARGO_PKG_VERSION")], 1.0)],
    );

    // Kafka side.
    let lags: Vec<(String, i64)> = telemetry
        .lag
        .get()
        .into_iter()
        .map(|(p, lag)| (p.to_string(), lag))
        .collect();
    x.gauges(
        "cdn_edge_kafka_consumer_lag_records",
        "Records in the partition not yet handed to the edge (high watermark minus position), from librdkafka statistics every 5 s.",
        &["partition"],
        lags.iter().map(|(p, lag)| (vec![p.as_str()], *lag as f64)),
    );
    x.gauge(
        "cdn_edge_kafka_partitions_assigned",
        "Partitions of the topic this edge reads (all of them, once it has started).",
        Stats::get(&stats.partitions_assigned) as f64,
    );
    x.counter(
        "cdn_edge_kafka_records_total",
        "Kafka records handed to the ingest path.",
        Stats::get(&ingest.records),
    );
    x.counter(
        "cdn_edge_bad_messages_total",
        "Records dropped for missing, malformed or unknown-version metadata or an invalid stream name.",
        Stats::get(&ingest.bad_messages),
    );
    x.counter(
        "cdn_edge_rejected_chunks_total",
        "Segment chunks refused by reassembly (inconsistent, bad checksum, or the segment began before this edge started).",
        Stats::get(&ingest.rejected_chunks),
    );
    x.counter(
        "cdn_edge_reassembly_evictions_total",
        "Incomplete segments dropped to stay within reassembly memory bounds.",
        Stats::get(&ingest.reassembly_evictions),
    );
    x.counter(
        "cdn_edge_segments_stored_total",
        "Complete, verified segments added to a playlist and the cache.",
        Stats::get(&stats.segments_stored),
    );
    x.counter(
        "cdn_edge_segments_duplicate_total",
        "Complete segments ignored because the playlist already covered their sequence number.",
        Stats::get(&stats.segments_duplicate),
    );
    x.counter(
        "cdn_edge_streams_ended_silent_total",
        "Live playlists ended because no segment arrived for --stale-after-target-durations while caught up with the broker.",
        Stats::get(&stats.streams_ended_silent),
    );
    x.counter(
        "cdn_edge_kafka_retention_skips_total",
        "Times a partition's next record was already deleted by the topic's retention (this edge fell that far behind) and the edge skipped ahead to the live window.",
        Stats::get(&stats.retention_skips),
    );
    x.add(stats.availability_latency.clone());
    x.add(stats.part_availability_latency.clone());

    // Cache. moka counts lazily; settling its pending work first makes a scrape exact, and costs
    // only what the next cache access would have done anyway.
    store.run_pending_tasks();
    x.gauge(
        "cdn_edge_cache_bytes",
        "Bytes the segment cache holds, including a small per-entry overhead.",
        store.cached_bytes() as f64,
    );
    x.gauge(
        "cdn_edge_cache_capacity_bytes",
        "Most bytes the segment cache may hold (--cache-bytes).",
        store.cache_capacity() as f64,
    );
    x.gauge(
        "cdn_edge_cache_entries",
        "Segments in the cache.",
        store.cached_segments() as f64,
    );
    x.counter(
        "cdn_edge_cache_hits_total",
        "Segment requests answered from the cache.",
        Stats::get(&stats.cache_hits),
    );
    x.counter(
        "cdn_edge_cache_misses_total",
        "Segment requests for a segment not (or no longer) in the cache.",
        Stats::get(&stats.cache_misses),
    );

    // Streams and viewers.
    let streams = store.streams();
    let ended = streams.iter().filter(|s| s.ended).count();
    x.gauges(
        "cdn_edge_streams",
        "Streams with a playlist on this edge, live or ended (ended ones are kept until the segment TTL).",
        &["state"],
        [
            (vec!["live"], (streams.len() - ended) as f64),
            (vec!["ended"], ended as f64),
        ],
    );
    let viewers = telemetry.viewers.counts(now);
    x.gauges(
        "cdn_edge_viewers",
        "Distinct client addresses that fetched the stream's playlist or segments in the last 30 s.",
        &["stream"],
        viewers
            .iter()
            .map(|(stream, count)| (vec![stream.as_str()], *count as f64)),
    );
    x.counter(
        "cdn_edge_viewers_untracked_total",
        "Client fetches not counted as viewers because the bounded viewer table was full.",
        telemetry.viewers.untracked(),
    );

    // HTTP.
    let routes = telemetry.http.snapshot();
    let statuses: Vec<(&str, String, u64)> = routes
        .iter()
        .flat_map(|(route, c)| {
            c.statuses
                .iter()
                .map(move |(status, n)| (*route, status.to_string(), *n))
        })
        .collect();
    x.counters(
        "cdn_edge_http_requests_total",
        "HTTP requests answered, by route and status code.",
        &["route", "status"],
        statuses
            .iter()
            .map(|(route, status, n)| (vec![*route, status.as_str()], *n)),
    );
    x.counters(
        "cdn_edge_http_response_bytes_total",
        "Response body bytes sent, by route (HEAD requests send none).",
        &["route"],
        routes.iter().map(|(route, c)| (vec![*route], c.bytes)),
    );
    x.render()
}
