//! [`PreparedMessage`]: a text or binary message encoded once as a server frame, to be
//! sent to many sockets with [`WebSocket::send_prepared`](super::WebSocket::send_prepared).

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "deflate")]
use std::sync::Mutex;

use bytes::Bytes;

use super::error::{Error, ErrorKind};
use super::frame::{self, MAX_SERVER_HEAD, OpCode};
use super::message::Message;
use super::utf8::Utf8Bytes;

/// A text or binary message encoded once as a complete server frame (head and payload in
/// one buffer), to broadcast: [`WebSocket::send_prepared`] writes it to a socket as it is,
/// so sending it to N sockets copies no payload and formats no frame head; each send only
/// takes a reference to the one buffer.
///
/// Preparing copies the payload once into the frame. Cloning is cheap (an [`Arc`]), and
/// the type is `Send + Sync`, so one `PreparedMessage` can go through a
/// [`tokio::sync::broadcast`] channel to every connection, as in the example below.
///
/// # permessage-deflate
///
/// On a socket that negotiated permessage-deflate (the `deflate` feature), what is sent
/// depends on the socket's agreement:
///
/// - Messages shorter than the socket's [threshold](super::DeflateConfig::threshold) go out
///   uncompressed, as with [`send`](super::WebSocket::send).
/// - **No context takeover** (the default, [`DeflateConfig::new`](super::DeflateConfig::new)):
///   each message is compressed on its own, so a message compressed once is valid on every
///   connection that compresses with the same window, memory level and compression level.
///   The compressed frame is made the first time a socket needs it and kept inside the
///   `PreparedMessage` (one per distinct setting, at most 8), so a broadcast compresses once,
///   not once per socket. A message that compressing would not shrink is sent uncompressed,
///   as `send` does.
/// - **Context takeover** ([`DeflateConfig::context_takeover`](super::DeflateConfig::context_takeover)):
///   each connection's compressed bytes depend on what it sent before, so nothing can be
///   shared. The message is compressed by the socket's own compressor, exactly as `send`
///   would, and the bytes on the wire are the same as `send`'s. Sending it uncompressed
///   instead (RSV1 clear, which RFC 7692 allows and which keeps both sides' windows in step)
///   would save that CPU but silently give up compression for the very messages sent most,
///   on connections whose configuration chose bandwidth over CPU; choose no context
///   takeover for broadcast-heavy servers instead: it compresses each broadcast once and
///   keeps no compressor per connection.
///
/// # Example
///
/// A room: every connection subscribes to one [`broadcast`](tokio::sync::broadcast)
/// channel of prepared messages, and whatever is published is encoded once for all of
/// them.
///
/// ```
/// use tokio::sync::broadcast;
/// use tower_upgrade::UpgradeLayer;
/// use tower_upgrade::websocket::{
///     CloseFrame, Error, PreparedMessage, WebSocket, WebSocketHandler, close_code,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let (room, _) = broadcast::channel::<PreparedMessage>(64);
/// let subscribe = room.clone();
/// let handler = WebSocketHandler::new(move |mut ws: WebSocket, _req| {
///     let mut news = subscribe.subscribe();
///     async move {
///         loop {
///             tokio::select! {
///                 msg = news.recv() => match msg {
///                     Ok(msg) => ws.send_prepared(&msg).await?,
///                     // Too slow to keep up: drop it rather than buffer without bound.
///                     Err(broadcast::error::RecvError::Lagged(_)) => {
///                         let frame = CloseFrame { code: close_code::AGAIN, reason: "too slow".into() };
///                         return ws.close(Some(frame)).await;
///                     }
///                     Err(broadcast::error::RecvError::Closed) => return ws.close(None).await,
///                 },
///                 // Both `recv` and `send_prepared` are cancel-safe.
///                 msg = ws.recv() => match msg {
///                     Some(msg) => drop(msg?),
///                     None => return Ok::<_, Error>(()),
///                 },
///             }
///         }
///     }
/// });
/// let layer = UpgradeLayer::new().protocol(handler)?;
/// # let _ = layer;
///
/// // Anywhere else: one frame for every connection in the room.
/// let msg = PreparedMessage::text(r#"{"user":"ana","text":"hello"}"#);
/// assert!(msg.is_text());
/// let delivered_to = room.send(msg).unwrap_or(0);
/// assert_eq!(delivered_to, 0); // nobody connected in this example
/// # Ok(())
/// # }
/// ```
///
/// See the [module docs](crate::websocket) for more examples.
///
/// [`WebSocket::send_prepared`]: super::WebSocket::send_prepared
#[derive(Clone)]
pub struct PreparedMessage {
    inner: Arc<Inner>,
}

struct Inner {
    /// The whole server frame: FIN, the opcode, RSV bits clear, no mask, the shortest
    /// length form (RFC 6455 §5.2), then the payload.
    frame: Bytes,
    /// The message, its payload a slice of `frame` (no second copy): always `Text` or
    /// `Binary`.
    message: Message,
    /// Compressed frames (RFC 7692, no context takeover), made when a socket first needs
    /// one: per compression setting, the frame (RSV1 set) or `None` when compressing does
    /// not shrink the message. At most `MAX_VARIANTS` entries.
    #[cfg(feature = "deflate")]
    compressed: Mutex<Vec<(DeflateKey, Option<Bytes>)>>,
}

/// What a message compressed without context takeover depends on.
#[cfg(feature = "deflate")]
#[derive(Clone, Copy, PartialEq, Eq)]
struct DeflateKey {
    window_bits: u8,
    mem_level: u8,
    level: u8,
}

/// The most compressed variants one message keeps. There is one per distinct server
/// window (9 to 15) and configuration in use; past this, the others are compressed for
/// each send and not kept, so that memory stays bounded.
#[cfg(feature = "deflate")]
const MAX_VARIANTS: usize = 8;

impl PreparedMessage {
    /// Prepares a text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        let text: Utf8Bytes = text.into();
        let (frame, head_len) = encode(OpCode::Text, text.as_bytes());
        let frame = Bytes::from(frame);
        // The payload was valid UTF-8 and was copied as it is: this check cannot fail. It
        // costs one pass over the payload, once per message (not per send), and keeps the
        // crate free of `unsafe`.
        let text = Utf8Bytes::try_from_bytes(frame.slice(head_len..))
            .expect("a copy of valid UTF-8 is valid UTF-8");
        Self::new(frame, Message::Text(text))
    }

    /// Prepares a binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        let (frame, head_len) = encode(OpCode::Binary, &data);
        let frame = Bytes::from(frame);
        let payload = frame.slice(head_len..);
        Self::new(frame, Message::Binary(payload))
    }

    fn new(frame: Bytes, message: Message) -> Self {
        Self {
            inner: Arc::new(Inner {
                frame,
                message,
                #[cfg(feature = "deflate")]
                compressed: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Whether it is a text message.
    #[must_use]
    pub fn is_text(&self) -> bool {
        matches!(self.inner.message, Message::Text(_))
    }

    /// Whether it is a binary message.
    #[must_use]
    pub fn is_binary(&self) -> bool {
        matches!(self.inner.message, Message::Binary(_))
    }

    /// The payload: the text's bytes, or the binary data.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.inner.message.as_bytes()
    }

    /// The text of a text message.
    #[must_use]
    pub fn as_text(&self) -> Option<&str> {
        self.inner.message.as_text()
    }

    /// The payload's length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message, to send where a [`Message`] is expected (a `Sink<Message>`, say). Its
    /// payload shares the prepared frame's buffer: cloning it copies nothing.
    #[must_use]
    pub fn as_message(&self) -> &Message {
        &self.inner.message
    }

    /// The uncompressed frame, head and payload.
    pub(crate) fn frame(&self) -> &Bytes {
        &self.inner.frame
    }

    /// The frame compressed as a connection without server context takeover compresses
    /// it (RFC 7692 §7.2.1), RSV1 set; `None` when compressing does not shrink the payload
    /// (it is then sent uncompressed, as `send` does). Compressed at most once per
    /// setting: concurrent callers with the same setting wait for the first.
    #[cfg(feature = "deflate")]
    pub(crate) fn compressed_frame(
        &self,
        agreed: &super::deflate::Agreed,
    ) -> Result<Option<Bytes>, Error> {
        let key = DeflateKey {
            window_bits: agreed.server_window_bits,
            mem_level: agreed.mem_level,
            level: agreed.level,
        };
        let mut cache = self
            .inner
            .compressed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, frame)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(frame.clone());
        }
        // Compressed as a connection without context takeover would: a pooled compressor
        // for this setting, reset afterwards; the payload goes as it is if it does not
        // shrink.
        let mut state = super::deflate::DeflateState::new(super::deflate::Agreed {
            server_takeover: false,
            client_takeover: false,
            threshold: 0,
            ..*agreed
        });
        let frame = state.compress(self.as_bytes())?.map(|payload| {
            let (mut frame, _) = encode(self.opcode(), &payload);
            // RFC 7692 §6: RSV1 on the (first) frame of a compressed message.
            frame[0] |= 0x40;
            Bytes::from(frame)
        });
        if cache.len() < MAX_VARIANTS {
            cache.push((key, frame.clone()));
        }
        Ok(frame)
    }

    /// How many compressed variants are kept.
    #[cfg(all(test, feature = "deflate"))]
    pub(crate) fn compressed_variants(&self) -> usize {
        self.inner
            .compressed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    #[cfg(feature = "deflate")]
    pub(crate) fn opcode(&self) -> OpCode {
        if self.is_text() {
            OpCode::Text
        } else {
            OpCode::Binary
        }
    }
}

/// The server frame of a final, unmasked message: head and payload in one buffer, and the
/// head's length.
fn encode(opcode: OpCode, payload: &[u8]) -> (Vec<u8>, usize) {
    let mut head = [0u8; MAX_SERVER_HEAD];
    let head_len = frame::format(&mut head, opcode, payload.len());
    let mut frame = Vec::with_capacity(head_len + payload.len());
    frame.extend_from_slice(&head[..head_len]);
    frame.extend_from_slice(payload);
    (frame, head_len)
}

impl TryFrom<Message> for PreparedMessage {
    type Error = Error;

    /// Prepares a text or binary message.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidMessage`] for a ping, pong or close: control frames are small,
    /// and each connection answers them itself; send them with
    /// [`send`](super::WebSocket::send).
    fn try_from(msg: Message) -> Result<Self, Error> {
        match msg {
            Message::Text(text) => Ok(Self::text(text)),
            Message::Binary(data) => Ok(Self::binary(data)),
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => Err(Error::new(
                ErrorKind::InvalidMessage,
                "only text and binary messages can be prepared",
            )),
        }
    }
}

impl From<PreparedMessage> for Message {
    /// The message, its payload sharing the prepared frame's buffer (no copy).
    fn from(msg: PreparedMessage) -> Self {
        msg.inner.message.clone()
    }
}

impl fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedMessage")
            .field("message", &self.inner.message)
            .finish_non_exhaustive()
    }
}
