//! Process-level faults against the real parts: the broker killed and restarted on its log directory,
//! edges and media killed or stopped mid-stream, a publisher whose network path dies. Each test counts
//! segments: what media closed (its log) against what every edge lists and serves.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::faults::{kill_hard, Proxy};
use e2e::manager::{Answer, Manager};
use e2e::playlist::MediaPlaylist;
use e2e::{get, hold, poll, publish, Broker, Edge, Media, Proc, Publish};

const STREAM: &str = "fault-cam";
/// One-second segments: more segments per second of test, same code paths as the default two.
const SEGMENT: &[&str] = &["--segment-seconds", "1"];

fn seqs(p: &MediaPlaylist) -> Vec<u64> {
    p.entries.iter().map(|e| e.seq).collect()
}

/// Sequence numbers media closed, from its `segment closed seq=N` debug lines, in order.
fn closed_seqs(media_log: &str) -> Vec<u64> {
    media_log
        .lines()
        .filter_map(|l| l.split("segment closed seq=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Waits until every edge serves the same ended playlist, and returns it.
fn ended_everywhere(edges: &[&Edge], stream: &str, timeout: Duration) -> Result<MediaPlaylist> {
    poll(timeout, Duration::from_millis(100), || {
        let mut first: Option<(Vec<u8>, MediaPlaylist)> = None;
        for edge in edges {
            let (raw, pl) = edge.playlist(stream)?;
            if !pl.ended {
                return None;
            }
            match &first {
                Some((r, _)) if *r != raw => return None,
                Some(_) => {}
                None => first = Some((raw, pl)),
            }
        }
        first.map(|(_, pl)| pl)
    })
    .with_context(|| format!("every edge should serve the same ended playlist of {stream}"))
}

/// Every listed segment is served by every edge with the same non-empty bytes.
fn all_served(edges: &[&Edge], stream: &str, pl: &MediaPlaylist) -> Result<()> {
    for e in &pl.entries {
        let mut bodies = Vec::new();
        for edge in edges {
            let r = get(&edge.url(stream, &e.uri))?;
            ensure!(
                r.status == 200 && !r.body.is_empty(),
                "segment {} not served",
                e.uri
            );
            bodies.push(r.body);
        }
        ensure!(
            bodies.windows(2).all(|w| w[0] == w[1]),
            "edges serve different bytes for {}",
            e.uri
        );
    }
    Ok(())
}

fn contiguous(s: &[u64]) -> bool {
    s.windows(2).all(|w| w[1] == w[0] + 1)
}

fn api_stats(media: &Media) -> Result<serde_json::Value> {
    let r = get(&format!("http://{}/api/stats", media.http))?;
    Ok(serde_json::from_slice(&r.body)?)
}

/// The single-node broker dies (SIGKILL) for 10 s mid-stream and comes back on the same port and log
/// directory. The publisher is never disconnected, no edge ends the playlist meanwhile, and every segment
/// media closed, the ones of the outage included, is listed contiguously and served by both edges.
#[test]
fn broker_outage_loses_no_segment() -> Result<()> {
    let dir = e2e::work_dir("faults_broker_outage");
    let mut broker = Broker::dedicated(&dir, "live-topic", 2)?;
    let media = Media::start(&dir, "media", &broker, SEGMENT)?;
    let window = ["--window-segments", "100"];
    let edge_a = Edge::start(&dir, "edge-a", &broker, &window)?;
    let edge_b = Edge::start(&dir, "edge-b", &broker, &window)?;
    let mut ffmpeg = publish(
        &dir,
        "ffmpeg",
        &media.publish_url(STREAM),
        &Publish::small(30),
    )?;

    poll(Duration::from_secs(30), Duration::from_millis(100), || {
        edge_a
            .playlist(STREAM)
            .filter(|(_, p)| p.entries.len() >= 3)
    })
    .context("the stream should reach the edge before the outage")?;

    let down_at = Instant::now();
    broker.kill(0)?;
    let closed_before = closed_seqs(&media.proc.log_text()).len();
    let before: Vec<u64> = [&edge_a, &edge_b]
        .iter()
        .filter_map(|e| e.playlist(STREAM).map(|(_, p)| seqs(&p)))
        .filter_map(|s| s.last().copied())
        .collect();
    // Ten seconds of outage, watched: the edges keep serving, never end the playlist, and learn nothing.
    let outage = Duration::from_secs(10).saturating_sub(down_at.elapsed());
    hold(outage, Duration::from_millis(250), || {
        for edge in [&edge_a, &edge_b] {
            let (_, p) = edge
                .playlist(STREAM)
                .context("edges keep serving the playlist")?;
            ensure!(
                !p.ended,
                "an edge ended the playlist during the broker outage"
            );
        }
        Ok(())
    })?;
    let closed_in_outage = closed_seqs(&media.proc.log_text()).len() - closed_before;
    broker.restart(0)?;
    eprintln!(
        "broker down for {:?}; media closed {closed_in_outage} segments meanwhile",
        down_at.elapsed()
    );
    for edge in [&edge_a, &edge_b] {
        let last = edge
            .playlist(STREAM)
            .and_then(|(_, p)| seqs(&p).last().copied());
        ensure!(
            last.is_some_and(|l| before.contains(&l)),
            "the edge received segments while the broker was down ({last:?} vs {before:?}): no outage"
        );
    }

    // The publisher streams on; the playlist stays live until it stops. ffmpeg closes its connection a
    // moment before its process exits, and media ends the broadcast (and the edges the playlist) in
    // that moment: an ended playlist is the publisher's end once media has logged the broadcast's end.
    'live: while ffmpeg.wait(Duration::from_millis(10)).is_err() {
        for edge in [&edge_a, &edge_b] {
            if let Some((_, p)) = edge.playlist(STREAM) {
                if p.ended {
                    ensure!(
                        media.proc.log_text().contains("broadcast ended"),
                        "an edge ended the playlist while the publisher was live"
                    );
                    break 'live;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let closed = nothing_lost(
        &mut ffmpeg,
        &media,
        &[&edge_a, &edge_b],
        Duration::from_secs(30),
    )?;
    eprintln!(
        "media closed {} segments ({}..={}), both edges list all of them",
        closed.len(),
        closed.first().copied().unwrap_or(0),
        closed.last().copied().unwrap_or(0),
    );
    ensure!(closed.len() >= 25, "only {} segments closed", closed.len());
    // One-second segments: about ten closed while the broker was away.
    ensure!(
        closed_in_outage >= 8,
        "only {closed_in_outage} segments were closed during the outage"
    );
    Ok(())
}

/// After a fault: the publisher finished without being disconnected, every edge serves the same ended
/// playlist (within `timeout`), which lists every segment media closed exactly once, in order and
/// without a gap, each served with the same bytes by every edge, and media's producer counted them all
/// delivered and none dropped. Returns the sequence numbers media closed.
fn nothing_lost(
    ffmpeg: &mut Proc,
    media: &Media,
    edges: &[&Edge],
    timeout: Duration,
) -> Result<Vec<u64>> {
    let status = ffmpeg.wait(Duration::from_secs(1))?;
    ensure!(
        status.success(),
        "the publisher was disconnected: {}",
        ffmpeg.log_text()
    );
    let pl = ended_everywhere(edges, STREAM, timeout)?;
    let closed = closed_seqs(&media.proc.log_text());
    let listed = seqs(&pl);
    ensure!(
        contiguous(&listed),
        "edge sequence numbers have a gap: {listed:?}"
    );
    ensure!(
        listed == closed,
        "edges list {listed:?}, media closed {closed:?}"
    );
    all_served(edges, STREAM, &pl)?;
    let stats = api_stats(media)?;
    ensure!(
        stats["segments_delivered"] == closed.len() as u64 && stats["segments_dropped"] == 0,
        "producer counters: {stats}"
    );
    Ok(closed)
}

/// An edge killed with SIGKILL and started again on the same port serves the whole live window (what
/// its warm peer lists) within 1 s of starting.
#[test]
fn edge_killed_and_restarted_serves_the_window_within_a_second() -> Result<()> {
    let dir = e2e::work_dir("faults_edge_kill");
    let broker = Broker::start(&dir, "live-topic", 2)?;
    let media = Media::start(&dir, "media", &broker, SEGMENT)?;
    let window = ["--window-segments", "6"];
    let warm = Edge::start(&dir, "edge-warm", &broker, &window)?;
    let mut victim = Edge::start(&dir, "edge-victim", &broker, &window)?;
    let _ffmpeg = publish(
        &dir,
        "ffmpeg",
        &media.publish_url(STREAM),
        &Publish::small(40),
    )?;
    poll(Duration::from_secs(40), Duration::from_millis(100), || {
        victim
            .playlist(STREAM)
            .filter(|(_, p)| p.entries.len() >= 6)
    })
    .context("the window should fill")?;

    let addr = victim.http;
    kill_hard(&mut victim.proc)?;
    ensure!(
        TcpStream::connect(addr).is_err(),
        "the killed edge still accepts connections"
    );
    let restarted = Edge::start_on(&dir, "edge-restarted", &broker, addr, &window)?;
    let served = poll(Duration::from_secs(5), Duration::from_millis(10), || {
        let (_, cold) = restarted.playlist(STREAM)?;
        let (_, hot) = warm.playlist(STREAM)?;
        let have: BTreeSet<u64> = seqs(&cold).into_iter().collect();
        (cold.entries.len() == 6 && seqs(&hot).iter().all(|s| have.contains(s)))
            .then(|| restarted.proc.started.elapsed())
    })
    .context("the restarted edge should serve the warm edge's window")?;
    eprintln!("restarted edge served the full window {served:?} after its start");
    ensure!(
        served <= Duration::from_secs(1),
        "the restarted edge took {served:?}"
    );
    let (_, pl) = restarted.playlist(STREAM).context("playlist")?;
    all_served(&[&restarted], STREAM, &pl)?;
    Ok(())
}

/// media dies with SIGKILL mid-stream: nothing announces the end, so every edge ends the playlist after
/// a few target durations of silence. A new media process then takes the name: sequence numbers keep
/// increasing and the discontinuity sequence steps up.
#[test]
fn media_killed_edges_end_the_playlist_and_the_next_publish_continues() -> Result<()> {
    let dir = e2e::work_dir("faults_media_kill");
    let broker = Broker::start(&dir, "live-topic", 2)?;
    let mut media = Media::start(&dir, "media", &broker, SEGMENT)?;
    let flags = [
        "--window-segments",
        "6",
        "--stale-after-target-durations",
        "4",
    ];
    let edge_a = Edge::start(&dir, "edge-a", &broker, &flags)?;
    let edge_b = Edge::start(&dir, "edge-b", &broker, &flags)?;
    let mut ffmpeg = publish(
        &dir,
        "ffmpeg-1",
        &media.publish_url(STREAM),
        &Publish::small(60),
    )?;
    poll(Duration::from_secs(30), Duration::from_millis(100), || {
        edge_a
            .playlist(STREAM)
            .filter(|(_, p)| p.entries.len() >= 4)
    })
    .context("the stream should reach the edge")?;

    kill_hard(&mut media.proc)?;
    let killed_at = Instant::now();
    let _ = ffmpeg.wait(Duration::from_secs(10));
    let before = ended_everywhere(&[&edge_a, &edge_b], STREAM, Duration::from_secs(20))?;
    let took = killed_at.elapsed();
    eprintln!("edges ended the playlist {took:?} after media was killed");
    // Four 1 s target durations of silence, judged once a second.
    ensure!(
        took <= Duration::from_secs(7),
        "the edges took {took:?} to end the playlist"
    );
    ensure!(
        took >= Duration::from_secs(3),
        "the edges ended the playlist after only {took:?}: a live stream would be cut"
    );

    let media2 = Media::start(&dir, "media-2", &broker, SEGMENT)?;
    let mut ffmpeg2 = publish(
        &dir,
        "ffmpeg-2",
        &media2.publish_url(STREAM),
        &Publish::small(5),
    )?;
    let after = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        edge_a
            .playlist(STREAM)
            .map(|(_, p)| p)
            .filter(|p| !p.ended && p.entries.len() >= 2)
    })
    .context("the republished stream should reach the edge")?;
    let last_before = *seqs(&before).last().context("segments")?;
    eprintln!(
        "before: media sequence {} disc {} last {last_before}; after: media sequence {} disc {}",
        before.media_sequence,
        before.discontinuity_sequence,
        after.media_sequence,
        after.discontinuity_sequence
    );
    ensure!(
        after.media_sequence > last_before,
        "sequence numbers went backwards"
    );
    ensure!(
        after.discontinuity_sequence > before.discontinuity_sequence,
        "the new process's broadcast must count as a discontinuity (disc {} then {})",
        before.discontinuity_sequence,
        after.discontinuity_sequence
    );
    // Both renditions of one edge give the new process's segments the same discontinuity numbers.
    let (ts, ll) = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let numbers = |file| {
            let r = get(&edge_a.url(STREAM, file)).ok()?;
            (r.status == 200).then(|| disc_numbers(&String::from_utf8_lossy(&r.body)))
        };
        let (ts, ll) = (numbers("index.m3u8")?, numbers("ll.m3u8")?);
        let shared = ts
            .iter()
            .filter(|(seq, _)| *seq > last_before && ll.iter().any(|(s, _)| s == seq))
            .count();
        (shared >= 2).then_some((ts, ll))
    })
    .context("index.m3u8 and ll.m3u8 should both list the new process's segments")?;
    for (seq, number) in &ts {
        if let Some((_, ll_number)) = ll.iter().find(|(s, _)| s == seq) {
            ensure!(
                ll_number == number,
                "segment {seq}: discontinuity {number} in index.m3u8, {ll_number} in ll.m3u8"
            );
        }
    }
    ensure!(ffmpeg2.wait(Duration::from_secs(30))?.success());
    let pl = ended_everywhere(&[&edge_a, &edge_b], STREAM, Duration::from_secs(20))?;
    ensure!(contiguous(&seqs(&pl)), "{pl:?}");
    Ok(())
}

/// (media sequence number, discontinuity number as a player counts it) of every whole segment of a
/// TS (`N.ts`) or LL-HLS (`N.mp4`) playlist: the sequence plus the DISCONTINUITY tags before it.
fn disc_numbers(text: &str) -> Vec<(u64, u64)> {
    let mut number = 0;
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            number = v.parse().unwrap_or(u64::MAX);
        } else if line == "#EXT-X-DISCONTINUITY" {
            number += 1;
        } else if let Some(seq) = line
            .strip_suffix(".ts")
            .or_else(|| line.strip_suffix(".mp4"))
            .and_then(|s| s.parse().ok())
        {
            out.push((seq, number));
        }
    }
    out
}

/// The publisher's network path dies (no FIN, no RST): media ends the broadcast within its idle
/// timeout, fires `on_publish_done` once, and the edge's playlist ends.
#[test]
fn publisher_network_cut_ends_the_broadcast_within_the_idle_timeout() -> Result<()> {
    let dir = e2e::work_dir("faults_network_cut");
    let manager = Manager::start(|_| Answer::Status(200));
    let broker = Broker::start(&dir, "live-topic", 2)?;
    let (on_publish, on_done) = (manager.url("on_publish"), manager.url("on_publish_done"));
    let media = Media::start(
        &dir,
        "media",
        &broker,
        &[
            "--segment-seconds",
            "1",
            "--idle-timeout-seconds",
            "3",
            "--on-publish",
            &on_publish,
            "--on-publish-done",
            &on_done,
        ],
    )?;
    let edge = Edge::start(&dir, "edge", &broker, &["--window-segments", "30"])?;
    let proxy = Proxy::start(media.rtmp)?;
    let url = format!("rtmp://{}/live/{STREAM}", proxy.addr);
    let _ffmpeg = publish(&dir, "ffmpeg", &url, &Publish::small(60))?;
    poll(Duration::from_secs(30), Duration::from_millis(100), || {
        edge.playlist(STREAM).filter(|(_, p)| p.entries.len() >= 3)
    })
    .context("the stream should reach the edge through the proxy")?;
    ensure!(manager.calls_of("publish_done").is_empty());

    proxy.cut();
    let cut_at = Instant::now();
    let done = manager.wait_for("publish_done", 1, Duration::from_secs(15));
    let took = cut_at.elapsed();
    ensure!(
        done.len() == 1,
        "on_publish_done should fire once, got {done:?}"
    );
    ensure!(done[0].get("name") == Some(STREAM));
    eprintln!("media ended the broadcast {took:?} after the cut (idle timeout 3 s)");
    ensure!(
        took >= Duration::from_secs(2) && took <= Duration::from_secs(6),
        "on_publish_done came {took:?} after the cut"
    );
    let pl = ended_everywhere(&[&edge], STREAM, Duration::from_secs(10))?;
    ensure!(contiguous(&seqs(&pl)));
    std::thread::sleep(Duration::from_secs(1));
    ensure!(
        manager.calls_of("publish_done").len() == 1,
        "on_publish_done fired more than once"
    );
    ensure!(
        media
            .proc
            .log_text()
            .contains("no data for 3s; closing idle connection"),
        "media should say why the publisher was dropped"
    );
    Ok(())
}

/// SIGTERM to media mid-stream: the publisher's connection is closed (ffmpeg exits instead of hanging),
/// the stream's end and `on_publish_done` go out, and every segment closed reaches the edge before media
/// exits 0.
#[test]
fn media_sigterm_ends_streams_and_flushes_everything() -> Result<()> {
    let dir = e2e::work_dir("faults_media_sigterm");
    let manager = Manager::start(|_| Answer::Status(200));
    let broker = Broker::start(&dir, "live-topic", 2)?;
    let on_done = manager.url("on_publish_done");
    let mut media = Media::start(
        &dir,
        "media",
        &broker,
        &["--segment-seconds", "1", "--on-publish-done", &on_done],
    )?;
    let edge = Edge::start(&dir, "edge", &broker, &["--window-segments", "60"])?;
    let streams = ["term-a", "term-b"];
    let mut publishers: Vec<Proc> = streams
        .iter()
        .map(|s| {
            publish(
                &dir,
                &format!("ffmpeg-{s}"),
                &media.publish_url(s),
                &Publish::small(60),
            )
        })
        .collect::<Result<_>>()?;
    poll(Duration::from_secs(30), Duration::from_millis(100), || {
        streams
            .iter()
            .all(|s| edge.playlist(s).is_some_and(|(_, p)| p.entries.len() >= 3))
            .then_some(())
    })
    .context("both streams should reach the edge")?;

    ensure!(
        media.proc.terminate(Duration::from_secs(30))?,
        "media exited with an error after SIGTERM"
    );
    for p in &mut publishers {
        p.wait(Duration::from_secs(10))
            .context("the publisher should see its connection closed")?;
    }
    let done = manager.wait_for("publish_done", 2, Duration::from_secs(5));
    let names: BTreeSet<&str> = done.iter().filter_map(|c| c.get("name")).collect();
    ensure!(
        done.len() == 2 && names == streams.iter().copied().collect(),
        "on_publish_done per stream: {done:?}"
    );
    let log = media.proc.log_text();
    ensure!(log.contains("producer flushed"), "no flush in media's log");
    let closed = closed_seqs(&log);
    let mut listed = Vec::new();
    for s in streams {
        let pl = ended_everywhere(&[&edge], s, Duration::from_secs(10))?;
        ensure!(contiguous(&seqs(&pl)), "{s}: {pl:?}");
        all_served(&[&edge], s, &pl)?;
        listed.extend(seqs(&pl));
    }
    listed.sort_unstable();
    let mut closed_sorted = closed.clone();
    closed_sorted.sort_unstable();
    eprintln!(
        "media closed {} segments, the edge lists {}",
        closed.len(),
        listed.len()
    );
    ensure!(
        listed == closed_sorted,
        "edge lists {listed:?}, media closed {closed_sorted:?}"
    );
    Ok(())
}

/// SIGTERM to media while the broker is down and segments wait in its queue: media keeps flushing
/// through its shutdown (20 s), so when the broker returns within that window every queued segment and
/// the stream's end reach the edge, and media exits 0.
#[test]
fn media_sigterm_during_a_broker_outage_loses_nothing_queued() -> Result<()> {
    let dir = e2e::work_dir("faults_media_sigterm_outage");
    let mut broker = Broker::dedicated(&dir, "live-topic", 1)?;
    let mut media = Media::start(&dir, "media", &broker, SEGMENT)?;
    let edge = Edge::start(&dir, "edge", &broker, &["--window-segments", "60"])?;
    let mut ffmpeg = publish(
        &dir,
        "ffmpeg",
        &media.publish_url(STREAM),
        &Publish::small(60),
    )?;
    poll(Duration::from_secs(30), Duration::from_millis(100), || {
        edge.playlist(STREAM).filter(|(_, p)| p.entries.len() >= 2)
    })
    .context("the stream should reach the edge")?;

    broker.kill(0)?;
    let closed_before = closed_seqs(&media.proc.log_text()).len();
    std::thread::sleep(Duration::from_secs(3));
    // SIGTERM without waiting: media is now flushing into a broker that is not there.
    ensure!(Command::new("kill")
        .args(["-TERM", &media.proc.pid().to_string()])
        .status()?
        .success());
    // A Kafka node takes 10-15 s to start here: the broker stays away for most of media's 20 s flush.
    std::thread::sleep(Duration::from_millis(500));
    broker.restart(0)?;
    let status = media.proc.wait(Duration::from_secs(30))?;
    ensure!(status.success(), "media exited with {status}");
    ffmpeg
        .wait(Duration::from_secs(10))
        .context("the publisher should see its connection closed")?;

    let log = media.proc.log_text();
    let closed = closed_seqs(&log);
    ensure!(
        closed.len() >= closed_before + 3,
        "only {} of {} segments were closed during the outage",
        closed.len() - closed_before,
        closed.len()
    );
    ensure!(
        log.contains("producer flushed"),
        "no complete flush in media's log"
    );
    let pl = ended_everywhere(&[&edge], STREAM, Duration::from_secs(20))?;
    eprintln!(
        "media closed {} segments ({} while the broker was down), the edge lists {}",
        closed.len(),
        closed.len() - closed_before,
        pl.entries.len()
    );
    ensure!(
        seqs(&pl) == closed,
        "edge lists {:?}, media closed {closed:?}",
        seqs(&pl)
    );
    all_served(&[&edge], STREAM, &pl)?;
    Ok(())
}

/// SIGTERM to an edge while a large segment is being read slowly: the download completes with every
/// byte, new connections are refused meanwhile, and the edge exits 0 afterwards.
#[test]
fn edge_sigterm_completes_in_flight_responses() -> Result<()> {
    let dir = e2e::work_dir("faults_edge_sigterm");
    let broker = Broker::start(&dir, "live-topic", 1)?;
    let media = Media::start(&dir, "media", &broker, &["--segment-seconds", "2"])?;
    let mut edge = Edge::start(&dir, "edge", &broker, &["--window-segments", "10"])?;
    // Constant 8 Mbps (x264 pads with filler data): 2 s segments of ~2 MB, far more than the socket
    // buffers of a client that reads slowly can absorb.
    let mut ffmpeg = cbr_publish(&dir, &media.publish_url(STREAM), 8000, 7)?;
    let (_, pl) = poll(Duration::from_secs(40), Duration::from_millis(200), || {
        edge.playlist(STREAM).filter(|(_, p)| p.entries.len() >= 2)
    })
    .context("segments should reach the edge")?;
    let uri = pl.entries[0].uri.clone();
    let whole = get(&edge.url(STREAM, &uri))?.body;
    ensure!(
        whole.len() > 1_500_000,
        "segment of only {} bytes",
        whole.len()
    );
    let _ = ffmpeg.wait(Duration::from_secs(30));

    let mut conn = TcpStream::connect(edge.http)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "GET /live/{STREAM}/{uri} HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n\r\n"
    )?;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let n = conn.read(&mut buf)?;
    got.extend_from_slice(&buf[..n]);

    let pid = edge.proc.pid().to_string();
    ensure!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()?
        .success());
    // Give the edge time to act on the signal before probing it.
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        TcpStream::connect(edge.http).is_err(),
        "the edge still accepts connections after SIGTERM"
    );
    // Read the rest at ~1 MB/s.
    let read_started = Instant::now();
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(15));
    }
    let body_at = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("response headers")?
        + 4;
    eprintln!(
        "read {} body bytes over {:?} after SIGTERM",
        got.len() - body_at,
        read_started.elapsed()
    );
    ensure!(got.starts_with(b"HTTP/1.1 200"), "status line");
    ensure!(
        got[body_at..] == whole[..],
        "the in-flight response was cut: {} of {} bytes",
        got.len() - body_at,
        whole.len()
    );
    let status = edge.proc.wait(Duration::from_secs(10))?;
    ensure!(status.success(), "edge exited with {status}");
    Ok(())
}

/// ffmpeg publishing a constant-bitrate test source (filler data keeps the rate), 2 s GOP.
fn cbr_publish(dir: &Path, url: &str, kbps: u32, seconds: u32) -> Result<Proc> {
    let rate = format!("{kbps}k");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "warning", "-re"])
        .args(["-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x240:rate=30:duration={seconds}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60"])
        .args(["-b:v", &rate, "-minrate", &rate, "-maxrate", &rate])
        .args(["-bufsize", &rate, "-x264-params", "nal-hrd=cbr:filler=1"])
        .args(["-pix_fmt", "yuv420p", "-f", "flv", url]);
    Proc::spawn("ffmpeg-cbr", cmd, dir)
}

/// The value of an unlabelled counter or gauge in an edge's `/metrics`.
fn edge_metric(edge: &Edge, name: &str) -> Result<f64> {
    let text = String::from_utf8(get(&format!("http://{}/metrics", edge.http))?.body)?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .with_context(|| format!("{name} not in /metrics"))
}

/// An edge stopped (SIGSTOP) longer than the topic's retention finds, when it resumes, that the records
/// it was about to read are deleted. It skips to the live window on its own (the one a freshly started
/// edge would serve), says so in its log and counts it, instead of stalling on an offset that is gone.
#[test]
fn edge_behind_retention_skips_to_the_live_window() -> Result<()> {
    let dir = e2e::work_dir("faults_edge_behind_retention");
    // Three seconds of retention, log segments rolled every half second so retention can drop them
    // (the test brokers check retention every second).
    let broker = Broker::start_with_configs(
        &dir,
        "live-topic",
        1,
        &[("retention.ms", "3000"), ("segment.ms", "500")],
    )?;
    let media = Media::start(&dir, "media", &broker, SEGMENT)?;
    let window = ["--window-segments", "4"];
    let edge = Edge::start(&dir, "edge", &broker, &window)?;
    let _ffmpeg = publish(
        &dir,
        "ffmpeg",
        &media.publish_url(STREAM),
        &Publish::small(60),
    )?;
    poll(Duration::from_secs(30), Duration::from_millis(100), || {
        edge.playlist(STREAM).filter(|(_, p)| p.entries.len() >= 3)
    })
    .context("the stream should reach the edge")?;
    ensure!(edge_metric(&edge, "cdn_edge_kafka_retention_skips_total")? == 0.0);

    let signal = |sig: &str| -> Result<()> {
        let pid = edge.proc.pid().to_string();
        ensure!(Command::new("kill").args([sig, &pid]).status()?.success());
        Ok(())
    };
    signal("-STOP")?;
    std::thread::sleep(Duration::from_secs(12));
    let closed_while_stopped = closed_seqs(&media.proc.log_text());
    signal("-CONT")?;
    let resumed = Instant::now();

    // Within a few seconds the edge lists what media closed last, in a full window.
    let newest = *closed_while_stopped.last().context("segments closed")?;
    let (_, pl) = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        edge.playlist(STREAM)
            .filter(|(_, p)| seqs(p).last().is_some_and(|&l| l >= newest) && p.entries.len() >= 2)
    })
    .context("the edge should reach the live window after resuming")?;
    eprintln!(
        "edge served the live window {:?} after resuming: {:?}",
        resumed.elapsed(),
        seqs(&pl)
    );
    ensure!(!pl.ended, "the stream is still live");
    all_served(&[&edge], STREAM, &pl)?;
    ensure!(
        edge_metric(&edge, "cdn_edge_kafka_retention_skips_total")? >= 1.0,
        "the skip should be counted"
    );
    ensure!(
        edge.proc
            .log_text()
            .contains("fell behind the topic's retention"),
        "the edge should say why it skipped ahead"
    );
    Ok(())
}

/// When each segment of a stream first appeared at each edge, and when an edge first served the
/// playlist ended, recorded by a watcher thread that polls the edges' playlists every 50 ms while a
/// fault runs.
struct Arrivals {
    first_seen: Vec<std::collections::BTreeMap<u64, Instant>>,
    first_ended: Option<Instant>,
}

impl Arrivals {
    /// Watches `edges` until `stop` is set.
    fn watch(edges: &[&Edge], stream: &str, stop: &std::sync::atomic::AtomicBool) -> Self {
        let mut first_seen = vec![std::collections::BTreeMap::new(); edges.len()];
        let mut first_ended = None;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            for (edge, seen) in edges.iter().zip(&mut first_seen) {
                let Some((_, pl)) = edge.playlist(stream) else {
                    continue;
                };
                let now = Instant::now();
                if pl.ended {
                    first_ended.get_or_insert(now);
                }
                for s in seqs(&pl) {
                    seen.entry(s).or_insert(now);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            first_seen,
            first_ended,
        }
    }

    /// The longest time between two consecutive segments becoming available, over all edges.
    fn longest_gap(&self) -> Duration {
        self.first_seen
            .iter()
            .flat_map(|seen| {
                let times: Vec<Instant> = seen.values().copied().collect();
                times
                    .windows(2)
                    .map(|w| w[1].saturating_duration_since(w[0]))
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or_default()
    }
}

/// Runs `fault` against a three-node cluster while ffmpeg publishes to media (`acks=all`,
/// idempotence) and two edges serve the stream; then checks that the publisher was never disconnected
/// and every segment media closed is listed exactly once, in order, and served by both edges. Returns
/// the longest gap in segment availability at the edges.
fn cluster_fault(
    test: &str,
    seconds: u32,
    fault: impl FnOnce(&mut Broker) -> Result<()>,
) -> Result<Duration> {
    let dir = e2e::work_dir(test);
    let mut broker = Broker::three_nodes(&dir, "live-topic", 2)?;
    // The default 2 s segments, so edges judge an origin silent after the default 8 s: a leader's
    // failover takes the controllers' 9 s session timeout, and media needs a moment more to find the
    // new leader, during which the edges already read from it.
    let media = Media::start(&dir, "media", &broker, &[])?;
    let window = ["--window-segments", "200"];
    let edge_a = Edge::start(&dir, "edge-a", &broker, &window)?;
    let edge_b = Edge::start(&dir, "edge-b", &broker, &window)?;
    let mut ffmpeg = publish(
        &dir,
        "ffmpeg",
        &media.publish_url(STREAM),
        &Publish::small(seconds),
    )?;
    poll(Duration::from_secs(30), Duration::from_millis(100), || {
        [&edge_a, &edge_b]
            .iter()
            .all(|e| {
                e.playlist(STREAM)
                    .is_some_and(|(_, p)| p.entries.len() >= 3)
            })
            .then_some(())
    })
    .context("the stream should reach both edges before the fault")?;

    let stop = std::sync::atomic::AtomicBool::new(false);
    let (arrivals, fault_result, publisher_done) = std::thread::scope(|s| {
        let watcher = s.spawn(|| Arrivals::watch(&[&edge_a, &edge_b], STREAM, &stop));
        let fault_result = fault(&mut broker);
        // The publisher streams on after the fault; the watcher sees it to the end.
        let _ = ffmpeg.wait(Duration::from_secs(u64::from(seconds) + 30));
        let publisher_done = Instant::now();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let arrivals = watcher
            .join()
            .map_err(|_| anyhow::anyhow!("watcher panicked"));
        (arrivals, fault_result, publisher_done)
    });
    fault_result?;
    let arrivals = arrivals?;
    // The stream's end reaches the edges as ffmpeg closes its connection, a moment before its process
    // exit is seen here; an end any earlier is an edge giving up on a live stream.
    if let Some(ended) = arrivals.first_ended {
        ensure!(
            ended + Duration::from_secs(1) >= publisher_done,
            "an edge ended the playlist {:?} before the publisher finished",
            publisher_done - ended
        );
    }
    let closed = nothing_lost(
        &mut ffmpeg,
        &media,
        &[&edge_a, &edge_b],
        Duration::from_secs(60),
    )?;
    ensure!(
        closed.len() as u32 >= seconds / 2 - 3,
        "only {} segments closed",
        closed.len()
    );
    let gap = arrivals.longest_gap();
    eprintln!(
        "{test}: {} segments closed, all listed once by both edges; longest gap in availability {gap:?}",
        closed.len()
    );
    Ok(gap)
}

/// kill -9 of the node leading the stream's partition mid-broadcast (three nodes, replication factor 3,
/// min.insync.replicas 2): the publisher stays connected, no segment is lost or duplicated at either
/// edge; the node comes back later and rejoins.
#[test]
fn cluster_leader_killed_loses_nothing() -> Result<()> {
    let partition = common::partition_for(STREAM, 2) as i32;
    let gap = cluster_fault("cluster_leader_kill", 45, |broker| {
        let leader = broker.leader_of(partition)?;
        eprintln!(
            "killing node {} (leader of partition {partition})",
            leader + 1
        );
        broker.kill(leader)?;
        std::thread::sleep(Duration::from_secs(15));
        let new_leader = broker.leader_of(partition)?;
        ensure!(new_leader != leader, "leadership should have moved");
        broker.restart(leader)?;
        broker.wait_in_sync(3, Duration::from_secs(60))
    })?;
    // The controller fences a dead broker after broker.session.timeout.ms (9 s by default); nothing
    // moves before that, and the backlog follows within a few seconds.
    ensure!(gap < Duration::from_secs(25), "availability gap {gap:?}");
    Ok(())
}

/// A rolling restart of all three nodes, one at a time (SIGTERM, controlled shutdown, start, wait for
/// every replica to be in sync again): the publisher stays connected, no segment is lost or
/// duplicated at either edge.
#[test]
fn cluster_rolling_restart_loses_nothing() -> Result<()> {
    let gap = cluster_fault("cluster_rolling_restart", 80, |broker| {
        for i in 0..3 {
            let started = Instant::now();
            broker.stop(i)?;
            broker.restart(i)?;
            broker.wait_in_sync(3, Duration::from_secs(60))?;
            eprintln!(
                "node {} restarted and in sync in {:?}",
                i + 1,
                started.elapsed()
            );
        }
        Ok(())
    })?;
    ensure!(gap < Duration::from_secs(10), "availability gap {gap:?}");
    Ok(())
}
