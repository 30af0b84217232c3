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
//!   rml_rtmp panicked or overflowed the stack, or read past the end of a truncated string (padding
//!   it with zeros);
//! - `NetStream.Play.Reset` arrives on the play's message stream: rml_rtmp serialized it after
//!   `NetStream.Play.Start` but sent it before, so its compressed header made clients read it on
//!   stream 0 (players act on the code, whatever the stream).
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
                self.control_on(
                    stream_id,
                    Control::User(UserControl::StreamBegin(stream_id)),
                )?;
                let start = command::on_status("status", "NetStream.Publish.Start", &description);
                self.command(stream_id, &start)
            }
            Pending::Play { stream_id, name } => {
                let description = format!("Successfully started playback on stream key {name}");
                self.set_stream(stream_id, "play", Stream::Playing(name))?;
                let reset = command::on_status("status", "NetStream.Play.Reset", "Reset stream");
                self.command(stream_id, &reset)?;
                self.control_on(
                    stream_id,
                    Control::User(UserControl::StreamBegin(stream_id)),
                )?;
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
            Pending::Publish { stream_id, .. } | Pending::Play { stream_id, .. } => {
                (0.0, stream_id)
            }
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
                        && matches!(
                            self.streams.get(&m.stream_id),
                            Some(Stream::Publishing(_))
                        ) =>
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
                        let e =
                            command::error(transaction, CODE, "Can't publish before connecting");
                        return self.command(stream_id, &e).map(|()| None);
                    }
                    (Err(BadArguments::Mode), true) => {
                        // Level `error`, not `_error`: rml_rtmp wrote this one apart.
                        let e = RawCommand {
                            args: vec![command::status(
                                "error",
                                CODE,
                                "Invalid publish mode given",
                            )],
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

#[cfg(test)]
mod tests {
    //! The session driven by real client byte streams, written by rml_rtmp's client-side serializer
    //! (an independent implementation), and its answers compared, message for message, with what
    //! rml_rtmp 0.8's own `ServerSession` answers to the same bytes, both read back by rml_rtmp's
    //! deserializer.

    use super::*;
    use rml_rtmp::chunk_io::{ChunkDeserializer, ChunkSerializer};
    use rml_rtmp::messages::{MessagePayload, RtmpMessage};
    use rml_rtmp::rml_amf0::Amf0Value;
    use rml_rtmp::sessions::{
        ServerSession as RmlSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
        StreamMetadata,
    };
    use rml_rtmp::time::RtmpTimestamp;

    /// A client: rml_rtmp's serializer, one per connection (it compresses headers like a client).
    struct Client(ChunkSerializer);

    impl Client {
        fn new() -> Self {
            Self(ChunkSerializer::new())
        }

        fn send(&mut self, message: RtmpMessage, stream: u32, ts: u32) -> Vec<u8> {
            let payload = message
                .into_message_payload(RtmpTimestamp::new(ts), stream)
                .expect("payload");
            self.0
                .serialize(&payload, false, false)
                .expect("chunk")
                .bytes
        }

        fn command(&mut self, name: &str, txn: f64, args: Vec<Amf0Value>, stream: u32) -> Vec<u8> {
            self.command_with(name, txn, Amf0Value::Null, args, stream)
        }

        fn command_with(
            &mut self,
            name: &str,
            txn: f64,
            object: Amf0Value,
            args: Vec<Amf0Value>,
            stream: u32,
        ) -> Vec<u8> {
            let message = RtmpMessage::Amf0Command {
                command_name: name.into(),
                transaction_id: txn,
                command_object: object,
                additional_arguments: args,
            };
            self.send(message, stream, 0)
        }

        fn connect(&mut self, app: &str) -> Vec<u8> {
            let object = Amf0Value::Object(
                [
                    ("app".to_string(), s(app)),
                    ("tcUrl".to_string(), s(&format!("rtmp://127.0.0.1/{app}"))),
                    ("flashVer".to_string(), s("FMLE/3.0")),
                    ("objectEncoding".to_string(), Amf0Value::Number(0.0)),
                ]
                .into(),
            );
            self.command_with("connect", 1.0, object, vec![], 0)
        }
    }

    fn s(v: &str) -> Amf0Value {
        Amf0Value::Utf8String(v.into())
    }

    /// The fixture's audio and video tags: (video?, timestamp, body).
    fn fixture() -> Vec<(bool, u32, Bytes)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip.flv");
        let flv = std::fs::read(path).expect("fixture");
        let mut tags = Vec::new();
        let mut pos = 13;
        while pos + 11 <= flv.len() {
            let kind = flv[pos] & 0x1f;
            let size = u32::from_be_bytes([0, flv[pos + 1], flv[pos + 2], flv[pos + 3]]) as usize;
            let ts = u32::from_be_bytes([flv[pos + 7], flv[pos + 4], flv[pos + 5], flv[pos + 6]]);
            let body = Bytes::copy_from_slice(&flv[pos + 11..pos + 11 + size]);
            if kind == 8 || kind == 9 {
                tags.push((kind == 9, ts, body));
            }
            pos += 11 + size + 4;
        }
        tags
    }

    /// What a publisher like ffmpeg sends: connect, releaseStream, FCPublish, createStream, publish,
    /// metadata, `tags` media messages, FCUnpublish, deleteStream.
    fn publisher(tags: usize) -> Vec<Vec<u8>> {
        let mut c = Client::new();
        let mut out = vec![c.connect("live")];
        out.push(c.command("releaseStream", 2.0, vec![s("cam")], 0));
        out.push(c.command("FCPublish", 3.0, vec![s("cam")], 0));
        out.push(c.command("createStream", 4.0, vec![], 0));
        out.push(c.command("publish", 5.0, vec![s("cam"), s("live")], 1));
        let metadata = RtmpMessage::Amf0Data {
            values: vec![
                s("@setDataFrame"),
                s("onMetaData"),
                Amf0Value::Object(
                    [
                        ("width".to_string(), Amf0Value::Number(320.0)),
                        ("encoder".to_string(), s("Lavf")),
                    ]
                    .into(),
                ),
            ],
        };
        out.push(c.send(metadata, 1, 0));
        for (video, ts, data) in fixture().into_iter().take(tags) {
            let m = if video {
                RtmpMessage::VideoData { data }
            } else {
                RtmpMessage::AudioData { data }
            };
            out.push(c.send(m, 1, ts));
        }
        out.push(c.command("FCUnpublish", 6.0, vec![s("cam")], 0));
        out.push(c.command("deleteStream", 7.0, vec![Amf0Value::Number(1.0)], 0));
        out
    }

    /// What a player like ffplay sends: connect, createStream, play.
    fn player(start: f64) -> Vec<Vec<u8>> {
        let mut c = Client::new();
        vec![
            c.connect("live"),
            c.command("createStream", 2.0, vec![], 0),
            c.command("getStreamLength", 3.0, vec![s("cam")], 0),
            c.command("play", 4.0, vec![s("cam"), Amf0Value::Number(start)], 1),
        ]
    }

    /// The messages of a server's output as rml_rtmp reads them: (type, message stream, message).
    fn read(wire: &[u8]) -> Vec<(u8, u32, RtmpMessage)> {
        let mut de = ChunkDeserializer::new();
        let mut out = Vec::new();
        let mut bytes = wire;
        while let Some(p) = de.get_next_message(bytes).expect("rml reads our output") {
            bytes = &[];
            let m = p.to_rtmp_message().expect("a message rml knows");
            if let RtmpMessage::SetChunkSize { size } = m {
                de.set_max_chunk_size(size as usize).expect("size");
            }
            out.push((p.type_id, p.message_stream_id, m));
        }
        out
    }

    /// How the server under test answers requests.
    #[derive(Clone, Copy)]
    enum Answer {
        Accept,
        Reject,
    }

    /// Our session over `input`, fed in pieces of `split`: its output, and the events it raised.
    fn ours(input: &[u8], split: usize, answer: Answer) -> (Vec<u8>, Vec<Event>) {
        let mut session = ServerSession::new(Config::default()).expect("session");
        let mut events = Vec::new();
        for piece in input.chunks(split) {
            session.push(piece).expect("valid input");
            while let Some(event) = session.next_event().expect("valid input") {
                if let Event::ConnectRequested { request, .. }
                | Event::PublishRequested { request, .. }
                | Event::PlayRequested { request, .. } = &event
                {
                    match answer {
                        Answer::Accept => session.accept(*request),
                        Answer::Reject => session.reject(*request, "Test.Refused", "no"),
                    }
                    .expect("answered");
                }
                events.push(event);
            }
        }
        (session.output().to_vec(), events)
    }

    /// rml_rtmp 0.8's session over the same input, given one message at a time and answering each
    /// request before the next (as this server drove it): the session and its output.
    fn rml(input: &[Vec<u8>], answer: Answer) -> (RmlSession, Vec<u8>) {
        let (mut session, initial) =
            RmlSession::new(ServerSessionConfig::new()).expect("rml session");
        let mut out = Vec::new();
        answer_all(&mut session, initial, answer, &mut out);
        for message in input {
            let results = session.handle_input(message).expect("rml reads it");
            answer_all(&mut session, results, answer, &mut out);
        }
        (session, out)
    }

    fn theirs(input: &[Vec<u8>], answer: Answer) -> Vec<u8> {
        rml(input, answer).1
    }

    fn answer_all(
        session: &mut RmlSession,
        results: Vec<ServerSessionResult>,
        answer: Answer,
        out: &mut Vec<u8>,
    ) {
        let mut queue: std::collections::VecDeque<_> = results.into();
        while let Some(r) = queue.pop_front() {
            match r {
                ServerSessionResult::OutboundResponse(p) => out.extend(p.bytes),
                ServerSessionResult::RaisedEvent(
                    ServerSessionEvent::ConnectionRequested { request_id, .. }
                    | ServerSessionEvent::PublishStreamRequested { request_id, .. }
                    | ServerSessionEvent::PlayStreamRequested { request_id, .. },
                ) => queue.extend(
                    match answer {
                        Answer::Accept => session.accept_request(request_id),
                        Answer::Reject => session.reject_request(request_id, "Test.Refused", "no"),
                    }
                    .expect("answered"),
                ),
                _ => {}
            }
        }
    }

    fn same_messages(ours: &[u8], theirs: &[u8]) {
        let (ours, theirs) = (read(ours), read(theirs));
        assert_eq!(ours.len(), theirs.len(), "{ours:#?}\n{theirs:#?}");
        for (o, t) in ours.iter().zip(&theirs) {
            assert_eq!(o, t);
        }
    }

    #[test]
    fn a_publisher_gets_what_rml_rtmp_answered_and_its_media_arrives_in_any_split() {
        let messages = publisher(40);
        let expected = theirs(&messages, Answer::Accept);
        let input = messages.concat();
        for split in [1, 7, 1777, input.len()] {
            let (out, events) = ours(&input, split, Answer::Accept);
            same_messages(&out, &expected);
            let media: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Video { timestamp, data } => Some((true, *timestamp, data.clone())),
                    Event::Audio { timestamp, data } => Some((false, *timestamp, data.clone())),
                    _ => None,
                })
                .collect();
            assert_eq!(media, fixture()[..40], "split {split}");
            let Some(Event::ConnectRequested { connect, .. }) = events.first() else {
                panic!("connect first: {events:?}");
            };
            assert_eq!(connect.app, "live");
            assert_eq!(connect.tc_url.as_deref(), Some("rtmp://127.0.0.1/live"));
            assert_eq!(connect.flash_ver.as_deref(), Some("FMLE/3.0"));
            let names: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Command(c) => Some(c.name.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(names, ["releaseStream", "FCPublish", "FCUnpublish"]);
            assert!(events.contains(&Event::Metadata(Metadata {
                video_width: Some(320),
                encoder: Some("Lavf".into()),
                ..Metadata::default()
            })));
            assert_eq!(
                events.last(),
                Some(&Event::PublishFinished { stream_id: 1 })
            );
        }
    }

    #[test]
    fn refusals_and_bad_arguments_are_answered_as_rml_rtmp_answered() {
        for messages in [publisher(2), player(-2000.0)] {
            let input = messages.concat();
            same_messages(
                &ours(&input, input.len(), Answer::Reject).0,
                &theirs(&messages, Answer::Reject),
            );
        }
        let mut c = Client::new();
        let mut input = vec![
            c.command("publish", 2.0, vec![s("cam"), s("live")], 1),
            c.command("play", 3.0, vec![s("cam")], 1),
            c.connect("live"),
            c.command("createStream", 4.0, vec![], 0),
            c.command("publish", 5.0, vec![s("cam")], 1),
            c.command("publish", 6.0, vec![Amf0Value::Null, s("live")], 1),
            c.command("publish", 7.0, vec![s("cam"), s("later")], 1),
            c.command("play", 8.0, vec![], 1),
            c.command("play", 9.0, vec![Amf0Value::Number(1.0)], 1),
        ];
        let ping = RtmpMessage::UserControl {
            event_type: rml_rtmp::messages::UserControlEventType::PingRequest,
            stream_id: None,
            buffer_length: None,
            timestamp: Some(RtmpTimestamp::new(1234)),
        };
        input.push(c.send(ping, 0, 0));
        let (out, _) = ours(&input.concat(), 5, Answer::Accept);
        same_messages(&out, &theirs(&input, Answer::Accept));
    }

    #[test]
    fn a_player_gets_what_rml_rtmp_sent_it() {
        let messages = player(-2000.0);
        let input = messages.concat();
        let (mut session, mut expected) = rml(&messages, Answer::Accept);
        let mut meta = StreamMetadata::new();
        meta.video_width = Some(640);
        meta.video_frame_rate = Some(30.0);
        meta.audio_is_stereo = Some(true);
        meta.encoder = Some("obs".into());
        let metadata = Metadata {
            video_width: Some(640),
            video_frame_rate: Some(30.0),
            audio_is_stereo: Some(true),
            encoder: Some("obs".into()),
            ..Metadata::default()
        };
        let send = session.send_metadata(1, &meta).expect("metadata");
        expected.extend(send.bytes);
        for (video, ts, data) in fixture().into_iter().take(30) {
            let p = if video {
                session.send_video_data(1, data, RtmpTimestamp::new(ts), false)
            } else {
                session.send_audio_data(1, data, RtmpTimestamp::new(ts), false)
            };
            expected.extend(p.expect("media").bytes);
        }
        expected.extend(session.finish_playing(1).expect("finish").bytes);

        let (_, events) = ours(&input, input.len(), Answer::Accept);
        let Some(Event::PlayRequested {
            play, stream_id, ..
        }) = events
            .iter()
            .find(|e| matches!(e, Event::PlayRequested { .. }))
        else {
            panic!("play requested: {events:?}");
        };
        assert_eq!(*stream_id, 1);
        assert_eq!(play.name, "cam");
        assert_eq!(play.start, command::PlayStart::LiveOrRecorded);
        let mut ours = ServerSession::new(Config::default()).expect("session");
        ours.push(&input).expect("valid");
        while let Some(e) = ours.next_event().expect("valid") {
            if let Event::ConnectRequested { request, .. } | Event::PlayRequested { request, .. } =
                e
            {
                ours.accept(request).expect("accepted");
            }
        }
        ours.send_metadata(1, &metadata).expect("metadata");
        for (video, ts, data) in fixture().into_iter().take(30) {
            if video {
                ours.send_video(1, ts, &data).expect("video");
            } else {
                ours.send_audio(1, ts, &data).expect("audio");
            }
        }
        ours.finish_playing(1).expect("finish");
        assert!(ours.finish_playing(1).is_err(), "finished once");
        // The one difference, a fix: rml_rtmp serialized NetStream.Play.Reset after NetStream.Play.Start
        // but sent it before, so its compressed header made clients read it on stream 0.
        let (ours, mut theirs) = (read(ours.output()), read(&expected));
        let reset = |m: &RtmpMessage| {
            matches!(m, RtmpMessage::Amf0Command { additional_arguments, .. }
            if additional_arguments.first().and_then(|a| a.clone().get_object_properties())
                .and_then(|p| p.get("code").cloned()) == Some(s("NetStream.Play.Reset")))
        };
        let at = theirs
            .iter()
            .position(|(_, _, m)| reset(m))
            .expect("a reset");
        assert_eq!((theirs[at].1, ours[at].1), (0, 1));
        assert!(reset(&ours[at].2));
        theirs[at].1 = 1;
        assert_eq!(ours, theirs);
    }

    #[test]
    fn acknowledgements_carry_the_total_once_per_window() {
        let mut session = ServerSession::new(Config::default()).expect("session");
        let mut c = Client::new();
        let unknown = |c: &mut Client| {
            c.send(
                RtmpMessage::Unknown {
                    type_id: 0x30,
                    data: Bytes::from(vec![0; 100]),
                },
                0,
                0,
            )
        };
        // Before the client announced its window: nothing acknowledged.
        let mut total = 0;
        let mut expected = Vec::new();
        let mut feed = |session: &mut ServerSession, bytes: Vec<u8>| {
            total += bytes.len() as u32;
            session.push(&bytes).expect("valid");
            while session.next_event().expect("valid").is_some() {}
            total
        };
        for _ in 0..30 {
            feed(&mut session, unknown(&mut c));
        }
        // The window counts from the next read (as before: bytes are counted as they are read, before
        // the messages in them); the first acknowledgement then carries everything so far.
        let window = c.send(RtmpMessage::WindowAcknowledgement { size: 300 }, 0, 0);
        feed(&mut session, window);
        let mut acked: Option<u32> = None;
        for _ in 0..10 {
            let now = feed(&mut session, unknown(&mut c));
            if acked.is_none_or(|a| now - a >= 300) {
                expected.push(now);
                acked = Some(now);
            }
        }
        let acks: Vec<u32> = read(session.output())
            .into_iter()
            .filter_map(|(_, stream, m)| match m {
                RtmpMessage::Acknowledgement { sequence_number } => {
                    assert_eq!(stream, 0);
                    Some(sequence_number)
                }
                _ => None,
            })
            .collect();
        assert!(acks.len() >= 3, "{acks:?}");
        assert_eq!(acks, expected);
    }

    #[test]
    fn the_fuzz_corpus_publish_reaches_media() {
        let seed = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz/corpus/rtmp_session/publish-12-tags"),
        )
        .expect("corpus");
        // A mode byte, then what the client sends after the handshake.
        let (_, events) = ours(&seed[1..], 333, Answer::Accept);
        let media = events
            .iter()
            .filter(|e| matches!(e, Event::Video { .. } | Event::Audio { .. }))
            .count();
        assert_eq!(media, 12);
    }

    #[test]
    fn hostile_commands_end_the_session_with_a_typed_error() {
        let mut deep = vec![2, 0, 1, b'x', 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for _ in 0..100_000 {
            deep.extend_from_slice(&[10, 0, 0, 0, 1]);
        }
        for (body, text) in [
            (
                vec![2, 0, 1, b'x'],
                "RTMP protocol error: malformed AMF0 command: fewer than three values",
            ),
            (
                deep,
                "RTMP protocol error: malformed AMF0 command: objects nested too deeply",
            ),
            (
                vec![2, 0, 3, b'a', 0xff, 0xfe],
                "RTMP protocol error: malformed AMF0 command: string is not UTF-8",
            ),
        ] {
            let mut session = ServerSession::new(Config::default()).expect("session");
            let mut sc = ChunkSerializer::new();
            let mut wire = sc
                .set_max_chunk_size(1 << 20, RtmpTimestamp::new(0))
                .expect("size")
                .bytes;
            let data = Bytes::from(body);
            wire.extend(
                sc.serialize(
                    &MessagePayload {
                        timestamp: RtmpTimestamp::new(0),
                        type_id: kind::AMF0_COMMAND,
                        message_stream_id: 0,
                        data,
                    },
                    false,
                    false,
                )
                .expect("chunk")
                .bytes,
            );
            session.push(&wire).expect("chunks are fine");
            let e = session.next_event().expect_err("refused");
            assert!(e.to_string().starts_with(text), "{e}");
        }
        // A malformed data message is dropped, not fatal.
        let mut session = ServerSession::new(Config::default()).expect("session");
        let bad = Client::new().send(
            RtmpMessage::Unknown {
                type_id: kind::AMF0_DATA,
                data: Bytes::from_static(&[2, 0, 9]),
            },
            0,
            0,
        );
        session.push(&bad).expect("valid");
        assert_eq!(
            session.next_event(),
            Ok(Some(Event::MalformedData {
                type_id: kind::AMF0_DATA
            }))
        );
    }
}
