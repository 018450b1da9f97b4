//! The upgraded connection handed to protocol handlers.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The connection after `101 Switching Protocols`, as a tokio [`AsyncRead`] +
/// [`AsyncWrite`].
///
/// Bytes the client sent right behind the upgrade request (before it read the `101`) are
/// read first.
///
/// # Notes
///
/// When the server serves plain TCP connections (as `axum::serve` and the usual
/// `hyper::server::conn::http1` loops do), this unwraps hyper's [`Upgraded`] back to the
/// [`TcpStream`]: reads and writes then skip a dynamic dispatch layer, and the few bytes
/// hyper had read ahead are copied out, so hyper's 8 KiB read buffer is freed instead of
/// being held for the life of the connection. Other transports (TLS, HTTP/2 extended
/// CONNECT streams, ...) keep the [`Upgraded`] as it is.
///
/// A read with no room in its buffer waits until the connection is readable and reads
/// nothing (on TCP, without the `recv` of 0 bytes that tokio's [`TcpStream`] makes): a way
/// to wait for data before allocating a buffer for it.
pub struct UpgradedIo {
    /// Bytes read ahead by hyper, not yet handed out. Never an empty `Bytes`.
    pre: Option<Bytes>,
    inner: Inner,
    /// The idle timer, when the layer has an idle timeout.
    idle: Option<Idle>,
}

enum Inner {
    Tcp(TcpStream),
    Upgraded(TokioIo<Upgraded>),
}

struct Idle {
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl UpgradedIo {
    pub(crate) fn new(upgraded: Upgraded, idle_timeout: Option<Duration>) -> Self {
        let idle = idle_timeout.map(|timeout| Idle {
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
        });
        match unwrap_tcp(upgraded) {
            Ok((io, read_buf)) => {
                // `read_buf` is a view into hyper's whole read buffer: copy the few bytes out
                // (or drop it) so that the big allocation is freed now.
                let pre = (!read_buf.is_empty()).then(|| Bytes::copy_from_slice(&read_buf));
                Self {
                    pre,
                    inner: Inner::Tcp(io.into_inner()),
                    idle,
                }
            }
            Err(upgraded) => Self {
                pre: None,
                inner: Inner::Upgraded(TokioIo::new(upgraded)),
                idle,
            },
        }
    }

    /// Applies the idle timeout to the result of an IO operation: progress pushes the
    /// deadline back; no progress past the deadline is an error.
    #[inline]
    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let Some(idle) = &mut self.idle else {
            return poll;
        };
        match poll {
            Poll::Ready(result) => {
                idle.sleep.as_mut().reset(Instant::now() + idle.timeout);
                Poll::Ready(result)
            }
            Poll::Pending => match idle.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "upgraded connection idle timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    /// The underlying TCP stream, when the connection could be unwrapped to one.
    ///
    /// Read-ahead bytes, if any, stay in this `UpgradedIo`: read them first with
    /// [`UpgradedIo::take_read_ahead`].
    #[must_use]
    pub fn tcp_stream(&self) -> Option<&TcpStream> {
        match &self.inner {
            Inner::Tcp(tcp) => Some(tcp),
            Inner::Upgraded(_) => None,
        }
    }

    /// Takes the bytes that the client sent right behind the upgrade request and that have
    /// not been read yet.
    pub fn take_read_ahead(&mut self) -> Option<Bytes> {
        self.pre.take()
    }

    /// Splits into the read-ahead bytes and the transport: either the [`TcpStream`] or
    /// hyper's [`Upgraded`].
    pub fn into_parts(self) -> (Option<Bytes>, Result<TcpStream, Upgraded>) {
        let io = match self.inner {
            Inner::Tcp(tcp) => Ok(tcp),
            Inner::Upgraded(up) => Err(up.into_inner()),
        };
        (self.pre, io)
    }
}

fn unwrap_tcp(upgraded: Upgraded) -> Result<(TokioIo<TcpStream>, Bytes), Upgraded> {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Ok((parts.io, parts.read_buf)),
        // `hyper_util::server::conn::auto` (used by `axum::serve`) wraps the IO in a private
        // type that only its own `downcast` sees through.
        Err(upgraded) => {
            hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(upgraded)
                .map(|parts| (parts.io, parts.read_buf))
        }
    }
}

impl fmt::Debug for UpgradedIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match &self.inner {
            Inner::Tcp(_) => "tcp",
            Inner::Upgraded(_) => "upgraded",
        };
        f.debug_struct("UpgradedIo")
            .field("transport", &transport)
            .field("read_ahead", &self.pre.as_ref().map_or(0, Bytes::len))
            .finish()
    }
}

impl AsyncRead for UpgradedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(pre) = &mut self.pre {
            let n = pre.len().min(buf.remaining());
            buf.put_slice(&pre[..n]);
            pre.advance(n);
            if pre.is_empty() {
                self.pre = None;
            }
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        let poll = match &mut this.inner {
            // A read with no room waits until the stream is readable and reads nothing, as
            // tokio's `TcpStream` does, less its `recv` of 0 bytes: a way to wait for data
            // before allocating a buffer for it.
            Inner::Tcp(tcp) if buf.remaining() == 0 => tcp.poll_read_ready(cx),
            Inner::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Inner::Upgraded(up) => Pin::new(up).poll_read(cx, buf),
        };
        this.track(cx, poll)
    }
}

impl AsyncWrite for UpgradedIo {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = match &mut this.inner {
            Inner::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Inner::Upgraded(up) => Pin::new(up).poll_write(cx, buf),
        };
        this.track(cx, poll)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = match &mut this.inner {
            Inner::Tcp(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Inner::Upgraded(up) => Pin::new(up).poll_write_vectored(cx, bufs),
        };
        this.track(cx, poll)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Tcp(tcp) => tcp.is_write_vectored(),
            Inner::Upgraded(up) => up.is_write_vectored(),
        }
    }

    #[inline]
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Inner::Upgraded(up) => Pin::new(up).poll_flush(cx),
        }
    }

    #[inline]
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Inner::Upgraded(up) => Pin::new(up).poll_shutdown(cx),
        }
    }
}
