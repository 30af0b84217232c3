//! The viewer pages: `GET /` lists the streams this edge has, `GET /watch/{stream}` plays one in the
//! browser, and `GET /assets/{file}` serves the player's files, hls.js included, from the binary itself:
//! no script comes from a third-party CDN, and the pages' Content-Security-Policy says so to the browser.
//!
//! hls.js is embedded at build time by `build.rs` from `web/node_modules` (the npm package pinned in
//! `web/package.json`); a build without it still serves the pages, which then say the player is missing.

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::http::AppState;
use crate::store::StreamSummary;

/// hls.js as found at build time; empty if `web/node_modules` was not installed.
static HLS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js"));
/// Version of the embedded hls.js, empty if none.
pub const HLS_JS_VERSION: &str = env!("HLS_JS_VERSION");
static PLAYER_JS: &str = include_str!("../assets/player.js");
static WATCH_CSS: &str = include_str!("../assets/watch.css");

/// Pages may only load what this edge serves. hls.js runs its transmuxer in a worker made from a
/// `blob:` URL and feeds the video element through MSE (`blob:` media).
const PAGE_CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";
/// Pages change with the streams: always revalidate.
const PAGE_CACHE_CONTROL: &str = "no-cache";
/// Assets change only with a new build; an hour keeps reloads cheap and upgrades visible soon enough.
const ASSET_CACHE_CONTROL: &str = "public, max-age=3600";

/// The hls.js embedded in this build, if any.
pub fn embedded_hls_js() -> Option<Bytes> {
    (!HLS_JS.is_empty()).then(|| Bytes::from_static(HLS_JS))
}

/// `GET /`: the streams, live first, each linking to its watch page.
pub async fn index(State(state): State<AppState>) -> Response {
    page(StatusCode::OK, &render_index(&state.store.streams()))
}

/// `GET /watch/{stream}`: the player page. Served for any valid name, even one not live yet, so a link
/// can be shared before the broadcast starts; the page says the stream is offline until it is.
pub async fn watch(State(state): State<AppState>, Path(stream): Path<String>) -> Response {
    if common::validate_stream_name(&stream).is_err() {
        return page(StatusCode::BAD_REQUEST, &render_bad_name());
    }
    page(
        StatusCode::OK,
        &render_watch(&stream, state.hls_js.is_some()),
    )
}

/// `GET /assets/{file}`: the player's files.
pub async fn asset(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let (content_type, body) = match file.as_str() {
        "hls.min.js" => match state.hls_js {
            Some(js) => ("text/javascript; charset=utf-8", js),
            None => return text(
                StatusCode::NOT_FOUND,
                "hls.js is not part of this build of cdn-edge: run `npm ci` in web/ and rebuild\n",
            ),
        },
        "player.js" => (
            "text/javascript; charset=utf-8",
            Bytes::from_static(PLAYER_JS.as_bytes()),
        ),
        "watch.css" => (
            "text/css; charset=utf-8",
            Bytes::from_static(WATCH_CSS.as_bytes()),
        ),
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(ASSET_CACHE_CONTROL));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn page(status: StatusCode, html: &str) -> Response {
    let mut response = (status, html.to_owned()).into_response();
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static(PAGE_CACHE_CONTROL));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(PAGE_CSP),
    );
    h.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn head(title: &str, css: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"icon\" href=\"data:,\">\n<link rel=\"stylesheet\" href=\"{css}\">\n</head>\n",
        escape_html(title)
    )
}

/// The stream list. Links are relative so the pages also work under a path prefix behind a proxy.
pub fn render_index(streams: &[StreamSummary]) -> String {
    let mut html = head("Live streams", "assets/watch.css");
    html.push_str("<body>\n<main>\n<h1>Live streams</h1>\n");
    if streams.is_empty() {
        html.push_str(
            "<p class=\"empty\">Nothing is being broadcast through this server right now. \
             Reload this page once a stream has started.</p>\n",
        );
    } else {
        html.push_str("<ul class=\"streams\">\n");
        let live = streams.iter().filter(|s| !s.ended);
        let ended = streams.iter().filter(|s| s.ended);
        for s in live.chain(ended) {
            let name = escape_html(&s.name);
            let (class, label) = if s.ended {
                ("ended", "Ended")
            } else {
                ("live", "Live")
            };
            html.push_str(&format!(
                "<li><a href=\"watch/{name}\">{name}</a> <span class=\"badge {class}\">{label}</span></li>\n"
            ));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("</main>\n</body>\n</html>\n");
    html
}

/// The player page of `stream` (a valid name; escaped anyway).
pub fn render_watch(stream: &str, have_hls_js: bool) -> String {
    let name = escape_html(stream);
    let playlist = format!("../live/{name}/index.m3u8");
    let mut html = head(&format!("{stream} · live"), "../assets/watch.css");
    html.push_str(&format!(
        "<body>\n<main id=\"watch\" data-playlist=\"{playlist}\" data-ll-playlist=\"../live/{name}/ll.m3u8\">\n\
         <nav class=\"bar\"><a class=\"back\" href=\"../\">&larr; All streams</a></nav>\n\
         <div class=\"title\"><h1>{name}</h1><span id=\"state\" class=\"badge connecting\">Connecting…</span></div>\n\
         <div class=\"player\"><video id=\"video\" controls muted playsinline></video>\
         <button id=\"unmute\" type=\"button\" hidden>Tap to unmute</button></div>\n\
         <p id=\"message\" class=\"message\" role=\"status\" aria-live=\"polite\" hidden></p>\n"
    ));
    if !have_hls_js {
        html.push_str(
            "<p id=\"player-missing\" class=\"message error\">The video player (hls.js) is missing \
             from this server's build, so only browsers with built-in HLS (Safari) can play here. \
             Operators: run <code>npm ci</code> in <code>web/</code> and rebuild cdn-edge.</p>\n",
        );
    }
    html.push_str(&format!(
        "<noscript><p class=\"message error\">This player needs JavaScript.</p></noscript>\n\
         <p class=\"hint\">Stream address for other players (VLC, ffplay): \
         <a href=\"{playlist}\">{playlist_text}</a></p>\n</main>\n",
        playlist_text = format_args!("/live/{name}/index.m3u8"),
    ));
    if have_hls_js {
        html.push_str("<script src=\"../assets/hls.min.js\"></script>\n");
    }
    html.push_str("<script src=\"../assets/player.js\"></script>\n</body>\n</html>\n");
    html
}

fn render_bad_name() -> String {
    let mut html = head("No such stream", "../assets/watch.css");
    html.push_str(
        "<body>\n<main>\n<h1>No such stream</h1>\n<p class=\"message error\">This address does not \
         name a stream: stream names use only letters, digits, '_', '-' and '.'. \
         <a href=\"../\">See the streams that are live.</a></p>\n</main>\n</body>\n</html>\n",
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let page = render_watch("<script>alert(1)</script>", true);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        let page = render_index(&[StreamSummary {
            name: "\"><img>".into(),
            ended: false,
            segments: 1,
        }]);
        assert!(!page.contains("\"><img>"), "{page}");
    }

    #[test]
    fn live_streams_are_listed_before_ended_ones() {
        let page = render_index(&[
            StreamSummary {
                name: "a-ended".into(),
                ended: true,
                segments: 3,
            },
            StreamSummary {
                name: "b-live".into(),
                ended: false,
                segments: 3,
            },
        ]);
        let live = page.find("watch/b-live").expect("live stream linked");
        let ended = page.find("watch/a-ended").expect("ended stream linked");
        assert!(live < ended, "{page}");
        assert!(page.contains("badge ended\">Ended"));
        assert!(render_index(&[]).contains("Nothing is being broadcast"));
    }
}
