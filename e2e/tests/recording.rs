//! Recording (`--record all`): real ffmpeg publishes through media with the real broker; the recordings
//! on disk and over media's HTTP are judged by ffmpeg/ffprobe and the independent playlist parser, the
//! segments compared with what an edge serves, and `on_record_done` read by the stand-in manager.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::manager::{Answer, Manager};
use e2e::{get, playlist, poll, probe, publish, Broker, Edge, Media, Publish};

/// The one recording directory of `stream` under `root` (`root/stream/<start>/`).
fn recording_dir(root: &Path, stream: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join(stream))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    (dirs.len() == 1).then(|| dirs.remove(0))
}

fn metric(media: &Media, name: &str) -> Result<u64> {
    let body = get(&format!("http://{}/metrics", media.http))?.body;
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("metric {name} not in /metrics"))
}

#[test]
fn records_hls_and_flv_and_calls_on_record_done() -> Result<()> {
    let dir = e2e::work_dir("recording");
    let root = dir.join("rec");
    // The manager opts one stream out of recording with its `on_publish` answer.
    let manager = Manager::start(|call| match call.get("name") {
        Some("skip") if call.path == "/on_publish" => {
            Answer::WithHeaders(200, vec![("X-Record".into(), "off".into())])
        }
        _ => Answer::Status(200),
    });
    let broker = Broker::start(&dir, "live-topic", 1)?;
    let edge = Edge::start(&dir, "edge", &broker, &["--window-segments", "20"])?;
    let done_url = manager.url("on_record_done");
    let publish_url = manager.url("on_publish");
    let publish_done_url = manager.url("on_publish_done");
    let media = Media::start(
        &dir,
        "media",
        &broker,
        &[
            "--record",
            "all",
            "--record-format",
            "hls,flv",
            "--record-dir",
            root.to_str().context("utf8")?,
            "--on-record-done",
            &done_url,
            "--on-publish",
            &publish_url,
            "--on-publish-done",
            &publish_done_url,
        ],
    )?;
    let mut skipped = publish(
        &dir,
        "publisher-skip",
        &media.publish_url("skip"),
        &Publish::small(4),
    )?;
    let published = 10.0;
    let mut ffmpeg = publish(
        &dir,
        "publisher",
        &format!("{}?token=abc", media.publish_url("cam")),
        &Publish::small(published as u32),
    )?;
    ensure!(
        ffmpeg.wait(Duration::from_secs(40))?.success(),
        "ffmpeg failed"
    );
    ensure!(
        skipped.wait(Duration::from_secs(10))?.success(),
        "ffmpeg (skip) failed"
    );

    let calls = manager.wait_for("record_done", 2, Duration::from_secs(20));
    ensure!(calls.len() == 2, "on_record_done calls: {calls:?}");
    let rec = recording_dir(&root, "cam").context("one recording directory")?;
    let playlist_path = rec.join("index.m3u8");
    let flv_path = rec.join("cam.flv");
    for (call, recorder, path) in [
        (&calls[0], "hls", &playlist_path),
        (&calls[1], "flv", &flv_path),
    ] {
        let call = if call.get("recorder") == Some(recorder) {
            call
        } else {
            calls
                .iter()
                .find(|c| c.get("recorder") == Some(recorder))
                .context("recorder")?
        };
        let keys: Vec<&str> = call.form.iter().map(|(k, _)| k.as_str()).collect();
        ensure!(
            keys == [
                "app", "flashver", "swfurl", "tcurl", "pageurl", "addr", "clientid", "call",
                "recorder", "name", "path", "token"
            ],
            "record_done fields {keys:?}"
        );
        ensure!(call.path == "/on_record_done");
        ensure!(call.get("call") == Some("record_done"));
        ensure!(call.get("app") == Some("live"));
        ensure!(call.get("name") == Some("cam"));
        ensure!(call.get("token") == Some("abc"));
        ensure!(
            call.get("path") == path.to_str(),
            "path {:?}, expected {}",
            call.get("path"),
            path.display()
        );
    }

    // The VOD playlist: finished, of the same segments the edge served, playing end to end.
    let text = std::fs::read_to_string(&playlist_path)?;
    ensure!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{text}");
    let vod = playlist::parse(&text)?;
    ensure!(vod.ended, "no ENDLIST: {text}");
    let total: f64 = vod.entries.iter().map(|e| e.duration).sum();
    let target = vod.target_duration as f64;
    ensure!(
        (total - published).abs() <= target,
        "recorded {total:.3} s of a {published} s broadcast (target {target} s)"
    );
    probe::decode_clean(&playlist_path)?;
    let vod_probe = probe::probe(&playlist_path)?;
    ensure!(
        (vod_probe.duration - published).abs() <= target,
        "ffprobe says the VOD lasts {:.3} s",
        vod_probe.duration
    );
    let live = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        let r = get(&edge.url("cam", "index.m3u8")).ok()?;
        let pl = playlist::parse(&String::from_utf8_lossy(&r.body)).ok()?;
        pl.ended.then_some(pl)
    })
    .context("edge playlist ended")?;
    ensure!(
        live.entries.len() == vod.entries.len(),
        "edge has {} segments, recording {}",
        live.entries.len(),
        vod.entries.len()
    );
    for (l, v) in live.entries.iter().zip(&vod.entries) {
        let served = get(&edge.url("cam", &l.uri))?.body;
        let recorded = std::fs::read(rec.join(&v.uri))?;
        ensure!(
            served == recorded,
            "segment {} differs from edge's {}",
            v.uri,
            l.uri
        );
    }

    // The FLV: opens in ffprobe with both tracks and the published duration, decodes cleanly.
    let info = probe::probe(&flv_path)?;
    ensure!(info.codecs == ["h264", "aac"], "codecs {:?}", info.codecs);
    ensure!(
        (info.duration - published).abs() <= 0.5,
        "ffprobe says the FLV lasts {:.3} s",
        info.duration
    );
    probe::decode_clean(&flv_path)?;
    let head = std::fs::read(&flv_path)?;
    ensure!(
        head.starts_with(b"FLV\x01\x05\0\0\0\x09\0\0\0\0"),
        "FLV header"
    );

    // Listed and served by media's HTTP; the VOD plays from there too.
    let base = format!("http://{}", media.http);
    let list: serde_json::Value =
        serde_json::from_slice(&get(&format!("{base}/recordings/cam"))?.body)?;
    let r = &list["recordings"][0];
    ensure!(
        list["recordings"].as_array().map(Vec::len) == Some(1),
        "{list}"
    );
    ensure!(
        r["complete"] == true && r["segments"] == vod.entries.len(),
        "{list}"
    );
    let start = rec.file_name().and_then(|n| n.to_str()).context("name")?;
    ensure!(r["start"] == start, "{list}");
    let playlist_url = format!("{base}{}", r["playlist"].as_str().context("playlist")?);
    let resp = get(&playlist_url)?;
    ensure!(resp.status == 200 && resp.content_type == "application/vnd.apple.mpegurl");
    ensure!(resp.body == text.as_bytes());
    let seg = get(&format!("{base}/recordings/cam/{start}/0.ts"))?;
    ensure!(seg.content_type == "video/mp2t" && seg.body == std::fs::read(rec.join("0.ts"))?);
    let flv = get(&format!("{base}{}", r["flv"].as_str().context("flv")?))?;
    ensure!(flv.content_type == "video/x-flv" && flv.body == head);
    probe::decode_clean(Path::new(&playlist_url))?;
    // Independent readers accept the VOD playlist media serves, and the ended live one the edge serves.
    e2e::browser::validate_playlists(&[playlist_url.clone(), edge.url("cam", "index.m3u8")])?;

    ensure!(metric(&media, "media_recordings_finished_total")? == 2);
    ensure!(metric(&media, "media_recordings_failed_total")? == 0);
    ensure!(manager.calls_of("publish_done").len() == 2);
    ensure!(!root.join("skip").exists(), "X-Record: off was not obeyed");
    ensure!(manager.calls_of("record_done").len() == 2);
    eprintln!(
        "recorded {} segments, {total:.3} s (ffprobe {:.3} s); FLV {:.3} s, {} bytes",
        vod.entries.len(),
        vod_probe.duration,
        info.duration,
        head.len()
    );
    Ok(())
}

#[test]
fn sigkill_mid_broadcast_leaves_a_playable_recording() -> Result<()> {
    let dir = e2e::work_dir("recording_kill");
    let root = dir.join("rec");
    // No `--record all`: the manager opts this broadcast in with its `on_publish` answer.
    let manager =
        Manager::start(|_| Answer::WithHeaders(200, vec![("x-record".into(), "on".into())]));
    let on_publish = manager.url("on_publish");
    let on_record_done = manager.url("on_record_done");
    let broker = Broker::start(&dir, "live-topic", 1)?;
    let flags = [
        "--record-format",
        "hls,flv",
        "--record-dir",
        root.to_str().context("utf8")?,
        "--on-publish",
        &on_publish,
        "--on-record-done",
        &on_record_done,
    ];
    let media = Media::start(&dir, "media", &broker, &flags)?;
    let _ffmpeg = publish(
        &dir,
        "publisher",
        &media.publish_url("cam"),
        &Publish::small(30),
    )?;
    let rec = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let rec = recording_dir(&root, "cam")?;
        let text = std::fs::read_to_string(rec.join("index.m3u8")).ok()?;
        (playlist::parse(&text).ok()?.entries.len() >= 3).then_some(rec)
    })
    .context("three segments recorded")?;
    // Mid-segment, so a segment is open when the process dies.
    std::thread::sleep(Duration::from_millis(900));
    let status = Command::new("kill")
        .args(["-KILL", &media.proc.pid().to_string()])
        .status()?;
    ensure!(status.success(), "kill -KILL");
    std::thread::sleep(Duration::from_millis(300));
    let before = playlist::parse(&std::fs::read_to_string(rec.join("index.m3u8"))?)?;
    ensure!(!before.ended, "a killed recording cannot have ENDLIST yet");

    // A new media on the same directory finishes it before accepting publishers.
    let media2 = Media::start(&dir, "media2", &broker, &flags)?;
    let text = std::fs::read_to_string(rec.join("index.m3u8"))?;
    let after = playlist::parse(&text)?;
    ensure!(
        after.ended && text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"),
        "{text}"
    );
    ensure!(
        after.entries == before.entries,
        "recovery changed the segments: {:?} -> {:?}",
        before.entries,
        after.entries
    );
    let total: f64 = after.entries.iter().map(|e| e.duration).sum();
    probe::decode_clean(&rec.join("index.m3u8"))?;
    let vod = probe::probe(&rec.join("index.m3u8"))?;
    ensure!(
        (vod.duration - total).abs() <= 0.5,
        "recovered VOD plays {:.3} s, lists {total:.3} s",
        vod.duration
    );
    let ts_files = std::fs::read_dir(&rec)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ts"))
        .count();
    ensure!(
        ts_files == after.entries.len(),
        "{ts_files} .ts files, {} listed",
        after.entries.len()
    );
    // The FLV holds at least everything up to the last closed segment (synced at each segment).
    let flv = probe::probe(&rec.join("cam.flv"))?;
    ensure!(flv.codecs == ["h264", "aac"], "codecs {:?}", flv.codecs);
    ensure!(
        flv.duration >= total - 0.5,
        "FLV after SIGKILL lasts {:.3} s, HLS {total:.3} s",
        flv.duration
    );
    ensure!(metric(&media2, "media_recordings_recovered_total")? == 1);
    eprintln!(
        "after SIGKILL: {} segments {total:.3} s recovered (ffprobe {:.3} s), FLV {:.3} s",
        after.entries.len(),
        vod.duration,
        flv.duration
    );

    // SIGTERM mid-broadcast: media finishes the recording and delivers on_record_done before exiting.
    // (None was sent for the recovered recording: its session died with the first process.)
    let mut media2 = media2;
    let _ffmpeg2 = publish(
        &dir,
        "publisher2",
        &media2.publish_url("cam2"),
        &Publish::small(30),
    )?;
    let rec2 = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let rec = recording_dir(&root, "cam2")?;
        let text = std::fs::read_to_string(rec.join("index.m3u8")).ok()?;
        (playlist::parse(&text).ok()?.entries.len() >= 2).then_some(rec)
    })
    .context("two segments recorded")?;
    ensure!(
        media2.proc.terminate(Duration::from_secs(30))?,
        "media exited with an error"
    );
    let calls = manager.calls_of("record_done");
    let mut recorders: Vec<_> = calls.iter().filter_map(|c| c.get("recorder")).collect();
    recorders.sort();
    ensure!(
        recorders == ["flv", "hls"],
        "record_done calls at SIGTERM: {calls:?}"
    );
    ensure!(
        calls.iter().all(|c| c.get("name") == Some("cam2")),
        "{calls:?}"
    );
    let text = std::fs::read_to_string(rec2.join("index.m3u8"))?;
    ensure!(playlist::parse(&text)?.ended, "{text}");
    probe::decode_clean(&rec2.join("index.m3u8"))?;
    Ok(())
}

#[test]
fn an_unwritable_record_dir_leaves_the_live_stream_intact() -> Result<()> {
    let dir = e2e::work_dir("recording_unwritable");
    // Tests run as root, which chmod does not stop: a path under a regular file fails with ENOTDIR.
    let file = dir.join("not-a-directory");
    std::fs::write(&file, b"x")?;
    let root = file.join("rec");
    let manager = Manager::start(|_| Answer::Status(200));
    let broker = Broker::start(&dir, "live-topic", 1)?;
    let edge = Edge::start(&dir, "edge", &broker, &["--window-segments", "20"])?;
    let done_url = manager.url("on_record_done");
    let publish_done_url = manager.url("on_publish_done");
    let media = Media::start(
        &dir,
        "media",
        &broker,
        &[
            "--record",
            "all",
            "--record-format",
            "hls,flv",
            "--record-dir",
            root.to_str().context("utf8")?,
            "--on-record-done",
            &done_url,
            "--on-publish-done",
            &publish_done_url,
        ],
    )?;
    let mut ffmpeg = publish(
        &dir,
        "publisher",
        &media.publish_url("cam"),
        &Publish::small(8),
    )?;
    ensure!(
        ffmpeg.wait(Duration::from_secs(40))?.success(),
        "ffmpeg failed: the publisher was hurt"
    );
    let live = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        let r = get(&edge.url("cam", "index.m3u8")).ok()?;
        let pl = playlist::parse(&String::from_utf8_lossy(&r.body)).ok()?;
        pl.ended.then_some(pl)
    })
    .context("edge playlist ended")?;
    let total: f64 = live.entries.iter().map(|e| e.duration).sum();
    ensure!(
        (total - 8.0).abs() <= live.target_duration as f64,
        "live stream lasted {total:.3} s"
    );
    let mut joined = Vec::new();
    for e in &live.entries {
        joined.extend(get(&edge.url("cam", &e.uri))?.body);
    }
    let joined_path = dir.join("live.ts");
    std::fs::write(&joined_path, joined)?;
    probe::decode_clean(&joined_path)?;

    ensure!(!manager
        .wait_for("publish_done", 1, Duration::from_secs(10))
        .is_empty());
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        manager.calls_of("record_done").is_empty(),
        "on_record_done called for a failed recording"
    );
    ensure!(metric(&media, "media_recordings_failed_total")? == 2);
    ensure!(metric(&media, "media_recording_write_errors_total")? >= 1);
    ensure!(metric(&media, "media_recordings_finished_total")? == 0);
    let log = media.proc.log_text();
    ensure!(
        log.contains("recording not started: cannot create its directory"),
        "error not logged"
    );
    Ok(())
}
