//! The live path end to end: ffmpeg -> RTMP -> media -> Apache Kafka -> two cdn-edges -> HLS, judged by
//! ffprobe/ffmpeg and an independent playlist reader.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::playlist::MediaPlaylist;
use e2e::{get, poll, probe, publish, Broker, Edge, Media, Publish};

const STREAM: &str = "e2e-cam";
const SEGMENT_SECONDS: f64 = 2.0;
/// Small records force every segment through chunking and reassembly (chunks stay under 48 KiB).
const MAX_MESSAGE_BYTES: &str = "65536";

/// Waits until both edges serve the same ended playlist, and returns it.
fn ended_playlist(a: &Edge, b: &Edge, stream: &str) -> Result<MediaPlaylist> {
    poll(Duration::from_secs(20), Duration::from_millis(100), || {
        let (raw_a, pa) = a.playlist(stream)?;
        let (raw_b, _) = b.playlist(stream)?;
        (pa.ended && raw_a == raw_b).then_some(pa)
    })
    .context(
        "both edges should serve the same playlist with #EXT-X-ENDLIST after the publisher stops",
    )
}

/// Fetches every segment of `pl` from both edges, checks they are byte-identical, decode cleanly and carry
/// H.264 + AAC; returns their sizes.
fn check_segments(dir: &Path, a: &Edge, b: &Edge, pl: &MediaPlaylist) -> Result<Vec<usize>> {
    let mut sizes = Vec::new();
    for e in &pl.entries {
        let ra = get(&a.url(STREAM, &e.uri))?;
        let rb = get(&b.url(STREAM, &e.uri))?;
        ensure!(
            ra.status == 200 && rb.status == 200,
            "segment {} missing",
            e.uri
        );
        ensure!(
            ra.content_type == "video/mp2t",
            "segment content type {}",
            ra.content_type
        );
        ensure!(
            ra.body == rb.body,
            "edges serve different bytes for {}",
            e.uri
        );
        let file = dir.join(&e.uri);
        std::fs::write(&file, &ra.body)?;
        probe::decode_clean(&file)?;
        let info = probe::probe(&file)?;
        ensure!(
            info.codecs == ["h264", "aac"] || info.codecs == ["aac", "h264"],
            "segment {} has streams {:?}",
            e.uri,
            info.codecs
        );
        sizes.push(ra.body.len());
    }
    Ok(sizes)
}

#[test]
fn publish_watch_republish_through_two_edges() -> Result<()> {
    let dir = e2e::work_dir("live_path");
    let broker = Broker::start(&dir, "live-topic", 3)?;
    let media = Media::start(
        &dir,
        "media",
        &broker,
        &[
            "--segment-seconds",
            "2",
            "--max-message-bytes",
            MAX_MESSAGE_BYTES,
        ],
    )?;
    let window = ["--window-segments", "30"];
    let edge_a = Edge::start(&dir, "edge-a", &broker, &window)?;

    let first = Publish {
        seconds: 14,
        ..Publish::default()
    };
    let mut ffmpeg = publish(&dir, "ffmpeg-1", &media.publish_url(STREAM), &first)?;

    // An edge started after the stream began serves what the warm edge has within 1 s of starting.
    let (_, warm) = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        edge_a
            .playlist(STREAM)
            .filter(|(_, p)| p.entries.len() >= 3)
    })
    .context("edge A should list 3 segments within 30 s of publishing")?;
    let edge_b = Edge::start(&dir, "edge-b", &broker, &window)?;
    let caught_up = poll(Duration::from_secs(5), Duration::from_millis(10), || {
        let (_, cold) = edge_b.playlist(STREAM)?;
        let cold_seqs: Vec<u64> = cold.entries.iter().map(|e| e.seq).collect();
        warm.entries
            .iter()
            .all(|e| cold_seqs.contains(&e.seq))
            .then(|| edge_b.proc.started.elapsed())
    })
    .context("cold edge should serve the live window")?;
    eprintln!("cold edge served the full window {caught_up:?} after its start");
    ensure!(
        caught_up <= Duration::from_secs(1),
        "cold edge took {caught_up:?} to serve the window"
    );

    let status = ffmpeg.wait(Duration::from_secs(60))?;
    ensure!(status.success(), "ffmpeg failed: {}", ffmpeg.log_text());

    // Stopping the publisher ends the playlist, identically on both edges.
    let pl = ended_playlist(&edge_a, &edge_b, STREAM)?;
    let sizes = check_segments(&dir, &edge_a, &edge_b, &pl)?;
    let total: f64 = pl.entries.iter().map(|e| e.duration).sum();
    eprintln!(
        "first broadcast: {} segments, {total:.3} s for {} s published, sizes {sizes:?}",
        pl.entries.len(),
        first.seconds
    );
    ensure!(
        (total - f64::from(first.seconds)).abs() <= SEGMENT_SECONDS,
        "segment durations add up to {total} s for {} s published",
        first.seconds
    );
    let max_chunk: usize = MAX_MESSAGE_BYTES.parse()?;
    ensure!(
        sizes.iter().any(|&s| s > max_chunk),
        "test should include a segment larger than the chunk bound ({max_chunk}); sizes {sizes:?}"
    );

    // The segments played back to back decode as one stream, with B-frames kept (PTS != DTS).
    let joined = dir.join("first-broadcast.ts");
    let mut all = Vec::new();
    for e in &pl.entries {
        all.extend(std::fs::read(dir.join(&e.uri))?);
    }
    std::fs::write(&joined, all)?;
    probe::decode_clean(&joined)?;
    ensure!(
        probe::reordered_video_packets(&joined)? > 0,
        "B-frames should survive: some video packets must have PTS != DTS"
    );

    // Republishing the same name: a discontinuity, and sequence numbers that keep increasing.
    let last_seq = pl.entries.last().map(|e| e.seq).context("segments")?;
    let second = Publish {
        seconds: 6,
        ..Publish::default()
    };
    let mut ffmpeg2 = publish(&dir, "ffmpeg-2", &media.publish_url(STREAM), &second)?;
    let status = ffmpeg2.wait(Duration::from_secs(60))?;
    ensure!(status.success(), "ffmpeg failed: {}", ffmpeg2.log_text());
    let pl2 = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        let p = ended_playlist(&edge_a, &edge_b, STREAM).ok()?;
        p.entries.iter().any(|e| e.seq > last_seq).then_some(p)
    })
    .context("the republished broadcast should reach both edges and end")?;
    let new: Vec<_> = pl2.entries.iter().filter(|e| e.seq > last_seq).collect();
    ensure!(
        new.len() >= 2,
        "second broadcast has {} segments",
        new.len()
    );
    ensure!(
        new[0].discontinuity,
        "the first segment of the new broadcast must follow #EXT-X-DISCONTINUITY:\n{pl2:?}"
    );
    ensure!(
        pl2.media_sequence >= pl.media_sequence,
        "media sequence went backwards"
    );
    check_segments(&dir, &edge_a, &edge_b, &pl2)?;

    // The origin shuts down cleanly on SIGTERM.
    let mut media = media;
    ensure!(
        media.proc.terminate(Duration::from_secs(20))?,
        "media exited with an error"
    );
    let started = Instant::now();
    drop(broker);
    eprintln!("teardown {:?}", started.elapsed());
    Ok(())
}
