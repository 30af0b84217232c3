//! What both binaries (`media`, `cdn-edge`) do the same way as servers, written once: logging set-up
//! ([`init_tracing`]), the shutdown signal ([`shutdown_signal`]) and the `/metrics` scrape ([`Scrape`],
//! through the `prometheus` crate's registry and text encoder).
//!
//! A crate of its own rather than a module of `common`, which is the LiveDTO contract and stays free of
//! I/O and of server dependencies (tokio signals, a tracing subscriber, Prometheus) for any consumer
//! that implements it.

use prometheus::core::Collector;
use prometheus::{Encoder as _, Gauge, GaugeVec, IntCounter, IntCounterVec, Opts, Registry};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), as JSON lines if `json`; coloured only
/// on a terminal so files and log shippers get plain text.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and systemd send).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Content type of the text exposition format `/metrics` answers with.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One `/metrics` scrape: metrics read from the process's own counters at scrape time, registered in a
/// fresh registry and encoded by the `prometheus` crate. Names and help texts are fixed in the code, so
/// registering cannot fail; a metric it would refuse (a bug) is left out rather than failing the scrape.
#[derive(Default)]
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    /// A scrape with nothing in it yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds any collector (e.g. a live `prometheus::Histogram`, shared by cloning).
    pub fn add(&self, collector: impl Collector + 'static) {
        let _ = self.registry.register(Box::new(collector));
    }

    /// A counter (its name ends in `_total`) with the value `value`.
    pub fn counter(&self, name: &str, help: &str, value: u64) {
        if let Ok(c) = IntCounter::new(name, help) {
            c.inc_by(value);
            self.add(c);
        }
    }

    /// A gauge with the value `value`.
    pub fn gauge(&self, name: &str, help: &str, value: f64) {
        if let Ok(g) = Gauge::new(name, help) {
            g.set(value);
            self.add(g);
        }
    }

    /// A labelled gauge family: one series per `(label values, value)`.
    pub fn gauges<'a>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        series: impl IntoIterator<Item = (Vec<&'a str>, f64)>,
    ) {
        if let Ok(family) = GaugeVec::new(Opts::new(name, help), labels) {
            for (values, v) in series {
                if let Ok(g) = family.get_metric_with_label_values(&values) {
                    g.set(v);
                }
            }
            self.add(family);
        }
    }

    /// A labelled counter family: one series per `(label values, value)`.
    pub fn counters<'a>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        series: impl IntoIterator<Item = (Vec<&'a str>, u64)>,
    ) {
        if let Ok(family) = IntCounterVec::new(Opts::new(name, help), labels) {
            for (values, v) in series {
                if let Ok(c) = family.get_metric_with_label_values(&values) {
                    c.inc_by(v);
                }
            }
            self.add(family);
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(4096);
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A latency histogram in seconds over `buckets` (upper bounds), to observe from anywhere and add to
/// every scrape.
pub fn histogram(name: &str, help: &str, buckets: &[f64]) -> prometheus::Histogram {
    let opts = prometheus::HistogramOpts::new(name, help).buckets(buckets.to_vec());
    // Only a name or buckets the crate refuses can fail, and those are constants of the callers.
    prometheus::Histogram::with_opts(opts).unwrap_or_else(|e| panic!("histogram {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_renders_the_text_format() {
        let s = Scrape::new();
        s.counter("x_total", "Things.", 3);
        s.gauge("y", "Level.", 1.5);
        s.gauges(
            "z",
            "Per \"stream\".",
            &["stream"],
            [(vec!["a\"b"], 2.0), (vec!["c"], 0.0)],
        );
        let h = histogram("lat_seconds", "Latency.", &[0.01, 1.0]);
        h.observe(0.005);
        h.observe(5.0);
        s.add(h);
        let text = s.render();
        assert!(
            text.contains("# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE y gauge\ny 1.5\n"), "{text}");
        assert!(text.contains("z{stream=\"a\\\"b\"} 2\n"), "{text}");
        assert!(
            text.contains("lat_seconds_bucket{le=\"0.01\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("lat_seconds_bucket{le=\"1\"} 1\n"), "{text}");
        assert!(
            text.contains("lat_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("lat_seconds_count 2\n"), "{text}");
        assert!(METRICS_CONTENT_TYPE.starts_with(prometheus::TEXT_FORMAT));
    }
}
