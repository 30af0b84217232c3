//! Keeps a stream's numbers from going backwards at this edge when an origin starts numbering it lower.
//!
//! Origins number every name from a clock base and never go backwards themselves (media's `registry`),
//! with two exceptions: the rolling upgrade that moved the base from tenths of a second since 1970
//! (about 1.8e10, beyond what 32-bit players read) to seconds since 2025 (about 6e7), and the documented
//! limits of the rule (sub-second segments, a clock stepped back). Either way an edge that still lists
//! the old numbers would otherwise drop the new broadcast as duplicates until it forgot the stream.
//!
//! Instead, a broadcast whose first numbers are not above what this edge already listed for the name is
//! renumbered to continue right after it: every media sequence number (and init id, which is one) gets
//! the same offset, every discontinuity sequence number another, so the window stays contiguous and the
//! broadcast's own `#EXT-X-DISCONTINUITY` marks the new timeline. Broadcasts that already number higher
//! keep the offset in force (zero unless a renumbering happened before). The offsets last as long as the
//! edge remembers the stream: once it is forgotten (idle past the segment TTL) or the edge restarts, the
//! origin's numbers are served as they are. Pure state, no I/O: the store calls it under its own lock.

use std::collections::{HashMap, VecDeque};

/// Broadcasts whose offsets are remembered per stream, for late records of a previous broadcast.
const BROADCASTS_REMEMBERED: usize = 8;

#[derive(Debug, Clone)]
struct Broadcast {
    id: String,
    seq_add: u64,
    /// Decided by the first record carrying a discontinuity sequence number (an init carries none).
    /// Signed: a renumbered broadcast continues the discontinuity numbering at the next number, which
    /// can be below what its origin wrote.
    disc_add: Option<i64>,
    /// Renumbered to continue the window right after what was listed before it.
    continues_window: bool,
}

#[derive(Debug, Clone, Default)]
struct StreamNumbers {
    /// Newest last.
    broadcasts: VecDeque<Broadcast>,
    max_seq: Option<u64>,
    max_disc: Option<u64>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `v + add`, clamped to the u64 range.
fn shift(v: u64, add: i64) -> u64 {
    u64::try_from((i128::from(v) + i128::from(add)).clamp(0, i128::from(u64::MAX))).unwrap_or(0)
}

/// Per stream, the offsets this edge adds to the origin's numbers.
#[derive(Debug, Default)]
pub struct Renumbering {
    streams: HashMap<String, StreamNumbers>,
}

/// A record's numbers as this edge serves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapped {
    /// Media sequence number (or init id).
    pub seq: u64,
    /// Discontinuity sequence number, when the record carries one.
    pub disc_seq: Option<u64>,
    /// Whether this record's broadcast is served with an offset.
    pub renumbered: bool,
    /// The first record of its broadcast this edge mapped.
    pub first_of_broadcast: bool,
}

impl Renumbering {
    /// The numbers to serve for a record of `broadcast` on `stream` carrying media sequence number (or
    /// init id) `seq` and, for segments and parts, discontinuity sequence number `disc_seq`. Records
    /// it maps count as listed: call it only for records the store keeps.
    pub fn map(
        &mut self,
        stream: &str,
        broadcast: &str,
        seq: u64,
        disc_seq: Option<u64>,
    ) -> Mapped {
        let s = self.streams.entry(stream.to_owned()).or_default();
        // The offsets in force: the newest broadcast's (a discontinuity offset not decided yet is the
        // one decided before it).
        let seq_in_force = s.broadcasts.back().map_or(0, |b| b.seq_add);
        let disc_in_force = s
            .broadcasts
            .iter()
            .rev()
            .find_map(|b| b.disc_add)
            .unwrap_or(0);
        let known = s.broadcasts.iter().position(|b| b.id == broadcast);
        let index = match known {
            Some(i) => i,
            None => {
                let (seq_add, continues_window) = match s.max_seq {
                    Some(max) if seq.saturating_add(seq_in_force) <= max => {
                        (max.saturating_add(1) - seq, true)
                    }
                    _ => (seq_in_force, false),
                };
                s.broadcasts.push_back(Broadcast {
                    id: broadcast.to_owned(),
                    seq_add,
                    disc_add: None,
                    continues_window,
                });
                while s.broadcasts.len() > BROADCASTS_REMEMBERED {
                    s.broadcasts.pop_front();
                }
                s.broadcasts.len() - 1
            }
        };
        let newest = index + 1 == s.broadcasts.len();
        let b = &mut s.broadcasts[index];
        if let (Some(d), None) = (disc_seq, b.disc_add) {
            // A broadcast renumbered to continue the window continues the discontinuity numbering
            // too (its first segment is the next discontinuity); one that would otherwise go back is
            // moved on the same way. Only the newest broadcast may move the numbering on: a late record
            // of an older one whose offset was never decided keeps the offset in force.
            b.disc_add = Some(match s.max_disc {
                Some(max) if newest && (b.continues_window || shift(d, disc_in_force) <= max) => {
                    to_i64(max.saturating_add(1)).saturating_sub(to_i64(d))
                }
                _ => disc_in_force,
            });
        }
        let seq = seq.saturating_add(b.seq_add);
        let disc = disc_seq.map(|d| shift(d, b.disc_add.unwrap_or(0)));
        let renumbered = b.seq_add != 0 || b.disc_add.is_some_and(|a| a != 0);
        s.max_seq = s.max_seq.max(Some(seq));
        if disc.is_some() {
            s.max_disc = s.max_disc.max(disc);
        }
        Mapped {
            seq,
            disc_seq: disc,
            renumbered,
            first_of_broadcast: known.is_none(),
        }
    }

    /// The media sequence number to serve for `seq` of a known broadcast (a stream end's last segment),
    /// without recording anything; unchanged for a broadcast this edge does not know.
    pub fn peek(&self, stream: &str, broadcast: &str, seq: u64) -> u64 {
        self.streams
            .get(stream)
            .and_then(|s| s.broadcasts.iter().find(|b| b.id == broadcast))
            .map_or(seq, |b| seq.saturating_add(b.seq_add))
    }

    /// Forgets the streams `keep` says no to (the store forgot them).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.streams.retain(|name, _| keep(name));
    }

    /// Streams with numbering state.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream has numbering state.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn numbers_pass_through_while_they_only_go_up() {
        let mut r = Renumbering::default();
        assert_eq!(
            r.map("s", "a", 100, Some(1)),
            Mapped {
                seq: 100,
                disc_seq: Some(1),
                renumbered: false,
                first_of_broadcast: true,
            }
        );
        assert_eq!(r.map("s", "a", 101, Some(1)).seq, 101);
        // A republish on the same origin continues from 102 with the next discontinuity.
        let m = r.map("s", "b", 102, Some(2));
        assert_eq!((m.seq, m.disc_seq, m.renumbered), (102, Some(2), false));
        // A new origin process numbering higher (a gap): served as it is.
        let m = r.map("s", "c", 5_000, Some(3));
        assert_eq!((m.seq, m.disc_seq, m.renumbered), (5_000, Some(3), false));
    }

    #[test]
    fn an_origin_numbering_lower_continues_the_window_instead() {
        // The rolling upgrade: tenths of a second since 1970, then seconds since 2025.
        let mut r = Renumbering::default();
        r.map("s", "old", 17_961_619_135, Some(1));
        r.map("s", "old", 17_961_619_136, Some(1));
        // The new origin's init comes first (it carries no discontinuity number), then its parts.
        let init = r.map("s", "new", 60_000_000, None);
        assert_eq!((init.seq, init.renumbered), (17_961_619_137, true));
        let part = r.map("s", "new", 60_000_000, Some(60_000_001));
        assert_eq!(part.seq, 17_961_619_137);
        assert_eq!(part.disc_seq, Some(2), "the next discontinuity after 1");
        let next = r.map("s", "new", 60_000_001, Some(60_000_001));
        assert_eq!((next.seq, next.disc_seq), (17_961_619_138, Some(2)));
        // A republish on the new origin continues its own numbers: the same offsets apply.
        let again = r.map("s", "newer", 60_000_002, Some(60_000_002));
        assert_eq!((again.seq, again.disc_seq), (17_961_619_139, Some(3)));
        assert!(again.renumbered);
        // A late record of the old broadcast keeps its own numbers.
        assert_eq!(
            r.map("s", "old", 17_961_619_136, Some(1)).seq,
            17_961_619_136
        );
        assert_eq!(r.peek("s", "new", 60_000_001), 17_961_619_138);
        assert_eq!(r.peek("s", "unknown", 7), 7);
    }

    #[test]
    fn streams_are_independent_and_forgotten_on_request() {
        let mut r = Renumbering::default();
        r.map("a", "x", 1_000, Some(5));
        assert_eq!(r.map("b", "y", 10, Some(0)).seq, 10);
        assert_eq!(r.map("a", "z", 10, Some(0)).seq, 1_001);
        r.retain(|name| name != "a");
        assert_eq!(r.len(), 1);
        // Forgotten: the origin's numbers are served as they are again.
        assert_eq!(r.map("a", "w", 10, Some(0)).seq, 10);
    }

    #[test]
    fn bounded_history_and_no_overflow() {
        let mut r = Renumbering::default();
        for i in 0..100u64 {
            r.map("s", &format!("b{i}"), u64::MAX - 1, Some(u64::MAX - 1));
        }
        assert!(r.streams["s"].broadcasts.len() <= BROADCASTS_REMEMBERED);
        let m = r.map("s", "last", 0, Some(0));
        assert!(m.seq >= u64::MAX - 1);
    }
}
