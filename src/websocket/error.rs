//! [`Error`]: why a WebSocket connection failed, and its [`ErrorKind`].

use std::fmt;
use std::io;

use super::close_code;

/// A WebSocket connection failed.
///
/// `Display` describes this error only; the I/O error behind an [`ErrorKind::Io`] is its
/// [`source`](std::error::Error::source).
pub struct Error {
    kind: ErrorKind,
    detail: &'static str,
    io: Option<io::Error>,
}

/// What kind of [`Error`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading from or writing to the connection failed.
    Io,
    /// The peer broke RFC 6455; the connection was closed with status `1002`.
    Protocol,
    /// A text message or close reason was not valid UTF-8; closed with status `1007`.
    InvalidUtf8,
    /// A message or frame was bigger than the configured limit; closed with status
    /// `1009`.
    MessageTooBig,
    /// The peer closed the connection without a close frame.
    ConnectionReset,
    /// A message was sent after the connection was closed.
    AlreadyClosed,
    /// A message that was about to be sent is invalid (a ping, pong or close payload over
    /// 125 bytes).
    InvalidMessage,
    /// The peer sent nothing, not even a pong, within the
    /// [keep-alive](super::WebSocketConfig::keep_alive) interval after a ping.
    KeepAliveTimeout,
    /// Buffering a message would have passed the server's
    /// [message budget](crate::Tracker::set_message_budget), shared by all connections;
    /// closed with status `1013 Try Again Later`.
    OverBudget,
}

impl Error {
    pub(super) fn new(kind: ErrorKind, detail: &'static str) -> Self {
        Self {
            kind,
            detail,
            io: None,
        }
    }

    pub(super) fn io(e: io::Error) -> Self {
        Self {
            kind: ErrorKind::Io,
            detail: "io error",
            io: Some(e),
        }
    }

    /// What kind of error this is.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The close code sent to the peer for this error, if one was sent.
    pub(super) fn close_code(&self) -> Option<u16> {
        match self.kind {
            ErrorKind::Protocol => Some(close_code::PROTOCOL),
            ErrorKind::InvalidUtf8 => Some(close_code::INVALID),
            ErrorKind::MessageTooBig => Some(close_code::SIZE),
            ErrorKind::KeepAliveTimeout => Some(close_code::AWAY),
            // RFC 6455 §7.4.2 registry: 1013, the server is overloaded. Not 1009: the same
            // message may well be accepted later.
            ErrorKind::OverBudget => Some(close_code::AGAIN),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("detail", &self.detail)
            .field("io", &self.io)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.io {
            // Hyper's rule: the cause is reached through `source()`, not repeated here, so
            // that error chains (anyhow, eyre, tracing) print it once.
            Some(_) => f.write_str("websocket io error"),
            None => write!(f, "websocket error: {}", self.detail),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_ref().map(|e| e as _)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn display_leaves_the_cause_to_source() {
        let e = Error::from(io::Error::new(io::ErrorKind::BrokenPipe, "the pipe broke"));
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(e.to_string(), "websocket io error");
        assert!(!e.to_string().contains("the pipe broke"));
        let source = e.source().expect("an io error has a source");
        assert_eq!(source.to_string(), "the pipe broke");
        assert!(source.source().is_none());
    }

    #[test]
    fn protocol_errors_have_no_source() {
        let e = Error::new(ErrorKind::Protocol, "unmasked frame from the client");
        assert_eq!(
            e.to_string(),
            "websocket error: unmasked frame from the client"
        );
        assert!(e.source().is_none());
    }
}
