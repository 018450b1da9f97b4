//! Protocol handlers: the trait, its two steps, and the closure form.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue, IntoHeaderName};
use http::{Response, StatusCode, request};

use crate::error::BoxError;
use crate::io::UpgradedIo;
use crate::token::UpgradeToken;
use crate::tracker::ShutdownSignal;

/// A protocol that a connection can switch to.
///
/// A handler works in two steps, because the decision to switch must be made before the
/// `101` is sent, and the protocol can only run after it:
///
/// 1. [`accept`](ProtocolHandler::accept), before the `101`: inspect the request head and
///    decide. [`Decision::Accept`] switches, with extra `101` headers and the state that
///    `serve` needs; [`Decision::Reject`] answers with a complete response (a `400`, `403`,
///    ...) and the connection stays HTTP/1.1; [`Decision::Decline`] lets the request go on
///    to the inner service as if no upgrade had been asked for (RFC 9110 §7.8: a server MAY
///    ignore `Upgrade`).
/// 2. [`serve`](ProtocolHandler::serve), after the `101`: own the connection and run the
///    protocol to its end, in a task of its own.
///
/// For the common case where no validation is needed, [`handler_fn`] turns a closure into a
/// handler.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use http::{HeaderValue, StatusCode, request::Parts};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tower_upgrade::{
///     BoxError, Decision, Accepted, ProtocolHandler, Rejection, UpgradeRequest, UpgradedIo,
/// };
///
/// /// Answers `ping` with `pong`, for clients that send `X-Ping-Key`.
/// struct Ping;
///
/// impl ProtocolHandler for Ping {
///     type State = String;
///
///     fn token(&self) -> &str {
///         "ping/1"
///     }
///
///     fn accept(&self, req: &Parts) -> Decision<String> {
///         match req.headers.get("x-ping-key").and_then(|v| v.to_str().ok()) {
///             Some(key) => Accepted::new(key.to_owned()).header("x-ping-ok", HeaderValue::from_static("1")).into(),
///             None => Rejection::new(StatusCode::BAD_REQUEST, "missing X-Ping-Key").into(),
///         }
///     }
///
///     async fn serve(
///         self: Arc<Self>,
///         mut io: UpgradedIo,
///         _req: UpgradeRequest,
///         key: String,
///     ) -> Result<(), BoxError> {
///         let mut buf = [0; 4];
///         io.read_exact(&mut buf).await?;
///         io.write_all(format!("pong {key}\n").as_bytes()).await?;
///         Ok(())
///     }
/// }
///
/// let layer = tower_upgrade::UpgradeLayer::new().protocol(Ping).unwrap();
/// # let _ = layer;
/// ```
pub trait ProtocolHandler: Send + Sync + 'static {
    /// What [`accept`](ProtocolHandler::accept) hands to [`serve`](ProtocolHandler::serve).
    type State: Send + 'static;

    /// The protocol this handler speaks, as `name` or `name/version` (RFC 9110 §7.8).
    ///
    /// It is read and validated once, when the handler is registered.
    fn token(&self) -> &str;

    /// Whether the handler also accepts HTTP/2 extended CONNECT requests (RFC 8441) whose
    /// `:protocol` names it. Those are answered `200` instead of `101`.
    ///
    /// The default is `false`.
    fn supports_http2(&self) -> bool {
        false
    }

    /// Decides, from the request head, whether to switch. Runs before the `101`.
    fn accept(&self, req: &request::Parts) -> Decision<Self::State>;

    /// Runs the protocol on the upgraded connection. Runs in a task of its own, after the
    /// `101`.
    ///
    /// An error or a panic ends the connection and is reported to the layer's
    /// [`on_failed_upgrade`](crate::UpgradeLayer::on_failed_upgrade) callback; it never
    /// reaches the server.
    fn serve(
        self: Arc<Self>,
        io: UpgradedIo,
        req: UpgradeRequest,
        state: Self::State,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// What a handler's [`accept`](ProtocolHandler::accept) decided.
#[derive(Debug)]
pub enum Decision<T> {
    /// Switch protocols.
    Accept(Accepted<T>),
    /// Refuse the upgrade with this response; the connection stays HTTP/1.1.
    Reject(Rejection),
    /// Not for this handler: the request goes on to the inner service untouched.
    Decline,
}

impl<T> From<Accepted<T>> for Decision<T> {
    fn from(accepted: Accepted<T>) -> Self {
        Self::Accept(accepted)
    }
}

impl<T> From<Rejection> for Decision<T> {
    fn from(rejection: Rejection) -> Self {
        Self::Reject(rejection)
    }
}

impl<T> Decision<T> {
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Decision<U> {
        match self {
            Self::Accept(a) => Decision::Accept(Accepted {
                headers: a.headers,
                state: f(a.state),
                body_limit: a.body_limit,
            }),
            Self::Reject(r) => Decision::Reject(r),
            Self::Decline => Decision::Decline,
        }
    }
}

/// An accepted upgrade: the headers to add to the `101` and the state for
/// [`serve`](ProtocolHandler::serve).
#[derive(Debug)]
#[must_use]
pub struct Accepted<T> {
    pub(crate) headers: HeaderMap,
    pub(crate) state: T,
    pub(crate) body_limit: usize,
}

impl<T> Accepted<T> {
    /// Accepts, with no extra headers.
    pub fn new(state: T) -> Self {
        Self {
            headers: HeaderMap::new(),
            state,
            body_limit: 0,
        }
    }

    /// Adds a header to the `101` (or, over HTTP/2, to the `200`).
    ///
    /// `Upgrade` and `Connection` are set by the layer.
    ///
    /// # Panics
    ///
    /// If `name` is a `&'static str` that is not a valid header name.
    pub fn header(mut self, name: impl IntoHeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The headers that will be added to the `101`.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// Accepts a request body of up to `limit` bytes on the upgrade request.
    ///
    /// RFC 9110 §7.8: the client may only start the new protocol once it has sent the whole
    /// request, so the layer reads the body before it sends the `101` (and hyper sends
    /// `100 Continue` first when the client asked for it). The body is then available as
    /// [`UpgradeRequest::body`].
    ///
    /// With the default, `0`, an upgrade request that has a body is declined and goes on to
    /// the inner service. A body that announces more than `limit` bytes (`Content-Length`) is
    /// declined the same way; a chunked body that turns out longer is answered
    /// `413 Content Too Large`.
    pub fn read_body(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }
}

/// A refused upgrade: a complete response sent instead of the `101`.
///
/// Built from a status and a short plain-text reason, which becomes the body; more headers
/// can be added. The connection stays HTTP/1.1.
#[derive(Clone)]
#[must_use]
pub struct Rejection {
    status: StatusCode,
    reason: Cow<'static, str>,
    headers: HeaderMap,
}

impl Rejection {
    /// A rejection with this status and reason (the `text/plain` body).
    pub fn new(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            reason: reason.into(),
            headers: HeaderMap::new(),
        }
    }

    /// Adds a header to the response.
    ///
    /// # Panics
    ///
    /// If `name` is a `&'static str` that is not a valid header name.
    pub fn header(mut self, name: impl IntoHeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The response status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The reason, which is also the response body.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The extra headers.
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Builds the response.
    #[must_use]
    pub fn into_response(self) -> Response<Bytes> {
        let body = match self.reason {
            Cow::Borrowed(s) => Bytes::from_static(s.as_bytes()),
            Cow::Owned(s) => Bytes::from(s),
        };
        let mut res = Response::new(body);
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        *headers = self.headers;
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.reason)
    }
}

/// The upgrade request, as handed to [`serve`](ProtocolHandler::serve).
///
/// It carries the request head with the extensions that outer layers set (an authenticated
/// user, a request id, ...), the protocol that was selected, and the request body, if the
/// handler [asked for one](Accepted::read_body).
#[derive(Debug)]
pub struct UpgradeRequest {
    pub(crate) parts: request::Parts,
    pub(crate) protocol: UpgradeToken,
    pub(crate) body: Bytes,
    pub(crate) shutdown: ShutdownSignal,
}

impl UpgradeRequest {
    /// Builds the request handed to `serve`, with its head copied out of hyper's read
    /// buffer.
    ///
    /// hyper parses the URI and header values as views into its read buffer (8 KiB or
    /// more). A handler that keeps the request for the life of the connection would keep
    /// that whole buffer alive with it; copying the few bytes of the head frees it.
    pub(crate) fn new(
        mut parts: request::Parts,
        protocol: UpgradeToken,
        body: Bytes,
        shutdown: ShutdownSignal,
    ) -> Self {
        copy_head(&mut parts);
        Self {
            parts,
            protocol,
            body,
            shutdown,
        }
    }

    /// The request head.
    #[must_use]
    pub fn parts(&self) -> &request::Parts {
        &self.parts
    }

    /// The request head, owned.
    #[must_use]
    pub fn into_parts(self) -> request::Parts {
        self.parts
    }

    /// The request headers.
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    /// The request URI.
    #[must_use]
    pub fn uri(&self) -> &http::Uri {
        &self.parts.uri
    }

    /// The request extensions.
    #[must_use]
    pub fn extensions(&self) -> &http::Extensions {
        &self.parts.extensions
    }

    /// The protocol the connection switched to, as registered.
    #[must_use]
    pub fn protocol(&self) -> &UpgradeToken {
        &self.protocol
    }

    /// Fires when graceful shutdown starts: end the protocol cleanly then. A handler that
    /// ignores it is aborted at the drain deadline; see [`Tracker`](crate::Tracker).
    #[must_use]
    pub fn shutdown(&self) -> &ShutdownSignal {
        &self.shutdown
    }

    /// The request body, read before the switch; empty unless the handler
    /// [accepted one](Accepted::read_body).
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// Copies the URI and header values of `parts` into one allocation of their own, so that
/// they no longer share hyper's read buffer. One buffer rather than one per value: this is
/// on the path of every upgrade.
fn copy_head(parts: &mut request::Parts) {
    // Origin form (`/path?query`, or `*`) is what servers see; anything else is rare and
    // copied through its string form.
    let origin_form = parts.uri.scheme().is_none() && parts.uri.authority().is_none();
    let path = match (origin_form, parts.uri.path_and_query()) {
        (true, Some(pq)) => pq.as_str(),
        _ => "",
    };
    let len = path.len() + parts.headers.values().map(|v| v.len()).sum::<usize>();
    let mut buf = BytesMut::with_capacity(len);
    buf.extend_from_slice(path.as_bytes());
    for value in parts.headers.values() {
        buf.extend_from_slice(value.as_bytes());
    }
    let buf = buf.freeze();
    let mut at = path.len();
    for value in parts.headers.values_mut() {
        let end = at + value.len();
        // The bytes were a valid value already.
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(buf.slice(at..end)) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
        at = end;
    }
    let uri = if origin_form {
        http::Uri::from_maybe_shared(buf.slice(..path.len()))
    } else {
        http::Uri::try_from(parts.uri.to_string())
    };
    if let Ok(uri) = uri {
        parts.uri = uri;
    }
}

/// What a handler closure may return: `()` or `Result<(), E>`.
pub trait IntoServeResult {
    /// Converts into the result the layer reports.
    ///
    /// # Errors
    ///
    /// The handler's own error, boxed.
    fn into_serve_result(self) -> Result<(), BoxError>;
}

impl IntoServeResult for () {
    fn into_serve_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> IntoServeResult for Result<(), E> {
    fn into_serve_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

pin_project_lite::pin_project! {
    /// Maps a handler future's output with [`IntoServeResult`].
    ///
    /// A combinator rather than `async move { f.await.into_serve_result() }`: an `async`
    /// block holds the future it captured *and* the one it awaits, twice the size, for the
    /// life of the connection.
    pub(crate) struct ServeResult<F> {
        #[pin]
        future: F,
    }
}

impl<F> ServeResult<F> {
    pub(crate) fn new(future: F) -> Self {
        Self { future }
    }
}

impl<F> Future for ServeResult<F>
where
    F: Future,
    F::Output: IntoServeResult,
{
    type Output = Result<(), BoxError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.project()
            .future
            .poll(cx)
            .map(IntoServeResult::into_serve_result)
    }
}

/// Makes a [`ProtocolHandler`] from a token and a closure that runs the protocol.
///
/// Every upgrade request that offers `token` is accepted (unless it has a body, see
/// [`Accepted::read_body`]); the closure gets the upgraded connection and the request.
///
/// # Example
///
/// ```
/// use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
/// use tower_upgrade::{UpgradeLayer, UpgradeRequest, UpgradedIo, handler_fn};
///
/// let upper = handler_fn("upper/1", |io: UpgradedIo, _req: UpgradeRequest| async move {
///     let mut io = BufReader::new(io);
///     let mut line = String::new();
///     while io.read_line(&mut line).await? != 0 {
///         io.get_mut().write_all(line.to_uppercase().as_bytes()).await?;
///         line.clear();
///     }
///     Ok::<_, std::io::Error>(())
/// });
/// let layer = UpgradeLayer::new().protocol(upper).unwrap();
/// # let _ = layer;
/// ```
pub fn handler_fn<F, Fut>(token: impl Into<String>, f: F) -> HandlerFn<F>
where
    F: Fn(UpgradedIo, UpgradeRequest) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoServeResult,
{
    HandlerFn {
        token: token.into(),
        f,
        http2: false,
    }
}

/// A [`ProtocolHandler`] made from a closure by [`handler_fn`].
#[derive(Clone)]
#[must_use]
pub struct HandlerFn<F> {
    token: String,
    f: F,
    http2: bool,
}

impl<F> HandlerFn<F> {
    /// Also accepts HTTP/2 extended CONNECT requests for this protocol (RFC 8441).
    ///
    /// The default is `false`.
    pub fn http2(mut self, enable: bool) -> Self {
        self.http2 = enable;
        self
    }
}

impl<F> fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerFn")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl<F, Fut> ProtocolHandler for HandlerFn<F>
where
    F: Fn(UpgradedIo, UpgradeRequest) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoServeResult,
{
    type State = ();

    fn token(&self) -> &str {
        &self.token
    }

    fn supports_http2(&self) -> bool {
        self.http2
    }

    fn accept(&self, _req: &request::Parts) -> Decision<()> {
        Decision::Accept(Accepted::new(()))
    }

    fn serve(
        self: Arc<Self>,
        io: UpgradedIo,
        req: UpgradeRequest,
        (): (),
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        // The closure's future is made here, not inside an `async fn`: the arguments of an
        // `async fn` stay in its state for its whole life, and this future lives as long as
        // the connection.
        ServeResult::new((self.f)(io, req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::Tracker;

    #[test]
    fn the_request_head_is_copied_out_of_the_read_buffer() {
        // As hyper does: the URI and header values are views into one big read buffer.
        let mut buffer = b"/chat?room=1 websocket secret".to_vec();
        buffer.resize(8192, 0);
        let buffer = Bytes::from(buffer);
        let mut req = http::Request::new(());
        *req.uri_mut() = http::Uri::from_maybe_shared(buffer.slice(0..12)).unwrap();
        let value = HeaderValue::from_maybe_shared(buffer.slice(13..22)).unwrap();
        req.headers_mut().insert(header::UPGRADE, value);
        let mut secret = HeaderValue::from_maybe_shared(buffer.slice(23..29)).unwrap();
        secret.set_sensitive(true);
        req.headers_mut().insert(header::AUTHORIZATION, secret);
        assert!(!buffer.is_unique());

        let (parts, ()) = req.into_parts();
        let token = UpgradeToken::new("websocket").unwrap();
        let req = UpgradeRequest::new(parts, token, Bytes::new(), Tracker::new().signal());
        assert!(
            buffer.is_unique(),
            "the request still holds the read buffer"
        );
        assert_eq!(req.uri(), "/chat?room=1");
        assert_eq!(req.headers()[header::UPGRADE], "websocket");
        assert!(req.headers()[header::AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn every_form_of_the_head_survives_the_copy() {
        let token = UpgradeToken::new("websocket").unwrap();
        for uri in [
            "/",
            "*",
            "/a/b?c=d&e",
            "http://example.com:8080/x?y",
            "example.com:443",
        ] {
            let mut req = http::Request::new(());
            *req.uri_mut() = uri.parse().unwrap();
            req.headers_mut()
                .append("x-multi", HeaderValue::from_static("one"));
            req.headers_mut()
                .append("x-multi", HeaderValue::from_static(""));
            req.headers_mut()
                .append("x-multi", HeaderValue::from_static("three"));
            req.headers_mut()
                .insert(header::HOST, HeaderValue::from_static("example.com"));
            let (parts, ()) = req.into_parts();
            let req =
                UpgradeRequest::new(parts, token.clone(), Bytes::new(), Tracker::new().signal());
            assert_eq!(
                req.uri().to_string(),
                uri.parse::<http::Uri>().unwrap().to_string()
            );
            let multi: Vec<_> = req.headers().get_all("x-multi").iter().collect();
            assert_eq!(multi, ["one", "", "three"], "{uri}");
            assert_eq!(req.headers()[header::HOST], "example.com");
        }
    }
}
