//! Coming from axum's `WebSocketUpgrade` or tokio-tungstenite's `WebSocketStream`: the
//! same program, method by method.
//!
//! The main difference is where the upgrade happens. axum's extractor and
//! tokio-tungstenite's `accept_async` are called from your handler or accept loop; here a
//! [`WebSocketHandler`] is registered on an [`UpgradeLayer`], which answers the handshake
//! (checks, `101`, subprotocol, permessage-deflate, Origin) and runs your callback with a
//! ready [`WebSocket`]. The layer wraps any tower service, so the same handler serves an
//! axum route, a whole router, or a plain hyper server, next to tower-http layers.
//!
//! # From axum
//!
//! | axum (`axum::extract::ws`) | tower-upgrade (`tower_upgrade::websocket`) |
//! | --- | --- |
//! | `WebSocketUpgrade` extractor in a handler | [`WebSocketHandler::new`] on an [`UpgradeLayer`], as a `.layer(..)` on the route or router |
//! | `ws.on_upgrade(\|socket\| async { .. })` | the callback of [`WebSocketHandler::new`]: `\|ws: WebSocket, req: UpgradeRequest\| async { ..; Ok(()) }` |
//! | `ws.protocols([..])`, `WebSocket::protocol()` (a `HeaderValue`) | [`WebSocketHandler::protocols`], [`WebSocket::protocol`] (a `&str`) |
//! | `ws.max_message_size(n)`, `ws.max_frame_size(n)` | [`WebSocketHandler::max_message_size`], [`WebSocketHandler::max_frame_size`] |
//! | `ws.read_buffer_size(n)` | [`WebSocketHandler::read_buffer_size`] (an idle socket holds no buffer at all) |
//! | `ws.write_buffer_size(n)`, `ws.max_write_buffer_size(n)` | none: each `send` writes its frame and flushes, and the socket holds no write buffer |
//! | `ws.accept_unmasked_frames(true)` | none: RFC 6455 §5.1 requires closing on an unmasked frame |
//! | `ws.on_failed_upgrade(..)` | the callback's `Err` is logged and counted by the layer's [`Tracker`](crate::Tracker); a refused handshake gets its status and a [`rejection`](super::rejection) |
//! | no Origin check | the same-origin [`OriginPolicy`](super::OriginPolicy) by default: use [`WebSocketHandler::allowed_origins`] or [`WebSocketHandler::dangerously_allow_any_origin`] for cross-origin pages |
//! | `State(state)`, `Query(..)`, an authenticated user | capture a clone of the state in the callback; [`UpgradeRequest::uri`](crate::UpgradeRequest), [`UpgradeRequest::extensions`](crate::UpgradeRequest) |
//! | `socket.recv().await` → `Option<Result<Message, axum::Error>>` | [`WebSocket::recv`] → `Option<Result<Message, Error>>` |
//! | `socket.send(msg).await` | [`WebSocket::send`] |
//! | `socket.send(Message::Close(..))` then read | [`WebSocket::close`], which also waits for the peer's close |
//! | `Message::{Text(Utf8Bytes), Binary(Bytes), Ping, Pong, Close(Option<CloseFrame>)}` | [`Message`]: the same variants and payload types; [`CloseFrame`] has `code: u16` and `reason: Utf8Bytes` |
//! | `StreamExt::split(socket)` (a lock around the socket) | [`WebSocket::split`] → [`SendHalf`] + [`RecvHalf`], with `reunite` |
//! | `socket.send(msg.clone())` to each of many sockets | [`PreparedMessage`](super::PreparedMessage) once, then [`WebSocket::send_prepared`](super::WebSocket::send_prepared) to each: encoded (and compressed) once |
//!
//! Before, with axum's extractor:
//!
//! ```
//! use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
//! use axum::{Router, response::Response, routing::any};
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> Response {
//!     upgrade
//!         .protocols(["chat"])
//!         .max_message_size(1 << 20)
//!         .on_upgrade(|mut socket: WebSocket| async move {
//!             while let Some(Ok(msg)) = socket.recv().await {
//!                 if let Message::Text(_) | Message::Binary(_) = msg {
//!                     if socket.send(msg).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             }
//!         })
//! }
//!
//! let app: Router = Router::new().route("/ws", any(ws));
//! # let _ = app;
//! ```
//!
//! After, with this crate: the same route, the handler as a layer on it.
//!
//! ```
//! use axum::{Router, routing::any};
//! use tower_upgrade::UpgradeLayer;
//! use tower_upgrade::websocket::{Error, Message, WebSocket, WebSocketHandler};
//!
//! # fn main() -> Result<(), tower_upgrade::ConfigError> {
//! let ws = WebSocketHandler::new(|mut socket: WebSocket, _req| async move {
//!     while let Some(msg) = socket.recv().await {
//!         if let msg @ (Message::Text(_) | Message::Binary(_)) = msg? {
//!             socket.send(msg).await?;
//!         }
//!     }
//!     Ok::<_, Error>(())
//! })
//! .protocols(["chat"])?
//! .max_message_size(1 << 20);
//!
//! let app: Router = Router::new().route(
//!     "/ws",
//!     // `require_upgrade`: a plain GET gets `426 Upgrade Required`, as axum's extractor
//!     // refuses it too.
//!     any(|| async { "" }).layer(UpgradeLayer::new().protocol(ws)?.require_upgrade()),
//! );
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! With state and two tasks, before:
//!
//! ```
//! use axum::extract::State;
//! use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
//! use axum::{Router, response::Response, routing::any};
//! use futures_util::{SinkExt, StreamExt};
//! use tokio::sync::broadcast;
//!
//! async fn ws(upgrade: WebSocketUpgrade, State(tx): State<broadcast::Sender<String>>) -> Response {
//!     upgrade.on_upgrade(move |socket: WebSocket| async move {
//!         let (mut sink, mut stream) = socket.split();
//!         let mut rx = tx.subscribe();
//!         let mut forward = tokio::spawn(async move {
//!             while let Ok(text) = rx.recv().await {
//!                 if sink.send(Message::text(text)).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         });
//!         loop {
//!             tokio::select! {
//!                 msg = stream.next() => match msg {
//!                     Some(Ok(Message::Text(text))) => { let _ = tx.send(text.to_string()); }
//!                     Some(Ok(_)) => {}
//!                     _ => break,
//!                 },
//!                 _ = &mut forward => break,
//!             }
//!         }
//!         forward.abort();
//!     })
//! }
//!
//! let (tx, _) = broadcast::channel::<String>(64);
//! let app: Router = Router::new().route("/ws", any(ws)).with_state(tx);
//! # let _ = app;
//! ```
//!
//! After: the state is captured by the handler, and the halves are this crate's
//! ([`SendHalf`] and [`RecvHalf`]), used with the same calls (`send` is the half's own,
//! `next` is `StreamExt`'s).
//!
//! ```
//! use axum::{Router, routing::any};
//! use futures_util::StreamExt;
//! use tokio::sync::broadcast;
//! use tower_upgrade::UpgradeLayer;
//! use tower_upgrade::websocket::{Error, Message, WebSocket, WebSocketHandler};
//!
//! # fn main() -> Result<(), tower_upgrade::ConfigError> {
//! let (tx, _) = broadcast::channel::<String>(64);
//! let ws = WebSocketHandler::new(move |socket: WebSocket, _req| {
//!     let tx = tx.clone();
//!     async move {
//!         let (mut sink, mut stream) = socket.split();
//!         let mut rx = tx.subscribe();
//!         let mut forward = tokio::spawn(async move {
//!             while let Ok(text) = rx.recv().await {
//!                 sink.send(Message::text(text)).await?;
//!             }
//!             Ok::<_, Error>(())
//!         });
//!         loop {
//!             tokio::select! {
//!                 msg = stream.next() => match msg {
//!                     Some(Ok(Message::Text(text))) => { let _ = tx.send(text.to_string()); }
//!                     Some(Ok(_)) => {}
//!                     _ => break,
//!                 },
//!                 _ = &mut forward => break,
//!             }
//!         }
//!         // The connection counts as live until this future ends: end the task with it.
//!         forward.abort();
//!         Ok::<_, Error>(())
//!     }
//! });
//!
//! let app: Router = Router::new()
//!     .route("/ws", any(|| async { "" }).layer(UpgradeLayer::new().protocol(ws)?.require_upgrade()));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # From tokio-tungstenite
//!
//! | tokio-tungstenite (`WebSocketStream<S>`) | tower-upgrade |
//! | --- | --- |
//! | `accept_async(tcp)` / `accept_hdr_async(tcp, callback)` in your accept loop | serve hyper with `.with_upgrades()` and the [`UpgradeLayer`] in front of your service; the handshake checks (and your [`WebSocketHandler::select_protocol`]) run in the layer |
//! | `WebSocketStream::from_raw_socket(io, Role::Server, config)` | [`WebSocket::from_raw_socket`]`(io, config)` |
//! | `WebSocketConfig { max_message_size, max_frame_size, .. }` | [`WebSocketConfig::new`](super::WebSocketConfig::new)`().max_message_size(..).max_frame_size(..)` |
//! | `ws.next().await` (`StreamExt`) | [`WebSocket::recv`]; `next()` works too ([`WebSocket`] is a `Stream`) |
//! | `ws.send(msg).await` (`SinkExt`) | [`WebSocket::send`], inherent; `SinkExt` works too ([`WebSocket`] is a `Sink`) |
//! | `ws.close(None).await` | [`WebSocket::close`]`(None)`, which also waits for the peer's close (bound it with a timeout) |
//! | `ws.get_ref()`, `ws.get_mut()` | [`WebSocket::get_ref`]; [`WebSocket::into_inner`] between messages |
//! | `ws.split()` (`StreamExt`, a `BiLock`) | [`WebSocket::split`] → [`SendHalf`] + [`RecvHalf`], with `reunite` |
//! | `Message::Frame(..)`, `feed`/`flush` batching | none: each message is one frame, written and flushed by `send` |
//! | pings answered when the stream is next read or flushed | the same: answered by the next `recv` (or by the [`RecvHalf`]), and keep-alive pings are built in ([`WebSocketConfig::keep_alive`](super::WebSocketConfig::keep_alive)) |
//!
//! Before, with tokio-tungstenite on a bare accept loop:
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! use tokio::net::TcpListener;
//! use tokio_tungstenite::accept_async;
//!
//! # #[allow(dead_code)]
//! # async fn run() -> std::io::Result<()> {
//! let listener = TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let mut ws = accept_async(tcp).await?;
//!         while let Some(msg) = ws.next().await {
//!             let msg = msg?;
//!             if msg.is_text() || msg.is_binary() {
//!                 ws.send(msg).await?;
//!             }
//!         }
//!         Ok::<_, tokio_tungstenite::tungstenite::Error>(())
//!     });
//! }
//! # }
//! ```
//!
//! After: hyper serves the connection, so the same port also answers plain HTTP (here a
//! short text) and the handshake is checked for you.
//!
//! ```no_run
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use hyper::body::Incoming;
//! use hyper::server::conn::http1;
//! use hyper_util::rt::TokioIo;
//! use hyper_util::service::TowerToHyperService;
//! use tokio::net::TcpListener;
//! use tower::ServiceBuilder;
//! use tower_upgrade::UpgradeLayer;
//! use tower_upgrade::websocket::{Error, Message, WebSocket, WebSocketHandler};
//!
//! # #[allow(dead_code)]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let echo = WebSocketHandler::new(|mut ws: WebSocket, _req| async move {
//!     while let Some(msg) = ws.recv().await {
//!         if let msg @ (Message::Text(_) | Message::Binary(_)) = msg? {
//!             ws.send(msg).await?;
//!         }
//!     }
//!     Ok::<_, Error>(())
//! })
//! // tokio-tungstenite checks no Origin; browsers on other origins need a policy here.
//! .dangerously_allow_any_origin();
//! let service = ServiceBuilder::new()
//!     .layer(UpgradeLayer::new().protocol(echo)?)
//!     .service_fn(|_req: Request<Incoming>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("a WebSocket endpoint"))))
//!     });
//!
//! let listener = TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     let service = TowerToHyperService::new(service.clone());
//!     tokio::spawn(
//!         http1::Builder::new()
//!             .serve_connection(TokioIo::new(tcp), service)
//!             .with_upgrades(),
//!     );
//! }
//! # }
//! ```
//!
//! A connection you upgraded yourself (or any `AsyncRead + AsyncWrite` after a handshake
//! done elsewhere) becomes a [`WebSocket`] with [`WebSocket::from_raw_socket`], as
//! `WebSocketStream::from_raw_socket` does.
//!
//! # Cancel safety
//!
//! Every async method of the WebSocket types keeps its state in the socket, not in its
//! future, so any of them can be dropped half-way (a `tokio::select!` branch that lost, a
//! timeout) and the connection stays well-formed:
//!
//! | method | dropped before it completes |
//! | --- | --- |
//! | [`WebSocket::recv`], [`RecvHalf::recv`], `StreamExt::next` | nothing is lost: a message leaves the socket only in the poll that returns it |
//! | [`WebSocket::send`], [`SendHalf::send`], `SinkExt::send`, `send_prepared` | either nothing was sent, or the frame was queued and is finished before any other frame (by the next `send`, `recv` or flush); the message may then be sent or not |
//! | [`WebSocket::close`] | the close frame is sent or queued as by `send`; calling `close` (or `recv`) again resumes the wait for the peer's close |
//! | `SinkExt::close`, `flush` | as `send`: resumed by the next call |
//!
//! A cancelled `send` cannot tell you whether the peer got the message; wrap the whole
//! exchange, not each send, when that matters.
//!
//! [`UpgradeLayer`]: crate::UpgradeLayer
//! [`WebSocketHandler`]: super::WebSocketHandler
//! [`WebSocketHandler::new`]: super::WebSocketHandler::new
//! [`WebSocketHandler::protocols`]: super::WebSocketHandler::protocols
//! [`WebSocketHandler::max_message_size`]: super::WebSocketHandler::max_message_size
//! [`WebSocketHandler::max_frame_size`]: super::WebSocketHandler::max_frame_size
//! [`WebSocketHandler::read_buffer_size`]: super::WebSocketHandler::read_buffer_size
//! [`WebSocketHandler::allowed_origins`]: super::WebSocketHandler::allowed_origins
//! [`WebSocketHandler::dangerously_allow_any_origin`]: super::WebSocketHandler::dangerously_allow_any_origin
//! [`WebSocketHandler::select_protocol`]: super::WebSocketHandler::select_protocol
//! [`WebSocket`]: super::WebSocket
//! [`WebSocket::recv`]: super::WebSocket::recv
//! [`WebSocket::send`]: super::WebSocket::send
//! [`WebSocket::close`]: super::WebSocket::close
//! [`WebSocket::split`]: super::WebSocket::split
//! [`WebSocket::protocol`]: super::WebSocket::protocol
//! [`WebSocket::from_raw_socket`]: super::WebSocket::from_raw_socket
//! [`WebSocket::get_ref`]: super::WebSocket::get_ref
//! [`WebSocket::into_inner`]: super::WebSocket::into_inner
//! [`SendHalf`]: super::SendHalf
//! [`SendHalf::send`]: super::SendHalf::send
//! [`RecvHalf`]: super::RecvHalf
//! [`RecvHalf::recv`]: super::RecvHalf::recv
//! [`Message`]: super::Message
//! [`CloseFrame`]: super::CloseFrame
