//! The RTMP server: accepts connections (bounded), and runs each in its own task with its own span.

mod aggregate;
mod connect;
mod session;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use crate::hooks::Hooks;
use crate::producer::ProducerHandle;
use crate::registry::Registry;

/// What every session needs.
pub struct ServerContext {
    /// RTMP application name publishers must use.
    pub app: String,
    /// Target segment duration.
    pub segment: Duration,
    /// Part target of the low-latency rendition; `None` turns it off.
    pub part_target: Option<Duration>,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub registry: Registry,
    pub producer: ProducerHandle,
    /// Manager hooks (nginx-rtmp compatible).
    pub hooks: Hooks,
    /// Period of `on_update` calls.
    pub update_interval: Duration,
    /// Source of nginx-rtmp's `clientid` field.
    pub next_client_id: AtomicU64,
    /// Connection counters for /metrics.
    pub counters: Arc<crate::metrics::RtmpCounters>,
}

/// Accepts RTMP connections until `cancel` fires, then waits (bounded) for the sessions to wind down so
/// their broadcasts end properly.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ServerContext>,
    max_connections: usize,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let tracker = TaskTracker::new();
    loop {
        let (socket, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Running out of file descriptors must not end the server; back off briefly.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            ctx.counters.refused.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, max_connections, "connection refused: too many connections");
            continue;
        };
        ctx.counters.accepted.fetch_add(1, Ordering::Relaxed);
        ctx.counters.connections.fetch_add(1, Ordering::Relaxed);
        let _ = socket.set_nodelay(true);
        let span = tracing::info_span!("rtmp", %peer, stream = tracing::field::Empty);
        let ctx = ctx.clone();
        let cancel = cancel.child_token();
        tracker.spawn(
            async move {
                session::run(socket, peer, ctx.clone(), cancel).await;
                ctx.counters.connections.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            }
            .instrument(span),
        );
    }
    tracker.close();
    info!(
        sessions = tracker.len(),
        "rtmp server stopping; ending sessions"
    );
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        warn!("some RTMP sessions did not end within 10 s");
    }
}

/// Binds the RTMP listener, with an error that says what to do.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for RTMP on {addr} (is another server using the port? set --rtmp-listen)")
    })
}
