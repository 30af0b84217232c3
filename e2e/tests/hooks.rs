//! nginx-rtmp compatible hooks, RTMP playback and the control API, driven by real ffmpeg against a
//! recording stand-in manager (a real HTTP server on loopback).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::manager::{Answer, Manager};
use e2e::{get, playlist, poll, publish, Broker, Edge, Media, Proc, Publish};

/// Runs ffmpeg as an RTMP player for `seconds`, copying what it receives into `out`.
fn play(url: &str, out: &std::path::Path, seconds: u32) -> Result<std::process::Output> {
    Ok(Command::new("timeout")
        .arg("30")
        .args(["ffmpeg", "-hide_banner", "-v", "error", "-i", url, "-t"])
        .arg(seconds.to_string())
        .args(["-c", "copy", "-y"])
        .arg(out)
        .output()?)
}

/// Whether ffmpeg's publish was refused: it exits with an error within a few seconds.
fn refused(mut p: Proc) -> Result<bool> {
    Ok(!p.wait(Duration::from_secs(20))?.success())
}

fn hook_flags(m: &Manager) -> Vec<String> {
    [
        ("--on-publish", "on_publish"),
        ("--on-publish-done", "on_publish_done"),
        ("--on-play", "on_play"),
        ("--on-play-done", "on_play_done"),
    ]
    .iter()
    .flat_map(|(flag, path)| [flag.to_string(), m.url(path)])
    .collect()
}

#[test]
fn allow_rename_play_and_done_hooks() -> Result<()> {
    let dir = e2e::work_dir("hooks_allow");
    let manager = Manager::start(|call| match (call.path.as_str(), call.get("name")) {
        ("/on_publish", Some("secret-key")) => Answer::Rename("public-name".into()),
        _ => Answer::Status(200),
    });
    let broker = Broker::start(&dir, "live-topic", 2)?;
    let flags = hook_flags(&manager);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let media = Media::start(&dir, "media", &broker, &flags)?;
    let edge = Edge::start(&dir, "edge", &broker, &["--window-segments", "10"])?;

    // Allowed publish with a query argument, and an RTMP player while it is live.
    let mut publisher = publish(
        &dir,
        "pub-cam",
        &format!("{}?token=abc", media.publish_url("cam")),
        &Publish::small(9),
    )?;
    poll(Duration::from_secs(15), Duration::from_millis(200), || {
        (get(&edge.url("cam", "index.m3u8")).ok()?.status == 200).then_some(())
    })
    .context("allowed stream should reach the edge")?;
    let played = dir.join("played.flv");
    let out = play(
        &format!("{}?viewer=v1", media.publish_url("cam")),
        &played,
        3,
    )?;
    ensure!(
        out.status.success(),
        "RTMP play failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // GOP cache: the first video packet a new player receives is a keyframe.
    let first = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
            "-read_intervals",
            "%+#1",
        ])
        .arg(&played)
        .output()?;
    let flags_out = String::from_utf8_lossy(&first.stdout);
    ensure!(
        flags_out.trim_start().starts_with('K'),
        "first video packet flags `{flags_out}`"
    );
    let info = e2e::probe::probe(&played)?;
    ensure!(
        info.codecs == ["h264", "aac"],
        "played streams {:?}",
        info.codecs
    );
    ensure!(
        publisher.wait(Duration::from_secs(30))?.success(),
        "publisher failed"
    );

    let done = manager.wait_for("publish_done", 1, Duration::from_secs(10));
    let publishes = manager.calls_of("publish");
    ensure!(
        publishes.len() == 1 && done.len() == 1,
        "publish {publishes:?} done {done:?}"
    );
    let p = &publishes[0];
    ensure!(p.path == "/on_publish", "path {}", p.path);
    ensure!(
        p.content_type == "application/x-www-form-urlencoded",
        "content type {}",
        p.content_type
    );
    for (k, v) in [
        ("app", "live"),
        ("name", "cam"),
        ("type", "live"),
        ("addr", "127.0.0.1"),
        ("token", "abc"),
    ] {
        ensure!(
            p.get(k) == Some(v),
            "on_publish field {k}: {:?} in {:?}",
            p.get(k),
            p.form
        );
    }
    let tcurl = format!("rtmp://{}/live", media.rtmp);
    ensure!(
        p.get("tcurl") == Some(tcurl.as_str()),
        "tcurl {:?}",
        p.get("tcurl")
    );
    ensure!(
        p.get("flashver").is_some_and(|f| !f.is_empty()),
        "flashver missing"
    );
    ensure!(
        p.get("clientid").is_some_and(|c| c.parse::<u64>().is_ok()),
        "clientid"
    );
    ensure!(
        done[0].get("name") == Some("cam") && done[0].get("token") == Some("abc"),
        "done {:?}",
        done[0].form
    );
    let plays = manager.calls_of("play");
    let play_done = manager.wait_for("play_done", 1, Duration::from_secs(10));
    ensure!(
        plays.len() == 1 && play_done.len() == 1,
        "play {plays:?} play_done {play_done:?}"
    );
    for (k, v) in [("name", "cam"), ("viewer", "v1"), ("app", "live")] {
        ensure!(
            plays[0].get(k) == Some(v),
            "on_play field {k} in {:?}",
            plays[0].form
        );
    }

    // A 302 renames: viewers see only the public name, never the stream key.
    let mut secret = publish(
        &dir,
        "pub-secret",
        &media.publish_url("secret-key"),
        &Publish::small(6),
    )?;
    ensure!(
        secret.wait(Duration::from_secs(30))?.success(),
        "renamed publish failed"
    );
    let pl = poll(Duration::from_secs(15), Duration::from_millis(200), || {
        let r = get(&edge.url("public-name", "index.m3u8")).ok()?;
        let p = playlist::parse(std::str::from_utf8(&r.body).ok()?).ok()?;
        p.ended.then_some(p)
    })
    .context("renamed stream should be served under its new name")?;
    ensure!(!pl.entries.is_empty(), "renamed stream has segments");
    ensure!(
        get(&edge.url("secret-key", "index.m3u8"))?.status == 404,
        "the stream key must not be served"
    );
    let done = manager.wait_for("publish_done", 2, Duration::from_secs(10));
    ensure!(
        done.iter().any(|d| d.get("name") == Some("public-name")),
        "done-hook uses the new name: {done:?}"
    );

    // Exactly once: nothing more arrives later.
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        manager.calls_of("publish_done").len() == 2,
        "done-hooks fired more than once"
    );
    ensure!(
        manager.calls_of("play_done").len() == 1,
        "play_done fired more than once"
    );
    Ok(())
}

#[test]
fn deny_timeout_refused_duplicate_and_bad_names() -> Result<()> {
    let dir = e2e::work_dir("hooks_deny");
    let manager = Manager::start(|call| match call.get("name") {
        Some("denied") => Answer::Status(403),
        Some("slow") => Answer::Delay(Duration::from_secs(3)),
        _ => Answer::Status(200),
    });
    let broker = Broker::start(&dir, "live-topic", 1)?;
    let mut flags = hook_flags(&manager);
    flags.extend(["--hook-timeout-ms".into(), "500".into()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let media = Media::start(&dir, "media", &broker, &flags)?;

    ensure!(
        refused(publish(
            &dir,
            "denied",
            &media.publish_url("denied"),
            &Publish::small(5)
        )?)?,
        "403 must refuse"
    );
    ensure!(
        refused(publish(
            &dir,
            "slow",
            &media.publish_url("slow"),
            &Publish::small(5)
        )?)?,
        "a timeout must refuse"
    );

    // Names that could escape a path are refused before any hook is called.
    let before = manager.calls().len();
    for bad in ["..", "a%2Fb", "x%00y"] {
        let p = publish(&dir, "bad", &media.publish_url(bad), &Publish::small(3))?;
        ensure!(refused(p)?, "name `{bad}` must be refused");
    }
    ensure!(
        manager.calls().len() == before,
        "bad names reached the manager: {:?}",
        manager.calls()
    );

    // A second publisher on a live name is refused; the first one keeps going.
    let mut first = publish(&dir, "dup-1", &media.publish_url("dup"), &Publish::small(8))?;
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        refused(publish(
            &dir,
            "dup-2",
            &media.publish_url("dup"),
            &Publish::small(3)
        )?)?,
        "duplicate must be refused"
    );
    ensure!(
        first.wait(Duration::from_secs(30))?.success(),
        "the live publisher must be unaffected"
    );

    // Refused sessions were never accepted: no done-hook for them.
    let done = manager.wait_for("publish_done", 1, Duration::from_secs(10));
    let names: Vec<_> = done.iter().filter_map(|d| d.get("name")).collect();
    ensure!(
        names == ["dup"],
        "publish_done only for the accepted session, got {names:?}"
    );

    // A manager that refuses connections denies too.
    let port = e2e::free_port();
    let dead = format!("http://127.0.0.1:{port}/on_publish");
    let media2 = Media::start(&dir, "media-2", &broker, &["--on-publish", &dead])?;
    ensure!(
        refused(publish(
            &dir,
            "refused",
            &media2.publish_url("x"),
            &Publish::small(3)
        )?)?,
        "unreachable manager must refuse"
    );
    Ok(())
}

#[test]
fn update_kick_abrupt_drop_and_control_api() -> Result<()> {
    let dir = e2e::work_dir("hooks_update");
    let manager = Manager::start(|call| match (call.get("call"), call.get("name")) {
        (Some("update_publish"), Some("kickme")) => Answer::Status(403),
        _ => Answer::Status(200),
    });
    let broker = Broker::start(&dir, "live-topic", 1)?;
    let update = manager.url("on_update");
    let done = manager.url("on_publish_done");
    let media = Media::start(
        &dir,
        "media",
        &broker,
        &[
            "--on-update",
            &update,
            "--update-interval-seconds",
            "1",
            "--on-publish-done",
            &done,
            "--api-token",
            "tok",
        ],
    )?;

    // on_update answering 403 drops the publisher.
    let started = Instant::now();
    let p = publish(
        &dir,
        "kickme",
        &media.publish_url("kickme"),
        &Publish::small(30),
    )?;
    ensure!(refused(p)?, "on_update 403 should end the publish");
    ensure!(
        started.elapsed() < Duration::from_secs(15),
        "dropped after {:?}",
        started.elapsed()
    );
    ensure!(
        !manager
            .wait_for("update_publish", 1, Duration::from_secs(1))
            .is_empty(),
        "update called"
    );
    ensure!(
        manager
            .wait_for("publish_done", 1, Duration::from_secs(10))
            .len()
            == 1,
        "done after update kick"
    );

    // An abrupt drop (publisher killed, no unpublish) still fires the done-hook, once.
    let p = publish(
        &dir,
        "abrupt",
        &media.publish_url("abrupt"),
        &Publish::small(30),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    drop(p); // SIGKILL
    let done = manager.wait_for("publish_done", 2, Duration::from_secs(10));
    ensure!(
        done.iter()
            .filter(|d| d.get("name") == Some("abrupt"))
            .count()
            == 1,
        "abrupt drop: {done:?}"
    );

    // Control API: list (token required) and kick.
    let mut p = publish(
        &dir,
        "apikick",
        &media.publish_url("apikick"),
        &Publish::small(30),
    )?;
    let api = format!("http://{}/api/streams", media.http);
    let agent = ureq_agent();
    let listed = poll(Duration::from_secs(15), Duration::from_millis(300), || {
        let r = agent
            .get(&api)
            .set("Authorization", "Bearer tok")
            .call()
            .ok()?;
        let v: serde_json::Value = r.into_json().ok()?;
        let s = v["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "apikick")?
            .clone();
        (s["segments"].as_u64()? >= 1).then_some(s)
    })
    .context("the API should list the live stream")?;
    ensure!(
        listed["app"] == "live" && listed["client_addr"] == "127.0.0.1",
        "{listed}"
    );
    ensure!(
        listed["codecs"]
            .as_str()
            .is_some_and(|c| c.starts_with("avc1.")),
        "{listed}"
    );
    ensure!(
        listed["width"] == 320 && listed["height"] == 240,
        "{listed}"
    );
    ensure!(
        listed["ingest_bps"].as_u64().is_some_and(|b| b > 50_000),
        "{listed}"
    );
    let unauth = agent.get(&api).call();
    ensure!(
        matches!(unauth, Err(ureq::Error::Status(401, _))),
        "API without token must be 401"
    );
    let kicked = agent
        .delete(&format!("{api}/apikick"))
        .set("Authorization", "Bearer tok")
        .call()?;
    ensure!(kicked.status() == 204, "kick status {}", kicked.status());
    ensure!(
        !p.wait(Duration::from_secs(10))?.success(),
        "kicked publisher should be disconnected"
    );
    let done = manager.wait_for("publish_done", 3, Duration::from_secs(10));
    ensure!(
        done.iter()
            .filter(|d| d.get("name") == Some("apikick"))
            .count()
            == 1,
        "kick: {done:?}"
    );
    Ok(())
}

fn ureq_agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
}
