//! Reads the client's `connect` command for the fields nginx-rtmp passes to hooks (`tcUrl`, `flashVer`,
//! `swfUrl`, `pageUrl`). rml_rtmp consumes `connect` without exposing them, so the session shows the same
//! messages to this sniffer until `connect` has been seen. It only looks at the first few messages of a
//! connection, and its failure never affects the session: the fields are then empty.

use rml_rtmp::messages::{MessagePayload, RtmpMessage};
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
    /// Messages still to look at before giving up.
    budget: usize,
    found: Option<ConnectFields>,
}

/// Messages looked at before giving up; clients send `connect` first.
const MAX_MESSAGES: usize = 8;

impl ConnectSniffer {
    /// A sniffer waiting for `connect`.
    pub fn new() -> Self {
        Self {
            budget: MAX_MESSAGES,
            found: None,
        }
    }

    /// The fields, once `connect` has been read.
    pub fn fields(&self) -> Option<&ConnectFields> {
        self.found.as_ref()
    }

    /// Looks at one message the session received (after the handshake).
    pub fn feed(&mut self, payload: &MessagePayload) {
        if self.found.is_some() || self.budget == 0 {
            return;
        }
        self.budget -= 1;
        // `screen` first: rml_rtmp panics on some malformed commands.
        if payload.type_id != 20 || media::rtmp_chunks::screen(payload) != Ok(true) {
            return;
        }
        if let Ok(RtmpMessage::Amf0Command {
            command_name,
            command_object,
            ..
        }) = payload.to_rtmp_message()
        {
            if command_name == "connect" {
                self.found = Some(fields(command_object));
            }
        }
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
    use bytes::Bytes;
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
        let mut sniffer = ConnectSniffer::new();
        sniffer.feed(&payload);
        let f = sniffer.fields().expect("connect seen");
        assert_eq!(f.app, "live");
        assert_eq!(f.tcurl, "rtmp://h/live");
        assert_eq!(f.flashver, "FMLE/3.0");
    }

    #[test]
    fn garbage_stops_the_sniffer_without_panicking() {
        let mut sniffer = ConnectSniffer::new();
        for fill in [0xffu8, 0x03, 0x02] {
            sniffer.feed(&MessagePayload {
                timestamp: RtmpTimestamp::new(0),
                type_id: 20,
                message_stream_id: 0,
                data: Bytes::from(vec![fill; 300]),
            });
        }
        assert!(sniffer.fields().is_none());
    }
}
