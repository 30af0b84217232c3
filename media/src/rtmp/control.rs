//! Protocol control messages (Adobe RTMP specification 1.0, section 5.4) and user control messages
//! (section 6.2), typed, read and written.
//!
//! Read as rml_rtmp 0.8 read them, so a peer that was refused before is refused now: a payload too
//! short for its message, a Set Peer Bandwidth limit type other than 0-2, or an unknown user control
//! event is an error that ends the connection.

use super::kind;

/// Set Peer Bandwidth's limit type (section 5.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitType {
    /// 0: limit to this window.
    Hard,
    /// 1: limit to this window or the one in effect, whichever is smaller.
    Soft,
    /// 2: hard if the previous limit was hard, else ignored.
    Dynamic,
}

/// A user control event (section 6.2, and 7.1.7 for its event types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserControl {
    /// 0: a stream became functional.
    StreamBegin(u32),
    /// 1: playback of a stream is over.
    StreamEof(u32),
    /// 2: no more data on a stream for now.
    StreamDry(u32),
    /// 3: the client's buffer length for a stream, ms.
    SetBufferLength {
        /// Message stream id.
        stream_id: u32,
        /// Buffer length, ms.
        millis: u32,
    },
    /// 4: the stream is a recorded one.
    StreamIsRecorded(u32),
    /// 6: a ping, with the sender's timestamp.
    PingRequest(u32),
    /// 7: the answer to a ping, with the timestamp it carried.
    PingResponse(u32),
    /// 31: buffer empty (not in the specification; sent by Flash Media Server).
    BufferEmpty(u32),
    /// 32: buffer ready (idem).
    BufferReady(u32),
}

/// A protocol control or user control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Set Chunk Size (5.4.1).
    SetChunkSize(u32),
    /// Abort Message (5.4.2): the chunk stream whose unfinished message to drop.
    Abort(u32),
    /// Acknowledgement (5.4.3): bytes received so far.
    Acknowledgement(u32),
    /// Window Acknowledgement Size (5.4.4).
    WindowAckSize(u32),
    /// Set Peer Bandwidth (5.4.5).
    SetPeerBandwidth {
        /// Window size, bytes.
        size: u32,
        /// How to apply it.
        limit: LimitType,
    },
    /// User Control Message (6.2).
    User(UserControl),
}

/// Why a control message cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The payload is shorter than the message needs.
    #[error("malformed {0} message")]
    Short(&'static str),
    /// Set Peer Bandwidth with a limit type other than 0, 1 or 2.
    #[error("Set Peer Bandwidth with limit type {0}")]
    LimitType(u8),
    /// A user control event type not in the specification.
    #[error("unknown user control event type {0}")]
    UserEvent(u16),
}

/// A control message's payload: at most 10 bytes, kept on the stack.
#[derive(Debug, Clone, Copy)]
pub struct Payload {
    bytes: [u8; 10],
    len: usize,
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Payload {
    fn new(parts: &[&[u8]]) -> Self {
        let mut p = Payload {
            bytes: [0; 10],
            len: 0,
        };
        for part in parts {
            p.bytes[p.len..p.len + part.len()].copy_from_slice(part);
            p.len += part.len();
        }
        p
    }
}

fn u32_at(data: &[u8], at: usize, what: &'static str) -> Result<u32, ControlError> {
    let b = data.get(at..at + 4).ok_or(ControlError::Short(what))?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

impl Control {
    /// Reads a message of type `type_id`; `Ok(None)` if the type is not a control message.
    pub fn read(type_id: u8, data: &[u8]) -> Result<Option<Control>, ControlError> {
        Ok(Some(match type_id {
            kind::SET_CHUNK_SIZE => Control::SetChunkSize(u32_at(data, 0, "Set Chunk Size")?),
            kind::ABORT => Control::Abort(u32_at(data, 0, "Abort")?),
            kind::ACKNOWLEDGEMENT => Control::Acknowledgement(u32_at(data, 0, "Acknowledgement")?),
            kind::WINDOW_ACK_SIZE => {
                Control::WindowAckSize(u32_at(data, 0, "Window Acknowledgement Size")?)
            }
            kind::SET_PEER_BANDWIDTH => {
                let size = u32_at(data, 0, "Set Peer Bandwidth")?;
                let limit = match data.get(4) {
                    Some(0) => LimitType::Hard,
                    Some(1) => LimitType::Soft,
                    Some(2) => LimitType::Dynamic,
                    Some(&n) => return Err(ControlError::LimitType(n)),
                    None => return Err(ControlError::Short("Set Peer Bandwidth")),
                };
                Control::SetPeerBandwidth { size, limit }
            }
            kind::USER_CONTROL => Control::User(read_user(data)?),
            _ => return Ok(None),
        }))
    }

    /// The message type id.
    pub fn type_id(&self) -> u8 {
        match self {
            Control::SetChunkSize(_) => kind::SET_CHUNK_SIZE,
            Control::Abort(_) => kind::ABORT,
            Control::Acknowledgement(_) => kind::ACKNOWLEDGEMENT,
            Control::WindowAckSize(_) => kind::WINDOW_ACK_SIZE,
            Control::SetPeerBandwidth { .. } => kind::SET_PEER_BANDWIDTH,
            Control::User(_) => kind::USER_CONTROL,
        }
    }

    /// The payload as written on the wire.
    pub fn payload(&self) -> Payload {
        match *self {
            Control::SetChunkSize(n)
            | Control::Abort(n)
            | Control::Acknowledgement(n)
            | Control::WindowAckSize(n) => Payload::new(&[&n.to_be_bytes()]),
            Control::SetPeerBandwidth { size, limit } => {
                let limit = match limit {
                    LimitType::Hard => 0u8,
                    LimitType::Soft => 1,
                    LimitType::Dynamic => 2,
                };
                Payload::new(&[&size.to_be_bytes(), &[limit]])
            }
            Control::User(event) => {
                let (event_type, value, extra): (u16, u32, Option<u32>) = match event {
                    UserControl::StreamBegin(id) => (0, id, None),
                    UserControl::StreamEof(id) => (1, id, None),
                    UserControl::StreamDry(id) => (2, id, None),
                    UserControl::SetBufferLength { stream_id, millis } => {
                        (3, stream_id, Some(millis))
                    }
                    UserControl::StreamIsRecorded(id) => (4, id, None),
                    UserControl::PingRequest(t) => (6, t, None),
                    UserControl::PingResponse(t) => (7, t, None),
                    UserControl::BufferEmpty(id) => (31, id, None),
                    UserControl::BufferReady(id) => (32, id, None),
                };
                let extra = extra.map(u32::to_be_bytes);
                Payload::new(&[
                    &event_type.to_be_bytes(),
                    &value.to_be_bytes(),
                    extra.as_ref().map_or(&[][..], |e| &e[..]),
                ])
            }
        }
    }
}

fn read_user(data: &[u8]) -> Result<UserControl, ControlError> {
    const WHAT: &str = "User Control";
    let event = data.get(..2).ok_or(ControlError::Short(WHAT))?;
    let event = u16::from_be_bytes([event[0], event[1]]);
    let value = || u32_at(data, 2, WHAT);
    Ok(match event {
        0 => UserControl::StreamBegin(value()?),
        1 => UserControl::StreamEof(value()?),
        2 => UserControl::StreamDry(value()?),
        3 => UserControl::SetBufferLength {
            stream_id: value()?,
            millis: u32_at(data, 6, WHAT)?,
        },
        4 => UserControl::StreamIsRecorded(value()?),
        6 => UserControl::PingRequest(value()?),
        7 => UserControl::PingResponse(value()?),
        31 => UserControl::BufferEmpty(value()?),
        32 => UserControl::BufferReady(value()?),
        n => return Err(ControlError::UserEvent(n)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::messages::{PeerBandwidthLimitType, RtmpMessage, UserControlEventType};
    use rml_rtmp::time::RtmpTimestamp;

    fn all() -> Vec<Control> {
        let mut v = vec![
            Control::SetChunkSize(4096),
            Control::Abort(6),
            Control::Acknowledgement(u32::MAX),
            Control::WindowAckSize(2_500_000),
            Control::SetPeerBandwidth {
                size: 2_500_000,
                limit: LimitType::Dynamic,
            },
            Control::SetPeerBandwidth {
                size: 1,
                limit: LimitType::Hard,
            },
        ];
        v.extend(
            [
                UserControl::StreamBegin(1),
                UserControl::StreamEof(2),
                UserControl::StreamDry(3),
                UserControl::SetBufferLength {
                    stream_id: 1,
                    millis: 3000,
                },
                UserControl::StreamIsRecorded(4),
                UserControl::PingRequest(77),
                UserControl::PingResponse(78),
                UserControl::BufferEmpty(5),
                UserControl::BufferReady(6),
            ]
            .map(Control::User),
        );
        v
    }

    #[test]
    fn round_trip() {
        for c in all() {
            assert_eq!(
                Control::read(c.type_id(), c.payload().as_ref()),
                Ok(Some(c))
            );
        }
        assert_eq!(Control::read(20, b"x"), Ok(None));
    }

    #[test]
    fn we_write_what_rml_rtmp_writes() {
        let theirs = [
            (
                Control::SetPeerBandwidth {
                    size: 2_500_000,
                    limit: LimitType::Dynamic,
                },
                RtmpMessage::SetPeerBandwidth {
                    size: 2_500_000,
                    limit_type: PeerBandwidthLimitType::Dynamic,
                },
            ),
            (
                Control::WindowAckSize(1 << 30),
                RtmpMessage::WindowAcknowledgement { size: 1 << 30 },
            ),
            (
                Control::User(UserControl::StreamBegin(1)),
                RtmpMessage::UserControl {
                    event_type: UserControlEventType::StreamBegin,
                    stream_id: Some(1),
                    buffer_length: None,
                    timestamp: None,
                },
            ),
            (
                Control::User(UserControl::PingResponse(9)),
                RtmpMessage::UserControl {
                    event_type: UserControlEventType::PingResponse,
                    stream_id: None,
                    buffer_length: None,
                    timestamp: Some(RtmpTimestamp::new(9)),
                },
            ),
        ];
        for (ours, theirs) in theirs {
            let payload = theirs
                .into_message_payload(RtmpTimestamp::new(0), 0)
                .expect("payload");
            assert_eq!(payload.type_id, ours.type_id());
            assert_eq!(&payload.data[..], ours.payload().as_ref(), "{ours:?}");
        }
    }

    #[test]
    fn malformed_payloads_are_errors() {
        for c in all() {
            let p = c.payload();
            for cut in 0..p.as_ref().len() {
                assert!(
                    Control::read(c.type_id(), &p.as_ref()[..cut]).is_err(),
                    "{c:?} cut at {cut}"
                );
            }
        }
        assert_eq!(
            Control::read(6, &[0, 0, 0, 1, 3]),
            Err(ControlError::LimitType(3))
        );
        assert_eq!(
            Control::read(4, &[0, 5, 0, 0, 0, 0]),
            Err(ControlError::UserEvent(5))
        );
    }
}
