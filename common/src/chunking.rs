//! Splitting a segment into records no larger than the broker accepts.
//!
//! Apache Kafka refuses records over `message.max.bytes` (about 1 MB by default), while a 4 s segment at
//! 6 Mbps is 3 MB. The origin therefore sends each segment as `chunks` records whose values are
//! consecutive byte ranges; the edge reassembles them and checks size and CRC before serving.

use bytes::Bytes;

use crate::message::SegmentMeta;

/// What to split: everything in [`SegmentMeta`] except the per-chunk fields, which `split_segment` fills.
#[derive(Debug, Clone)]
pub struct ChunkPlan {
    /// Metadata template; `size`, `crc32`, `chunk`, `chunks` and `offset` are overwritten.
    pub meta: SegmentMeta,
    /// Largest record value to produce, in bytes (>= 1).
    pub max_chunk_bytes: usize,
}

/// Splits `data` into `(metadata, value)` pairs, in order; an empty segment still yields one record.
pub fn split_segment(plan: ChunkPlan, data: &Bytes) -> Vec<(SegmentMeta, Bytes)> {
    let max = plan.max_chunk_bytes.max(1);
    let chunks = data.len().div_ceil(max).max(1);
    let crc32 = crc32fast::hash(data);
    let mut meta = plan.meta;
    meta.size = data.len() as u64;
    meta.crc32 = crc32;
    meta.chunks = u32::try_from(chunks).unwrap_or(u32::MAX);
    (0..chunks)
        .map(|i| {
            let start = i * max;
            let end = (start + max).min(data.len());
            let mut m = meta.clone();
            m.chunk = i as u32;
            m.offset = start as u64;
            (m, data.slice(start..end))
        })
        .collect()
}
