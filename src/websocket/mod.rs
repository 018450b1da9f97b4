//! WebSocket (RFC 6455, and RFC 8441 over HTTP/2) as a protocol of the [`UpgradeLayer`].
//!
//! [`WebSocketHandler`] validates the opening handshake, answers it, and runs your callback
//! on each connection with a ready [`WebSocket`]: [`Message`]s in with
//! [`recv`](WebSocket::recv), out with [`send`](WebSocket::send), and a clean
//! [`close`](WebSocket::close). Pings are answered and close frames replied to for you.
//! Users who bring their own framing get the raw upgraded IO and the negotiated
//! [`Handshake`] instead, with [`WebSocketHandler::raw`].
//!
//! The callback also gets the [`UpgradeRequest`]: the request head, with the extensions
//! that outer layers set (an authenticated user, a request id, ...).
//!
//! # Example
//!
//! An echo server: every text and binary message comes back.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_upgrade::UpgradeLayer;
//! use tower_upgrade::websocket::{Message, WebSocket, WebSocketHandler};
//!
//! # fn main() -> Result<(), tower_upgrade::ConfigError> {
//! let echo = WebSocketHandler::new(|mut ws: WebSocket, _req| async move {
//!     while let Some(msg) = ws.recv().await {
//!         match msg? {
//!             msg @ (Message::Text(_) | Message::Binary(_)) => ws.send(msg).await?,
//!             // Pings are answered and close frames replied to by the socket itself.
//!             _ => {}
//!         }
//!     }
//!     Ok::<_, tower_upgrade::websocket::Error>(())
//! });
//!
//! let app: Router = Router::new().route(
//!     "/ws",
//!     // Only an upgrade endpoint: a plain GET gets `426 Upgrade Required`.
//!     get(|| async { "unreachable" }).layer(UpgradeLayer::new().protocol(echo)?.require_upgrade()),
//! );
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! A customized handler: subprotocols, an origin allow-list, smaller limits, and the user
//! that an authentication layer put in the request extensions.
//!
//! ```
//! use tower_upgrade::{UpgradeLayer, UpgradeRequest};
//! use tower_upgrade::websocket::{CloseFrame, Message, WebSocket, WebSocketHandler, close_code};
//!
//! #[derive(Clone)]
//! struct User(String);
//!
//! # fn main() -> Result<(), tower_upgrade::ConfigError> {
//! let chat = WebSocketHandler::new(|mut ws: WebSocket, req: UpgradeRequest| async move {
//!     let name = req.extensions().get::<User>().map_or("anonymous".to_owned(), |u| u.0.clone());
//!     // Always one the client offered; `require_protocol` makes it present.
//!     let protocol = ws.protocol().unwrap_or_default().to_owned();
//!     ws.send(Message::text(format!("hello {name}, speaking {protocol}"))).await?;
//!     ws.close(Some(CloseFrame { code: close_code::NORMAL, reason: "bye".into() })).await
//! })
//! .protocols(["chat.v2", "chat.v1"])?
//! .require_protocol()
//! .allowed_origins(["https://app.example.com", "https://*.example.org"])?
//! .max_message_size(1 << 20)
//! .max_frame_size(256 << 10);
//!
//! let layer = UpgradeLayer::new().protocol(chat)?;
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! Bringing your own framing: the handshake is still checked and answered here.
//!
//! ```
//! use tokio::io::AsyncWriteExt;
//! use tower_upgrade::{UpgradeLayer, UpgradeRequest, UpgradedIo};
//! use tower_upgrade::websocket::{Handshake, WebSocketHandler};
//!
//! # fn main() -> Result<(), tower_upgrade::ConfigError> {
//! let raw = WebSocketHandler::raw(|mut io: UpgradedIo, hs: Handshake, _req: UpgradeRequest| async move {
//!     tracing::info!(key = ?hs.key(), protocol = ?hs.protocol(), "raw websocket");
//!     // A text frame "hi", written by hand (server frames are not masked).
//!     io.write_all(&[0x81, 2, b'h', b'i']).await
//! });
//! let layer = UpgradeLayer::new().protocol(raw)?;
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! # Handshake checks
//!
//! Every check below is made by [`WebSocketHandler`] before anything is switched, in this
//! order; each refusal is a complete response with a short `text/plain` body that names the
//! problem, and one of the [`rejection`] types describes it. Requests the layer itself
//! settles are listed last.
//!
//! | request | response | rejection |
//! | --- | --- | --- |
//! | method other than `GET` (HTTP/1.1) | `405`, `Allow: GET` | [`MethodNotGet`](rejection::MethodNotGet) |
//! | `Sec-WebSocket-Version` missing | `400` | [`MissingWebSocketVersion`](rejection::MissingWebSocketVersion) |
//! | `Sec-WebSocket-Version` repeated | `400` | [`RepeatedWebSocketVersion`](rejection::RepeatedWebSocketVersion) |
//! | `Sec-WebSocket-Version` not `13` | `426`, `Sec-WebSocket-Version: 13`, `Upgrade: websocket`, `Connection: upgrade` (HTTP/2: `400`, `sec-websocket-version: 13`) | [`UnsupportedWebSocketVersion`](rejection::UnsupportedWebSocketVersion) |
//! | `Sec-WebSocket-Key` missing (HTTP/1.1) | `400` | [`MissingWebSocketKey`](rejection::MissingWebSocketKey) |
//! | `Sec-WebSocket-Key` repeated | `400` | [`RepeatedWebSocketKey`](rejection::RepeatedWebSocketKey) |
//! | `Sec-WebSocket-Key` not the base64 of exactly 16 bytes | `400` | [`InvalidWebSocketKey`](rejection::InvalidWebSocketKey) |
//! | `Origin` refused by the [`OriginPolicy`] (default: same host and port as `Host`; `Origin: null` is cross-origin) | `403` | [`ForbiddenOrigin`](rejection::ForbiddenOrigin) |
//! | `Sec-WebSocket-Protocol` not a list of tokens | `400` | [`InvalidWebSocketProtocol`](rejection::InvalidWebSocketProtocol) |
//! | no subprotocol selected, and one is [required](WebSocketHandler::require_protocol) | `400` | [`NoMatchingProtocol`](rejection::NoMatchingProtocol) |
//! | all of the above pass | `101 Switching Protocols`, `Upgrade: websocket`, `Connection: upgrade`, `Sec-WebSocket-Accept`, `Sec-WebSocket-Protocol` if one was selected | |
//! | the same over HTTP/2: `CONNECT` with `:protocol websocket` (RFC 8441) | `200`, `sec-websocket-protocol` if one was selected | |
//! | *(layer)* `Upgrade: websocket` without `Connection: upgrade`, or a plain request | passes to the inner service, or `426` with `Upgrade: websocket` on a route that [requires an upgrade](crate::UpgradeLayer::require_upgrade) | |
//! | *(layer)* `Upgrade` not a token list | `400` | |
//!
//! Names compare as RFC 9110 says: `Upgrade: WebSocket` works (case-insensitive), and
//! `Connection` is a list (`Connection: keep-alive, Upgrade` works).
//! `Sec-WebSocket-Accept` is base64(SHA-1(key + `258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)).
//! Extensions (`Sec-WebSocket-Extensions`, e.g. `permessage-deflate`) are never accepted:
//! they are left out of the `101`, which declines them (RFC 6455 §9.1), and the handshake
//! goes on. The offers are kept in [`Handshake::extensions_offered`].
//!
//! # Framing
//!
//! The [`WebSocket`] is this crate's own, down to the frame codec: the buffers, the async
//! IO, the RFC 6455 §5 message rules (fragments, UTF-8 checked frame by frame, control
//! frames, the closing handshake) and the parsing and formatting of frame heads.
//!
//! The frame heads were first left to [tungstenite](https://docs.rs/tungstenite)'s
//! `FrameHeader`, the framing that axum and tokio-tungstenite use, and they were the
//! costliest part of a small echo. Counted with callgrind on `examples/bench_server.rs`
//! (server instructions per message, user space; commands in `BENCHMARKS.md`), a 20-byte
//! echo cost 3 580 instructions, against 2 380 for fastwebsockets and 2 280 for the
//! hand-written floor, and tungstenite's head parser (it reads through `io::Read` on a
//! `Cursor`) took 300 of them, its formatter 85 more. A head is a few bytes behind two bit
//! masks, so the codec is now a slice parser and formatter of about 110 lines, tested on
//! every two-byte head, every length form at its boundaries, every opcode and every
//! truncation, and fuzzed against RFC 6455 §5.2 written out
//! (`fuzz/fuzz_targets/websocket_frames.rs`).
//! With it alone the echo cost 3 090 instructions, and the crate no longer depends on
//! tungstenite.
//!
//! The rest of the per-message work was cut the same way, one measured step at a time:
//! the shutdown and keep-alive timers are polled when a read waits (or fills its buffer),
//! not on every turn of the receive loop (three polls per message down to one: 300
//! instructions); each head is parsed once, and the rules a head settles on its own are
//! checked before its payload is read (80); payloads are unmasked 32 bytes a turn in
//! 128-bit words (50 at 20 bytes, 1 800 at 16 KiB). A frame of up to 4 KiB is copied to the
//! stack and written with one `send` rather than a `writev` of head and payload: callgrind
//! sees 60 instructions more, and the kernel spends about 300 ns less per frame (CPU time of
//! the sending thread over loopback, 20 B to 2 KiB; 130 ns at 4 KiB, none at 8 KiB).
//!
//! | server | 20 B echo | 16 KiB echo |
//! | --- | --- | --- |
//! | [`WebSocket`] with tungstenite's `FrameHeader` | 3 580 | 9 700 |
//! | [`WebSocket`] now | 2 490 | 6 220 |
//! | fastwebsockets 0.10 | 2 330 | 15 170 |
//! | hand-written floor | 2 220 | 6 830 |
//! | the floor's echo loop, as a raw handler on this layer | 2 350 | 6 960 |
//!
//! The last row is what any handler pays on this layer (the connection task, with its
//! abort watch, and [`UpgradedIo`](crate::UpgradedIo)): 120 instructions over the floor. The
//! [`WebSocket`] itself adds 150 to a 20-byte echo: message assembly, the timers, and one
//! allocation of exactly the message's size. (The current figures also have the layer's own
//! cuts: its shutdown and abort signals cost one atomic load per poll, and its `tracing`
//! span is not entered on every poll unless it is enabled.)
//!
//! Not building on a complete WebSocket library was a measured choice too. Before this
//! module, on 2 cores with server and client pinned to one core each, over loopback with 64
//! connections, the server's CPU per 20-byte echo / per 16 KiB echo / per handshake, and its
//! memory per idle WebSocket (10 000 open) were:
//!
//! | server | 20 B echo | 16 KiB echo | handshake | idle |
//! | --- | --- | --- | --- | --- |
//! | hand-written floor | 6.8 µs | 10.2 µs | 62 µs | 2.3 KB |
//! | fastwebsockets 0.10 | 7.1 µs | 10.9 µs | 63 µs | 6.0 KB |
//! | tokio-websockets 0.13 | 7.5 µs | 10.6 µs | 64 µs | 5.9 KB |
//! | axum 0.8 `WebSocketUpgrade` (tokio-tungstenite) | 12.5 µs | 20.3 µs | 70 µs | 137 KB |
//! | hyper-tungstenite 0.30 | 12.4 µs | 22.3 µs | 78 µs | 137 KB |
//!
//! Every complete library holds a read buffer for the life of the connection: 8 KiB for
//! fastwebsockets and tokio-websockets, 128 KiB (zero-filled before each read) for
//! tungstenite's own stream. That buffer is most of the memory of an idle connection and,
//! for tungstenite, a quarter of the CPU of a small echo. None of them lets the caller
//! own it, so none could meet this crate's goals (CPU within 5% of the floor, at most 4 KB
//! per idle connection). Doing its own IO, [`WebSocket`] holds no read buffer between
//! frames (it reads into a scratch buffer on the stack and keeps only what arrived), reads
//! a large frame straight into a buffer of exactly its size (and, after a large frame, the
//! next read goes straight into a buffer that size, freed at once if nothing is there), and
//! never holds a write buffer (a frame of up to 4 KiB is copied into a stack buffer and goes
//! out in one `send`, a bigger one in one vectored write of head and payload). The struct
//! itself is under 400 bytes; fragments and pending control frames are boxed only while
//! they exist.
//!
//! Measured side by side with `examples/load.rs` (each server its own process, pinned to
//! one core, the client to the other; medians of 5 runs; `BENCHMARKS.md` has every column),
//! server CPU per operation and memory per idle connection:
//!
//! | server | 20 B echo | 16 KiB echo | handshake | idle (10 000 open) |
//! | --- | --- | --- | --- | --- |
//! | hand-written floor | 5.63 µs | 7.80 µs | 37.0 µs | 1.05 KiB |
//! | `tower_upgrade::websocket` (axum::serve) | 5.77 µs | 9.68 µs | 44.5 µs | 2.61 KiB |
//! | `tower_upgrade::websocket` (plain hyper) | 6.14 µs | 9.00 µs | 43.5 µs | 2.44 KiB |
//! | fastwebsockets 0.10 (plain hyper) | 6.06 µs | 9.61 µs | 40.5 µs | 5.85 KiB |
//! | tokio-websockets 0.13 | 6.12 µs | 9.83 µs | 39.0 µs | 6.96 KiB |
//! | axum 0.8 `WebSocketUpgrade` (3 runs) | 8.64 µs | 15.24 µs | 72.5 µs | 129.8 KiB |
//!
//! Idle connections are where this design wins most. Echoes cost what the leanest library's
//! do (within the machine's noise), and a handshake pays for hyper (and, on `axum::serve`,
//! for axum's router and hyper-util's protocol detection).
//!
//! The public API ([`Message`], [`Utf8Bytes`], [`CloseFrame`], [`Error`], [`WebSocket`])
//! exposes none of the codec's types, so the framing can change without breaking users.
//!
//! # HTTP/2
//!
//! The same handler accepts RFC 8441 extended CONNECT requests (`:protocol websocket`)
//! unless [turned off](WebSocketHandler::http2): they are answered `200` with no key or
//! accept, and the WebSocket then runs on the HTTP/2 stream. The server must announce
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL` (hyper-util's `auto::Builder`:
//! `.http2().enable_connect_protocol()`); `examples/echo.rs` shows it.
//!
//! [`UpgradeLayer`]: crate::UpgradeLayer
//! [`UpgradeRequest`]: crate::UpgradeRequest

pub mod close_code;
mod config;
mod error;
pub(crate) mod frame;
mod handler;
mod handshake;
mod mask;
mod message;
mod origin;
pub mod rejection;
mod socket;
mod utf8;

#[doc(inline)]
pub use self::{
    config::WebSocketConfig,
    error::{Error, ErrorKind},
    handler::{Raw, Ready, WebSocketHandler},
    handshake::Handshake,
    message::{CloseCode, CloseFrame, Message},
    origin::OriginPolicy,
    rejection::WebSocketRejection,
    socket::WebSocket,
    utf8::Utf8Bytes,
};
