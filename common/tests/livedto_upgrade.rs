//! The rolling upgrade from schema version 1 to 2 loses nothing: records as 511ea58's origins wrote
//! them (recorded below, byte for byte) and the same messages in version 2 decode into one in-memory
//! form, and a stream whose origin switches version between two segments reassembles exactly as one
//! written in a single version.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use common::{
    decode_meta, decode_record, encode_meta, encode_meta_as, split_segment, ChunkPlan, DecodeError,
    LiveMessage, Reassembler, SchemaVersion, SegmentMeta,
};

/// Header values of one short broadcast as a version-1 origin (commit 511ea58) produced them: one
/// segment in three chunks, with one part and its init. Any change to version 1's encoding fails here.
const RECORDED_V1: [&str; 7] = [
    r#"{"v":1,"kind":"stream_start","stream":"cam1","broadcast":"1795000000000-1a2b3c4d","started_at_ms":1795000000000,"first_seq":60393650}"#,
    r#"{"v":1,"kind":"init","stream":"cam1","broadcast":"1795000000000-1a2b3c4d","init":60393650,"codecs":"avc1.64001f,mp4a.40.2","size":741,"crc32":1122334455}"#,
    r#"{"v":1,"kind":"part","stream":"cam1","broadcast":"1795000000000-1a2b3c4d","seq":60393650,"part":0,"duration":0.334,"independent":true,"last":false,"disc_seq":60393651,"discontinuity":true,"init":60393650,"target_duration":2,"part_target":0.334,"closed_at_ms":1795000000345,"size":61234,"crc32":99887766}"#,
    r#"{"v":1,"kind":"segment","stream":"cam1","broadcast":"1795000000000-1a2b3c4d","seq":60393650,"disc_seq":60393651,"discontinuity":true,"duration":2.002,"target_duration":2,"pts":90000,"closed_at_ms":1795000002010,"codecs":"avc1.64001f,mp4a.40.2","size":2650000,"crc32":305419896,"chunk":0,"chunks":3,"offset":0}"#,
    r#"{"v":1,"kind":"segment","stream":"cam1","broadcast":"1795000000000-1a2b3c4d","seq":60393650,"disc_seq":60393651,"discontinuity":true,"duration":2.002,"target_duration":2,"pts":90000,"closed_at_ms":1795000002010,"codecs":"avc1.64001f,mp4a.40.2","size":2650000,"crc32":305419896,"chunk":1,"chunks":3,"offset":983616}"#,
    r#"{"v":1,"kind":"segment","stream":"cam1","broadcast":"1795000000000-1a2b3c4d","seq":60393650,"disc_seq":60393651,"discontinuity":true,"duration":2.002,"target_duration":2,"pts":90000,"closed_at_ms":1795000002010,"codecs":"avc1.64001f,mp4a.40.2","size":2650000,"crc32":305419896,"chunk":2,"chunks":3,"offset":1967232}"#,
    r#"{"v":1,"kind":"stream_end","stream":"cam1","broadcast":"1795000000000-1a2b3c4d","ended_at_ms":1795000060000,"last_seq":60393679}"#,
];

#[test]
fn recorded_v1_records_decode_and_re_encode_byte_for_byte() {
    for raw in RECORDED_V1 {
        let msg = decode_meta(Some(raw.as_bytes())).unwrap();
        assert_eq!(String::from_utf8(encode_meta(&msg)).unwrap(), raw);
    }
}

#[test]
fn every_v1_record_means_the_same_in_v2() {
    for raw in RECORDED_V1 {
        let msg = decode_meta(Some(raw.as_bytes())).unwrap();
        let v2 = encode_meta_as(&msg, SchemaVersion::V2, 0);
        let json: serde_json::Value = serde_json::from_slice(&v2).unwrap();
        assert_eq!(json["v"], 2);
        assert_eq!(
            decode_meta(Some(&v2)).unwrap(),
            msg,
            "{}",
            String::from_utf8_lossy(&v2)
        );
        assert_eq!(decode_record(Some(&v2)).unwrap(), (msg, 0));
    }
}

#[test]
fn v2_wire_shape() {
    let seg = decode_meta(Some(RECORDED_V1[4].as_bytes())).unwrap();
    let v2 = encode_meta_as(&seg, SchemaVersion::V2, 0);
    assert_eq!(
        String::from_utf8(v2).unwrap(),
        r#"{"v":2,"kind":"segment","rendition":0,"stream":"cam1","broadcast":"1795000000000-1a2b3c4d","seq":60393650,"disc_seq":60393651,"discontinuity":true,"duration_ms":2002,"target_duration":2,"pts":90000,"closed_at_ms":1795000002010,"codecs":"avc1.64001f,mp4a.40.2","framing":{"size":2650000,"crc32":305419896,"chunk":1,"chunks":3,"offset":983616}}"#
    );
    let part = decode_meta(Some(RECORDED_V1[2].as_bytes())).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&encode_meta_as(&part, SchemaVersion::V2, 0)).unwrap();
    assert_eq!(json["duration_ms"], 334);
    assert_eq!(json["part_target_ms"], 334);
    assert_eq!(json["framing"]["chunks"], 1);
    // Integer milliseconds come back as the seconds a version-1 origin would have written, for every
    // duration up to an hour: nothing an edge renders changes with the version.
    for ms in (0..100_000u64).chain((0..3_600_000).step_by(997)) {
        let LiveMessage::Segment(m) = decode_meta(Some(
            format!(
                r#"{{"v":2,"kind":"segment","rendition":0,"stream":"a","broadcast":"b","seq":1,"disc_seq":1,"discontinuity":false,"duration_ms":{ms},"target_duration":2,"pts":0,"closed_at_ms":0,"codecs":"","framing":{{"size":0,"crc32":0}}}}"#
            )
            .as_bytes(),
        ))
        .unwrap() else {
            panic!("not a segment");
        };
        assert_eq!(m.duration, ms as f64 / 1000.0);
        {
            let back = encode_meta_as(&LiveMessage::Segment(m), SchemaVersion::V2, 0);
            assert!(String::from_utf8(back)
                .unwrap()
                .contains(&format!(r#""duration_ms":{ms},"#)));
        }
    }
}

#[test]
fn other_renditions_are_skipped_by_single_rendition_consumers() {
    let seg = decode_meta(Some(RECORDED_V1[3].as_bytes())).unwrap();
    let v2 = encode_meta_as(&seg, SchemaVersion::V2, 3);
    assert!(matches!(
        decode_meta(Some(&v2)),
        Err(DecodeError::UnservedRendition(3))
    ));
    assert_eq!(decode_record(Some(&v2)).unwrap(), (seg, 3));
}

/// A stream whose segments come from a version-1 origin, then (after the origin was upgraded) from a
/// version-2 one, chunked and reassembled as an edge does.
#[test]
fn a_stream_across_the_upgrade_reassembles_as_one_version() {
    let segments: Vec<Bytes> = (0..4u8)
        .map(|i| Bytes::from(vec![i; 2500 + usize::from(i) * 777]))
        .collect();
    let LiveMessage::Segment(template) = decode_meta(Some(RECORDED_V1[3].as_bytes())).unwrap()
    else {
        panic!("not a segment");
    };
    let run = |versions: [SchemaVersion; 4]| {
        let mut r = Reassembler::new(1 << 20, 8);
        let mut out = Vec::new();
        for (i, (data, version)) in segments.iter().zip(versions).enumerate() {
            let plan = ChunkPlan {
                meta: SegmentMeta {
                    duration: [2.002, 1.998, 2.0, 0.467][i],
                    pts: 90_000 * i as u64,
                    seq: 100 + i as u64,
                    ..template.clone()
                },
                max_chunk_bytes: 1000,
            };
            for (meta, value) in split_segment(plan, data) {
                let header = encode_meta_as(&LiveMessage::Segment(meta), version, 0);
                let LiveMessage::Segment(meta) = decode_meta(Some(&header)).unwrap() else {
                    panic!("not a segment");
                };
                out.extend(r.push(meta, &value).unwrap());
            }
        }
        out
    };
    use SchemaVersion::{V1, V2};
    let before = run([V1; 4]);
    let across = run([V1, V1, V2, V2]);
    assert_eq!(before.len(), 4);
    assert_eq!(across.len(), 4);
    for (a, b) in before.iter().zip(&across) {
        assert_eq!(a.meta, b.meta);
        assert_eq!(a.data, b.data);
    }
    assert_eq!(run([V2; 4]).len(), 4);
}
