//! The LiveDTO rolling upgrade against real processes: one edge, an origin writing schema version 1,
//! then (the origins upgraded) an origin writing version 2 republishing the same stream name. The edge
//! serves both broadcasts: each playlist ends, durations add up, and every segment decodes. (The
//! in-memory equivalence of the versions is proven record by record in `common/tests/`.)

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::{get, playlist, poll, probe, Broker, Edge, Media, Proc};

const STREAM: &str = "upgrade";

fn publish(dir: &std::path::Path, name: &str, url: &str) -> Result<Proc> {
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "warning", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=6",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=6",
        ])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-pix_fmt", "yuv420p",
        ])
        .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv", url]);
    Proc::spawn(name, cmd, dir)
}

/// Publishes 6 s through `media`, then waits for the edge's playlist to end listing at least `min`
/// segments not in `before`, checks them, and returns their URIs.
fn broadcast(
    dir: &std::path::Path,
    media: &Media,
    edge: &Edge,
    tag: &str,
    min: usize,
    before: &[String],
) -> Result<Vec<String>> {
    let mut ff = publish(dir, tag, &media.publish_url(STREAM))?;
    ensure!(
        ff.wait(Duration::from_secs(40))?.success(),
        "{tag}: ffmpeg: {}",
        ff.log_text()
    );
    let pl = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        let r = get(&edge.url(STREAM, "index.m3u8")).ok()?;
        let p = playlist::parse(std::str::from_utf8(&r.body).ok()?).ok()?;
        let new = p
            .entries
            .iter()
            .filter(|e| !before.contains(&e.uri))
            .count();
        (p.ended && new >= min).then_some(p)
    })
    .with_context(|| format!("{tag}: the playlist should end with at least {min} new segments"))?;
    let mut uris = Vec::new();
    for e in pl.entries.iter().filter(|e| !before.contains(&e.uri)) {
        uris.push(e.uri.clone());
        let r = get(&edge.url(STREAM, &e.uri))?;
        let file = dir.join(format!("{tag}-{}", e.uri));
        std::fs::write(&file, &r.body)?;
        probe::decode_clean(&file)?;
    }
    Ok(uris)
}

#[test]
fn an_edge_serves_a_stream_across_the_origin_upgrade_to_v2() -> Result<()> {
    let dir = e2e::work_dir("livedto_upgrade");
    let broker = Broker::start(&dir, "live-topic", 2)?;
    let edge = Edge::start(&dir, "edge", &broker, &["--window-segments", "20"])?;
    let v1 = Media::start(&dir, "media-v1", &broker, &["--livedto-version", "1"])?;
    let first = broadcast(&dir, &v1, &edge, "v1", 2, &[])?;
    drop(v1);
    let v2 = Media::start(&dir, "media-v2", &broker, &["--livedto-version", "2"])?;
    // Another origin process numbers from its own clock, so the edge restarts the window at the
    // jump (docs/numbering.md): the playlist then lists the second broadcast, read from version 2.
    // An edge that could not read version 2 would still list only the first broadcast: it needs new
    // segments.
    let second = broadcast(&dir, &v2, &edge, "v2", 2, &first)?;
    let r = get(&edge.url(STREAM, "index.m3u8"))?;
    let pl = playlist::parse(std::str::from_utf8(&r.body)?)?;
    let total: f64 = pl
        .entries
        .iter()
        .filter(|e| second.contains(&e.uri))
        .map(|e| e.duration)
        .sum();
    ensure!(
        (total - 6.0).abs() <= 2.0,
        "{total} s listed for a 6 s broadcast written in version 2: {} segments",
        pl.entries.len()
    );
    Ok(())
}
