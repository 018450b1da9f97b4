//! Serving the wrapped service over HTTP/2 after the switch, through the
//! [`ServiceHandle`] the layer hands to handlers that need it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::io::H2cIo;
use super::{H2c, frames};
use crate::{BoxBody, BoxError, HttpService, ServiceHandle, UpgradeRequest, UpgradedIo};

/// A user-supplied conversion from hyper's body to the service's, with its body type
/// erased.
#[derive(Clone)]
pub(super) struct Convert {
    /// Whether the service's request body is the one this conversion makes.
    fits: fn(&ServiceHandle) -> bool,
    /// The service, taking hyper's body and converting it.
    make: Arc<dyn Fn(&ServiceHandle) -> Option<HttpService<Incoming>> + Send + Sync>,
    /// The body type made, for diagnostics.
    pub(super) body_name: &'static str,
}

impl Convert {
    pub(super) fn new<B, F>(f: F) -> Self
    where
        F: Fn(Incoming) -> B + Send + Sync + 'static,
        B: 'static,
    {
        let f = Arc::new(f);
        Self {
            fits: ServiceHandle::is_request_body::<B>,
            make: Arc::new(move |handle: &ServiceHandle| {
                let f = Arc::clone(&f);
                handle.service_with(move |body: Incoming| f(body))
            }),
            body_name: std::any::type_name::<B>(),
        }
    }
}

/// Whether the service's request body can be made from hyper's: it is hyper's [`Incoming`]
/// itself, axum's body (with the `axum` feature), or the body of the user's conversion.
pub(super) fn can_serve(h2c: &H2c, handle: &ServiceHandle) -> bool {
    h2c.convert.as_ref().is_some_and(|c| (c.fits)(handle))
        || handle.is_request_body::<Incoming>()
        || is_axum_body(handle)
}

#[cfg(feature = "axum")]
fn is_axum_body(handle: &ServiceHandle) -> bool {
    handle.is_request_body::<axum_core::body::Body>()
}

#[cfg(not(feature = "axum"))]
fn is_axum_body(_handle: &ServiceHandle) -> bool {
    false
}

/// The wrapped service, taking hyper's body; chosen once per connection, so that a request
/// costs no conversion of ours beyond the body's own wrapper.
fn service(h2c: &H2c, handle: &ServiceHandle) -> Option<HttpService<Incoming>> {
    if let Some(convert) = h2c.convert.as_ref().filter(|c| (c.fits)(handle)) {
        return (convert.make)(handle);
    }
    if handle.is_request_body::<Incoming>() {
        return handle.service::<Incoming>();
    }
    #[cfg(feature = "axum")]
    if is_axum_body(handle) {
        return handle.service_with(axum_core::body::Body::new::<Incoming>);
    }
    None
}

/// Runs the HTTP/2 connection: stream 1 replays the upgrade request, later streams are the
/// client's own; every request goes to the wrapped service through the handle.
pub(super) async fn serve(
    h2c: Arc<H2c>,
    io: UpgradedIo,
    req: UpgradeRequest,
    settings: Bytes,
) -> Result<(), BoxError> {
    let handle = req
        .extensions()
        .get::<ServiceHandle>()
        .ok_or("h2c is served by the `Upgrade` layer, which hands it the wrapped service")?;
    let service = service(&h2c, handle).ok_or_else(|| {
        format!(
            "h2c cannot make the request body `{}` from hyper's `Incoming`",
            handle.request_body_type_name()
        )
    })?;
    let stream1 = frames::stream1(req.parts(), req.body());
    let io = H2cIo::new(io, settings, stream1, req.body().len(), h2c.preface_timeout);
    let shutdown = req.shutdown().clone();
    // The request head, and the handle in it, are not kept for the connection's life.
    drop(req);
    let limits = h2c.limits;
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // As `axum::serve` does: RFC 8441 extended CONNECT reaches the layer, so WebSocket
        // over HTTP/2 works on an upgraded connection too.
        .enable_connect_protocol()
        // Set rather than left to hyper's defaults, which "could change": see `H2c`.
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_size)
        .max_frame_size(limits.max_frame_size)
        .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.max_local_error_reset_streams)
        .serve_connection(TokioIo::new(io), H2cService { service });
    let mut conn = std::pin::pin!(conn);
    // Graceful shutdown: GOAWAY, then finish the streams in flight.
    tokio::select! {
        result = conn.as_mut() => return result.map_err(Into::into),
        () = shutdown.fired() => conn.as_mut().graceful_shutdown(),
    }
    conn.await.map_err(Into::into)
}

/// The wrapped service as hyper's HTTP/2 server calls it: a `HEAD` gets no body.
struct H2cService {
    service: HttpService<Incoming>,
}

impl hyper::service::Service<Request<Incoming>> for H2cService {
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = H2cFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        H2cFuture {
            head: req.method() == Method::HEAD,
            future: hyper::service::Service::call(&self.service, req),
        }
    }
}

struct H2cFuture {
    head: bool,
    future: <HttpService<Incoming> as hyper::service::Service<Request<Incoming>>>::Future,
}

impl Future for H2cFuture {
    type Output = Result<Response<BoxBody>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut res = ready!(self.future.as_mut().poll(cx))?;
        // hyper's HTTP/2 server sends whatever body it gets, also for HEAD.
        if self.head {
            *res.body_mut() = BoxBody::default();
        }
        Poll::Ready(Ok(res))
    }
}
