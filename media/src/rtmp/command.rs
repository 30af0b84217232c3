//! Typed RTMP commands (Adobe RTMP specification 1.0, section 7.2) and data messages, read from AMF0,
//! and the answers a server writes.
//!
//! Commands are read as rml_rtmp 0.8 read them (its server session answered this server's clients
//! until now): a command is at least a name, a transaction id and a command object; `connect` needs an
//! object with a string `app` (one trailing `/` dropped); `publish` needs a name and a type, `play` a
//! name; a missing or mistyped argument of those two is answered with an `_error`, not a disconnect.
//! `connect` also keeps the Enhanced RTMP fields (Enhanced RTMP v2, "Enhancing NetConnection connect
//! Command"), which a later change will answer.

use super::amf0::{self, Amf0Error, Value};
use super::kind;
use crate::flv::Metadata;

/// Why a command message cannot be read; the connection ends (as it did under rml_rtmp).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The AMF0 is malformed (or nests too deeply).
    #[error("malformed AMF0 command: {0}")]
    Amf0(#[from] Amf0Error),
    /// Fewer than the three values every command has.
    #[error("malformed AMF0 command: fewer than three values (name, transaction id, object)")]
    TooFewValues,
    /// The first value is not a string or the second not a number.
    #[error("malformed command: no name and transaction id")]
    NoName,
    /// `connect` without a command object holding a string `app`.
    #[error("connect without an application name")]
    NoApp,
}

/// A command message: name, transaction id, command object, then the other arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCommand {
    /// Command name.
    pub name: String,
    /// Transaction id.
    pub transaction: f64,
    /// Command object (often null).
    pub object: Value,
    /// Optional arguments.
    pub args: Vec<Value>,
}

impl RawCommand {
    /// Reads a command message of type 20, or 17 (one leading 0 byte dropped, as rml_rtmp did).
    pub fn read(type_id: u8, data: &[u8]) -> Result<Self, CommandError> {
        let data = match (type_id, data) {
            (kind::AMF3_COMMAND, [0, rest @ ..]) => rest,
            _ => data,
        };
        let mut values = amf0::read_all(data)?.into_iter();
        let (Some(name), Some(transaction), Some(object)) =
            (values.next(), values.next(), values.next())
        else {
            return Err(CommandError::TooFewValues);
        };
        let (Value::String(name), Value::Number(transaction)) = (name, transaction) else {
            return Err(CommandError::NoName);
        };
        Ok(Self {
            name,
            transaction,
            object,
            args: values.collect(),
        })
    }

    /// The AMF0 payload of a command message.
    pub fn write(&self) -> Result<Vec<u8>, Amf0Error> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Appends the AMF0 payload of a command message to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), Amf0Error> {
        amf0::write(&Value::string(self.name.as_str()), out)?;
        amf0::write(&Value::Number(self.transaction), out)?;
        amf0::write(&self.object, out)?;
        amf0::write_all(&self.args, out)
    }
}

/// The Enhanced RTMP capabilities of `connect` (and, once negotiated, of its answer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Capabilities {
    /// `fourCcList`: codecs supported, as FourCC strings (`"*"` for any).
    pub four_cc_list: Vec<String>,
    /// `videoFourCcInfoMap`: per video FourCC, the FourCcInfoMask (1 decode, 2 encode, 4 forward).
    pub video_four_cc_info_map: Vec<(String, f64)>,
    /// `audioFourCcInfoMap`: the same for audio.
    pub audio_four_cc_info_map: Vec<(String, f64)>,
    /// `capsEx`: extended capabilities (1 reconnect, 2 multitrack, 4 ModEx, 8 nanosecond offsets).
    pub caps_ex: Option<f64>,
}

impl Capabilities {
    /// Reads the Enhanced RTMP fields of a `connect` command object; `None` if it has none.
    fn read(object: &Value) -> Option<Self> {
        let list = object.get("fourCcList");
        let video = object.get("videoFourCcInfoMap");
        let audio = object.get("audioFourCcInfoMap");
        let caps_ex = object.get("capsEx");
        if list.is_none() && video.is_none() && audio.is_none() && caps_ex.is_none() {
            return None;
        }
        let map = |v: Option<&Value>| {
            v.and_then(Value::properties)
                .map(|p| {
                    p.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_number()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(Self {
            four_cc_list: match list {
                Some(Value::StrictArray(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            },
            video_four_cc_info_map: map(video),
            audio_four_cc_info_map: map(audio),
            caps_ex: caps_ex.and_then(Value::as_number),
        })
    }

    /// The properties that announce these capabilities.
    fn properties(&self) -> Vec<(String, Value)> {
        let map = |m: &[(String, f64)]| {
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), Value::Number(*v)))
                    .collect(),
            )
        };
        let mut p = vec![
            (
                "fourCcList".to_owned(),
                Value::StrictArray(
                    self.four_cc_list
                        .iter()
                        .map(|s| Value::string(s.as_str()))
                        .collect(),
                ),
            ),
            (
                "videoFourCcInfoMap".to_owned(),
                map(&self.video_four_cc_info_map),
            ),
            (
                "audioFourCcInfoMap".to_owned(),
                map(&self.audio_four_cc_info_map),
            ),
        ];
        if let Some(caps) = self.caps_ex {
            p.push(("capsEx".to_owned(), Value::Number(caps)));
        }
        p
    }
}

/// `connect` (7.2.1.1): the command object's fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connect {
    /// Transaction id (1 by convention).
    pub transaction: f64,
    /// `app`, one trailing `/` dropped (as rml_rtmp did); may carry a query (`live?token=..`).
    pub app: String,
    /// `tcUrl`.
    pub tc_url: Option<String>,
    /// `flashVer`.
    pub flash_ver: Option<String>,
    /// `swfUrl`.
    pub swf_url: Option<String>,
    /// `pageUrl`.
    pub page_url: Option<String>,
    /// `objectEncoding`: 0 for AMF0 (also when absent or not a number), 3 for AMF3.
    pub object_encoding: f64,
    /// The Enhanced RTMP fields, if the client sent any.
    pub enhanced: Option<Capabilities>,
}

impl Connect {
    fn read(c: &RawCommand) -> Result<Self, CommandError> {
        let text = |k: &str| c.object.get(k).and_then(Value::as_str).map(str::to_owned);
        if c.object.properties().is_none() {
            return Err(CommandError::NoApp);
        }
        let mut app = text("app").ok_or(CommandError::NoApp)?;
        if app.ends_with('/') {
            app.pop();
        }
        Ok(Self {
            transaction: c.transaction,
            app,
            tc_url: text("tcUrl"),
            flash_ver: text("flashVer"),
            swf_url: text("swfUrl"),
            page_url: text("pageUrl"),
            object_encoding: c
                .object
                .get("objectEncoding")
                .and_then(Value::as_number)
                .unwrap_or(0.0),
            enhanced: Capabilities::read(&c.object),
        })
    }
}

/// The answer to an accepted `connect`: what the `_result` says.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectAnswer {
    /// `fmsVer`.
    pub fms_version: String,
    /// `capabilities` (31, as rml_rtmp and Flash Media Server sent).
    pub capabilities: f64,
    /// Enhanced RTMP capabilities to announce. `None` for now: the remuxer refuses enhanced headers
    /// until a later change, so the server must not invite them.
    pub enhanced: Option<Capabilities>,
}

impl Default for ConnectAnswer {
    fn default() -> Self {
        Self {
            fms_version: "FMS/3,0,1,1233".to_owned(),
            capabilities: 31.0,
            enhanced: None,
        }
    }
}

impl ConnectAnswer {
    /// The `_result` for `connect`, as rml_rtmp 0.8 wrote it.
    pub fn result(&self, connect: &Connect) -> RawCommand {
        let mut info = status(
            "status",
            "NetConnection.Connect.Success",
            &format!("Successfully connected on app: {}", connect.app),
        );
        if let Value::Object(p) = &mut info {
            p.push((
                "objectEncoding".to_owned(),
                Value::Number(connect.object_encoding),
            ));
            if let Some(caps) = &self.enhanced {
                p.extend(caps.properties());
            }
        }
        RawCommand {
            name: "_result".to_owned(),
            transaction: connect.transaction,
            object: Value::object([
                ("fmsVer", Value::string(self.fms_version.as_str())),
                ("capabilities", Value::Number(self.capabilities)),
            ]),
            args: vec![info],
        }
    }
}

/// `publish`'s type (7.2.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishType {
    /// `live`.
    Live,
    /// `record`.
    Record,
    /// `append`.
    Append,
}

impl PublishType {
    /// The name on the wire (and in nginx-rtmp's hooks).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Record => "record",
            Self::Append => "append",
        }
    }
}

/// `publish` (7.2.2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The publishing name (stream key), with any `?query`.
    pub name: String,
    /// Its type.
    pub kind: PublishType,
}

/// What is wrong with a `publish` or `play`'s arguments; answered with an `_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadArguments {
    /// Fewer arguments than the command needs (checked before anything else).
    TooFew,
    /// An argument of the wrong type.
    Invalid,
    /// A publish type other than live, record or append.
    Mode,
}

/// The `start` argument of `play` (7.2.2.1).
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

    fn read(value: Option<&Value>) -> Self {
        match value {
            Some(Value::Number(x)) if *x == -1.0 => Self::LiveOnly,
            Some(Value::Number(x)) if *x >= 0.0 => Self::At(*x as u32),
            _ => Self::LiveOrRecorded,
        }
    }
}

/// `play` (7.2.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    /// The stream name, with any `?query`.
    pub name: String,
    /// Where to start.
    pub start: PlayStart,
    /// How long to play, if a non-negative number was sent.
    pub duration: Option<u32>,
    /// `reset` (false when absent or not a boolean).
    pub reset: bool,
}

/// A command, typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `connect`.
    Connect(Box<Connect>),
    /// `createStream`.
    CreateStream {
        /// Transaction id, for the `_result`.
        transaction: f64,
    },
    /// `publish`, or what is wrong with its arguments.
    Publish {
        /// Transaction id, for an `_error`.
        transaction: f64,
        /// The request.
        request: Result<Publish, BadArguments>,
    },
    /// `play`, or what is wrong with its arguments.
    Play {
        /// Transaction id, for an `_error`.
        transaction: f64,
        /// The request.
        request: Result<Play, BadArguments>,
    },
    /// `deleteStream`: the stream id argument, if it is a number.
    DeleteStream(Option<u32>),
    /// `closeStream`: the stream id argument (as rml_rtmp read it), if it is a number.
    CloseStream(Option<u32>),
    /// Anything else (`releaseStream`, `FCPublish`, `FCUnpublish`, `getStreamLength`, ...): no
    /// answer, as before.
    Other(RawCommand),
}

impl Command {
    /// Types a command message.
    pub fn read(type_id: u8, data: &[u8]) -> Result<Self, CommandError> {
        let raw = RawCommand::read(type_id, data)?;
        let stream_arg = |raw: &RawCommand| raw.args.first().and_then(Value::as_number);
        Ok(match raw.name.as_str() {
            "connect" => Command::Connect(Box::new(Connect::read(&raw)?)),
            "createStream" => Command::CreateStream {
                transaction: raw.transaction,
            },
            "publish" => Command::Publish {
                transaction: raw.transaction,
                request: publish(&raw.args),
            },
            "play" => Command::Play {
                transaction: raw.transaction,
                request: play(&raw.args),
            },
            "deleteStream" => Command::DeleteStream(stream_arg(&raw).map(|x| x as u32)),
            "closeStream" => Command::CloseStream(stream_arg(&raw).map(|x| x as u32)),
            _ => Command::Other(raw),
        })
    }
}

fn publish(args: &[Value]) -> Result<Publish, BadArguments> {
    let [name, kind, ..] = args else {
        return Err(BadArguments::TooFew);
    };
    let (Value::String(name), Value::String(kind)) = (name, kind) else {
        return Err(BadArguments::Invalid);
    };
    let kind = match kind.as_str() {
        "live" => PublishType::Live,
        "record" => PublishType::Record,
        "append" => PublishType::Append,
        _ => return Err(BadArguments::Mode),
    };
    Ok(Publish {
        name: name.clone(),
        kind,
    })
}

fn play(args: &[Value]) -> Result<Play, BadArguments> {
    let Some(name) = args.first() else {
        return Err(BadArguments::TooFew);
    };
    let Value::String(name) = name else {
        return Err(BadArguments::Invalid);
    };
    Ok(Play {
        name: name.clone(),
        start: PlayStart::read(args.get(1)),
        duration: args
            .get(2)
            .and_then(Value::as_number)
            .filter(|&x| x >= 0.0)
            .map(|x| x as u32),
        reset: args.get(3).and_then(Value::as_bool).unwrap_or(false),
    })
}

/// An info object (`level`, `code`, `description`, in that order; rml_rtmp's order was a hash map's).
pub fn status(level: &str, code: &str, description: &str) -> Value {
    Value::object([
        ("level", Value::string(level)),
        ("code", Value::string(code)),
        ("description", Value::string(description)),
    ])
}

/// `onStatus(0, null, info)`.
pub fn on_status(level: &str, code: &str, description: &str) -> RawCommand {
    RawCommand {
        name: "onStatus".to_owned(),
        transaction: 0.0,
        object: Value::Null,
        args: vec![status(level, code, description)],
    }
}

/// `_error(transaction, null, info)` with level `_error`, as rml_rtmp refused requests.
pub fn error(transaction: f64, code: &str, description: &str) -> RawCommand {
    RawCommand {
        name: "_error".to_owned(),
        transaction,
        object: Value::Null,
        args: vec![status("_error", code, description)],
    }
}

/// What a data message (type 18, or 15 read as AMF0) means to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// `@setDataFrame`, `onMetaData`, then the metadata object.
    SetDataFrame(Metadata),
    /// Anything else, including a bare `onMetaData` (ignored, as rml_rtmp ignored it).
    Other,
    /// Malformed: unreadable AMF0, no value, or `@setDataFrame` with fewer than two values after it.
    Malformed,
}

impl Data {
    /// Reads a data message body.
    pub fn read(data: &[u8]) -> Self {
        let Ok(values) = amf0::read_all(data) else {
            return Data::Malformed;
        };
        match values.as_slice() {
            [] => Data::Malformed,
            [Value::String(s), ..] if s == "@setDataFrame" => match values.as_slice() {
                [_, Value::String(name), object, ..] if name == "onMetaData" => {
                    Data::SetDataFrame(read_metadata(object))
                }
                [_, _, _, ..] => Data::Other,
                _ => Data::Malformed,
            },
            _ => Data::Other,
        }
    }
}

/// `onMetaData`'s object as [`Metadata`], reading the properties rml_rtmp 0.8 read, the same way
/// (numbers truncated to integers, `stereo` a boolean, `encoder` a string; a property sent twice counts
/// once, the last, as in its map).
pub fn read_metadata(object: &Value) -> Metadata {
    let mut m = Metadata::default();
    for (key, value) in object.properties().unwrap_or_default() {
        let n = value.as_number();
        let int = n.map(|x| x as u32);
        match key.as_str() {
            "width" => m.video_width = int,
            "height" => m.video_height = int,
            "videocodecid" => m.video_codec_id = int,
            "videodatarate" => m.video_bitrate_kbps = int,
            "framerate" => m.video_frame_rate = n.map(|x| x as f32),
            "audiocodecid" => m.audio_codec_id = int,
            "audiodatarate" => m.audio_bitrate_kbps = int,
            "audiosamplerate" => m.audio_sample_rate = int,
            "audiochannels" => m.audio_channels = int,
            "stereo" => m.audio_is_stereo = value.as_bool(),
            "encoder" => m.encoder = value.as_str().map(str::to_owned),
            _ => {}
        }
    }
    m
}

/// The `onMetaData` data message a player gets: the properties rml_rtmp 0.8 sent, in the order it
/// built them (it sent them in a hash map's order).
pub fn write_metadata(m: &Metadata, out: &mut Vec<u8>) -> Result<(), Amf0Error> {
    let num = |x: Option<u32>| x.map(|x| Value::Number(f64::from(x)));
    let props = [
        ("width", num(m.video_width)),
        ("height", num(m.video_height)),
        ("videocodecid", num(m.video_codec_id)),
        ("videodatarate", num(m.video_bitrate_kbps)),
        (
            "framerate",
            m.video_frame_rate.map(|x| Value::Number(f64::from(x))),
        ),
        ("audiocodecid", num(m.audio_codec_id)),
        ("audiodatarate", num(m.audio_bitrate_kbps)),
        ("audiosamplerate", num(m.audio_sample_rate)),
        ("audiochannels", num(m.audio_channels)),
        ("stereo", m.audio_is_stereo.map(Value::Boolean)),
        ("encoder", m.encoder.as_deref().map(Value::string)),
    ];
    let object = Value::object(props.into_iter().filter_map(|(k, v)| Some((k, v?))));
    amf0::write_all(&[Value::string("onMetaData"), object], out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::messages::RtmpMessage;
    use rml_rtmp::rml_amf0::Amf0Value;
    use rml_rtmp::time::RtmpTimestamp;

    /// A command as rml_rtmp's client-side serializer writes it.
    fn theirs(name: &str, object: Amf0Value, args: Vec<Amf0Value>) -> Vec<u8> {
        RtmpMessage::Amf0Command {
            command_name: name.into(),
            transaction_id: 4.0,
            command_object: object,
            additional_arguments: args,
        }
        .into_message_payload(RtmpTimestamp::new(0), 1)
        .expect("payload")
        .data
        .to_vec()
    }

    fn s(v: &str) -> Amf0Value {
        Amf0Value::Utf8String(v.into())
    }

    #[test]
    fn connect_keeps_every_field_and_the_enhanced_ones() {
        let object = Amf0Value::Object(
            [
                ("app".to_string(), s("live/")),
                ("tcUrl".to_string(), s("rtmp://h/live")),
                ("flashVer".to_string(), s("FMLE/3.0")),
                ("swfUrl".to_string(), s("http://s")),
                ("pageUrl".to_string(), s("http://p")),
                ("objectEncoding".to_string(), Amf0Value::Number(3.0)),
                (
                    "fourCcList".to_string(),
                    Amf0Value::StrictArray(vec![s("hvc1"), s("av01")]),
                ),
                (
                    "videoFourCcInfoMap".to_string(),
                    Amf0Value::Object([("hvc1".to_string(), Amf0Value::Number(3.0))].into()),
                ),
                ("capsEx".to_string(), Amf0Value::Number(2.0)),
            ]
            .into(),
        );
        let Ok(Command::Connect(c)) = Command::read(20, &theirs("connect", object, vec![])) else {
            panic!("a connect");
        };
        assert_eq!(c.app, "live");
        assert_eq!(c.tc_url.as_deref(), Some("rtmp://h/live"));
        assert_eq!(c.flash_ver.as_deref(), Some("FMLE/3.0"));
        assert_eq!(c.swf_url.as_deref(), Some("http://s"));
        assert_eq!(c.page_url.as_deref(), Some("http://p"));
        assert_eq!(c.object_encoding, 3.0);
        let caps = c.enhanced.expect("enhanced fields");
        assert_eq!(caps.four_cc_list, ["hvc1", "av01"]);
        assert_eq!(caps.video_four_cc_info_map, [("hvc1".to_string(), 3.0)]);
        assert!(caps.audio_four_cc_info_map.is_empty());
        assert_eq!(caps.caps_ex, Some(2.0));
        // Without an app: an error, as rml_rtmp's NoAppNameForConnectionRequest.
        assert_eq!(
            Command::read(20, &theirs("connect", Amf0Value::Null, vec![])),
            Err(CommandError::NoApp)
        );
    }

    #[test]
    fn publish_and_play_arguments() {
        let publish = |args| match Command::read(20, &theirs("publish", Amf0Value::Null, args)) {
            Ok(Command::Publish {
                transaction: 4.0,
                request,
            }) => request,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            publish(vec![s("cam?k=1"), s("record")]),
            Ok(Publish {
                name: "cam?k=1".into(),
                kind: PublishType::Record
            })
        );
        assert_eq!(publish(vec![s("cam")]), Err(BadArguments::TooFew));
        assert_eq!(
            publish(vec![Amf0Value::Number(1.0), s("live")]),
            Err(BadArguments::Invalid)
        );
        assert_eq!(publish(vec![s("cam"), s("later")]), Err(BadArguments::Mode));
        let play = |args| match Command::read(20, &theirs("play", Amf0Value::Null, args)) {
            Ok(Command::Play { request, .. }) => request,
            other => panic!("{other:?}"),
        };
        let name = || s("cam");
        let start = |args| play(args).map(|p| p.start);
        assert_eq!(
            start(vec![name(), Amf0Value::Number(-2000.0)]),
            Ok(PlayStart::LiveOrRecorded)
        );
        assert_eq!(
            start(vec![name(), Amf0Value::Number(-1.0)]),
            Ok(PlayStart::LiveOnly)
        );
        assert_eq!(
            start(vec![name(), Amf0Value::Number(12.9)]),
            Ok(PlayStart::At(12))
        );
        assert_eq!(start(vec![name()]), Ok(PlayStart::LiveOrRecorded));
        assert_eq!(
            start(vec![name(), Amf0Value::Boolean(true)]),
            Ok(PlayStart::LiveOrRecorded)
        );
        assert_eq!(
            play(vec![
                name(),
                Amf0Value::Number(0.0),
                Amf0Value::Number(5.0),
                Amf0Value::Boolean(true)
            ]),
            Ok(Play {
                name: "cam".into(),
                start: PlayStart::At(0),
                duration: Some(5),
                reset: true
            })
        );
        assert_eq!(play(vec![]), Err(BadArguments::TooFew));
        // What hooks report.
        assert_eq!(PlayStart::LiveOnly.nginx_value(), u32::MAX);
        assert_eq!(PlayStart::At(12).nginx_value(), 12);
        assert_eq!(PlayStart::LiveOrRecorded.nginx_value(), 4_294_965_296);
    }

    #[test]
    fn other_commands_and_malformed_ones() {
        let Ok(Command::Other(c)) =
            Command::read(20, &theirs("FCPublish", Amf0Value::Null, vec![s("cam")]))
        else {
            panic!("FCPublish is another command");
        };
        assert_eq!((c.name.as_str(), c.transaction), ("FCPublish", 4.0));
        // The AMF3 form: a leading 0, then AMF0.
        let mut amf3 = vec![0];
        amf3.extend(theirs(
            "deleteStream",
            Amf0Value::Null,
            vec![Amf0Value::Number(1.0)],
        ));
        assert_eq!(Command::read(17, &amf3), Ok(Command::DeleteStream(Some(1))));
        assert_eq!(
            Command::read(20, &[2, 0, 1, b'x']),
            Err(CommandError::TooFewValues)
        );
        assert_eq!(
            Command::read(20, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 5]),
            Err(CommandError::NoName)
        );
        let mut deep = vec![2, 0, 1, b'x', 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for _ in 0..100_000 {
            deep.extend_from_slice(&[10, 0, 0, 0, 1]);
        }
        let e = Command::read(20, &deep).expect_err("too deep");
        assert_eq!(
            e.to_string(),
            "malformed AMF0 command: objects nested too deeply"
        );
    }

    #[test]
    fn data_messages_and_metadata() {
        let mut sdf = vec![2, 0, 13];
        sdf.extend_from_slice(b"@setDataFrame");
        assert_eq!(Data::read(&sdf), Data::Malformed);
        sdf.extend_from_slice(&[2, 0, 10]);
        sdf.extend_from_slice(b"onMetaData");
        sdf.extend_from_slice(&[8, 0, 0, 0, 1, 0, 5, b'w', b'i', b'd', b't', b'h', 0]);
        sdf.extend_from_slice(&640f64.to_be_bytes());
        sdf.extend_from_slice(&[0, 0, 9]);
        assert_eq!(
            Data::read(&sdf),
            Data::SetDataFrame(Metadata {
                video_width: Some(640),
                ..Metadata::default()
            })
        );
        assert_eq!(Data::read(&sdf[16..]), Data::Other, "a bare onMetaData");
        assert_eq!(Data::read(&[]), Data::Malformed);
        let m = Metadata {
            video_width: Some(1280),
            video_height: Some(720),
            video_codec_id: Some(7),
            video_frame_rate: Some(29.97),
            video_bitrate_kbps: Some(2500),
            audio_codec_id: Some(10),
            audio_bitrate_kbps: Some(128),
            audio_sample_rate: Some(48_000),
            audio_channels: Some(2),
            audio_is_stereo: Some(true),
            encoder: Some("obs".into()),
        };
        let mut out = Vec::new();
        write_metadata(&m, &mut out).expect("writable");
        let values = amf0::read_all(&out).expect("readable");
        assert_eq!(values[0], Value::string("onMetaData"));
        assert_eq!(read_metadata(&values[1]), m);
    }

    #[test]
    fn the_connect_answer_is_rml_rtmps_and_has_room_for_capabilities() {
        let connect = Connect {
            transaction: 1.0,
            app: "live".into(),
            object_encoding: 0.0,
            ..Connect::default()
        };
        let r = ConnectAnswer::default().result(&connect);
        assert_eq!((r.name.as_str(), r.transaction), ("_result", 1.0));
        assert_eq!(
            r.object.get("fmsVer"),
            Some(&Value::string("FMS/3,0,1,1233"))
        );
        assert_eq!(r.object.get("capabilities"), Some(&Value::Number(31.0)));
        let info = &r.args[0];
        assert_eq!(
            info.get("code"),
            Some(&Value::string("NetConnection.Connect.Success"))
        );
        assert_eq!(
            info.get("description"),
            Some(&Value::string("Successfully connected on app: live"))
        );
        assert_eq!(info.get("objectEncoding"), Some(&Value::Number(0.0)));
        assert_eq!(info.get("fourCcList"), None, "Enhanced RTMP not advertised");
        let answer = ConnectAnswer {
            enhanced: Some(Capabilities {
                four_cc_list: vec!["hvc1".into()],
                caps_ex: Some(2.0),
                ..Capabilities::default()
            }),
            ..ConnectAnswer::default()
        };
        let r = answer.result(&connect);
        assert_eq!(
            r.args[0].get("fourCcList"),
            Some(&Value::StrictArray(vec![Value::string("hvc1")]))
        );
        // Read back as a command.
        let bytes = r.write().expect("writable");
        assert_eq!(RawCommand::read(20, &bytes), Ok(r));
    }
}
