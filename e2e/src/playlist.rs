//! A strict reader of HLS media playlists (RFC 8216 section 4), independent of the edge's own renderer,
//! so tests check what we serve against the spec rather than against our own code.

use anyhow::{bail, Context, Result};

/// One media segment line and the tags before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Media sequence number (EXT-X-MEDIA-SEQUENCE + position).
    pub seq: u64,
    /// `#EXTINF` duration, seconds.
    pub duration: f64,
    /// The URI line.
    pub uri: String,
    /// Whether `#EXT-X-DISCONTINUITY` preceded it.
    pub discontinuity: bool,
}

/// A parsed media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    pub target_duration: u64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub entries: Vec<Entry>,
    pub ended: bool,
}

/// Parses and validates a media playlist: rejects what RFC 8216 forbids for live playlists.
pub fn parse(text: &str) -> Result<MediaPlaylist> {
    let mut lines = text.lines();
    if lines.next() != Some("#EXTM3U") {
        bail!("playlist must start with #EXTM3U");
    }
    let mut target = None;
    let mut media_sequence = 0;
    let mut disc_seq = 0;
    let mut entries = Vec::new();
    let mut pending_duration: Option<f64> = None;
    let mut pending_disc = false;
    let mut ended = false;
    for line in lines {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if ended {
            bail!("content after #EXT-X-ENDLIST: {line}");
        }
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            target = Some(
                v.parse::<u64>()
                    .context("TARGETDURATION is a decimal integer")?,
            );
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            if !entries.is_empty() {
                bail!("EXT-X-MEDIA-SEQUENCE after the first segment");
            }
            media_sequence = v.parse().context("MEDIA-SEQUENCE is a decimal integer")?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            disc_seq = v
                .parse()
                .context("DISCONTINUITY-SEQUENCE is a decimal integer")?;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            let d = v.split(',').next().unwrap_or_default();
            let d: f64 = d
                .parse()
                .with_context(|| format!("EXTINF duration `{d}`"))?;
            if d.is_nan() || d <= 0.0 {
                bail!("EXTINF duration must be positive: {d}");
            }
            pending_duration = Some(d);
        } else if line == "#EXT-X-DISCONTINUITY" {
            pending_disc = true;
        } else if line == "#EXT-X-ENDLIST" {
            ended = true;
        } else if line.starts_with("#EXT-X-VERSION:")
            || line.starts_with("#EXT-X-INDEPENDENT")
            || line.starts_with("#EXT-X-PLAYLIST-TYPE:")
            || line.starts_with("#EXT-X-PROGRAM-DATE-TIME:")
        {
        } else if line.starts_with('#') {
            if line.starts_with("#EXT") {
                bail!("unexpected tag {line}");
            }
        } else {
            let duration = pending_duration
                .take()
                .with_context(|| format!("segment {line} without #EXTINF"))?;
            entries.push(Entry {
                seq: media_sequence + entries.len() as u64,
                duration,
                uri: line.to_owned(),
                discontinuity: std::mem::take(&mut pending_disc),
            });
        }
    }
    let target_duration = target.context("EXT-X-TARGETDURATION is required")?;
    for e in &entries {
        // RFC 8216 4.3.3.1: EXTINF rounded to the nearest integer <= target duration.
        if e.duration.round() as u64 > target_duration {
            bail!(
                "segment {} lasts {} s, above the target duration {target_duration}",
                e.uri,
                e.duration
            );
        }
    }
    Ok(MediaPlaylist {
        target_duration,
        media_sequence,
        discontinuity_sequence: disc_seq,
        entries,
        ended,
    })
}
