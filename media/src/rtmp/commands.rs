//! Typed readings of RTMP commands the session needs and rml_rtmp does not expose in a usable form.
//! Today: the `start` argument of `play` (rml_rtmp's `PlayStartValue` lives in a private module, so
//! it could only be read from its `Debug` text). The message is read after `rtmp_chunks::screen`, with
//! rml_rtmp's AMF0 decoder, so it reads exactly what the session reads.

use rml_rtmp::messages::{MessagePayload, RtmpMessage};
use rml_rtmp::rml_amf0::Amf0Value;

/// Message type id of AMF0 commands.
const AMF0_COMMAND: u8 = 20;

/// The `start` argument of `play` (Adobe RTMP spec 7.2.2.1), with rml_rtmp's reading of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlayStart {
    /// -2, absent, not a number, or any negative other than -1: live if there is one, else recorded.
    /// ffmpeg sends -2000.
    #[default]
    LiveOrRecorded,
    /// -1: live only.
    LiveOnly,
    /// >= 0: from this time (the number as sent, truncated to an integer).
    At(u32),
}

impl PlayStart {
    /// The value nginx-rtmp reports in hooks: the raw number cast to uint32 (ffmpeg's -2000 for
    /// "live or recorded", whatever negative was sent, as this server has always reported it).
    pub fn nginx_value(self) -> u32 {
        match self {
            Self::LiveOnly => u32::MAX,
            Self::At(n) => n,
            Self::LiveOrRecorded => (-2000i32) as u32,
        }
    }

    fn from_amf0(value: Option<&Amf0Value>) -> Self {
        match value {
            Some(Amf0Value::Number(x)) if *x == -1.0 => Self::LiveOnly,
            Some(Amf0Value::Number(x)) if *x >= 0.0 => Self::At(*x as u32),
            _ => Self::LiveOrRecorded,
        }
    }
}

/// The `start` of a `play` command, if `payload` is one (screened by `rtmp_chunks::screen` first).
pub fn play_start(payload: &MessagePayload) -> Option<PlayStart> {
    if payload.type_id != AMF0_COMMAND {
        return None;
    }
    match payload.to_rtmp_message().ok()? {
        RtmpMessage::Amf0Command {
            command_name,
            additional_arguments,
            ..
        } if command_name == "play" => Some(PlayStart::from_amf0(additional_arguments.get(1))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::time::RtmpTimestamp;

    fn play(args: Vec<Amf0Value>) -> MessagePayload {
        RtmpMessage::Amf0Command {
            command_name: "play".into(),
            transaction_id: 4.0,
            command_object: Amf0Value::Null,
            additional_arguments: args,
        }
        .into_message_payload(RtmpTimestamp::new(0), 1)
        .expect("payload")
    }

    #[test]
    fn play_start_reads_as_rml_rtmp_and_reports_as_nginx_rtmp() {
        let name = || Amf0Value::Utf8String("cam".into());
        let start = |args| play_start(&play(args));
        assert_eq!(
            start(vec![name(), Amf0Value::Number(-2000.0)]),
            Some(PlayStart::LiveOrRecorded)
        );
        assert_eq!(
            start(vec![name(), Amf0Value::Number(-1.0)]),
            Some(PlayStart::LiveOnly)
        );
        assert_eq!(
            start(vec![name(), Amf0Value::Number(12.9)]),
            Some(PlayStart::At(12))
        );
        assert_eq!(start(vec![name()]), Some(PlayStart::LiveOrRecorded));
        assert_eq!(
            start(vec![name(), Amf0Value::Boolean(true)]),
            Some(PlayStart::LiveOrRecorded)
        );
        // What hooks report (the values `play_start` read from rml_rtmp's Debug text before).
        assert_eq!(PlayStart::LiveOnly.nginx_value(), u32::MAX);
        assert_eq!(PlayStart::At(12).nginx_value(), 12);
        assert_eq!(PlayStart::LiveOrRecorded.nginx_value(), 4_294_965_296);
        let other = RtmpMessage::Amf0Command {
            command_name: "publish".into(),
            transaction_id: 4.0,
            command_object: Amf0Value::Null,
            additional_arguments: vec![name()],
        }
        .into_message_payload(RtmpTimestamp::new(0), 1)
        .expect("payload");
        assert_eq!(play_start(&other), None);
    }
}
