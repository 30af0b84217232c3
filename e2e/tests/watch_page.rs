//! The watch page in a real browser: ffmpeg publishes to media, the edge serves the page, and Debian's
//! headless Chromium (driven by playwright-core, `e2e/browser/watch.mjs`) must play the stream with
//! hls.js past 6 s without an hls.js error, show the broadcast as ended once ffmpeg stops, fit a
//! phone-sized screen, and list the stream on `/`. Screenshots are kept in the test's work directory.
//! The edge's `/metrics` is checked against what the browser just did.
//!
//! Needs node, `npm ci` in `e2e/browser/` and `/usr/bin/chromium` (all installed by
//! `scripts/install-deps.sh`); skipped with a note without them, unless REQUIRE_BROWSER=1 (CI).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::{get, poll, publish, Broker, Edge, Media, Proc, Publish};
use serde_json::Value;

const STREAM: &str = "e2e-watch";
/// The bar: the video element's clock passes this many seconds.
const MIN_PLAYED_SECONDS: f64 = 6.0;
/// Whole browser run: start, play 6 s, phone check, wait for the end of a 30 s broadcast.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(150);

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn watch_page_plays_in_headless_chromium() -> Result<()> {
    if e2e::browser::skip("the browser test")? {
        return Ok(());
    }
    let dir = e2e::work_dir("watch_page");
    let broker = Broker::start(&dir, "live-topic", 2)?;
    let media = Media::start(&dir, "media", &broker, &["--segment-seconds", "2"])?;
    let edge = Edge::start(&dir, "edge", &broker, &[])?;
    let base = format!("http://{}", edge.http);

    let broadcast = Publish {
        seconds: 30,
        ..Publish::default()
    };
    let mut ffmpeg = publish(&dir, "ffmpeg", &media.publish_url(STREAM), &broadcast)?;
    // Open the page once there is something to play, as a viewer following a link would.
    poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let r = get(&edge.url(STREAM, "index.m3u8")).ok()?;
        (r.status == 200 && String::from_utf8_lossy(&r.body).matches(".ts").count() >= 2)
            .then_some(())
    })
    .context("the edge should list 2 segments within 30 s of publishing")?;

    let shots = dir.join("browser");
    std::fs::create_dir_all(&shots)?;
    let mut cmd = e2e::browser::node("watch.mjs");
    cmd.args(["--base", &base, "--stream", STREAM, "--out"])
        .arg(&shots)
        .args(["--min-seconds", &MIN_PLAYED_SECONDS.to_string()])
        .args([
            "--timeout-ms",
            &(BROWSER_TIMEOUT.as_millis() - 10_000).to_string(),
        ])
        .arg("--wait-ended");
    let mut browser = Proc::spawn("browser", cmd, &dir)?;
    // The Proc is killed on drop, so a hung browser cannot outlive the test.
    let status = browser.wait(BROWSER_TIMEOUT)?;
    let log = browser.log_text();
    eprint!("{log}");
    let result: Value = serde_json::from_str(
        &std::fs::read_to_string(shots.join("result.json"))
            .with_context(|| format!("browser wrote no result ({status}):\n{log}"))?,
    )?;
    ensure!(
        status.success() && result["ok"] == true,
        "browser run failed: {}",
        result["error"]
    );

    let playing = &result["playing"];
    let current = playing["currentTime"].as_f64().unwrap_or(0.0);
    let advanced = result["advancedSeconds"].as_f64().unwrap_or(0.0);
    eprintln!(
        "browser {}: {} played from {:.2} s to {current:.2} s (advanced {advanced:.2} s in {:.1} s of wall \
         time), video {}x{}, hls.js errors {}",
        result["browserVersion"],
        playing["engine"],
        result["firstCurrentTime"].as_f64().unwrap_or(-1.0),
        result["wallSeconds"].as_f64().unwrap_or(0.0),
        playing["videoWidth"],
        playing["videoHeight"],
        playing["errors"],
    );
    for shot in result["screenshots"].as_array().into_iter().flatten() {
        eprintln!("screenshot: {}", shot.as_str().unwrap_or_default());
    }
    let startup = result["startupSeconds"].as_f64().unwrap_or(f64::MAX);
    eprintln!("first frame {startup:.1} s after the page was opened");
    // hls.js 1.7 spent ~20 s on the main thread before its first frame with this origin's large
    // discontinuity sequence numbers: a viewer would have left. Guard against such regressions.
    ensure!(
        startup <= 10.0,
        "playback should start within 10 s of opening the page, took {startup:.1} s"
    );
    ensure!(
        playing["engine"] == "hls.js",
        "Chromium should play with hls.js, got {}",
        playing["engine"]
    );
    // media produces the low-latency rendition by default, and the page prefers it.
    ensure!(
        playing["lowLatency"] == true,
        "the watch page should play ll.m3u8: {playing}"
    );
    ensure!(
        current >= MIN_PLAYED_SECONDS && advanced >= MIN_PLAYED_SECONDS,
        "video.currentTime should pass {MIN_PLAYED_SECONDS} s and advance that much; got {current:.2} s \
         (advanced {advanced:.2} s): {playing}"
    );
    ensure!(
        playing["errors"].as_array().is_some_and(Vec::is_empty),
        "hls.js reported errors: {}",
        playing["errors"]
    );
    ensure!(
        playing["videoWidth"] == 640 && playing["videoHeight"] == 360,
        "decoded picture should be the published 640x360: {playing}"
    );
    ensure!(
        result["pageErrors"].as_array().is_some_and(Vec::is_empty),
        "script errors on the page: {}",
        result["pageErrors"]
    );
    ensure!(
        result["indexLinks"]
            .as_array()
            .is_some_and(|links| links.contains(&Value::from(format!("watch/{STREAM}")))),
        "the stream list should link the stream: {}",
        result["indexLinks"]
    );
    let phone = &result["phone"];
    ensure!(
        phone["scrollWidth"].as_f64() <= phone["innerWidth"].as_f64()
            && phone["videoRight"].as_f64() <= phone["innerWidth"].as_f64()
            && phone["videoHeight"].as_f64().unwrap_or(0.0) > 100.0,
        "the page should fit a 390 px wide screen: {phone}"
    );
    ensure!(
        phone["currentTime"].as_f64().unwrap_or(0.0) > 1.0,
        "the phone-sized page should play too: {phone}"
    );

    let status = ffmpeg.wait(Duration::from_secs(60))?;
    ensure!(status.success(), "ffmpeg failed: {}", ffmpeg.log_text());
    let ended = &result["ended"];
    ensure!(
        ended["state"] == "ended" && ended["badge"] == "Ended",
        "after the publisher stopped the page should say the broadcast ended: {ended}"
    );
    ensure!(
        ended["errors"].as_array().is_some_and(Vec::is_empty),
        "hls.js reported errors by the end: {}",
        ended["errors"]
    );

    // The edge saw it all: one viewer (the browser), segments served from its cache, the consumer's lag
    // per partition, and how fast segments became available.
    let text = String::from_utf8(get(&format!("{base}/metrics"))?.body)?;
    std::fs::write(dir.join("metrics.txt"), &text)?;
    let viewers = metric(&text, &format!("cdn_edge_viewers{{stream=\"{STREAM}\"}}"));
    ensure!(viewers == Some(1.0), "viewers {viewers:?}:\n{text}");
    let hits = metric(&text, "cdn_edge_cache_hits_total").unwrap_or(0.0);
    ensure!(hits >= 5.0, "cache hits {hits}");
    let segment_bytes = metric(
        &text,
        "cdn_edge_http_response_bytes_total{route=\"segment\"}",
    )
    .unwrap_or(0.0);
    ensure!(segment_bytes > 100_000.0, "segment bytes {segment_bytes}");
    let available =
        metric(&text, "cdn_edge_segment_availability_latency_seconds_count").unwrap_or(0.0);
    ensure!(available >= 10.0, "latency observations {available}");
    let latency_sum =
        metric(&text, "cdn_edge_segment_availability_latency_seconds_sum").unwrap_or(f64::MAX);
    eprintln!(
        "edge: {available} segments, mean availability latency {:.1} ms, {hits} cache hits, {segment_bytes} segment bytes",
        latency_sum / available * 1000.0
    );
    // Statistics arrive every 5 s: wait for a report taken after the last record.
    let lag_series = poll(Duration::from_secs(15), Duration::from_millis(500), || {
        let text = String::from_utf8(get(&format!("{base}/metrics")).ok()?.body).ok()?;
        let lags: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("cdn_edge_kafka_consumer_lag_records{"))
            .map(str::to_owned)
            .collect();
        (lags.len() == 2 && lags.iter().all(|l| l.ends_with(" 0"))).then_some(lags)
    })
    .context("both partitions' lag should be reported, and 0 once the edge has caught up")?;
    eprintln!("consumer lag: {lag_series:?}");
    drop(media);
    drop(broker);
    Ok(())
}
