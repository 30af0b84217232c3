//! HLS media playlists (RFC 8216, LL-HLS from RFC 8216bis) as plain data, and the rules every playlist
//! of this project follows, written once: the edge's TS rendition (`index.m3u8`), its low-latency
//! rendition (`ll.m3u8`) and media's recording playlist are all a [`MediaPlaylist`] rendered by
//! [`MediaPlaylist::render`]. Which segments a playlist lists (its window) and when it ends stay with
//! the state machine that owns it; this module only says how a window is written. No I/O.
//!
//! The rules:
//! - **Discontinuities** (RFC 8216 4.3.3.3, 6.2.2): `#EXT-X-DISCONTINUITY-SEQUENCE` is the first listed
//!   segment's own discontinuity number, and the first segment's `#EXT-X-DISCONTINUITY` tag is never
//!   written (it is folded into that number), so a player numbers every segment as its origin did
//!   however the window slides. Callers pass numbers already decided for the stream; the edge decides
//!   them once for both renditions (`cdn-edge/src/renumber.rs`).
//! - **End** ([`ends_newest`]): a broadcast's end closes a playlist whose newest segment belongs to that
//!   broadcast, or to an earlier one the end postdates.
//! - **Durations** are whole milliseconds written with three decimals ([`Millis`]).

mod media_playlist;

pub use media_playlist::{MediaPlaylist, Part, PlaylistType, Segment, ServerControl};

use crate::StreamEnd;

/// Whether `end` closes a playlist whose newest segment is `seq` of `broadcast`: it names that
/// broadcast, or another one whose last segment is at or after ours (ours is then certainly over too).
pub fn ends_newest(end: &StreamEnd, broadcast: &str, seq: u64) -> bool {
    end.broadcast == broadcast || end.last_seq.is_some_and(|last| last >= seq)
}

/// A duration in whole milliseconds, displayed as decimal seconds with three digits (`2.002`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub u64);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(broadcast: &str, last_seq: Option<u64>) -> StreamEnd {
        StreamEnd {
            stream: "cam".into(),
            broadcast: broadcast.into(),
            ended_at_ms: 0,
            last_seq,
        }
    }

    #[test]
    fn an_end_closes_its_own_broadcast_or_an_older_one() {
        assert!(ends_newest(&end("a", None), "a", 5));
        assert!(ends_newest(&end("b", Some(5)), "a", 5));
        assert!(ends_newest(&end("b", Some(9)), "a", 5));
        assert!(!ends_newest(&end("b", Some(4)), "a", 5));
        assert!(!ends_newest(&end("b", None), "a", 5));
    }

    #[test]
    fn millis_render_three_decimals() {
        assert_eq!(Millis(2_002).to_string(), "2.002");
        assert_eq!(Millis(1).to_string(), "0.001");
        assert_eq!(Millis(86_400_000).to_string(), "86400.000");
    }
}
