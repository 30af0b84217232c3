//! `cdn-edge`: consumes every partition of the live topic into memory and serves HLS over HTTP.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cdn_edge::config::{Args, Config};
use cdn_edge::http::{app, AppState};
use cdn_edge::kafka::{Consumer, ConsumerSettings, Lookback};
use cdn_edge::metrics::Telemetry;
use cdn_edge::store::{self, Store, StoreConfig};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// jemalloc, not glibc's malloc: the cache is hundreds of megabytes of segments of a few hundred
/// kilobytes, each a slightly different size, allocated by the consumer and freed on eviction in no
/// particular order. glibc serves them from its heaps once its mmap threshold has risen to their size, and
/// the holes they leave stay resident: with a full 512 MiB cache (100 publishers, LL-HLS off) the edge
/// held 684 MB, 148 MB over the cache. jemalloc's size classes and page decay held it to 579 MB, and to
/// 619-624 MB with LL-HLS parts as well (glibc 592-597); `bench/ingest.py` figures in the README.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long in-flight responses may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often idle streams are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let config = match Config::load(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cdn-edge: {e}");
            return ExitCode::from(2);
        }
    };
    service::init_tracing(config.log_json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cdn-edge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config));
    // The consumer thread has been told to stop; do not wait for ever on a wedged librdkafka call.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, no backtrace: startup errors are usually a port or a setting to fix.
            eprintln!("cdn-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {} (is the port in use? set --http-listen)",
                config.http_listen
            )
        })?;
    let store = Arc::new(Store::new(&StoreConfig {
        cache_bytes: config.cache_bytes,
        segment_ttl: config.segment_ttl,
        window_segments: config.window_segments,
    }));
    let consumer = Consumer::new(ConsumerSettings {
        lookback: config
            .lookback
            .map_or(Lookback::Window(config.window_segments), Lookback::Fixed),
        stale_after: config.stale_after_target_durations,
        kafka_options: config.kafka_options.clone(),
        ..ConsumerSettings::new(&config.kafka_brokers, &config.topic)
    })
    .context("building the Kafka consumer (check --kafka-option)")?;

    let state = AppState {
        telemetry: Arc::new(Telemetry {
            ingest: consumer.ingest_stats(),
            ..Telemetry::with_lag(consumer.lag())
        }),
        ..AppState::new(store.clone())
    };
    if state.hls_js.is_none() {
        warn!("this build has no hls.js: watch pages will say the player is missing (run `npm ci` in web/ and rebuild)");
    }

    let cancel = CancellationToken::new();
    let consumer_task = tokio::task::spawn_blocking({
        let (store, cancel) = (store.clone(), cancel.clone());
        move || consumer.run(store, cancel)
    });
    tokio::spawn(store::sweep_periodically(
        store.clone(),
        SWEEP_EVERY,
        cancel.clone(),
    ));
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            service::shutdown_signal().await;
            info!("shutdown requested");
            cancel.cancel();
            // A second signal forces the exit.
            service::shutdown_signal().await;
            error!("second signal: exiting now");
            std::process::exit(130);
        }
    });

    info!(
        http = %config.http_listen,
        brokers = %config.kafka_brokers,
        topic = %config.topic,
        window = config.window_segments,
        cache_bytes = config.cache_bytes,
        hls_js = cdn_edge::watch::HLS_JS_VERSION,
        "cdn-edge started; streams at http://{0}/, playlists at http://{0}/live/<stream>/index.m3u8, \
         metrics at http://{0}/metrics",
        config.http_listen
    );
    // Connection info gives the metrics layer each viewer's address.
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let server =
        axum::serve(listener, service).with_graceful_shutdown(cancel.clone().cancelled_owned());
    let drain_deadline = async {
        cancel.cancelled().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    let served = tokio::select! {
        served = server => served.context("HTTP server failed"),
        () = drain_deadline => {
            warn!("in-flight responses did not finish within {DRAIN_TIMEOUT:?}");
            Ok(())
        }
    };
    cancel.cancel();
    if tokio::time::timeout(Duration::from_secs(5), consumer_task)
        .await
        .is_err()
    {
        warn!("Kafka consumer did not stop within 5 s");
    }
    info!("cdn-edge stopped");
    served
}
