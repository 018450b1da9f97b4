//! HTTP/2 over cleartext by HTTP/1.1 upgrade (`Upgrade: h2c`, RFC 7540 §3.2).
//!
//! [`H2c`] is a protocol handler that, when a client asks for it, switches the connection to
//! HTTP/2 and serves **the service the layer wraps** over HTTP/2 on that connection. The
//! request that asked for the upgrade is answered on stream 1, and every later request on
//! the connection (as many concurrent streams as the client likes) reaches the same
//! service, layers and all, through the same [`Upgrade`](crate::Upgrade) service: an
//! RFC 8441 WebSocket registered on the same layer works on those streams too.
//!
//! # The `h2c` token is deprecated
//!
//! [RFC 9113 §3.1](https://www.rfc-editor.org/rfc/rfc9113#section-3.1) deprecates the
//! `h2c` upgrade token and the `HTTP2-Settings` header: "This usage was never widely
//! deployed". Browsers never sent it. It is still worth enabling when clients you do not
//! control ask for it: curl with `--http2` on an `http://` URL, `nghttp -u`, and several
//! Java HTTP clients (the JDK's `HttpClient` with `HTTP_2` on `http://`, Jetty, OkHttp
//! behind some proxies) still send it, and get HTTP/2 multiplexing from it on a plain TCP
//! connection. Otherwise they stay on HTTP/1.1, which also works: nothing breaks when this
//! handler is not registered.
//!
//! For HTTP/2 without TLS, **prior knowledge** (RFC 9113 §3.3) is the supported way: the
//! client starts with the HTTP/2 preface, and hyper-util's
//! [`auto::Builder`](hyper_util::server::conn::auto::Builder) (what `axum::serve` uses)
//! already serves it on the same port as HTTP/1.1, with no help from this crate
//! (`curl --http2-prior-knowledge`, gRPC clients). Over TLS, ALPN selects `h2` and no
//! upgrade is involved.
//!
//! # How stream 1 is answered
//!
//! hyper's HTTP/2 server cannot adopt a request that arrived as HTTP/1.1 (hyper issue
//! [2411](https://github.com/hyperium/hyper/issues/2411)), and the `h2` crate cannot start a
//! connection with stream 1 already open (h2 issue
//! [220](https://github.com/hyperium/h2/issues/220)). So after the `101`, an ordinary hyper
//! HTTP/2 server connection is run on an IO wrapper that plays the client's part of stream 1:
//!
//! 1. Before the switch, the request body (at most 65,535 bytes) is read, so hyper answers
//!    `Expect: 100-continue` with `100 Continue` before the `101`.
//! 2. The wrapper waits for the client's preface and first SETTINGS frame, which the client
//!    sends after reading the `101`.
//! 3. The server then reads: the preface; one SETTINGS frame with the `HTTP2-Settings`
//!    values followed by the client's own (so it sends exactly one SETTINGS ACK, as the
//!    client expects); the upgrade request as stream 1, encoded as HPACK literals without
//!    indexing (so the client's header compression state is not disturbed) and DATA frames;
//!    then the client's bytes unchanged.
//! 4. The client never sent the body as HTTP/2 DATA, so the connection-level WINDOW_UPDATE
//!    frames the server writes are reduced by the body length until it is paid off, keeping
//!    both ends' flow-control windows equal.
//!
//! Stream 1 carries the request's method, target (`*` for `OPTIONS *`), authority (from
//! the target or `Host`), body, and its headers without the connection-specific ones
//! (RFC 9113 §8.2.2: `Connection` and what it names, `Upgrade`, `HTTP2-Settings`,
//! `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `TE` other than `trailers`; also
//! `Host` and `Expect`). A `HEAD` request gets no body over HTTP/2, whatever the service
//! returns.
//!
//! # Which requests switch
//!
//! Only what RFC 7540 §3.2 allows; every other request is served over HTTP/1.1 as usual
//! (the handler [declines](crate::Decision::Decline); it never answers an error for an
//! upgrade offer):
//!
//! | request | served over |
//! | --- | --- |
//! | `Upgrade` offers `h2c`; `Connection` names `Upgrade` and `HTTP2-Settings`; exactly one `HTTP2-Settings`, unpadded base64url of at most 16 valid settings; body of at most 65,535 bytes | HTTP/2 after `101` |
//! | `Upgrade: h2` (TLS only, RFC 7540 §3.2: ignored) | HTTP/1.1 |
//! | no `HTTP2-Settings`, or two; not named in `Connection`; padded, not base64url, a length that is not a multiple of 6, an invalid value (e.g. `ENABLE_PUSH=2`) | HTTP/1.1 |
//! | `Content-Length` above 65,535, or a chunked body | HTTP/1.1 |
//! | `CONNECT`, a `Host` that is not a valid authority, headers larger than 16 KiB as HTTP/2 counts them | HTTP/1.1 |
//! | a connection that cannot switch (no hyper `OnUpgrade`: `oneshot`, a server without upgrades) | HTTP/1.1 |
//! | a request body type the handler cannot make from hyper's (see [`H2c::request_body`]) | HTTP/1.1, and a `tracing` error |
//!
//! # Where to put the layer
//!
//! The layer must wrap **the whole app**, and be the outermost layer you want HTTP/2
//! requests to pass through:
//!
//! - `Router::layer` in axum wraps *each route* separately. An h2c layer added that way
//!   would send every HTTP/2 request on an upgraded connection to the route the upgrade
//!   came in on. Wrap the router instead, as in the examples below.
//! - Layers outside the h2c layer see the upgrade request and the `101` only; the requests
//!   on the HTTP/2 connection (stream 1 included) go straight to the service the layer
//!   wraps. Put tracing, authentication, timeouts and the like inside.
//! - Request extensions are not carried over from the upgrade request to the HTTP/2
//!   requests: a value an outer layer set for one request (an authenticated user) must not
//!   apply to the next. axum's `ConnectInfo`, set outside the router by
//!   `into_make_service_with_connect_info`, is therefore missing on HTTP/2 requests.
//!
//! # Example
//!
//! The whole router switches; a request that cannot switch (here, a `oneshot` call) is
//! served as usual.
//!
//! ```
//! use axum::{Router, body::Body, routing::{get, post}};
//! use http::{Request, StatusCode};
//! use tower::{Layer, ServiceExt};
//! use tower_upgrade::{UpgradeLayer, h2c::H2c};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route("/echo", post(|body: String| async move { body }));
//! // Around the whole router, not `Router::layer` (which wraps each route on its own).
//! let app = UpgradeLayer::new().protocol(H2c::new())?.layer(router);
//!
//! // Serve it with `axum::serve`, its response mapped back into axum's body: see
//! // "Where to put the layer" in the crate docs.
//! let res = app
//!     .oneshot(
//!         Request::get("/")
//!             .header("host", "example.com")
//!             .header("connection", "Upgrade, HTTP2-Settings")
//!             .header("upgrade", "h2c")
//!             .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
//!             .body(Body::empty())?,
//!     )
//!     .await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
//!
//! With hyper directly, the request body is hyper's [`Incoming`]
//! and needs no conversion. A service with another body type says how to make it with
//! [`H2c::request_body`]:
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full, combinators::BoxBody};
//! use hyper::body::{Bytes, Incoming};
//! use hyper::server::conn::http1;
//! use hyper_util::rt::TokioIo;
//! use tower::{Layer, ServiceExt, service_fn};
//! use tower_upgrade::{UpgradeLayer, h2c::H2c};
//!
//! type Body = BoxBody<Bytes, hyper::Error>;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let echo = service_fn(|req: Request<Body>| async move {
//!     let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
//!     Ok::<_, Infallible>(Response::new(Full::new(body)))
//! });
//! let h2c = H2c::new()
//!     .request_body(|body: Incoming| body.boxed())
//!     .preface_timeout(Duration::from_secs(5));
//! let app = UpgradeLayer::new().protocol(h2c)?.layer(echo);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
//! loop {
//!     let (tcp, _) = listener.accept().await?;
//!     let app = app.clone();
//!     let service = hyper::service::service_fn(move |req: Request<Incoming>| {
//!         app.clone().oneshot(req.map(BodyExt::boxed))
//!     });
//!     // Upgrades must be enabled for the switch.
//!     tokio::spawn(
//!         http1::Builder::new()
//!             .serve_connection(TokioIo::new(tcp), service)
//!             .with_upgrades(),
//!     );
//! }
//! # }
//! ```

pub(crate) mod frames;
mod io;
mod service;
pub(crate) mod settings;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{Method, request};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::headers::{List, connection_has};
use crate::{
    Accepted, BoxError, Decision, ProtocolHandler, ServiceHandle, UpgradeRequest, UpgradedIo,
};

/// The largest request body replayed as stream 1: the initial HTTP/2 flow-control window
/// (RFC 9113 §6.9.2), which is all the server may receive before the client has seen its
/// settings.
pub const MAX_BODY_SIZE: usize = 65_535;

/// The default SETTINGS_MAX_HEADER_LIST_SIZE of the HTTP/2 server (hyper's default); an
/// upgrade request whose headers would exceed the one set is served over HTTP/1.1.
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// The limits of the HTTP/2 server after the switch; see the setters on [`H2c`].
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_concurrent_streams: u32,
    max_header_list_size: u32,
    max_frame_size: u32,
    max_pending_accept_reset_streams: usize,
    max_local_error_reset_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_header_list_size: MAX_HEADER_LIST_SIZE,
            // RFC 9113 §6.5.2: the initial value, and the smallest allowed.
            max_frame_size: 16_384,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
        }
    }
}

const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// The `h2c` protocol handler: serves the wrapped service over HTTP/2 after an upgrade.
///
/// Register it with [`UpgradeLayer::protocol`](crate::UpgradeLayer::protocol) on a layer
/// that wraps the whole app. It is an ordinary [`ProtocolHandler`] that
/// [needs the wrapped service](ProtocolHandler::needs_service): the layer hands it a
/// [`ServiceHandle`], and it serves that service, through the layer, over HTTP/2 on the
/// upgraded connection.
///
/// See the [module docs](crate::h2c) for an example.
#[must_use]
pub struct H2c {
    /// The user's conversion from hyper's body, if any.
    convert: Option<service::Convert>,
    preface_timeout: Duration,
    limits: Limits,
    /// Whether a missing body conversion has been reported at `error` level already.
    reported: AtomicBool,
}

impl H2c {
    /// The handler, with the default settings.
    pub fn new() -> Self {
        Self {
            convert: None,
            preface_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            reported: AtomicBool::new(false),
        }
    }

    /// How to make the service's request body from hyper's [`Incoming`].
    ///
    /// HTTP/2 requests after the switch come from hyper with an [`Incoming`] body. The
    /// handler hands that on unchanged to a service whose body type is [`Incoming`], and,
    /// with the `axum` feature, wraps it in `axum::body::Body` for a service that takes
    /// that (as every service under `axum::serve` does). For any other body type, set the
    /// conversion here; it is used when `B` is the service's body type.
    ///
    /// Without a conversion for the service's body type, h2c offers are declined (served
    /// over HTTP/1.1) and a `tracing` error names this method. There is none by default.
    pub fn request_body<B, F>(mut self, f: F) -> Self
    where
        F: Fn(Incoming) -> B + Send + Sync + 'static,
        B: 'static,
    {
        self.convert = Some(service::Convert::new(f));
        self
    }

    /// How long to wait, after the `101`, for the client's HTTP/2 preface and first
    /// SETTINGS frame. The connection is closed when it runs out.
    ///
    /// The default value is 10 seconds.
    pub fn preface_timeout(mut self, timeout: Duration) -> Self {
        self.preface_timeout = timeout;
        self
    }

    /// SETTINGS_MAX_CONCURRENT_STREAMS: the most streams the client may have open at once
    /// on one upgraded connection; each may hold a request in the service. Streams past it
    /// are refused (`REFUSED_STREAM`).
    ///
    /// The default value is 100, the least RFC 9113 §6.5.2 recommends (hyper's is 200,
    /// "not part of the stability of hyper").
    pub fn max_concurrent_streams(mut self, max: u32) -> Self {
        self.limits.max_concurrent_streams = max;
        self
    }

    /// SETTINGS_MAX_HEADER_LIST_SIZE: the largest header list the server accepts, in the
    /// RFC 9113 §6.5.2 measure (names, values and 32 bytes per field). Also bounds the
    /// CONTINUATION frames of one header block: h2 refuses a block that runs past it,
    /// which is what stops a CONTINUATION flood (the CVE-2024-27316 class). An upgrade
    /// request whose own headers are larger is served over HTTP/1.1.
    ///
    /// The default value is 16 KiB (hyper's).
    pub fn max_header_list_size(mut self, max: u32) -> Self {
        self.limits.max_header_list_size = max;
        self
    }

    /// SETTINGS_MAX_FRAME_SIZE: the largest frame payload the server accepts. Clamped to
    /// 16 KiB ..= 16 MiB - 1 (RFC 9113 §6.5.2).
    ///
    /// The default value is 16 KiB.
    pub fn max_frame_size(mut self, max: u32) -> Self {
        self.limits.max_frame_size = max.clamp(16_384, (1 << 24) - 1);
        self
    }

    /// How many streams the client may open and reset before the server takes them up;
    /// past it, the connection ends with GOAWAY (`ENHANCE_YOUR_CALM`). This is hyper's
    /// defence against rapid reset (HEADERS then RST_STREAM, CVE-2023-44487).
    ///
    /// The default value is 20 (h2's).
    pub fn max_pending_accept_reset_streams(mut self, max: usize) -> Self {
        self.limits.max_pending_accept_reset_streams = max;
        self
    }

    /// How many streams the server may reset for the client's errors before it ends the
    /// connection with GOAWAY (RUSTSEC-2024-0003).
    ///
    /// The default value is 1024 (hyper's).
    pub fn max_local_error_reset_streams(mut self, max: usize) -> Self {
        self.limits.max_local_error_reset_streams = max;
        self
    }

    fn report_missing_conversion(&self, body: &'static str) {
        let configured = self.convert.as_ref().map_or("none", |c| c.body_name);
        if self.reported.swap(true, Ordering::Relaxed) {
            tracing::debug!(body, "h2c upgrade declined: no request body conversion");
        } else {
            tracing::error!(
                body,
                configured,
                "h2c upgrade declined: the service's request body type cannot be made from \
                 hyper's `Incoming`. Set `H2c::request_body(|body: Incoming| ..)` to build \
                 it, or enable the `axum` feature of tower-upgrade for `axum::body::Body`"
            );
        }
    }
}

impl Default for H2c {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for H2c {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2c")
            .field("request_body", &self.convert.as_ref().map(|c| c.body_name))
            .field("preface_timeout", &self.preface_timeout)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What [`H2c`] checked in the upgrade request: the decoded `HTTP2-Settings`.
///
/// Handed from [`H2c::accept`](ProtocolHandler::accept) to the HTTP/2 connection; there is
/// nothing to do with it outside this crate.
#[derive(Debug)]
pub struct H2cHandshake {
    settings: Bytes,
}

impl H2c {
    /// RFC 7540 §3.2 and §3.2.1, plus what this implementation can replay.
    fn check(&self, req: &request::Parts) -> Result<Bytes, &'static str> {
        if req.method == Method::CONNECT {
            return Err("CONNECT");
        }
        // RFC 7540 §3.2.1: `HTTP2-Settings` is a connection option. Every option must be
        // read to strip them from stream 1, so a `Connection` list past the bound declines.
        if List::new(&req.headers, header::CONNECTION).any(|e| e.is_err()) {
            return Err("Connection header too long");
        }
        if !connection_has(&req.headers, "http2-settings") {
            return Err("Connection does not name HTTP2-Settings");
        }
        // RFC 7540 §3.2.1: "A server MUST NOT upgrade the connection to HTTP/2 if this header
        // field is not present or if more than one is present."
        let mut values = req.headers.get_all(HTTP2_SETTINGS).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err("not exactly one HTTP2-Settings header");
        };
        let settings =
            settings::decode(value.as_bytes()).map_err(settings::SettingsError::as_str)?;
        // A chunked body could be longer than stream 1 can carry; it is not read to find out.
        if req.headers.contains_key(header::TRANSFER_ENCODING) {
            return Err("chunked request body");
        }
        let too_long = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|len| len > MAX_BODY_SIZE as u64);
        if too_long {
            return Err("request body larger than 65535 bytes");
        }
        if frames::authority(req).is_some_and(|a| http::uri::Authority::try_from(a).is_err()) {
            return Err("Host is not a valid authority");
        }
        if frames::header_list_size(req) > self.limits.max_header_list_size as usize {
            return Err("headers too large for HTTP/2");
        }
        Ok(settings)
    }
}

impl ProtocolHandler for H2c {
    type State = H2cHandshake;

    fn token(&self) -> &str {
        "h2c"
    }

    /// h2c serves the wrapped service over HTTP/2.
    fn needs_service(&self) -> bool {
        true
    }

    fn accept(&self, req: &request::Parts) -> Decision<H2cHandshake> {
        // The service must take a body made from hyper's, or every HTTP/2 request would
        // fail after the switch: decline instead, and say why once.
        match req.extensions.get::<ServiceHandle>() {
            Some(handle) if service::can_serve(self, handle) => {}
            Some(handle) => {
                self.report_missing_conversion(handle.request_body_type_name());
                return Decision::Decline;
            }
            None => return Decision::Decline,
        }
        // Without `OnUpgrade` the connection cannot switch; h2c is only ever an offer, so
        // the request is simply served over HTTP/1.1 (not answered 500).
        let checked = if req.extensions.get::<OnUpgrade>().is_none() {
            Err("the connection cannot switch protocols")
        } else {
            self.check(req)
        };
        match checked {
            Ok(settings) => Accepted::new(H2cHandshake { settings })
                .read_body(MAX_BODY_SIZE)
                .into(),
            Err(reason) => {
                tracing::debug!(reason, "h2c upgrade declined");
                Decision::Decline
            }
        }
    }

    /// Serves the wrapped service, found in the request's extensions, over HTTP/2 on the
    /// upgraded connection, starting with the upgrade request on stream 1.
    fn serve(
        self: Arc<Self>,
        io: UpgradedIo,
        req: UpgradeRequest,
        state: H2cHandshake,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        service::serve(self, io, req, state.settings)
    }
}

#[cfg(test)]
mod tests;
