//! Audio-only and video-only publishers produce playable HLS too.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::{get, playlist, poll, probe, Broker, Edge, Media, Proc};

fn publish_tracks(
    dir: &std::path::Path,
    name: &str,
    url: &str,
    video: bool,
    audio: bool,
) -> Result<Proc> {
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "warning", "-re"]);
    if video {
        cmd.args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=7",
        ]);
    }
    if audio {
        cmd.args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=7",
        ]);
    }
    if video {
        cmd.args([
            "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-bf", "2", "-pix_fmt", "yuv420p",
        ]);
    }
    if audio {
        cmd.args(["-c:a", "aac", "-b:a", "96k"]);
    }
    cmd.args(["-f", "flv", url]);
    Proc::spawn(name, cmd, dir)
}

#[test]
fn audio_only_and_video_only_streams_play() -> Result<()> {
    let dir = e2e::work_dir("track_layouts");
    let broker = Broker::start(&dir, "live-topic", 2)?;
    let media = Media::start(&dir, "media", &broker, &[])?;
    let edge = Edge::start(&dir, "edge", &broker, &["--window-segments", "10"])?;
    for (stream, video, audio, codec) in [
        ("audio-only", false, true, "aac"),
        ("video-only", true, false, "h264"),
    ] {
        let mut ff = publish_tracks(&dir, stream, &media.publish_url(stream), video, audio)?;
        ensure!(
            ff.wait(Duration::from_secs(40))?.success(),
            "ffmpeg: {}",
            ff.log_text()
        );
        let pl = poll(Duration::from_secs(20), Duration::from_millis(100), || {
            let r = get(&edge.url(stream, "index.m3u8")).ok()?;
            let p = playlist::parse(std::str::from_utf8(&r.body).ok()?).ok()?;
            p.ended.then_some(p)
        })
        .with_context(|| format!("{stream}: playlist should end"))?;
        ensure!(
            pl.entries.len() >= 2,
            "{stream}: {} segments",
            pl.entries.len()
        );
        let total: f64 = pl.entries.iter().map(|e| e.duration).sum();
        ensure!(
            (total - 7.0).abs() <= 2.0,
            "{stream}: {total} s for 7 s published"
        );
        for e in &pl.entries {
            let r = get(&edge.url(stream, &e.uri))?;
            let file = dir.join(format!("{stream}-{}", e.uri));
            std::fs::write(&file, &r.body)?;
            probe::decode_clean(&file)?;
            let info = probe::probe(&file)?;
            ensure!(
                info.codecs == [codec],
                "{stream}: streams {:?}",
                info.codecs
            );
        }
    }
    Ok(())
}
