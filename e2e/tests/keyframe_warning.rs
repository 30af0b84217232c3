//! A publisher whose keyframes are further apart than the segment target is told so: ffmpeg publishes
//! with OBS's automatic keyframe interval (250 frames at 30 fps, 8.3 s) to a media with 2 s segments,
//! and the warning naming the setting to change shows in media's log (once), in the control API's
//! stream listing and in the metrics.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::{get, poll, publish, Broker, Media, Publish};
use serde_json::Value;

const ADVICE: &str = "keyframe interval 8.3 s; set your encoder's keyframe interval to 2 s";

#[test]
fn a_long_keyframe_interval_is_reported_with_the_setting_to_change() -> Result<()> {
    let dir = e2e::work_dir("keyframe_warning");
    let broker = Broker::start(&dir, "live-topic", 1)?;
    let media = Media::start(&dir, "media", &broker, &["--segment-seconds", "2"])?;
    let _ffmpeg = publish(
        &dir,
        "ffmpeg",
        &media.publish_url("obs-default"),
        &Publish {
            gop_frames: 250,
            ..Publish::small(30)
        },
    )?;
    let api = format!("http://{}/api/streams", media.http);
    // The second keyframe comes 8.3 s after the first.
    let stream = poll(Duration::from_secs(30), Duration::from_millis(250), || {
        let v: Value = serde_json::from_slice(&get(&api).ok()?.body).ok()?;
        let s = v["streams"].as_array()?.first()?.clone();
        s["warnings"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
            .then_some(s)
    })
    .context("the stream listing should warn about the keyframe interval within 30 s")?;
    eprintln!("GET /api/streams: {stream}");
    ensure!(
        stream["warnings"] == serde_json::json!([ADVICE]),
        "{stream}"
    );
    let interval = stream["keyframe_interval_seconds"].as_f64().unwrap_or(0.0);
    ensure!((8.2..8.5).contains(&interval), "{stream}");

    let metrics = String::from_utf8(get(&format!("http://{}/metrics", media.http))?.body)?;
    ensure!(
        metrics.contains(
            "media_stream_keyframe_interval_over_target{segment_target_seconds=\"2\",stream=\"obs-default\"} 1\n"
        ),
        "{metrics}"
    );
    // A few seconds later (more keyframes), still one log line for the broadcast.
    std::thread::sleep(Duration::from_secs(9));
    let log = media.proc.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(ADVICE)).collect();
    ensure!(
        lines.len() == 1,
        "one log line per broadcast, got {lines:#?}"
    );
    eprintln!("media's log: {}", lines[0]);
    Ok(())
}
