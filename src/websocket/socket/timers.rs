//! The timers of a [`WebSocket`]: graceful shutdown (close `1001`) and keep-alive pings.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::write::ControlFrame;
use super::{State, WebSocket};
use crate::signal::Watch;
use crate::websocket::close_code;
use crate::websocket::error::{Error, ErrorKind};

/// The reason sent with close `1001` at graceful shutdown.
pub(super) const SHUTDOWN_REASON: &[u8] = b"server shutting down";

/// What ends or checks an idle connection from our side.
pub(super) struct Timers {
    /// Fires when graceful shutdown starts: send close `1001`.
    pub(super) shutdown: Option<Watch>,
    pub(super) keep_alive: Option<KeepAlive>,
}

pub(super) struct KeepAlive {
    pub(super) interval: Duration,
    pub(super) sleep: Pin<Box<Sleep>>,
    /// A ping went out and nothing came back yet.
    pub(super) awaiting: bool,
}

/// What the timers ask for.
enum Timer {
    Shutdown,
    Ping,
    TimedOut,
}

impl Timers {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Timer> {
        if let Some(shutdown) = &mut self.shutdown {
            if shutdown.poll_fired(cx).is_ready() {
                self.shutdown = None;
                return Poll::Ready(Timer::Shutdown);
            }
        }
        if let Some(keep_alive) = &mut self.keep_alive {
            if keep_alive.sleep.as_mut().poll(cx).is_ready() {
                if keep_alive.awaiting {
                    return Poll::Ready(Timer::TimedOut);
                }
                keep_alive.awaiting = true;
                let deadline = Instant::now() + keep_alive.interval;
                keep_alive.sleep.as_mut().reset(deadline);
                return Poll::Ready(Timer::Ping);
            }
        }
        Poll::Pending
    }

    /// Something arrived from the peer.
    pub(super) fn heard(&mut self) {
        if let Some(keep_alive) = &mut self.keep_alive {
            keep_alive.awaiting = false;
            let deadline = Instant::now() + keep_alive.interval;
            keep_alive.sleep.as_mut().reset(deadline);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Polls the shutdown and keep-alive timers, while the connection is open; returns
    /// whether one fired (and queued a frame to send, or failed the connection).
    pub(super) fn poll_timers(&mut self, cx: &mut Context<'_>) -> bool {
        if !matches!(self.state, State::Open) {
            return false;
        }
        let Some(timers) = &mut self.timers else {
            return false;
        };
        let Poll::Ready(timer) = timers.poll(cx) else {
            return false;
        };
        match timer {
            Timer::Shutdown => {
                // RFC 6455 §7.4.1: 1001, the server is going away.
                self.pending = Some(Box::new(ControlFrame::new(
                    0x8,
                    &[&close_code::AWAY.to_be_bytes()[..], SHUTDOWN_REASON].concat(),
                )));
                self.state = State::CloseSent;
            }
            Timer::Ping => self.pending = Some(Box::new(ControlFrame::new(0x9, b""))),
            Timer::TimedOut => self.fail(Error::new(
                ErrorKind::KeepAliveTimeout,
                "no answer to a keep-alive ping",
            )),
        }
        true
    }
}
