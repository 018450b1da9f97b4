//! [`ResponseBody`]: the response body of [`Upgrade`](crate::Upgrade).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// Response body for [`Upgrade`](crate::Upgrade): the inner service's body, or the
    /// layer's own short text (a `101` has none; a `400`, `426`, `503`, ... has a one-line
    /// plain-text reason).
    ///
    /// It asks nothing of the inner body but to be a [`Body`], and it implements
    /// [`Default`] (an empty body), so the layer sits on either side of tower-http layers
    /// that change the body type (`CompressionLayer`, `TraceLayer`, ...) or need a default
    /// one (`CorsLayer`), as [`tower_http::limit::ResponseBody`] does.
    ///
    /// Its data is [`Bytes`]: the inner body's chunks are handed on with
    /// [`Buf::copy_to_bytes`], which for a body of [`Bytes`] (hyper's, axum's,
    /// `Full<Bytes>`, ...) moves the chunk without copying it.
    ///
    /// [`tower_http::limit::ResponseBody`]: https://docs.rs/tower-http/latest/tower_http/limit/struct.ResponseBody.html
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Text { text: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    /// The inner service's body.
    #[inline]
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A body of the layer's own.
    pub(crate) fn text(text: Bytes) -> Self {
        Self {
            kind: Kind::Text {
                text: (!text.is_empty()).then_some(text),
            },
        }
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self {
            kind: Kind::Text { text: None },
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx).map(|frame| {
                frame.map(|frame| frame.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining()))))
            }),
            KindProj::Text { text } => Poll::Ready(text.take().map(|t| Ok(Frame::data(t)))),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Text { text } => text.is_none(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Text { text } => {
                SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64))
            }
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Text { .. } => "Text",
        };
        f.debug_struct("ResponseBody")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn text_and_inner_bodies_read_back() {
        let text = ResponseBody::<Full<Bytes>>::text(Bytes::from_static(b"no\n"));
        assert_eq!(text.size_hint().exact(), Some(3));
        assert_eq!(text.collect().await.unwrap().to_bytes(), "no\n");

        let empty = ResponseBody::<Full<Bytes>>::default();
        assert!(empty.is_end_stream());
        assert_eq!(empty.collect().await.unwrap().to_bytes(), "");

        // A body whose chunks are not `Bytes`.
        let inner = ResponseBody::inner(Full::new(&b"hello"[..]));
        assert_eq!(inner.size_hint().exact(), Some(5));
        assert_eq!(inner.collect().await.unwrap().to_bytes(), "hello");
    }
}
