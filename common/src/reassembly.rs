//! Reassembling chunked segments at the consumer, with bounded memory.
//!
//! Chunks of one segment arrive in order in one partition, but a consumer that starts mid-segment, a
//! broker that lost a record, or a crashed producer can leave a segment incomplete forever. Pending
//! segments are therefore bounded in bytes and count; the oldest incomplete one is dropped (and reported)
//! when a new one would exceed the bounds.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::message::SegmentMeta;

/// A segment whose every chunk arrived and whose size and CRC-32 match its metadata.
#[derive(Debug, Clone)]
pub struct CompleteSegment {
    /// Metadata (of chunk 0).
    pub meta: SegmentMeta,
    /// The whole segment.
    pub data: Bytes,
}

/// Why a chunk or a segment was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// The chunk's fields contradict each other or the segment's earlier chunks.
    #[error("inconsistent chunk {chunk}/{chunks} of {stream} seq {seq}: {why}")]
    Inconsistent {
        /// Stream name.
        stream: String,
        /// Segment sequence number.
        seq: u64,
        /// Chunk index.
        chunk: u32,
        /// Chunk count.
        chunks: u32,
        /// What is wrong.
        why: &'static str,
    },
    /// A later chunk of a segment whose first chunk was never seen: expected once per partition when a
    /// consumer starts (its start offset fell inside a segment), otherwise a sign of lost records.
    #[error("chunk {chunk} of {stream} seq {seq} arrived without the segment's first chunk")]
    MissingStart {
        /// Stream name.
        stream: String,
        /// Segment sequence number.
        seq: u64,
        /// Chunk index.
        chunk: u32,
    },
    /// All chunks arrived but the bytes do not match the CRC-32 the origin computed.
    #[error("checksum mismatch for {stream} seq {seq}: expected {expected:08x}, got {actual:08x}")]
    Checksum {
        /// Stream name.
        stream: String,
        /// Segment sequence number.
        seq: u64,
        /// CRC the origin sent.
        expected: u32,
        /// CRC of what arrived.
        actual: u32,
    },
    /// The segment is larger than the whole pending budget and can never be reassembled here.
    #[error("segment {stream} seq {seq} of {size} bytes exceeds the reassembly budget")]
    TooLarge {
        /// Stream name.
        stream: String,
        /// Segment sequence number.
        seq: u64,
        /// Announced size.
        size: u64,
    },
}

struct Pending {
    meta: SegmentMeta,
    buf: BytesMut,
    next_chunk: u32,
}

/// Collects chunks into whole segments. Chunks must arrive in order (they do within one partition).
pub struct Reassembler {
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    max_bytes: usize,
    max_segments: usize,
    evicted: u64,
}

impl Reassembler {
    /// A reassembler holding at most `max_bytes` of incomplete segments, and at most `max_segments` of them.
    pub fn new(max_bytes: usize, max_segments: usize) -> Self {
        Self {
            pending: VecDeque::new(),
            pending_bytes: 0,
            max_bytes,
            max_segments: max_segments.max(1),
            evicted: 0,
        }
    }

    /// Incomplete segments dropped so far to stay within bounds.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Bytes currently held for incomplete segments.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Adds one chunk; returns the segment once it is complete and verified.
    pub fn push(
        &mut self,
        meta: SegmentMeta,
        value: &[u8],
    ) -> Result<Option<CompleteSegment>, ReassemblyError> {
        let bad = |why| ReassemblyError::Inconsistent {
            stream: meta.stream.clone(),
            seq: meta.seq,
            chunk: meta.chunk,
            chunks: meta.chunks,
            why,
        };
        if meta.chunks == 0 || meta.chunk >= meta.chunks {
            return Err(bad("chunk index out of range"));
        }
        let size = usize::try_from(meta.size).map_err(|_| bad("size overflows"))?;
        let end = meta
            .offset
            .checked_add(value.len() as u64)
            .ok_or_else(|| bad("offset overflows"))?;
        if end > meta.size {
            return Err(bad("chunk extends past the announced size"));
        }
        if meta.chunks == 1 {
            return finish(meta, Bytes::copy_from_slice(value)).map(Some);
        }
        if size > self.max_bytes {
            return Err(ReassemblyError::TooLarge {
                stream: meta.stream.clone(),
                seq: meta.seq,
                size: meta.size,
            });
        }

        let idx = self.pending.iter().position(|p| {
            p.meta.stream == meta.stream
                && p.meta.broadcast == meta.broadcast
                && p.meta.seq == meta.seq
        });
        let idx = match idx {
            Some(i) => i,
            None => {
                if meta.chunk != 0 {
                    return Err(ReassemblyError::MissingStart {
                        stream: meta.stream.clone(),
                        seq: meta.seq,
                        chunk: meta.chunk,
                    });
                }
                while !self.pending.is_empty()
                    && (self.pending_bytes + size > self.max_bytes
                        || self.pending.len() >= self.max_segments)
                {
                    self.drop_front();
                }
                self.pending_bytes += size;
                self.pending.push_back(Pending {
                    buf: BytesMut::with_capacity(size),
                    next_chunk: 0,
                    meta: meta.clone(),
                });
                self.pending.len() - 1
            }
        };

        let p = &mut self.pending[idx];
        let consistent = p.next_chunk == meta.chunk
            && p.buf.len() as u64 == meta.offset
            && p.meta.chunks == meta.chunks
            && p.meta.size == meta.size
            && p.meta.crc32 == meta.crc32;
        if !consistent {
            self.remove(idx);
            return Err(bad("chunk out of order or metadata changed between chunks"));
        }
        p.buf.extend_from_slice(value);
        p.next_chunk += 1;
        if p.next_chunk < p.meta.chunks {
            return Ok(None);
        }
        let done = self.remove(idx);
        finish(done.meta, done.buf.freeze()).map(Some)
    }

    fn drop_front(&mut self) {
        if let Some(p) = self.pending.pop_front() {
            self.pending_bytes -= p.meta.size as usize;
            self.evicted += 1;
        }
    }

    fn remove(&mut self, idx: usize) -> Pending {
        let p = self.pending.remove(idx).expect("index from position()");
        self.pending_bytes -= p.meta.size as usize;
        p
    }
}

fn finish(mut meta: SegmentMeta, data: Bytes) -> Result<CompleteSegment, ReassemblyError> {
    let actual = crc32fast::hash(&data);
    if data.len() as u64 != meta.size || actual != meta.crc32 {
        return Err(ReassemblyError::Checksum {
            stream: meta.stream,
            seq: meta.seq,
            expected: meta.crc32,
            actual,
        });
    }
    meta.chunk = 0;
    meta.offset = 0;
    Ok(CompleteSegment { meta, data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::{split_segment, ChunkPlan};
    use proptest::prelude::*;

    fn plan(seq: u64, max: usize) -> ChunkPlan {
        ChunkPlan {
            meta: SegmentMeta {
                chunks: 0,
                ..SegmentMeta::sample("s", "b", seq)
            },
            max_chunk_bytes: max,
        }
    }

    proptest! {
        #[test]
        fn split_then_reassemble_gives_back_the_segment(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            max in 1usize..5_000,
        ) {
            let data = Bytes::from(data);
            let parts = split_segment(plan(1, max), &data);
            prop_assert!(parts.iter().all(|(_, v)| v.len() <= max));
            prop_assert_eq!(parts.len(), data.len().div_ceil(max).max(1));
            let mut r = Reassembler::new(1 << 20, 8);
            let mut out = None;
            for (i, (m, v)) in parts.iter().enumerate() {
                let got = r.push(m.clone(), v).expect("consistent chunks");
                prop_assert_eq!(got.is_some(), i + 1 == parts.len());
                out = got.or(out);
            }
            let out = out.expect("complete");
            prop_assert_eq!(out.data, data);
            prop_assert_eq!(r.pending_bytes(), 0);
        }
    }

    #[test]
    fn corrupted_chunk_fails_the_checksum() {
        let data = Bytes::from(vec![7u8; 10_000]);
        let mut parts = split_segment(plan(1, 4_000), &data);
        let mut bad = parts[1].1.to_vec();
        bad[17] ^= 1;
        parts[1].1 = Bytes::from(bad);
        let mut r = Reassembler::new(1 << 20, 8);
        assert!(r
            .push(parts[0].0.clone(), &parts[0].1)
            .expect("ok")
            .is_none());
        assert!(r
            .push(parts[1].0.clone(), &parts[1].1)
            .expect("ok")
            .is_none());
        assert!(matches!(
            r.push(parts[2].0.clone(), &parts[2].1),
            Err(ReassemblyError::Checksum { .. })
        ));
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn segments_that_never_complete_are_bounded() {
        let mut r = Reassembler::new(25_000, 100);
        for seq in 0..100 {
            let data = Bytes::from(vec![1u8; 10_000]);
            let parts = split_segment(plan(seq, 4_000), &data);
            // Only the first chunk ever arrives.
            assert!(r
                .push(parts[0].0.clone(), &parts[0].1)
                .expect("ok")
                .is_none());
            assert!(r.pending_bytes() <= 25_000);
        }
        assert_eq!(r.evicted(), 98);
    }

    #[test]
    fn a_chunk_without_its_start_or_out_of_range_is_refused() {
        let data = Bytes::from(vec![1u8; 10_000]);
        let parts = split_segment(plan(1, 4_000), &data);
        let mut r = Reassembler::new(1 << 20, 8);
        assert!(matches!(
            r.push(parts[1].0.clone(), &parts[1].1),
            Err(ReassemblyError::MissingStart { chunk: 1, .. })
        ));
        let mut m = parts[0].0.clone();
        m.chunk = 9;
        assert!(r.push(m, &parts[0].1).is_err());
        let mut m = parts[0].0.clone();
        m.offset = u64::MAX;
        assert!(r.push(m, &parts[0].1).is_err());
        let mut m = parts[0].0.clone();
        m.size = 10;
        assert!(r.push(m, &parts[0].1).is_err());
    }
}
