//! Test support shared by the remux tests: the FLV file reader for the ffmpeg-made fixture.

use bytes::Bytes;

/// One audio or video tag of an FLV file.
#[derive(Debug, Clone)]
pub struct Tag {
    /// Video (9) rather than audio (8).
    pub video: bool,
    /// Timestamp in ms, with the extended upper byte applied.
    pub ts: u32,
    /// The tag body (what RTMP carries as the message payload).
    pub body: Bytes,
}

/// Minimal FLV file reader (Adobe FLV spec v10.1 E.2/E.3): header, then tags with 11-byte headers,
/// each followed by a 4-byte PreviousTagSize. Script tags are skipped.
pub fn read_flv(data: &[u8]) -> Vec<Tag> {
    assert_eq!(&data[..3], b"FLV", "not an FLV file");
    let header_len = u32::from_be_bytes(data[5..9].try_into().expect("4 bytes")) as usize;
    let mut pos = header_len + 4;
    let mut tags = Vec::new();
    while pos + 11 <= data.len() {
        let kind = data[pos] & 0x1f;
        let size = u32::from_be_bytes([0, data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        // TimestampExtended is the upper 8 bits.
        let ts = u32::from_be_bytes([data[pos + 7], data[pos + 4], data[pos + 5], data[pos + 6]]);
        let body = Bytes::copy_from_slice(&data[pos + 11..pos + 11 + size]);
        if kind == 8 || kind == 9 {
            tags.push(Tag {
                video: kind == 9,
                ts,
                body,
            });
        }
        pos += 11 + size + 4;
    }
    tags
}
