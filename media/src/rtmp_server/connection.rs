//! One RTMP connection after the handshake: the socket, its timeouts and pacing, admission (hooks and
//! the registry), and the glue to the broadcast or the player's subscription, around the library's
//! RTMP session state machine (`media::rtmp::ServerSession`), which does all of the protocol.
//!
//! Every exit path (clean unpublish, EOF, network error, idle timeout, kick, `on_update` refusal,
//! shutdown) goes through [`Connection::finish`], which ends the broadcast so edges learn the stream
//! stopped, and fires the done-hook exactly once for a session the hooks accepted.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::rtmp::command::Publish;
use media::rtmp::session::{Config, RequestId};
use media::rtmp::{self, aggregate, kind, Event, ServerSession};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::link::{self, Link, LinkError, Received, Socket};
use super::outcome::{EndReason, Refusal};
use super::{pacing, ServerContext};
use crate::broadcast::Broadcast;
use crate::hooks::{split_stream_key, ClientInfo, Decision, PlayRequest, Role};
use crate::live::{Frame, LiveStream};
use crate::registry::AlreadyLive;

/// Room for one read: a 50 ms tick (`--publish-read-interval-ms`) of a 10 Mbps publisher; a keyframe
/// takes a few reads in a row.
const READ_ROOM: usize = 64 * 1024;
/// How long a playing client may stay silent: a day, i.e. only the write timeout applies.
const PLAYER_READ_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Frames written to a player per wake-up, so one busy player cannot starve its own socket reads.
const PLAYER_BATCH: usize = 64;

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("no data for {0:?}; closing idle connection")]
    Idle(Duration),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The client broke the protocol (the text says how: "RTMP protocol error: ...").
    #[error(transparent)]
    Protocol(#[from] rtmp::SessionError),
    #[error("{0}")]
    Ended(#[from] EndReason),
}

/// What an accepted session is doing.
enum Active {
    Publishing {
        // Boxed: the remuxer's state is large and a connection holds one of these at most.
        broadcast: Box<Broadcast>,
        name: String,
        args: Vec<(String, String)>,
        since: Instant,
    },
    Playing {
        live: Arc<LiveStream>,
        stream_id: u32,
        name: String,
        args: Vec<(String, String)>,
        since: Instant,
    },
}

/// Runs a connection whose handshake is done (`remaining`: what the client sent after it) to its end;
/// never panics the server, logs why it ended.
pub async fn run(
    socket: impl Socket,
    peer: SocketAddr,
    remaining: Vec<u8>,
    ctx: Arc<ServerContext>,
    cancel: CancellationToken,
) {
    debug!("connection accepted");
    let client = ClientInfo {
        addr: Some(peer.ip()),
        clientid: ctx.next_client_id.fetch_add(1, Ordering::Relaxed),
        ..ClientInfo::default()
    };
    let mut conn = Connection {
        ctx,
        client,
        active: None,
        player_rx: None,
        close: None,
        last_timestamp: 0,
        dropped: 0,
        unknown: 0,
    };
    let mut link = Link::new(socket);
    let result = conn.drive(&mut link, remaining, &cancel).await;
    conn.finish().await;
    link.shutdown().await;
    match result {
        Ok(()) => debug!(%peer, "connection closed"),
        Err(SessionError::Ended(why)) => warn!(%peer, "{why}"),
        Err(e @ SessionError::Protocol(_)) => warn!(%peer, "connection closed: {e}"),
        Err(e) => info!(%peer, "connection ended: {e}"),
    }
}

struct Connection {
    ctx: Arc<ServerContext>,
    client: ClientInfo,
    active: Option<Active>,
    /// Frames for a playing session; taken out of `active` so the loop can select on it.
    player_rx: Option<mpsc::Receiver<Frame>>,
    /// Set when the session must end after the pending responses are written (e.g. a refused publish).
    close: Option<EndReason>,
    /// Latest media timestamp seen (for `on_update`'s `timestamp` field).
    last_timestamp: u32,
    /// Malformed media messages dropped; logged sparsely so a broken encoder cannot flood the log.
    dropped: u64,
    /// Messages of unsupported types ignored; logged sparsely.
    unknown: u64,
}

impl Connection {
    async fn drive(
        &mut self,
        socket: &mut Link<impl Socket>,
        remaining: Vec<u8>,
        cancel: &CancellationToken,
    ) -> Result<(), SessionError> {
        let mut session = ServerSession::new(Config::default())?;
        session.push(&remaining)?;
        self.events(&mut session).await?;
        self.flush(socket, &mut session).await?;

        let idle = self.ctx.idle_timeout;
        let mut update = tokio::time::interval(self.ctx.update_interval);
        update.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        update.reset();
        // Set after a publisher's read drained the socket: do not read again before then (`pacing`).
        let mut read_at: Option<tokio::time::Instant> = None;
        loop {
            if let Some(why) = self.close.take() {
                return Err(why.into());
            }
            let kick = match &self.active {
                Some(Active::Publishing { broadcast, .. }) => Some(broadcast.live().kick.clone()),
                _ => None,
            };
            // A player sends almost nothing once playing (its acknowledgement window is 1 GB), so
            // silence from it is no sign of a dead connection; writes to it have their own timeout.
            let read_timeout = if self.player_rx.is_some() {
                PLAYER_READ_TIMEOUT
            } else {
                idle
            };
            tokio::select! {
                _ = cancel.cancelled() => {
                    info!("server shutting down; closing connection");
                    return Ok(());
                }
                _ = kicked(kick.as_ref()) => {
                    return Err(EndReason::Kicked.into());
                }
                _ = update.tick(), if self.active.is_some() && self.ctx.hooks.has_update() => {
                    if !self.update_hook().await {
                        return Err(EndReason::UpdateRefused.into());
                    }
                }
                frame = recv(&mut self.player_rx), if self.player_rx.is_some() => {
                    let Some(frame) = frame else {
                        return self.stop_playing(&mut session, socket).await;
                    };
                    self.play_frames(&mut session, frame)?;
                    self.flush(socket, &mut session).await?;
                }
                // Straight into the session's chunk reader: no intermediate buffer, no copy.
                read = socket.read(session.read_buffer(READ_ROOM), read_at, read_timeout) => {
                    let n = match read {
                        Err(LinkError::TimedOut) => return Err(SessionError::Idle(idle)),
                        Err(LinkError::Io(e)) => return Err(e.into()),
                        Ok(Received::Nothing) => 0,
                        Ok(Received::Bytes(0)) => return Ok(()),
                        Ok(Received::Bytes(n)) => n,
                    };
                    // A publisher is read on the shared clock, off the reactor where its socket can
                    // be; on it, a full read means more may be waiting: read on at once.
                    let paced = matches!(self.active, Some(Active::Publishing { .. }))
                        .then_some(self.ctx.publish_read_interval)
                        .flatten();
                    socket.set_off_reactor(paced.is_some())?;
                    let drained = n
                        < if socket.is_off_reactor() {
                            link::TICK_MAX
                        } else {
                            READ_ROOM
                        };
                    read_at = match paced {
                        Some(period) if drained => Some(pacing::next_read(period)),
                        _ => None,
                    };
                    if n == 0 {
                        continue;
                    }
                    session.received(n)?;
                    self.events(&mut session).await?;
                    self.flush(socket, &mut session).await?;
                }
            }
        }
    }

    /// Ends what the session was doing: exactly once, whatever ended it.
    async fn finish(&mut self) {
        self.player_rx = None;
        match self.active.take() {
            Some(Active::Publishing {
                broadcast,
                name,
                args,
                ..
            }) => {
                broadcast.end().await;
                self.ctx
                    .hooks
                    .done(Role::Publish, &self.client, &name, &args);
            }
            Some(Active::Playing { name, args, .. }) => {
                info!(stream = %name, "player left");
                self.ctx.hooks.done(Role::Play, &self.client, &name, &args);
            }
            None => {}
        }
    }

    /// Handles every event the input read so far completes, one at a time, each answered before the
    /// next is read.
    async fn events(&mut self, session: &mut ServerSession) -> Result<(), SessionError> {
        while let Some(event) = session.next_event()? {
            self.event(session, event).await?;
        }
        Ok(())
    }

    async fn flush(
        &self,
        socket: &mut Link<impl Socket>,
        session: &mut ServerSession,
    ) -> Result<(), SessionError> {
        if session.output().is_empty() {
            return Ok(());
        }
        let idle = self.ctx.idle_timeout;
        socket
            .write_all(session.output(), idle)
            .await
            .map_err(|e| match e {
                LinkError::TimedOut => SessionError::Idle(idle),
                LinkError::Io(e) => e.into(),
            })?;
        session.clear_output();
        Ok(())
    }

    async fn update_hook(&self) -> bool {
        let (role, name, args, since) = match &self.active {
            Some(Active::Publishing {
                name, args, since, ..
            }) => (Role::Publish, name, args, since),
            Some(Active::Playing {
                name, args, since, ..
            }) => (Role::Play, name, args, since),
            None => return true,
        };
        self.ctx
            .hooks
            .on_update(
                role,
                &self.client,
                name,
                args,
                since.elapsed().as_secs(),
                self.last_timestamp,
            )
            .await
    }

    async fn event(
        &mut self,
        session: &mut ServerSession,
        event: Event,
    ) -> Result<(), SessionError> {
        match event {
            // The media path first: one per audio or video message of the broadcast.
            Event::Video { timestamp, data } => self.media(kind::VIDEO, timestamp, data)?,
            Event::Audio { timestamp, data } => self.media(kind::AUDIO, timestamp, data)?,
            Event::ConnectRequested { request, connect } => {
                // Some clients append a query to the app name (`live?token=..`).
                let app = connect.app.split('?').next().unwrap_or_default().to_owned();
                let field = |f: &Option<String>| f.clone().unwrap_or_default();
                self.client.flashver = field(&connect.flash_ver);
                self.client.swfurl = field(&connect.swf_url);
                self.client.tcurl = field(&connect.tc_url);
                self.client.pageurl = field(&connect.page_url);
                self.client.app = app.clone();
                if app == self.ctx.app {
                    session.accept(request)?;
                } else {
                    self.close = Some(EndReason::UnknownApp(connect.app.clone()));
                    session.reject(
                        request,
                        "NetConnection.Connect.Rejected",
                        &format!(
                            "unknown application `{}`; use `{}`",
                            connect.app, self.ctx.app
                        ),
                    )?;
                }
            }
            Event::PublishRequested {
                request, publish, ..
            } => self.publish_requested(session, request, &publish).await?,
            Event::PlayRequested {
                request,
                stream_id,
                play,
            } => {
                // nginx-rtmp forwards the raw numbers cast to uint32.
                let request_args = PlayRequest {
                    start_ms: play.start.nginx_value(),
                    duration_ms: play.duration.unwrap_or(0),
                    reset: play.reset,
                };
                self.play_requested(session, request, &play.name, stream_id, request_args)
                    .await?
            }
            // deleteStream/closeStream: the broadcast (or playback) is over even if the socket lingers.
            Event::PublishFinished { .. } | Event::PlayFinished { .. } => self.finish().await,
            Event::Metadata(metadata) => {
                if let Some(Active::Publishing { broadcast, .. }) = self.active.as_mut() {
                    broadcast.on_metadata(metadata);
                }
            }
            Event::Aggregate { timestamp, data } => self.handle_aggregate(&data, timestamp)?,
            Event::Command(command) => {
                // releaseStream, FCPublish, FCUnpublish and friends need no answer for OBS or ffmpeg.
                debug!(command_name = %command.name, "ignoring AMF0 command");
            }
            Event::MalformedData { type_id } => {
                warn!(type_id, "dropping malformed AMF0 data message");
            }
            Event::Unsupported { type_id } => {
                self.unknown += 1;
                if self.unknown <= 5 || self.unknown.is_power_of_two() {
                    warn!(
                        type_id,
                        ignored_so_far = self.unknown,
                        "ignoring RTMP message of unsupported type"
                    );
                }
            }
        }
        Ok(())
    }

    /// Validates the name, asks the manager, and applies its answer; the error status a refused client
    /// gets says why.
    async fn admit(
        &mut self,
        role: Role,
        stream_key: &str,
        publish_type: &str,
        play: PlayRequest,
    ) -> Result<(String, Vec<(String, String)>, Option<bool>), Refusal> {
        if self.active.is_some() {
            return Err(Refusal::AlreadyActive);
        }
        let (name, args) = split_stream_key(stream_key);
        // Before any hook is called: a name that could escape a path never reaches the manager, nor
        // does a publish that would be refused as a duplicate anyway.
        common::validate_stream_name(name)?;
        if role == Role::Publish && self.ctx.registry.get(name).is_some() {
            return Err(AlreadyLive(name.to_owned()).into());
        }
        let (decision, record) = match role {
            Role::Publish => {
                self.ctx
                    .hooks
                    .on_publish(&self.client, name, publish_type, &args)
                    .await
            }
            Role::Play => (
                self.ctx
                    .hooks
                    .on_play(&self.client, name, play, &args)
                    .await,
                None,
            ),
        };
        let name = match decision {
            Decision::Allow => name.to_owned(),
            Decision::Rename(new) => {
                common::validate_stream_name(&new).map_err(Refusal::BadRename)?;
                info!(from = %name, to = %new, "manager renamed the stream");
                new
            }
            Decision::Deny(why) => return Err(why.into()),
        };
        Ok((name, args, record))
    }

    async fn publish_requested(
        &mut self,
        session: &mut ServerSession,
        request: RequestId,
        publish: &Publish,
    ) -> Result<(), SessionError> {
        let (name, args, record) = match self
            .admit(
                Role::Publish,
                &publish.name,
                publish.kind.as_str(),
                PlayRequest::default(),
            )
            .await
        {
            Ok(ok) => ok,
            Err(why) => return self.refuse(session, request, "NetStream.Publish.BadName", why),
        };
        let addr = self.client.addr.map(|a| a.to_string()).unwrap_or_default();
        let claim = match self.ctx.registry.claim(&name, &self.client.app, addr) {
            Ok(c) => c,
            Err(e) => {
                // The manager accepted a session that never started: tell it so.
                self.ctx
                    .hooks
                    .done(Role::Publish, &self.client, &name, &args);
                return self.refuse(session, request, "NetStream.Publish.BadName", e.into());
            }
        };
        tracing::Span::current().record("stream", name.as_str());
        session.accept(request)?;
        // The manager's `X-Record` answer wins over `--record`.
        let recording = if record.unwrap_or(self.ctx.record_all) {
            self.ctx
                .recorder
                .start(&name, claim.live.started_at_ms, &self.client, &args)
        } else {
            None
        };
        let broadcast = Broadcast::start(
            claim,
            self.ctx.producer.clone(),
            self.ctx.segment,
            recording,
            self.ctx.part_target,
        )
        .await;
        self.active = Some(Active::Publishing {
            broadcast: Box::new(broadcast),
            name,
            args,
            since: Instant::now(),
        });
        Ok(())
    }

    async fn play_requested(
        &mut self,
        session: &mut ServerSession,
        request: RequestId,
        stream_key: &str,
        stream_id: u32,
        play: PlayRequest,
    ) -> Result<(), SessionError> {
        let (name, args, _) = match self.admit(Role::Play, stream_key, "live", play).await {
            Ok(ok) => ok,
            Err(why) => return self.refuse(session, request, "NetStream.Play.Failed", why),
        };
        let Some(live) = self.ctx.registry.get(&name) else {
            self.ctx.hooks.done(Role::Play, &self.client, &name, &args);
            return self.refuse(
                session,
                request,
                "NetStream.Play.StreamNotFound",
                Refusal::NotLive(name),
            );
        };
        tracing::Span::current().record("stream", name.as_str());
        session.accept(request)?;
        self.player_rx = Some(live.subscribe());
        info!(stream = %name, "player joined");
        self.active = Some(Active::Playing {
            live,
            stream_id,
            name,
            args,
            since: Instant::now(),
        });
        Ok(())
    }

    fn refuse(
        &mut self,
        session: &mut ServerSession,
        request: RequestId,
        code: &'static str,
        refusal: Refusal,
    ) -> Result<(), SessionError> {
        session.reject(request, code, &refusal.to_string())?;
        self.close = Some(EndReason::Refused { code, refusal });
        Ok(())
    }

    /// Writes `first` and whatever else is already queued (bounded) for the player.
    fn play_frames(
        &mut self,
        session: &mut ServerSession,
        first: Frame,
    ) -> Result<(), SessionError> {
        let Some(Active::Playing { stream_id, .. }) = &self.active else {
            return Ok(());
        };
        let stream_id = *stream_id;
        let mut frame = Some(first);
        let mut n = 0;
        while let Some(f) = frame.take() {
            match f {
                Frame::Metadata(m) => session.send_metadata(stream_id, &m)?,
                Frame::Video { timestamp, data } => {
                    self.last_timestamp = timestamp;
                    session.send_video(stream_id, timestamp, &data)?;
                }
                Frame::Audio { timestamp, data } => {
                    session.send_audio(stream_id, timestamp, &data)?
                }
            }
            n += 1;
            if n < PLAYER_BATCH {
                frame = self.player_rx.as_mut().and_then(|rx| rx.try_recv().ok());
            }
        }
        Ok(())
    }

    /// The publisher left (or this player was too slow): tell the player the stream ended, then close.
    async fn stop_playing(
        &mut self,
        session: &mut ServerSession,
        socket: &mut Link<impl Socket>,
    ) -> Result<(), SessionError> {
        self.player_rx = None;
        if let Some(Active::Playing {
            stream_id, live, ..
        }) = &self.active
        {
            let still_live = self
                .ctx
                .registry
                .get(&live.name)
                .is_some_and(|l| Arc::ptr_eq(&l, live));
            // Not playing any more (the client closed the stream): nothing to say.
            let _ = session.finish_playing(*stream_id);
            self.flush(socket, session).await?;
            if still_live {
                return Err(EndReason::PlayerTooSlow.into());
            }
        }
        Ok(())
    }

    fn handle_aggregate(&mut self, body: &Bytes, timestamp: u32) -> Result<(), SessionError> {
        match aggregate::split(body, timestamp) {
            Ok(msgs) => {
                for m in msgs {
                    if m.type_id == kind::AUDIO || m.type_id == kind::VIDEO {
                        self.media(m.type_id, m.timestamp, m.data)?;
                    }
                }
            }
            Err(e) => warn!("dropping aggregate message: {e}"),
        }
        Ok(())
    }

    /// Feeds one audio (8) or video (9) message to the broadcast. Malformed media is dropped with a
    /// warning; media this server cannot carry ends the connection with a clear reason.
    fn media(&mut self, type_id: u8, timestamp: u32, data: Bytes) -> Result<(), SessionError> {
        let Some(Active::Publishing { broadcast, .. }) = self.active.as_mut() else {
            return Ok(());
        };
        self.last_timestamp = timestamp;
        let result = if type_id == 9 {
            broadcast.on_video(timestamp, data)
        } else {
            broadcast.on_audio(timestamp, data)
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_fatal() => Err(EndReason::Unservable(e).into()),
            Err(e) => {
                self.dropped += 1;
                // The first few, then at powers of two: enough to see a broken encoder, not a flood.
                if self.dropped <= 5 || self.dropped.is_power_of_two() {
                    warn!(
                        kind = if type_id == 9 { "video" } else { "audio" },
                        dropped_so_far = self.dropped,
                        "dropping message: {e}"
                    );
                }
                Ok(())
            }
        }
    }
}

async fn kicked(kick: Option<&CancellationToken>) {
    match kick {
        Some(k) => k.cancelled().await,
        None => std::future::pending().await,
    }
}

async fn recv(rx: &mut Option<mpsc::Receiver<Frame>>) -> Option<Frame> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    //! The session over an in-memory pipe, driven by the byte stream a real client sends: what
    //! `rtmp::serve` runs after the handshake, with no socket.

    use super::*;
    use crate::hooks::{HookUrls, Hooks};
    use crate::record::{Formats, Recorder};
    use crate::registry::Registry;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::messages::RtmpMessage;
    use rml_rtmp::rml_amf0::Amf0Value;
    use rml_rtmp::time::RtmpTimestamp;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::rtmp_server::link::tests::tcp_pair;

    fn context(registry: Registry) -> Arc<ServerContext> {
        context_with(registry, None, Duration::from_secs(5))
    }

    fn context_with(
        registry: Registry,
        publish_read_interval: Option<Duration>,
        idle_timeout: Duration,
    ) -> Arc<ServerContext> {
        // Records wait in the queue budget: the session never blocks on the broker.
        let (producer, _task) = crate::producer::unconnected(64 << 20);
        let hooks = Hooks::new(HookUrls::default(), Duration::from_secs(1));
        Arc::new(ServerContext {
            app: "live".into(),
            segment: Duration::from_secs(2),
            part_target: Some(Duration::from_millis(334)),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout,
            publish_read_interval,
            registry,
            producer,
            hooks: hooks.clone(),
            update_interval: Duration::from_secs(3600),
            next_client_id: Default::default(),
            counters: Arc::default(),
            recorder: Recorder::new(
                std::env::temp_dir(),
                Formats {
                    hls: false,
                    flv: false,
                },
                Duration::from_secs(2),
                Arc::default(),
                hooks,
            ),
            record_all: false,
        })
    }

    fn command(
        name: &str,
        txn: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
        stream: u32,
    ) -> Vec<u8> {
        let payload = RtmpMessage::Amf0Command {
            command_name: name.into(),
            transaction_id: txn,
            command_object: object,
            additional_arguments: args,
        }
        .into_message_payload(RtmpTimestamp::new(0), stream)
        .expect("payload");
        ChunkSerializer::new()
            .serialize(&payload, true, false)
            .expect("chunk")
            .bytes
    }

    /// What ffmpeg sends after the handshake to publish `cam` on `app`, then the fixture's media.
    fn publish_bytes(app: &str, media: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let connect = Amf0Value::Object(
            [
                ("app".to_string(), Amf0Value::Utf8String(app.into())),
                (
                    "tcUrl".to_string(),
                    Amf0Value::Utf8String(format!("rtmp://127.0.0.1/{app}")),
                ),
            ]
            .into(),
        );
        out.extend(command("connect", 1.0, connect, vec![], 0));
        out.extend(command("createStream", 2.0, Amf0Value::Null, vec![], 0));
        let publish = vec![
            Amf0Value::Utf8String("cam".into()),
            Amf0Value::Utf8String("live".into()),
        ];
        out.extend(command("publish", 3.0, Amf0Value::Null, publish, 1));
        if media {
            let path =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip.flv");
            let flv = std::fs::read(path).expect("fixture");
            let mut ser = ChunkSerializer::new();
            // FLV file: 9-byte header + PreviousTagSize0, then tags of 11-byte header, body, 4 bytes.
            let mut pos = 13;
            while pos + 11 <= flv.len() {
                let kind = flv[pos] & 0x1f;
                let size =
                    u32::from_be_bytes([0, flv[pos + 1], flv[pos + 2], flv[pos + 3]]) as usize;
                let ts =
                    u32::from_be_bytes([flv[pos + 7], flv[pos + 4], flv[pos + 5], flv[pos + 6]]);
                let data = Bytes::copy_from_slice(&flv[pos + 11..pos + 11 + size]);
                pos += 11 + size + 4;
                let message = match kind {
                    8 => RtmpMessage::AudioData { data },
                    9 => RtmpMessage::VideoData { data },
                    _ => continue,
                };
                let payload = message
                    .into_message_payload(RtmpTimestamp::new(ts), 1)
                    .expect("payload");
                out.extend(ser.serialize(&payload, false, false).expect("chunk").bytes);
            }
        }
        out
    }

    async fn wait_for(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// `cam` once it is live and has closed `n` segments (fails the test if that takes too long).
    async fn live_with_segments(registry: &Registry, n: u64) -> Arc<LiveStream> {
        assert!(
            wait_for(|| registry.get("cam").is_some()).await,
            "the publisher is live"
        );
        let live = registry.get("cam").expect("live");
        assert!(
            wait_for(|| live.segments.load(Ordering::Relaxed) >= n).await,
            "segments: {}",
            live.segments.load(Ordering::Relaxed)
        );
        live
    }

    /// The session ends (the client left) without a panic, and `cam` is free again.
    async fn ended_and_released(session: tokio::task::JoinHandle<()>, registry: &Registry) {
        tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("the session ends when the client leaves")
            .expect("no panic");
        assert!(registry.get("cam").is_none(), "the name is released");
    }

    #[tokio::test]
    async fn a_publisher_goes_live_is_segmented_and_ends_when_it_leaves() {
        let registry = Registry::default();
        let ctx = context(registry.clone());
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let cancel = CancellationToken::new();
        let session = tokio::spawn(run(server, peer, Vec::new(), ctx, cancel));
        let bytes = publish_bytes("live", true);
        // Write in uneven pieces, as a socket delivers them.
        for piece in bytes.chunks(1777) {
            client.write_all(piece).await.expect("write");
        }
        // 6 s of media with 2 s segments: at least two closed before the publisher leaves.
        let live = live_with_segments(&registry, 2).await;
        let codecs = live.tracks().codecs;
        assert!(
            codecs.starts_with("avc1.64") && codecs.ends_with(",mp4a.40.2"),
            "{codecs}"
        );
        drop(client);
        ended_and_released(session, &registry).await;
    }

    #[tokio::test]
    async fn a_paced_publisher_off_the_reactor_is_segmented_and_ends_when_it_leaves() {
        let registry = Registry::default();
        let ctx = context_with(
            registry.clone(),
            Some(Duration::from_millis(20)),
            Duration::from_secs(5),
        );
        let (mut client, server, peer) = tcp_pair().await;
        let session = tokio::spawn(run(server, peer, Vec::new(), ctx, CancellationToken::new()));
        // The client also reads what the server says, so a full send buffer never stalls the test.
        let (mut rx, mut tx) = client.split();
        let answers = async {
            let mut answer = Vec::new();
            let _ = rx.read_to_end(&mut answer).await;
            answer
        };
        let publish = async {
            // Spread over many ticks, so most of it is read off the reactor.
            for piece in publish_bytes("live", true).chunks(1777) {
                tx.write_all(piece).await.expect("write");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            live_with_segments(&registry, 2).await;
            tx.shutdown().await.expect("shutdown");
        };
        let (answer, ()) = tokio::join!(answers, publish);
        let status = b"NetStream.Publish.Start";
        assert!(
            answer.windows(status.len()).any(|w| w == status),
            "publish answer in {} bytes",
            answer.len()
        );
        ended_and_released(session, &registry).await;
    }

    #[tokio::test]
    async fn a_silent_publisher_off_the_reactor_times_out() {
        let registry = Registry::default();
        let idle = Duration::from_millis(300);
        let ctx = context_with(registry.clone(), Some(Duration::from_millis(20)), idle);
        let (mut client, server, peer) = tcp_pair().await;
        let session = tokio::spawn(run(server, peer, Vec::new(), ctx, CancellationToken::new()));
        let commands = publish_bytes("live", false);
        client.write_all(&commands).await.expect("write");
        assert!(
            wait_for(|| registry.get("cam").is_some()).await,
            "the publisher is live"
        );
        // Some media over several ticks, so the socket is off the reactor (the first read after the
        // publish takes it off), then nothing with the connection open: the session ends on the idle
        // timeout, not never.
        let media = publish_bytes("live", true);
        for piece in media[commands.len()..].chunks(1777).take(10) {
            client.write_all(piece).await.expect("write");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tokio::time::timeout(idle * 10, session)
            .await
            .expect("the idle timeout ends the session")
            .expect("no panic");
        assert!(registry.get("cam").is_none(), "the name is released");
        drop(client);
    }

    #[tokio::test]
    async fn a_connect_to_another_application_ends_the_session() {
        let registry = Registry::default();
        let ctx = context(registry.clone());
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let peer: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
        let session = tokio::spawn(run(server, peer, Vec::new(), ctx, CancellationToken::new()));
        client
            .write_all(&publish_bytes("other", false))
            .await
            .expect("write");
        // The server answers (the rejection) and closes without waiting for the client.
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
            .await
            .expect("closed by the server")
            .expect("read");
        let status = b"NetConnection.Connect.Rejected";
        assert!(
            answer.windows(status.len()).any(|w| w == status),
            "rejection status in {} bytes",
            answer.len()
        );
        session.await.expect("no panic");
        assert!(registry.get("cam").is_none());
    }
}
