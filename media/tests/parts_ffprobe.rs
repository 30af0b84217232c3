//! The low-latency rendition on real media: the ffmpeg-made fixture (tests/fixtures/README.md) goes
//! through a Segmenter with partial segments enabled, and ffprobe/ffmpeg judge the fMP4 it makes: the
//! init segment plus every part decodes without error, holds every frame the TS rendition holds, and
//! each segment's parts add up to that segment. Skipped with a note without ffprobe, unless
//! REQUIRE_FFMPEG=1 (CI).
#![allow(clippy::unwrap_used)]

mod support;
mod tools;

use std::path::Path;
use std::process::Command;

use media::remux::{Part, Segment, Segmenter, SegmenterConfig};
use serde_json::Value;
use support::{read_flv, Tag};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clip.flv");
const PART_TARGET_MS: u64 = 334;

/// Segments and, per segment, its parts.
fn remux(tags: &[Tag], expected: (Option<bool>, Option<bool>)) -> Vec<(Segment, Vec<Part>)> {
    let mut s = Segmenter::new(SegmenterConfig {
        target_duration_ms: 2000,
        max_duration_ms: 6000,
    });
    s.set_expected_tracks(expected.0, expected.1);
    s.enable_parts(PART_TARGET_MS);
    let mut out = Vec::new();
    let mut open: Vec<Part> = Vec::new();
    let mut take = |s: &mut Segmenter, seg: Option<Segment>| {
        open.extend(s.take_parts());
        if let Some(seg) = seg {
            out.push((seg, std::mem::take(&mut open)));
        }
    };
    for t in tags {
        let seg = if t.video {
            s.push_video(t.ts, t.body.clone())
        } else {
            s.push_audio(t.ts, t.body.clone())
        }
        .unwrap();
        take(&mut s, seg);
    }
    let last = s.finish();
    take(&mut s, last);
    out
}

fn packets(file: &Path) -> (usize, usize) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_entries",
            "packet=codec_type",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffprobe {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut n = (0, 0);
    for p in v["packets"].as_array().unwrap() {
        match p["codec_type"].as_str().unwrap() {
            "video" => n.0 += 1,
            "audio" => n.1 += 1,
            other => panic!("unexpected {other} packet"),
        }
    }
    n
}

fn decodes_cleanly(file: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg -xerror {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check(name: &str, tags: &[Tag], expected: (Option<bool>, Option<bool>)) {
    let segments = remux(tags, expected);
    assert!(segments.len() >= 2, "{name}: several segments");
    let dir = std::env::temp_dir().join(format!("parts_ffprobe_{}_{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let init = segments[0].1[0]
        .init
        .clone()
        .expect("first part carries the init");
    let mut all = init.to_vec();
    let mut all_ts = Vec::new();
    for (i, (seg, parts)) in segments.iter().enumerate() {
        assert!(!parts.is_empty(), "{name}: segment {i} has parts");
        let sum: u64 = parts.iter().map(|p| p.duration_ms).sum();
        if i + 1 < segments.len() {
            assert_eq!(sum, seg.duration_ms, "{name}: parts of segment {i} add up");
        } else {
            // The stream's last segment ends at an estimate: for TS where either track's last
            // frame ends, for the parts where the video ends (so no part outgrows the target).
            assert!(
                sum <= seg.duration_ms && sum + 200 >= seg.duration_ms,
                "{name}: {sum}"
            );
        }
        for (k, p) in parts.iter().enumerate() {
            assert_eq!(p.index as usize, k, "{name}: numbering in segment {i}");
            assert_eq!(p.last, k + 1 == parts.len(), "{name}: last flag");
            assert_eq!(p.init.is_some(), i == 0 && k == 0, "{name}: one init");
            // RFC 8216bis 4.4.4.9: no part is longer than the target, and every part but a
            // segment's last lasts >= 85% of it.
            assert!(
                p.duration_ms <= PART_TARGET_MS,
                "{name}: part {k} of segment {i} lasts {} ms",
                p.duration_ms
            );
            if !p.last {
                assert!(
                    p.duration_ms * 100 >= PART_TARGET_MS * 85,
                    "{name}: part {k} of segment {i} lasts {} ms",
                    p.duration_ms
                );
            }
        }
        assert!(
            parts[0].independent,
            "{name}: segment {i} starts independent"
        );
        // A segment alone (init + its parts) is decodable, and holds what its TS twin holds.
        let mut one = init.to_vec();
        for p in parts {
            one.extend_from_slice(&p.data);
            all.extend_from_slice(&p.data);
        }
        let path = dir.join(format!("seg{i}.mp4"));
        std::fs::write(&path, one).unwrap();
        decodes_cleanly(&path);
        let ts = dir.join(format!("seg{i}.ts"));
        std::fs::write(&ts, &seg.data).unwrap();
        assert_eq!(packets(&path), packets(&ts), "{name}: segment {i}");
        all_ts.extend_from_slice(&seg.data);
    }
    let path = dir.join("all.mp4");
    std::fs::write(&path, all).unwrap();
    decodes_cleanly(&path);
    let ts = dir.join("all.ts");
    std::fs::write(&ts, all_ts).unwrap();
    assert_eq!(packets(&path), packets(&ts), "{name}: whole clip");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fixture_parts_decode_with_ffmpeg() {
    if !tools::available("the fMP4 parts test") {
        return;
    }
    let tags = read_flv(&std::fs::read(FIXTURE).unwrap());
    check("av", &tags, (Some(true), Some(true)));
    let audio: Vec<Tag> = tags.iter().filter(|t| !t.video).cloned().collect();
    check("audio", &audio, (None, None));
    let video: Vec<Tag> = tags.iter().filter(|t| t.video).cloned().collect();
    check("video", &video, (None, None));
}
