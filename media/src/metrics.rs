//! `/metrics` on media, read from the process's counters at scrape time and encoded by the
//! `prometheus` crate (text exposition format 0.0.4, through `service::Scrape`). Per-stream series exist
//! only for live streams, so label cardinality is bounded by what is being published.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use service::Scrape;

use crate::producer::ProducerHandle;
use crate::record::RecordStats;
use crate::registry::Registry;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = service::METRICS_CONTENT_TYPE;

/// Upper bounds (seconds) of the produce-latency buckets: from a loopback broker (~ms) to an outage.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// `media_kafka_produce_latency_seconds`, a `prometheus` histogram (named `Histogram` for the producer's
/// statistics, its one user).
#[derive(Debug, Clone)]
pub struct Histogram(prometheus::Histogram);

impl Default for Histogram {
    fn default() -> Self {
        Self(service::histogram(
            "media_kafka_produce_latency_seconds",
            "Time from a segment's close to the broker acknowledging its last chunk.",
            &BUCKETS,
        ))
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

/// Counters of the RTMP side.
#[derive(Debug, Default)]
pub struct RtmpCounters {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections closed after the handshake because `--max-connections` sessions were open.
    pub refused: AtomicU64,
}

/// Name, type, help and value of a per-stream series.
type PerStream = (
    &'static str,
    &'static str,
    &'static str,
    fn(&crate::live::LiveStream) -> u64,
);

/// Renders every metric.
pub fn render(
    registry: &Registry,
    producer: &ProducerHandle,
    rtmp: &RtmpCounters,
    record: &RecordStats,
) -> String {
    let x = Scrape::new();
    let streams = registry.live_streams();
    let p = &producer.stats;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    x.gauge(
        "media_publishers",
        "Streams being published now.",
        streams.len() as f64,
    );
    let players: usize = streams.iter().map(|s| s.players()).sum();
    x.gauge(
        "media_players",
        "RTMP players connected now.",
        players as f64,
    );
    x.gauge(
        "media_rtmp_connections",
        "RTMP connections open now.",
        load(&rtmp.connections) as f64,
    );
    x.counter(
        "media_rtmp_connections_accepted_total",
        "RTMP connections accepted.",
        load(&rtmp.accepted),
    );
    x.counter(
        "media_rtmp_connections_refused_total",
        "RTMP connections closed at once because --max-connections were open.",
        load(&rtmp.refused),
    );
    x.counter(
        "media_segments_produced_total",
        "Segments whose every chunk the broker acknowledged.",
        load(&p.segments_delivered),
    );
    x.counter(
        "media_segments_dropped_total",
        "Segments dropped because the queue for the broker was full.",
        load(&p.segments_dropped),
    );
    x.counter(
        "media_ll_parts_produced_total",
        "Low-latency HLS parts and init segments the broker acknowledged.",
        load(&p.parts_delivered),
    );
    x.counter(
        "media_ll_parts_dropped_total",
        "Low-latency HLS parts and init segments dropped (queue full, or larger than a record).",
        load(&p.parts_dropped),
    );
    x.counter(
        "media_kafka_produce_errors_total",
        "Records the producer failed to deliver.",
        load(&p.delivery_errors),
    );
    x.gauge(
        "media_kafka_queue_bytes",
        "Bytes of segments waiting for the broker's acknowledgement.",
        producer.queued_bytes() as f64,
    );
    x.add(p.produce_latency.0.clone());
    let per_stream: [PerStream; 3] = [
        (
            "media_stream_ingest_bits_per_second",
            "gauge",
            "Ingest bit rate of a live stream over the last seconds.",
            |s| s.ingest_bps(),
        ),
        (
            "media_stream_segments_total",
            "counter",
            "Segments a live stream's current broadcast produced.",
            |s| s.segments.load(Ordering::Relaxed),
        ),
        (
            "media_stream_players",
            "gauge",
            "RTMP players of a live stream.",
            |s| s.players() as u64,
        ),
    ];
    for (name, kind, help, value) in per_stream {
        let series = streams.iter().map(|s| (vec![s.name.as_str()], value(s)));
        if kind == "counter" {
            x.counters(name, help, &["stream"], series);
        } else {
            x.gauges(name, help, &["stream"], series.map(|(l, v)| (l, v as f64)));
        }
    }
    keyframe_metrics(&x, &streams);
    record.render(&x);
    x.render()
}

/// The publishers' keyframe intervals, and which of them defeat the segment target (streams without two
/// keyframes yet are left out).
fn keyframe_metrics(x: &Scrape, streams: &[std::sync::Arc<crate::live::LiveStream>]) {
    let measured: Vec<_> = streams
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.keyframes()?)))
        .collect();
    x.gauges(
        "media_stream_keyframe_interval_seconds",
        "Longest of a live stream's recent keyframe intervals (segments cannot be shorter).",
        &["stream"],
        measured
            .iter()
            .map(|(name, k)| (vec![*name], k.max_ms as f64 / 1000.0)),
    );
    let targets: Vec<String> = measured
        .iter()
        .map(|(_, k)| (k.target_ms as f64 / 1000.0).to_string())
        .collect();
    x.gauges(
        "media_stream_keyframe_interval_over_target",
        "1 when a live stream's keyframes are further apart than --segment-seconds: set the encoder's \
         keyframe interval to the segment target (OBS: Settings > Output > Keyframe Interval).",
        &["stream", "segment_target_seconds"],
        measured
            .iter()
            .zip(&targets)
            .map(|((name, k), target)| (vec![*name, target.as_str()], f64::from(u8::from(k.over_target())))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(60));
        let x = Scrape::new();
        x.add(h.0.clone());
        let out = x.render();
        let name = "media_kafka_produce_latency_seconds";
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"0.001\"}} 1\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"0.025\"}} 2\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"30\"}} 2\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 3\n")),
            "{out}"
        );
        assert!(out.contains(&format!("{name}_count 3\n")), "{out}");
    }
}
