//! Manager compatibility, checked against the system this project replaces: Debian's nginx-rtmp and
//! `media` notify the same recording manager while ffmpeg publishes and plays the same stream on each; the
//! requests must carry the same fields, in the same order, with the same values where they are not
//! per-connection (client id, flash version, port).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::manager::{Answer, HookCall, Manager};
use e2e::{publish, wait_for_port, Broker, Media, Proc, Publish};

const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

fn start_nginx(dir: &std::path::Path, port: u16, manager: &Manager) -> Result<Proc> {
    ensure!(
        std::path::Path::new(RTMP_MODULE).exists(),
        "nginx-rtmp not installed ({RTMP_MODULE}); run scripts/install-deps.sh"
    );
    let conf = dir.join("nginx.conf");
    let hook = |p: &str| manager.url(&format!("nginx/{p}"));
    std::fs::write(
        &conf,
        format!(
            "load_module {RTMP_MODULE};\ndaemon off;\nmaster_process off;\nerror_log {dir}/nginx-error.log info;\n\
             pid {dir}/nginx.pid;\nevents {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; notify_update_timeout 1s;\n\
             application live {{ live on; on_publish {}; on_publish_done {}; on_play {}; on_play_done {}; on_update {};\n\
             record all; record_path {dir}/nginx-rec; on_record_done {}; }} }} }}\n",
            hook("on_publish"),
            hook("on_publish_done"),
            hook("on_play"),
            hook("on_play_done"),
            hook("on_update"),
            hook("on_record_done"),
            dir = dir.display(),
        ),
    )?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-p").arg(dir).arg("-c").arg(&conf);
    std::fs::create_dir_all(dir.join("nginx-rec"))?;
    let p = Proc::spawn("nginx", cmd, dir)?;
    wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10))?;
    Ok(p)
}

/// Publishes `cam?token=abc` for 5 s and plays it with `?viewer=v1` for 2 s meanwhile.
fn exercise(dir: &std::path::Path, tag: &str, base: &str) -> Result<()> {
    let p = Publish {
        seconds: 5,
        width: 320,
        height: 240,
        video_kbps: 300,
        gop_frames: 25,
    };
    let mut publisher = publish(
        dir,
        &format!("pub-{tag}"),
        &format!("{base}/cam?token=abc"),
        &p,
    )?;
    std::thread::sleep(Duration::from_millis(2500));
    let out = Command::new("timeout")
        .args(["20", "ffmpeg", "-v", "error", "-i"])
        .arg(format!("{base}/cam?viewer=v1"))
        .args(["-t", "1.5", "-f", "null", "-"])
        .output()?;
    ensure!(
        out.status.success(),
        "{tag} play: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        publisher.wait(Duration::from_secs(30))?.success(),
        "{tag} publish failed"
    );
    std::thread::sleep(Duration::from_secs(2));
    Ok(())
}

/// First request of each `call`, keyed by call.
fn first_of_each(calls: &[HookCall], prefix: &str) -> BTreeMap<String, HookCall> {
    let mut out = BTreeMap::new();
    for c in calls.iter().filter(|c| c.path.starts_with(prefix)) {
        if let Some(call) = c.get("call") {
            out.entry(call.to_owned()).or_insert_with(|| c.clone());
        }
    }
    out
}

#[test]
fn hook_requests_match_nginx_rtmp() -> Result<()> {
    let dir = e2e::work_dir("nginx_compat");
    let manager = Manager::start(|_| Answer::Status(200));

    let nginx_port = e2e::free_port();
    let nginx = start_nginx(&dir, nginx_port, &manager)?;
    exercise(
        &dir,
        "nginx",
        &format!("rtmp://127.0.0.1:{nginx_port}/live"),
    )?;
    drop(nginx);

    let broker = Broker::start(&dir, "live-topic", 1)?;
    let flags: Vec<String> = [
        ("--on-publish", "on_publish"),
        ("--on-publish-done", "on_publish_done"),
        ("--on-play", "on_play"),
        ("--on-play-done", "on_play_done"),
        ("--on-update", "on_update"),
        ("--on-record-done", "on_record_done"),
    ]
    .iter()
    .flat_map(|(f, p)| [f.to_string(), manager.url(&format!("ours/{p}"))])
    .chain(["--update-interval-seconds".into(), "1".into()])
    .chain(["--record", "all", "--record-format", "flv", "--record-dir"].map(String::from))
    .chain([dir.join("ours-rec").display().to_string()])
    .collect();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let media = Media::start(&dir, "media", &broker, &flags)?;
    exercise(&dir, "ours", &format!("rtmp://{}/live", media.rtmp))?;

    let calls = manager.calls();
    let theirs = first_of_each(&calls, "/nginx/");
    let ours = first_of_each(&calls, "/ours/");
    let kinds: Vec<_> = theirs.keys().collect();
    eprintln!("nginx-rtmp sent calls {kinds:?}");
    ensure!(
        theirs.keys().eq(ours.keys()),
        "calls differ: nginx-rtmp {:?}, media {:?}",
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    for (call, t) in &theirs {
        let o = &ours[call];
        let tk: Vec<_> = t.form.iter().map(|(k, _)| k.as_str()).collect();
        let ok: Vec<_> = o.form.iter().map(|(k, _)| k.as_str()).collect();
        ensure!(
            tk == ok,
            "{call}: nginx-rtmp fields {tk:?}, media fields {ok:?}"
        );
        ensure!(
            t.path.rsplit('/').next() == o.path.rsplit('/').next(),
            "{call}: hook {} vs {}",
            t.path,
            o.path
        );
        ensure!(
            t.content_type == o.content_type,
            "{call}: content type {} vs {}",
            t.content_type,
            o.content_type
        );
        for (k, v) in &t.form {
            if matches!(
                k.as_str(),
                // `recorder`: nginx-rtmp's default recorder has no name, ours names the format;
                // `path`: each server's own directory.
                "clientid" | "flashver" | "tcurl" | "time" | "timestamp" | "recorder" | "path"
            ) {
                continue;
            }
            ensure!(
                o.get(k) == Some(v.as_str()),
                "{call}: field {k} is {v:?} at nginx-rtmp, {:?} at media",
                o.get(k)
            );
        }
    }
    for call in [
        "publish",
        "play",
        "publish_done",
        "play_done",
        "update_publish",
        "update_play",
        "record_done",
    ] {
        ensure!(
            theirs.contains_key(call),
            "scenario should exercise `{call}` (got {kinds:?})"
        );
    }
    // Both FLV recordings of the same publish open alike in ffprobe.
    let their_flv = theirs["record_done"].get("path").context("path")?;
    let our_flv = ours["record_done"].get("path").context("path")?;
    ensure!(ours["record_done"].get("recorder") == Some("flv"));
    let (t, o) = (
        e2e::probe::probe(std::path::Path::new(their_flv))?,
        e2e::probe::probe(std::path::Path::new(our_flv))?,
    );
    ensure!(
        t.codecs == o.codecs,
        "codecs {:?} vs {:?}",
        t.codecs,
        o.codecs
    );
    ensure!(
        (t.duration - o.duration).abs() <= 0.1,
        "FLV durations: nginx-rtmp {:.3} s, media {:.3} s",
        t.duration,
        o.duration
    );
    eprintln!(
        "FLV recordings: nginx-rtmp {:.3} s, media {:.3} s",
        t.duration, o.duration
    );
    let tcurl = ours["publish"].get("tcurl").context("tcurl")?;
    ensure!(
        tcurl == format!("rtmp://{}/live", media.rtmp),
        "tcurl {tcurl}"
    );
    Ok(())
}
