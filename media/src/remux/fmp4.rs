//! Fragmented MP4 (ISO/IEC 14496-12, CMAF-style) for the low-latency HLS rendition: an initialization
//! segment (`ftyp` + `moov` with `mvex`) and media fragments (`moof` + `mdat`). Pure: bytes out, no I/O.
//!
//! Samples are stored as received from FLV: H.264 access units as length-prefixed NAL units (the
//! `avcC` declares the prefix size, ISO/IEC 14496-15 5.3.3), AAC as raw frames (the `esds` carries the
//! AudioSpecificConfig, ISO/IEC 14496-3 1.6.2.1). Nothing is converted, so a part costs one copy.

use bytes::{BufMut, Bytes, BytesMut};

#[cfg(test)]
use super::codec::{aac::AudioSpecificConfig, avc::AvcDecoderConfig};
use super::codec::{MediaKind, TrackConfig};

/// `sample_depends_on = 2` (an I-frame / sync sample), ISO/IEC 14496-12 8.8.3.1.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_depends_on = 1`, `sample_is_non_sync_sample = 1`.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// The unity matrix of `mvhd`/`tkhd` (ISO/IEC 14496-12 8.2.2.3).
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// One track an initialization segment declares.
#[derive(Debug, Clone, Copy)]
pub struct InitTrack<'a> {
    /// Its `track_ID`.
    pub track_id: u32,
    /// Its decoder configuration (its codec writes the sample entry, its kind picks the handler).
    pub config: &'a dyn TrackConfig,
}

/// One sample of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Decode time in the track's timescale.
    pub decode_time: u64,
    /// Duration in the track's timescale.
    pub duration: u32,
    /// Presentation minus decode time in the track's timescale: signed, because the video's decode
    /// times are shifted so its first keyframe is presented at its decode time (see
    /// [`super::parts`]), which puts B-frames presented before their shifted decode time below zero.
    pub composition_offset: i32,
    /// A random access point (H.264 IDR; every AAC frame).
    pub sync: bool,
    /// The sample's bytes.
    pub data: Bytes,
}

/// The samples of one track in a fragment, in decode order.
#[derive(Debug, Clone, Copy)]
pub struct TrackRun<'a> {
    /// The track's `track_ID`.
    pub track_id: u32,
    /// At least one sample; runs without samples are left out of the fragment.
    pub samples: &'a [Sample],
}

/// Writes a box: 32-bit size, type, then what `body` writes.
pub(crate) fn boxed(out: &mut BytesMut, kind: &[u8; 4], body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    body(out);
    // Boxes here are far below 4 GiB: a fragment is one part of a segment.
    let size = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Writes a full box (version and 24-bit flags after the type).
pub(crate) fn full_box(
    out: &mut BytesMut,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut BytesMut),
) {
    boxed(out, kind, |out| {
        out.put_u32(u32::from(version) << 24 | (flags & 0x00ff_ffff));
        body(out);
    });
}

/// The initialization segment (`ftyp` + `moov`) for `tracks` (ISO/IEC 14496-12 8.1-8.8, with `mvex`
/// announcing that samples come in movie fragments); `next_track_id` is one above the stream's
/// highest track id.
pub fn init_segment(tracks: &[InitTrack<'_>], next_track_id: u32) -> Bytes {
    let mut out = BytesMut::with_capacity(1024);
    boxed(&mut out, b"ftyp", |out| {
        out.put_slice(b"iso6");
        out.put_u32(0);
        for brand in [b"iso6", b"cmfc", b"isom", b"mp41"] {
            out.put_slice(brand);
        }
    });
    boxed(&mut out, b"moov", |out| {
        full_box(out, b"mvhd", 0, 0, |out| {
            out.put_u32(0); // creation_time
            out.put_u32(0); // modification_time
            out.put_u32(1000); // timescale
            out.put_u32(0); // duration: unknown, fragments follow
            out.put_u32(0x0001_0000); // rate 1.0
            out.put_u16(0x0100); // volume 1.0
            out.put_bytes(0, 10);
            MATRIX.iter().for_each(|m| out.put_u32(*m));
            out.put_bytes(0, 24); // pre_defined
            out.put_u32(next_track_id); // next_track_ID
        });
        for track in tracks {
            match track.config.codec().kind {
                MediaKind::Video => video_trak(out, track.track_id, track.config),
                MediaKind::Audio => audio_trak(out, track.track_id, track.config),
            }
        }
        boxed(out, b"mvex", |out| {
            for id in tracks.iter().map(|t| t.track_id) {
                full_box(out, b"trex", 0, 0, |out| {
                    out.put_u32(id);
                    out.put_u32(1); // default_sample_description_index
                    out.put_u32(0); // default_sample_duration
                    out.put_u32(0); // default_sample_size
                    out.put_u32(0); // default_sample_flags
                });
            }
        });
    });
    out.freeze()
}

fn tkhd(out: &mut BytesMut, track_id: u32, audio: bool, width: u32, height: u32) {
    // flags: track_enabled | track_in_movie
    full_box(out, b"tkhd", 0, 3, |out| {
        out.put_u32(0); // creation_time
        out.put_u32(0); // modification_time
        out.put_u32(track_id);
        out.put_u32(0); // reserved
        out.put_u32(0); // duration
        out.put_bytes(0, 8);
        out.put_u16(0); // layer
        out.put_u16(0); // alternate_group
        out.put_u16(if audio { 0x0100 } else { 0 }); // volume
        out.put_u16(0);
        MATRIX.iter().for_each(|m| out.put_u32(*m));
        out.put_u32(width << 16); // 16.16 fixed point
        out.put_u32(height << 16);
    });
}

fn mdhd_hdlr(out: &mut BytesMut, timescale: u32, handler: &[u8; 4], name: &[u8]) {
    full_box(out, b"mdhd", 0, 0, |out| {
        out.put_u32(0);
        out.put_u32(0);
        out.put_u32(timescale);
        out.put_u32(0);
        out.put_u16(0x55c4); // language "und", ISO 639-2/T packed
        out.put_u16(0);
    });
    full_box(out, b"hdlr", 0, 0, |out| {
        out.put_u32(0); // pre_defined
        out.put_slice(handler);
        out.put_bytes(0, 12);
        out.put_slice(name);
        out.put_u8(0);
    });
}

/// `dinf` (media in the same file) and an `stbl` with the sample entry and empty sample tables: the
/// samples are all in fragments.
fn dinf_stbl(out: &mut BytesMut, sample_entry: impl FnOnce(&mut BytesMut)) {
    boxed(out, b"dinf", |out| {
        full_box(out, b"dref", 0, 0, |out| {
            out.put_u32(1);
            full_box(out, b"url ", 0, 1, |_| {}); // flags 1: self-contained
        });
    });
    boxed(out, b"stbl", |out| {
        full_box(out, b"stsd", 0, 0, |out| {
            out.put_u32(1);
            sample_entry(out);
        });
        for kind in [b"stts", b"stsc", b"stco"] {
            full_box(out, kind, 0, 0, |out| out.put_u32(0));
        }
        full_box(out, b"stsz", 0, 0, |out| {
            out.put_u32(0); // sample_size
            out.put_u32(0); // sample_count
        });
    });
}

fn video_trak(out: &mut BytesMut, track_id: u32, config: &dyn TrackConfig) {
    let (width, height) = config.dimensions().unwrap_or((0, 0));
    boxed(out, b"trak", |out| {
        tkhd(out, track_id, false, width, height);
        boxed(out, b"mdia", |out| {
            mdhd_hdlr(out, config.timescale(), b"vide", b"VideoHandler");
            boxed(out, b"minf", |out| {
                full_box(out, b"vmhd", 0, 1, |out| out.put_bytes(0, 8));
                dinf_stbl(out, |out| {
                    config.write_sample_entry(out);
                });
            });
        });
    });
}

fn audio_trak(out: &mut BytesMut, track_id: u32, config: &dyn TrackConfig) {
    let timescale = config.timescale();
    boxed(out, b"trak", |out| {
        tkhd(out, track_id, true, 0, 0);
        boxed(out, b"mdia", |out| {
            mdhd_hdlr(out, timescale, b"soun", b"SoundHandler");
            boxed(out, b"minf", |out| {
                full_box(out, b"smhd", 0, 0, |out| out.put_u32(0));
                dinf_stbl(out, |out| {
                    config.write_sample_entry(out);
                });
            });
        });
    });
}

/// Size of a `traf` with `samples` samples as [`fragment`] writes it: `tfhd` (16), `tfdt` version 1
/// (20), `trun` with four fields per sample (20 + 16 each), in an 8-byte header.
fn traf_len(samples: usize) -> usize {
    8 + 16 + 20 + 20 + 16 * samples
}

/// One movie fragment (`moof` + `mdat`) with `runs` in order; runs without samples are skipped.
/// `sequence` is the `mfhd` sequence number, increasing by one per fragment of a stream.
///
/// The `moof`'s size is computed first, so every `trun` gets its data offset as it is written: no
/// patching pass and no list of fields to patch (a fragment costs one allocation, its own bytes).
pub fn fragment<'a, I>(sequence: u32, runs: I) -> Bytes
where
    I: Iterator<Item = TrackRun<'a>> + Clone,
{
    let runs = runs.filter(|r| !r.samples.is_empty());
    let media_len: usize = runs
        .clone()
        .flat_map(|r| r.samples.iter())
        .map(|s| s.data.len())
        .sum();
    let moof_len = 8
        + 16
        + runs
            .clone()
            .map(|r| traf_len(r.samples.len()))
            .sum::<usize>();
    let mut out = BytesMut::with_capacity(moof_len + 8 + media_len);
    let mut data_start = moof_len + 8; // mdat header
    boxed(&mut out, b"moof", |out| {
        full_box(out, b"mfhd", 0, 0, |out| out.put_u32(sequence));
        for run in runs.clone() {
            boxed(out, b"traf", |out| {
                // default-base-is-moof: data offsets count from this fragment's moof (CMAF).
                full_box(out, b"tfhd", 0, 0x02_0000, |out| out.put_u32(run.track_id));
                full_box(out, b"tfdt", 1, 0, |out| {
                    out.put_u64(run.samples.first().map_or(0, |s| s.decode_time));
                });
                // data-offset, sample duration, size, flags, composition time offset present; version 1:
                // the offsets are signed (ISO/IEC 14496-12 8.8.8).
                full_box(
                    out,
                    b"trun",
                    1,
                    0x0001 | 0x0100 | 0x0200 | 0x0400 | 0x0800,
                    |out| {
                        out.put_u32(u32::try_from(run.samples.len()).unwrap_or(u32::MAX));
                        out.put_u32(u32::try_from(data_start).unwrap_or(u32::MAX));
                        for s in run.samples {
                            out.put_u32(s.duration);
                            out.put_u32(u32::try_from(s.data.len()).unwrap_or(u32::MAX));
                            out.put_u32(if s.sync {
                                SYNC_SAMPLE_FLAGS
                            } else {
                                NON_SYNC_SAMPLE_FLAGS
                            });
                            out.put_i32(s.composition_offset);
                            data_start += s.data.len();
                        }
                    },
                );
            });
        }
    });
    debug_assert_eq!(out.len(), moof_len, "traf_len matches what is written");
    boxed(&mut out, b"mdat", |out| {
        for s in runs.flat_map(|r| r.samples.iter()) {
            out.put_slice(&s.data);
        }
    });
    out.freeze()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VIDEO_TRACK_ID: u32 = 1;
    const AUDIO_TRACK_ID: u32 = 2;

    /// The boxes at the top of `data`: (type, size), checking that sizes tile the buffer exactly.
    fn top_boxes(data: &[u8]) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            assert!(
                size >= 8 && pos + size <= data.len(),
                "box at {pos} of {size}"
            );
            out.push((
                String::from_utf8_lossy(&data[pos + 4..pos + 8]).into_owned(),
                size,
            ));
            pos += size;
        }
        out
    }

    fn find(data: &[u8], kind: &[u8; 4]) -> usize {
        data.windows(4).position(|w| w == kind).unwrap() - 4
    }

    fn avc() -> AvcDecoderConfig {
        let record = Bytes::from_static(&[
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xeb,
        ]);
        AvcDecoderConfig::parse(&record).unwrap()
    }

    /// A reader for what [`fragment`] writes, written from ISO/IEC 14496-12 8.8 rather than from the
    /// writer: `(track_id, samples)` per `traf`, sample bytes taken from where `trun` points.
    fn read_fragment(frag: &[u8]) -> Vec<(u32, Vec<Sample>)> {
        let be32 = |at: usize| u32::from_be_bytes(frag[at..at + 4].try_into().unwrap());
        let boxes = top_boxes(frag);
        assert_eq!(boxes.len(), 2);
        let moof_len = boxes[0].1;
        let mut out = Vec::new();
        let mut pos = 8 + 16; // moof header, mfhd
        while pos < moof_len {
            let traf_end = pos + be32(pos) as usize;
            assert_eq!(&frag[pos + 4..pos + 8], b"traf");
            let tfhd = pos + 8;
            assert_eq!(&frag[tfhd + 4..tfhd + 8], b"tfhd");
            assert_eq!(
                be32(tfhd + 8) & 0xff_ffff,
                0x02_0000,
                "default-base-is-moof only"
            );
            let track_id = be32(tfhd + 12);
            let tfdt = tfhd + be32(tfhd) as usize;
            let base = u64::from_be_bytes(frag[tfdt + 12..tfdt + 20].try_into().unwrap());
            let trun = tfdt + be32(tfdt) as usize;
            assert_eq!(&frag[trun + 4..trun + 8], b"trun");
            let count = be32(trun + 12) as usize;
            let mut data_at = be32(trun + 16) as usize; // from the moof's first byte
            let mut t = base;
            let mut samples = Vec::new();
            for i in 0..count {
                let e = trun + 20 + i * 16;
                assert_eq!(frag[trun + 8], 1, "trun version 1 (signed offsets)");
                let (duration, size, flags, cts) =
                    (be32(e), be32(e + 4), be32(e + 8), be32(e + 12) as i32);
                samples.push(Sample {
                    decode_time: t,
                    duration,
                    composition_offset: cts,
                    sync: flags & 0x0001_0000 == 0,
                    data: Bytes::copy_from_slice(&frag[data_at..data_at + size as usize]),
                });
                t += u64::from(duration);
                data_at += size as usize;
            }
            assert_eq!(trun + 20 + count * 16, traf_end);
            out.push((track_id, samples));
            pos = traf_end;
        }
        out
    }

    fn arb_samples() -> impl Strategy<Value = Vec<Sample>> {
        prop::collection::vec(
            (
                1u32..10_000,
                -20_000i32..20_000,
                any::<bool>(),
                prop::collection::vec(any::<u8>(), 0..300),
            ),
            0..20,
        )
        .prop_map(|raw| {
            let mut t = 1_000_000u64;
            raw.into_iter()
                .map(|(duration, cts, sync, data)| {
                    let s = Sample {
                        decode_time: t,
                        duration,
                        composition_offset: cts,
                        sync,
                        data: Bytes::from(data),
                    };
                    t += u64::from(duration);
                    s
                })
                .collect()
        })
    }

    proptest! {
        /// Whatever the samples, the fragment reads back to exactly them, track by track.
        #[test]
        fn fragments_read_back_to_their_samples(video in arb_samples(), audio in arb_samples()) {
            let frag = fragment(3, [
                TrackRun { track_id: VIDEO_TRACK_ID, samples: &video },
                TrackRun { track_id: AUDIO_TRACK_ID, samples: &audio },
            ].into_iter());
            let expected: Vec<(u32, Vec<Sample>)> = [(VIDEO_TRACK_ID, video), (AUDIO_TRACK_ID, audio)]
                .into_iter()
                .filter(|(_, s)| !s.is_empty())
                .collect();
            prop_assert_eq!(read_fragment(&frag), expected);
        }
    }

    #[test]
    fn init_segment_is_ftyp_then_moov_with_both_tracks() {
        let asc = AudioSpecificConfig::parse(&[0x11, 0x90]).unwrap(); // AAC-LC 48 kHz stereo
        let avc = avc();
        let init = init_segment(
            &[
                InitTrack {
                    track_id: VIDEO_TRACK_ID,
                    config: &avc,
                },
                InitTrack {
                    track_id: AUDIO_TRACK_ID,
                    config: &asc,
                },
            ],
            3,
        );
        let boxes = top_boxes(&init);
        assert_eq!(boxes[0].0, "ftyp");
        assert_eq!(boxes[1].0, "moov");
        assert_eq!(boxes.len(), 2);
        // The avcC is the record we were given, rebuilt byte for byte.
        let at = find(&init, b"avcC");
        assert_eq!(
            &init[at + 8..at + 8 + 17],
            &[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xeb]
        );
        // The esds carries the AudioSpecificConfig.
        let at = find(&init, b"esds");
        assert!(init[at..].windows(4).any(|w| w == [0x05, 2, 0x11, 0x90]));
        // Two trex, one per track.
        assert_eq!(init.windows(4).filter(|w| w == b"trex").count(), 2);
        assert_eq!(init.windows(4).filter(|w| w == b"trak").count(), 2);
    }

    #[test]
    fn fragment_offsets_point_at_each_tracks_samples() {
        let video = [
            Sample {
                decode_time: 900,
                duration: 3000,
                composition_offset: 6000,
                sync: true,
                data: Bytes::from_static(b"vvvv"),
            },
            Sample {
                decode_time: 3900,
                duration: 3000,
                composition_offset: 0,
                sync: false,
                data: Bytes::from_static(b"ww"),
            },
        ];
        let audio = [Sample {
            decode_time: 480,
            duration: 1024,
            composition_offset: 0,
            sync: true,
            data: Bytes::from_static(b"aaa"),
        }];
        let frag = fragment(
            7,
            [
                TrackRun {
                    track_id: VIDEO_TRACK_ID,
                    samples: &video,
                },
                TrackRun {
                    track_id: AUDIO_TRACK_ID,
                    samples: &[],
                },
                TrackRun {
                    track_id: AUDIO_TRACK_ID,
                    samples: &audio,
                },
            ]
            .into_iter(),
        );
        let boxes = top_boxes(&frag);
        assert_eq!(
            boxes.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
            ["moof", "mdat"]
        );
        assert_eq!(frag.windows(4).filter(|w| w == b"traf").count(), 2);
        let mut offsets = Vec::new();
        let mut pos = 0;
        while let Some(at) = frag[pos..].windows(4).position(|w| w == b"trun") {
            let trun = pos + at + 4; // after the type
            let count = u32::from_be_bytes(frag[trun + 4..trun + 8].try_into().unwrap());
            let offset = u32::from_be_bytes(frag[trun + 8..trun + 12].try_into().unwrap());
            offsets.push((count, offset as usize));
            pos = trun;
        }
        assert_eq!(offsets.len(), 2);
        assert_eq!(&frag[offsets[0].1..offsets[0].1 + 6], b"vvvvww");
        assert_eq!(&frag[offsets[1].1..offsets[1].1 + 3], b"aaa");
        assert_eq!((offsets[0].0, offsets[1].0), (2, 1));
        // tfdt v1 of the video run holds the first decode time.
        let tfdt = find(&frag, b"tfdt");
        assert_eq!(frag[tfdt + 8], 1);
        assert_eq!(
            u64::from_be_bytes(frag[tfdt + 12..tfdt + 20].try_into().unwrap()),
            900
        );
        let mfhd = find(&frag, b"mfhd");
        assert_eq!(&frag[mfhd + 12..mfhd + 16], &7u32.to_be_bytes());
    }
}
