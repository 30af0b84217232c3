//! A live stream as the rest of the server sees it: who publishes it, its counters for the control API,
//! how to kick its publisher, and the fan-out of its RTMP messages to players.
//!
//! Players never slow the publisher. Each player has a bounded queue that the publisher fills with
//! `try_send`; when it is full the player starts skipping video until the next keyframe (so its decoder
//! never sees a frame whose references were dropped), and a player that keeps falling behind is
//! disconnected. A new player starts from the GOP cache: the sequence headers and every message since the
//! last keyframe, so its first video frame is a keyframe and the picture appears at once.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use media::flv::{AudioTag, FrameType, Metadata, VideoHeader, VideoTag};
use media::keyframes::KeyframeReport;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Messages queued per player before it starts dropping.
pub const PLAYER_QUEUE: usize = 1024;
/// Overflow episodes (queue full while already skipping to a keyframe) before a player is disconnected.
const MAX_OVERFLOWS: u32 = 8;
/// Bound of the GOP cache, in bytes; a publisher with an enormous GOP gets a partial cache, not a leak.
const GOP_CACHE_BYTES: usize = 32 << 20;

/// One message for players.
#[derive(Debug, Clone)]
pub enum Frame {
    /// `onMetaData`.
    Metadata(Arc<Metadata>),
    /// An FLV VIDEODATA body at an RTMP timestamp.
    Video { timestamp: u32, data: Bytes },
    /// An FLV AUDIODATA body at an RTMP timestamp.
    Audio { timestamp: u32, data: Bytes },
}

/// The GOP cache's keyframe test: the tag's frame type, in a legacy or an extended header.
fn is_keyframe(data: &[u8]) -> bool {
    VideoHeader::read(data).is_some_and(|h| h.frame_type == FrameType::Key)
}

/// A decoder configuration (AVC sequence header, or any codec's `SequenceStart`).
#[cfg(test)]
fn is_video_config(data: &[u8]) -> bool {
    VideoTag::parse(&Bytes::copy_from_slice(data)).is_ok_and(|t| t.is_sequence_start())
}

struct Player {
    tx: mpsc::Sender<Frame>,
    skipping: bool,
    overflows: u32,
}

#[derive(Default)]
struct Hub {
    metadata: Option<Arc<Metadata>>,
    video_config: Option<Frame>,
    audio_config: Option<Frame>,
    gop: Vec<Frame>,
    gop_bytes: usize,
    players: Vec<Player>,
}

/// What the control API shows about the tracks.
#[derive(Debug, Clone, Default)]
pub struct TrackSummary {
    pub codecs: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// A live stream.
pub struct LiveStream {
    pub name: String,
    pub app: String,
    pub client_addr: String,
    pub broadcast: String,
    pub started_at_ms: u64,
    started: Instant,
    /// Cancelled to end the broadcast from outside (control API).
    pub kick: CancellationToken,
    bytes_in: AtomicU64,
    pub segments: AtomicU64,
    players: AtomicUsize,
    tracks: Mutex<TrackSummary>,
    /// The publisher's recent keyframe interval, once two keyframes were seen.
    keyframes: Mutex<Option<KeyframeReport>>,
    rate: Mutex<(Instant, u64, u64)>,
    hub: Mutex<Hub>,
}

impl LiveStream {
    /// A stream that just started.
    pub fn new(
        name: &str,
        app: &str,
        client_addr: String,
        broadcast: String,
        started_at_ms: u64,
    ) -> Self {
        Self {
            name: name.to_owned(),
            app: app.to_owned(),
            client_addr,
            broadcast,
            started_at_ms,
            started: Instant::now(),
            kick: CancellationToken::new(),
            bytes_in: AtomicU64::new(0),
            segments: AtomicU64::new(0),
            players: AtomicUsize::new(0),
            tracks: Mutex::new(TrackSummary::default()),
            keyframes: Mutex::new(None),
            rate: Mutex::new((Instant::now(), 0, 0)),
            hub: Mutex::new(Hub::default()),
        }
    }

    fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Players connected now.
    pub fn players(&self) -> usize {
        self.players.load(Ordering::Relaxed)
    }

    /// Seconds since the broadcast started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Ingest bit rate over the last few seconds.
    pub fn ingest_bps(&self) -> u64 {
        let total = self.bytes_in.load(Ordering::Relaxed);
        let mut rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        let (since, bytes_then, last_bps) = *rate;
        let dt = since.elapsed().as_secs_f64();
        if dt >= 2.0 {
            let bps = ((total - bytes_then) as f64 * 8.0 / dt) as u64;
            *rate = (Instant::now(), total, bps);
            bps
        } else if last_bps == 0 && dt > 0.2 {
            ((total - bytes_then) as f64 * 8.0 / dt) as u64
        } else {
            last_bps
        }
    }

    /// Records the publisher's recent keyframe interval.
    pub fn set_keyframes(&self, report: KeyframeReport) {
        *self.keyframes.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
    }

    /// The publisher's recent keyframe interval against the segment target, once measured.
    pub fn keyframes(&self) -> Option<KeyframeReport> {
        *self.keyframes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Updates what the API reports about the tracks.
    pub fn set_tracks(&self, summary: TrackSummary) {
        *self.tracks.lock().unwrap_or_else(|e| e.into_inner()) = summary;
    }

    /// What the API reports about the tracks.
    pub fn tracks(&self) -> TrackSummary {
        self.tracks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publisher side: new metadata.
    pub fn publish_metadata(&self, metadata: Metadata) {
        let m = Arc::new(metadata);
        let mut hub = self.hub();
        hub.metadata = Some(m.clone());
        fan_out(&mut hub.players, &Frame::Metadata(m), true);
    }

    /// Publisher side: one video or audio message, its tag parsed here (tests).
    #[cfg(test)]
    pub fn publish_media(&self, frame: Frame) {
        match &frame {
            Frame::Video { timestamp, data } => {
                let tag = VideoTag::parse(data).ok();
                self.publish_video(*timestamp, data.clone(), tag.as_ref());
            }
            Frame::Audio { timestamp, data } => {
                let tag = AudioTag::parse(data).ok();
                self.publish_audio(*timestamp, data.clone(), tag.as_ref());
            }
            Frame::Metadata(_) => self.count_players(),
        }
    }

    /// Publisher side: one video message and its typed tag (`None`: it did not parse).
    pub fn publish_video(&self, timestamp: u32, data: Bytes, tag: Option<&VideoTag>) {
        let config = tag.is_some_and(VideoTag::is_sequence_start);
        let keyframe = is_keyframe(&data);
        self.publish(Frame::Video { timestamp, data }, true, config, keyframe);
    }

    /// Publisher side: one audio message and its typed tag.
    pub fn publish_audio(&self, timestamp: u32, data: Bytes, tag: Option<&AudioTag>) {
        let config = tag.is_some_and(AudioTag::is_sequence_start);
        self.publish(Frame::Audio { timestamp, data }, false, config, false);
    }

    fn publish(&self, frame: Frame, video: bool, config: bool, keyframe: bool) {
        let (Frame::Video { data, .. } | Frame::Audio { data, .. }) = &frame else {
            return;
        };
        self.bytes_in
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let len = data.len();
        let mut hub = self.hub();
        if config && video {
            hub.video_config = Some(frame.clone());
        } else if config {
            hub.audio_config = Some(frame.clone());
        } else {
            if keyframe {
                hub.gop.clear();
                hub.gop_bytes = 0;
            }
            // Until the first keyframe the cache would start with undecodable frames: keep it empty.
            if (keyframe || !hub.gop.is_empty()) && hub.gop_bytes + len <= GOP_CACHE_BYTES {
                hub.gop_bytes += len;
                hub.gop.push(frame.clone());
            }
        }
        if hub.players.is_empty() {
            return;
        }
        fan_out(&mut hub.players, &frame, !video || keyframe);
        let n = hub.players.len();
        drop(hub);
        self.players.store(n, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn count_players(&self) {
        let n = self.hub().players.len();
        self.players.store(n, Ordering::Relaxed);
    }

    /// Ends the fan-out: every player's queue closes once drained, ending its session.
    pub fn close(&self) {
        self.hub().players.clear();
        self.players.store(0, Ordering::Relaxed);
    }

    /// Player side: subscribes, receiving the cached start (metadata, configs, current GOP) first.
    pub fn subscribe(&self) -> mpsc::Receiver<Frame> {
        let (tx, rx) = mpsc::channel(PLAYER_QUEUE);
        let mut hub = self.hub();
        let start = hub
            .metadata
            .clone()
            .map(Frame::Metadata)
            .into_iter()
            .chain(hub.video_config.clone())
            .chain(hub.audio_config.clone())
            .chain(hub.gop.iter().cloned());
        let mut ok = true;
        for f in start {
            ok &= tx.try_send(f).is_ok();
        }
        hub.players.push(Player {
            tx,
            // A cache larger than the queue leaves the player mid-GOP: have it wait for a keyframe.
            skipping: !ok,
            overflows: 0,
        });
        let n = hub.players.len();
        drop(hub);
        self.players.store(n, Ordering::Relaxed);
        rx
    }
}

/// Sends a frame to every player, dropping (and then disconnecting) the ones that cannot keep up.
/// `resync` marks frames a skipping player may restart from (keyframes, audio, metadata).
fn fan_out(players: &mut Vec<Player>, frame: &Frame, resync: bool) {
    let is_video = matches!(frame, Frame::Video { .. });
    players.retain_mut(|p| {
        if p.skipping && is_video && !resync {
            return true;
        }
        match p.tx.try_send(frame.clone()) {
            Ok(()) => {
                if is_video && resync {
                    p.skipping = false;
                }
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                if p.skipping {
                    p.overflows += 1;
                }
                p.skipping = true;
                // Dropping the sender ends the player's session: it is too slow for this stream.
                p.overflows < MAX_OVERFLOWS
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(key: bool, ts: u32) -> Frame {
        Frame::Video {
            timestamp: ts,
            data: Bytes::from(vec![if key { 0x17 } else { 0x27 }, 1, 0, 0, 0, 9]),
        }
    }

    fn stream() -> LiveStream {
        LiveStream::new("s", "live", "127.0.0.1".into(), "b".into(), 0)
    }

    #[test]
    fn a_new_player_starts_with_config_and_a_keyframe() {
        let s = stream();
        s.publish_media(Frame::Video {
            timestamp: 0,
            data: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]),
        });
        s.publish_media(video(false, 10)); // before any keyframe: not cached
        s.publish_media(video(true, 20));
        s.publish_media(video(false, 53));
        let mut rx = s.subscribe();
        let first: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(first.len(), 3);
        assert!(matches!(&first[0], Frame::Video { data, .. } if is_video_config(data)));
        assert!(matches!(&first[1], Frame::Video { timestamp: 20, data } if is_keyframe(data)));
    }

    #[test]
    fn the_gop_cache_reads_enhanced_rtmp_headers() {
        // An extended header's keyframe byte is 0x9X: the cache must still start at it.
        let s = stream();
        s.publish_media(Frame::Video {
            timestamp: 0,
            data: Bytes::from_static(b"\x90hvc1\x01\x02"),
        });
        s.publish_media(Frame::Video {
            timestamp: 0,
            data: Bytes::from_static(b"\xa1hvc1\x00\x00\x00\x01"),
        }); // before any keyframe: not cached
        s.publish_media(Frame::Video {
            timestamp: 20,
            data: Bytes::from_static(b"\x93hvc1\x02"),
        });
        let mut rx = s.subscribe();
        let first: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(first.len(), 2);
        assert!(matches!(&first[0], Frame::Video { data, .. } if is_video_config(data)));
        assert!(matches!(&first[1], Frame::Video { timestamp: 20, data } if is_keyframe(data)));
    }

    #[test]
    fn a_slow_player_skips_to_keyframes_then_is_dropped() {
        let s = stream();
        s.publish_media(video(true, 0));
        let mut rx = s.subscribe();
        for i in 0..PLAYER_QUEUE as u32 + 10 {
            s.publish_media(video(false, i));
        }
        assert_eq!(s.players(), 1);
        // Drain: the player then resumes only at a keyframe.
        while rx.try_recv().is_ok() {}
        s.publish_media(video(false, 5000));
        assert!(
            rx.try_recv().is_err(),
            "inter frame after a gap must be skipped"
        );
        s.publish_media(video(true, 5033));
        assert!(matches!(
            rx.try_recv(),
            Ok(Frame::Video {
                timestamp: 5033,
                ..
            })
        ));
        // Never read again: it is disconnected after repeated overflows, the publisher never blocks.
        for i in 0..(PLAYER_QUEUE as u32 + 1) * (MAX_OVERFLOWS + 2) {
            s.publish_media(video(i % 30 == 0, 6000 + i));
        }
        assert_eq!(s.players(), 0);
    }
}
