//! The RTMP server: accepts connections (bounded), and runs each in its own task with its own span; the
//! protocol itself is the library's (`media::rtmp`), which each connection drives.
//!
//! Two bounds, both `--max-connections`: connections still in the handshake, and sessions past it.
//! A client that connects and sends nothing (slowloris) only holds a handshake place, and when those
//! are all taken the oldest is closed to make room, so idle sockets cannot lock publishers out; they
//! also expire after `--handshake-timeout-seconds`.

mod connection;
mod handshake;
mod link;
mod outcome;
mod pacing;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Period of the shared clock publishers' sockets are read on; `None` reads at once.
    pub publish_read_interval: Option<Duration>,
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
    /// Records broadcasts: all with `--record all`, and those the manager's `X-Record: on` asks for.
    pub recorder: crate::record::Recorder,
    /// `--record all`.
    pub record_all: bool,
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
    let pending = Arc::new(Handshaking::new(max_connections));
    let tracker = TaskTracker::new();
    loop {
        let (mut socket, peer) = tokio::select! {
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
        ctx.counters.accepted.fetch_add(1, Ordering::Relaxed);
        ctx.counters.connections.fetch_add(1, Ordering::Relaxed);
        let _ = socket.set_nodelay(true);
        let span = tracing::info_span!("rtmp", %peer, stream = tracing::field::Empty);
        let (id, evicted) = pending.add();
        let (ctx, slots, pending) = (ctx.clone(), slots.clone(), pending.clone());
        let cancel = cancel.child_token();
        tracker.spawn(
            async move {
                let timeout = ctx.handshake_timeout;
                let result = tokio::select! {
                    _ = cancel.cancelled() => None,
                    _ = evicted.cancelled() => {
                        info!(%peer, "connection closed: handshake not finished and every handshake place is taken");
                        None
                    }
                    r = handshake::run(&mut socket, timeout) => Some(r),
                };
                pending.remove(id);
                match result {
                    Some(Ok(remaining)) => match slots.try_acquire_owned() {
                        Ok(permit) => {
                            connection::run(socket, peer, remaining, ctx.clone(), cancel).await;
                            drop(permit);
                        }
                        Err(_) => {
                            ctx.counters.refused.fetch_add(1, Ordering::Relaxed);
                            warn!(%peer, max_connections, "connection refused: too many connections");
                        }
                    },
                    Some(Err(e @ handshake::HandshakeFailure::Invalid(_))) => {
                        warn!(%peer, "connection closed: {e}")
                    }
                    Some(Err(e)) => info!(%peer, "connection closed: {e}"),
                    None => {}
                }
                ctx.counters.connections.fetch_sub(1, Ordering::Relaxed);
            }
            .instrument(span),
        );
    }
    info!(
        sessions = tracker.len(),
        "rtmp server stopping; ending sessions"
    );
    crate::shutdown::drain(&tracker, Duration::from_secs(10), "RTMP sessions").await;
}

/// Binds the RTMP listener, with an error that says what to do.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for RTMP on {addr} (is another server using the port? set --rtmp-listen)")
    })
}

/// Connections still in the handshake, oldest first, each with the token that closes it.
struct Handshaking {
    max: usize,
    inner: Mutex<(u64, VecDeque<(u64, CancellationToken)>)>,
}

impl Handshaking {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            inner: Mutex::new((0, VecDeque::new())),
        }
    }

    /// Registers a new connection, closing the oldest one still handshaking if all places are taken.
    fn add(&self) -> (u64, CancellationToken) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (next, queue) = &mut *inner;
        if queue.len() >= self.max {
            if let Some((_, oldest)) = queue.pop_front() {
                oldest.cancel();
            }
        }
        let id = *next;
        *next += 1;
        let token = CancellationToken::new();
        queue.push_back((id, token.clone()));
        (id, token)
    }

    fn remove(&self, id: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Handshakes end roughly in arrival order, so the entry is near the front.
        if let Some(i) = inner.1.iter().position(|(i, _)| *i == id) {
            inner.1.remove(i);
        }
    }
}
