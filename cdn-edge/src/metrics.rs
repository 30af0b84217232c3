//! `/metrics`: the edge's counters in the Prometheus text exposition format (version 0.0.4), written by
//! hand because there are few of them and every one is already an atomic or a small map.
//!
//! Label values are bounded: routes are a fixed set, statuses are HTTP codes, partitions are the
//! topic's, and streams are the ones in the store (the viewer tracker is bounded on its own).

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::kafka::IngestStats;
use crate::stats::{ConsumerLag, HistogramSnapshot, Stats};
use crate::store::Store;
use crate::viewers::Viewers;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    let mut x = Exposition::default();

    x.family(
        "cdn_edge_build_info",
        "gauge",
        "Always 1; the version label says which cdn-edge is running.",
    );
    x.sample(
        "cdn_edge_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    // Kafka side.
    x.family(
        "cdn_edge_kafka_consumer_lag_records",
        "gauge",
        "Records in the partition not yet handed to the edge (high watermark minus position), from librdkafka statistics every 5 s.",
    );
    for (partition, lag) in telemetry.lag.get() {
        x.sample(
            "cdn_edge_kafka_consumer_lag_records",
            &[("partition", &partition.to_string())],
            lag,
        );
    }
    x.gauge(
        "cdn_edge_kafka_partitions_assigned",
        "Partitions of the topic this edge reads (all of them, once it has started).",
        Stats::get(&stats.partitions_assigned),
    );
    x.counter(
        "cdn_edge_kafka_records_total",
        "Kafka records handed to the ingest path.",
        Stats::get(&telemetry.ingest.records),
    );
    x.counter(
        "cdn_edge_bad_messages_total",
        "Records dropped for missing, malformed or unknown-version metadata or an invalid stream name.",
        Stats::get(&telemetry.ingest.bad_messages),
    );
    x.counter(
        "cdn_edge_rejected_chunks_total",
        "Segment chunks refused by reassembly (inconsistent, bad checksum, or the segment began before this edge started).",
        Stats::get(&telemetry.ingest.rejected_chunks),
    );
    x.counter(
        "cdn_edge_reassembly_evictions_total",
        "Incomplete segments dropped to stay within reassembly memory bounds.",
        Stats::get(&telemetry.ingest.reassembly_evictions),
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
    x.histogram(
        "cdn_edge_segment_availability_latency_seconds",
        "Time from the origin closing a segment (closed_at_ms) to this edge listing it; negative clock skew counts as 0.",
        &stats.availability_latency.snapshot(),
    );
    x.histogram(
        "cdn_edge_part_availability_latency_seconds",
        "Time from the origin closing an LL-HLS part (closed_at_ms) to this edge listing it; negative clock skew counts as 0.",
        &stats.part_availability_latency.snapshot(),
    );

    // Cache. moka counts lazily; settling its pending work first makes a scrape exact, and costs
    // only what the next cache access would have done anyway.
    store.run_pending_tasks();
    x.gauge(
        "cdn_edge_cache_bytes",
        "Bytes the segment cache holds, including a small per-entry overhead.",
        store.cached_bytes(),
    );
    x.gauge(
        "cdn_edge_cache_capacity_bytes",
        "Most bytes the segment cache may hold (--cache-bytes).",
        store.cache_capacity(),
    );
    x.gauge(
        "cdn_edge_cache_entries",
        "Segments in the cache.",
        store.cached_segments(),
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
    x.family(
        "cdn_edge_streams",
        "gauge",
        "Streams with a playlist on this edge, live or ended (ended ones are kept until the segment TTL).",
    );
    x.sample(
        "cdn_edge_streams",
        &[("state", "live")],
        streams.len() - ended,
    );
    x.sample("cdn_edge_streams", &[("state", "ended")], ended);
    x.family(
        "cdn_edge_viewers",
        "gauge",
        "Distinct client addresses that fetched the stream's playlist or segments in the last 30 s.",
    );
    for (stream, count) in telemetry.viewers.counts(now) {
        x.sample("cdn_edge_viewers", &[("stream", &stream)], count);
    }
    x.counter(
        "cdn_edge_viewers_untracked_total",
        "Client fetches not counted as viewers because the bounded viewer table was full.",
        telemetry.viewers.untracked(),
    );

    // HTTP.
    let routes = telemetry.http.snapshot();
    x.family(
        "cdn_edge_http_requests_total",
        "counter",
        "HTTP requests answered, by route and status code.",
    );
    for (route, counters) in &routes {
        for (status, n) in &counters.statuses {
            x.sample(
                "cdn_edge_http_requests_total",
                &[("route", route), ("status", &status.to_string())],
                n,
            );
        }
    }
    x.family(
        "cdn_edge_http_response_bytes_total",
        "counter",
        "Response body bytes sent, by route (HEAD requests send none).",
    );
    for (route, counters) in &routes {
        x.sample(
            "cdn_edge_http_response_bytes_total",
            &[("route", route)],
            counters.bytes,
        );
    }
    x.out
}

/// A text exposition being written. Writing into a `String` cannot fail, so results are ignored.
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (le, n) in &h.cumulative {
            let le = if le.is_finite() {
                le.to_string()
            } else {
                "+Inf".to_owned()
            };
            self.sample(&bucket, &[("le", &le)], n);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum_seconds);
        self.sample(&format!("{name}_count"), &[], h.count);
    }
}

/// HELP text escapes only backslash and newline.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values escape backslash, double quote and newline.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_help_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
        let mut x = Exposition::default();
        x.sample("m", &[("a", "x"), ("b", "y\"")], 3);
        assert_eq!(x.out, "m{a=\"x\",b=\"y\\\"\"} 3\n");
    }
}
