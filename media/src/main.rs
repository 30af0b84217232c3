//! `media`: accepts RTMP publishers, remuxes their H.264/AAC into MPEG-TS segments and produces them to
//! Kafka for the CDN edges.

mod broadcast;
mod config;
mod hooks;
mod http;
mod live;
mod metrics;
mod producer;
mod record;
mod registry;
mod rtmp_server;
mod shutdown;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{Args, Config};

/// How long queued records are flushed at exit (see `producer::start`).
const PRODUCER_FLUSH_TIMEOUT: Duration = Duration::from_secs(20);

fn main() -> std::process::ExitCode {
    let config = match Config::load(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("media: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    service::init_tracing(config.log_json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("media: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("media: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let rtmp_listener = rtmp_server::bind(config.rtmp_listen).await?;
    let http_listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {} (is the port in use? set --http-listen)",
                config.http_listen
            )
        })?;

    let (producer, producer_task) = producer::start(
        producer::ProducerSettings {
            brokers: config.kafka_brokers.clone(),
            topic: config.topic.clone(),
            max_message_bytes: config.max_message_bytes,
            livedto_version: config.livedto_version,
            max_queue_bytes: config.max_queue_bytes,
            extra: config.kafka_options.clone(),
        },
        // What waits in the queue at exit is flushed for this long: enough for a broker that is
        // restarting meanwhile (Apache Kafka takes 10-15 s to come back even as one small node), well
        // inside the 30 s an orchestrator usually grants between SIGTERM and SIGKILL.
        PRODUCER_FLUSH_TIMEOUT,
    )?;
    let producer_task = tokio::spawn(producer_task);

    let registry = registry::Registry::default();
    let hooks = hooks::Hooks::new(config.hooks.clone(), config.hook_timeout);
    let counters = Arc::new(metrics::RtmpCounters::default());
    let record_stats = Arc::new(record::RecordStats::default());
    // Before any publisher is accepted: a new recording must not be mistaken for an interrupted one.
    {
        let (dir, stats) = (config.record_dir.clone(), record_stats.clone());
        let _ =
            tokio::task::spawn_blocking(move || record::recover::recover_all(&dir, &stats)).await;
    }
    if config.record_all {
        info!(dir = %config.record_dir.display(), "recording every broadcast");
    }
    let recorder = record::Recorder::new(
        config.record_dir.clone(),
        config.record_formats,
        config.segment,
        record_stats.clone(),
        hooks.clone(),
    );
    let ctx = Arc::new(rtmp_server::ServerContext {
        counters: counters.clone(),
        hooks: hooks.clone(),
        update_interval: config.update_interval,
        next_client_id: std::sync::atomic::AtomicU64::new(1),
        app: config.app.clone(),
        segment: config.segment,
        part_target: config.part_target,
        handshake_timeout: config.handshake_timeout,
        idle_timeout: config.idle_timeout,
        publish_read_interval: config.publish_read_interval,
        registry: registry.clone(),
        producer: producer.clone(),
        recorder: recorder.clone(),
        record_all: config.record_all,
    });

    let http_app = http::app(http::HttpState {
        registry,
        producer: producer.clone(),
        api_token: config.api_token.as_deref().map(Arc::from),
        rtmp: counters,
        record: record_stats,
    })
    .merge(record::serve::router(config.record_dir.clone()));
    let http_cancel = cancel.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(http_listener, http_app)
            .with_graceful_shutdown(http_cancel.cancelled_owned())
            .await
    });

    info!(
        rtmp = %config.rtmp_listen,
        http = %config.http_listen,
        brokers = %config.kafka_brokers,
        topic = %config.topic,
        "media started; publish to rtmp://{}/{}/<stream>",
        config.rtmp_listen,
        config.app
    );
    let signal_cancel = cancel.clone();
    tokio::spawn(async move {
        service::shutdown_signal().await;
        info!("shutdown requested");
        signal_cancel.cancel();
        // A second signal forces the exit.
        service::shutdown_signal().await;
        error!("second signal: exiting now");
        std::process::exit(130);
    });

    rtmp_server::serve(
        rtmp_listener,
        ctx.clone(),
        config.max_connections,
        cancel.clone(),
    )
    .await;
    // The HTTP server stops on the same token; it holds a producer handle for its counters.
    let _ = http_task.await;
    // Broadcasts have ended: writers finish their files, then their on_record_done joins the hooks.
    recorder.drain(Duration::from_secs(15)).await;
    // Done-hooks of the sessions that just ended are in flight; let them reach the manager.
    hooks.drain(Duration::from_secs(10)).await;
    // Sessions have ended their broadcasts; dropping the last handles lets the producer drain and flush.
    drop(ctx);
    drop(producer);
    let bound = PRODUCER_FLUSH_TIMEOUT + Duration::from_secs(5);
    if tokio::time::timeout(bound, producer_task).await.is_err() {
        error!("producer did not flush within {bound:?}");
    }
    info!("media stopped");
    Ok(())
}
