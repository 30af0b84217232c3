//! One RTMP connection: handshake, then rml_rtmp's server session fed with socket bytes, with its events
//! turned into a [`Broadcast`]. Every exit path (clean unpublish, EOF, network error, idle timeout,
//! shutdown) ends the broadcast, so edges always learn that the stream stopped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeError, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionError, ServerSessionEvent, ServerSessionResult,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::aggregate;
use super::ServerContext;
use crate::broadcast::Broadcast;

const READ_BUF: usize = 64 * 1024;
/// Message type id of RTMP aggregate messages.
const AGGREGATE: u8 = 22;

/// Why a connection ended abnormally.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("invalid handshake: {0:?}")]
    Handshake(HandshakeError),
    #[error("no data for {0:?}; closing idle connection")]
    Idle(Duration),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("RTMP protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Refused(String),
}

impl From<ServerSessionError> for SessionError {
    fn from(e: ServerSessionError) -> Self {
        SessionError::Protocol(format!("{e:?}"))
    }
}

/// Runs a connection to its end; never panics the server, logs why it ended.
pub async fn run(
    mut socket: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ServerContext>,
    cancel: CancellationToken,
) {
    debug!("connection accepted");
    let mut conn = Connection {
        ctx,
        broadcast: None,
        close: None,
    };
    let result = conn.drive(&mut socket, &cancel).await;
    if let Some(b) = conn.broadcast.take() {
        b.end().await;
    }
    let _ = socket.shutdown().await;
    match result {
        Ok(()) => debug!(%peer, "connection closed"),
        Err(SessionError::Refused(why)) => warn!(%peer, "{why}"),
        Err(e) => info!(%peer, "connection ended: {e}"),
    }
}

struct Connection {
    ctx: Arc<ServerContext>,
    broadcast: Option<Broadcast>,
    /// Set when the session must end after the pending responses are written (e.g. a refused publish).
    close: Option<String>,
}

impl Connection {
    async fn drive(
        &mut self,
        socket: &mut TcpStream,
        cancel: &CancellationToken,
    ) -> Result<(), SessionError> {
        let timeout = self.ctx.handshake_timeout;
        let remaining = tokio::time::timeout(timeout, handshake(socket))
            .await
            .map_err(|_| SessionError::HandshakeTimeout(timeout))??;

        let mut config = ServerSessionConfig::new();
        config.chunk_size = 4096;
        let (mut session, initial) = ServerSession::new(config)?;
        let mut out = Vec::new();
        self.handle_results(&mut session, initial, &mut out).await?;
        let results = session.handle_input(&remaining)?;
        self.handle_results(&mut session, results, &mut out).await?;
        self.flush(socket, &mut out).await?;

        let idle = self.ctx.idle_timeout;
        let mut buf = vec![0u8; READ_BUF];
        loop {
            if let Some(why) = self.close.take() {
                return Err(SessionError::Refused(why));
            }
            let n = tokio::select! {
                _ = cancel.cancelled() => {
                    info!("server shutting down; closing connection");
                    return Ok(());
                }
                read = tokio::time::timeout(idle, socket.read(&mut buf)) => match read {
                    Err(_) => return Err(SessionError::Idle(idle)),
                    Ok(Ok(0)) => return Ok(()),
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => return Err(e.into()),
                },
            };
            let results = session.handle_input(&buf[..n])?;
            self.handle_results(&mut session, results, &mut out).await?;
            self.flush(socket, &mut out).await?;
        }
    }

    async fn flush(&self, socket: &mut TcpStream, out: &mut Vec<u8>) -> Result<(), SessionError> {
        if out.is_empty() {
            return Ok(());
        }
        let idle = self.ctx.idle_timeout;
        tokio::time::timeout(idle, socket.write_all(out))
            .await
            .map_err(|_| SessionError::Idle(idle))??;
        out.clear();
        Ok(())
    }

    async fn handle_results(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
        out: &mut Vec<u8>,
    ) -> Result<(), SessionError> {
        let mut queue: VecDeque<ServerSessionResult> = results.into();
        while let Some(result) = queue.pop_front() {
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    out.extend_from_slice(&packet.bytes)
                }
                ServerSessionResult::RaisedEvent(event) => {
                    let more = self.handle_event(session, event).await?;
                    queue.extend(more);
                }
                ServerSessionResult::UnhandleableMessageReceived(payload) => {
                    if payload.type_id == AGGREGATE {
                        self.handle_aggregate(&payload.data, payload.timestamp.value)?;
                    } else {
                        debug!(
                            type_id = payload.type_id,
                            "ignoring unsupported RTMP message"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, SessionError> {
        Ok(match event {
            ServerSessionEvent::ConnectionRequested {
                request_id,
                app_name,
            } => {
                // Some clients append a query to the app name (`live?token=..`).
                let app = app_name.split('?').next().unwrap_or_default();
                if app == self.ctx.app {
                    session.accept_request(request_id)?
                } else {
                    self.close = Some(format!("connect refused: unknown application `{app_name}`"));
                    session.reject_request(
                        request_id,
                        "NetConnection.Connect.Rejected",
                        &format!("unknown application `{app_name}`; use `{}`", self.ctx.app),
                    )?
                }
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => {
                self.publish_requested(session, request_id, &stream_key)
                    .await?
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                if let Some(b) = self.broadcast.take() {
                    b.end().await;
                }
                Vec::new()
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => {
                if let Some(b) = self.broadcast.as_mut() {
                    b.on_metadata(
                        metadata.video_codec_id.is_some(),
                        metadata.audio_codec_id.is_some(),
                    );
                }
                Vec::new()
            }
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => {
                self.media(9, timestamp.value, data)?;
                Vec::new()
            }
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => {
                self.media(8, timestamp.value, data)?;
                Vec::new()
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                self.close = Some("play refused: RTMP playback is not enabled".into());
                session.reject_request(
                    request_id,
                    "NetStream.Play.Failed",
                    "RTMP playback is not enabled on this server; watch over HLS",
                )?
            }
            ServerSessionEvent::UnhandleableAmf0Command { command_name, .. } => {
                // releaseStream, FCPublish, FCUnpublish and friends need no answer for OBS or ffmpeg.
                debug!(%command_name, "ignoring AMF0 command");
                Vec::new()
            }
            other => {
                debug!(event = ?other, "session event");
                Vec::new()
            }
        })
    }

    async fn publish_requested(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        stream_key: &str,
    ) -> Result<Vec<ServerSessionResult>, SessionError> {
        // `rtmp://host/live/name?token=abc`: the query belongs to the hooks, not to the name.
        let name = stream_key.split('?').next().unwrap_or_default();
        let refuse = |this: &mut Self, session: &mut ServerSession, code: &str, why: String| {
            this.close = Some(format!("publish refused: {why}"));
            session.reject_request(request_id, code, &why)
        };
        if self.broadcast.is_some() {
            return Ok(refuse(
                self,
                session,
                "NetStream.Publish.BadName",
                "this connection is already publishing".into(),
            )?);
        }
        if let Err(e) = common::validate_stream_name(name) {
            return Ok(refuse(
                self,
                session,
                "NetStream.Publish.BadName",
                e.to_string(),
            )?);
        }
        let claim = match self.ctx.registry.claim(name) {
            Ok(c) => c,
            Err(e) => {
                return Ok(refuse(
                    self,
                    session,
                    "NetStream.Publish.BadName",
                    e.to_string(),
                )?)
            }
        };
        tracing::Span::current().record("stream", name);
        let results = session.accept_request(request_id)?;
        self.broadcast =
            Some(Broadcast::start(claim, self.ctx.producer.clone(), self.ctx.segment).await);
        Ok(results)
    }

    fn handle_aggregate(&mut self, body: &Bytes, timestamp: u32) -> Result<(), SessionError> {
        match aggregate::split(body, timestamp) {
            Ok(msgs) => {
                for m in msgs {
                    if m.type_id == 8 || m.type_id == 9 {
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
        let Some(b) = self.broadcast.as_mut() else {
            return Ok(());
        };
        let result = if type_id == 9 {
            b.on_video(timestamp, data)
        } else {
            b.on_audio(timestamp, data)
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.is_fatal() => Err(SessionError::Refused(format!("publisher refused: {e}"))),
            Err(e) => {
                warn!(
                    kind = if type_id == 9 { "video" } else { "audio" },
                    "dropping message: {e}"
                );
                Ok(())
            }
        }
    }
}

/// Runs the RTMP handshake (C0/C1/C2 <-> S0/S1/S2); returns bytes the client sent after it.
async fn handshake(socket: &mut TcpStream) -> Result<Vec<u8>, SessionError> {
    let mut hs = Handshake::new(PeerType::Server);
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Err(SessionError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        match hs
            .process_bytes(&buf[..n])
            .map_err(SessionError::Handshake)?
        {
            HandshakeProcessResult::InProgress { response_bytes } => {
                socket.write_all(&response_bytes).await?;
            }
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                socket.write_all(&response_bytes).await?;
                return Ok(remaining_bytes);
            }
        }
    }
}
