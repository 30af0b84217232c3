//! The viewer-facing HTTP API: live playlists, segments (with single byte ranges), the watch pages,
//! `/metrics` and a health check.
//!
//! Every answer comes from memory, so handlers never wait; the layers add CORS for browser players, a
//! short timeout, request metrics and tracing. There is deliberately no compression layer: segments are
//! already-compressed video, and compressing them would only cost CPU and break byte ranges.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody as _};
use axum::extract::{ConnectInfo, MatchedPath, Path, RawQuery, Request, State};
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, IF_RANGE, RANGE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tower_http::cors::{Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::metrics::{self, Telemetry, OTHER_ROUTE};
use crate::store::{Object, Store};
use crate::watch;

/// Content type of HLS playlists (RFC 8216 section 4).
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";
/// Content type of MPEG-TS segments.
pub const SEGMENT_CONTENT_TYPE: &str = "video/mp2t";
/// Content type of the low-latency rendition's fMP4 init segments, segments and parts.
pub const FMP4_CONTENT_TYPE: &str = "video/mp4";
/// A blocking playlist reload or part request waits at most this many target durations
/// (RFC 8216bis 6.2.5.2 suggests three) ...
const BLOCK_TARGET_DURATIONS: u32 = 3;
/// ... and never as long as the request timeout, so the client gets our answer, not the timeout's.
const MAX_BLOCK: Duration = Duration::from_secs(8);
/// Players reload a live playlist about once per target duration; one second keeps shared caches
/// useful without making the live edge visibly late.
const PLAYLIST_CACHE_CONTROL: &str = "max-age=1";
/// A segment URI is never reused for other bytes (sequence numbers never go back), so it can be cached
/// anywhere for as long as anyone wants it.
const SEGMENT_CACHE_CONTROL: &str = "public, max-age=86400, immutable";
/// Handlers answer from memory; anything slower than this is stuck, not busy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request was refused. The text shown to clients is short and reveals nothing internal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The stream name in the URL is not a valid stream name.
    #[error("invalid stream name")]
    BadStreamName,
    /// No playlist for this stream (never seen, or idle for longer than the segment TTL).
    #[error("unknown stream")]
    UnknownStream,
    /// Not a segment URI, or the segment is not (or no longer) cached.
    #[error("segment not found")]
    UnknownSegment,
    /// The requested byte range lies outside the segment.
    #[error("range not satisfiable")]
    RangeNotSatisfiable {
        /// Length of the whole segment, for `Content-Range: bytes */len`.
        len: u64,
    },
    /// Any other path.
    #[error("not found")]
    NotFound,
    /// A blocking request with `_HLS_msn` more than two segments ahead, `_HLS_part` without
    /// `_HLS_msn`, or a malformed value (RFC 8216bis 6.2.5.2).
    #[error("bad blocking request")]
    BadBlockingRequest,
    /// What a blocking request waited for did not appear in time.
    #[error("not available yet")]
    BlockTimeout,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match self {
            HttpError::BadStreamName => StatusCode::BAD_REQUEST,
            HttpError::UnknownStream | HttpError::UnknownSegment | HttpError::NotFound => {
                StatusCode::NOT_FOUND
            }
            HttpError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            HttpError::BadBlockingRequest => StatusCode::BAD_REQUEST,
            HttpError::BlockTimeout => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut response = (status, format!("{self}\n")).into_response();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        // A missing segment or stream may appear a second later: no cache may remember the miss.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let HttpError::RangeNotSatisfiable { len } = self {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                headers.insert(CONTENT_RANGE, v);
            }
        }
        response
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Playlists and segments.
    pub store: Arc<Store>,
    /// Request counters, viewers and consumer lag for `/metrics`.
    pub telemetry: Arc<Telemetry>,
    /// hls.js for the watch page, `None` if this build has none.
    pub hls_js: Option<Bytes>,
}

impl AppState {
    /// State over `store` with fresh telemetry and the hls.js embedded in this build.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            telemetry: Arc::new(Telemetry::default()),
            hls_js: watch::embedded_hls_js(),
        }
    }
}

/// Marks a response as part of watching a stream, so the metrics layer counts its client as a viewer.
#[derive(Debug, Clone)]
struct Watched(String);

/// The edge's router.
pub fn app(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([RANGE])
        .expose_headers([CONTENT_LENGTH, CONTENT_RANGE, ACCEPT_RANGES])
        .max_age(Duration::from_secs(86_400));
    Router::new()
        .route(INDEX.path, get(watch::index))
        .route(WATCH.path, get(watch::watch))
        .route(ASSET.path, get(watch::asset))
        .route(HEALTHZ.path, get(|| async { "ok\n" }))
        .route(METRICS.path, get(metrics_page))
        .route(PLAYLIST.path, get(playlist))
        .route(LL_PLAYLIST.path, get(ll_playlist))
        .route(SEGMENT.path, get(segment))
        .fallback(|| async { HttpError::NotFound })
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(cors)
        // Outside the timeout and CORS layers, so their answers are counted too.
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// One route of the edge: its path pattern and the `route` label its requests are counted under.
#[derive(Debug, Clone, Copy)]
struct Route {
    path: &'static str,
    label: &'static str,
}

const INDEX: Route = Route {
    path: "/",
    label: "index",
};
const WATCH: Route = Route {
    path: "/watch/{stream}",
    label: "watch",
};
const ASSET: Route = Route {
    path: "/assets/{file}",
    label: "asset",
};
const HEALTHZ: Route = Route {
    path: "/healthz",
    label: "healthz",
};
const METRICS: Route = Route {
    path: "/metrics",
    label: "metrics",
};
const PLAYLIST: Route = Route {
    path: "/live/{stream}/index.m3u8",
    label: "playlist",
};
const LL_PLAYLIST: Route = Route {
    path: "/live/{stream}/ll.m3u8",
    label: "ll_playlist",
};
const SEGMENT: Route = Route {
    path: "/live/{stream}/{segment}",
    label: "segment",
};
/// The route table, written once: [`app`] routes each, [`route_label`] labels each.
const ROUTES: [Route; 8] = [
    INDEX,
    WATCH,
    ASSET,
    HEALTHZ,
    METRICS,
    PLAYLIST,
    LL_PLAYLIST,
    SEGMENT,
];

/// The `route` label of a matched path: a fixed set, so label values stay bounded whatever is requested.
fn route_label(matched: Option<&MatchedPath>) -> &'static str {
    let matched = matched.map(MatchedPath::as_str);
    ROUTES
        .iter()
        .find(|r| Some(r.path) == matched)
        .map_or(OTHER_ROUTE, |r| r.label)
}

/// Counts every request by route and status, the body bytes sent, and the client as a viewer of the
/// stream whose playlist or segment it was served.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = route_label(req.extensions().get::<MatchedPath>());
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let head = req.method() == Method::HEAD;
    let response = next.run(req).await;
    // Every body here is in memory, so its exact size is known before it is sent.
    let bytes = if head {
        0
    } else {
        response.body().size_hint().exact().unwrap_or(0)
    };
    state
        .telemetry
        .http
        .record(route, response.status().as_u16(), bytes);
    if let (Some(Watched(stream)), Some(ip)) = (response.extensions().get::<Watched>(), client) {
        state.telemetry.viewers.seen(stream, ip, Instant::now());
    }
    response
}

async fn metrics_page(State(state): State<AppState>) -> Response {
    let body = metrics::render(&state.store, &state.telemetry, Instant::now());
    (
        [
            (CONTENT_TYPE, metrics::CONTENT_TYPE),
            (CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn playlist(
    State(state): State<AppState>,
    Path(stream): Path<String>,
) -> Result<Response, HttpError> {
    common::validate_stream_name(&stream).map_err(|_| HttpError::BadStreamName)?;
    let body = state
        .store
        .playlist(&stream)
        .ok_or(HttpError::UnknownStream)?;
    let mut response = (
        [
            (CONTENT_TYPE, PLAYLIST_CONTENT_TYPE),
            (CACHE_CONTROL, PLAYLIST_CACHE_CONTROL),
        ],
        body,
    )
        .into_response();
    response.extensions_mut().insert(Watched(stream));
    Ok(response)
}

/// The low-latency playlist, with blocking reload: `_HLS_msn=N[&_HLS_part=M]` waits until the
/// playlist holds that part (or segment N), woken by the consumer (RFC 8216bis 6.2.5.2).
async fn ll_playlist(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    common::validate_stream_name(&stream).map_err(|_| HttpError::BadStreamName)?;
    let (msn, part) = parse_blocking_query(query.as_deref().unwrap_or(""))?;
    let store = &state.store;
    if let Some(msn) = msn {
        let last = store
            .ll_with(&stream, |p| p.last_seq())
            .flatten()
            .ok_or(HttpError::UnknownStream)?;
        if msn > last.saturating_add(2) {
            return Err(HttpError::BadBlockingRequest);
        }
        wait_until(store, &stream, |p| p.has(msn, part)).await?;
    }
    let body = store.ll_playlist(&stream).ok_or(HttpError::UnknownStream)?;
    let cache = if msn.is_some() {
        // The answer to a blocking request names what it waited for: it never goes stale.
        "public, max-age=60"
    } else {
        PLAYLIST_CACHE_CONTROL
    };
    let mut response = (
        [
            (CONTENT_TYPE, PLAYLIST_CONTENT_TYPE),
            (CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response();
    response.extensions_mut().insert(Watched(stream));
    Ok(response)
}

/// `_HLS_msn` and `_HLS_part` of a playlist request; other arguments (`_HLS_skip`, cache busters)
/// are ignored: this edge always sends the full playlist, which the spec allows.
fn parse_blocking_query(query: &str) -> Result<(Option<u64>, Option<u32>), HttpError> {
    let (mut msn, mut part) = (None, None);
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "_HLS_msn" => msn = Some(v.parse().map_err(|_| HttpError::BadBlockingRequest)?),
            "_HLS_part" => part = Some(v.parse().map_err(|_| HttpError::BadBlockingRequest)?),
            _ => {}
        }
    }
    if part.is_some() && msn.is_none() {
        return Err(HttpError::BadBlockingRequest);
    }
    Ok((msn, part))
}

/// Waits until `ready` holds for the stream's low-latency playlist, at most three target durations
/// (capped below the request timeout). Each change of the playlist wakes the wait once.
async fn wait_until(
    store: &Store,
    stream: &str,
    ready: impl Fn(&crate::ll::LlPlaylist) -> bool,
) -> Result<(), HttpError> {
    // Subscribe first: a change between the check and the wait must still wake us.
    let mut changes = store.ll_subscribe(stream).ok_or(HttpError::UnknownStream)?;
    let target = store.ll_with(stream, |p| p.target_duration()).unwrap_or(1);
    let limit = (Duration::from_secs(target) * BLOCK_TARGET_DURATIONS).min(MAX_BLOCK);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if store.ll_with(stream, &ready).unwrap_or(false) {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            // The stream was forgotten (idle sweep) or time is up.
            Ok(Err(_)) | Err(_) => return Err(HttpError::BlockTimeout),
        }
    }
}

async fn segment(
    State(state): State<AppState>,
    Path((stream, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    common::validate_stream_name(&stream).map_err(|_| HttpError::BadStreamName)?;
    let store = &state.store;
    let (data, content_type) = match parse_object_uri(&file).ok_or(HttpError::UnknownSegment)? {
        Uri::Ts(seq) => (store.segment(&stream, seq), SEGMENT_CONTENT_TYPE),
        Uri::Init(id) => (store.object(&stream, Object::Init(id)), FMP4_CONTENT_TYPE),
        Uri::Fmp4Segment(seq) => (store.ll_segment(&stream, seq), FMP4_CONTENT_TYPE),
        Uri::Part(seq, part) => {
            // A preload hint names a part before it exists: the request for it waits for it
            // (RFC 8216bis 6.2.6), like a blocking playlist reload.
            let upcoming = store
                .ll_with(&stream, |p| {
                    !p.has(seq, Some(part)) && p.is_upcoming(seq, part)
                })
                .unwrap_or(false);
            if upcoming {
                wait_until(store, &stream, |p| p.has(seq, Some(part))).await?;
            }
            (
                store.object(&stream, Object::Part(seq, part)),
                FMP4_CONTENT_TYPE,
            )
        }
    };
    let data = data.ok_or(HttpError::UnknownSegment)?;
    serve_bytes(data, &headers, content_type, stream)
}

/// Answers with immutable media bytes, honouring a single `Range`.
fn serve_bytes(
    data: Bytes,
    headers: &HeaderMap,
    content_type: &'static str,
    stream: String,
) -> Result<Response, HttpError> {
    let len = data.len() as u64;

    // RFC 9110 13.1.5: with If-Range we could only honour the range if the validator matched, and we
    // send no validators, so the whole representation is the correct answer.
    let range = if headers.contains_key(IF_RANGE) {
        None
    } else {
        headers.get(RANGE).and_then(|v| v.to_str().ok())
    };
    let (status, body, content_range) = match range.map(|r| parse_range(r, len)) {
        None | Some(RangeRequest::Ignore) => (StatusCode::OK, data, None),
        Some(RangeRequest::Unsatisfiable) => return Err(HttpError::RangeNotSatisfiable { len }),
        Some(RangeRequest::Bytes { first, last }) => (
            StatusCode::PARTIAL_CONTENT,
            // Indices are < len, which came from a usize; `slice` shares the buffer.
            data.slice(first as usize..=last as usize),
            Some(format!("bytes {first}-{last}/{len}")),
        ),
    };
    let body_len = body.len();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(SEGMENT_CACHE_CONTROL),
    );
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Explicit, so HEAD (whose body axum drops) carries the same length as GET.
    h.insert(CONTENT_LENGTH, HeaderValue::from(body_len));
    if let Some(v) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
        h.insert(CONTENT_RANGE, v);
    }
    response.extensions_mut().insert(Watched(stream));
    Ok(response)
}

/// A media URI under `/live/{stream}/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Uri {
    /// `<seq>.ts`
    Ts(u64),
    /// `init-<id>.mp4`
    Init(u64),
    /// `<seq>.mp4`
    Fmp4Segment(u64),
    /// `<seq>.<part>.m4s`
    Part(u64, u32),
}

fn parse_object_uri(file: &str) -> Option<Uri> {
    if let Some(digits) = file.strip_suffix(".ts") {
        return canonical(digits).map(Uri::Ts);
    }
    if let Some(name) = file.strip_suffix(".mp4") {
        return match name.strip_prefix("init-") {
            Some(id) => canonical(id).map(Uri::Init),
            None => canonical(name).map(Uri::Fmp4Segment),
        };
    }
    let (seq, part) = file.strip_suffix(".m4s")?.split_once('.')?;
    Some(Uri::Part(
        canonical(seq)?,
        u32::try_from(canonical(part)?).ok()?,
    ))
}

/// A decimal number in its canonical spelling only (no sign, no leading zeros), so each object has
/// exactly one URL in shared caches.
fn canonical(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    (n.to_string() == digits).then_some(n)
}

/// How to answer a `Range` header (RFC 9110 section 14).
///
/// Parsed here rather than with `http-range-header` (which media's recordings use through tower-http's
/// `ServeFile`): that crate answers a suffix longer than the segment (`bytes=-5000` of 1000 bytes) with
/// 416 where RFC 9110 14.1.2 selects the whole segment, cannot tell a reversed range (`bytes=9-3`,
/// ignored here) from one past the end (416), and refuses `Bytes=` and leading zeros, all of which the
/// tests below pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeRequest {
    /// Malformed, another unit, or several ranges: send the whole segment (RFC 9110 14.2 allows
    /// ignoring Range, and players never need multipart answers).
    Ignore,
    /// Bytes `first..=last`, both within the segment.
    Bytes { first: u64, last: u64 },
    /// A well-formed range that selects nothing of the segment.
    Unsatisfiable,
}

fn parse_range(header: &str, len: u64) -> RangeRequest {
    let Some((unit, spec)) = header.trim().split_once('=') else {
        return RangeRequest::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Longer than u64: clamp, it is past any segment either way.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    match (start.trim().is_empty(), end.trim().is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match number(end) {
            None => RangeRequest::Ignore,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if len == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Bytes {
                first: len.saturating_sub(n),
                last: len - 1,
            },
        },
        // `a-`: from a to the end.
        (false, true) => match number(start) {
            None => RangeRequest::Ignore,
            Some(first) if first >= len => RangeRequest::Unsatisfiable,
            Some(first) => RangeRequest::Bytes {
                first,
                last: len - 1,
            },
        },
        // `a-b`, b clamped to the end.
        (false, false) => match (number(start), number(end)) {
            (Some(first), Some(last)) if first <= last => {
                if first >= len {
                    RangeRequest::Unsatisfiable
                } else {
                    RangeRequest::Bytes {
                        first,
                        last: last.min(len - 1),
                    }
                }
            }
            _ => RangeRequest::Ignore,
        },
        (true, true) => RangeRequest::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;
    use axum::http::Request;
    use common::{CompleteSegment, SegmentMeta};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_route_of_the_table_is_routed_and_counted_under_its_label() {
        let mut labels: Vec<_> = ROUTES.iter().map(|r| r.label).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ROUTES.len(), "labels are unique");
        let state = AppState::new(Arc::new(Store::new(&StoreConfig {
            cache_bytes: 1 << 20,
            segment_ttl: Duration::from_secs(60),
            window_segments: 3,
        })));
        for r in ROUTES {
            let uri = r
                .path
                .replace("{stream}", "cam")
                .replace("{file}", "x.js")
                .replace("{segment}", "1.ts");
            let req = Request::get(uri.as_str())
                .body(Body::empty())
                .expect("request");
            let _ = app(state.clone()).oneshot(req).await.expect("response");
            assert!(
                state.telemetry.http.routes().contains(&r.label),
                "{uri} not counted as {}",
                r.label
            );
        }
        assert!(!state.telemetry.http.routes().contains(&OTHER_ROUTE));
    }

    const SEQ: u64 = 17_000_000_003;

    fn store_with_segment(data: &[u8]) -> Arc<Store> {
        let store = Store::new(&StoreConfig {
            cache_bytes: 1 << 20,
            segment_ttl: Duration::from_secs(60),
            window_segments: 6,
        });
        store.insert_segment(CompleteSegment {
            meta: SegmentMeta {
                discontinuity: true,
                size: data.len() as u64,
                ..SegmentMeta::sample("cam", "b", SEQ)
            },
            data: Bytes::copy_from_slice(data),
        });
        Arc::new(store)
    }

    fn data() -> Vec<u8> {
        (0..1000u32).map(|i| (i % 251) as u8).collect()
    }

    async fn send(store: &Arc<Store>, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let res = app(AppState::new(store.clone()))
            .oneshot(req)
            .await
            .expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.expect("body").to_bytes();
        (status, headers, body)
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).expect("request")
    }

    fn get_range(uri: &str, range: &str) -> Request<Body> {
        Request::get(uri)
            .header(RANGE, range)
            .body(Body::empty())
            .expect("request")
    }

    fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
        h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn ll_part(seq: u64, part: u32, last: bool) -> (common::PartMeta, Bytes) {
        let data = Bytes::from(vec![part as u8; 100 + part as usize]);
        let meta = common::PartMeta {
            stream: "cam".into(),
            broadcast: "b".into(),
            seq,
            part,
            duration: 0.334,
            independent: part == 0,
            last,
            disc_seq: 1,
            discontinuity: false,
            init: 5,
            target_duration: 2,
            part_target: 0.334,
            closed_at_ms: 0,
            size: data.len() as u64,
            crc32: crc32fast::hash(&data),
        };
        (meta, data)
    }

    fn ll_store() -> Arc<Store> {
        let store = Store::new(&StoreConfig {
            cache_bytes: 1 << 20,
            segment_ttl: Duration::from_secs(60),
            window_segments: 6,
        });
        store.insert_init(
            &common::InitMeta {
                stream: "cam".into(),
                broadcast: "b".into(),
                init: 5,
                codecs: String::new(),
                size: 4,
                crc32: 0,
            },
            Bytes::from_static(b"init"),
        );
        for k in 0..3 {
            let (m, d) = ll_part(5, k, k == 2);
            store.insert_part(&m, d);
        }
        let (m, d) = ll_part(6, 0, false);
        store.insert_part(&m, d);
        Arc::new(store)
    }

    #[tokio::test]
    async fn blocking_reload_waits_for_the_part_and_is_woken_by_its_arrival() {
        let store = ll_store();
        let (status, h, body) = send(&store, get("/live/cam/ll.m3u8")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&h, "content-type"), PLAYLIST_CONTENT_TYPE);
        let text = String::from_utf8(body.to_vec()).expect("utf8");
        assert!(
            text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"6.1.m4s\"\n"),
            "{text}"
        );
        // Already there: answered at once.
        let (status, _, _) = send(&store, get("/live/cam/ll.m3u8?_HLS_msn=6&_HLS_part=0")).await;
        assert_eq!(status, StatusCode::OK);
        // Too far ahead, or a part without a segment number: 400.
        for uri in [
            "/live/cam/ll.m3u8?_HLS_msn=9",
            "/live/cam/ll.m3u8?_HLS_part=1",
            "/live/cam/ll.m3u8?_HLS_msn=x",
        ] {
            assert_eq!(
                send(&store, get(uri)).await.0,
                StatusCode::BAD_REQUEST,
                "{uri}"
            );
        }
        // The next part: the request waits until the consumer inserts it.
        let started = std::time::Instant::now();
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { send(&store, get("/live/cam/ll.m3u8?_HLS_msn=6&_HLS_part=1")).await }
        });
        let part_request = tokio::spawn({
            let store = store.clone();
            async move { send(&store, get("/live/cam/6.1.m4s")).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished() && !part_request.is_finished());
        let (m, d) = ll_part(6, 1, false);
        store.insert_part(&m, d.clone());
        let (status, _, body) = waiting.await.expect("task");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(status, StatusCode::OK);
        assert!(std::str::from_utf8(&body)
            .expect("utf8")
            .contains("\"6.1.m4s\""));
        let (status, h, body) = part_request.await.expect("task");
        assert_eq!((status, body), (StatusCode::OK, d));
        assert_eq!(header(&h, "content-type"), FMP4_CONTENT_TYPE);
        // A part nobody announced is not waited for.
        assert_eq!(
            send(&store, get("/live/cam/9.0.m4s")).await.0,
            StatusCode::NOT_FOUND
        );
        // Whole segment 5 is its parts back to back; the init is served as sent.
        let (status, _, body) = send(&store, get("/live/cam/5.mp4")).await;
        assert_eq!(status, StatusCode::OK);
        let mut whole = Vec::new();
        for k in 0..3 {
            whole.extend_from_slice(&ll_part(5, k, false).1);
        }
        assert_eq!(body, whole);
        assert_eq!(send(&store, get("/live/cam/init-5.mp4")).await.2, "init");
        assert_eq!(
            send(&store, get("/live/cam/6.mp4")).await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test(start_paused = true)]
    async fn blocking_reload_gives_up_after_three_target_durations() {
        let store = ll_store();
        let started = tokio::time::Instant::now();
        let (status, _, _) = send(&store, get("/live/cam/ll.m3u8?_HLS_msn=7&_HLS_part=0")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(started.elapsed(), Duration::from_secs(6));
    }

    #[test]
    fn object_uris_have_one_spelling() {
        assert_eq!(parse_object_uri("17.ts"), Some(Uri::Ts(17)));
        assert_eq!(parse_object_uri("17.mp4"), Some(Uri::Fmp4Segment(17)));
        assert_eq!(parse_object_uri("init-17.mp4"), Some(Uri::Init(17)));
        assert_eq!(parse_object_uri("17.3.m4s"), Some(Uri::Part(17, 3)));
        for bad in [
            "017.ts",
            "17.03.m4s",
            "17.m4s",
            "init-.mp4",
            "+1.ts",
            "1.2.3.m4s",
            "17.99999999999.m4s",
        ] {
            assert_eq!(parse_object_uri(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn playlist_is_served_with_its_content_type_and_short_cache() {
        let store = store_with_segment(&data());
        let (status, h, body) = send(&store, get("/live/cam/index.m3u8")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&h, "content-type"), PLAYLIST_CONTENT_TYPE);
        assert_eq!(header(&h, "cache-control"), "max-age=1");
        assert_eq!(body, store.playlist("cam").expect("known"));
        assert!(body.starts_with(b"#EXTM3U\n"));
        assert!(std::str::from_utf8(&body)
            .expect("utf8")
            .contains("\n17000000003.ts\n"));
    }

    #[tokio::test]
    async fn segment_bytes_are_identical_and_immutable() {
        let store = store_with_segment(&data());
        let (status, h, body) = send(&store, get("/live/cam/17000000003.ts")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], &data()[..]);
        assert_eq!(header(&h, "content-type"), "video/mp2t");
        assert_eq!(header(&h, "cache-control"), SEGMENT_CACHE_CONTROL);
        assert_eq!(header(&h, "accept-ranges"), "bytes");
        assert_eq!(header(&h, "content-length"), "1000");
    }

    #[tokio::test]
    async fn single_ranges_get_206() {
        let store = store_with_segment(&data());
        let uri = "/live/cam/17000000003.ts";
        for (range, first, last) in [
            ("bytes=10-19", 10usize, 19usize),
            ("bytes=990-", 990, 999),
            ("bytes=-5", 995, 999),
            ("bytes=-5000", 0, 999),
            ("bytes=500-99999", 500, 999),
        ] {
            let (status, h, body) = send(&store, get_range(uri, range)).await;
            assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(&body[..], &data()[first..=last], "{range}");
            assert_eq!(
                header(&h, "content-range"),
                format!("bytes {first}-{last}/1000"),
                "{range}"
            );
            assert_eq!(header(&h, "content-length"), (last - first + 1).to_string());
        }
    }

    #[tokio::test]
    async fn unsatisfiable_ranges_get_416_and_odd_ones_the_whole_segment() {
        let store = store_with_segment(&data());
        let uri = "/live/cam/17000000003.ts";
        for range in ["bytes=1000-", "bytes=2000-3000", "bytes=-0"] {
            let (status, h, _) = send(&store, get_range(uri, range)).await;
            assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
            assert_eq!(header(&h, "content-range"), "bytes */1000", "{range}");
        }
        for range in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=9-3",
            "bytes=x-",
            "bytes",
        ] {
            let (status, _, body) = send(&store, get_range(uri, range)).await;
            assert_eq!(status, StatusCode::OK, "{range}");
            assert_eq!(body.len(), 1000, "{range}");
        }
        let req = Request::get(uri)
            .header(RANGE, "bytes=0-1")
            .header(IF_RANGE, "\"etag\"")
            .body(Body::empty())
            .expect("request");
        assert_eq!(send(&store, req).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn head_has_the_length_but_no_body() {
        let store = store_with_segment(&data());
        for (uri, len) in [
            ("/live/cam/17000000003.ts", "1000".to_owned()),
            (
                "/live/cam/index.m3u8",
                store.playlist("cam").expect("known").len().to_string(),
            ),
        ] {
            let req = Request::head(uri).body(Body::empty()).expect("request");
            let (status, h, body) = send(&store, req).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_eq!(header(&h, "content-length"), len, "{uri}");
            assert!(body.is_empty(), "{uri}");
        }
    }

    #[tokio::test]
    async fn unknown_things_are_short_404s() {
        let store = store_with_segment(&data());
        for uri in [
            "/live/nobody/index.m3u8",
            "/live/cam/17000000004.ts",
            "/live/nobody/17000000003.ts",
            "/live/cam/017000000003.ts",
            "/live/cam/+17000000003.ts",
            "/live/cam/abc.ts",
            "/live/cam/17000000003.mp4",
            "/elsewhere",
        ] {
            let (status, h, body) = send(&store, get(uri)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert!(
                header(&h, "content-type").starts_with("text/plain"),
                "{uri}"
            );
            assert!(body.len() < 40, "{uri}");
        }
    }

    #[tokio::test]
    async fn bad_stream_names_are_refused() {
        let store = store_with_segment(&data());
        for uri in [
            "/live/.hidden/index.m3u8",
            "/live/a%2Fb/index.m3u8",
            "/live/a%20b/17000000003.ts",
        ] {
            let (status, _, body) = send(&store, get(uri)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(&body[..], b"invalid stream name\n", "{uri}");
        }
    }

    #[tokio::test]
    async fn cors_is_open_to_any_origin() {
        let store = store_with_segment(&data());
        let req = Request::get("/live/cam/17000000003.ts")
            .header("origin", "https://player.example")
            .body(Body::empty())
            .expect("request");
        let (_, h, _) = send(&store, req).await;
        assert_eq!(header(&h, "access-control-allow-origin"), "*");
        assert!(header(&h, "access-control-expose-headers")
            .to_ascii_lowercase()
            .contains("content-range"));

        let preflight = Request::options("/live/cam/17000000003.ts")
            .header("origin", "https://player.example")
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "range")
            .body(Body::empty())
            .expect("request");
        let (status, h, _) = send(&store, preflight).await;
        assert!(status.is_success(), "{status}");
        assert_eq!(header(&h, "access-control-allow-origin"), "*");
        assert!(header(&h, "access-control-allow-headers").contains("range"));
    }

    #[tokio::test]
    async fn healthz_says_ok() {
        let store = store_with_segment(&data());
        let (status, _, body) = send(&store, get("/healthz")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"ok\n");
    }

    #[test]
    fn range_parsing_edge_cases() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-0", 1), Bytes { first: 0, last: 0 });
        assert_eq!(parse_range("bytes=-1", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("BYTES = 1-2", 10), Bytes { first: 1, last: 2 });
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 10),
            Bytes { first: 0, last: 9 }
        );
        assert_eq!(parse_range("bytes=-", 10), Ignore);
        assert_eq!(parse_range("bytes=+1-2", 10), Ignore);
    }
}
