//! The router as browsers and Prometheus see it, driven with `oneshot`: the stream list, the watch page
//! with and without the embedded hls.js, and `/metrics` counting what was served.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use cdn_edge::http::{app, AppState};
use cdn_edge::metrics::Telemetry;
use cdn_edge::stats::ConsumerLag;
use cdn_edge::store::{Store, StoreConfig};
use common::{CompleteSegment, SegmentMeta, StreamEnd};
use http_body_util::BodyExt;
use tower::ServiceExt;

const SEGMENT_LEN: usize = 1234;

fn segment(stream: &str, seq: u64) -> CompleteSegment {
    CompleteSegment {
        meta: SegmentMeta {
            size: SEGMENT_LEN as u64,
            ..SegmentMeta::sample(stream, "b", seq)
        },
        data: Bytes::from(vec![7u8; SEGMENT_LEN]),
    }
}

fn store() -> Arc<Store> {
    let store = Store::new(&StoreConfig {
        cache_bytes: 1 << 20,
        segment_ttl: Duration::from_secs(60),
        window_segments: 6,
    });
    store.insert_segment(segment("cam", 10));
    store.insert_segment(segment("cam", 11));
    store.insert_segment(segment("old", 5));
    store.end_stream(&StreamEnd {
        stream: "old".into(),
        broadcast: "b".into(),
        ended_at_ms: 0,
        last_seq: Some(5),
    });
    Arc::new(store)
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn request(state: &AppState, method: &str, uri: &str, client: [u8; 4]) -> Answer {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    // What `into_make_service_with_connect_info` adds for a real connection.
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((client, 40_000))));
    let res = app(state.clone()).oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(state: &AppState, uri: &str) -> Answer {
    request(state, "GET", uri, [10, 0, 0, 1]).await
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn stream_list_links_live_then_ended_streams() {
    let state = AppState::new(store());
    let page = get(&state, "/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    let live = page.body.find("href=\"watch/cam\"").expect("cam linked");
    let ended = page.body.find("href=\"watch/old\"").expect("old linked");
    assert!(live < ended, "{}", page.body);
}

#[tokio::test]
async fn watch_page_loads_only_the_edges_own_scripts() {
    let state = AppState {
        hls_js: Some(Bytes::from_static(b"/* hls.js */")),
        ..AppState::new(store())
    };
    let page = get(&state, "/watch/cam").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .body
        .contains("data-playlist=\"../live/cam/index.m3u8\""));
    assert!(page
        .body
        .contains("<script src=\"../assets/hls.min.js\"></script>"));
    assert!(page
        .body
        .contains("<script src=\"../assets/player.js\"></script>"));
    assert!(
        page.body.contains("name=\"viewport\""),
        "phone-sized screens"
    );
    assert!(!page.body.contains("player-missing"));
    // Every script is relative to this edge, and the browser is told to refuse any other.
    for src in page.body.split("src=\"").skip(1) {
        assert!(src.starts_with("../assets/"), "{src}");
    }
    let csp = header(&page, "content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");

    let js = get(&state, "/assets/hls.min.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.body, "/* hls.js */");
    assert!(header(&js, "content-type").starts_with("text/javascript"));
    let player = get(&state, "/assets/player.js").await;
    assert_eq!(player.status, StatusCode::OK);
    assert!(player
        .body
        .contains("canPlayType('application/vnd.apple.mpegurl')"));
    assert!(player.body.contains("#EXT-X-ENDLIST"));
    assert_eq!(
        get(&state, "/assets/watch.css").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&state, "/assets/nope.js").await.status,
        StatusCode::NOT_FOUND
    );

    // A stream that is not live (yet) still gets its page: the player says it is offline.
    assert_eq!(get(&state, "/watch/later").await.status, StatusCode::OK);
    let bad = get(&state, "/watch/bad%20name").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("does not name a stream"), "{}", bad.body);
}

#[tokio::test]
async fn without_hls_js_the_asset_is_404_and_the_page_says_so() {
    let state = AppState {
        hls_js: None,
        ..AppState::new(store())
    };
    let page = get(&state, "/watch/cam").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"player-missing\""), "{}", page.body);
    assert!(page.body.contains("hls.js) is missing"));
    assert!(!page.body.contains("assets/hls.min.js"));
    let js = get(&state, "/assets/hls.min.js").await;
    assert_eq!(js.status, StatusCode::NOT_FOUND);
    assert!(js.body.contains("npm ci"), "{}", js.body);
}

#[test]
fn this_build_embeds_hls_js_when_web_node_modules_is_installed() {
    let installed = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../web/node_modules/hls.js/dist/hls.min.js")
        .exists();
    let embedded = cdn_edge::watch::embedded_hls_js();
    assert_eq!(embedded.is_some(), installed);
    if let Some(js) = embedded {
        assert!(js.len() > 100_000, "hls.min.js is {} bytes", js.len());
        assert!(!cdn_edge::watch::HLS_JS_VERSION.is_empty());
    }
}

/// One parsed sample line: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the text exposition strictly enough to catch malformed output: every sample belongs to a
/// family with HELP and TYPE declared before it, counters end in `_total`, no series repeats.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.is_empty(), "{line}");
            assert!(helped.insert(name.to_owned()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {name}");
            }
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{line}"
            );
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = value.parse().expect("numeric value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                for pair in body.split(',') {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .expect("quoted");
                    labels.insert(k.to_owned(), v.to_owned());
                }
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(&name)
            .to_owned();
        assert!(types.contains_key(&family), "no TYPE for {name}");
        assert!(seen.insert(series.to_owned()), "series twice: {series}");
        samples.push((name, labels, value));
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

#[tokio::test]
async fn metrics_count_requests_bytes_cache_viewers_lag_and_latency() {
    let store = store();
    for ms in [12, 30, 2_000] {
        cdn_edge::stats::observe(
            &store.stats().availability_latency,
            Duration::from_millis(ms),
        );
    }
    let lag = Arc::new(ConsumerLag::default());
    lag.replace(BTreeMap::from([(0, 0), (1, 42)]));
    let state = AppState {
        telemetry: Arc::new(Telemetry::with_lag(lag)),
        ..AppState::new(store)
    };
    // Three clients watch cam (one only fetches a segment), one watches old, and misses count nobody.
    for client in [[10, 0, 0, 1], [10, 0, 0, 2]] {
        assert_eq!(
            request(&state, "GET", "/live/cam/index.m3u8", client)
                .await
                .status,
            StatusCode::OK
        );
    }
    let seg = request(&state, "GET", "/live/cam/11.ts", [10, 0, 0, 1]).await;
    assert_eq!(seg.body.len(), SEGMENT_LEN);
    let head = request(&state, "HEAD", "/live/cam/10.ts", [10, 0, 0, 3]).await;
    assert_eq!(head.status, StatusCode::OK);
    request(&state, "GET", "/live/old/index.m3u8", [10, 0, 0, 9]).await;
    let miss = request(&state, "GET", "/live/cam/99.ts", [10, 0, 0, 4]).await;
    assert_eq!(miss.status, StatusCode::NOT_FOUND);
    request(&state, "GET", "/live/nobody/index.m3u8", [10, 0, 0, 5]).await;
    request(&state, "GET", "/no/such/path", [10, 0, 0, 6]).await;

    let page = get(&state, "/metrics").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        header(&page, "content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let samples = parse_exposition(&page.body);
    let v = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);

    let req = "cdn_edge_http_requests_total";
    assert_eq!(
        v(req, &[("route", "playlist"), ("status", "200")]),
        Some(3.0)
    );
    assert_eq!(
        v(req, &[("route", "playlist"), ("status", "404")]),
        Some(1.0)
    );
    assert_eq!(
        v(req, &[("route", "segment"), ("status", "200")]),
        Some(2.0)
    );
    assert_eq!(
        v(req, &[("route", "segment"), ("status", "404")]),
        Some(1.0)
    );
    assert_eq!(v(req, &[("route", "other"), ("status", "404")]), Some(1.0));
    // HEAD sends no body; the GET sent the whole segment.
    assert_eq!(
        v(
            "cdn_edge_http_response_bytes_total",
            &[("route", "segment")]
        ),
        Some(SEGMENT_LEN as f64 + "segment not found\n".len() as f64)
    );
    assert_eq!(v("cdn_edge_cache_hits_total", &[]), Some(2.0));
    assert_eq!(v("cdn_edge_cache_misses_total", &[]), Some(1.0));
    assert_eq!(v("cdn_edge_cache_entries", &[]), Some(3.0));
    assert_eq!(v("cdn_edge_cache_capacity_bytes", &[]), Some(1048576.0));
    assert!(v("cdn_edge_cache_bytes", &[]).is_some_and(|b| b >= 3.0 * SEGMENT_LEN as f64));
    assert_eq!(v("cdn_edge_viewers", &[("stream", "cam")]), Some(3.0));
    assert_eq!(v("cdn_edge_viewers", &[("stream", "old")]), Some(1.0));
    assert_eq!(v("cdn_edge_viewers", &[("stream", "nobody")]), None);
    assert_eq!(v("cdn_edge_streams", &[("state", "live")]), Some(1.0));
    assert_eq!(v("cdn_edge_streams", &[("state", "ended")]), Some(1.0));
    assert_eq!(
        v("cdn_edge_kafka_consumer_lag_records", &[("partition", "1")]),
        Some(42.0)
    );
    assert_eq!(v("cdn_edge_segments_stored_total", &[]), Some(3.0));
    assert_eq!(v("cdn_edge_bad_messages_total", &[]), Some(0.0));
    assert_eq!(v("cdn_edge_kafka_records_total", &[]), Some(0.0));

    let lat = "cdn_edge_segment_availability_latency_seconds";
    assert_eq!(v(&format!("{lat}_count"), &[]), Some(3.0));
    assert_eq!(v(&format!("{lat}_sum"), &[]), Some(2.042));
    assert_eq!(v(&format!("{lat}_bucket"), &[("le", "0.01")]), Some(0.0));
    assert_eq!(v(&format!("{lat}_bucket"), &[("le", "0.025")]), Some(1.0));
    assert_eq!(v(&format!("{lat}_bucket"), &[("le", "0.05")]), Some(2.0));
    assert_eq!(v(&format!("{lat}_bucket"), &[("le", "2.5")]), Some(3.0));
    assert_eq!(v(&format!("{lat}_bucket"), &[("le", "+Inf")]), Some(3.0));
    let buckets: Vec<f64> = samples
        .iter()
        .filter(|(n, _, _)| *n == format!("{lat}_bucket"))
        .map(|(_, _, v)| *v)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");

    // The scrape itself is counted on the next one.
    let again = parse_exposition(&get(&state, "/metrics").await.body);
    assert_eq!(
        value(&again, req, &[("route", "metrics"), ("status", "200")]),
        Some(1.0)
    );
}
