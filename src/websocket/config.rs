//! [`WebSocketConfig`]: the limits and buffer sizes of a
//! [`WebSocket`](super::WebSocket).

use std::time::Duration;

/// The most bytes one read may take into the stack scratch buffer.
pub(super) const MAX_SCRATCH: usize = 16 * 1024;

/// Limits and buffer sizes of a [`WebSocket`](super::WebSocket).
///
/// See the [module docs](crate::websocket) for an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct WebSocketConfig {
    // Read by the socket directly, as when they were in one file.
    pub(super) max_message_size: usize,
    pub(super) max_frame_size: usize,
    pub(super) read_buffer_size: usize,
    pub(super) keep_alive: Option<Duration>,
    /// How long a ping may go unanswered; `None`: as long as `keep_alive`.
    pub(super) keep_alive_timeout: Option<Duration>,
}

/// The default keep-alive interval: below the 60 s idle timeouts of common proxies and load
/// balancers (nginx's `proxy_read_timeout`, AWS ALB), so that a quiet connection behind one
/// is not cut.
const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            max_message_size: 64 << 20,
            max_frame_size: 16 << 20,
            read_buffer_size: 4096,
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            keep_alive_timeout: None,
        }
    }
}

impl WebSocketConfig {
    /// The default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// The largest message accepted, in bytes, summed over its frames. A bigger message
    /// closes the connection with status `1009`.
    ///
    /// The default value is 64 MiB.
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.max_message_size = max;
        self
    }

    /// The largest frame payload accepted, in bytes. A bigger frame closes the connection
    /// with status `1009`, before its payload is read.
    ///
    /// The default value is 16 MiB.
    pub fn max_frame_size(mut self, max: usize) -> Self {
        self.max_frame_size = max;
        self
    }

    /// How many bytes one read takes at most between frames.
    ///
    /// Between frames nothing is allocated: bytes are read into a scratch buffer on the
    /// stack and only what arrived is kept. Once a frame header announces a payload, the
    /// whole frame is read into a buffer of exactly its size. Values are clamped to
    /// 64 bytes ..= 16 KiB.
    ///
    /// The default value is 4 KiB.
    pub fn read_buffer_size(mut self, size: usize) -> Self {
        self.read_buffer_size = size.clamp(64, MAX_SCRATCH);
        self
    }

    /// Sends a ping after `interval` without a byte from the peer (measured to a quarter of
    /// `interval`: the ping follows the peer's last bytes by `interval` to 1.25 ×
    /// `interval`), and fails the connection
    /// ([`ErrorKind::KeepAliveTimeout`], close `1001`) when the
    /// [timeout](Self::keep_alive_timeout) passes after it with still nothing; `None`
    /// turns keep-alive off. The timer runs while [`recv`](super::WebSocket::recv) is
    /// waiting (a handler that stops reading stops it too).
    ///
    /// The default value is 30 seconds.
    ///
    /// # Notes
    ///
    /// Unlike tungstenite, fastwebsockets and axum, which leave it to the application,
    /// keep-alive is on by default: a peer that vanishes without a close frame or a FIN (a
    /// phone that lost its network, a host that went down) otherwise holds its connection,
    /// its task and its buffers until the process restarts, since nothing is ever written to
    /// it and TCP keep-alive is off by default. It costs one timer per connection (about
    /// 200 bytes; per message, a flag set and a timer poll: no clock read and no timer
    /// reset), a timer check every quarter interval on an active connection, one ping per
    /// 30 s of silence, and it keeps quiet connections open through proxies that cut them
    /// after 60 s. Turn it off (`keep_alive(None)`) for a protocol with its own heartbeat.
    ///
    /// Keep-alive uses tokio's timers: the runtime must have them enabled
    /// (`#[tokio::main]`, `Builder::enable_all` or `enable_time`), or creating the socket
    /// panics, as any `tokio::time::sleep` does.
    ///
    /// [`ErrorKind::KeepAliveTimeout`]: super::ErrorKind::KeepAliveTimeout
    pub fn keep_alive(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.keep_alive = interval.into();
        self
    }

    /// How long a keep-alive ping may go unanswered (by any byte from the peer) before the
    /// connection fails.
    ///
    /// The default is the [keep-alive interval](Self::keep_alive).
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.keep_alive_timeout = Some(timeout);
        self
    }

    /// See [`keep_alive`](Self::keep_alive).
    #[must_use]
    pub fn get_keep_alive(&self) -> Option<Duration> {
        self.keep_alive
    }

    /// See [`keep_alive_timeout`](Self::keep_alive_timeout); `None` when keep-alive is off.
    #[must_use]
    pub fn get_keep_alive_timeout(&self) -> Option<Duration> {
        self.keep_alive
            .map(|interval| self.keep_alive_timeout.unwrap_or(interval))
    }

    /// See [`max_message_size`](Self::max_message_size).
    #[must_use]
    pub fn get_max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// See [`max_frame_size`](Self::max_frame_size).
    #[must_use]
    pub fn get_max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// See [`read_buffer_size`](Self::read_buffer_size).
    #[must_use]
    pub fn get_read_buffer_size(&self) -> usize {
        self.read_buffer_size
    }
}
