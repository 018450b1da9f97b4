//! Serving the wrapped service over HTTP/2 after the switch.

use std::any::{Any, TypeId};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Method, Request, Response, request};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::io::H2cIo;
use super::{H2c, MAX_HEADER_LIST_SIZE, frames};
use crate::error::BoxError;
use crate::handler::{Decision, ProtocolHandler, UpgradeRequest};
use crate::io::UpgradedIo;
use crate::registry::{Serve, ServeFuture};
use crate::service::Upgrade;

/// A user-supplied conversion from hyper's body, erased: an
/// `Arc<dyn Fn(Incoming) -> B + Send + Sync>` for some `B`, found again by downcasting.
pub(super) type AnyConvert = Arc<dyn Any + Send + Sync>;

/// A conversion to `B`, typed; what [`AnyConvert`] holds.
type Convert<B> = Arc<dyn Fn(Incoming) -> B + Send + Sync>;

pub(super) fn erase_convert<B, F>(f: F) -> AnyConvert
where
    F: Fn(Incoming) -> B + Send + Sync + 'static,
    B: 'static,
{
    let f: Convert<B> = Arc::new(f);
    Arc::new(f)
}

/// How hyper's [`Incoming`] becomes the service's request body; chosen once per connection,
/// so that each request costs no allocation of ours.
enum IntoBody<B> {
    /// `B` is [`Incoming`].
    Identity,
    /// `B` is axum's `Body`.
    #[cfg(feature = "axum")]
    Axum,
    /// The user's conversion.
    Custom(Convert<B>),
}

impl<B: 'static> IntoBody<B> {
    fn select(h2c: &H2c) -> Option<Self> {
        if let Some(f) = h2c
            .convert
            .as_ref()
            .and_then(|f| f.downcast_ref::<Convert<B>>())
        {
            return Some(Self::Custom(Arc::clone(f)));
        }
        if TypeId::of::<B>() == TypeId::of::<Incoming>() {
            return Some(Self::Identity);
        }
        #[cfg(feature = "axum")]
        if TypeId::of::<B>() == TypeId::of::<axum_core::body::Body>() {
            return Some(Self::Axum);
        }
        None
    }

    fn convert(&self, body: Incoming) -> B {
        match self {
            Self::Identity => cast(body),
            #[cfg(feature = "axum")]
            Self::Axum => cast(axum_core::body::Body::new(body)),
            Self::Custom(f) => f(body),
        }
    }
}

impl<B> Clone for IntoBody<B> {
    fn clone(&self) -> Self {
        match self {
            Self::Identity => Self::Identity,
            #[cfg(feature = "axum")]
            Self::Axum => Self::Axum,
            Self::Custom(f) => Self::Custom(Arc::clone(f)),
        }
    }
}

/// Moves a `T` into a `U` when they are the same type, without allocating.
fn cast<T: 'static, U: 'static>(value: T) -> U {
    let mut slot = Some(value);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
        .expect("body type checked when the connection started")
}

/// The h2c step of [`Upgrade::switch`]: decides like [`H2c::accept`] and, when it accepts,
/// binds a clone of the whole [`Upgrade`] service into the `serve` step, which serves it
/// over HTTP/2 on the upgraded connection.
pub(crate) fn accept<S, ReqBody, ResBody>(
    h2c: &Arc<H2c>,
    parts: &request::Parts,
    service: &Upgrade<S>,
) -> Decision<Serve>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: http_body::Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body + From<Bytes> + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    let Some(into_body) = IntoBody::<ReqBody>::select(h2c) else {
        h2c.report_missing_conversion(std::any::type_name::<ReqBody>());
        return Decision::Decline;
    };
    h2c.accept(parts).map(|handshake| {
        let h2c = Arc::clone(h2c);
        let service = service.clone();
        Box::new(move |io: UpgradedIo, req: UpgradeRequest| {
            Box::pin(serve(h2c, service, into_body, io, req, handshake.settings)) as ServeFuture
        }) as Serve
    })
}

async fn serve<S, ReqBody, ResBody>(
    h2c: Arc<H2c>,
    service: Upgrade<S>,
    into_body: IntoBody<ReqBody>,
    io: UpgradedIo,
    req: UpgradeRequest,
    settings: Bytes,
) -> Result<(), BoxError>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: http_body::Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: http_body::Body + From<Bytes> + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Into<BoxError>,
{
    let stream1 = frames::stream1(&req.parts, &req.body);
    let io = H2cIo::new(io, settings, stream1, req.body.len(), h2c.preface_timeout);
    let shutdown = req.shutdown().clone();
    drop(req);
    let service = H2cService { service, into_body };
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // As `axum::serve` does: RFC 8441 extended CONNECT reaches the layer, so WebSocket
        // over HTTP/2 works on an upgraded connection too.
        .enable_connect_protocol()
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    // Graceful shutdown: GOAWAY, then finish the streams in flight.
    tokio::select! {
        result = conn.as_mut() => return result.map_err(Into::into),
        () = shutdown.fired() => conn.as_mut().graceful_shutdown(),
    }
    conn.await.map_err(Into::into)
}

/// The [`Upgrade`] service as hyper's HTTP/2 server calls it.
struct H2cService<S, B> {
    service: Upgrade<S>,
    into_body: IntoBody<B>,
}

impl<S, ReqBody, ResBody> hyper::service::Service<Request<Incoming>> for H2cService<S, ReqBody>
where
    Upgrade<S>: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: 'static,
{
    type Response = Response<H2cBody<ResBody>>;
    type Error = <Upgrade<S> as Service<Request<ReqBody>>>::Error;
    type Future = H2cFuture<Upgrade<S>, ReqBody>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let head = req.method() == Method::HEAD;
        let req = req.map(|body| self.into_body.convert(body));
        H2cFuture {
            head,
            state: State::Ready {
                service: self.service.clone(),
                req: Some(req),
            },
        }
    }
}

pin_project! {
    /// Waits for the service to be ready, then calls it: a tower `Oneshot`, unboxed.
    struct H2cFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        head: bool,
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Ready { service: S, req: Option<Request<B>> },
        Call { #[pin] future: S::Future },
    }
}

impl<S, B, ResBody> Future for H2cFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<H2cBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Ready { service, req } => {
                    ready!(service.poll_ready(cx))?;
                    let req = req.take().expect("future polled after completion");
                    let future = service.call(req);
                    this.state.set(State::Call { future });
                }
                StateProj::Call { future } => {
                    let res = ready!(future.poll(cx))?;
                    let head = *this.head;
                    return Poll::Ready(Ok(res.map(|body| {
                        // hyper's HTTP/2 server sends whatever body it gets, also for HEAD.
                        if head {
                            H2cBody::Empty
                        } else {
                            H2cBody::Body { body }
                        }
                    })));
                }
            }
        }
    }
}

pin_project! {
    /// The response body: the service's, or none for a `HEAD` request.
    #[project = H2cBodyProj]
    enum H2cBody<B> {
        Body { #[pin] body: B },
        Empty,
    }
}

impl<B: Body> Body for H2cBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project() {
            H2cBodyProj::Body { body } => body.poll_frame(cx),
            H2cBodyProj::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Body { body } => body.is_end_stream(),
            Self::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Body { body } => body.size_hint(),
            Self::Empty => SizeHint::with_exact(0),
        }
    }
}
