//! [`Message`]: what is sent and received on a [`WebSocket`](super::WebSocket), and the
//! [`CloseFrame`] of a close.

use bytes::Bytes;

use super::utf8::Utf8Bytes;

/// A WebSocket message.
///
/// See the [module docs](crate::websocket) for an example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping. Received pings are answered with a pong by the [`WebSocket`] itself; they
    /// are also handed to you. At most 125 bytes.
    ///
    /// [`WebSocket`]: super::WebSocket
    Ping(Bytes),
    /// A pong. At most 125 bytes.
    Pong(Bytes),
    /// A close frame: the peer's, when received, and the reply has already been sent.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// The payload of a text or binary message, ping or pong, or the reason of a close.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) | Self::Ping(b) | Self::Pong(b) => b,
            Self::Close(Some(frame)) => frame.reason.as_bytes(),
            Self::Close(None) => &[],
        }
    }

    /// The text of a text message.
    #[must_use]
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t.as_str()),
            _ => None,
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::Text(text.into())
    }
}

impl From<&'static str> for Message {
    fn from(text: &'static str) -> Self {
        Self::Text(text.into())
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Self::Binary(data.into())
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Self::Binary(data)
    }
}

/// A close status code (RFC 6455 §7.4). The usual ones are in [`close_code`](super::close_code).
pub type CloseCode = u16;

/// The body of a close frame: a status code and a reason (at most 123 bytes of UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code, see [`close_code`](super::close_code).
    pub code: CloseCode,
    /// Why the connection is closed; may be empty.
    pub reason: Utf8Bytes,
}
