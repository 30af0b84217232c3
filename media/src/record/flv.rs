//! FLV file framing (Adobe FLV spec v10.1, annex E) as nginx-rtmp's record module writes it: the 9-byte
//! header with the audio and video flags both set whatever the stream carries, `PreviousTagSize0`, then
//! every tag as received (type, 24-bit size, timestamp relative to the first recorded tag with its
//! extended byte, stream id 0, the RTMP message body unchanged) followed by its `PreviousTagSize`.
//! No I/O.
//!
//! One addition: an `onMetaData` script tag right after the header, which Debian's nginx-rtmp 1.2.2 does
//! not write (its metadata code is `#if 0`). It carries what the publisher announced (size, frame rate,
//! codecs, bit rates, encoder), the same fields media sends its RTMP players. There is no `duration`
//! field: a publisher does not know it, and ffprobe/ffmpeg then read it from the last tag.

use media::flv::Metadata;

/// FLV tag type of audio.
pub const AUDIO: u8 = 8;
/// FLV tag type of video.
pub const VIDEO: u8 = 9;
/// FLV tag type of script data (`onMetaData`).
pub const SCRIPT: u8 = 18;
/// Largest tag body the 24-bit size field can describe.
pub const MAX_BODY: usize = 0xFF_FFFF;

/// The file header and `PreviousTagSize0`, byte for byte nginx-rtmp's.
pub fn file_header() -> [u8; 13] {
    [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// The 11-byte header of a tag with a `len`-byte body (`len` <= [`MAX_BODY`]).
pub fn tag_header(kind: u8, timestamp_ms: u32, len: usize) -> [u8; 11] {
    let l = (len.min(MAX_BODY) as u32).to_be_bytes();
    let t = timestamp_ms.to_be_bytes();
    // Timestamp: lower 24 bits big-endian, then the upper 8 bits (TimestampExtended).
    [kind, l[1], l[2], l[3], t[1], t[2], t[3], t[0], 0, 0, 0]
}

/// `PreviousTagSize` following a tag with a `len`-byte body.
pub fn previous_tag_size(len: usize) -> [u8; 4] {
    ((11 + len.min(MAX_BODY)) as u32).to_be_bytes()
}

/// Timestamps relative to the first recorded tag, as nginx-rtmp writes them (its `epoch`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Timeline {
    epoch: Option<u32>,
    last: u32,
}

impl Timeline {
    /// The file timestamp of an RTMP timestamp (wrapping like RTMP's 32-bit clock).
    pub fn rebase(&mut self, rtmp_ms: u32) -> u32 {
        let epoch = *self.epoch.get_or_insert(rtmp_ms);
        self.last = rtmp_ms.wrapping_sub(epoch);
        self.last
    }

    /// Timestamp for a script tag: where the file is now (0 before the first media tag).
    pub fn now(&self) -> u32 {
        self.last
    }
}

/// The body of an `onMetaData` script tag: AMF0 string `onMetaData`, then an ECMA array in a fixed
/// order (what ffmpeg's FLV muxer writes).
pub fn on_metadata(m: &Metadata) -> Vec<u8> {
    let mut props: Vec<(&str, Value)> = Vec::with_capacity(11);
    let mut num = |k, v: Option<f64>| {
        if let Some(v) = v {
            props.push((k, Value::Number(v)));
        }
    };
    num("width", m.video_width.map(f64::from));
    num("height", m.video_height.map(f64::from));
    num("videodatarate", m.video_bitrate_kbps.map(f64::from));
    num("framerate", m.video_frame_rate.map(f64::from));
    num("videocodecid", m.video_codec_id.map(f64::from));
    num("audiodatarate", m.audio_bitrate_kbps.map(f64::from));
    num("audiosamplerate", m.audio_sample_rate.map(f64::from));
    num("audiochannels", m.audio_channels.map(f64::from));
    num("audiocodecid", m.audio_codec_id.map(f64::from));
    if let Some(s) = m.audio_is_stereo {
        props.push(("stereo", Value::Bool(s)));
    }
    if let Some(e) = &m.encoder {
        props.push(("encoder", Value::Str(e)));
    }
    let mut out = Vec::with_capacity(256);
    amf_string(&mut out, "onMetaData");
    out.push(0x08);
    out.extend_from_slice(&(props.len() as u32).to_be_bytes());
    for (k, v) in props {
        amf_key(&mut out, k);
        match v {
            Value::Number(n) => {
                out.push(0x00);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Value::Bool(b) => out.extend_from_slice(&[0x01, u8::from(b)]),
            Value::Str(s) => amf_string(&mut out, s),
        }
    }
    // Object end marker: empty key, then 0x09.
    out.extend_from_slice(&[0, 0, 0x09]);
    out
}

enum Value<'a> {
    Number(f64),
    Bool(bool),
    Str(&'a str),
}

/// AMF0 string marker and a string (cut at 65535 bytes, on a character boundary).
fn amf_string(out: &mut Vec<u8>, s: &str) {
    out.push(0x02);
    amf_key(out, s);
}

fn amf_key(out: &mut Vec<u8>, s: &str) {
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::rml_amf0::{deserialize, Amf0Value};

    #[test]
    fn header_and_tag_framing_match_nginx_rtmp() {
        // The first 13 bytes of a file Debian's nginx-rtmp 1.2.2 recorded (`record all`).
        assert_eq!(
            file_header(),
            [0x46, 0x4c, 0x56, 0x01, 0x05, 0, 0, 0, 0x09, 0, 0, 0, 0]
        );
        // Its first tag: a 49-byte AVC sequence header at 0 ms.
        assert_eq!(
            tag_header(VIDEO, 0, 49),
            [9, 0, 0, 0x31, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(previous_tag_size(49), [0, 0, 0, 0x3c]);
        // Timestamps beyond 24 bits go to the extended byte.
        assert_eq!(
            tag_header(AUDIO, 0x1234_5678, 7),
            [8, 0, 0, 7, 0x34, 0x56, 0x78, 0x12, 0, 0, 0]
        );
    }

    #[test]
    fn timestamps_start_at_the_first_tag() {
        let mut t = Timeline::default();
        assert_eq!(t.now(), 0);
        assert_eq!(t.rebase(5000), 0);
        assert_eq!(t.rebase(5040), 40);
        assert_eq!(t.now(), 40);
        // RTMP's clock wraps at 2^32 ms.
        let mut w = Timeline::default();
        w.rebase(u32::MAX - 9);
        assert_eq!(w.rebase(10), 20);
    }

    #[test]
    fn metadata_is_valid_amf0() {
        let m = Metadata {
            video_width: Some(640),
            video_height: Some(360),
            video_frame_rate: Some(30.0),
            audio_is_stereo: Some(true),
            encoder: Some("Lavf59.27.100".into()),
            ..Metadata::default()
        };
        let body = on_metadata(&m);
        let values = deserialize(&mut body.as_slice()).expect("amf0");
        assert_eq!(values[0], Amf0Value::Utf8String("onMetaData".into()));
        let Amf0Value::Object(props) = &values[1] else {
            panic!("not an object: {values:?}");
        };
        assert_eq!(props.get("width"), Some(&Amf0Value::Number(640.0)));
        assert_eq!(props.get("framerate"), Some(&Amf0Value::Number(30.0)));
        assert_eq!(props.get("stereo"), Some(&Amf0Value::Boolean(true)));
        assert_eq!(
            props.get("encoder"),
            Some(&Amf0Value::Utf8String("Lavf59.27.100".into()))
        );
        assert_eq!(props.len(), 5);
    }
}
