//! `onMetaData`: what a publisher announces about its stream (FLV spec v10.1 E.5, the `onMetaData`
//! script data object), as this server keeps it for players, recordings and the remuxer.
//!
//! Our own type, so the RTMP library the session uses stays inside `rtmp/`; Enhanced RTMP adds
//! FourCC-valued codec ids and per-track objects, which belong here when they are read.

/// The announced properties, each `None` when the publisher did not send it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// `width`.
    pub video_width: Option<u32>,
    /// `height`.
    pub video_height: Option<u32>,
    /// `videocodecid`: a legacy CodecID (7 = AVC).
    pub video_codec_id: Option<u32>,
    /// `framerate`.
    pub video_frame_rate: Option<f32>,
    /// `videodatarate`, kbit/s.
    pub video_bitrate_kbps: Option<u32>,
    /// `audiocodecid`: a legacy SoundFormat (10 = AAC).
    pub audio_codec_id: Option<u32>,
    /// `audiodatarate`, kbit/s.
    pub audio_bitrate_kbps: Option<u32>,
    /// `audiosamplerate`, Hz.
    pub audio_sample_rate: Option<u32>,
    /// `audiochannels`.
    pub audio_channels: Option<u32>,
    /// `stereo`.
    pub audio_is_stereo: Option<bool>,
    /// `encoder`.
    pub encoder: Option<String>,
}

impl Metadata {
    /// Whether a video track was announced (`None` when nothing was: no metadata at all).
    pub fn announces_video(&self) -> bool {
        self.video_codec_id.is_some()
    }

    /// Whether an audio track was announced.
    pub fn announces_audio(&self) -> bool {
        self.audio_codec_id.is_some()
    }
}
