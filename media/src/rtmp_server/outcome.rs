//! Why a session refused a request or ended: typed, so control flow never travels in strings and every
//! message a client or the log gets is written in one place.

use common::StreamNameError;
use media::remux::RemuxError;

use crate::hooks::Denial;
use crate::registry::AlreadyLive;

/// Why a `publish` or `play` was not admitted; its text goes into the client's `onStatus` description.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The connection already publishes or plays a stream.
    #[error("this connection is already publishing or playing")]
    AlreadyActive,
    /// The requested name breaks the stream-name rules (checked before any hook).
    #[error(transparent)]
    BadName(#[from] StreamNameError),
    /// Someone publishes the name already (checked before the hook, and again when claiming).
    #[error(transparent)]
    AlreadyLive(#[from] AlreadyLive),
    /// The manager renamed the stream to a name that breaks the rules.
    #[error("manager renamed the stream to an invalid name: {0}")]
    BadRename(StreamNameError),
    /// The manager's hook said no.
    #[error("refused by the manager: {0}")]
    Denied(#[from] Denial),
    /// A player asked for a stream nobody publishes.
    #[error("stream `{0}` is not live")]
    NotLive(String),
}

/// Why a session ended other than by the client leaving or the server shutting down.
#[derive(Debug, thiserror::Error)]
pub enum EndReason {
    /// `connect` named another application.
    #[error("connect refused: unknown application `{0}`")]
    UnknownApp(String),
    /// A `publish` or `play` was refused with this status code.
    #[error("refused ({code}): {refusal}")]
    Refused {
        /// The `onStatus` code sent (`NetStream.Publish.BadName`, ...).
        code: &'static str,
        /// Why.
        refusal: Refusal,
    },
    /// The control API kicked the publisher.
    #[error("publisher kicked through the control API")]
    Kicked,
    /// `on_update` answered non-2xx.
    #[error("dropped: on_update answered non-2xx")]
    UpdateRefused,
    /// A player's queue kept overflowing while the stream was still live.
    #[error("player too slow for the stream; disconnected")]
    PlayerTooSlow,
    /// The publisher sends media this server cannot carry (wrong codec).
    #[error("publisher refused: {0}")]
    Unservable(RemuxError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts are what clients (`onStatus` descriptions) and operators (logs) read: the same as
    /// when they were formatted in place.
    #[test]
    fn texts_are_those_clients_and_logs_always_got() {
        let refused = |code, refusal| EndReason::Refused { code, refusal }.to_string();
        assert_eq!(
            refused(
                "NetStream.Publish.BadName",
                AlreadyLive("cam".into()).into()
            ),
            "refused (NetStream.Publish.BadName): stream `cam` is already being published"
        );
        assert_eq!(
            refused("NetStream.Publish.BadName", Denial::Status(403).into()),
            "refused (NetStream.Publish.BadName): refused by the manager: manager answered 403"
        );
        assert_eq!(
            refused(
                "NetStream.Play.StreamNotFound",
                Refusal::NotLive("cam".into())
            ),
            "refused (NetStream.Play.StreamNotFound): stream `cam` is not live"
        );
        let bad = common::validate_stream_name("../x").expect_err("a bad name");
        assert_eq!(Refusal::BadName(bad.clone()).to_string(), bad.to_string());
        assert_eq!(
            Refusal::BadRename(bad.clone()).to_string(),
            format!("manager renamed the stream to an invalid name: {bad}")
        );
        assert_eq!(
            EndReason::UnknownApp("tv?x=1".into()).to_string(),
            "connect refused: unknown application `tv?x=1`"
        );
        assert_eq!(
            EndReason::Unservable(RemuxError::NoVideoConfig).to_string(),
            "publisher refused: video frame before any AVC sequence header"
        );
        assert_eq!(
            Denial::Timeout(std::time::Duration::from_millis(1500)).to_string(),
            "manager did not answer within 1.5s"
        );
    }
}
