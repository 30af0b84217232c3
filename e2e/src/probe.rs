//! ffprobe/ffmpeg as the independent judge of what we produce.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Decodes `file` completely with `ffmpeg -xerror`; fails on any decode error.
pub fn decode_clean(file: &Path) -> Result<()> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .context("running ffmpeg")?;
    if !out.status.success() || !out.stderr.is_empty() {
        bail!(
            "ffmpeg -xerror on {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Stream codecs and container duration of a media file, per ffprobe.
pub struct ProbeInfo {
    pub codecs: Vec<String>,
    pub duration: f64,
    pub json: serde_json::Value,
}

/// Runs ffprobe on `file`.
pub fn probe(file: &Path) -> Result<ProbeInfo> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(file)
        .output()
        .context("running ffprobe")?;
    if !out.status.success() {
        bail!(
            "ffprobe {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let codecs = json["streams"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|s| s["codec_name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let duration = json["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0.0);
    Ok(ProbeInfo {
        codecs,
        duration,
        json,
    })
}

/// Counts video packets whose PTS differs from their DTS (B-frames survived the remux).
pub fn reordered_video_packets(file: &Path) -> Result<usize> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts,dts",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .context("running ffprobe")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter(|l| {
            let mut it = l.split(',');
            matches!((it.next(), it.next()), (Some(a), Some(b)) if a != b)
        })
        .count())
}
