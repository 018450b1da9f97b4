//! HTTP/1.1 protocol upgrades (`101 Switching Protocols`) as a [tower] middleware.
//!
//! # Overview
//!
//! [`UpgradeLayer`] wraps any HTTP service and consults a [`Registry`] of
//! [`ProtocolHandler`]s. A request that is not an upgrade request passes to the inner
//! service untouched, with no allocation and no boxed future. An upgrade request
//! (`Connection: upgrade` and `Upgrade: <protocols>`, RFC 9110 §7.8) that offers a
//! registered protocol is handed to that protocol's handler, which accepts it (the layer
//! answers `101 Switching Protocols` and runs the handler on the upgraded connection in a
//! task of its own), rejects it with a complete response, or declines it (the request goes
//! on to the inner service, as RFC 9110 lets a server ignore `Upgrade`).
//!
//! The layer does:
//! - parse `Connection` and `Upgrade` as RFC 9110 lists (several field lines, optional
//!   whitespace, empty elements, case-insensitive names), with a bound on their length;
//! - select the first protocol in the client's order that is registered (or, with
//!   [`prefer_server_order`](UpgradeLayer::prefer_server_order), in the server's), and
//!   never one the client did not offer;
//! - ignore `Upgrade` on HTTP/1.0 requests, and on requests without `Connection: upgrade`;
//! - read a request body before switching, only for handlers that ask for one (hyper then
//!   sends `100 Continue` before the `101`);
//! - answer `426 Upgrade Required` with the registered protocols on routes that
//!   [require an upgrade](UpgradeLayer::require_upgrade);
//! - contain every failure after the `101` (the connection could not be taken over, the
//!   handler failed or panicked), report it to a callback and `tracing`;
//! - track every upgraded connection with a [`Tracker`]: counts per protocol, limits
//!   (`503` with `Retry-After` before switching), graceful shutdown with a drain deadline,
//!   a [budget](Tracker::set_message_budget) of buffered message bytes shared by all
//!   connections, an optional [idle timeout](UpgradeLayer::idle_timeout), and a `tracing` span per
//!   connection (protocol, peer, outcome, duration; at `DEBUG` level, so that long-lived
//!   connections hold no span data unless asked for; failures are logged at `WARN`/`ERROR`).
//!
//! Built-in protocols: [`websocket`] (RFC 6455 and RFC 8441) and [`h2c`] (HTTP/2 by
//! upgrade, RFC 7540 §3.2). Anything else: [`handler_fn`] or an impl of
//! [`ProtocolHandler`].
//!
//! You are responsible for serving connections with upgrades enabled: `axum::serve` does,
//! and with hyper use `http1::Builder::serve_connection(..).with_upgrades()` (or
//! hyper-util's `serve_connection_with_upgrades`). A request that cannot switch (no
//! [`OnUpgrade`](hyper::upgrade::OnUpgrade) in its extensions) is answered `500` rather than
//! with a `101` that could not be honoured.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
//! use tower_upgrade::{UpgradeLayer, UpgradeRequest, UpgradedIo, handler_fn};
//!
//! # fn main() -> Result<(), tower_upgrade::ConfigError> {
//! // A made-up protocol: every line the client sends comes back uppercased.
//! let upper = handler_fn("upper/1", |io: UpgradedIo, _req: UpgradeRequest| async move {
//!     let mut io = BufReader::new(io);
//!     let mut line = String::new();
//!     while io.read_line(&mut line).await? != 0 {
//!         io.get_mut().write_all(line.to_uppercase().as_bytes()).await?;
//!         line.clear();
//!     }
//!     Ok::<_, std::io::Error>(())
//! });
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(UpgradeLayer::new().protocol(upper)?);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! Like tower-http, the crate pulls in little by default: the core and the handler most
//! users come for.
//!
//! - `websocket` (default): the [`websocket`] handler. Pulls in `bytestring` (the storage
//!   of [`Utf8Bytes`](websocket::Utf8Bytes)), `sha1` and `base64`.
//! - `deflate`: permessage-deflate (RFC 7692) for the [`websocket`] handler, opt-in per
//!   handler with [`WebSocketHandler::deflate`](websocket::WebSocketHandler::deflate).
//!   Pulls in `zlib-rs` and `websocket`.
//! - `h2c`: the [`h2c`] handler. Off by default: RFC 9113 deprecates the `h2c` upgrade, and
//!   only some non-browser clients still send it. Pulls in `base64`.
//! - `axum`: `IntoResponse` for the WebSocket rejections, and axum's request body type on
//!   h2c streams. Pulls in `axum-core`.
//! - `full`: all of the above.
//!
//! Enabling a feature never changes the bounds of [`Upgrade`]: the core knows no protocol
//! by name, and each built-in handler is an ordinary [`ProtocolHandler`].
//!
//! # Where to put the layer
//!
//! With axum, `Router::layer(UpgradeLayer)` (or `route_layer`) wraps *each route*: the
//! natural choice for a protocol that belongs to some routes (a WebSocket endpoint). To
//! serve one layer for the whole app (h2c must: it serves the app itself over HTTP/2),
//! wrap the router instead: `UpgradeLayer::new().protocol(..)?.layer(router)`. That also
//! skips the boxing axum does for every `Router::layer`.
//!
//! The layer answers with its own [`ResponseBody`] (the inner body, or its short text), as
//! tower-http's body-changing layers do. `axum::serve` takes services that answer with
//! axum's body, so map the response of a wrapped router back, as `Router::layer` does for
//! the layers inside it:
//!
//! ```
//! use axum::{Router, extract::Request, response::IntoResponse, routing::get};
//! use tower::{Layer, ServiceExt};
//! use tower_upgrade::UpgradeLayer;
//!
//! # #[allow(dead_code)]
//! # async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
//! let router = Router::new().route("/", get(|| async { "hello" }));
//! let app = UpgradeLayer::new().layer(router);
//! let app = ServiceExt::<Request>::map_response(app, IntoResponse::into_response);
//! axum::serve(listener, axum::ServiceExt::<Request>::into_make_service(app)).await
//! # }
//! ```
//!
//! With hyper (or hyper-util's `auto::Builder`), serve it as it is: [`ResponseBody`] is a
//! [`Body`](http_body::Body) like any other. Any tower stack works, on either side of the
//! layer:
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use tower::ServiceBuilder;
//! use tower_http::{compression::CompressionLayer, cors::CorsLayer, trace::TraceLayer};
//! use tower_upgrade::{UpgradeLayer, websocket::WebSocketHandler};
//!
//! # fn main() -> Result<(), tower_upgrade::ConfigError> {
//! let app = ServiceBuilder::new()
//!     .layer(CorsLayer::permissive())
//!     .layer(UpgradeLayer::new().protocol(WebSocketHandler::new(|_ws, _req| async {}))?)
//!     .layer(TraceLayer::new_for_http())
//!     .layer(CompressionLayer::new())
//!     .service_fn(|_req: Request<Incoming>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
//!     });
//! // Serve with `hyper_util::service::TowerToHyperService::new(app)` and
//! // `serve_connection_with_upgrades`.
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # Resource limits
//!
//! What one client can hold on a server, and what bounds it. The `echo` example sets every
//! one of these; copy its accept loop and builder (`examples/support/mod.rs`).
//!
//! | a client that... | is bounded by |
//! | --- | --- |
//! | sends half a request head | hyper's `header_read_timeout` (needs a timer); yours to set |
//! | sends half the HTTP/2 prior-knowledge preface | nothing in hyper-util: wait for it with a deadline before serving (the examples' `head_started`) |
//! | goes silent on a WebSocket | [`WebSocketConfig::keep_alive`](websocket::WebSocketConfig::keep_alive): a ping after 30 s, closed 30 s later (on by default) |
//! | sends a huge message | [`max_message_size`](websocket::WebSocketConfig::max_message_size) (64 MiB) per connection |
//! | and 300 others do too | [`Tracker::set_message_budget`]: message bytes of all connections (off by default) |
//! | opens connections until descriptors run out | the accept loop: back off, don't spin (yours to write) |
//! | opens many upgrades | [`Tracker::set_max_connections`] (`503` past it) |
//! | floods an h2c connection | [`H2c`](h2c::H2c)'s stream, header and reset limits (hyper's rapid-reset and CONTINUATION defences, tested on the upgraded path) |
//!
//! **With hyper-util**, give HTTP/1.1 a head deadline, and wait for the HTTP/2 preface with
//! one before serving:
//!
//! ```
//! use std::time::Duration;
//! use hyper_util::rt::{TokioExecutor, TokioTimer};
//! use hyper_util::server::conn::auto;
//!
//! let mut builder = auto::Builder::new(TokioExecutor::new());
//! builder
//!     .http1()
//!     .timer(TokioTimer::new()) // without a timer, the timeout is silently off
//!     .header_read_timeout(Duration::from_secs(10));
//! builder.http2().timer(TokioTimer::new());
//! // Then, per connection: peek until the bytes are not the HTTP/2 preface, or the whole
//! // preface and SETTINGS frame are in, within 10 s; else drop it. Hand hyper the plain
//! // `TcpStream` (the crate unwraps it after a switch: a wrapper costs every upgraded
//! // connection hyper's 8 KiB read buffer).
//! ```
//!
//! On accept errors, sleep before the next accept (10 ms doubling to 1 s, back to 0 once one
//! succeeds) and log one line per few seconds: at the descriptor limit, `accept` fails at
//! once for as long as it lasts, and a loop that logs and retries burns a core and writes
//! millions of lines. Skip connection errors (`ECONNABORTED`, `ECONNRESET`) at once.
//!
//! **With `axum::serve`**: it already sleeps 1 s after each accept error that is not a
//! connection's own (one log line per second), so it neither spins nor floods. It sets no
//! timer, so request heads have no deadline, and it has no setting for one (`ListenerExt`
//! only reaches the accepted IO). To bound heads, serve the `Router` with hyper-util as
//! above (`TowerToHyperService::new(router)`), as the `echo` example does, or keep it behind a
//! proxy that bounds them (nginx's `client_header_timeout`).
//!
//! **The message budget** is one line, on the tracker the layers share:
//!
//! ```
//! use tower_upgrade::{Tracker, UpgradeLayer, websocket::WebSocketHandler};
//!
//! # fn main() -> Result<(), tower_upgrade::ConfigError> {
//! let tracker = Tracker::new();
//! // Past 256 MiB of buffered messages, all connections together, the message that would
//! // pass it closes its connection with 1013 Try Again Later.
//! tracker.set_message_budget(Some(256 << 20));
//! let layer = UpgradeLayer::new()
//!     .with_tracker(tracker.clone())
//!     .protocol(WebSocketHandler::new(|_ws, _req| async {}))?;
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! # Ordering with tower-http
//!
//! Layers added after ours (outer layers) see the upgrade request and the `101`; layers
//! added before it (inner layers) see only the requests that pass through.
//!
//! - **Authentication** and other request checks go *outside* (added after) the upgrade
//!   layer, so a refused request never switches. Extensions they set reach the handler in
//!   [`UpgradeRequest::extensions`].
//! - **`TraceLayer`** outside sees the upgrade request and its `101`; its span ends there.
//!   Each upgraded connection is logged by this crate.
//! - **`TimeoutLayer`** outside bounds the time to the `101` only: it never cuts the
//!   upgraded connection.
//! - **`CompressionLayer`** is best put inside (added before). Outside, it leaves the `101`
//!   alone, but a client whose `Accept-Encoding` forbids `identity` gets a `406` instead of
//!   the `101`.
//! - **`CorsLayer`** and **`SetResponseHeaderLayer`** outside add their headers to the `101`
//!   like to any response.
//!
//! # Protocol notes
//!
//! - [RFC 9110 §7.8](https://www.rfc-editor.org/rfc/rfc9110#section-7.8): `Upgrade`.
//! - [RFC 9110 §15.2.2](https://www.rfc-editor.org/rfc/rfc9110#section-15.2.2): `101`;
//!   [§15.5.22](https://www.rfc-editor.org/rfc/rfc9110#section-15.5.22): `426`.
//! - [RFC 6455 §4.2](https://www.rfc-editor.org/rfc/rfc6455#section-4.2): the WebSocket
//!   server handshake.
//! - [RFC 8441](https://www.rfc-editor.org/rfc/rfc8441): WebSocket over HTTP/2 (extended
//!   CONNECT).
//! - [RFC 9113 §3.1](https://www.rfc-editor.org/rfc/rfc9113#section-3.1): the `h2c` upgrade
//!   token is deprecated.
//!
//! [tower]: https://docs.rs/tower

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod body;
mod config;
mod connection;
mod error;
mod future;
#[cfg(fuzzing)]
#[doc(hidden)]
#[allow(missing_docs, unreachable_pub)]
pub mod fuzzing;
#[cfg(feature = "h2c")]
#[cfg_attr(docsrs, doc(cfg(feature = "h2c")))]
pub mod h2c;
mod handle;
mod handler;
mod headers;
mod io;
mod layer;
mod registry;
mod response;
mod service;
mod signal;
#[cfg(test)]
mod test_util;
mod token;
mod tracker;
#[cfg(feature = "websocket")]
#[cfg_attr(docsrs, doc(cfg(feature = "websocket")))]
pub mod websocket;

#[doc(inline)]
pub use self::{
    body::ResponseBody,
    error::{BoxError, ConfigError, ConfigErrorKind, UpgradeError, UpgradeErrorKind},
    future::ResponseFuture,
    handle::{BoxBody, HttpService, ServiceHandle},
    handler::{
        Accepted, Decision, HandlerFn, IntoServeResult, ProtocolHandler, Rejection, UpgradeRequest,
        handler_fn,
    },
    io::UpgradedIo,
    layer::UpgradeLayer,
    registry::Registry,
    service::Upgrade,
    token::UpgradeToken,
    tracker::{
        BudgetReservation, Counts, DrainReport, MessageBudget, ShutdownSignal, Stats, Tracker,
    },
};
