//! Property tests: no parser panics on arbitrary bytes, the segmenter's output is always well-formed
//! TS whatever it is fed, and the timestamp unwrapper is monotonic for any input sequence.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use media::remux::aac::{AdtsHeader, AudioSpecificConfig};
use media::remux::avc::{split_nalus, AvcDecoderConfig};
use media::remux::flv::{parse_audio_tag, parse_video_tag};
use media::remux::sps;
use media::remux::timestamp::{TimestampUnwrapper, Track};
use media::remux::{Segment, Segmenter, SegmenterConfig};
use proptest::prelude::*;

proptest! {
    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let bytes = Bytes::from(data.clone());
        let _ = parse_video_tag(&bytes);
        let _ = parse_audio_tag(&bytes);
        let _ = AvcDecoderConfig::parse(&bytes);
        let mut out = Vec::new();
        for size in 0..=5u8 {
            let _ = split_nalus(&bytes, size, &mut out);
        }
        if let Ok(asc) = AudioSpecificConfig::parse(&data) {
            let _ = asc.codec_string();
            let _ = asc.frame_duration_us();
            for len in [0, 1, 8184, 8185, usize::MAX] {
                let _ = asc.adts_header(len);
            }
        }
        let _ = AdtsHeader::parse(&data);
        let _ = sps::dimensions(&data);
    }

    #[test]
    fn avc_record_with_random_parameter_sets_never_panics(
        head in proptest::collection::vec(any::<u8>(), 6),
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        // Valid version byte so parsing gets past the first check more often.
        let mut data = head;
        data[0] = 1;
        data.extend(rest);
        if let Ok(cfg) = AvcDecoderConfig::parse(&Bytes::from(data)) {
            let _ = cfg.codec_string();
            for ps in &cfg.parameter_sets {
                let _ = sps::dimensions(ps);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Segmenter fed with a mix of garbage and plausible messages

const SPS: [u8; 25] = [
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
];

#[derive(Debug, Clone)]
enum Op {
    RawVideo(u32, Vec<u8>),
    RawAudio(u32, Vec<u8>),
    SequenceHeader {
        level: u8,
        length_size: u8,
    },
    Asc(Vec<u8>),
    Frame {
        ts: u32,
        key: bool,
        cts: i32,
        nalus: Vec<(u8, u16)>,
        lie: u8,
    },
    Aac {
        ts: u32,
        len: u16,
    },
    Expect(Option<bool>, Option<bool>),
    Finish,
}

fn timestamp() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), 0..20_000u32, (u32::MAX - 20_000)..=u32::MAX,]
}

fn op() -> impl Strategy<Value = Op> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        (timestamp(), bytes()).prop_map(|(t, b)| Op::RawVideo(t, b)),
        (timestamp(), bytes()).prop_map(|(t, b)| Op::RawAudio(t, b)),
        (prop_oneof![Just(0x0du8), Just(0x1f)], 0..4u8)
            .prop_map(|(level, length_size)| Op::SequenceHeader { level, length_size }),
        prop_oneof![
            Just(vec![0x11, 0x90]),
            Just(vec![0x12, 0x10]),
            Just(vec![0x2b, 0x11, 0x88, 0x00]),
            proptest::collection::vec(any::<u8>(), 0..6),
        ]
        .prop_map(Op::Asc),
        (
            timestamp(),
            any::<bool>(),
            -200..300i32,
            proptest::collection::vec((any::<u8>(), 0..3000u16), 0..4),
            0..8u8,
        )
            .prop_map(|(ts, key, cts, nalus, lie)| Op::Frame {
                ts,
                key,
                cts,
                nalus,
                lie
            }),
        (timestamp(), 0..9000u16).prop_map(|(ts, len)| Op::Aac { ts, len }),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>())
        )
            .prop_map(|(v, a)| Op::Expect(v, a)),
        Just(Op::Finish),
    ]
}

/// Plausible messages progress in time; mixing a monotonic base keeps some runs realistic.
fn apply(s: &mut Segmenter, op: &Op, clock: &mut u32, length_size: &mut usize) -> Option<Segment> {
    let result = match op.clone() {
        Op::RawVideo(ts, b) => s.push_video(ts, Bytes::from(b)),
        Op::RawAudio(ts, b) => s.push_audio(ts, Bytes::from(b)),
        Op::SequenceHeader {
            level,
            length_size: l,
        } => {
            *length_size = [1, 2, 4, 4][usize::from(l)];
            let mut b = vec![
                0x17,
                0,
                0,
                0,
                0,
                1,
                0x64,
                0,
                level,
                0xfc | (l & 3),
                0xe1,
                0,
                25,
            ];
            b.extend_from_slice(&SPS);
            b.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
            s.push_video(0, Bytes::from(b))
        }
        Op::Asc(asc) => {
            let mut b = vec![0xaf, 0];
            b.extend(asc);
            s.push_audio(0, Bytes::from(b))
        }
        Op::Frame {
            ts,
            key,
            cts,
            nalus,
            lie,
        } => {
            *clock = clock.wrapping_add(ts % 50);
            let c = cts.to_be_bytes();
            let mut b = vec![if key { 0x17 } else { 0x27 }, 1, c[1], c[2], c[3]];
            for (i, (header, len)) in nalus.iter().enumerate() {
                // Occasionally lie about the length to exercise the overflow path.
                let declared = usize::from(*len) + usize::from(lie == 7 && i == 0) * 5;
                let prefix = (declared as u32).to_be_bytes();
                b.extend_from_slice(&prefix[4 - *length_size..]);
                b.push(*header);
                b.extend(std::iter::repeat_n(
                    0xab,
                    usize::from(*len).saturating_sub(1),
                ));
            }
            s.push_video(*clock, Bytes::from(b))
        }
        Op::Aac { ts, len } => {
            *clock = clock.wrapping_add(ts % 30);
            let mut b = vec![0xaf, 1];
            b.resize(2 + usize::from(len), 0x21);
            s.push_audio(*clock, Bytes::from(b))
        }
        Op::Expect(v, a) => {
            s.set_expected_tracks(v, a);
            Ok(None)
        }
        Op::Finish => return s.finish(),
    };
    match result {
        Ok(segment) => segment,
        Err(e) => {
            let _ = e.is_fatal();
            let _ = e.to_string();
            None
        }
    }
}

fn check_segment(seg: &Segment, counters: &mut [Option<u8>; 8192]) {
    assert!(!seg.data.is_empty());
    assert_eq!(seg.data.len() % 188, 0);
    for packet in seg.data.chunks(188) {
        assert_eq!(packet[0], 0x47);
        let pid = usize::from(packet[1] & 0x1f) << 8 | usize::from(packet[2]);
        let cc = packet[3] & 0x0f;
        assert!(
            packet[3] & 0x10 != 0,
            "every packet we write carries payload"
        );
        if let Some(last) = counters[pid] {
            assert_eq!(cc, (last + 1) & 0x0f, "continuity counter on pid {pid:#x}");
        }
        counters[pid] = Some(cc);
    }
    // PAT then PMT open every segment.
    assert_eq!(&seg.data[1..3], &[0x40, 0x00]);
    assert_eq!(&seg.data[189..191], &[0x50, 0x00]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn segmenter_output_is_always_valid_ts(
        ops in proptest::collection::vec(op(), 0..200),
        start in timestamp(),
        target in 0..3000u64,
        max in 0..8000u64,
    ) {
        let mut s = Segmenter::new(SegmenterConfig { target_duration_ms: target, max_duration_ms: max });
        let mut clock = start;
        let mut length_size = 4;
        let mut counters = [None; 8192];
        for op in &ops {
            if let Some(seg) = apply(&mut s, op, &mut clock, &mut length_size) {
                check_segment(&seg, &mut counters);
            }
            let _ = s.tracks().codecs();
        }
        if let Some(seg) = s.finish() {
            check_segment(&seg, &mut counters);
        }
    }

    #[test]
    fn unwrapper_is_monotonic_per_track(
        input in proptest::collection::vec((any::<bool>(), timestamp()), 1..300),
    ) {
        let mut u = TimestampUnwrapper::new();
        let (mut last_video, mut last_audio) = (None, None);
        for (video, raw) in input {
            if video {
                let t = u.unwrap(Track::Video, raw);
                if let Some(l) = last_video {
                    prop_assert!(t > l, "video {t} after {l}");
                }
                last_video = Some(t);
            } else {
                let t = u.unwrap(Track::Audio, raw);
                if let Some(l) = last_audio {
                    prop_assert!(t >= l, "audio {t} after {l}");
                }
                last_audio = Some(t);
            }
        }
    }

    #[test]
    fn unwrapper_follows_small_steps_across_the_wrap(
        start in (u32::MAX - 100_000)..=u32::MAX,
        steps in proptest::collection::vec(1..200u32, 1..2000),
    ) {
        let mut u = TimestampUnwrapper::new();
        let first = u.unwrap(Track::Video, start);
        let mut raw = start;
        let mut total = 0u64;
        for step in steps {
            raw = raw.wrapping_add(step);
            total += u64::from(step);
            prop_assert_eq!(u.unwrap(Track::Video, raw), first + total);
        }
    }
}
