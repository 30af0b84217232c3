//! Bad and unusual RTMP input against the real media binary (real broker, real edge), sent by the
//! hand-rolled client in `e2e::rtmp_client`: every offender gets a clear answer, nobody else notices,
//! nothing panics and memory stays small; legal-but-unusual chunking and timestamps play.

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::playlist::MediaPlaylist;
use e2e::rtmp_client::{self as rtmp, Client, FlvTag, Message};
use e2e::{get, poll, probe, publish, Broker, Edge, Media, Publish};

/// Resident memory of `pid` in MiB, from /proc.
fn rss_mib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    Ok(kb / 1024)
}

fn last_seq(edge: &Edge, stream: &str) -> Option<u64> {
    edge.playlist(stream)?.1.entries.last().map(|e| e.seq)
}

/// Waits for `needle` in media's log (it is written asynchronously).
fn logged(media: &Media, needle: &str) -> Result<()> {
    poll(Duration::from_secs(5), Duration::from_millis(50), || {
        media.proc.log_text().contains(needle).then_some(())
    })
    .with_context(|| format!("media should log `{needle}`"))
}

fn media_msg(type_id: u8, timestamp: u32, stream_id: u32, data: Vec<u8>) -> Message {
    Message {
        type_id,
        timestamp,
        stream_id,
        data,
    }
}

/// Sends one FLV tag body as a media message on the usual chunk streams (audio 4, video 6, data 5).
fn send_tag(c: &mut Client, tag: &FlvTag, timestamp: u32) -> Result<()> {
    let csid = match tag.type_id {
        rtmp::AUDIO => 4,
        rtmp::VIDEO => 6,
        _ => 5,
    };
    let m = media_msg(tag.type_id, timestamp, c.stream_id, tag.data.clone());
    c.send(csid, &m)
}

/// Publishes as the client and expects acceptance.
fn publisher(media: &Media, name: &str) -> Result<Client> {
    let (c, code) = Client::publish(media.rtmp, "live", name)?;
    ensure!(
        code == "NetStream.Publish.Start",
        "publish of {name} answered {code}"
    );
    Ok(c)
}

#[test]
fn bad_input_gets_a_clear_answer_and_others_keep_streaming() -> Result<()> {
    let dir = e2e::work_dir("rtmp_bad_input");
    let broker = Broker::start(&dir, "live-topic", 1)?;
    let media = Media::start(
        &dir,
        "media",
        &broker,
        &["--handshake-timeout-seconds", "5"],
    )?;
    let edge = Edge::start(&dir, "edge", &broker, &[])?;
    let _good = publish(
        &dir,
        "ffmpeg-good",
        &media.publish_url("good"),
        &Publish::small(120),
    )?;
    let before = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        last_seq(&edge, "good")
    })
    .context("the good publisher's stream should reach the edge")?;
    let rss_before = rss_mib(media.proc.pid())?;
    let fixture = rtmp::fixture()?;
    let avc_header = fixture
        .iter()
        .find(|t| t.type_id == rtmp::VIDEO && t.data.get(1) == Some(&0))
        .context("fixture has an AVC sequence header")?
        .clone();

    // Garbage before the handshake (an HTTP request on the RTMP port).
    let mut s = TcpStream::connect(media.rtmp)?;
    std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")?;
    ensure!(rtmp::closed_within(&mut s, Duration::from_secs(3)));
    logged(&media, "invalid handshake: BadVersionId")?;

    // Garbage inside the handshake: version 3, random C1 and C2, then noise.
    let mut s = TcpStream::connect(media.rtmp)?;
    let mut noise: Vec<u8> = vec![3];
    noise.extend((0..1536u32 * 2 + 64).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0xc0));
    std::io::Write::write_all(&mut s, &noise)?;
    ensure!(rtmp::closed_within(&mut s, Duration::from_secs(3)));
    logged(&media, "which has no previous message")?;

    // A handshake that never finishes: C0 and part of C1, then silence.
    let mut s = TcpStream::connect(media.rtmp)?;
    std::io::Write::write_all(&mut s, &[3; 100])?;
    let t = Instant::now();
    ensure!(rtmp::closed_within(&mut s, Duration::from_secs(9)));
    ensure!(t.elapsed() >= Duration::from_secs(4), "closed too early");
    logged(&media, "handshake did not complete within 5s")?;

    // Slowloris: 1,000 idle connections hold every handshake place (--max-connections is 1000), yet a
    // publisher arriving right after them gets in: the oldest idle one makes room. A second media with a
    // long handshake timeout, so the idle connections are surely still there when the publisher comes,
    // however slow the machine is.
    let patient = Media::start(
        &dir,
        "media-slowloris",
        &broker,
        &["--handshake-timeout-seconds", "120"],
    )?;
    let t = Instant::now();
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(patient.rtmp))
        .collect::<std::io::Result<_>>()?;
    let connected = t.elapsed();
    let mut late = publisher(&patient, "late")?;
    ensure!(
        t.elapsed() < Duration::from_secs(100),
        "the test must publish before the idle connections' handshake timeout ({:?})",
        t.elapsed()
    );
    eprintln!(
        "slowloris: 1,000 idle connections opened in {connected:?}, a publisher got in {:?} later",
        t.elapsed() - connected
    );
    for tag in fixture.iter().take(40) {
        send_tag(&mut late, tag, tag.timestamp)?;
    }
    ensure!(!late.closed_within(Duration::from_millis(500)));
    drop(late);
    logged(&patient, "every handshake place is taken")?;
    let rss_idle = rss_mib(patient.proc.pid())?;
    eprintln!("media RSS with 1,000 connections in the handshake: {rss_idle} MiB");
    ensure!(rss_idle < 128, "1,000 idle connections took {rss_idle} MiB");
    drop(idle);
    drop(patient);

    // Chunk size 0 and 2^31 (the top bit must be 0).
    for (size, text) in [
        (0u32, "invalid chunk size 0"),
        (1 << 31, "invalid chunk size 2147483648"),
    ] {
        let mut c = Client::handshake(media.rtmp)?;
        c.set_chunk_size(size)?;
        ensure!(c.closed_within(Duration::from_secs(3)), "chunk size {size}");
        logged(&media, text)?;
    }

    // A message length of 16 MB: refused from its header, nothing allocated for it.
    let mut c = Client::handshake(media.rtmp)?;
    c.connect("live")?;
    let mut header = vec![0x06, 0, 0, 0, 0xff, 0xff, 0xff, rtmp::VIDEO, 1, 0, 0, 0];
    header.extend_from_slice(&[0x17; 65_536]);
    c.raw(&header)?;
    ensure!(c.closed_within(Duration::from_secs(3)));
    logged(
        &media,
        "message of 16777215 bytes (type 9) exceeds the limit",
    )?;

    // An unknown message type is ignored (logged); the connection goes on to publish.
    let mut c = Client::handshake(media.rtmp)?;
    c.connect("live")?;
    c.send(3, &media_msg(0x30, 0, 0, vec![1; 300]))?;
    let code = c.start_publish("after-unknown")?;
    ensure!(code == "NetStream.Publish.Start", "{code}");
    logged(&media, "ignoring RTMP message of unsupported type")?;
    drop(c);

    // Malformed AMF0 commands rml_rtmp would panic on or recurse into without bound.
    let mut deep = rtmp::amf_string("x");
    deep.extend(rtmp::amf_number(1.0));
    for _ in 0..50_000 {
        deep.extend_from_slice(&[10, 0, 0, 0, 1]);
    }
    for body in [rtmp::amf_string("connect"), deep] {
        let mut c = Client::handshake(media.rtmp)?;
        c.set_chunk_size(65_536)?;
        c.send(3, &rtmp::command(0, body))?;
        ensure!(c.closed_within(Duration::from_secs(3)));
    }
    logged(&media, "malformed AMF0 command: fewer than three values")?;
    logged(&media, "malformed AMF0 command: objects nested too deeply")?;

    // Codecs other than H.264/AAC: the publisher is closed with a message naming the codec.
    for (type_id, first, text) in [
        (
            rtmp::VIDEO,
            vec![0x12, 0, 0],
            "unsupported video codec id 2 (Sorenson H.263)",
        ),
        (
            rtmp::VIDEO,
            vec![0x1c, 0, 0, 0, 0],
            "unsupported video codec id 12 (HEVC",
        ),
        (
            rtmp::VIDEO,
            b"\x90hvc1\x01".to_vec(),
            "enhanced RTMP (codec fourcc \"hvc1\")",
        ),
        (
            rtmp::AUDIO,
            vec![0x2f, 0xff, 0xfb],
            "unsupported audio format 2 (MP3)",
        ),
        (
            rtmp::AUDIO,
            vec![0xbf, 0x00],
            "unsupported audio format 11 (Speex)",
        ),
        // SoundFormat 10 (AAC) announcing AAC-ELD, which HLS's ADTS cannot carry.
        (
            rtmp::AUDIO,
            vec![0xaf, 0x00, 0xf8, 0xe6, 0x20, 0x00],
            "unsupported AAC audio object type 39 (ER AAC-ELD)",
        ),
    ] {
        let mut c = publisher(&media, "odd-codec")?;
        let stream_id = c.stream_id;
        c.send(4, &media_msg(type_id, 0, stream_id, first))?;
        ensure!(c.closed_within(Duration::from_secs(3)), "{text}");
        logged(&media, text)?;
    }

    // Video without a sequence header, and NAL lengths pointing past the tag: those messages are
    // dropped with a warning, the connection stays.
    let mut c = publisher(&media, "no-header")?;
    let sid = c.stream_id;
    c.send(
        6,
        &media_msg(
            rtmp::VIDEO,
            0,
            sid,
            vec![0x17, 1, 0, 0, 0, 0, 0, 0, 2, 0x65, 0x88],
        ),
    )?;
    logged(&media, "video frame before any AVC sequence header")?;
    c.send(6, &media_msg(rtmp::VIDEO, 0, sid, avc_header.data.clone()))?;
    c.send(
        6,
        &media_msg(
            rtmp::VIDEO,
            33,
            sid,
            vec![0x17, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 0x65, 0x88],
        ),
    )?;
    logged(
        &media,
        "NAL unit length 65535 exceeds the 2 bytes left in the tag",
    )?;
    ensure!(!c.closed_within(Duration::from_millis(500)));
    drop(c);

    // Stream names that could escape a path or are unreasonable: refused with NetStream.Publish.BadName.
    let long = "k".repeat(1024);
    for name in [
        "..",
        "a/b",
        "a%2Fb",
        "x\0y",
        long.as_str(),
        "../../etc/passwd",
    ] {
        let (_c, code) = Client::publish(media.rtmp, "live", name)?;
        ensure!(code == "NetStream.Publish.BadName", "{name:?}: {code}");
    }
    // Not UTF-8: AMF0 strings must be, so the command itself is refused and the connection closed.
    let mut c = Client::handshake(media.rtmp)?;
    c.connect("live")?;
    let err = c
        .start_publish_raw(&[2, 0, 3, b'a', 0xff, 0xfe])
        .expect_err("a non-UTF-8 name is refused");
    ensure!(err.to_string().contains("closed"), "{err:#}");
    logged(&media, "RTMP protocol error")?;

    // Everyone else was served throughout, nothing panicked, memory stayed small.
    poll(Duration::from_secs(20), Duration::from_millis(200), || {
        last_seq(&edge, "good").filter(|&s| s >= before + 3)
    })
    .context("the good publisher's stream should keep advancing at the edge")?;
    let log = media.proc.log_text();
    ensure!(!log.contains("panicked"), "media panicked:\n{log}");
    let rss_after = rss_mib(media.proc.pid())?;
    eprintln!("media RSS: {rss_before} MiB before, {rss_after} MiB after the bad input");
    ensure!(
        rss_after < rss_before + 64,
        "media RSS grew from {rss_before} to {rss_after} MiB"
    );
    Ok(())
}

/// Timestamps for the publish of `rounds` copies of the fixture: `start` for the first tag, then each
/// round continuing where the previous ended, shifted by `shift[i]` ms (positive: a jump forward,
/// negative: a step back).
fn schedule(tags: &[FlvTag], start: u32, shifts: &[i64]) -> Vec<(FlvTag, u32)> {
    let span = tags.iter().map(|t| t.timestamp).max().unwrap_or(0) + 33;
    let mut out = Vec::new();
    let mut base = i64::from(start);
    for shift in shifts {
        base += shift;
        for t in tags {
            out.push((t.clone(), (base + i64::from(t.timestamp)) as u32));
        }
        base += i64::from(span);
    }
    out
}

/// Waits for the ended playlist, downloads its segments and returns (playlist, concatenated file).
fn fetch_ended(
    dir: &Path,
    edge: &Edge,
    stream: &str,
) -> Result<(MediaPlaylist, std::path::PathBuf)> {
    let pl = poll(Duration::from_secs(30), Duration::from_millis(200), || {
        edge.playlist(stream).map(|(_, p)| p).filter(|p| p.ended)
    })
    .with_context(|| format!("{stream}: the edge should end the playlist"))?;
    let all = dir.join(format!("{stream}-all.ts"));
    let mut bytes = Vec::new();
    for e in &pl.entries {
        let r = get(&edge.url(stream, &e.uri))?;
        ensure!(r.status == 200, "segment {} missing", e.uri);
        std::fs::write(dir.join(&e.uri), &r.body)?;
        bytes.extend(r.body);
    }
    std::fs::write(&all, bytes)?;
    Ok((pl, all))
}

/// (codec_type, dts, pts) of every packet, in file order, in seconds.
fn packets(file: &Path) -> Result<Vec<(String, f64, f64)>> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,dts_time,pts_time",
        ])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()?;
    ensure!(out.status.success(), "ffprobe failed");
    String::from_utf8(out.stdout)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            ensure!(f.len() >= 3, "bad ffprobe line {l}");
            Ok((f[0].to_owned(), f[2].parse()?, f[1].parse()?))
        })
        .collect()
}

#[test]
fn timestamps_that_wrap_jump_or_step_back_play_without_a_stall() -> Result<()> {
    let dir = e2e::work_dir("rtmp_timestamps");
    let broker = Broker::start(&dir, "live-topic", 1)?;
    let media = Media::start(&dir, "media", &broker, &[])?;
    let edge = Edge::start(&dir, "edge", &broker, &["--window-segments", "100"])?;
    let fixture = rtmp::fixture()?;
    // Starts 2.5 s before 2^32 ms (wraps in the first round), jumps 30 s forward, steps 40 ms back.
    let plan = schedule(&fixture, u32::MAX - 2_500, &[0, 30_000, -40]);
    let mut c = publisher(&media, "ts")?;
    for (tag, ts) in &plan {
        send_tag(&mut c, tag, *ts)?;
    }
    drop(c);
    let (pl, all) = fetch_ended(&dir, &edge, "ts")?;
    probe::decode_clean(&all)?;
    let pk = packets(&all)?;
    for kind in ["video", "audio"] {
        let dts: Vec<f64> = pk.iter().filter(|p| p.0 == kind).map(|p| p.1).collect();
        ensure!(dts.len() > 100, "{kind}: {} packets", dts.len());
        for w in dts.windows(2) {
            ensure!(w[1] >= w[0], "{kind} DTS goes back: {} then {}", w[0], w[1]);
            ensure!(w[1] - w[0] < 0.5, "{kind} stalls: {} then {}", w[0], w[1]);
        }
        let total = dts[dts.len() - 1] - dts[0];
        ensure!((16.0..19.0).contains(&total), "{kind} spans {total} s");
    }
    // Segment start PTS increase from segment to segment.
    let mut starts = Vec::new();
    for e in &pl.entries {
        let p = packets(&dir.join(&e.uri))?;
        starts.push(p.iter().map(|p| p.2).fold(f64::INFINITY, f64::min));
    }
    ensure!(
        starts.windows(2).all(|w| w[1] > w[0]),
        "segment PTS not monotonic: {starts:?}"
    );
    ensure!(
        pl.entries.iter().skip(1).all(|e| !e.discontinuity),
        "no discontinuity expected: {pl:?}"
    );
    Ok(())
}

/// Makes a clip like the fixture at another resolution (the resolution change).
fn clip_640x360(dir: &Path) -> Result<Vec<FlvTag>> {
    let path = dir.join("clip-640x360.flv");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-profile:v",
            "high",
            "-bf",
            "2",
            "-g",
            "30",
        ])
        .args([
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-f", "flv",
        ])
        .arg(&path)
        .status()?;
    ensure!(status.success(), "ffmpeg could not make the clip");
    rtmp::read_flv(&path)
}

#[test]
fn unusual_but_legal_chunking_and_a_resolution_change_play() -> Result<()> {
    let dir = e2e::work_dir("rtmp_unusual");
    let broker = Broker::start(&dir, "live-topic", 1)?;
    let media = Media::start(&dir, "media", &broker, &[])?;
    let edge = Edge::start(&dir, "edge", &broker, &["--window-segments", "100"])?;
    let first = rtmp::fixture()?;
    let second = clip_640x360(&dir)?;
    let offset = first.iter().map(|t| t.timestamp).max().unwrap_or(0) + 33;

    // Chunk size stays at the initial 128 until half-way through the first clip.
    let mut c = Client::handshake(media.rtmp)?;
    // A small acknowledgement window (section 5.4.4), so the server's acknowledgements can be checked.
    const WINDOW: u64 = 100_000;
    c.send(
        2,
        &media_msg(5, 0, 0, (WINDOW as u32).to_be_bytes().to_vec()),
    )?;
    c.connect("live")?;
    let code = c.start_publish("unusual")?;
    ensure!(code == "NetStream.Publish.Start", "{code}");
    let sid = c.stream_id;
    // Video on a 2-byte chunk stream id, audio on a 3-byte one that starts with a type 1 header.
    const VIDEO_CSID: u32 = 300;
    const AUDIO_CSID: u32 = 70_000;
    let mut audio_started = false;
    let tags: Vec<(FlvTag, u32)> = first
        .iter()
        .map(|t| (t.clone(), t.timestamp))
        .chain(second.iter().map(|t| (t.clone(), t.timestamp + offset)))
        .collect();
    let mut i = 0;
    while i < tags.len() {
        if i == tags.len() / 4 {
            c.set_chunk_size(4096)?;
        }
        if i == tags.len() / 2 {
            c.set_chunk_size(61)?;
        }
        let (tag, ts) = &tags[i];
        let m = media_msg(tag.type_id, *ts, sid, tag.data.clone());
        match tag.type_id {
            rtmp::AUDIO if !audio_started => {
                audio_started = true;
                c.send_type1(AUDIO_CSID, &m)?;
            }
            rtmp::AUDIO => c.send(AUDIO_CSID, &m)?,
            rtmp::VIDEO => {
                // A large video frame interleaved chunk by chunk with the next audio frame.
                match tags.get(i + 1) {
                    Some((next, nts)) if next.type_id == rtmp::AUDIO && audio_started => {
                        let a = media_msg(rtmp::AUDIO, *nts, sid, next.data.clone());
                        c.send_interleaved(&[(VIDEO_CSID, &m), (AUDIO_CSID, &a)])?;
                        i += 1;
                    }
                    _ => c.send(VIDEO_CSID, &m)?,
                }
            }
            _ => c.send(5, &m)?,
        }
        i += 1;
    }
    // Acknowledgements carry the running total of bytes received, one per window (section 5.4.3).
    let sent = c.sent;
    let mut acks = Vec::new();
    c.wait_for(|m| {
        if m.type_id == 3 {
            acks.push(u64::from(u32::from_be_bytes(
                m.data[..4].try_into().unwrap_or_default(),
            )));
        }
        acks.last().is_some_and(|&a| a + WINDOW > sent)
    })
    .with_context(|| format!("acknowledgements up to {sent} bytes; got {acks:?}"))?;
    ensure!(
        acks.len() as u64 == sent / WINDOW
            && acks.windows(2).all(|w| w[1] - w[0] >= WINDOW)
            && acks.iter().all(|&a| a <= sent),
        "{sent} bytes sent, acknowledged {acks:?}"
    );
    drop(c);

    let (pl, all) = fetch_ended(&dir, &edge, "unusual")?;
    probe::decode_clean(&all)?;
    let mut widths = Vec::new();
    for e in &pl.entries {
        let info = probe::probe(&dir.join(&e.uri))?;
        ensure!(
            info.codecs.contains(&"h264".to_string()) && info.codecs.contains(&"aac".to_string()),
            "{}: {:?}",
            e.uri,
            info.codecs
        );
        let w = info.json["streams"]
            .as_array()
            .and_then(|s| s.iter().find_map(|s| s["width"].as_u64()))
            .context("video width")?;
        widths.push(w);
    }
    let change = widths
        .iter()
        .position(|&w| w == 640)
        .context("the second resolution should reach the edge")?;
    ensure!(
        change > 0 && widths[..change].iter().all(|&w| w == 320),
        "{widths:?}"
    );
    ensure!(widths[change..].iter().all(|&w| w == 640), "{widths:?}");
    for (i, e) in pl.entries.iter().enumerate().skip(1) {
        ensure!(
            e.discontinuity == (i == change),
            "discontinuity only where the resolution changes: {widths:?} {pl:?}"
        );
    }
    let total: f64 = pl.entries.iter().map(|e| e.duration).sum();
    ensure!(
        (9.0..11.0).contains(&total),
        "durations add up to {total} s"
    );
    let log = media.proc.log_text();
    if log.contains("dropping") || log.contains("panicked") {
        bail!("media dropped or panicked on legal input:\n{log}");
    }
    Ok(())
}
