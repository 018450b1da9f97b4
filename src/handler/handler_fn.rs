//! [`handler_fn`]: a protocol handler made from a closure.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use http::request;

use super::{Accepted, Decision, ProtocolHandler, UpgradeRequest};
use crate::error::BoxError;
use crate::io::UpgradedIo;

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
/// [`Accepted::read_body`](crate::Accepted::read_body)); the closure gets the upgraded connection and the request.
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
