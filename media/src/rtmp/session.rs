//! The server side of one RTMP connection after the handshake, as a state machine: socket bytes in,
//! [`Event`]s out, and the bytes to send back accumulating in [`ServerSession::output`].
//!
//! The caller reads the socket into [`ServerSession::read_buffer`], reports how much with
//! [`ServerSession::received`], then takes events with [`ServerSession::next_event`] one at a time
//! until there are none; requests (`connect`, `publish`, `play`) are answered with
//! [`ServerSession::accept`] or [`ServerSession::reject`] before the next event is taken, so a `publish`
//! read in the same bytes as `connect` finds the connection accepted. Media goes to a player with
//! [`ServerSession::send_video`] and friends. Everything written goes through one chunk writer,
//! acknowledgements included.
//!
//! It says to clients what rml_rtmp 0.8's `ServerSession` said (it served this server until now),
//! message for message, on the same chunk streams and message streams, with the same codes and
//! descriptions. Where it differs, on purpose:
//! - properties of AMF0 objects go in a fixed order (rml_rtmp wrote a hash map's order, which changed
//!   from one connection to the next); `level`, `code`, `description` first, as Flash Media Server
//!   and nginx-rtmp write them;
//! - an Acknowledgement carries the total of bytes received (section 5.4.3), not rml_rtmp's count
//!   since the previous one, and its header is compressed like any other message's;
//! - AMF0 it could not read (long strings, dates) is read, and malformed AMF0 is a typed error where
//!   rml_rtmp panicked or overflowed the stack.
//!
//! Pure: no I/O; the clock it reads is only for the timestamps of its own messages (milliseconds since
//! it started, as rml_rtmp stamped them).

use std::collections::HashMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::amf0::{self, Amf0Error, Value};
use super::chunk_reader::read_u32;
use super::chunk_writer::{Header, WriteError};
use super::command::{
    self, BadArguments, Command, CommandError, Connect, ConnectAnswer, Data, Play, Publish,
    RawCommand,
};
use super::control::{Control, ControlError, LimitType, UserControl};
use super::{kind, ChunkError, ChunkReader, ChunkWriter, Message};
use crate::flv::Metadata;

/// What the session announces when it starts (rml_rtmp 0.8's defaults, which clients always got).
#[derive(Debug, Clone)]
pub struct Config {
    /// Outgoing chunk size, announced with Set Chunk Size.
    pub chunk_size: u32,
    /// Window Acknowledgement Size asked of the client (1 GiB: players need not acknowledge).
    pub window_ack_size: u32,
    /// Set Peer Bandwidth (dynamic).
    pub peer_bandwidth: u32,
    /// What the `_result` of an accepted `connect` says.
    pub answer: ConnectAnswer,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            window_ack_size: 1_073_741_824,
            peer_bandwidth: 2_500_000,
            answer: ConnectAnswer::default(),
        }
    }
}

/// A request waiting for [`ServerSession::accept`] or [`ServerSession::reject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(u32);

/// What the client did that the caller must know about.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `connect`: accept or reject it.
    ConnectRequested {
        /// The request to answer.
        request: RequestId,
        /// What the client sent.
        connect: Box<Connect>,
    },
    /// `publish` with valid arguments on a connected session: accept or reject it.
    PublishRequested {
        /// The request to answer.
        request: RequestId,
        /// The message stream it came on, where the media will come.
        stream_id: u32,
        /// Name and type.
        publish: Publish,
    },
    /// `play` with valid arguments on a connected session: accept or reject it.
    PlayRequested {
        /// The request to answer.
        request: RequestId,
        /// The message stream to send the media on.
        stream_id: u32,
        /// Name, start, duration, reset.
        play: Play,
    },
    /// `deleteStream` or `closeStream` of the publishing stream.
    PublishFinished {
        /// Its message stream id.
        stream_id: u32,
    },
    /// `deleteStream` or `closeStream` of a playing stream.
    PlayFinished {
        /// Its message stream id.
        stream_id: u32,
    },
    /// Audio on the accepted publish's stream.
    Audio {
        /// Timestamp, ms.
        timestamp: u32,
        /// The FLV audio tag body.
        data: Bytes,
    },
    /// Video on the accepted publish's stream.
    Video {
        /// Timestamp, ms.
        timestamp: u32,
        /// The FLV video tag body.
        data: Bytes,
    },
    /// An aggregate message, on any stream (see [`super::aggregate`]).
    Aggregate {
        /// Its timestamp, ms.
        timestamp: u32,
        /// Its body.
        data: Bytes,
    },
    /// `@setDataFrame onMetaData` on the publishing stream.
    Metadata(Metadata),
    /// A command the server does not answer (`releaseStream`, `FCPublish`, `FCUnpublish`, ...).
    Command(Box<RawCommand>),
    /// A data message that could not be read; dropped.
    MalformedData {
        /// Its type id.
        type_id: u8,
    },
    /// A message of a type the server does not handle; ignored.
    Unsupported {
        /// Its type id.
        type_id: u8,
    },
}

/// Why the session cannot go on; the connection must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The chunk stream is broken or exceeds a bound.
    #[error("RTMP protocol error: {0}")]
    Chunk(#[from] ChunkError),
    /// A malformed control message.
    #[error("RTMP protocol error: {0}")]
    Control(#[from] ControlError),
    /// A command that cannot be read.
    #[error("RTMP protocol error: {0}")]
    Command(#[from] CommandError),
    /// `accept` of a `publish` or `play` on a stream `createStream` never made.
    #[error("RTMP protocol error: cannot {action} on stream {stream_id}, which was not created")]
    InactiveStream {
        /// What was attempted.
        action: &'static str,
        /// The message stream id.
        stream_id: u32,
    },
    /// `accept` or `reject` of a request that is not waiting (a bug of the caller).
    #[error("no request {0:?} is waiting for an answer")]
    NoSuchRequest(RequestId),
    /// A message too long to send.
    #[error("cannot send: {0}")]
    Write(#[from] WriteError),
    /// A value that cannot be written as AMF0.
    #[error("cannot send: {0}")]
    Amf0(#[from] Amf0Error),
}

/// A request waiting for an answer.
#[derive(Debug)]
enum Pending {
    Connect(Box<Connect>),
    Publish { stream_id: u32, name: String },
    Play { stream_id: u32, name: String },
}

/// A message stream made by `createStream`.
#[derive(Debug, PartialEq, Eq)]
enum Stream {
    Created,
    Publishing(String),
    Playing(String),
    /// Playback finished by the server.
    Completed,
}

/// The server session; see the module doc.
#[derive(Debug)]
pub struct ServerSession {
    reader: ChunkReader,
    writer: ChunkWriter,
    out: Vec<u8>,
    started: Instant,
    answer: ConnectAnswer,
    /// The application of the accepted `connect`.
    connected: Option<String>,
    streams: HashMap<u32, Stream>,
    next_stream_id: u32,
    pending: HashMap<RequestId, Pending>,
    next_request: u32,
    /// Message stream of the accepted `publish`: its audio and video are events, nobody else's.
    publishing: Option<u32>,
    /// The client's Window Acknowledgement Size, once it said one.
    ack_window: Option<u32>,
    received: u64,
    acknowledged: u64,
    /// Scratch space for AMF0 payloads, reused.
    scratch: Vec<u8>,
}

impl ServerSession {
    /// A session that has written what a server says first: Set Chunk Size, Window Acknowledgement
    /// Size, Stream Begin 0, Set Peer Bandwidth and `onBWDone`, each with a full header.
    pub fn new(config: Config) -> Result<Self, SessionError> {
        let mut s = Self {
            reader: ChunkReader::new(),
            writer: ChunkWriter::new(),
            out: Vec::new(),
            started: Instant::now(),
            answer: config.answer,
            connected: None,
            streams: HashMap::new(),
            next_stream_id: 1,
            pending: HashMap::new(),
            next_request: 0,
            publishing: None,
            ack_window: None,
            received: 0,
            acknowledged: 0,
            scratch: Vec::new(),
        };
        s.writer.set_chunk_size(config.chunk_size, &mut s.out)?;
        s.control_full(Control::WindowAckSize(config.window_ack_size))?;
        s.control_full(Control::User(UserControl::StreamBegin(0)))?;
        s.control_full(Control::SetPeerBandwidth {
            size: config.peer_bandwidth,
            limit: LimitType::Dynamic,
        })?;
        let bw_done = RawCommand {
            name: "onBWDone".to_owned(),
            transaction: 0.0,
            object: Value::Null,
            args: vec![Value::Number(8192.0)],
        };
        bw_done.write_to(&mut s.scratch)?;
        let header = s.header(kind::AMF0_COMMAND, 0);
        s.writer.write_full(header, &s.scratch, &mut s.out)?;
        Ok(s)
    }

    /// The input buffer with room for `room` more bytes, to read the socket straight into (no copy);
    /// then call [`ServerSession::received`].
    pub fn read_buffer(&mut self, room: usize) -> &mut BytesMut {
        self.reader.read_buffer(room)
    }

    /// Counts `n` bytes just read into the buffer, and writes an Acknowledgement when one is due:
    /// once the client said its window, every time that many bytes arrived, one carrying the total
    /// received so far (wrapping at 2^32 like every RTMP byte counter), as nginx-rtmp sends it.
    pub fn received(&mut self, n: usize) -> Result<(), SessionError> {
        self.received += n as u64;
        if let Some(window) = self.ack_window {
            if self.received - self.acknowledged >= u64::from(window) {
                self.acknowledged = self.received;
                let ack = Control::Acknowledgement(self.received as u32);
                let header = Header {
                    timestamp: 0,
                    type_id: ack.type_id(),
                    stream_id: 0,
                };
                self.writer
                    .write(header, ack.payload().as_ref(), &mut self.out)?;
            }
        }
        Ok(())
    }

    /// Copies `bytes` in and counts them: [`ServerSession::read_buffer`] and
    /// [`ServerSession::received`] in one, for input that is not read from a socket.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        self.reader
            .read_buffer(bytes.len())
            .extend_from_slice(bytes);
        self.received(bytes.len())
    }

    /// The next event the input completes, if any; protocol messages that need no caller (pings,
    /// `createStream`, control messages) are handled on the way.
    pub fn next_event(&mut self) -> Result<Option<Event>, SessionError> {
        while let Some(message) = self.reader.next_message()? {
            if let Some(event) = self.handle(message)? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    /// What to send the client; clear it with [`ServerSession::clear_output`] once sent.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Forgets the output, once sent.
    pub fn clear_output(&mut self) {
        self.out.clear();
    }

    /// Bytes held by the chunk reader (unfinished messages and unread input).
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// The message stream of the accepted `publish`, if any.
    pub fn publishing(&self) -> Option<u32> {
        self.publishing
    }

    /// Accepts a request: `connect` gets its `_result`; `publish` Stream Begin and
    /// `NetStream.Publish.Start`; `play` `NetStream.Play.Reset`, Stream Begin, `NetStream.Play.Start`,
    /// `|RtmpSampleAccess` and `NetStream.Data.Start`.
    pub fn accept(&mut self, request: RequestId) -> Result<(), SessionError> {
        match self
            .pending
            .remove(&request)
            .ok_or(SessionError::NoSuchRequest(request))?
        {
            Pending::Connect(connect) => {
                self.connected = Some(connect.app.clone());
                let result = self.answer.result(&connect);
                self.command(0, &result)
            }
            Pending::Publish { stream_id, name } => {
                let description = format!("Successfully started publishing on stream key {name}");
                self.set_stream(stream_id, "publish", Stream::Publishing(name))?;
                self.publishing = Some(stream_id);
                self.control_on(stream_id, Control::User(UserControl::StreamBegin(stream_id)))?;
                let start = command::on_status("status", "NetStream.Publish.Start", &description);
                self.command(stream_id, &start)
            }
            Pending::Play { stream_id, name } => {
                let description = format!("Successfully started playback on stream key {name}");
                self.set_stream(stream_id, "play", Stream::Playing(name))?;
                let reset = command::on_status("status", "NetStream.Play.Reset", "Reset stream");
                self.command(stream_id, &reset)?;
                self.control_on(stream_id, Control::User(UserControl::StreamBegin(stream_id)))?;
                let start = command::on_status("status", "NetStream.Play.Start", &description);
                self.command(stream_id, &start)?;
                let access = [
                    Value::string("|RtmpSampleAccess"),
                    Value::Boolean(false),
                    Value::Boolean(false),
                ];
                self.data(stream_id, &access)?;
                let data_start = [
                    Value::string("onStatus"),
                    Value::object([("code", Value::string("NetStream.Data.Start"))]),
                ];
                self.data(stream_id, &data_start)
            }
        }
    }

    /// Refuses a request with an `_error` carrying `code` and `description` (level `_error`): on
    /// stream 0 with `connect`'s transaction id, or on the request's stream with transaction id 0.
    pub fn reject(
        &mut self,
        request: RequestId,
        code: &str,
        description: &str,
    ) -> Result<(), SessionError> {
        let (transaction, stream_id) = match self
            .pending
            .remove(&request)
            .ok_or(SessionError::NoSuchRequest(request))?
        {
            Pending::Connect(c) => (c.transaction, 0),
            Pending::Publish { stream_id, .. } | Pending::Play { stream_id, .. } => (0.0, stream_id),
        };
        self.command(stream_id, &command::error(transaction, code, description))
    }

    /// Ends playback on `stream_id` with `NetStream.Play.Complete`; an error if it is not playing.
    pub fn finish_playing(&mut self, stream_id: u32) -> Result<(), SessionError> {
        let inactive = SessionError::InactiveStream {
            action: "complete",
            stream_id,
        };
        let Some(stream) = self.streams.get_mut(&stream_id) else {
            return Err(inactive);
        };
        let Stream::Playing(name) = std::mem::replace(stream, Stream::Completed) else {
            return Err(inactive);
        };
        let description = format!("Stream playback is completed for {name}");
        let complete = command::on_status("status", "NetStream.Play.Complete", &description);
        self.command(stream_id, &complete)
    }

    /// Sends a video message to a player.
    pub fn send_video(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        data: &[u8],
    ) -> Result<(), SessionError> {
        self.media(kind::VIDEO, stream_id, timestamp, data)
    }

    /// Sends an audio message to a player.
    pub fn send_audio(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        data: &[u8],
    ) -> Result<(), SessionError> {
        self.media(kind::AUDIO, stream_id, timestamp, data)
    }

    /// Sends `onMetaData` to a player.
    pub fn send_metadata(&mut self, stream_id: u32, m: &Metadata) -> Result<(), SessionError> {
        self.scratch.clear();
        command::write_metadata(m, &mut self.scratch)?;
        let header = self.header(kind::AMF0_DATA, stream_id);
        self.writer.write(header, &self.scratch, &mut self.out)?;
        Ok(())
    }

    fn media(
        &mut self,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        data: &[u8],
    ) -> Result<(), SessionError> {
        let header = Header {
            timestamp,
            type_id,
            stream_id,
        };
        Ok(self.writer.write(header, data, &mut self.out)?)
    }

    fn handle(&mut self, m: Message) -> Result<Option<Event>, SessionError> {
        Ok(match m.type_id {
            // The hot path: one comparison, and the payload moves on as it came off the socket.
            kind::VIDEO if self.publishing == Some(m.stream_id) => Some(Event::Video {
                timestamp: m.timestamp,
                data: m.data,
            }),
            kind::AUDIO if self.publishing == Some(m.stream_id) => Some(Event::Audio {
                timestamp: m.timestamp,
                data: m.data,
            }),
            // Media on any other stream is ignored, as rml_rtmp ignored it.
            kind::VIDEO | kind::AUDIO => None,
            kind::AGGREGATE => Some(Event::Aggregate {
                timestamp: m.timestamp,
                data: m.data,
            }),
            kind::WINDOW_ACK_SIZE => {
                // A malformed or zero window is ignored, as this server always ignored it.
                if let Some(size) = read_u32(&m.data).filter(|&s| s > 0) {
                    self.ack_window = Some(size);
                }
                None
            }
            kind::ACKNOWLEDGEMENT | kind::USER_CONTROL | kind::SET_PEER_BANDWIDTH => {
                if let Some(Control::User(UserControl::PingRequest(t))) =
                    Control::read(m.type_id, &m.data)?
                {
                    self.control_on(0, Control::User(UserControl::PingResponse(t)))?;
                }
                None
            }
            kind::AMF0_COMMAND | kind::AMF3_COMMAND => {
                let command = Command::read(m.type_id, &m.data)?;
                self.command_received(m.stream_id, command)?
            }
            kind::AMF0_DATA | kind::AMF3_DATA => match Data::read(&m.data) {
                Data::Malformed => Some(Event::MalformedData { type_id: m.type_id }),
                Data::SetDataFrame(metadata)
                    if self.connected.is_some()
                        && matches!(self.streams.get(&m.stream_id), Some(Stream::Publishing(_))) =>
                {
                    Some(Event::Metadata(metadata))
                }
                _ => None,
            },
            type_id => Some(Event::Unsupported { type_id }),
        })
    }

    fn command_received(
        &mut self,
        stream_id: u32,
        command: Command,
    ) -> Result<Option<Event>, SessionError> {
        Ok(match command {
            Command::Connect(connect) => {
                let request = self.wait(Pending::Connect(connect.clone()));
                Some(Event::ConnectRequested { request, connect })
            }
            Command::CreateStream { transaction } => {
                let id = self.next_stream_id;
                self.next_stream_id += 1;
                self.streams.insert(id, Stream::Created);
                // Always on stream 0, where Flash clients expect it.
                let result = RawCommand {
                    name: "_result".to_owned(),
                    transaction,
                    object: Value::Null,
                    args: vec![Value::Number(f64::from(id))],
                };
                self.command(0, &result)?;
                None
            }
            Command::Publish {
                transaction,
                request,
            } => {
                const CODE: &str = "NetStream.Publish.Start";
                let publish = match (request, self.connected.is_some()) {
                    (Err(BadArguments::TooFew), _) | (Err(BadArguments::Invalid), true) => {
                        let e = command::error(transaction, CODE, "Invalid publish arguments");
                        return self.command(stream_id, &e).map(|()| None);
                    }
                    (_, false) => {
                        let e = command::error(transaction, CODE, "Can't publish before connecting");
                        return self.command(stream_id, &e).map(|()| None);
                    }
                    (Err(BadArguments::Mode), true) => {
                        // Level `error`, not `_error`: rml_rtmp wrote this one apart.
                        let e = RawCommand {
                            args: vec![command::status("error", CODE, "Invalid publish mode given")],
                            ..command::error(transaction, CODE, "")
                        };
                        return self.command(stream_id, &e).map(|()| None);
                    }
                    (Ok(publish), true) => publish,
                };
                let request = self.wait(Pending::Publish {
                    stream_id,
                    name: publish.name.clone(),
                });
                Some(Event::PublishRequested {
                    request,
                    stream_id,
                    publish,
                })
            }
            Command::Play {
                transaction,
                request,
            } => {
                const CODE: &str = "NetStream.Play.Start";
                let play = match (request, self.connected.is_some()) {
                    (Err(BadArguments::TooFew), _) | (Err(_), true) => {
                        let e = command::error(transaction, CODE, "Invalid play arguments");
                        return self.command(stream_id, &e).map(|()| None);
                    }
                    (_, false) => {
                        let e = command::error(transaction, CODE, "Can't play before connecting");
                        return self.command(stream_id, &e).map(|()| None);
                    }
                    (Ok(play), true) => play,
                };
                let request = self.wait(Pending::Play {
                    stream_id,
                    name: play.name.clone(),
                });
                Some(Event::PlayRequested {
                    request,
                    stream_id,
                    play,
                })
            }
            Command::DeleteStream(Some(id)) if self.connected.is_some() => {
                let stream = self.streams.remove(&id);
                self.stream_ended(id, stream)
            }
            Command::CloseStream(Some(id)) if self.connected.is_some() => {
                // A closed stream can be used again, as a created one.
                let stream = self
                    .streams
                    .get_mut(&id)
                    .map(|s| std::mem::replace(s, Stream::Created));
                self.stream_ended(id, stream)
            }
            Command::DeleteStream(_) | Command::CloseStream(_) => None,
            Command::Other(raw) => Some(Event::Command(Box::new(raw))),
        })
    }

    /// The event for a stream deleted or closed in state `stream`.
    fn stream_ended(&mut self, stream_id: u32, stream: Option<Stream>) -> Option<Event> {
        match stream? {
            Stream::Publishing(_) => {
                if self.publishing == Some(stream_id) {
                    self.publishing = None;
                }
                Some(Event::PublishFinished { stream_id })
            }
            Stream::Playing(_) => Some(Event::PlayFinished { stream_id }),
            Stream::Created | Stream::Completed => None,
        }
    }

    fn wait(&mut self, pending: Pending) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request = self.next_request.wrapping_add(1);
        self.pending.insert(id, pending);
        id
    }

    fn set_stream(
        &mut self,
        stream_id: u32,
        action: &'static str,
        state: Stream,
    ) -> Result<(), SessionError> {
        let stream = self
            .streams
            .get_mut(&stream_id)
            .ok_or(SessionError::InactiveStream { action, stream_id })?;
        *stream = state;
        Ok(())
    }

    /// Milliseconds since the session started, wrapping: the timestamp of the server's own messages.
    fn epoch(&self) -> u32 {
        self.started.elapsed().as_millis() as u32
    }

    fn header(&self, type_id: u8, stream_id: u32) -> Header {
        Header {
            timestamp: self.epoch(),
            type_id,
            stream_id,
        }
    }

    fn command(&mut self, stream_id: u32, command: &RawCommand) -> Result<(), SessionError> {
        self.scratch.clear();
        command.write_to(&mut self.scratch)?;
        let header = self.header(kind::AMF0_COMMAND, stream_id);
        self.writer.write(header, &self.scratch, &mut self.out)?;
        Ok(())
    }

    fn data(&mut self, stream_id: u32, values: &[Value]) -> Result<(), SessionError> {
        self.scratch.clear();
        amf0::write_all(values, &mut self.scratch)?;
        let header = self.header(kind::AMF0_DATA, stream_id);
        self.writer.write(header, &self.scratch, &mut self.out)?;
        Ok(())
    }

    fn control_on(&mut self, stream_id: u32, c: Control) -> Result<(), SessionError> {
        let header = self.header(c.type_id(), stream_id);
        Ok(self
            .writer
            .write(header, c.payload().as_ref(), &mut self.out)?)
    }

    fn control_full(&mut self, c: Control) -> Result<(), SessionError> {
        let header = self.header(c.type_id(), 0);
        Ok(self
            .writer
            .write_full(header, c.payload().as_ref(), &mut self.out)?)
    }
}
