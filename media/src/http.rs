//! media's HTTP endpoint: health and counters. (The control API comes with publisher hooks.)

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::producer::ProducerHandle;
use crate::registry::Registry;

/// Shared state of the HTTP endpoint.
#[derive(Clone)]
pub struct HttpState {
    pub registry: Registry,
    pub producer: ProducerHandle,
}

/// The router: `GET /healthz`, `GET /api/stats`.
pub fn app(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/api/stats", get(stats))
        .with_state(state)
}

async fn stats(State(s): State<HttpState>) -> Json<serde_json::Value> {
    let p = &s.producer.stats;
    Json(json!({
        "live_streams": s.registry.live_count(),
        "segments_delivered": p.segments_delivered.load(Ordering::Relaxed),
        "segments_dropped": p.segments_dropped.load(Ordering::Relaxed),
        "delivery_errors": p.delivery_errors.load(Ordering::Relaxed),
        "queued_bytes": s.producer.queued_bytes(),
    }))
}
