//! Owned halves of a [`WebSocket`], for reading and writing from two tasks:
//! [`WebSocket::split`], [`SendHalf`], [`RecvHalf`] and [`reunite`](SendHalf::reunite).
//! How the halves share the socket, and why so, is told on [`WebSocket::split`].

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{State, WebSocket};
use crate::UpgradedIo;
use crate::websocket::error::Error;
use crate::websocket::message::Message;
use crate::websocket::prepared::PreparedMessage;

/// Which half: the index of its waker slot.
const SEND: usize = 0;
const RECV: usize = 1;

struct Shared<S> {
    socket: WebSocket<S>,
    /// Per half, the waker of a poll that ended `Pending` while a frame was still to be
    /// written: the transport may have kept the other half's waker instead.
    waiting: [Option<Waker>; 2],
}

type Link<S> = Arc<Mutex<Shared<S>>>;

/// Runs one poll of the socket for the half `me`, under the lock; then, if no frame is
/// left to write, wakes the other half if it was waiting for one to be written.
fn poll_shared<S, R>(
    link: &Link<S>,
    me: usize,
    cx: &mut Context<'_>,
    f: impl FnOnce(&mut WebSocket<S>, &mut Context<'_>) -> Poll<R>,
) -> Poll<R> {
    let mut shared = lock(link);
    let poll = f(&mut shared.socket, cx);
    if shared.socket.out.is_some() || shared.socket.pending.is_some() {
        if poll.is_pending() {
            let slot = &mut shared.waiting[me];
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        return poll;
    }
    let other = shared.waiting[1 - me].take();
    drop(shared);
    if let Some(waker) = other {
        waker.wake();
    }
    poll
}

/// A panic inside a poll cannot leave a frame half-formatted (frames are encoded before they
/// are queued), so a poisoned lock is taken as it is.
fn lock<S>(link: &Link<S>) -> MutexGuard<'_, Shared<S>> {
    link.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Splits the socket into a [`SendHalf`] and a [`RecvHalf`] that two tasks can own;
    /// [`reunite`](SendHalf::reunite) puts them back together.
    ///
    /// The halves are a [`Sink`](futures_sink::Sink) and a [`Stream`] of [`Message`]s,
    /// in the order `futures`' `StreamExt::split` gives them, so code written for axum's or
    /// tokio-tungstenite's WebSocket works unchanged (this inherent method is the one
    /// `ws.split()` calls, even with `StreamExt` in scope).
    ///
    /// - [`RecvHalf`] keeps answering pings, replying to a close and running the keep-alive
    ///   and graceful-shutdown timers, even while the send half is blocked in the middle of
    ///   a frame: those control frames are written right after it, never inside it.
    /// - Keep polling the receive half for as long as the connection lives (the timers and
    ///   the closing handshake run there), and drive both halves within the handler's
    ///   future (join them, or await the task you spawn): the layer counts the connection
    ///   as live until that future ends.
    ///
    /// See the [module docs](crate::websocket#reading-and-writing-from-two-tasks) for an
    /// example.
    ///
    /// # How the halves share the socket
    ///
    /// Both halves hold the one socket behind a [`std::sync::Mutex`], taken for one poll at a
    /// time and never held across an `.await`. So frames are never interleaved and control
    /// frames need no channel of their own: a ping or a close read by [`RecvHalf`] queues its
    /// pong or close reply in the socket, which writes it right after the data frame in
    /// flight, by whichever half polls next (the receiving half tries each time it is
    /// polled, and reads on while only a data frame is blocked). A data frame [`SendHalf`]
    /// could not finish is likewise finished by whichever half writes next. A half that
    /// finds the lock taken waits for the other's poll to end: one read or write, and the
    /// frames it completes.
    ///
    /// The transport remembers only the last task that waited for it to become writable. So
    /// the socket also remembers a half that is waiting for a write to finish, and the half
    /// that finishes it wakes the other.
    ///
    /// Why one lock rather than lock-free halves: the receiving half must be able to write
    /// (pongs, close replies, keep-alive pings, the close of graceful shutdown) at any time,
    /// including when the sending half is idle and nobody polls it, and RFC 6455 forbids a
    /// control frame inside a data frame. So the write side needs exclusive access shared by
    /// both halves whatever the design; splitting the transport as well (as
    /// `tokio::io::split` does) would add a second lock per read. Uncontended, the lock is an
    /// atomic compare-and-swap and a swap per message. See BENCHMARKS.md, "Split halves", for
    /// what that costs per message against the unsplit socket.
    pub fn split(self) -> (SendHalf<S>, RecvHalf<S>) {
        let link = Arc::new(Mutex::new(Shared {
            socket: self,
            waiting: [None, None],
        }));
        (
            SendHalf {
                link: Arc::clone(&link),
            },
            RecvHalf { link },
        )
    }
}

/// The sending half of a [`WebSocket`], from [`WebSocket::split`].
///
/// A [`Sink`](futures_sink::Sink) of [`Message`]s, with the same rules as the
/// [`WebSocket`]'s own.
pub struct SendHalf<S = UpgradedIo> {
    link: Link<S>,
}

/// The receiving half of a [`WebSocket`], from [`WebSocket::split`].
///
/// A [`Stream`] of [`Message`]s. It answers pings, replies to a close frame and runs the
/// keep-alive and shutdown timers, as the [`WebSocket`] does.
pub struct RecvHalf<S = UpgradedIo> {
    link: Link<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SendHalf<S> {
    /// Sends a message, and flushes it; as [`WebSocket::send`].
    ///
    /// Sending a [`Message::Close`] starts the closing handshake: the [`RecvHalf`] then
    /// returns the peer's close, and ends. (There is no inherent `close`, so that
    /// `SinkExt::close`, which sends close `1000` and flushes, works as on `futures`' split
    /// halves.)
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in the same way as [`WebSocket::send`]: a `send` dropped before its
    /// message was queued sent nothing; one dropped after has its frame finished before any
    /// other frame is written, by whichever half writes next.
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send`].
    pub async fn send(&mut self, msg: Message) -> Result<(), Error> {
        let mut msg = Some(msg);
        poll_fn(|cx| self.poll_send(cx, &mut msg, WebSocket::queue)).await
    }

    /// Sends a message prepared once for many sockets, and flushes it; as
    /// [`WebSocket::send_prepared`].
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Self::send).
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send_prepared`].
    pub async fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        let mut msg = Some(msg);
        poll_fn(|cx| self.poll_send(cx, &mut msg, |ws, m| ws.queue_prepared(m))).await
    }

    /// One poll of a send, under the lock: the frame in flight first, then `msg` queued
    /// (taken out of the option, once) and written.
    fn poll_send<M>(
        &mut self,
        cx: &mut Context<'_>,
        msg: &mut Option<M>,
        queue: impl FnOnce(&mut WebSocket<S>, M) -> Result<(), Error>,
    ) -> Poll<Result<(), Error>> {
        poll_shared(&self.link, SEND, cx, |ws, cx| {
            if msg.is_some() {
                std::task::ready!(ws.poll_pending(cx))?;
                queue(ws, msg.take().expect("checked above"))?;
            }
            ws.poll_pending(cx).map_err(|e| {
                ws.state = State::Closed;
                e
            })
        })
    }

    /// Whether the connection is closed or closing: no message can be sent any more.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        lock(&self.link).socket.is_closed()
    }

    /// Whether `other` is the receiving half of the same socket.
    #[must_use]
    pub fn is_pair_of(&self, other: &RecvHalf<S>) -> bool {
        Arc::ptr_eq(&self.link, &other.link)
    }

    /// Puts the socket back together, from the two halves of one split.
    ///
    /// # Errors
    ///
    /// Gives both halves back if they are not of the same socket.
    pub fn reunite(self, other: RecvHalf<S>) -> Result<WebSocket<S>, ReuniteError<S>> {
        reunite(self, other)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> RecvHalf<S> {
    /// Receives the next message; as [`WebSocket::recv`].
    ///
    /// Returns `None` once the connection is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a message is taken out of the socket only in the poll that returns it,
    /// so `recv` can sit in a `tokio::select!` next to a channel with nothing lost.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next message; the poll form of [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        poll_shared(&self.link, RECV, cx, WebSocket::poll_recv)
    }

    /// Whether `other` is the sending half of the same socket.
    #[must_use]
    pub fn is_pair_of(&self, other: &SendHalf<S>) -> bool {
        other.is_pair_of(self)
    }

    /// Puts the socket back together, from the two halves of one split.
    ///
    /// # Errors
    ///
    /// Gives both halves back if they are not of the same socket.
    pub fn reunite(self, other: SendHalf<S>) -> Result<WebSocket<S>, ReuniteError<S>> {
        reunite(other, self)
    }
}

fn reunite<S>(send: SendHalf<S>, recv: RecvHalf<S>) -> Result<WebSocket<S>, ReuniteError<S>> {
    if !Arc::ptr_eq(&send.link, &recv.link) {
        return Err(ReuniteError(send, recv));
    }
    drop(recv);
    let shared = Arc::try_unwrap(send.link)
        .unwrap_or_else(|_| unreachable!("the halves are the only two references"));
    Ok(shared
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .socket)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for RecvHalf<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

/// As the [`WebSocket`]'s own [`Sink`](futures_sink::Sink) impl, one poll under the lock
/// each.
impl<S: AsyncRead + AsyncWrite + Unpin> futures_sink::Sink<Message> for SendHalf<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        poll_shared(&self.link, SEND, cx, |ws, cx| Pin::new(ws).poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), Error> {
        Pin::new(&mut lock(&self.link).socket).start_send(msg)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        poll_shared(&self.link, SEND, cx, |ws, cx| Pin::new(ws).poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        poll_shared(&self.link, SEND, cx, |ws, cx| Pin::new(ws).poll_close(cx))
    }
}

/// The two halves given to [`reunite`](SendHalf::reunite) were not of the same socket.
pub struct ReuniteError<S = UpgradedIo>(pub SendHalf<S>, pub RecvHalf<S>);

impl<S> fmt::Debug for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReuniteError(..)")
    }
}

impl<S> fmt::Display for ReuniteError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the halves are not of the same WebSocket")
    }
}

impl<S> std::error::Error for ReuniteError<S> {}

impl<S> fmt::Debug for SendHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendHalf").finish_non_exhaustive()
    }
}

impl<S> fmt::Debug for RecvHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvHalf").finish_non_exhaustive()
    }
}
