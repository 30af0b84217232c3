//! Golden bytes: the fixture remuxed in four track layouts must produce exactly the TS segments, fMP4
//! init segments and parts that the code before the media re-shaping (commit 511ea58) produced.
//! A refactoring of the remux layers that changes a single output byte fails here; a deliberate
//! change of the output updates the fingerprints and says why in its commit.

mod support;

use media::remux::{Segmenter, SegmenterConfig};

/// CRC-32 and length of everything one run produced, in order (segments, their parts, init segments,
/// durations and flags).
fn fingerprint(video: bool, audio: bool, parts: bool) -> (u32, usize) {
    let data = std::fs::read("tests/fixtures/clip.flv").expect("fixture");
    let mut s = Segmenter::new(SegmenterConfig {
        target_duration_ms: 2000,
        max_duration_ms: 10_000,
    });
    if parts {
        s.enable_parts(334);
    }
    let mut out = Vec::new();
    let mut record = |s: &mut Segmenter, closed: Option<media::remux::Segment>| {
        for p in s.take_parts() {
            if let Some(init) = &p.init {
                out.extend_from_slice(init);
            }
            out.extend_from_slice(&p.data);
            out.extend_from_slice(&p.duration_ms.to_be_bytes());
            out.extend_from_slice(&[u8::from(p.independent), u8::from(p.last)]);
            out.extend_from_slice(&p.index.to_be_bytes());
        }
        if let Some(seg) = closed {
            out.extend_from_slice(&seg.data);
            out.extend_from_slice(&seg.duration_ms.to_be_bytes());
            out.extend_from_slice(&seg.start_pts.to_be_bytes());
            out.extend_from_slice(&seg.start_dts.to_be_bytes());
            out.extend_from_slice(&[
                u8::from(seg.discontinuity),
                u8::from(seg.starts_with_keyframe),
            ]);
        }
    };
    for tag in support::read_flv(&data) {
        let closed = match (tag.video, video, audio) {
            (true, true, _) => s.push_video(tag.ts, tag.body).expect("video"),
            (false, _, true) => s.push_audio(tag.ts, tag.body).expect("audio"),
            _ => continue,
        };
        record(&mut s, closed);
    }
    let last = s.finish();
    record(&mut s, last);
    out.extend_from_slice(s.tracks().codecs().as_bytes());
    (crc32fast::hash(&out), out.len())
}

#[test]
fn remuxed_bytes_are_those_of_511ea58() {
    let got = [
        fingerprint(true, true, false),
        fingerprint(true, true, true),
        fingerprint(true, false, true),
        fingerprint(false, true, true),
    ];
    println!("{got:?}");
    assert_eq!(got, GOLDEN);
}

/// Recorded by running this test on commit 511ea58.
const GOLDEN: [(u32, usize); 4] = [
    (515998957, 130383),
    (3763346453, 235545),
    (624931827, 123993),
    (2097528199, 117215),
];
