//! [`Sink`] for [`WebSocket`]: what `futures`' `SinkExt` and `StreamExt::split` build on.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{State, WebSocket};
use crate::websocket::close_code;
use crate::websocket::error::Error;
use crate::websocket::message::{CloseFrame, Message};
use crate::websocket::utf8::Utf8Bytes;

/// Sends messages as [`send`](WebSocket::send) does, one frame at a time:
///
/// - `poll_ready` finishes writing the frame in flight (and any pong or close reply the
///   socket owes the peer);
/// - `start_send` encodes the message into the socket, writing nothing yet;
/// - `poll_flush` writes it out and flushes;
/// - `poll_close` sends a close frame (`1000`, no reason) unless one was sent or received,
///   and flushes. It does not wait for the peer's close: keep reading the stream (or use
///   [`close`](WebSocket::close)) for the rest of the closing handshake.
///
/// So `StreamExt::split`, `SinkExt::send`, `send_all` and `forward` work as with axum's and
/// tokio-tungstenite's `WebSocket`.
impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_pending(cx)
    }

    fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), Error> {
        self.get_mut().queue(msg)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        this.poll_pending(cx).map_err(|e| {
            this.state = State::Closed;
            e
        })
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        if matches!(this.state, State::Open) {
            std::task::ready!(this.poll_pending(cx))?;
            this.queue(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: Utf8Bytes::default(),
            })))?;
        }
        this.poll_pending(cx)
    }
}
