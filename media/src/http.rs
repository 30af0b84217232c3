//! media's HTTP endpoint: health, counters and the control API.
//!
//! `GET /api/streams` lists live streams; `DELETE /api/streams/{name}` kicks a publisher (its
//! `on_publish_done` fires and the stream's end reaches the edges). With `--api-token`, `/api/...`
//! requires `Authorization: Bearer <token>`; `/healthz` never does.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::RtmpCounters;
use crate::producer::ProducerHandle;
use crate::registry::Registry;

/// Shared state of the HTTP endpoint.
#[derive(Clone)]
pub struct HttpState {
    pub registry: Registry,
    pub producer: ProducerHandle,
    pub api_token: Option<Arc<str>>,
    pub rtmp: Arc<RtmpCounters>,
    pub record: Arc<crate::record::RecordStats>,
}

/// The router.
pub fn app(state: HttpState) -> Router {
    let api = Router::new()
        .route("/api/streams", get(list_streams))
        .route("/api/streams/{name}", axum::routing::delete(kick_stream))
        .route("/api/stats", get(stats))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(api)
        .with_state(state)
}

async fn require_token(State(s): State<HttpState>, req: Request, next: Next) -> Response {
    let Some(token) = &s.api_token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response()
    }
}

/// Compares without an early exit, so response timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn list_streams(State(s): State<HttpState>) -> Json<serde_json::Value> {
    let streams: Vec<_> = s
        .registry
        .live_streams()
        .iter()
        .map(|l| {
            let tracks = l.tracks();
            let keyframes = l.keyframes();
            json!({
                "name": l.name,
                "app": l.app,
                "client_addr": l.client_addr,
                "broadcast": l.broadcast,
                "started_at_ms": l.started_at_ms,
                "uptime_seconds": l.uptime_secs(),
                "codecs": tracks.codecs,
                "width": tracks.width,
                "height": tracks.height,
                "ingest_bps": l.ingest_bps(),
                "segments": l.segments.load(Ordering::Relaxed),
                "players": l.players(),
                // The recent keyframe interval (null until two keyframes arrived), and when it defeats
                // the segment target, the advice for the streamer.
                "keyframe_interval_seconds": keyframes.map(|k| k.last_ms as f64 / 1000.0),
                "keyframe_interval_max_seconds": keyframes.map(|k| k.max_ms as f64 / 1000.0),
                "segment_target_seconds": keyframes.map(|k| k.target_ms as f64 / 1000.0),
                "warnings": keyframes.and_then(|k| k.advice()).into_iter().collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "streams": streams }))
}

async fn kick_stream(State(s): State<HttpState>, Path(name): Path<String>) -> Response {
    match s.registry.get(&name) {
        Some(live) => {
            live.kick.cancel();
            tracing::info!(stream = %name, "publisher kicked through the control API");
            StatusCode::NO_CONTENT.into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            format!("stream `{name}` is not live\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    let body = crate::metrics::render(&s.registry, &s.producer, &s.rtmp, &s.record);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    fn state(token: Option<&str>) -> HttpState {
        let (producer, _task) = crate::producer::unconnected(1 << 20);
        HttpState {
            registry: Registry::default(),
            producer,
            api_token: token.map(Arc::from),
            rtmp: Arc::default(),
            record: Arc::default(),
        }
    }

    async fn call(
        app: Router,
        method: &str,
        uri: &str,
        auth: Option<&str>,
    ) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = app
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn lists_and_kicks_live_streams() {
        let s = state(None);
        let claim = s
            .registry
            .claim("cam", "live", "10.0.0.1".into())
            .expect("claim");
        let (status, body) = call(app(s.clone()), "GET", "/api/streams", None).await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["streams"][0]["name"], "cam");
        assert_eq!(v["streams"][0]["client_addr"], "10.0.0.1");
        assert_eq!(
            v["streams"][0]["keyframe_interval_seconds"],
            serde_json::Value::Null
        );
        assert_eq!(v["streams"][0]["warnings"], json!([]));
        // OBS's default keyframe interval against 2 s segments, measured by the meter.
        let mut meter = media::keyframes::KeyframeMeter::new(2000);
        for i in 0..600u64 {
            meter.frame(i * 1000 / 30, i % 250 == 0);
        }
        claim
            .live
            .set_keyframes(meter.report().expect("two keyframes"));
        let (_, body) = call(app(s.clone()), "GET", "/api/streams", None).await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            v["streams"][0]["warnings"],
            json!(["keyframe interval 8.3 s; set your encoder's keyframe interval to 2 s"])
        );
        assert_eq!(v["streams"][0]["segment_target_seconds"], 2.0);
        let (status, _) = call(app(s.clone()), "DELETE", "/api/streams/cam", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert!(claim.live.kick.is_cancelled());
        let (status, _) = call(app(s.clone()), "DELETE", "/api/streams/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = call(app(s), "GET", "/metrics", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("media_publishers 1\n"), "{body}");
        assert!(
            body.contains("media_stream_segments_total{stream=\"cam\"} 0\n"),
            "{body}"
        );
        assert!(
            body.contains("# TYPE media_kafka_produce_latency_seconds histogram"),
            "{body}"
        );
        assert!(
            body.contains("media_stream_keyframe_interval_seconds{stream=\"cam\"} 8.33"),
            "{body}"
        );
        assert!(
            body.contains(
                // The prometheus crate writes labels sorted by name.
                "media_stream_keyframe_interval_over_target{segment_target_seconds=\"2\",stream=\"cam\"} 1\n"
            ),
            "{body}"
        );
    }

    #[tokio::test]
    async fn the_api_token_guards_the_api_but_not_health() {
        let s = state(Some("sekret"));
        assert_eq!(
            call(app(s.clone()), "GET", "/api/streams", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(app(s.clone()), "GET", "/api/streams", Some("Bearer wrong"))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(app(s.clone()), "GET", "/api/streams", Some("Bearer sekret"))
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            call(app(s), "GET", "/healthz", None).await.0,
            StatusCode::OK
        );
    }
}
