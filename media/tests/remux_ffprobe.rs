//! Real-media check: the ffmpeg-made fixture (see tests/fixtures/README.md) is pushed tag by tag
//! through the Segmenter and the resulting segments are judged by ffprobe/ffmpeg, an independent
//! decoder. Skipped with a note when ffprobe is missing, unless REQUIRE_FFMPEG=1 (CI), then it fails.
#![allow(clippy::unwrap_used)]

mod support;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{read_flv, Tag};

use media::remux::{Segment, Segmenter, SegmenterConfig};
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/clip.flv");
const TOLERANCE_S: f64 = 0.1;

fn is_video_frame(t: &Tag) -> bool {
    t.video && t.body[1] == 1 && t.body[0] >> 4 != 5
}

fn is_audio_frame(t: &Tag) -> bool {
    !t.video && t.body[1] == 1
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ffprobe_json(args: &[&str], file: &Path) -> Value {
    let (ok, stdout, stderr) = run(Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(file));
    assert!(ok, "ffprobe failed on {}: {stderr}", file.display());
    assert!(
        stderr.trim().is_empty(),
        "ffprobe errors on {}: {stderr}",
        file.display()
    );
    serde_json::from_str(&stdout).unwrap()
}

fn assert_decodes_cleanly(file: &Path) {
    let (ok, _, stderr) = run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(file)
        .args(["-f", "null", "-"]));
    assert!(
        ok && stderr.trim().is_empty(),
        "{}: {stderr}",
        file.display()
    );
}

fn clip_duration_s(file: &Path) -> f64 {
    let v = ffprobe_json(&["-show_entries", "format=duration"], file);
    v["format"]["duration"].as_str().unwrap().parse().unwrap()
}

struct Outcome {
    dir: PathBuf,
    segments: Vec<Segment>,
}

impl Drop for Outcome {
    fn drop(&mut self) {
        // REMUX_KEEP_SEGMENTS=1 keeps the files for inspecting a failure by hand.
        if std::env::var_os("REMUX_KEEP_SEGMENTS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            let durations: Vec<u64> = self.segments.iter().map(|s| s.duration_ms).collect();
            eprintln!("kept {} (durations {durations:?} ms)", self.dir.display());
        }
    }
}

fn segment_to_dir(name: &str, tags: &[Tag], expected: (Option<bool>, Option<bool>)) -> Outcome {
    let mut s = Segmenter::new(SegmenterConfig {
        target_duration_ms: 2000,
        max_duration_ms: 6000,
    });
    s.set_expected_tracks(expected.0, expected.1);
    let mut segments = Vec::new();
    for t in tags {
        let r = if t.video {
            s.push_video(t.ts, t.body.clone())
        } else {
            s.push_audio(t.ts, t.body.clone())
        };
        segments.extend(r.unwrap());
    }
    segments.extend(s.finish());
    let dir = std::env::temp_dir().join(format!("remux_ffprobe_{}_{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut all = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        std::fs::write(dir.join(format!("seg{i}.ts")), &seg.data).unwrap();
        all.extend_from_slice(&seg.data);
    }
    std::fs::write(dir.join("all.ts"), all).unwrap();
    Outcome { dir, segments }
}

/// Checks shared by the three clips; returns the number of (video, audio) packets ffprobe saw.
fn check_segments(out: &Outcome, want_video: bool, want_audio: bool) -> (usize, usize) {
    assert!(
        out.segments.len() >= 2,
        "a 6 s clip with 2 s target gives several segments"
    );
    let mut packets = (0, 0);
    for (i, seg) in out.segments.iter().enumerate() {
        let path = out.dir.join(format!("seg{i}.ts"));
        assert_decodes_cleanly(&path);
        let v = ffprobe_json(&["-show_entries", "stream=codec_type,codec_name"], &path);
        let mut codecs: Vec<&str> = v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["codec_name"].as_str().unwrap())
            .collect();
        codecs.sort_unstable();
        let mut want = Vec::new();
        if want_audio {
            want.push("aac");
        }
        if want_video {
            want.push("h264");
        }
        assert_eq!(codecs, want, "segment {i}");
        assert!(!seg.discontinuity);

        let p = ffprobe_json(&["-show_entries", "packet=codec_type"], &path);
        for pk in p["packets"].as_array().unwrap() {
            match pk["codec_type"].as_str().unwrap() {
                "video" => packets.0 += 1,
                "audio" => packets.1 += 1,
                other => panic!("unexpected {other} packet"),
            }
        }
    }
    // Played back to back: the concatenation decodes without error too.
    assert_decodes_cleanly(&out.dir.join("all.ts"));
    packets
}

fn total_duration_s(segments: &[Segment]) -> f64 {
    segments.iter().map(|s| s.duration_ms).sum::<u64>() as f64 / 1000.0
}

#[test]
fn fixture_segments_decode_with_ffmpeg() {
    if !tools::available("the real-media remux test") {
        return;
    }
    let tags = read_flv(&std::fs::read(FIXTURE).unwrap());
    let video_aus = tags.iter().filter(|t| is_video_frame(t)).count();
    let audio_frames = tags.iter().filter(|t| is_audio_frame(t)).count();
    assert!(video_aus > 0 && audio_frames > 0);

    // Audio + video, as announced by onMetaData.
    let out = segment_to_dir("av", &tags, (Some(true), Some(true)));
    let (v, a) = check_segments(&out, true, true);
    assert_eq!(v, video_aus, "every access unit survives");
    assert_eq!(a, audio_frames, "every AAC frame survives");
    for seg in &out.segments {
        assert!(seg.starts_with_keyframe);
    }
    let clip = clip_duration_s(Path::new(FIXTURE));
    let total = total_duration_s(&out.segments);
    assert!(
        (total - clip).abs() <= TOLERANCE_S,
        "segments sum to {total} s, clip is {clip} s"
    );
    // B-frames survived: some video packets have PTS != DTS.
    let p = ffprobe_json(
        &[
            "-select_streams",
            "v",
            "-show_entries",
            "packet=pts,dts",
            "-show_packets",
        ],
        &out.dir.join("all.ts"),
    );
    let reordered = p["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pk| pk["pts"] != pk["dts"])
        .count();
    assert!(reordered > 0, "no B-frames in the output");
}

#[test]
fn fixture_audio_only_decodes_with_ffmpeg() {
    if !tools::available("the real-media remux test") {
        return;
    }
    // No onMetaData: the segmenter holds audio waiting for video, then goes audio-only.
    let tags: Vec<Tag> = read_flv(&std::fs::read(FIXTURE).unwrap())
        .into_iter()
        .filter(|t| !t.video)
        .collect();
    let frames: Vec<&Tag> = tags.iter().filter(|t| is_audio_frame(t)).collect();
    let out = segment_to_dir("audio", &tags, (None, None));
    let (v, a) = check_segments(&out, false, true);
    assert_eq!((v, a), (0, frames.len()));
    // Input span: first to last frame start, plus one AAC frame (1024 samples at the clip's rate).
    let first = f64::from(frames.first().unwrap().ts) / 1000.0;
    let last = f64::from(frames.last().unwrap().ts) / 1000.0;
    let span = last - first + 1024.0 / 48_000.0;
    let total = total_duration_s(&out.segments);
    assert!((total - span).abs() <= TOLERANCE_S, "{total} vs {span}");
}

#[test]
fn fixture_video_only_decodes_with_ffmpeg() {
    if !tools::available("the real-media remux test") {
        return;
    }
    let tags: Vec<Tag> = read_flv(&std::fs::read(FIXTURE).unwrap())
        .into_iter()
        .filter(|t| t.video)
        .collect();
    let frames: Vec<&Tag> = tags.iter().filter(|t| is_video_frame(t)).collect();
    let out = segment_to_dir("video", &tags, (None, None));
    let (v, a) = check_segments(&out, true, false);
    assert_eq!((v, a), (frames.len(), 0));
    let first = f64::from(frames.first().unwrap().ts) / 1000.0;
    let last = f64::from(frames.last().unwrap().ts) / 1000.0;
    let n = frames.len() as f64;
    let span = (last - first) * n / (n - 1.0); // plus one average frame interval
    let total = total_duration_s(&out.segments);
    assert!((total - span).abs() <= TOLERANCE_S, "{total} vs {span}");
}
