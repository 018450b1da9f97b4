//! Protocol handlers: the trait, its two steps, what they decide, and the closure form.

mod handler_fn;
mod rejection;
mod request;

use std::future::Future;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderValue, IntoHeaderName};

use crate::error::BoxError;
use crate::io::UpgradedIo;

#[allow(unused_imports)] // for the protocol modules
pub(crate) use self::handler_fn::ServeResult;
pub use self::handler_fn::{HandlerFn, IntoServeResult, handler_fn};
pub use self::rejection::Rejection;
pub use self::request::UpgradeRequest;

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

    /// Whether the handler needs the service the layer wraps: a protocol that carries HTTP
    /// requests on the upgraded connection (h2c) does.
    ///
    /// When it does, the request head that [`accept`](ProtocolHandler::accept) sees, and the
    /// [`UpgradeRequest`] that [`serve`](ProtocolHandler::serve) gets, carry a
    /// [`ServiceHandle`](crate::ServiceHandle) in their extensions. Building it costs a clone
    /// of the service and two small allocations per upgrade request, so it is only built
    /// for handlers that ask.
    ///
    /// The default is `false`.
    fn needs_service(&self) -> bool {
        false
    }

    /// Decides, from the request head, whether to switch. Runs before the `101`.
    fn accept(&self, req: &http::request::Parts) -> Decision<Self::State>;

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
