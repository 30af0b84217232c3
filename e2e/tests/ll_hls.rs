//! Low-latency HLS end to end: ffmpeg publishes in real time to media, parts travel through Apache Kafka,
//! and two edges serve `ll.m3u8`. Checked with the project's LL playlist reader (spec rules), with the
//! independent validators `hls-parser` (strict) and `m3u8-parser` (`e2e/browser/validate.mjs`), with
//! ffprobe/ffmpeg (the fMP4 decodes, parts marked INDEPENDENT start with a keyframe presented at the part's
//! tfdt, the fMP4 segment holds what the TS segment of the same number holds), and with blocking requests
//! against both edges (a request for the next part returns once it exists, with the same bytes from both
//! edges).
//!
//! The second test plays a minute in headless Chromium (`e2e/browser/ll.mjs`): hls.js on LL-HLS and, side
//! by side, on the plain TS playlist (latency), and shaka-player on LL-HLS; neither player may re-buffer
//! on LL-HLS after it started. It needs node, `npm ci` in `e2e/browser/` and `/usr/bin/chromium`, and is
//! skipped with a note without them unless REQUIRE_BROWSER=1 (CI).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::ll_playlist::{self, part_numbers, LlPlaylist};
use e2e::{get, poll, probe, publish, Broker, Edge, Media, Proc, Publish};
use serde_json::Value;

fn ll(edge: &Edge, stream: &str, query: &str) -> Result<(LlPlaylist, Vec<u8>)> {
    let r = get(&format!("{}{query}", edge.url(stream, "ll.m3u8")))?;
    ensure!(r.status == 200, "ll.m3u8{query}: HTTP {}", r.status);
    ensure!(
        r.content_type == "application/vnd.apple.mpegurl",
        "content type {}",
        r.content_type
    );
    let text = String::from_utf8(r.body.clone())?;
    let parsed = ll_playlist::parse(&text).with_context(|| format!("playlist:\n{text}"))?;
    Ok((parsed, r.body))
}

fn fetch(edge: &Edge, stream: &str, file: &str) -> Result<Vec<u8>> {
    let r = get(&edge.url(stream, file))?;
    ensure!(r.status == 200, "{file}: HTTP {}", r.status);
    Ok(r.body)
}

/// ffprobe's flags of the first video packet of `file` (`K` = keyframe).
fn first_video_packet_flags(file: &Path) -> Result<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["packet=flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .context("running ffprobe")?;
    ensure!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// The video `traf` of a part (track 1, the first one): its `tfdt` and its first sample's composition
/// offset, read from the boxes (ISO/IEC 14496-12 8.8.12, 8.8.8). ffprobe cannot say this: its mov
/// demuxer adds the largest negative composition offset to every presentation time it shows.
fn first_video_sample(part: &[u8]) -> Option<(u64, i64)> {
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(part.get(at..at + 4)?.try_into().ok()?))
    };
    let tfdt = part.windows(4).position(|w| w == b"tfdt")?;
    let version = *part.get(tfdt + 4)?;
    let base = if version == 1 {
        u64::from_be_bytes(part.get(tfdt + 8..tfdt + 16)?.try_into().ok()?)
    } else {
        u64::from(be32(tfdt + 8)?)
    };
    let trun = tfdt
        + part
            .get(tfdt + 8..)?
            .windows(4)
            .position(|w| w == b"trun")?
        + 8;
    let (trun_version, flags) = (*part.get(trun + 4)?, be32(trun + 4)? & 0xff_ffff);
    // data-offset, duration, size, flags, composition offset present (what media writes).
    if flags != 0x0f01 {
        return None;
    }
    let raw = be32(trun + 12 + 4 + 12)?;
    let offset = if trun_version == 1 {
        i64::from(raw as i32)
    } else {
        i64::from(raw)
    };
    Some((base, offset))
}

fn packet_counts(file: &Path) -> Result<(usize, usize)> {
    let info = probe::probe(file)?;
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let video = text.lines().filter(|l| l.starts_with("video")).count();
    let audio = text.lines().filter(|l| l.starts_with("audio")).count();
    ensure!(!info.codecs.is_empty(), "no streams in {}", file.display());
    Ok((video, audio))
}

#[test]
fn ll_hls_parts_playlists_and_blocking_reload() -> Result<()> {
    const STREAM: &str = "e2e-ll";
    let dir = e2e::work_dir("ll_hls");
    let broker = Broker::start(&dir, "live-topic", 2)?;
    let media = Media::start(&dir, "media", &broker, &["--segment-seconds", "2"])?;
    let a = Edge::start(&dir, "edge-a", &broker, &[])?;
    let b = Edge::start(&dir, "edge-b", &broker, &[])?;
    let mut ffmpeg = publish(
        &dir,
        "ffmpeg",
        &media.publish_url(STREAM),
        &Publish {
            seconds: 24,
            ..Publish::default()
        },
    )?;

    // Three complete segments listed, with the open one's parts after them.
    let (playlist, _) = poll(Duration::from_secs(40), Duration::from_millis(200), || {
        let (p, body) = ll(&a, STREAM, "").ok()?;
        (p.segments.iter().filter(|s| s.duration.is_some()).count() >= 3).then_some((p, body))
    })
    .context("edge A should list 3 complete LL segments within 40 s")?;
    eprintln!(
        "LL playlist: target {} s, PART-TARGET {} s, PART-HOLD-BACK {} s, {} segments",
        playlist.target_duration,
        playlist.part_target,
        playlist.part_hold_back,
        playlist.segments.len()
    );
    ensure!(
        playlist.target_duration == 2,
        "target {}",
        playlist.target_duration
    );
    ensure!(
        (0.3..=0.4).contains(&playlist.part_target),
        "PART-TARGET {} should be the ~0.334 s default",
        playlist.part_target
    );

    // Independent readers accept what both edges serve (hls-parser strict, m3u8-parser).
    e2e::browser::validate_playlists(&[
        a.url(STREAM, "ll.m3u8"),
        b.url(STREAM, "ll.m3u8"),
        a.url(STREAM, "index.m3u8"),
    ])?;

    // Every listed part and segment: fetch, decode, compare with the TS rendition.
    let init_uri = playlist.segments[0].map.clone();
    let init = fetch(&a, STREAM, &init_uri)?;
    let mut all = init.clone();
    let mut parts_checked = 0;
    let index = get(&a.url(STREAM, "index.m3u8"))?;
    let ts = e2e::playlist::parse(&String::from_utf8(index.body)?)?;
    let mut compared_with_ts = 0;
    for seg in playlist.segments.iter().filter(|s| s.duration.is_some()) {
        let uri = seg.uri.clone().unwrap_or_default();
        let whole = fetch(&a, STREAM, &uri)?;
        let mut joined = Vec::new();
        if seg.parts.is_empty() {
            all.extend_from_slice(&whole);
            continue;
        }
        for (k, part) in seg.parts.iter().enumerate() {
            let bytes = fetch(&a, STREAM, &part.uri)?;
            ensure!(
                bytes == fetch(&b, STREAM, &part.uri)?,
                "edges disagree on {}",
                part.uri
            );
            let file = dir.join(format!("part-{}", part.uri.replace(".m4s", ".mp4")));
            std::fs::write(&file, [init.as_slice(), &bytes].concat())?;
            if part.independent {
                // An independent part decodes on its own (with the init); the others need the
                // frames before them and are decoded with their segment below.
                probe::decode_clean(&file)?;
                // Its keyframe is presented at the part's tfdt, where players that place parts by it
                // (shaka-player) put the part's start: with B-frames it used to come 67 ms later, a
                // gap shaka jumped by seeking at every segment boundary.
                let (tfdt, offset) = first_video_sample(&bytes)
                    .with_context(|| format!("{}: no video traf/trun", part.uri))?;
                ensure!(
                    offset == 0,
                    "{}: keyframe presented {offset} ticks after its tfdt {tfdt}",
                    part.uri
                );
            }
            let flags = first_video_packet_flags(&file)?;
            // The publisher's GOP is 2 s, one segment: only part 0 starts with a keyframe.
            ensure!(
                part.independent == flags.contains('K') && part.independent == (k == 0),
                "{}: INDEPENDENT={} but first video packet flags `{flags}`",
                part.uri,
                part.independent
            );
            joined.extend_from_slice(&bytes);
            parts_checked += 1;
        }
        ensure!(whole == joined, "{uri} should be its parts back to back");
        all.extend_from_slice(&whole);
        // The TS segment with the same number holds the same frames.
        if let Some(t) = ts.entries.iter().find(|e| e.seq == seg.msn) {
            let mp4 = dir.join(format!("seg-{}.mp4", seg.msn));
            std::fs::write(&mp4, [init.as_slice(), &whole].concat())?;
            probe::decode_clean(&mp4)?;
            let tsf = dir.join(format!("seg-{}.ts", seg.msn));
            std::fs::write(&tsf, fetch(&a, STREAM, &t.uri)?)?;
            let (m, t_counts) = (packet_counts(&mp4)?, packet_counts(&tsf)?);
            ensure!(
                m == t_counts,
                "segment {}: fMP4 has {m:?} (video, audio) packets, TS {t_counts:?}",
                seg.msn
            );
            compared_with_ts += 1;
        }
    }
    ensure!(parts_checked >= 12, "only {parts_checked} parts checked");
    ensure!(
        compared_with_ts >= 2,
        "only {compared_with_ts} segments compared with TS"
    );
    let joined = dir.join("all.mp4");
    std::fs::write(&joined, &all)?;
    probe::decode_clean(&joined)?;
    let info = probe::probe(&joined)?;
    ensure!(
        info.codecs.contains(&"h264".to_owned()) && info.codecs.contains(&"aac".to_owned()),
        "codecs {:?}",
        info.codecs
    );
    eprintln!(
        "{parts_checked} parts and the joined window ({:?} video, audio packets) decode cleanly; \
         {compared_with_ts} segments match their TS twins",
        packet_counts(&joined)?
    );

    // Blocking reload: ask both edges for the part the playlist does not have yet.
    let mut waits = Vec::new();
    for round in 0..5 {
        let (now, _) = ll(&a, STREAM, "")?;
        let hint = now
            .preload_hint
            .clone()
            .context("live playlist has a hint")?;
        let (msn, part) = part_numbers(&hint).context("hint names a part")?;
        ensure!(
            !now.segments
                .iter()
                .flat_map(|s| &s.parts)
                .any(|p| p.uri == hint),
            "the hinted part is not listed yet"
        );
        let query = format!("?_HLS_msn={msn}&_HLS_part={part}");
        let started = Instant::now();
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| ll(&a, STREAM, &query).map(|r| (r, started.elapsed())));
            let tb = s.spawn(|| ll(&b, STREAM, &query).map(|r| (r, started.elapsed())));
            (ta.join(), tb.join())
        });
        let ((pa, body_a), wait_a) = ra.map_err(|_| anyhow::anyhow!("thread"))??;
        let ((_, body_b), wait_b) = rb.map_err(|_| anyhow::anyhow!("thread"))??;
        ensure!(
            pa.segments
                .iter()
                .flat_map(|s| &s.parts)
                .any(|p| p.uri == hint),
            "round {round}: the answer to {query} lists {hint}"
        );
        ensure!(
            body_a == body_b,
            "round {round}: edges answered {query} differently:\n{}\n---\n{}",
            String::from_utf8_lossy(&body_a),
            String::from_utf8_lossy(&body_b)
        );
        // The hinted part itself is served (blocking part request if it were still missing).
        fetch(&b, STREAM, &hint)?;
        waits.push((wait_a.as_millis(), wait_b.as_millis()));
    }
    eprintln!("blocking reloads answered after (edge A, edge B) ms: {waits:?}");
    // Within a part duration or so: the answer came from the part's arrival, not from a timeout.
    ensure!(
        waits.iter().all(|(x, y)| *x < 1500 && *y < 1500),
        "blocking reloads took {waits:?} ms"
    );
    // Too far ahead: 400 at once.
    let (now, _) = ll(&a, STREAM, "")?;
    let last = now.segments.last().map_or(0, |s| s.msn);
    let r = get(&format!(
        "{}?_HLS_msn={}",
        a.url(STREAM, "ll.m3u8"),
        last + 3
    ))?;
    ensure!(
        r.status == 400,
        "msn + 3 should be refused, got {}",
        r.status
    );

    // How late parts reach the edge (origin closed -> edge lists), from the edge's own histogram.
    let metrics = String::from_utf8(get(&format!("http://{}/metrics", a.http))?.body)?;
    let series = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    let count = series("cdn_edge_part_availability_latency_seconds_count").unwrap_or(0.0);
    let sum = series("cdn_edge_part_availability_latency_seconds_sum").unwrap_or(0.0);
    // At least the 18 parts of the 3 segments checked and the 5 blocked for.
    ensure!(count >= 23.0, "part latency observations: {count}");
    eprintln!(
        "edge A: {count} parts, mean availability latency {:.1} ms",
        sum / count * 1000.0
    );

    // The plain TS rendition is unchanged and still served.
    ensure!(ts.entries.iter().all(|e| e.uri.ends_with(".ts")) && ts.entries.len() >= 3);

    let status = ffmpeg.wait(Duration::from_secs(60))?;
    ensure!(status.success(), "ffmpeg failed: {}", ffmpeg.log_text());
    // Each edge reads the stream's end on its own, a few milliseconds apart: wait for both.
    let mut ended = Vec::new();
    for edge in [&a, &b] {
        let mut last_answer = String::new();
        let body = poll(
            Duration::from_secs(15),
            Duration::from_millis(200),
            || match ll(edge, STREAM, "") {
                Ok((p, body)) => p.ended.then_some(body),
                Err(e) => {
                    last_answer = format!("{e:#}");
                    None
                }
            },
        )
        .with_context(|| {
            format!("the LL playlist should end after the publisher stops: {last_answer}")
        })?;
        ended.push(body);
    }
    ensure!(
        ended[0] == ended[1],
        "both edges end with the same playlist:\n{}\n---\n{}",
        String::from_utf8_lossy(&ended[0]),
        String::from_utf8_lossy(&ended[1])
    );
    // The ended playlists too.
    e2e::browser::validate_playlists(&[a.url(STREAM, "ll.m3u8"), a.url(STREAM, "index.m3u8")])?;
    drop(media);
    drop(broker);
    Ok(())
}

/// Upper bound asserted on the median LL-HLS latency: the 2.0 s with a 1 s margin for a
/// loaded 2-core machine running broker, media, edge, ffmpeg and Chromium at once.
const MAX_MEDIAN_LATENCY_S: f64 = 3.0;
/// Seconds of playback measured.
const MEASURE_SECONDS: u32 = 60;

#[test]
fn ll_hls_latency_in_headless_chromium() -> Result<()> {
    const STREAM: &str = "e2e-ll-latency";
    if e2e::browser::skip("the LL-HLS browser test")? {
        return Ok(());
    }
    let dir = e2e::work_dir("ll_hls_latency");
    let broker = Broker::start(&dir, "live-topic", 2)?;
    let media = Media::start(&dir, "media", &broker, &["--segment-seconds", "2"])?;
    let edge = Edge::start(&dir, "edge", &broker, &[])?;
    let _ffmpeg = publish(
        &dir,
        "ffmpeg",
        &media.publish_url(STREAM),
        &Publish {
            seconds: MEASURE_SECONDS + 40,
            ..Publish::default()
        },
    )?;
    poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let (p, _) = ll(&edge, STREAM, "").ok()?;
        (p.segments.len() >= 2).then_some(())
    })
    .context("the edge should list LL segments within 30 s")?;

    let out = dir.join("browser");
    std::fs::create_dir_all(&out)?;
    let mut cmd = e2e::browser::node("ll.mjs");
    cmd.args([
        "--base",
        &format!("http://{}", edge.http),
        "--stream",
        STREAM,
    ])
    .arg("--out")
    .arg(&out)
    .args(["--seconds", &MEASURE_SECONDS.to_string()]);
    let mut browser = Proc::spawn("browser", cmd, &dir)?;
    let status = browser.wait(Duration::from_secs(u64::from(MEASURE_SECONDS) + 60))?;
    let log = browser.log_text();
    eprint!("{log}");
    let result: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("result.json"))
            .with_context(|| format!("browser wrote no result ({status}):\n{log}"))?,
    )?;
    ensure!(
        status.success() && result["ok"] == true,
        "browser run failed: {}",
        result["error"]
    );
    let (llr, plain, shaka) = (&result["ll"], &result["plain"], &result["shakaLl"]);
    let median = |r: &Value| r["medianLatency"].as_f64().unwrap_or(f64::MAX);
    let line = |r: &Value| {
        format!(
            "median latency {:.2} s (p90 {:.2}, max {:.2}), {} samples, re-buffering events {}, played {:.1} s",
            median(r),
            r["p90Latency"].as_f64().unwrap_or(-1.0),
            r["maxLatency"].as_f64().unwrap_or(-1.0),
            r["samples"],
            r["stalls"],
            r["played"].as_f64().unwrap_or(0.0),
        )
    };
    eprintln!(
        "Chromium {}, {MEASURE_SECONDS} s each, side by side:\n  \
         {} on LL-HLS (ll.m3u8, lowLatencyMode): {}\n  \
         {} on plain HLS (index.m3u8): {}\n  \
         {} on LL-HLS (ll.m3u8, lowLatencyMode): {}",
        result["browserVersion"],
        result["versions"]["ll"],
        line(llr),
        result["versions"]["plain"],
        line(plain),
        result["versions"]["shakaLl"],
        line(shaka),
    );
    // shaka-player: no error, no re-buffering after it started, and the whole minute played.
    ensure!(
        shaka["errors"].as_array().is_some_and(Vec::is_empty),
        "shaka-player errors on LL-HLS: {}",
        shaka["errors"]
    );
    ensure!(
        shaka["stalls"] == 0,
        "shaka-player re-buffered on LL-HLS: {}",
        shaka["stallEvents"]
    );
    ensure!(
        shaka["played"].as_f64().unwrap_or(0.0) >= f64::from(MEASURE_SECONDS) - 5.0,
        "shaka-player should play the whole minute: {shaka}"
    );
    ensure!(
        llr["errors"].as_array().is_some_and(Vec::is_empty),
        "hls.js errors on LL-HLS: {}",
        llr["errors"]
    );
    ensure!(
        llr["stalls"] == 0,
        "LL-HLS playback stalled: {}",
        llr["stallEvents"]
    );
    ensure!(
        llr["played"].as_f64().unwrap_or(0.0) >= f64::from(MEASURE_SECONDS) - 5.0,
        "LL-HLS should play the whole minute: {llr}"
    );
    ensure!(
        median(llr) <= MAX_MEDIAN_LATENCY_S,
        "median LL-HLS latency {:.2} s exceeds {MAX_MEDIAN_LATENCY_S} s",
        median(llr)
    );
    ensure!(
        median(llr) < median(plain),
        "LL-HLS should be ahead of plain HLS"
    );
    Ok(())
}
