//! One media playlist as data, and its text.

use std::fmt::Write as _;

use super::Millis;

/// `#EXT-X-PLAYLIST-TYPE`: how the window may change (RFC 8216 4.3.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlaylistType {
    /// No tag: a live, sliding window (segments may be removed from the front).
    #[default]
    Live,
    /// `EVENT`: segments are only ever appended.
    Event,
    /// `VOD`: the playlist will not change.
    Vod,
}

/// `#EXT-X-SERVER-CONTROL` (RFC 8216bis 4.4.3.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerControl {
    /// `CAN-BLOCK-RELOAD=YES`.
    pub can_block_reload: bool,
    /// `PART-HOLD-BACK`.
    pub part_hold_back: Millis,
}

/// `#EXT-X-PART`: a partial segment (RFC 8216bis 4.4.4.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// `URI`.
    pub uri: String,
    /// `DURATION`.
    pub duration: Millis,
    /// `INDEPENDENT=YES`.
    pub independent: bool,
}

/// One listed segment, with the tags that precede it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its URI line (written only when `duration` is known).
    pub uri: String,
    /// `#EXTINF`; `None` for the open segment of a low-latency playlist, listed by its parts only.
    pub duration: Option<Millis>,
    /// A new timeline starts here: `#EXT-X-DISCONTINUITY`, except before the first listed segment.
    pub discontinuity: bool,
    /// `#EXT-X-MAP` to write before it (its first listed segment's lives in the header's place).
    pub map: Option<String>,
    /// Its `#EXT-X-PART` lines.
    pub parts: Vec<Part>,
}

impl Segment {
    /// A whole segment: URI and duration, nothing else.
    pub fn new(uri: impl Into<String>, duration: Millis, discontinuity: bool) -> Self {
        Self {
            uri: uri.into(),
            duration: Some(duration),
            discontinuity,
            map: None,
            parts: Vec::new(),
        }
    }
}

/// A media playlist: header, segments, and what follows them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaPlaylist {
    /// `#EXT-X-VERSION`.
    pub version: u8,
    /// `#EXT-X-PLAYLIST-TYPE`.
    pub kind: PlaylistType,
    /// `#EXT-X-TARGETDURATION`, in seconds (the caller's rule decides it).
    pub target_duration: u64,
    /// `#EXT-X-SERVER-CONTROL`, for low-latency playlists.
    pub server_control: Option<ServerControl>,
    /// `#EXT-X-PART-INF:PART-TARGET`, for low-latency playlists.
    pub part_target: Option<Millis>,
    /// `#EXT-X-MEDIA-SEQUENCE`: the first listed segment's sequence number.
    pub media_sequence: u64,
    /// `#EXT-X-DISCONTINUITY-SEQUENCE`: the first listed segment's discontinuity number; `None` writes
    /// no tag (a playlist that never removes segments needs none).
    pub discontinuity_sequence: Option<u64>,
    /// The listed segments, oldest first.
    pub segments: Vec<Segment>,
    /// `#EXT-X-PRELOAD-HINT:TYPE=PART` to this URI.
    pub preload_hint: Option<String>,
    /// `#EXT-X-ENDLIST`.
    pub ended: bool,
}

impl MediaPlaylist {
    /// The playlist text.
    pub fn render(&self) -> String {
        let parts: usize = self.segments.iter().map(|s| s.parts.len()).sum();
        let mut out = String::with_capacity(200 + 48 * self.segments.len() + 64 * parts);
        // Writing into a String cannot fail.
        let _ = write!(out, "#EXTM3U\n#EXT-X-VERSION:{}\n", self.version);
        match self.kind {
            PlaylistType::Live => {}
            PlaylistType::Event => out.push_str("#EXT-X-PLAYLIST-TYPE:EVENT\n"),
            PlaylistType::Vod => out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n"),
        }
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", self.target_duration);
        if let Some(c) = self.server_control {
            let block = if c.can_block_reload {
                "CAN-BLOCK-RELOAD=YES,"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "#EXT-X-SERVER-CONTROL:{block}PART-HOLD-BACK={}",
                c.part_hold_back
            );
        }
        if let Some(t) = self.part_target {
            let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={t}");
        }
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence);
        if let Some(d) = self.discontinuity_sequence {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{d}");
        }
        for (i, s) in self.segments.iter().enumerate() {
            // The first segment's discontinuity is counted by the sequence number instead.
            if s.discontinuity && i > 0 {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if let Some(map) = &s.map {
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{map}\"");
            }
            for p in &s.parts {
                let _ = writeln!(
                    out,
                    "#EXT-X-PART:DURATION={},URI=\"{}\"{}",
                    p.duration,
                    p.uri,
                    if p.independent {
                        ",INDEPENDENT=YES"
                    } else {
                        ""
                    }
                );
            }
            if let Some(d) = s.duration {
                let _ = write!(out, "#EXTINF:{d},\n{}\n", s.uri);
            }
        }
        if let Some(uri) = &self.preload_hint {
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{uri}\"");
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_window_folds_the_first_discontinuity_into_the_sequence() {
        let p = MediaPlaylist {
            version: 3,
            target_duration: 2,
            media_sequence: 7,
            discontinuity_sequence: Some(3),
            segments: vec![
                Segment::new("7.ts", Millis(2_000), true),
                Segment::new("8.ts", Millis(1_999), true),
            ],
            ended: true,
            ..MediaPlaylist::default()
        };
        assert_eq!(
            p.render(),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:3\n#EXTINF:2.000,\n7.ts\n#EXT-X-DISCONTINUITY\n\
             #EXTINF:1.999,\n8.ts\n#EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn low_latency_and_event_playlists_put_their_tags_in_order() {
        let p = MediaPlaylist {
            version: 6,
            kind: PlaylistType::Event,
            target_duration: 2,
            server_control: Some(ServerControl {
                can_block_reload: true,
                part_hold_back: Millis(1_002),
            }),
            part_target: Some(Millis(334)),
            media_sequence: 10,
            discontinuity_sequence: Some(1),
            segments: vec![Segment {
                uri: "10.mp4".into(),
                duration: None,
                discontinuity: true,
                map: Some("init-10.mp4".into()),
                parts: vec![Part {
                    uri: "10.0.m4s".into(),
                    duration: Millis(334),
                    independent: true,
                }],
            }],
            preload_hint: Some("10.1.m4s".into()),
            ended: false,
        };
        assert_eq!(
            p.render(),
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-TARGETDURATION:2\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.002\n\
             #EXT-X-PART-INF:PART-TARGET=0.334\n#EXT-X-MEDIA-SEQUENCE:10\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:1\n#EXT-X-MAP:URI=\"init-10.mp4\"\n\
             #EXT-X-PART:DURATION=0.334,URI=\"10.0.m4s\",INDEPENDENT=YES\n\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"10.1.m4s\"\n"
        );
    }
}
