//! Which partition of the topic carries a stream: the Java client's default partitioner for keyed
//! records, so every Kafka client can compute it from the stream name alone.
//!
//! media keys every record with the stream name and has librdkafka partition with `murmur2_random`,
//! librdkafka's port of the Java client's partitioner, rather than librdkafka's own default
//! (`consistent_random`, a CRC32 of the key): the Java client, Kafka Streams, Kafka Connect and most
//! other clients (Go's sarama and franz-go offer it too) hash with murmur2, so a consumer written in any
//! of them can find a stream's partition without asking a broker. The rule is
//! `(murmur2(utf8(name)) & 0x7fffffff) % partitions`, with Kafka's seed and the Java client's
//! `Utils.toPositive`. Adding partitions to the topic moves streams to other partitions.

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`): MurmurHash2, 32-bit, seed
/// `0x9747b28c`, with the Java client's handling of the last 1-3 bytes.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate().rev() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition (of `partitions`, at least 1) that carries `stream`'s records.
pub fn partition_for(stream: &str, partitions: u32) -> u32 {
    let positive = (murmur2(stream.as_bytes()) & 0x7fff_ffff) as u32;
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes printed by the Java client's `Utils.murmur2` (kafka-clients 4.1.1, through jshell); the
    /// last four are also the vectors of Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_the_java_client() {
        for (key, want) in [
            ("", 275_646_681),
            ("a", -1_563_381_124),
            ("mystream", 1_548_571_950),
            ("cam-1", 1_396_630_011),
            ("fault-cam", -883_178_983),
            ("live/stream-42", 323_884_452),
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
        ] {
            assert_eq!(murmur2(key.as_bytes()), want, "{key:?}");
        }
    }

    /// `Utils.toPositive(murmur2(key)) % 12`, as the Java client picks among 12 partitions.
    #[test]
    fn partitions_match_the_java_client() {
        for (key, want) in [
            ("", 9),
            ("a", 4),
            ("mystream", 6),
            ("cam-1", 3),
            ("fault-cam", 1),
            ("live/stream-42", 0),
        ] {
            assert_eq!(partition_for(key, 12), want, "{key:?}");
        }
        assert_eq!(partition_for("anything", 1), 0);
        assert_eq!(partition_for("anything", 0), 0, "no division by zero");
    }
}
