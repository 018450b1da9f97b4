//! The response future of [`Upgrade`](crate::Upgrade).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

/// The response of an upgrade that first reads the request body; boxed once per upgrade.
pub(crate) type UpgradeFuture<B> = Pin<Box<dyn Future<Output = Response<ResponseBody<B>>> + Send>>;

pin_project! {
    /// Response future for [`Upgrade`](crate::Upgrade).
    ///
    /// For a request that is not switched this is the inner service's future, unboxed; its
    /// response body is wrapped in [`ResponseBody`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Future { #[pin] future: F },
        Ready { response: Option<Response<ResponseBody<B>>> },
        Upgrade { future: UpgradeFuture<B> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn future(future: F) -> Self {
        Self {
            kind: Kind::Future { future },
        }
    }

    pub(crate) fn ready(response: Response<ResponseBody<B>>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    pub(crate) fn upgrade(future: UpgradeFuture<B>) -> Self {
        Self {
            kind: Kind::Upgrade { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Future { future } => future
                .poll(cx)
                .map(|res| res.map(|res| res.map(ResponseBody::inner))),
            KindProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("future polled after completion")))
            }
            KindProj::Upgrade { future } => Poll::Ready(Ok(ready!(future.as_mut().poll(cx)))),
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Future { .. } => "Future",
            Kind::Ready { .. } => "Ready",
            Kind::Upgrade { .. } => "Upgrade",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}
