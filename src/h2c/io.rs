//! [`H2cIo`]: the upgraded connection as hyper's HTTP/2 server sees it.
//!
//! hyper's HTTP/2 server expects a connection that starts with the client preface and
//! carries every client stream. After an h2c upgrade, the client's side of stream 1 (the
//! upgrade request) was sent as HTTP/1.1, and its settings as `HTTP2-Settings`. This wrapper
//! puts them where the server expects them:
//!
//! - **Reads.** Nothing reaches the server until the client's 24-byte preface and its first
//!   SETTINGS frame have arrived (the client sends them only after it has read the `101`,
//!   so the response to stream 1 never arrives together with the `101`). The server then
//!   reads the preface, *one* SETTINGS frame carrying the `HTTP2-Settings` payload followed
//!   by the client's own settings, the frames of stream 1, and from then on the client's
//!   bytes unchanged. Because the two sets of settings arrive as one frame, the server sends
//!   exactly one SETTINGS ACK, the one the client expects.
//! - **Writes.** The client never sent stream 1's body as DATA frames, so its connection
//!   send window is larger than the server's receive window by the body length. Until that
//!   difference is paid off, it is subtracted from the connection-level WINDOW_UPDATE frames
//!   the server writes (a frame whose increment drops to zero is not sent). After that,
//!   writes pass straight through.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::frames::{ACK, FRAME_HEADER, MAX_FRAME, SETTINGS, WINDOW_UPDATE, frame_header};

/// RFC 9113 §3.4: the client connection preface.
pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The upgraded connection, with the client side of stream 1 spliced in.
pub(super) struct H2cIo<T> {
    inner: T,
    read: Read,
    write: Write,
}

enum Read {
    /// Waiting for the client preface and first SETTINGS frame.
    Handshake {
        /// What the client has sent so far; bounded by the preface, one frame and one read.
        buf: BytesMut,
        /// The decoded `HTTP2-Settings` payload.
        settings: Bytes,
        /// The frames of stream 1.
        stream1: Bytes,
        /// Boxed once per connection.
        deadline: Pin<Box<Sleep>>,
    },
    /// Handing out the assembled start of the connection.
    Replay(Bytes),
    /// Client bytes, unchanged.
    Pass,
}

/// Tracks the server's frames while the connection window still owes the body length.
#[derive(Debug, Default)]
struct Write {
    /// Bytes of connection window the server granted for stream 1's body, which the client
    /// never spent. Invariant: while non-zero, `head`/`skip`/`update` track frame
    /// boundaries.
    debt: u32,
    /// The header of the current frame, collected across writes.
    head: [u8; FRAME_HEADER],
    head_len: usize,
    /// Payload bytes of the current frame still to pass through unchanged.
    skip: usize,
    /// The payload of a stream-0 WINDOW_UPDATE being collected, and how much of it is in.
    update: Option<([u8; 4], usize)>,
    /// Bytes accepted from the server that must reach the client before anything else.
    out: [u8; FRAME_HEADER + 4],
    out_pos: usize,
    out_len: usize,
}

impl<T> H2cIo<T> {
    /// Wraps `inner`, the connection right after the `101`.
    ///
    /// `settings` is the decoded `HTTP2-Settings` payload, `stream1` the frames of stream 1
    /// and `body_len` the length of its body (at most 65,535).
    pub(super) fn new(
        inner: T,
        settings: Bytes,
        stream1: Bytes,
        body_len: usize,
        timeout: Duration,
    ) -> Self {
        debug_assert!(body_len <= 65_535);
        Self {
            inner,
            read: Read::Handshake {
                buf: BytesMut::new(),
                settings,
                stream1,
                deadline: Box::pin(tokio::time::sleep(timeout)),
            },
            write: Write {
                debt: u32::try_from(body_len).unwrap_or(u32::MAX),
                ..Write::default()
            },
        }
    }
}

/// What the client has sent so far, checked. `Ok(None)`: wait for more.
fn assemble(buf: &mut BytesMut, settings: &[u8], stream1: &[u8]) -> io::Result<Option<Bytes>> {
    let n = buf.len().min(PREFACE.len());
    if buf[..n] != PREFACE[..n] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "h2c: the client did not send the HTTP/2 connection preface after the 101",
        ));
    }
    let start = PREFACE.len();
    if buf.len() < start + FRAME_HEADER {
        return Ok(None);
    }
    let head = &buf[start..start + FRAME_HEADER];
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    // RFC 9113 §3.4: the preface is followed by a SETTINGS frame. Anything else is handed to
    // the server unchanged: it answers the connection error itself (a GOAWAY).
    let is_settings = head[3] == SETTINGS
        && head[4] & ACK == 0
        && stream == 0
        && len % 6 == 0
        && len <= MAX_FRAME;
    if !is_settings {
        return Ok(Some(buf.split().freeze()));
    }
    let end = start + FRAME_HEADER + len;
    if buf.len() < end {
        return Ok(None);
    }
    let mut out =
        BytesMut::with_capacity(buf.len() + FRAME_HEADER + settings.len() + stream1.len());
    out.put_slice(PREFACE);
    // One SETTINGS frame: `HTTP2-Settings` first, so the client's own values win.
    frame_header(&mut out, settings.len() + len, SETTINGS, 0, 0);
    out.put_slice(settings);
    out.put_slice(&buf[start + FRAME_HEADER..end]);
    out.put_slice(stream1);
    out.put_slice(&buf[end..]);
    buf.clear();
    Ok(Some(out.freeze()))
}

impl<T: AsyncRead + Unpin> AsyncRead for H2cIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.read {
                Read::Pass => return Pin::new(&mut this.inner).poll_read(cx, out),
                Read::Replay(bytes) => {
                    let n = bytes.len().min(out.remaining());
                    out.put_slice(&bytes[..n]);
                    bytes.advance(n);
                    if bytes.is_empty() {
                        this.read = Read::Pass;
                    }
                    return Poll::Ready(Ok(()));
                }
                Read::Handshake {
                    buf,
                    settings,
                    stream1,
                    deadline,
                } => {
                    if let Some(start) = assemble(buf, settings, stream1)? {
                        this.read = Read::Replay(start);
                        continue;
                    }
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "h2c: timed out waiting for the HTTP/2 connection preface",
                        )));
                    }
                    // Only the handshake goes through this copy, once per connection.
                    let mut chunk = [0; 1024];
                    let mut chunk = ReadBuf::new(&mut chunk);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
                    if chunk.filled().is_empty() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "h2c: connection closed before the HTTP/2 connection preface",
                        )));
                    }
                    buf.extend_from_slice(chunk.filled());
                }
            }
        }
    }
}

impl Write {
    /// Whether writes can go straight through: nothing owed, nothing half-parsed.
    fn is_pass(&self) -> bool {
        self.debt == 0
            && self.head_len == 0
            && self.skip == 0
            && self.update.is_none()
            && self.out_pos == self.out_len
    }

    /// Takes bytes of the server's frame stream that are not payload to pass through:
    /// frame headers and stream-0 WINDOW_UPDATE payloads. Returns how many were taken.
    /// Whatever must be sent is left in `out`.
    fn take(&mut self, buf: &[u8]) -> usize {
        debug_assert!(self.skip == 0 && self.out_pos == self.out_len && !buf.is_empty());
        if let Some((payload, have)) = &mut self.update {
            let n = (4 - *have).min(buf.len());
            payload[*have..*have + n].copy_from_slice(&buf[..n]);
            *have += n;
            if *have == 4 {
                let increment = u32::from_be_bytes(*payload) & 0x7fff_ffff;
                let paid = increment.min(self.debt);
                self.debt -= paid;
                let increment = increment - paid;
                // A WINDOW_UPDATE with an increment of 0 is a connection error (RFC 9113
                // §6.9): leave it out instead.
                if increment > 0 {
                    self.out[..FRAME_HEADER].copy_from_slice(&self.head);
                    self.out[FRAME_HEADER..].copy_from_slice(&increment.to_be_bytes());
                    self.out_pos = 0;
                    self.out_len = FRAME_HEADER + 4;
                }
                self.update = None;
                self.head_len = 0;
            }
            return n;
        }
        let n = (FRAME_HEADER - self.head_len).min(buf.len());
        self.head[self.head_len..self.head_len + n].copy_from_slice(&buf[..n]);
        self.head_len += n;
        if self.head_len == FRAME_HEADER {
            let h = &self.head;
            let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            if h[3] == WINDOW_UPDATE && stream == 0 && len == 4 {
                self.update = Some(([0; 4], 0));
            } else {
                self.out[..FRAME_HEADER].copy_from_slice(&self.head);
                self.out_pos = 0;
                self.out_len = FRAME_HEADER;
                self.skip = len;
                self.head_len = 0;
            }
        }
        n
    }
}

impl<T: AsyncWrite + Unpin> H2cIo<T> {
    /// Writes out what [`Write::take`] left in `out`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let w = &mut self.write;
        while w.out_pos < w.out_len {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &w.out[w.out_pos..w.out_len]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            w.out_pos += n;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_write_tracked(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.write.skip > 0 {
            let n = self.write.skip.min(buf.len());
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..n]))?;
            self.write.skip -= n;
            return Poll::Ready(Ok(n));
        }
        Poll::Ready(Ok(self.write.take(buf)))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for H2cIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.write.is_pass() {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        }
        self.poll_write_tracked(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.write.is_pass() {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        let buf = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.poll_write_tracked(cx, buf)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        frame_header(&mut b, payload.len(), kind, flags, stream);
        b.put_slice(payload);
        b.to_vec()
    }

    fn window_update(stream: u32, increment: u32) -> Vec<u8> {
        frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
    }

    const HTTP2_SETTINGS: &[u8] = &[0, 3, 0, 0, 0, 100];
    const CLIENT_SETTINGS: &[u8] = &[0, 4, 0, 0, 0xff, 0xff, 0, 2, 0, 0, 0, 0];
    const STREAM1: &[u8] = b"<stream 1 frames>";

    fn io(inner: tokio::io::DuplexStream, body_len: usize) -> H2cIo<tokio::io::DuplexStream> {
        H2cIo::new(
            inner,
            Bytes::from_static(HTTP2_SETTINGS),
            Bytes::from_static(STREAM1),
            body_len,
            Duration::from_secs(5),
        )
    }

    fn expected_start(rest: &[u8]) -> Vec<u8> {
        let mut v = PREFACE.to_vec();
        v.extend(frame(
            SETTINGS,
            0,
            0,
            &[HTTP2_SETTINGS, CLIENT_SETTINGS].concat(),
        ));
        v.extend_from_slice(STREAM1);
        v.extend_from_slice(rest);
        v
    }

    async fn read_n(io: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut v))
            .await
            .expect("read timed out")
            .unwrap();
        v
    }

    #[tokio::test]
    async fn merges_settings_and_splices_stream_1_whatever_the_read_sizes() {
        let mut client_bytes = PREFACE.to_vec();
        client_bytes.extend(frame(SETTINGS, 0, 0, CLIENT_SETTINGS));
        let tail = frame(WINDOW_UPDATE, 0, 0, &1000u32.to_be_bytes());
        client_bytes.extend_from_slice(&tail);
        for step in [1, 2, 5, 9, 24, 33, 1000] {
            let (mut client, server) = duplex(64 * 1024);
            let mut io = io(server, 0);
            for chunk in client_bytes.chunks(step) {
                client.write_all(chunk).await.unwrap();
                client.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            let expected = expected_start(&tail);
            assert_eq!(
                read_n(&mut io, expected.len()).await,
                expected,
                "step {step}"
            );
            // Then bytes pass through unchanged.
            client.write_all(b"more").await.unwrap();
            assert_eq!(read_n(&mut io, 4).await, b"more");
        }
    }

    #[tokio::test]
    async fn holds_everything_back_until_the_first_settings_frame_is_complete() {
        let (mut client, server) = duplex(1024);
        let mut io = io(server, 0);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, CLIENT_SETTINGS));
        client.write_all(&bytes[..bytes.len() - 1]).await.unwrap();
        let mut buf = [0; 64];
        let early = tokio::time::timeout(Duration::from_millis(50), io.read(&mut buf)).await;
        assert!(
            early.is_err(),
            "read returned before the SETTINGS frame was complete"
        );
        client.write_all(&bytes[bytes.len() - 1..]).await.unwrap();
        let expected = expected_start(b"");
        assert_eq!(read_n(&mut io, expected.len()).await, expected);
    }

    #[tokio::test]
    async fn empty_client_settings_still_merge() {
        let (mut client, server) = duplex(1024);
        let mut io = io(server, 0);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, 0, b""));
        client.write_all(&bytes).await.unwrap();
        let mut expected = PREFACE.to_vec();
        expected.extend(frame(SETTINGS, 0, 0, HTTP2_SETTINGS));
        expected.extend_from_slice(STREAM1);
        assert_eq!(read_n(&mut io, expected.len()).await, expected);
    }

    #[tokio::test]
    async fn refuses_a_wrong_preface_early() {
        let (mut client, server) = duplex(1024);
        let mut io = io(server, 0);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let err = io.read(&mut [0; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn a_first_frame_that_is_not_settings_goes_to_the_server_unchanged() {
        for first in [
            frame(SETTINGS, ACK, 0, b""),
            frame(SETTINGS, 0, 1, CLIENT_SETTINGS),
            frame(SETTINGS, 0, 0, &[0; 5]),
            frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 1]),
            frame(SETTINGS, 0, 0, &vec![0; MAX_FRAME + 6 - MAX_FRAME % 6]),
        ] {
            let (mut client, server) = duplex(64 * 1024);
            let mut io = io(server, 0);
            let mut bytes = PREFACE.to_vec();
            bytes.extend_from_slice(&first[..FRAME_HEADER]);
            client.write_all(&bytes).await.unwrap();
            assert_eq!(read_n(&mut io, bytes.len()).await, bytes);
        }
    }

    #[tokio::test]
    async fn eof_and_timeout_are_errors() {
        let (client, server) = duplex(1024);
        let mut io = io(server, 0);
        drop(client);
        let err = io.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        let (_client, server) = duplex(1024);
        let mut io = H2cIo::new(
            server,
            Bytes::new(),
            Bytes::new(),
            0,
            Duration::from_millis(10),
        );
        let err = io.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    /// Writes `bytes` through an `H2cIo` owing `debt`, in pieces of `step`, and returns what
    /// the client receives.
    async fn written(debt: usize, bytes: &[u8], step: usize) -> Vec<u8> {
        let (mut client, server) = duplex(1 << 20);
        let mut io = io(server, debt);
        for chunk in bytes.chunks(step) {
            io.write_all(chunk).await.unwrap();
        }
        io.flush().await.unwrap();
        io.shutdown().await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn subtracts_the_body_from_connection_window_updates() {
        let settings = frame(SETTINGS, 0, 0, &[0, 4, 0, 0x10, 0, 0]);
        let ack = frame(SETTINGS, ACK, 0, b"");
        let data = frame(0, 0, 1, &[7; 100]);
        let mut server = Vec::new();
        server.extend(&settings);
        server.extend(window_update(1, 5000));
        server.extend(&data);
        server.extend(window_update(0, 300));
        server.extend(&ack);
        server.extend(window_update(0, 1000));
        server.extend(window_update(0, 1000));
        server.extend(&data);

        let mut expected = Vec::new();
        expected.extend(&settings);
        // Stream-level updates are untouched.
        expected.extend(window_update(1, 5000));
        expected.extend(&data);
        // 300 of the 1000 owed: dropped entirely.
        expected.extend(&ack);
        // 700 owed: 300 left of this one.
        expected.extend(window_update(0, 300));
        // Paid off: unchanged.
        expected.extend(window_update(0, 1000));
        expected.extend(&data);

        for step in [1, 2, 3, 4, 9, 10, 13, 50, 4096] {
            assert_eq!(written(1000, &server, step).await, expected, "step {step}");
        }
    }

    #[tokio::test]
    async fn without_a_body_writes_pass_through() {
        let bytes: Vec<u8> = [window_update(0, 10), window_update(0, 20)].concat();
        assert_eq!(written(0, &bytes, 3).await, bytes);
    }

    #[tokio::test]
    async fn a_large_first_update_pays_the_whole_debt() {
        // hyper's first connection WINDOW_UPDATE raises the window to 1 MiB.
        let bytes = [
            window_update(0, (1 << 20) - 65_535),
            window_update(0, 40_000),
        ]
        .concat();
        let expected = [
            window_update(0, (1 << 20) - 65_535 - 40_000),
            window_update(0, 40_000),
        ]
        .concat();
        assert_eq!(written(40_000, &bytes, 7).await, expected);
        // The reserved bit is ignored in the increment and not sent on.
        let bytes = window_update(0, 0x8000_0000 | 500);
        assert_eq!(written(100, &bytes, 13).await, window_update(0, 400));
    }
}
