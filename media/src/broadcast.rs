//! One live broadcast: the glue between a publishing RTMP session, the remuxer and the producer.
//! Owns the claim on the stream name, numbers segments, and announces the broadcast's start and end.

use std::time::Duration;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use common::{InitMeta, LiveMessage, PartMeta, SegmentMeta, StreamEnd, StreamStart};
use media::flv::{AudioTag, Metadata, VideoHeader, VideoTag};
use media::keyframes::KeyframeMeter;
use media::remux::{RemuxError, Segment, Segmenter, SegmenterConfig};
use tracing::{info, warn};

use crate::live::{LiveStream, TrackSummary};
use crate::producer::ProducerHandle;
use crate::record::{flv, Recording};
use crate::registry::{unix_ms, Claim};

/// A broadcast in progress.
pub struct Broadcast {
    claim: Claim,
    segmenter: Segmenter,
    producer: ProducerHandle,
    /// Running `#EXT-X-TARGETDURATION`: never below the configured one, raised by any longer segment.
    target_duration: u32,
    segments: u64,
    dropped: u64,
    /// The broadcast's recording (`--record all`); ends when dropped.
    recording: Option<Recording>,
    /// Running `PART-TARGET` in ms: never below the configured one, raised by any longer part.
    part_target_ms: u64,
    /// The init segment the low-latency parts use now, with its metadata (built once, re-sent often).
    init: Option<(InitMeta, Bytes)>,
    /// The publisher's keyframe interval against the segment target.
    keyframes: KeyframeMeter,
}

impl Broadcast {
    /// Starts a broadcast on a claimed name and announces it on the topic.
    /// `part_target` enables the low-latency rendition (fMP4 parts of about that duration).
    pub async fn start(
        claim: Claim,
        producer: ProducerHandle,
        segment: Duration,
        recording: Option<Recording>,
        part_target: Option<Duration>,
    ) -> Self {
        let start = StreamStart {
            stream: claim.stream().to_owned(),
            broadcast: claim.broadcast.clone(),
            started_at_ms: unix_ms(),
            first_seq: claim.peek_seq(),
        };
        if let Err(e) = producer.send_control(LiveMessage::StreamStart(start)).await {
            warn!(error = %e, "stream start not queued");
        }
        let target_ms = segment.as_millis() as u64;
        let mut segmenter = Segmenter::new(SegmenterConfig {
            target_duration_ms: target_ms,
            // A publisher with a huge GOP still gets segments; beyond this they are cut without a keyframe.
            max_duration_ms: (target_ms * 10).max(10_000),
        });
        let part_target_ms = part_target.map_or(0, |p| p.as_millis() as u64);
        if part_target_ms > 0 {
            segmenter.enable_parts(part_target_ms);
        }
        info!(broadcast = %claim.broadcast, first_seq = claim.peek_seq(), "broadcast started");
        Self {
            target_duration: (segment.as_secs_f64().round() as u32).max(1),
            claim,
            segmenter,
            producer,
            segments: 0,
            dropped: 0,
            recording,
            part_target_ms,
            init: None,
            keyframes: KeyframeMeter::new(target_ms),
        }
    }

    /// The stream as players and the control API see it.
    pub fn live(&self) -> &Arc<LiveStream> {
        &self.claim.live
    }

    /// Applies onMetaData: what it announces about the tracks, and passes it on to players.
    pub fn on_metadata(&mut self, metadata: Metadata) {
        self.segmenter.set_expected_tracks(
            Some(metadata.announces_video()),
            Some(metadata.announces_audio()),
        );
        if let Some(r) = &mut self.recording {
            r.metadata(&metadata);
        }
        self.claim.live.publish_metadata(metadata);
    }

    /// One video message from the publisher: parsed once here, its typed tag read by the keyframe
    /// meter and the remuxer; the bytes go unchanged to the recording and the players.
    pub fn on_video(&mut self, timestamp_ms: u32, payload: Bytes) -> Result<(), RemuxError> {
        let header = VideoHeader::read(&payload);
        if let Some(keyframe) = header.and_then(|h| h.coded_keyframe()) {
            if let Some(report) = self.keyframes.frame(u64::from(timestamp_ms), keyframe) {
                if let Some(advice) = report.advice() {
                    warn!(
                        keyframe_interval_ms = report.max_ms,
                        segment_target_ms = report.target_ms,
                        "{advice}: segments cannot be shorter than the publisher's keyframe interval, \
                         so they last that long and every viewer's latency grows with them"
                    );
                }
            }
            // The figures change only on keyframes: the API's copy is updated then, not per frame.
            if keyframe {
                if let Some(report) = self.keyframes.report() {
                    self.claim.live.set_keyframes(report);
                }
            }
        }
        if let Some(r) = &mut self.recording {
            r.tag(flv::VIDEO, timestamp_ms, &payload);
        }
        let tag = VideoTag::parse(&payload);
        self.claim
            .live
            .publish_video(timestamp_ms, payload.clone(), tag.as_ref().ok());
        let closed = match tag {
            Ok(tag) => self.segmenter.push_video_tag(timestamp_ms, tag)?,
            Err(e) => return Err(media::remux::flv::video_error(&payload, e)),
        };
        self.emit_closed(closed);
        Ok(())
    }

    /// One audio message from the publisher.
    pub fn on_audio(&mut self, timestamp_ms: u32, payload: Bytes) -> Result<(), RemuxError> {
        if let Some(r) = &mut self.recording {
            r.tag(flv::AUDIO, timestamp_ms, &payload);
        }
        let tag = AudioTag::parse(&payload);
        self.claim
            .live
            .publish_audio(timestamp_ms, payload.clone(), tag.as_ref().ok());
        let closed = match tag {
            Ok(tag) => self.segmenter.push_audio_tag(timestamp_ms, tag)?,
            Err(e) => return Err(media::remux::flv::audio_error(&payload, e)),
        };
        self.emit_closed(closed);
        Ok(())
    }

    /// Closes the open segment and announces the end; releases the name when dropped.
    pub async fn end(mut self) {
        let closed = self.segmenter.finish();
        self.emit_closed(closed);
        // Ends the recording: its writer finishes the files after the last segment.
        drop(self.recording.take());
        let end = StreamEnd {
            stream: self.claim.stream().to_owned(),
            broadcast: self.claim.broadcast.clone(),
            ended_at_ms: unix_ms(),
            last_seq: self.claim.last_seq(),
        };
        if let Err(e) = self
            .producer
            .send_control(LiveMessage::StreamEnd(end))
            .await
        {
            warn!(error = %e, "stream end not queued");
        }
        info!(
            segments = self.segments,
            dropped = self.dropped,
            "broadcast ended"
        );
    }

    /// Produces what the last push (or the finish) closed: its parts first, then the segment, if any.
    fn emit_closed(&mut self, closed: Option<Segment>) {
        self.emit_parts(closed.as_ref());
        if let Some(seg) = closed {
            self.emit(seg);
        }
    }

    /// Produces the low-latency parts the last push closed, each as soon as it closed. They belong to
    /// `closing` if that push also closed a segment, else to the segment still open; either way the
    /// one [`Claim::next`] numbers next, so they go out before it.
    fn emit_parts(&mut self, closing: Option<&Segment>) {
        let parts = self.segmenter.take_parts();
        if parts.is_empty() {
            return;
        }
        let discontinuity = closing.map_or_else(
            || self.segmenter.open_segment_discontinuous(),
            |s| s.discontinuity,
        );
        let n = self.claim.peek(discontinuity);
        for part in parts {
            if let Some(init) = part.init {
                let meta = InitMeta {
                    stream: self.claim.stream().to_owned(),
                    broadcast: self.claim.broadcast.clone(),
                    init: n.seq,
                    codecs: self.segmenter.tracks().codecs(),
                    size: init.len() as u64,
                    crc32: crc32fast::hash(&init),
                };
                self.init = Some((meta, init));
            }
            let Some((init_meta, init)) = &self.init else {
                continue; // unreachable: the first part always carries an init
            };
            let init_id = init_meta.init;
            // The init goes out again before every segment's first part (it is under a kilobyte):
            // an edge that starts mid-broadcast reads only the last seconds of the topic.
            if part.index == 0 {
                if let Err(e) = self
                    .producer
                    .send_single(LiveMessage::Init(init_meta.clone()), init.clone())
                {
                    warn!(seq = n.seq, error = %e, "init segment of the low-latency rendition dropped");
                }
            }
            self.part_target_ms = self.part_target_ms.max(part.duration_ms);
            let meta = PartMeta {
                stream: self.claim.stream().to_owned(),
                broadcast: self.claim.broadcast.clone(),
                seq: n.seq,
                part: part.index,
                duration: part.duration_ms as f64 / 1000.0,
                independent: part.independent,
                last: part.last,
                disc_seq: n.disc_seq,
                discontinuity: n.discontinuity,
                init: init_id,
                target_duration: self.target_duration,
                part_target: self.part_target_ms as f64 / 1000.0,
                closed_at_ms: unix_ms(),
                size: part.data.len() as u64,
                crc32: crc32fast::hash(&part.data),
            };
            if let Err(e) = self
                .producer
                .send_single(LiveMessage::Part(meta), part.data)
            {
                warn!(seq = n.seq, part = part.index, error = %e, "low-latency part dropped");
            }
        }
    }

    fn emit(&mut self, seg: Segment) {
        let n = self.claim.next(seg.discontinuity);
        let duration = seg.duration_ms as f64 / 1000.0;
        self.target_duration = self.target_duration.max(duration.round() as u32);
        let meta = SegmentMeta {
            stream: self.claim.stream().to_owned(),
            broadcast: self.claim.broadcast.clone(),
            seq: n.seq,
            disc_seq: n.disc_seq,
            discontinuity: n.discontinuity,
            duration,
            target_duration: self.target_duration,
            pts: seg.start_pts,
            closed_at_ms: unix_ms(),
            codecs: self.segmenter.tracks().codecs(),
            // Filled in per chunk by the producer.
            size: 0,
            crc32: 0,
            chunk: 0,
            chunks: 0,
            offset: 0,
        };
        tracing::debug!(
            seq = n.seq,
            bytes = seg.data.len(),
            duration,
            "segment closed"
        );
        self.segments += 1;
        let tracks = self.segmenter.tracks();
        let live = &self.claim.live;
        live.segments.fetch_add(1, Ordering::Relaxed);
        live.set_tracks(TrackSummary {
            codecs: tracks.codecs(),
            width: tracks.video.as_ref().and_then(|v| v.width),
            height: tracks.video.as_ref().and_then(|v| v.height),
        });
        if let Some(r) = &mut self.recording {
            r.segment(&seg.data, duration, n.discontinuity);
        }
        if let Err(e) = self.producer.send_segment(meta, seg.data) {
            self.dropped += 1;
            warn!(seq = n.seq, error = %e, "segment dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use media::flv::VideoHeader;

    /// The keyframe meter's reading of a body (what `coded_frame_is_keyframe` answered before tags
    /// were typed).
    fn coded_frame_is_keyframe(body: &[u8]) -> Option<bool> {
        VideoHeader::read(body).and_then(|h| h.coded_keyframe())
    }

    #[test]
    fn keyframes_are_told_from_headers_of_both_flv_flavours() {
        assert_eq!(coded_frame_is_keyframe(&[0x17, 1, 0, 0, 0]), Some(true));
        assert_eq!(coded_frame_is_keyframe(&[0x27, 1, 0, 0, 0]), Some(false));
        assert_eq!(
            coded_frame_is_keyframe(&[0x17, 0, 0, 0, 0]),
            None,
            "sequence header"
        );
        assert_eq!(coded_frame_is_keyframe(&[0x17, 2]), None, "end of sequence");
        assert_eq!(coded_frame_is_keyframe(&[0x57, 0]), None, "command frame");
        // Enhanced RTMP (HEVC): keyframe CodedFramesX, inter CodedFrames, SequenceStart.
        assert_eq!(
            coded_frame_is_keyframe(&[0x93, b'h', b'v', b'c', b'1']),
            Some(true)
        );
        assert_eq!(
            coded_frame_is_keyframe(&[0xa1, b'h', b'v', b'c', b'1']),
            Some(false)
        );
        assert_eq!(
            coded_frame_is_keyframe(&[0x90, b'h', b'v', b'c', b'1']),
            None
        );
        assert_eq!(coded_frame_is_keyframe(&[]), None);
        assert_eq!(coded_frame_is_keyframe(&[0x17]), None);
    }
}
