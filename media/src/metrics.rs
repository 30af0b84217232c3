//! `/metrics` on media: counters in the Prometheus text exposition format (0.0.4), written by hand
//! because there are few of them. Per-stream series exist only for live streams, so label cardinality is
//! bounded by what is being published.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::producer::ProducerHandle;
use crate::registry::Registry;

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the produce-latency buckets: from a loopback broker (~ms) to an outage.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram with fixed buckets, updated lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
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

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// Label values are stream names, already restricted to `[A-Za-z0-9_.-]`; quotes and backslashes
/// cannot occur, but escape anyway so the format can never break.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Renders every metric.
pub fn render(registry: &Registry, producer: &ProducerHandle, rtmp: &RtmpCounters) -> String {
    let mut out = String::with_capacity(4096);
    let streams = registry.live_streams();
    let p = &producer.stats;
    metric(
        &mut out,
        "media_publishers",
        "gauge",
        "Streams being published now.",
        streams.len(),
    );
    let players: usize = streams.iter().map(|s| s.players()).sum();
    metric(
        &mut out,
        "media_players",
        "gauge",
        "RTMP players connected now.",
        players,
    );
    metric(
        &mut out,
        "media_rtmp_connections",
        "gauge",
        "RTMP connections open now.",
        rtmp.connections.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "media_rtmp_connections_accepted_total",
        "counter",
        "RTMP connections accepted.",
        rtmp.accepted.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "media_rtmp_connections_refused_total",
        "counter",
        "RTMP connections closed at once because --max-connections were open.",
        rtmp.refused.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "media_segments_produced_total",
        "counter",
        "Segments whose every chunk the broker acknowledged.",
        p.segments_delivered.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "media_segments_dropped_total",
        "counter",
        "Segments dropped because the queue for the broker was full.",
        p.segments_dropped.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "media_ll_parts_produced_total",
        "counter",
        "Low-latency HLS parts and init segments the broker acknowledged.",
        p.parts_delivered.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "media_ll_parts_dropped_total",
        "counter",
        "Low-latency HLS parts and init segments dropped (queue full, or larger than a record).",
        p.parts_dropped.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "media_kafka_produce_errors_total",
        "counter",
        "Records the producer failed to deliver.",
        p.delivery_errors.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "media_kafka_queue_bytes",
        "gauge",
        "Bytes of segments waiting for the broker's acknowledgement.",
        producer.queued_bytes(),
    );
    p.produce_latency.write(
        &mut out,
        "media_kafka_produce_latency_seconds",
        "Time from a segment's close to the broker acknowledging its last chunk.",
    );
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
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in &streams {
            let _ = writeln!(out, "{name}{{stream=\"{}\"}} {}", label(&s.name), value(s));
        }
    }
    keyframe_metrics(&mut out, &streams);
    out
}

/// The publishers' keyframe intervals, and which of them defeat the segment target (streams without two
/// keyframes yet are left out).
fn keyframe_metrics(out: &mut String, streams: &[std::sync::Arc<crate::live::LiveStream>]) {
    let measured: Vec<_> = streams
        .iter()
        .filter_map(|s| Some((label(&s.name), s.keyframes()?)))
        .collect();
    let _ = writeln!(
        out,
        "# HELP media_stream_keyframe_interval_seconds Longest of a live stream's recent keyframe \
         intervals (segments cannot be shorter).\n\
         # TYPE media_stream_keyframe_interval_seconds gauge"
    );
    for (name, k) in &measured {
        let _ = writeln!(
            out,
            "media_stream_keyframe_interval_seconds{{stream=\"{name}\"}} {}",
            k.max_ms as f64 / 1000.0
        );
    }
    let _ = writeln!(
        out,
        "# HELP media_stream_keyframe_interval_over_target 1 when a live stream's keyframes are further \
         apart than --segment-seconds: set the encoder's keyframe interval to the segment target \
         (OBS: Settings > Output > Keyframe Interval).\n\
         # TYPE media_stream_keyframe_interval_over_target gauge"
    );
    for (name, k) in &measured {
        let _ = writeln!(
            out,
            "media_stream_keyframe_interval_over_target{{stream=\"{name}\",segment_target_seconds=\"{}\"}} {}",
            k.target_ms as f64 / 1000.0,
            u8::from(k.over_target())
        );
    }
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
        let mut out = String::new();
        h.write(&mut out, "x_seconds", "help");
        assert!(out.contains("x_seconds_bucket{le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.025\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"30\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
    }
}
