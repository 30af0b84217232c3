//! Fuzz targets for every parser in media that reads bytes from the outside, run by the stable-toolchain
//! harness `common::fuzz` (cargo-fuzz needs nightly): FLV tags, the AVC decoder configuration record,
//! the AAC AudioSpecificConfig, the NALU splitter, and the whole RTMP session input path in memory
//! (handshake -> the library's RTMP server session: chunk reader, control messages, AMF0, commands ->
//! segmenter).
//!
//! Seeds live in `fuzz/corpus/<target>/` (made from the fixture by `write_seed_corpus`, ignored).
//! Each target runs 8 s by default; `FUZZ_SECONDS=600 cargo test -p media --test fuzz` runs longer.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use common::fuzz::{self, Target};
use media::remux::aac::AudioSpecificConfig;
use media::remux::avc::{split_nalus, AvcDecoderConfig};
use media::remux::flv::{parse_audio_tag, parse_video_tag};
use media::remux::{Segmenter, SegmenterConfig};
use media::rtmp::handshake::{Handshake, Progress};
use media::rtmp::session::Config;
use media::rtmp::{ChunkReader, Event, ServerSession, MAX_MESSAGE_BYTES};
// rml_rtmp's client side writes the seed, as an independent client would.
use rml_rtmp::chunk_io::ChunkSerializer;
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;
use rml_rtmp::time::RtmpTimestamp;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

fn target(name: &str, max_len: usize, f: impl Fn(&[u8])) {
    let crash_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes");
    let runs = fuzz::run(
        &Target {
            name,
            corpus: &corpus(),
            crash_dir: &crash_dir,
            default_budget: Duration::from_secs(8),
            max_len,
        },
        f,
    );
    assert!(runs > 0);
}

#[test]
fn fuzz_flv_tag() {
    target("flv_tag", 4096, |data| {
        let b = Bytes::copy_from_slice(data);
        let _ = parse_video_tag(&b);
        let _ = parse_audio_tag(&b);
        // The typed tags (legacy and Enhanced RTMP, multitrack, ModEx): every payload is a slice of
        // the body, and the header-only reading agrees with the full parse.
        if let Ok(tag) = media::flv::VideoTag::parse(&b) {
            assert_eq!(Some(tag.header), media::flv::VideoHeader::read(data));
            for t in tag.tracks() {
                if let media::flv::VideoPacket::CodedFrames { data: d, .. }
                | media::flv::VideoPacket::SequenceStart(d) = &t.packet
                {
                    assert!(d.len() < data.len(), "payload longer than its tag");
                }
            }
        }
        if let Ok(tag) = media::flv::AudioTag::parse(&b) {
            let total: usize = tag
                .tracks()
                .map(|t| match &t.packet {
                    media::flv::AudioPacket::CodedFrames(d)
                    | media::flv::AudioPacket::SequenceStart(d)
                    | media::flv::AudioPacket::Raw(d) => d.len(),
                    _ => 0,
                })
                .sum();
            assert!(total < data.len().max(1), "payloads longer than their tag");
        }
    });
}

#[test]
fn fuzz_avc_decoder_configuration_record() {
    target("avc_config", 1024, |data| {
        if let Ok(c) = AvcDecoderConfig::parse(&Bytes::copy_from_slice(data)) {
            let _ = c.codec_string();
        }
    });
}

#[test]
fn fuzz_aac_audio_specific_config() {
    target("aac_asc", 64, |data| {
        if let Ok(asc) = AudioSpecificConfig::parse(data) {
            let _ = asc.codec_string();
            let _ = asc.frame_duration_us();
            for len in [0, 1, 100, 8184, 8185, usize::MAX] {
                let _ = asc.adts_header(len);
            }
        }
    });
}

#[test]
fn fuzz_nalu_splitter() {
    target("nalu_split", 4096, |data| {
        // The first byte picks the NALU length size (1..=4 are legal; others must be refused).
        let Some((&size, rest)) = data.split_first() else {
            return;
        };
        let mut out = Vec::new();
        let b = Bytes::copy_from_slice(rest);
        if split_nalus(&b, size % 6, &mut out).is_ok() {
            let total: usize = out.iter().map(Bytes::len).sum();
            assert!(total <= rest.len(), "NALUs longer than their tag");
        }
    });
}

/// A client handshake (C0, C1, C2) the server completes.
fn handshake_bytes() -> Vec<u8> {
    let mut out = vec![3u8];
    out.extend(std::iter::repeat_n(0u8, 1536 * 2));
    out
}

/// The RTMP session input path, in memory: what `media/src/rtmp_server/connection.rs` does with socket
/// bytes, on the library's real state machine. Input: a mode byte, then client bytes. Mode even: the
/// bytes follow a valid handshake, so mutations spend their time in the chunk stream and session; odd:
/// the bytes include the handshake.
fn rtmp_session(input: &[u8]) -> usize {
    let Some((&mode, rest)) = input.split_first() else {
        return 0;
    };
    let bytes = if mode % 2 == 0 {
        [handshake_bytes().as_slice(), rest].concat()
    } else {
        rest.to_vec()
    };
    let remaining = match Handshake::new().push(&bytes) {
        Ok(Progress::Done { remaining, .. }) => remaining,
        _ => return 0,
    };
    let mut session = ServerSession::new(Config::default()).unwrap();
    let mut client = ChunkReader::new();
    let mut segmenter = Segmenter::new(SegmenterConfig::default());
    let mut media = 0;
    // Feed in uneven pieces, as reads off a socket would come.
    let split = 1 + remaining.first().copied().unwrap_or(0) as usize * 7;
    for piece in remaining.chunks(split) {
        if session.push(piece).is_err() {
            return media;
        }
        loop {
            let event = match session.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(_) => return media,
            };
            // Invariant after every step: what a peer can make us hold is bounded.
            assert!(session.buffered() <= 2 * MAX_MESSAGE_BYTES + split + 64);
            let answered = match event {
                Event::ConnectRequested { request, .. }
                | Event::PublishRequested { request, .. }
                | Event::PlayRequested { request, .. } => session.accept(request),
                Event::Video { timestamp, data } => {
                    media += 1;
                    let _ = segmenter.push_video(timestamp, data);
                    Ok(())
                }
                Event::Audio { timestamp, data } => {
                    media += 1;
                    let _ = segmenter.push_audio(timestamp, data);
                    Ok(())
                }
                _ => Ok(()),
            };
            // A publish or play on a stream never created is refused by `accept`, as by rml_rtmp.
            if answered.is_err() {
                return media;
            }
        }
        // What we answer is a valid chunk stream, whatever the input.
        assert!(client.push(session.output()).is_ok());
        session.clear_output();
    }
    let _ = segmenter.finish();
    media
}

#[test]
fn fuzz_rtmp_session_input() {
    target("rtmp_session", 64 * 1024, |data| {
        rtmp_session(data);
    });
}

/// The seed is a real publish: the fuzz target must get it as far as the segmenter.
#[test]
fn the_rtmp_session_seed_reaches_the_segmenter() {
    let seed = session_seed(40);
    assert_eq!(rtmp_session(&[[1].as_slice(), &seed].concat()), 40);
    assert_eq!(
        rtmp_session(&[[0].as_slice(), &seed[1 + 2 * 1536..]].concat()),
        40
    );
}

fn fixture() -> Vec<support::Tag> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip.flv");
    support::read_flv(&std::fs::read(path).unwrap())
}

fn command(name: &str, txn: f64, object: Amf0Value, args: Vec<Amf0Value>, stream: u32) -> Vec<u8> {
    let payload = RtmpMessage::Amf0Command {
        command_name: name.into(),
        transaction_id: txn,
        command_object: object,
        additional_arguments: args,
    }
    .into_message_payload(RtmpTimestamp::new(0), stream)
    .unwrap();
    ChunkSerializer::new()
        .serialize(&payload, true, false)
        .unwrap()
        .bytes
}

/// Client bytes of a publish: handshake, connect, createStream, publish, then `tags` media messages of
/// the fixture.
fn session_seed(tags: usize) -> Vec<u8> {
    let mut out = handshake_bytes();
    let app = Amf0Value::Object([("app".to_string(), Amf0Value::Utf8String("live".into()))].into());
    out.extend(command("connect", 1.0, app, vec![], 0));
    out.extend(command("createStream", 2.0, Amf0Value::Null, vec![], 0));
    let publish = vec![
        Amf0Value::Utf8String("cam".into()),
        Amf0Value::Utf8String("live".into()),
    ];
    out.extend(command("publish", 3.0, Amf0Value::Null, publish, 1));
    let mut ser = ChunkSerializer::new();
    for t in fixture().into_iter().take(tags) {
        let payload = if t.video {
            RtmpMessage::VideoData { data: t.body }
        } else {
            RtmpMessage::AudioData { data: t.body }
        }
        .into_message_payload(RtmpTimestamp::new(t.ts), 1)
        .unwrap();
        out.extend(ser.serialize(&payload, false, false).unwrap().bytes);
    }
    out
}

/// Writes the seed corpus from the fixture: `cargo test -p media --test fuzz -- --ignored`.
#[test]
#[ignore]
fn write_seed_corpus() {
    let tags = fixture();
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };
    let video: Vec<_> = tags.iter().filter(|t| t.video).collect();
    let audio: Vec<_> = tags.iter().filter(|t| !t.video).collect();
    write("flv_tag", "avc-sequence-header", &video[0].body);
    write(
        "flv_tag",
        "avc-keyframe",
        &video[1].body[..video[1].body.len().min(2048)],
    );
    write(
        "flv_tag",
        "avc-b-frame",
        &video[3].body[..video[3].body.len().min(1024)],
    );
    write("flv_tag", "aac-sequence-header", &audio[0].body);
    write("flv_tag", "aac-frame", &audio[1].body);
    write("avc_config", "fixture", &video[0].body[5..]);
    write("aac_asc", "fixture", &audio[0].body[2..]);
    write("aac_asc", "he-aac-v2", &[0xeb, 0x09, 0x88, 0x00]);
    let mut nalus = vec![4u8];
    nalus.extend_from_slice(&video[1].body[5..video[1].body.len().min(2048)]);
    write("nalu_split", "keyframe-4-byte-lengths", &nalus);
    let mut nalus = vec![4u8];
    nalus.extend_from_slice(&video[3].body[5..]);
    write("nalu_split", "b-frame-4-byte-lengths", &nalus);
    let publish = session_seed(12);
    write(
        "rtmp_session",
        "with-handshake",
        &[[1].as_slice(), &publish[..4000]].concat(),
    );
    write(
        "rtmp_session",
        "publish-12-tags",
        &[[0].as_slice(), &publish[1 + 2 * 1536..]].concat(),
    );
}
