//! The timers of a [`WebSocket`]: graceful shutdown (close `1001`) and keep-alive pings.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
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

pin_project_lite::pin_project! {
    /// What ends or checks an idle connection from our side. Boxed once per socket (when
    /// there are any timers), with the keep-alive sleep inside: one allocation, not two.
    pub(super) struct Timers {
        // Fires when graceful shutdown starts: send close `1001`.
        pub(super) shutdown: Option<Watch>,
        #[pin]
        pub(super) keep_alive: Option<KeepAlive>,
    }
}

pin_project_lite::pin_project! {
    pub(super) struct KeepAlive {
        interval: Duration,
        timeout: Duration,
        // Fires at the next check.
        #[pin]
        sleep: Sleep,
        // Whether bytes arrived since the last check: a flag set per read, rather than a
        // clock read per read or a timer reset per read (which takes a lock).
        heard: bool,
        // A check by which the peer had last spoken: the silence is measured from there,
        // so a ping follows the peer's last bytes by `interval` to `interval` plus a
        // quarter.
        spoke_by: Instant,
        // A ping went out that nothing came back after yet.
        awaiting: bool,
        // The waker the sleep was last registered with. While the socket is polled by the
        // same task, the sleep wakes it when it fires: until then it is only checked
        // (`is_elapsed`, an atomic load) rather than polled (a coop-budget access and a
        // waker comparison inside tokio) once per message.
        registered: Option<Waker>,
    }
}

impl KeepAlive {
    pub(super) fn new(interval: Duration, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            interval,
            timeout,
            sleep: tokio::time::sleep_until(now + interval),
            heard: false,
            spoke_by: now,
            awaiting: false,
            registered: None,
        }
    }

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Timer> {
        if self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
            && !self.sleep.is_elapsed()
        {
            return Poll::Pending;
        }
        self.poll_sleep(cx)
    }

    #[cold]
    fn poll_sleep(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Timer> {
        let mut this = self.project();
        *this.registered = None;
        loop {
            if this.sleep.as_mut().poll(cx).is_pending() {
                *this.registered = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let now = Instant::now();
            if std::mem::take(this.heard) {
                // Spoken since the last check: look again a quarter interval on.
                *this.awaiting = false;
                *this.spoke_by = now;
                this.sleep.as_mut().reset(now + *this.interval / 4);
                continue;
            }
            if *this.awaiting {
                return Poll::Ready(Timer::TimedOut);
            }
            let quiet_until = *this.spoke_by + *this.interval;
            if now < quiet_until {
                this.sleep.as_mut().reset(quiet_until);
                continue;
            }
            *this.awaiting = true;
            this.sleep.as_mut().reset(now + *this.timeout);
            return Poll::Ready(Timer::Ping);
        }
    }
}

/// What the timers ask for.
enum Timer {
    Shutdown,
    Ping,
    TimedOut,
}

impl Timers {
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Timer> {
        let this = self.project();
        if let Some(shutdown) = this.shutdown {
            if shutdown.poll_fired(cx).is_ready() {
                *this.shutdown = None;
                return Poll::Ready(Timer::Shutdown);
            }
        }
        match this.keep_alive.as_pin_mut() {
            Some(keep_alive) => keep_alive.poll(cx),
            None => Poll::Pending,
        }
    }
}

impl<S> WebSocket<S> {
    /// Bytes arrived from the peer.
    #[inline]
    pub(super) fn heard(&mut self) {
        if let Some(timers) = &mut self.timers {
            if let Some(keep_alive) = timers.as_mut().project().keep_alive.as_pin_mut() {
                *keep_alive.project().heard = true;
            }
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
        let Poll::Ready(timer) = timers.as_mut().poll(cx) else {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use crate::websocket::{ErrorKind, WebSocket, WebSocketConfig};

    /// Real time, with lower bounds only: a slow machine makes it later, never earlier.
    #[tokio::test]
    async fn pings_after_the_interval_of_silence_and_fails_after_the_timeout() {
        let ms = Duration::from_millis;
        let config = WebSocketConfig::new()
            .keep_alive(ms(300))
            .keep_alive_timeout(ms(100));
        let (io, mut peer) = duplex(1024);
        let mut ws = WebSocket::from_raw_socket(io, config);
        let start = tokio::time::Instant::now();
        // A pong (masked, empty) at 200 ms: the silence starts again from there.
        let client = async {
            tokio::time::sleep(ms(200)).await;
            peer.write_all(&[0x8A, 0x80, 0, 0, 0, 0]).await.unwrap();
            let mut ping = [0; 2];
            peer.read_exact(&mut ping).await.unwrap();
            assert_eq!(ping, [0x89, 0]);
            assert!(start.elapsed() >= ms(500), "{:?}", start.elapsed());
            peer
        };
        let server = async {
            assert!(ws.recv().await.unwrap().is_ok()); // the pong
            let err = ws.recv().await.unwrap().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::KeepAliveTimeout);
            assert!(start.elapsed() >= ms(600), "{:?}", start.elapsed());
        };
        let (_peer, ()) = tokio::join!(client, server);
    }

    #[test]
    fn keep_alive_is_on_by_default_and_can_be_turned_off() {
        let config = WebSocketConfig::default();
        assert_eq!(config.get_keep_alive(), Some(Duration::from_secs(30)));
        assert_eq!(
            config.get_keep_alive_timeout(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(config.keep_alive(None).get_keep_alive_timeout(), None);
    }
}
