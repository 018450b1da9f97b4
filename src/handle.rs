//! [`ServiceHandle`]: the wrapped service, type-erased, for handlers that carry HTTP
//! requests on the upgraded connection.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tower_service::Service;

use crate::error::BoxError;

/// The response body of an [`HttpService`]: any body, boxed.
pub type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// The future of an [`HttpService`]; boxed once per request.
type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, BoxError>> + Send>>;

/// A type-erased handle to the service the layer wraps, for a
/// [`ProtocolHandler`](crate::ProtocolHandler) that carries HTTP requests on the upgraded
/// connection (h2c does: it serves the app over HTTP/2).
///
/// A handler asks for it with
/// [`ProtocolHandler::needs_service`](crate::ProtocolHandler::needs_service). The layer then
/// puts a handle in the extensions of the request head that
/// [`accept`](crate::ProtocolHandler::accept) sees and that
/// [`serve`](crate::ProtocolHandler::serve) gets in its [`UpgradeRequest`](crate::UpgradeRequest),
/// and takes it out again if the handler rejects or declines.
///
/// The handle serves requests through the layer itself and everything it wraps, so
/// upgrades on those requests (an RFC 8441 WebSocket on an HTTP/2 stream) work as on the
/// first connection. Its request body type is the wrapped service's: check it in `accept`
/// with [`is_request_body`](Self::is_request_body), then get a service with
/// [`service`](Self::service), or with [`service_with`](Self::service_with) and a
/// conversion from the body you have.
///
/// Cloning is cheap (an [`Arc`] inside); every service made from the handle calls a clone
/// of the wrapped service.
///
/// # Example
///
/// A made-up protocol that carries HTTP/1.1 requests on the upgraded connection and
/// answers them with the app the layer wraps:
///
/// ```
/// use std::sync::Arc;
/// use http::request::Parts;
/// use hyper::body::Incoming;
/// use hyper_util::rt::TokioIo;
/// use tower_upgrade::{
///     Accepted, BoxError, Decision, ProtocolHandler, ServiceHandle, UpgradeLayer,
///     UpgradeRequest, UpgradedIo,
/// };
///
/// struct Tunnel;
///
/// impl ProtocolHandler for Tunnel {
///     type State = ();
///
///     fn token(&self) -> &str {
///         "tunnel"
///     }
///
///     fn needs_service(&self) -> bool {
///         true
///     }
///
///     fn accept(&self, req: &Parts) -> Decision<()> {
///         match req.extensions.get::<ServiceHandle>() {
///             // The app must take hyper's request body as it is.
///             Some(handle) if handle.is_request_body::<Incoming>() => Accepted::new(()).into(),
///             _ => Decision::Decline,
///         }
///     }
///
///     async fn serve(
///         self: Arc<Self>,
///         io: UpgradedIo,
///         req: UpgradeRequest,
///         (): (),
///     ) -> Result<(), BoxError> {
///         let handle = req.extensions().get::<ServiceHandle>().expect("asked for");
///         let app = handle.service::<Incoming>().expect("checked in accept");
///         hyper::server::conn::http1::Builder::new()
///             .serve_connection(TokioIo::new(io), app)
///             .await?;
///         Ok(())
///     }
/// }
///
/// let layer = UpgradeLayer::new().protocol(Tunnel).unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct ServiceHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    /// An `HttpService<B>` for the wrapped service's request body `B`. Behind a lock only so
    /// that the handle is `Sync` (request extensions must be) without asking the wrapped
    /// service to be; it is locked to clone the service, once per service made.
    service: Mutex<Box<dyn Any + Send>>,
    body: TypeId,
    body_name: &'static str,
}

impl ServiceHandle {
    /// Erases `service`, whose request body is `B`.
    pub(crate) fn new<S, B, ResBody>(service: S) -> Self
    where
        S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Send + 'static,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let service = HttpService::<B> {
            inner: Box::new(Erased(service)),
        };
        Self {
            inner: Arc::new(HandleInner {
                service: Mutex::new(Box::new(service)),
                body: TypeId::of::<B>(),
                body_name: std::any::type_name::<B>(),
            }),
        }
    }

    /// Whether the wrapped service's request body type is `B`.
    #[must_use]
    pub fn is_request_body<B: 'static>(&self) -> bool {
        self.inner.body == TypeId::of::<B>()
    }

    /// The name of the wrapped service's request body type, for diagnostics.
    #[must_use]
    pub fn request_body_type_name(&self) -> &'static str {
        self.inner.body_name
    }

    /// The wrapped service, if its request body type is `B`.
    #[must_use]
    pub fn service<B: 'static>(&self) -> Option<HttpService<B>> {
        let service = self
            .inner
            .service
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        service.downcast_ref::<HttpService<B>>().cloned()
    }

    /// The wrapped service, taking requests whose body is `T` and converting it with `f`,
    /// if the wrapped service's request body type is `B`.
    ///
    /// The conversion costs no allocation per request.
    #[must_use]
    pub fn service_with<T, B, F>(&self, f: F) -> Option<HttpService<T>>
    where
        T: 'static,
        B: 'static,
        F: Fn(T) -> B + Clone + Send + 'static,
    {
        let inner = self.service::<B>()?;
        Some(HttpService {
            inner: Box::new(MapBody { inner, f }),
        })
    }
}

impl fmt::Debug for ServiceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("request_body", &self.inner.body_name)
            .finish_non_exhaustive()
    }
}

/// The wrapped service, for requests with body `B`: made from a [`ServiceHandle`].
///
/// It is a tower [`Service`] and a hyper
/// [`Service`](hyper::service::Service), so it can be handed to hyper's connection
/// builders as it is. Every call waits for a clone of the wrapped service to be ready and
/// calls it, and boxes the future and the response body (the handle is type-erased); it is
/// always ready itself.
pub struct HttpService<B> {
    inner: Box<dyn DynService<B>>,
}

impl<B> HttpService<B> {
    fn oneshot(&self, req: Request<B>) -> BoxFuture {
        self.inner.oneshot(req)
    }
}

impl<B> Clone for HttpService<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone_box(),
        }
    }
}

impl<B> fmt::Debug for HttpService<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpService").finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for HttpService<B> {
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, BoxError>> + Send>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.oneshot(req)
    }
}

impl<B> hyper::service::Service<Request<B>> for HttpService<B> {
    type Response = Response<BoxBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<BoxBody>, BoxError>> + Send>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        self.oneshot(req)
    }
}

trait DynService<B>: Send {
    fn clone_box(&self) -> Box<dyn DynService<B>>;
    fn oneshot(&self, req: Request<B>) -> BoxFuture;
}

struct Erased<S>(S);

impl<S, B, ResBody> DynService<B> for Erased<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    fn clone_box(&self) -> Box<dyn DynService<B>> {
        Box::new(Self(self.0.clone()))
    }

    fn oneshot(&self, req: Request<B>) -> BoxFuture {
        let mut service = self.0.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let res = service.call(req).await.map_err(Into::into)?;
            Ok(res.map(|body| body.map_err(Into::into).boxed_unsync()))
        })
    }
}

struct MapBody<B, F> {
    inner: HttpService<B>,
    f: F,
}

impl<T, B, F> DynService<T> for MapBody<B, F>
where
    B: 'static,
    T: 'static,
    F: Fn(T) -> B + Clone + Send + 'static,
{
    fn clone_box(&self) -> Box<dyn DynService<T>> {
        Box::new(Self {
            inner: self.inner.clone(),
            f: self.f.clone(),
        })
    }

    fn oneshot(&self, req: Request<T>) -> BoxFuture {
        self.inner.oneshot(req.map(&self.f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::convert::Infallible;

    #[derive(Clone)]
    struct Echo;

    impl Service<Request<String>> for Echo {
        type Response = Response<Full<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<String>) -> Self::Future {
            std::future::ready(Ok(Response::new(Full::from(req.into_body()))))
        }
    }

    #[tokio::test]
    async fn serves_through_the_handle_with_and_without_a_conversion() {
        let handle = ServiceHandle::new::<_, String, _>(Echo);
        assert!(handle.is_request_body::<String>());
        assert!(!handle.is_request_body::<Bytes>());
        assert!(handle.request_body_type_name().contains("String"));
        assert!(handle.service::<Bytes>().is_none());

        let mut service = handle.service::<String>().unwrap();
        let res = service.call(Request::new("one".to_owned())).await.unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "one");

        let service = handle.clone().service_with(|n: u32| n.to_string()).unwrap();
        let res = hyper::service::Service::call(&service, Request::new(42))
            .await
            .unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "42");
        assert!(
            handle
                .service_with(|n: u32| Bytes::from(n.to_string()))
                .is_none()
        );
    }
}
