//! Serving pieces shared by the examples that run their own accept loop: an accept that
//! backs off on errors, and deadlines for the request head. Not part of the crate: a
//! server's accept loop is the application's, and this is the pattern to copy.
//!
//! Included with `#[path = "support/mod.rs"] mod support;` (a directory without `main.rs`
//! is not an example of its own); the integration tests include it the same way.

#![allow(dead_code)] // Each includer uses a part.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

/// How long a client may take to send a complete request head (HTTP/1.1), or the HTTP/2
/// connection preface and its first SETTINGS frame (prior knowledge).
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The first wait after an accept error; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one log line per this interval while accepts keep failing.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// `TcpListener::accept` that never spins and never floods the log.
///
/// At the descriptor limit (`EMFILE`/`ENFILE`) or out of memory, `accept` fails at once,
/// again and again, for as long as the condition lasts: a loop that logs and retries burns
/// a core and writes millions of lines. Here each error waits 10 ms, doubling to 1 s,
/// until an accept succeeds, and logs one line per 5 s at most, with how many errors it
/// stood for. Errors that belong to one connection (the peer reset it while it waited in
/// the backlog) are skipped at once, as hyper-util and axum do.
pub(crate) struct Acceptor {
    listener: TcpListener,
    backoff: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Acceptor {
    pub(crate) fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            backoff: Duration::ZERO,
            last_log: None,
            unlogged: 0,
        }
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection. Cancel-safe, like `TcpListener::accept`.
    pub(crate) async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(conn) => {
                    if self.backoff != Duration::ZERO {
                        tracing::info!(
                            errors = self.unlogged,
                            "accepting again after accept errors"
                        );
                        self.backoff = Duration::ZERO;
                        self.last_log = None;
                        self.unlogged = 0;
                    }
                    return conn;
                }
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    self.unlogged += 1;
                    if self.last_log.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                        tracing::warn!(
                            error = %e,
                            errors = self.unlogged,
                            "accept failed (out of file descriptors?): backing off"
                        );
                        self.last_log = Some(Instant::now());
                        self.unlogged = 0;
                    }
                    self.backoff = (self.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                    tokio::time::sleep(self.backoff).await;
                }
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// hyper-util's auto builder (HTTP/1.1 and HTTP/2 prior knowledge on one port) with a
/// deadline for each HTTP/1.1 request head: hyper's `header_read_timeout`, which needs a
/// timer to take effect. HTTP/2 gets the timer too (for its keep-alive, if set).
pub(crate) fn builder(head_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits until `stream` shows either the start of an HTTP/1.1 request, or the whole HTTP/2
/// preface and the client's first SETTINGS frame; `Err(TimedOut)` past `deadline`. Call
/// it before handing the stream to hyper, and drop the stream on error.
///
/// hyper's `header_read_timeout` covers HTTP/1.1 only: the auto builder waits for the
/// bytes that tell the version with no deadline, and HTTP/2 has no head timeout. This
/// peeks, so that hyper still gets the plain `TcpStream` (which tower-upgrade unwraps after
/// a switch: a wrapper would cost every upgraded connection hyper's 8 KiB read buffer).
/// A client that sends its bytes in one go costs one `peek`; one that trickles them is
/// checked every 50 ms until the deadline.
pub(crate) async fn head_started(stream: &TcpStream, deadline: Duration) -> io::Result<()> {
    let wait = async {
        let mut buf = [0; PREFACE.len() + 9];
        loop {
            stream.readable().await?;
            let n = stream.peek(&mut buf).await?;
            if n == 0 {
                return Ok(()); // EOF: hyper sees it and ends the connection.
            }
            let seen = &buf[..n];
            let common = seen.len().min(PREFACE.len());
            if seen[..common] != PREFACE[..common] {
                return Ok(()); // HTTP/1.1: `header_read_timeout` takes over.
            }
            if n == buf.len() {
                // The preface and a frame header: a SETTINGS frame must follow whole.
                let len = u32::from_be_bytes([0, seen[24], seen[25], seen[26]]) as usize;
                if seen[27] != 0x4 {
                    return Ok(()); // Not SETTINGS: hyper answers with a GOAWAY.
                }
                if settings_arrived(stream, PREFACE.len() + 9 + len).await? {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(deadline, wait)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request head too slow"))?
}

/// Whether `want` bytes can be peeked (a SETTINGS payload is at most a few hundred bytes
/// from real clients; anything up to 16 KiB is peeked).
async fn settings_arrived(stream: &TcpStream, want: usize) -> io::Result<bool> {
    if want > 16 * 1024 + PREFACE.len() + 9 {
        return Ok(true); // Oversized: hyper refuses it.
    }
    let mut buf = vec![0; want];
    Ok(stream.peek(&mut buf).await? >= want)
}
