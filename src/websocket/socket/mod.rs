//! [`WebSocket`]: a server-side WebSocket connection after the handshake, with
//! [`Message`]s in and out.
//!
//! Frame heads are parsed and formatted by [`frame`](super::frame); this module keeps the
//! buffers, the IO and the message rules of RFC 6455 §5 (fragmentation, control frames,
//! UTF-8, the closing handshake): the struct and its closing states here, the read path in
//! `read.rs`, the write path in `write.rs`, and the shutdown and keep-alive timers in
//! `timers.rs`. See the module docs for why.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite};

use self::read::Partial;
use self::timers::{KeepAlive, Timers};
use self::write::{ControlFrame, Outgoing};
use crate::websocket::config::WebSocketConfig;
use crate::websocket::error::Error;
use crate::websocket::frame::Head;
use crate::websocket::message::{CloseFrame, Message};
use crate::{BudgetReservation, ShutdownSignal, UpgradedIo};

mod broadcast;
mod budget;
mod read;
mod sink;
mod split;
#[cfg(test)]
mod tests;
mod timers;
mod write;

pub use self::split::{RecvHalf, ReuniteError, SendHalf};

/// A server-side WebSocket connection, after the handshake.
///
/// Receive with [`recv`](Self::recv) (or as a [`Stream`]), send with
/// [`send`](Self::send), close with [`close`](Self::close).
///
/// - Pings are answered with pongs, and a peer's close frame with a close frame, by the
///   socket itself; both messages are still handed to you.
/// - A protocol violation closes the connection with the right status (`1002`, `1007`,
///   `1009`) before `recv` returns the error.
/// - While no frame is in progress, the socket holds no read buffer at all, and it never
///   holds a write buffer: an idle connection costs only this struct.
///
/// Both are cancel-safe, because all their state lives in the socket: `recv` can sit in a
/// `tokio::select!` next to a channel, and a `send` dropped half-way (say, by a timeout)
/// leaves its frame to be finished before any other frame is written (the message may
/// then be sent or not, but the stream stays well-formed).
///
/// See the [module docs](crate::websocket) for an example.
pub struct WebSocket<S = UpgradedIo> {
    io: S,
    /// Received bytes not yet handed out. Unallocated (capacity 0) whenever it is empty.
    read_buf: BytesMut,
    /// The head of the frame whose payload is being read.
    header: Option<Head>,
    /// A fragmented message being assembled. Boxed, like `pending`, to keep the idle
    /// struct small: both are rare.
    partial: Option<Box<Partial>>,
    /// A control frame (pong, close) to write before anything else.
    pending: Option<Box<ControlFrame>>,
    /// The data frame being written: kept here rather than in the `send` future, so that
    /// the future stays small and a cancelled `send` finishes its frame before any other.
    out: Option<Outgoing>,
    state: State,
    config: WebSocketConfig,
    protocol: Option<HeaderValue>,
    /// Graceful shutdown and keep-alive timers, when there are any. Boxed: not every
    /// socket has them, and it keeps the idle struct small.
    timers: Option<Pin<Box<Timers>>>,
    /// The size of the last frame, head included, when it did not fit the scratch buffer
    /// (at most `MAX_EXPECT`; 0 otherwise). The next idle read then goes straight into a
    /// heap buffer that size, so that a frame like it takes one read instead of two. The
    /// buffer is freed at once if nothing is there to read: idle, the socket holds none.
    expect: u32,
    /// The bytes of the message being read, reserved against the layer's message budget
    /// (see `budget.rs`); `None` without one.
    budget: Option<BudgetReservation>,
    /// How much of the frame in progress is unmasked and, for text, checked: text is
    /// checked as it arrives (RFC 6455 §8.1), not only once the frame is whole.
    progress: Progress,
    /// Whether a read with no room waits for the IO to be readable, reading nothing, as
    /// [`UpgradedIo`]'s does. Set by [`WebSocketHandler`](super::WebSocketHandler): a read
    /// into a buffer allocated for an expected frame (see `expect`) then waits for that
    /// first, so that waiting for the next message allocates nothing.
    probe_reads: bool,
    /// permessage-deflate, when negotiated. Boxed: without context takeover it holds only
    /// the agreed parameters between messages.
    #[cfg(feature = "deflate")]
    deflate: Option<Box<crate::websocket::deflate::DeflateState>>,
}

/// See `WebSocket::progress`.
#[derive(Default)]
struct Progress {
    /// Payload bytes of the frame in progress already unmasked (and checked, for text).
    unmasked: usize,
    /// The start of a code point cut off at `unmasked`.
    utf8: crate::websocket::utf8::Utf8Tail,
}

enum State {
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// Write what is pending, shut the connection down, then hand this out.
    Finishing(Finish),
    Closed,
}

enum Finish {
    Close(Option<CloseFrame>),
    Error(Error),
}

impl<S> WebSocket<S> {
    /// Wraps a connection whose WebSocket handshake is done, as the server.
    ///
    /// [`WebSocketHandler`](super::WebSocketHandler) does this for you; use it for a
    /// connection you upgraded yourself (for example with
    /// [`WebSocketHandler::raw`](super::WebSocketHandler::raw)).
    pub fn from_raw_socket(io: S, config: WebSocketConfig) -> Self {
        Self {
            io,
            read_buf: BytesMut::new(),
            header: None,
            partial: None,
            pending: None,
            out: None,
            state: State::Open,
            timers: config.keep_alive.map(|interval| {
                Box::pin(Timers {
                    shutdown: None,
                    keep_alive: Some(KeepAlive::new(
                        interval,
                        config.get_keep_alive_timeout().unwrap_or(interval),
                    )),
                })
            }),
            config,
            protocol: None,
            expect: 0,
            progress: Progress::default(),
            probe_reads: false,
            #[cfg(feature = "deflate")]
            deflate: None,
            budget: None,
        }
    }

    /// Closes the connection with `1001 Going Away` when `signal` fires, as
    /// [`WebSocketHandler`](super::WebSocketHandler) does with the layer's graceful
    /// shutdown: [`recv`](Self::recv) then sends the close frame, waits for the peer's,
    /// and ends. Sends after that fail with
    /// [`ErrorKind::AlreadyClosed`](crate::websocket::ErrorKind::AlreadyClosed).
    #[must_use]
    pub fn close_on(mut self, signal: ShutdownSignal) -> Self {
        self.set_close_on(signal);
        self
    }

    fn set_close_on(&mut self, signal: ShutdownSignal) {
        let shutdown = signal.into_watch();
        match &mut self.timers {
            Some(timers) => *timers.as_mut().project().shutdown = Some(shutdown),
            None => {
                self.timers = Some(Box::pin(Timers {
                    shutdown: Some(shutdown),
                    keep_alive: None,
                }));
            }
        }
    }

    /// The subprotocol selected in the handshake (`Sec-WebSocket-Protocol`), if any.
    #[must_use]
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_ref().and_then(|p| p.to_str().ok())
    }

    /// The configuration.
    pub fn config(&self) -> &WebSocketConfig {
        &self.config
    }

    /// The underlying connection.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Gives back the connection and the bytes received but not yet parsed.
    ///
    /// Frames already in progress are lost; call it between messages.
    pub fn into_inner(self) -> (S, Bytes) {
        (self.io, self.read_buf.freeze())
    }

    /// Whether the connection is closed or closing: no message can be sent any more.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        !matches!(self.state, State::Open)
    }
}

impl WebSocket<UpgradedIo> {
    /// The socket that [`WebSocketHandler`](super::WebSocketHandler) hands to its callback:
    /// [`from_raw_socket`](Self::from_raw_socket) with the handshake's outcome, the
    /// shutdown signal and the budget set in place. Each builder method moves the whole
    /// struct (callgrind: 4 copies of it per handshake).
    ///
    /// It waits for the connection to be readable before allocating a buffer for an
    /// expected frame (see `probe_reads`).
    pub(crate) fn for_handler(
        io: UpgradedIo,
        config: WebSocketConfig,
        protocol: Option<HeaderValue>,
        shutdown: ShutdownSignal,
        budget: Option<&crate::MessageBudget>,
        #[cfg(feature = "deflate")] deflate: Option<crate::websocket::deflate::Agreed>,
    ) -> Self {
        let mut ws = Self::from_raw_socket(io, config);
        ws.probe_reads = true;
        ws.protocol = protocol;
        ws.set_close_on(shutdown);
        ws.budget = budget.map(crate::MessageBudget::reservation);
        #[cfg(feature = "deflate")]
        {
            ws.deflate = deflate.map(|a| Box::new(crate::websocket::deflate::DeflateState::new(a)));
        }
        ws
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Fails the connection (RFC 6455 §7.1.7): send a close frame with the error's code,
    /// then close.
    fn fail(&mut self, e: Error) {
        if matches!(self.state, State::Open) {
            self.pending = Some(Box::new(ControlFrame::close(e.close_code())));
        }
        self.read_buf = BytesMut::new();
        self.partial = None;
        self.header = None;
        self.progress = Progress::default();
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &mut self.deflate {
            deflate.abort();
        }
        self.release();
        self.state = State::Finishing(Finish::Error(e));
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("protocol", &self.protocol)
            .field("closed", &self.is_closed())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
