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
//! # Reading and writing from two tasks
//!
//! [`WebSocket::split`] gives a [`SendHalf`] and a [`RecvHalf`] that two tasks can own; they
//! are a `Sink` and a `Stream` of messages, in the order `futures`' `StreamExt::split` gives
//! them, so `SinkExt::send`, `send_all`, `close` and `StreamExt::forward` work as with
//! axum's and tokio-tungstenite's WebSocket, and [`reunite`](SendHalf::reunite) puts them
//! back together. The receiving half still answers pings, replies to a close and runs the
//! keep-alive timer while the sending half is busy, even blocked in the middle of a frame:
//! those control frames are written right after it, never inside it. The halves share the
//! socket through a lock taken for one poll at a time (an uncontended compare-and-swap per
//! message; see the [`SendHalf`] notes and BENCHMARKS.md for what that costs).
//!
//! [`WebSocket`] is itself a `Stream` and a `Sink`, so `futures`' own
//! `StreamExt::split(ws)` works as well; the inherent `split` is what `ws.split()` calls.
//!
//! ```
//! use futures_util::{SinkExt, StreamExt};
//! use tokio::sync::mpsc;
//! use tower_upgrade::websocket::{Message, WebSocketHandler};
//!
//! let handler = WebSocketHandler::new(|ws, _req| async move {
//!     let (mut sink, mut stream) = ws.split();
//!     let (tx, mut rx) = mpsc::channel::<Message>(16);
//!     let writer = tokio::spawn(async move {
//!         while let Some(msg) = rx.recv().await {
//!             sink.send(msg).await?;
//!         }
//!         sink.close().await
//!     });
//!     while let Some(Ok(msg)) = stream.next().await {
//!         if let Message::Text(_) = msg {
//!             let _ = tx.send(msg).await;
//!         }
//!     }
//!     drop(tx);
//!     writer.await.map_err(std::io::Error::other)?
//! });
//! # let _ = handler;
//! ```
//!
//! # Broadcast
//!
//! To send one message to many connections, prepare it once: a [`PreparedMessage`] holds
//! the whole frame, encoded once, and [`WebSocket::send_prepared`] writes that frame to a
//! socket as it is (one write, no copy, no head to format). With permessage-deflate and no
//! context takeover it is also compressed once, not once per connection.
//!
//! ```
//! use tower_upgrade::websocket::{Error, PreparedMessage, WebSocket};
//!
//! async fn send_to_all(sockets: &mut [WebSocket], text: String) -> Vec<Error> {
//!     let msg = PreparedMessage::text(text);
//!     let mut errors = Vec::new();
//!     for ws in sockets {
//!         if let Err(e) = ws.send_prepared(&msg).await {
//!             errors.push(e);
//!         }
//!     }
//!     errors
//! }
//! # let _ = send_to_all;
//! ```
//!
//! A server usually gives each connection a task of its own, subscribed to a
//! [`tokio::sync::broadcast`] channel of prepared messages: [`PreparedMessage`] shows it.
//!
//! # Coming from axum or tokio-tungstenite
//!
//! [`migrating`] maps axum's `WebSocketUpgrade` / `WebSocket` and tokio-tungstenite's
//! `WebSocketStream` onto this crate, method by method, with each migration as compiling
//! code, and lists the [cancel safety](migrating#cancel-safety) of every async method.
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
//! Extensions (`Sec-WebSocket-Extensions`) are declined by leaving them out of the `101`
//! (RFC 6455 §9.1), and the handshake goes on; the one exception is `permessage-deflate`
//! on a handler with [`deflate`](WebSocketHandler::deflate) on (see
//! [below](#permessage-deflate)). The offers are kept in [`Handshake::extensions_offered`].
//!
//! # Framing
//!
//! The [`WebSocket`] is this crate's own, down to the frame codec: the buffers, the async
//! IO, the RFC 6455 §5 message rules (fragments, UTF-8 checked as it arrives, even inside
//! a frame that has only partly arrived, control frames, the closing handshake) and the
//! parsing and formatting of frame heads. The rules
//! a head settles on its own (reserved bits, masking, control frames fragmented or over 125
//! bytes) and the size limits are checked as soon as the head arrives, before its payload
//! is read. The head codec is tested at every length boundary and every truncation, and
//! fuzzed against RFC 6455 §5.2 written out (`fuzz/fuzz_targets/websocket_frames.rs`).
//!
//! It is not built on a complete WebSocket library because each of them holds a read
//! buffer for the life of the connection (8 KiB for fastwebsockets and tokio-websockets,
//! 128 KiB for tungstenite's own stream) and none lets the caller own it, so none could
//! meet this crate's goals (CPU within 5% of a hand-written floor, at most 4 KB per idle
//! connection). Measured with the load harness (`bench/`), a 20-byte echo costs the server 5.77 µs
//! of CPU on `axum::serve`, against 5.63 µs for the floor, 6.06 µs for fastwebsockets and
//! 8.64 µs for axum's `WebSocketUpgrade`; `BENCHMARKS.md` in the repository has every
//! figure and how the codec got there.
//!
//! An idle connection costs about 2.5 KiB, its keep-alive timer included (10 000 open;
//! fastwebsockets 5.8 KiB, axum's
//! `WebSocketUpgrade` 130 KiB). [`WebSocket`] holds no read buffer between frames (it reads
//! into a scratch buffer on the stack and keeps only what arrived), reads a large frame
//! straight into a buffer of exactly its size (and, after a large frame, the next read goes
//! straight into a buffer that size, freed at once if nothing is there), and never holds a
//! write buffer (a frame of up to 4 KiB is copied into a stack buffer and goes out in one
//! `send`, a bigger one in one vectored write of head and payload). The struct itself is
//! under 400 bytes; fragments and pending control frames are boxed only while they exist.
//!
//! The public API ([`Message`], [`Utf8Bytes`], [`CloseFrame`], [`Error`], [`WebSocket`])
//! exposes none of the codec's types, so the framing can change without breaking users.
//!
//! # permessage-deflate
//!
//! With the `deflate` feature, [`WebSocketHandler::deflate`] turns on RFC 7692 compression
//! for clients that offer it (every browser does), over HTTP/1.1 and HTTP/2:
//!
//! ```
//! # #[cfg(feature = "deflate")] {
//! use tower_upgrade::websocket::{DeflateConfig, WebSocketHandler};
//! # let echo = |_ws, _req| async {};
//! // The default: no context takeover, nothing kept between messages.
//! let handler = WebSocketHandler::new(echo).deflate(DeflateConfig::new());
//! # let _ = handler;
//! // Context takeover: better compression of similar messages, memory per connection.
//! let handler = WebSocketHandler::new(echo).deflate(DeflateConfig::context_takeover());
//! # let _ = handler;
//! # }
//! ```
//!
//! - **Negotiation.** Every offer in every `Sec-WebSocket-Extensions` line is read, quoted
//!   values included; the first acceptable one is answered, and offers with an unknown,
//!   repeated or invalid parameter are declined (left out) without failing the handshake.
//!   All four parameters are understood, `client_max_window_bits` also without a value; a
//!   window of 8 is answered 8 and compressed with 9, as zlib needs (its longest distance,
//!   250 bytes, fits a 256-byte window).
//! - **Framing.** RSV1 is set on the first frame of a compressed message only, and
//!   accepted there only; control frames are never compressed. RSV1 elsewhere, or on a
//!   connection that did not negotiate deflate, closes with `1002`. Messages under
//!   [`DeflateConfig::threshold`] (64 bytes) are sent uncompressed, and so is a message that
//!   compressing would not shrink (without context takeover).
//! - **Bombs.** [`max_message_size`](WebSocketHandler::max_message_size) bounds the
//!   *inflated* size and is checked while inflating, in pieces of at most 64 KiB: a 1 MiB
//!   frame that would inflate to 1 GiB closes with `1009` once the limit is passed, having
//!   held at most the limit and one piece.
//! - **UTF-8.** Inflated text is checked as it is inflated, and fails with `1007` at the
//!   piece that holds the invalid bytes.
//!
//! **Memory.** In the default mode ([`DeflateConfig::new`]) the server answers
//! `server_no_context_takeover` and `client_no_context_takeover` (RFC 7692 lets it add
//! both), so no compressor or inflater lives between messages: one is taken from a pool
//! of at most 8 idle ones of each kind, shared by all connections, for the length of one
//! message (or, for a fragmented message, until its last frame), and reset when it comes
//! back. An idle connection with deflate negotiated costs what it costs without, but for
//! a 32-byte box of the agreed parameters.
//!
//! With context takeover ([`DeflateConfig::context_takeover`]) each connection keeps a
//! compressor and an inflater (the client keeps its context only if it offered
//! `client_max_window_bits`, so that its window can be bounded; otherwise it is asked not
//! to). Their size, measured as the growth of the process's resident memory over 1 000 of
//! each after one 16 KiB message, one setting per process (zlib-rs 0.6.8;
//! `DEFLATE_MEMORY=12/5 cargo test --features deflate --lib deflate_memory -- --ignored
//! --nocapture`):
//!
//! | window bits / memLevel | compressor | inflater | per connection |
//! | --- | ---: | ---: | ---: |
//! | 9 / 1 | 136.6 KiB | 34.3 KiB | 170.9 KiB |
//! | 10 / 4 | 144.8 KiB | 34.3 KiB | 179.0 KiB |
//! | **12 / 5** (default) | **164.7 KiB** | **34.3 KiB** | **199.0 KiB** |
//! | 12 / 8 | 204.8 KiB | 34.4 KiB | 239.2 KiB |
//! | 15 / 5 | 276.8 KiB | 34.4 KiB | 311.2 KiB |
//! | 15 / 8 (zlib's default) | 316.6 KiB | 34.3 KiB | 350.9 KiB |
//!
//! zlib-rs keeps a hash table of 64 Ki entries (128 KiB) whatever the memLevel, where zlib
//! keeps `1 << (memLevel + 9)` bytes, and its inflater holds a 32 KiB window whatever the
//! window bits: so small settings save less than zlib's formula says (Python
//! `websockets` counts about 70 KiB at 12 / 5 with zlib). The default, 12 / 5, is sized
//! like `websockets`' rather than zlib's 15 / 8. In the default mode none of this is
//! per connection: only the pool's (at most 8 of each, about 350 KiB each at 15 / 8).
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
#[cfg(feature = "deflate")]
mod deflate;
mod error;
pub(crate) mod frame;
mod handler;
mod handshake;
mod mask;
mod message;
pub mod migrating;
mod origin;
mod prepared;
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
    prepared::PreparedMessage,
    rejection::WebSocketRejection,
    socket::{RecvHalf, ReuniteError, SendHalf, WebSocket},
    utf8::Utf8Bytes,
};

#[cfg(feature = "deflate")]
#[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
#[doc(inline)]
pub use self::deflate::DeflateConfig;
