//! Reads the client's `connect` command for the fields nginx-rtmp passes to hooks (`tcUrl`, `flashVer`,
//! `swfUrl`, `pageUrl`). rml_rtmp consumes `connect` without exposing them, so the session feeds the same
//! bytes to a second chunk deserializer until `connect` has been seen. It only runs for the first few
//! messages of a connection, and its failure never affects the session: the fields are then empty.

use rml_rtmp::chunk_io::ChunkDeserializer;
use rml_rtmp::messages::RtmpMessage;
use rml_rtmp::rml_amf0::Amf0Value;

/// Fields of the `connect` command object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectFields {
    pub app: String,
    pub flashver: String,
    pub swfurl: String,
    pub tcurl: String,
    pub pageurl: String,
}

/// Watches the start of a connection for `connect`.
pub struct ConnectSniffer {
    deserializer: Option<ChunkDeserializer>,
    found: Option<ConnectFields>,
}

/// Messages looked at before giving up; clients send `connect` first, after at most a chunk size change.
const MAX_MESSAGES: usize = 8;

impl ConnectSniffer {
    /// A sniffer waiting for `connect`.
    pub fn new() -> Self {
        Self {
            deserializer: Some(ChunkDeserializer::new()),
            found: None,
        }
    }

    /// The fields, once `connect` has been read.
    pub fn fields(&self) -> Option<&ConnectFields> {
        self.found.as_ref()
    }

    /// Feeds bytes the session received (after the handshake).
    pub fn feed(&mut self, bytes: &[u8]) {
        let Some(de) = self.deserializer.as_mut() else {
            return;
        };
        let mut input = bytes;
        for _ in 0..MAX_MESSAGES {
            let payload = match de.get_next_message(input) {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(_) => break,
            };
            input = &[];
            match payload.to_rtmp_message() {
                Ok(RtmpMessage::SetChunkSize { size }) => {
                    if de.set_max_chunk_size(size as usize).is_err() {
                        break;
                    }
                }
                Ok(RtmpMessage::Amf0Command {
                    command_name,
                    command_object,
                    ..
                }) if command_name == "connect" => {
                    self.found = Some(fields(command_object));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // Done (or confused): stop spending work on it.
        self.deserializer = None;
    }
}

fn fields(object: Amf0Value) -> ConnectFields {
    let Amf0Value::Object(props) = object else {
        return ConnectFields::default();
    };
    let get = |k: &str| match props.get(k) {
        Some(Amf0Value::Utf8String(s)) => s.clone(),
        _ => String::new(),
    };
    ConnectFields {
        app: get("app").trim_end_matches('/').to_owned(),
        flashver: get("flashVer"),
        swfurl: get("swfUrl"),
        tcurl: get("tcUrl"),
        pageurl: get("pageUrl"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::chunk_io::ChunkSerializer;
    use rml_rtmp::time::RtmpTimestamp;
    use std::collections::HashMap;

    #[test]
    fn reads_tcurl_and_flashver_from_connect() {
        let mut props = HashMap::new();
        props.insert("app".into(), Amf0Value::Utf8String("live/".into()));
        props.insert(
            "tcUrl".into(),
            Amf0Value::Utf8String("rtmp://h/live".into()),
        );
        props.insert("flashVer".into(), Amf0Value::Utf8String("FMLE/3.0".into()));
        let msg = RtmpMessage::Amf0Command {
            command_name: "connect".into(),
            transaction_id: 1.0,
            command_object: Amf0Value::Object(props),
            additional_arguments: vec![],
        };
        let payload = msg
            .into_message_payload(RtmpTimestamp::new(0), 0)
            .expect("payload");
        let mut ser = ChunkSerializer::new();
        let packet = ser.serialize(&payload, false, false).expect("serialize");
        let mut sniffer = ConnectSniffer::new();
        // Byte by byte: the sniffer copes with any split of the input.
        for b in &packet.bytes {
            sniffer.feed(std::slice::from_ref(b));
        }
        let f = sniffer.fields().expect("connect seen");
        assert_eq!(f.app, "live");
        assert_eq!(f.tcurl, "rtmp://h/live");
        assert_eq!(f.flashver, "FMLE/3.0");
    }

    #[test]
    fn garbage_stops_the_sniffer_without_panicking() {
        let mut sniffer = ConnectSniffer::new();
        sniffer.feed(&[0xff; 300]);
        sniffer.feed(&[0x03; 300]);
        assert!(sniffer.fields().is_none());
    }
}
