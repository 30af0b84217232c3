//! Recordings over media's HTTP, open to viewers like the edges' playlists (no `--api-token`):
//!
//! - `GET /recordings/{stream}`: the stream's recordings, oldest first, as JSON;
//! - `GET /recordings/{stream}/{start}/index.m3u8`, `.../{n}.ts`, `.../{stream}.flv`: the files, with
//!   `Range` and `HEAD` support.
//!
//! Only names the recorder makes are served: a valid stream name, a start directory matching
//! [`super::name::parse_dir_name`], and the three file patterns above, so no request can reach outside
//! the recordings directory. Disk access runs on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::name::{iso8601, parse_dir_name};
use super::vod::VodPlaylist;
use super::writer::PLAYLIST;

/// One recording in a listing.
#[derive(Debug, Serialize)]
pub struct Listing {
    /// The directory name, the `{start}` of its URLs.
    pub start: String,
    pub started_at: String,
    pub started_at_ms: u64,
    /// Whether the playlist has `#EXT-X-ENDLIST` (the broadcast ended, or a crash was recovered).
    pub complete: bool,
    pub segments: usize,
    /// Seconds, the sum of the segment durations.
    pub duration: f64,
    /// URL path of the VOD playlist, if the HLS recording exists.
    pub playlist: Option<String>,
    /// URL path of the FLV recording, if it exists.
    pub flv: Option<String>,
    pub flv_bytes: Option<u64>,
}

/// The `/recordings` routes, reading from `root`.
pub fn router(root: PathBuf) -> Router {
    Router::new()
        .route("/recordings/{stream}", get(list))
        .route("/recordings/{stream}/{start}/{file}", get(file))
        .with_state(Arc::new(root))
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], body).into_response()
}

async fn list(State(root): State<Arc<PathBuf>>, UrlPath(stream): UrlPath<String>) -> Response {
    if common::validate_stream_name(&stream).is_err() {
        return text(StatusCode::BAD_REQUEST, "invalid stream name\n");
    }
    let dir = root.join(&stream);
    let name = stream.clone();
    match tokio::task::spawn_blocking(move || listing(&dir, &name)).await {
        Ok(recordings) => (
            [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
            Json(serde_json::json!({ "stream": stream, "recordings": recordings })),
        )
            .into_response(),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "listing failed\n"),
    }
}

/// Reads the recordings of one stream (blocking).
pub fn listing(dir: &Path, stream: &str) -> Vec<Listing> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut starts: Vec<(String, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let ms = parse_dir_name(&n)?;
            Some((n, ms))
        })
        .collect();
    starts.sort();
    starts
        .into_iter()
        .filter_map(|(start, ms)| {
            let d = dir.join(&start);
            let playlist = std::fs::read_to_string(d.join(PLAYLIST))
                .ok()
                .and_then(|t| VodPlaylist::parse(&t).ok());
            let flv_bytes = std::fs::metadata(d.join(format!("{stream}.flv")))
                .ok()
                .map(|m| m.len());
            if playlist.is_none() && flv_bytes.is_none() {
                return None;
            }
            let base = format!("/recordings/{stream}/{start}");
            Some(Listing {
                started_at: iso8601(ms),
                started_at_ms: ms,
                // Without a playlist (FLV only) the file is complete when the broadcast ended; the FLV
                // alone cannot tell, so only an HLS recording can say so.
                complete: playlist.as_ref().is_some_and(VodPlaylist::ended),
                segments: playlist.as_ref().map_or(0, |p| p.entries().len()),
                duration: playlist
                    .as_ref()
                    .map_or(0.0, |p| (p.duration() * 1000.0).round() / 1000.0),
                playlist: playlist.is_some().then(|| format!("{base}/{PLAYLIST}")),
                flv: flv_bytes.map(|_| format!("{base}/{stream}.flv")),
                flv_bytes,
                start,
            })
        })
        .collect()
}

/// Content type and cache policy of a file the recorder makes, or `None` for any other name.
fn kind(stream: &str, file: &str) -> Option<(&'static str, &'static str)> {
    if file == PLAYLIST {
        // Grows while the broadcast runs.
        return Some(("application/vnd.apple.mpegurl", "no-cache"));
    }
    if let Some(n) = file.strip_suffix(".ts") {
        if !n.is_empty() && n.len() <= 10 && n.bytes().all(|b| b.is_ascii_digit()) {
            return Some(("video/mp2t", "max-age=31536000, immutable"));
        }
    }
    if file.strip_suffix(".flv") == Some(stream) {
        return Some(("video/x-flv", "no-cache"));
    }
    None
}

async fn file(
    State(root): State<Arc<PathBuf>>,
    UrlPath((stream, start, file)): UrlPath<(String, String, String)>,
    req: Request,
) -> Response {
    let valid = common::validate_stream_name(&stream).is_ok() && parse_dir_name(&start).is_some();
    let Some((content_type, cache)) = kind(&stream, &file).filter(|_| valid) else {
        return text(StatusCode::NOT_FOUND, "no such recording file\n");
    };
    let path = root.join(&stream).join(&start).join(&file);
    let mut resp = match ServeFile::new(path).oneshot(req).await {
        Ok(r) => r.map(axum::body::Body::new),
        Err(never) => match never {},
    };
    if resp.status() == StatusCode::NOT_FOUND {
        return text(StatusCode::NOT_FOUND, "no such recording file\n");
    }
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    async fn call(app: Router, uri: &str, range: Option<&str>) -> (StatusCode, String, Vec<u8>) {
        let mut req = Request::builder().uri(uri);
        if let Some(r) = range {
            req = req.header(header::RANGE, r);
        }
        let resp = app
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, ct, body.to_vec())
    }

    #[tokio::test]
    async fn lists_and_serves_only_recording_files() {
        let root = std::env::temp_dir().join(format!("media-serve-{}", std::process::id()));
        let start = "20261124T044012.345Z";
        let dir = root.join("cam").join(start);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut p = VodPlaylist::new(2);
        p.push(crate::record::vod::Entry {
            uri: "0.ts".into(),
            duration: 2.5,
            discontinuity: true,
        });
        p.end();
        std::fs::write(dir.join(PLAYLIST), p.render()).expect("write");
        std::fs::write(dir.join("0.ts"), b"0123456789").expect("write");
        std::fs::write(dir.join("cam.flv"), b"FLV.").expect("write");
        std::fs::write(root.join("secret"), b"no").expect("write");
        let app = router(root.clone());

        let (status, _, body) = call(app.clone(), "/recordings/cam", None).await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let r = &v["recordings"][0];
        assert_eq!(r["start"], start);
        assert_eq!(r["started_at"], "2026-11-24T04:40:12.345Z");
        assert_eq!(r["complete"], true);
        assert_eq!(r["segments"], 1);
        assert_eq!(r["duration"], 2.5);
        assert_eq!(r["playlist"], format!("/recordings/cam/{start}/index.m3u8"));
        assert_eq!(r["flv"], format!("/recordings/cam/{start}/cam.flv"));
        let (_, _, body) = call(app.clone(), "/recordings/nobody", None).await;
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).expect("json")["recordings"],
            serde_json::json!([])
        );

        let (status, ct, body) = call(
            app.clone(),
            &format!("/recordings/cam/{start}/index.m3u8"),
            None,
        )
        .await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::OK, "application/vnd.apple.mpegurl")
        );
        assert!(String::from_utf8_lossy(&body).contains("#EXT-X-ENDLIST"));
        let (status, ct, body) = call(
            app.clone(),
            &format!("/recordings/cam/{start}/0.ts"),
            Some("bytes=2-4"),
        )
        .await;
        assert_eq!(
            (status, ct.as_str(), body.as_slice()),
            (StatusCode::PARTIAL_CONTENT, "video/mp2t", &b"234"[..])
        );
        let (status, ct, _) = call(
            app.clone(),
            &format!("/recordings/cam/{start}/cam.flv"),
            None,
        )
        .await;
        assert_eq!((status, ct.as_str()), (StatusCode::OK, "video/x-flv"));

        for bad in [
            format!("/recordings/cam/{start}/1.ts"),
            format!("/recordings/cam/{start}/other.flv"),
            format!("/recordings/cam/{start}/..%2F..%2Fsecret"),
            "/recordings/cam/..%2F..%2F/secret".to_owned(),
            "/recordings/..%2Fsecret/x/y".to_owned(),
        ] {
            let (status, _, _) = call(app.clone(), &bad, None).await;
            assert!(
                status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST,
                "{bad}: {status}"
            );
        }
        std::fs::remove_dir_all(&root).ok();
    }
}
