//! The recording's playlist (RFC 8216): `#EXT-X-PLAYLIST-TYPE:EVENT` while the broadcast runs (segments
//! are only appended), `VOD` with `#EXT-X-ENDLIST` once it ended. Rendering, and reading one back for
//! crash recovery and listings. No I/O.

use common::hls::{self, MediaPlaylist, Millis, PlaylistType};

/// One segment of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// File name relative to the playlist, e.g. `0.ts`.
    pub uri: String,
    /// `#EXTINF` seconds.
    pub duration: f64,
    /// Whether `#EXT-X-DISCONTINUITY` precedes it (a codec change within the broadcast).
    pub discontinuity: bool,
}

/// A recording's playlist.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VodPlaylist {
    entries: Vec<Entry>,
    target: u32,
    ended: bool,
}

/// A playlist that cannot be read back.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VodError {
    /// The first line is not `#EXTM3U`.
    #[error("not an HLS playlist (no #EXTM3U)")]
    NotAPlaylist,
    /// An `#EXTINF` whose duration is not a number.
    #[error("line {0}: bad #EXTINF")]
    BadExtinf(usize),
}

impl VodPlaylist {
    /// An empty playlist whose target duration is at least `min_target` seconds.
    pub fn new(min_target: u32) -> Self {
        Self {
            entries: Vec::new(),
            target: min_target.max(1),
            ended: false,
        }
    }

    /// Appends a segment; the target duration grows with it (RFC 8216 4.3.3.1: every `#EXTINF`
    /// rounded to the nearest integer must not exceed it).
    pub fn push(&mut self, entry: Entry) {
        self.target = self.target.max(entry.duration.round() as u32);
        self.entries.push(entry);
    }

    /// Marks the broadcast as ended.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Whether `#EXT-X-ENDLIST` is (or will be rendered) there.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The segments.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Sum of the segment durations, in seconds.
    pub fn duration(&self) -> f64 {
        self.entries.iter().map(|e| e.duration).sum()
    }

    /// The playlist as the HLS model.
    pub fn to_hls(&self) -> MediaPlaylist {
        MediaPlaylist {
            version: 3,
            kind: if self.ended {
                PlaylistType::Vod
            } else {
                PlaylistType::Event
            },
            target_duration: u64::from(self.target),
            media_sequence: 0,
            // Nothing is ever removed from the front: no discontinuity sequence to carry.
            discontinuity_sequence: None,
            segments: self
                .entries
                .iter()
                .map(|e| hls::Segment::new(e.uri.clone(), extinf(e.duration), e.discontinuity))
                .collect(),
            ended: self.ended,
            ..MediaPlaylist::default()
        }
    }

    /// The playlist text.
    pub fn render(&self) -> String {
        self.to_hls().render()
    }

    /// Reads a playlist this module rendered (leniently: unknown tags are skipped, and an `#EXTINF`
    /// without its URI line, as a torn write would leave, is dropped).
    pub fn parse(text: &str) -> Result<Self, VodError> {
        let mut lines = text.lines().map(str::trim).enumerate();
        match lines.next() {
            Some((_, "#EXTM3U")) => {}
            _ => return Err(VodError::NotAPlaylist),
        }
        let mut p = Self::new(1);
        let mut pending: Option<(f64, bool)> = None;
        let mut discontinuity = false;
        for (i, line) in lines {
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target = p.target.max(v.trim().parse().unwrap_or(1));
            } else if line == "#EXT-X-DISCONTINUITY" {
                discontinuity = true;
            } else if line == "#EXT-X-ENDLIST" {
                p.ended = true;
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                let d = v
                    .split(',')
                    .next()
                    .and_then(|d| d.trim().parse::<f64>().ok())
                    .filter(|d| d.is_finite() && *d >= 0.0)
                    .ok_or(VodError::BadExtinf(i + 1))?;
                pending = Some((d, std::mem::take(&mut discontinuity)));
            } else if !line.is_empty() && !line.starts_with('#') {
                if let Some((duration, discontinuity)) = pending.take() {
                    p.push(Entry {
                        uri: line.to_owned(),
                        duration,
                        discontinuity,
                    });
                }
            }
        }
        Ok(p)
    }
}

/// `#EXTINF` milliseconds exactly as `{:.3}` rounds the seconds (the decimal value of the `f64`,
/// halves to even), which is what recordings were always written with; a duration too large for a
/// `u64` of milliseconds (none a recorder produces) is clamped.
fn extinf(seconds: f64) -> Millis {
    let text = format!("{:.3}", seconds.max(0.0));
    Millis(text.replace('.', "").parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize, duration: f64, discontinuity: bool) -> Entry {
        Entry {
            uri: format!("{n}.ts"),
            duration,
            discontinuity,
        }
    }

    #[test]
    fn renders_event_then_vod() {
        let mut p = VodPlaylist::new(2);
        p.push(entry(0, 2.002, true));
        p.push(entry(1, 2.9, false));
        p.push(entry(2, 1.5, true));
        assert_eq!(
            p.render(),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-TARGETDURATION:3\n\
             #EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:2.002,\n0.ts\n#EXTINF:2.900,\n1.ts\n\
             #EXT-X-DISCONTINUITY\n#EXTINF:1.500,\n2.ts\n"
        );
        p.end();
        let text = p.render();
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{text}");
        assert!(text.ends_with("2.ts\n#EXT-X-ENDLIST\n"), "{text}");
        assert!((p.duration() - 6.402).abs() < 1e-9);
    }

    #[test]
    fn durations_round_as_three_decimals_always_did() {
        for d in [0.0, 0.0005, 1.0005, 2.0005, 2.9, 1.9994, 6.402, 123.4565] {
            assert_eq!(extinf(d).to_string(), format!("{d:.3}"), "{d}");
        }
    }

    #[test]
    fn parse_reads_back_what_render_wrote() {
        let mut p = VodPlaylist::new(2);
        for i in 0..5 {
            p.push(entry(i, 2.0 + i as f64 / 10.0, i == 3));
        }
        let back = VodPlaylist::parse(&p.render()).expect("parse");
        assert_eq!(back, p);
        p.end();
        assert_eq!(VodPlaylist::parse(&p.render()).expect("parse"), p);
    }

    #[test]
    fn a_torn_tail_is_dropped_and_garbage_refused() {
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n0.ts\n#EXTINF:2.0";
        let p = VodPlaylist::parse(text).expect("parse");
        assert_eq!(p.entries().len(), 1);
        assert!(!p.ended());
        assert_eq!(VodPlaylist::parse("hello\n"), Err(VodError::NotAPlaylist));
        assert_eq!(
            VodPlaylist::parse("#EXTM3U\n#EXTINF:abc,\n0.ts\n"),
            Err(VodError::BadExtinf(2))
        );
    }
}
