//! RTMP aggregate messages (type 22): several FLV tags in one message, used by some servers and encoders
//! to cut per-message overhead. rml_rtmp does not handle them, so the session splits them here.
//!
//! Each sub-message is an FLV tag (Adobe FLV spec v10.1 E.4.1): type (1), data size (3), timestamp (3) +
//! extension (1), stream id (3), data, then a 4-byte back pointer. Sub-message timestamps are relative: the
//! first one maps to the aggregate message's own timestamp.

use bytes::Bytes;

/// One audio or video message carried inside an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubMessage {
    /// 8 = audio, 9 = video (other types are skipped by the caller).
    pub type_id: u8,
    /// Absolute RTMP timestamp, ms.
    pub timestamp: u32,
    /// The tag body.
    pub data: Bytes,
}

/// The aggregate message is shorter than a tag it announces.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("aggregate message truncated at byte {0}")]
pub struct Truncated(pub usize);

/// Splits an aggregate message body into its tags.
pub fn split(body: &Bytes, timestamp: u32) -> Result<Vec<SubMessage>, Truncated> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut first_ts = None;
    while pos < body.len() {
        let header = body.get(pos..pos + 11).ok_or(Truncated(pos))?;
        let type_id = header[0];
        let size = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        let ts = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let data_start = pos + 11;
        let data_end = data_start.checked_add(size).ok_or(Truncated(pos))?;
        if data_end > body.len() {
            return Err(Truncated(pos));
        }
        let base = *first_ts.get_or_insert(ts);
        out.push(SubMessage {
            type_id,
            timestamp: timestamp.wrapping_add(ts.wrapping_sub(base)),
            data: body.slice(data_start..data_end),
        });
        // The back pointer may be missing after the last tag; tolerate that.
        pos = (data_end + 4).min(body.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(type_id: u8, ts: u32, data: &[u8]) -> Vec<u8> {
        let mut v = vec![type_id];
        v.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(data);
        v.extend_from_slice(&(11 + data.len() as u32).to_be_bytes());
        v
    }

    #[test]
    fn splits_tags_with_relative_timestamps() {
        let mut body = tag(9, 1000, b"video");
        body.extend(tag(8, 1023, b"au"));
        let msgs = split(&Bytes::from(body), 50_000).expect("valid");
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].type_id, msgs[0].timestamp), (9, 50_000));
        assert_eq!((msgs[1].type_id, msgs[1].timestamp), (8, 50_023));
        assert_eq!(&msgs[1].data[..], b"au");
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let body = tag(9, 0, b"video");
        for cut in 1..body.len() - 4 {
            assert!(
                split(&Bytes::copy_from_slice(&body[..cut]), 0).is_err(),
                "cut {cut}"
            );
        }
    }
}
