//! Entry points for the fuzz targets in `fuzz/` (built only with `--cfg fuzzing`, which
//! cargo-fuzz sets). Not part of the API.

use http::Request;

use crate::registry::{Registry, Selection};

/// Classifies `req` against `registry` and returns the selected token, if any, or the
/// kind of outcome.
pub fn select<B>(
    registry: &Registry,
    req: &Request<B>,
    server_order: bool,
) -> Result<Option<String>, &'static str> {
    match registry.select(req, server_order) {
        Selection::None => Err("none"),
        Selection::Unmatched => Ok(None),
        Selection::Invalid(_) => Err("invalid"),
        Selection::Selected { index, .. } => {
            Ok(Some(registry.entry(index).token.as_str().to_owned()))
        }
    }
}

/// Decodes an `HTTP2-Settings` value (RFC 7540 §3.2.1) into a SETTINGS payload.
#[cfg(feature = "h2c")]
pub fn h2c_settings(value: &[u8]) -> Option<bytes::Bytes> {
    crate::h2c::settings::decode(value).ok()
}

/// Builds the client-side stream 1 frames (HEADERS, CONTINUATION, DATA) for a request.
#[cfg(feature = "h2c")]
pub fn h2c_stream1(parts: &http::request::Parts, body: &[u8]) -> bytes::Bytes {
    crate::h2c::frames::stream1(parts, body)
}

/// A client frame head as the codec reads it (RFC 6455 §5.2): FIN, the RSV bits (`0x70`),
/// the opcode, the masking key, the payload length and the head's size; `Ok(None)` while
/// incomplete, `Err` with the reason when refused.
#[cfg(feature = "websocket")]
pub type FrameHead = (bool, u8, u8, Option<[u8; 4]>, u64, usize);

/// Parses a frame head with the WebSocket frame codec.
#[cfg(feature = "websocket")]
pub fn websocket_frame_head(buf: &[u8]) -> Result<Option<FrameHead>, &'static str> {
    match crate::websocket::frame::parse(buf) {
        Ok(Some(h)) => Ok(Some((
            h.fin,
            h.rsv,
            h.opcode as u8,
            h.mask,
            h.len,
            usize::from(h.size),
        ))),
        Ok(None) => Ok(None),
        Err(e) => Err(e.as_str()),
    }
}

/// Runs an echo [`WebSocket`](crate::websocket::WebSocket) (text and binary messages sent
/// back) over a connection whose client sends `input`, `chunk` bytes per read, then ends;
/// writes are also taken `chunk` bytes at a time. Returns what the server wrote.
#[cfg(feature = "websocket")]
pub fn websocket_echo(input: &[u8], chunk: usize) -> Vec<u8> {
    use crate::websocket::{Message, WebSocket, WebSocketConfig};

    let io = Script {
        input,
        chunk: chunk.max(1),
        out: Vec::new(),
    };
    let config = WebSocketConfig::new()
        .max_frame_size(1 << 16)
        .max_message_size(1 << 17)
        .read_buffer_size(64);
    // Timers on: every WebSocket has a keep-alive timer by default.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    rt.block_on(async move {
        let mut ws = WebSocket::from_raw_socket(io, config);
        // Ends: the input is finite, and `recv` returns `None` after an error.
        while let Some(msg) = ws.recv().await {
            if let Ok(msg @ (Message::Text(_) | Message::Binary(_))) = msg {
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
        }
        ws.into_inner().0.out
    })
}

/// A connection that reads from a fixed input and keeps what is written.
#[cfg(feature = "websocket")]
struct Script<'a> {
    input: &'a [u8],
    chunk: usize,
    out: Vec<u8>,
}

#[cfg(feature = "websocket")]
impl tokio::io::AsyncRead for Script<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.input.len()).min(buf.remaining());
        let (now, rest) = self.input.split_at(n);
        buf.put_slice(now);
        self.input = rest;
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "websocket")]
impl tokio::io::AsyncWrite for Script<'_> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let n = self.chunk.min(buf.len());
        self.out.extend_from_slice(&buf[..n]);
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
