//! A strict reader of low-latency HLS media playlists (RFC 8216bis 4.4.3.7-8, 4.4.4.9, 4.4.5.3),
//! independent of the edge's renderer, that checks the rules a player relies on.

use anyhow::{bail, ensure, Context, Result};

/// One `#EXT-X-PART`.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Seconds.
    pub duration: f64,
    pub uri: String,
    pub independent: bool,
}

/// A segment with the parts listed before it; `uri`/`duration` are `None` for the open segment at the
/// end (parts only).
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub msn: u64,
    pub parts: Vec<Part>,
    pub duration: Option<f64>,
    pub uri: Option<String>,
    pub map: String,
    pub discontinuity: bool,
}

/// A parsed LL-HLS media playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct LlPlaylist {
    pub version: u64,
    pub target_duration: u64,
    pub part_target: f64,
    pub part_hold_back: f64,
    pub can_block_reload: bool,
    pub media_sequence: u64,
    pub segments: Vec<Segment>,
    /// URI of `#EXT-X-PRELOAD-HINT:TYPE=PART`.
    pub preload_hint: Option<String>,
    pub ended: bool,
}

fn attr<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    // Attribute lists here have no commas inside quoted strings (URIs are plain names).
    list.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

/// Parses `text` and checks it against the LL-HLS rules; see the checks below.
pub fn parse(text: &str) -> Result<LlPlaylist> {
    let mut lines = text.lines();
    ensure!(lines.next() == Some("#EXTM3U"), "must start with #EXTM3U");
    let mut p = LlPlaylist {
        version: 1,
        target_duration: 0,
        part_target: 0.0,
        part_hold_back: 0.0,
        can_block_reload: false,
        media_sequence: 0,
        segments: Vec::new(),
        preload_hint: None,
        ended: false,
    };
    let mut map: Option<String> = None;
    let mut parts = Vec::new();
    let mut extinf: Option<f64> = None;
    let mut disc = false;
    for line in lines {
        let msn = p.media_sequence + p.segments.len() as u64;
        if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
            p.version = v.parse()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            p.target_duration = v.parse()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
            p.can_block_reload = attr(v, "CAN-BLOCK-RELOAD") == Some("YES");
            p.part_hold_back = attr(v, "PART-HOLD-BACK")
                .context("PART-HOLD-BACK is required with parts")?
                .parse()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
            p.part_target = attr(v, "PART-TARGET").context("PART-TARGET")?.parse()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            p.media_sequence = v.parse()?;
        } else if line.starts_with("#EXT-X-DISCONTINUITY-SEQUENCE:") {
        } else if line == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
            map = Some(attr(v, "URI").context("EXT-X-MAP URI")?.to_owned());
        } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
            parts.push(Part {
                duration: attr(v, "DURATION").context("part DURATION")?.parse()?,
                uri: attr(v, "URI").context("part URI")?.to_owned(),
                independent: attr(v, "INDEPENDENT") == Some("YES"),
            });
        } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
            ensure!(attr(v, "TYPE") == Some("PART"), "preload hint type: {line}");
            p.preload_hint = Some(attr(v, "URI").context("hint URI")?.to_owned());
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = Some(v.trim_end_matches(',').parse()?);
        } else if line == "#EXT-X-ENDLIST" {
            p.ended = true;
        } else if line.starts_with('#') {
            bail!("unexpected tag {line}");
        } else {
            p.segments.push(Segment {
                msn,
                parts: std::mem::take(&mut parts),
                duration: Some(
                    extinf
                        .take()
                        .with_context(|| format!("{line} without EXTINF"))?,
                ),
                uri: Some(line.to_owned()),
                map: map
                    .clone()
                    .context("EXT-X-MAP must precede the first segment")?,
                discontinuity: std::mem::take(&mut disc),
            });
        }
    }
    if !parts.is_empty() {
        let msn = p.media_sequence + p.segments.len() as u64;
        p.segments.push(Segment {
            msn,
            parts,
            duration: None,
            uri: None,
            map: map.context("EXT-X-MAP")?,
            discontinuity: disc,
        });
    }
    check(&p)?;
    Ok(p)
}

/// The rules: version 6+ (EXT-X-MAP), blocking reload offered, PART-HOLD-BACK at least 3 part targets
/// (the spec's SHOULD; 2 is its MUST), every part within PART-TARGET, every segment within
/// TARGETDURATION, parts named `<msn>.<k>.m4s` with k counting from 0 in each segment, parts of a
/// segment adding up to its EXTINF, every part but a segment's last at least 85% of the target, and
/// the preload hint naming the part after the last one listed.
fn check(p: &LlPlaylist) -> Result<()> {
    ensure!(p.version >= 6, "EXT-X-VERSION {} < 6", p.version);
    ensure!(p.can_block_reload, "CAN-BLOCK-RELOAD=YES missing");
    ensure!(p.part_target > 0.0, "PART-TARGET missing");
    ensure!(
        p.part_hold_back + 1e-9 >= 3.0 * p.part_target,
        "PART-HOLD-BACK {} < 3 x PART-TARGET {}",
        p.part_hold_back,
        p.part_target
    );
    for s in &p.segments {
        if let Some(d) = s.duration {
            ensure!(
                d.round() as u64 <= p.target_duration,
                "segment {} lasts {d} s > target {}",
                s.msn,
                p.target_duration
            );
        }
        if !s.parts.is_empty() {
            for (k, part) in s.parts.iter().enumerate() {
                ensure!(
                    part.uri == format!("{}.{k}.m4s", s.msn),
                    "part {k} of segment {} is named {}",
                    s.msn,
                    part.uri
                );
                ensure!(
                    part.duration <= p.part_target + 1e-9,
                    "part {} lasts {} s > PART-TARGET {}",
                    part.uri,
                    part.duration,
                    p.part_target
                );
                // The last part listed may be its segment's last, which may be shorter.
                if k + 1 < s.parts.len() {
                    ensure!(
                        part.duration >= 0.85 * p.part_target - 1e-9,
                        "part {} lasts {} s < 85% of PART-TARGET",
                        part.uri,
                        part.duration
                    );
                }
            }
            if let Some(d) = s.duration {
                let sum: f64 = s.parts.iter().map(|x| x.duration).sum();
                ensure!(
                    (sum - d).abs() <= 0.0015 * s.parts.len() as f64,
                    "parts of {} add up to {sum} s, EXTINF {d}",
                    s.msn
                );
            }
        }
    }
    if let (Some(hint), Some(last)) = (&p.preload_hint, p.segments.last()) {
        let expected = match last.duration {
            Some(_) => format!("{}.0.m4s", last.msn + 1),
            None => format!("{}.{}.m4s", last.msn, last.parts.len()),
        };
        ensure!(
            *hint == expected,
            "preload hint {hint}, expected {expected}"
        );
    }
    ensure!(
        p.ended || p.preload_hint.is_some(),
        "a live LL playlist has a preload hint"
    );
    Ok(())
}

/// `(msn, part)` of a part URI `<msn>.<part>.m4s`.
pub fn part_numbers(uri: &str) -> Option<(u64, u32)> {
    let (msn, part) = uri.strip_suffix(".m4s")?.split_once('.')?;
    Some((msn.parse().ok()?, part.parse().ok()?))
}
