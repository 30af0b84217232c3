//! The tracks of a stream: a list, not a pair of booleans. Each entry knows its kind, its current
//! decoder configuration (and one waiting to take over), and whether onMetaData announced it; a
//! segment declares a [`Program`], the subset of them its muxers write.
//!
//! Output identifiers come from the position in this list, so today's layout (FLV's one video and one
//! audio track, [`VIDEO`] and [`AUDIO`]) keeps the values players have always seen: TS PIDs 0x100 and
//! 0x101, fMP4 track ids 1 and 2.

use super::codec::{self, Codec, MediaKind, TrackConfig};
use super::sample::TrackId;

/// Legacy FLV's video track.
pub const VIDEO: TrackId = TrackId(0);
/// Legacy FLV's audio track.
pub const AUDIO: TrackId = TrackId(1);

/// TS PID of a track's elementary stream.
pub fn ts_pid(track: TrackId) -> u16 {
    0x100 + u16::from(track.0)
}

/// fMP4 `track_ID` of a track (ids start at 1, ISO/IEC 14496-12 8.3.2.3).
pub fn mp4_track_id(track: TrackId) -> u32 {
    u32::from(track.0) + 1
}

/// One track of the stream.
#[derive(Debug)]
pub struct Track {
    /// Picture or sound.
    pub kind: MediaKind,
    /// The configuration samples are muxed with now.
    pub config: Option<Box<dyn TrackConfig>>,
    /// A different configuration that takes over at the track's next keyframe (video: its inter
    /// frames cannot be decoded before one).
    pub pending: Option<Box<dyn TrackConfig>>,
    /// The configuration changed since the open segment started (audio: it takes over at once, and
    /// the next segment must start a discontinuity).
    pub changed: bool,
    /// What onMetaData said about the track (None: not announced either way).
    pub announced: Option<bool>,
}

impl Track {
    fn new(kind: MediaKind) -> Self {
        Self {
            kind,
            config: None,
            pending: None,
            changed: false,
            announced: None,
        }
    }

    /// The newest configuration, pending or not: the one coded frames are read with.
    pub fn newest(&self) -> Option<&dyn TrackConfig> {
        self.pending.as_deref().or(self.config.as_deref())
    }

    /// The codec a segment declares the track with. A track announced by onMetaData but not yet
    /// configured is declared as the first codec of its kind in the table (AAC for audio, what every
    /// legacy publisher sends), so its late sequence header needs no discontinuity.
    pub fn codec(&self) -> Option<&'static Codec> {
        self.newest().map(TrackConfig::codec).or_else(|| {
            codec::CODECS
                .iter()
                .copied()
                .find(|c| c.kind == self.kind && c.ts.is_some())
        })
    }

    /// Whether the next segment should declare the track: it is configured, or it is an announced
    /// audio track (declared up front, so its late sequence header does not force a discontinuity;
    /// video is only declared once configured, as the stream cannot start without its keyframe).
    fn declared(&self) -> bool {
        self.newest().is_some() || (self.kind == MediaKind::Audio && self.announced == Some(true))
    }
}

/// A set of track ids (all 256 a `u8` names), without allocating: one is built for every sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct TrackSet([u64; 4]);

impl TrackSet {
    fn insert(&mut self, id: TrackId) {
        if let Some(word) = self.0.get_mut(id.index() / 64) {
            *word |= 1 << (id.index() % 64);
        }
    }

    fn contains(&self, id: TrackId) -> bool {
        self.0
            .get(id.index() / 64)
            .is_some_and(|word| word & (1 << (id.index() % 64)) != 0)
    }

    /// The members in ascending order (stream order).
    fn iter(self) -> impl Iterator<Item = TrackId> {
        (0..=u8::MAX)
            .map(TrackId)
            .filter(move |id| self.contains(*id))
    }

    fn first(&self) -> Option<TrackId> {
        self.0.iter().enumerate().find_map(|(i, word)| {
            (*word != 0).then(|| TrackId((i * 64 + word.trailing_zeros() as usize) as u8))
        })
    }
}

/// The tracks a segment declares (in stream order, so PMT and init list them as the stream does),
/// and which of them is the reference track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Program {
    tracks: TrackSet,
    video: TrackSet,
}

impl Program {
    /// A program of exactly these tracks.
    pub fn new(tracks: impl IntoIterator<Item = (TrackId, MediaKind)>) -> Self {
        let mut program = Self::default();
        for (id, kind) in tracks {
            program.tracks.insert(id);
            if kind == MediaKind::Video {
                program.video.insert(id);
            }
        }
        program
    }

    /// The declared tracks, in stream order.
    pub fn tracks(&self) -> impl Iterator<Item = TrackId> {
        self.tracks.iter()
    }

    /// Whether the program declares `track`.
    pub fn contains(&self, track: TrackId) -> bool {
        self.tracks.contains(track)
    }

    /// The reference track: segments start at its keyframes, parts are paced by it, and the TS PCR
    /// rides on it. The first video track, else the first track (audio-only: every frame is a
    /// random access point).
    pub fn reference(&self) -> Option<(TrackId, MediaKind)> {
        match self.video.first() {
            Some(id) => Some((id, MediaKind::Video)),
            None => self.tracks.first().map(|id| (id, MediaKind::Audio)),
        }
    }

    /// Whether `track` is the reference track.
    pub fn is_reference(&self, track: TrackId) -> bool {
        self.reference().is_some_and(|(id, _)| id == track)
    }
}

/// The stream's track layout.
#[derive(Debug)]
pub struct Tracks {
    list: Vec<Track>,
}

impl Tracks {
    /// Legacy FLV's layout: [`VIDEO`], then [`AUDIO`].
    pub fn flv() -> Self {
        Self::new([MediaKind::Video, MediaKind::Audio])
    }

    /// A layout of tracks of these kinds, in this order (at most 256).
    pub fn new(kinds: impl IntoIterator<Item = MediaKind>) -> Self {
        Self {
            list: kinds.into_iter().take(256).map(Track::new).collect(),
        }
    }

    /// One track.
    pub fn get(&self, id: TrackId) -> Option<&Track> {
        self.list.get(id.index())
    }

    /// One track, to change it.
    pub fn get_mut(&mut self, id: TrackId) -> Option<&mut Track> {
        self.list.get_mut(id.index())
    }

    /// Every track with its id.
    pub fn iter(&self) -> impl Iterator<Item = (TrackId, &Track)> {
        self.list
            .iter()
            .enumerate()
            .map(|(i, t)| (TrackId(u8::try_from(i).unwrap_or(u8::MAX)), t))
    }

    /// Every track, to change them.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Track> {
        self.list.iter_mut()
    }

    /// How many tracks the layout has (the fMP4 `next_track_ID` is one above the last).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the layout has no track.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The tracks the next segment should declare.
    pub fn desired(&self) -> Program {
        Program::new(
            self.iter()
                .filter(|(_, t)| t.declared())
                .map(|(id, t)| (id, t.kind)),
        )
    }

    /// Whether the next segment must differ from the open one: a configuration waits or changed.
    pub fn reconfigured(&self) -> bool {
        self.list.iter().any(|t| t.pending.is_some() || t.changed)
    }

    /// Whether a video track is announced or configured, so audio waits for its keyframe.
    pub fn video_expected(&self) -> bool {
        self.list.iter().any(|t| {
            t.kind == MediaKind::Video && (t.announced == Some(true) || t.newest().is_some())
        })
    }

    /// Whether onMetaData said there is no video (so audio starts the stream at once).
    pub fn video_denied(&self) -> bool {
        self.list
            .iter()
            .any(|t| t.kind == MediaKind::Video && t.announced == Some(false))
    }

    /// What is known about the tracks, for metadata and logs.
    pub fn info(&self) -> TrackInfo {
        let first = |kind| self.list.iter().find(|t| t.kind == kind);
        let video = first(MediaKind::Video)
            .and_then(Track::newest)
            .map(|c| VideoInfo {
                codec: c.codec_string(),
                width: c.dimensions().map(|(w, _)| w),
                height: c.dimensions().map(|(_, h)| h),
            });
        let audio = first(MediaKind::Audio)
            .and_then(|t| t.config.as_deref())
            .map(|c| AudioInfo {
                codec: c.codec_string(),
                sample_rate: c.sample_rate(),
                channels: u8::try_from(c.channels()).unwrap_or(u8::MAX),
            });
        TrackInfo { video, audio }
    }
}

/// The video track as known so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoInfo {
    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub codec: String,
    /// Cropped width from the SPS, if it parsed.
    pub width: Option<u32>,
    /// Cropped height from the SPS, if it parsed.
    pub height: Option<u32>,
}

/// The audio track as known so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    /// RFC 6381 codec string, e.g. `mp4a.40.2`.
    pub codec: String,
    /// Output sampling rate in Hz.
    pub sample_rate: u32,
    /// Output channel count.
    pub channels: u8,
}

/// What is known about the first video and the first audio track of a stream (what the LiveDTO's
/// metadata and the control API report).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackInfo {
    /// From the latest video sequence header.
    pub video: Option<VideoInfo>,
    /// From the latest audio sequence header.
    pub audio: Option<AudioInfo>,
}

impl TrackInfo {
    /// RFC 6381 CODECS value for the tracks present, e.g. "avc1.64001f,mp4a.40.2".
    pub fn codecs(&self) -> String {
        let video = self.video.as_ref().map(|v| v.codec.as_str());
        let audio = self.audio.as_ref().map(|a| a.codec.as_str());
        video.into_iter().chain(audio).collect::<Vec<_>>().join(",")
    }
}
