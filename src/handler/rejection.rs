//! [`Rejection`]: a complete response instead of the `101`.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue, IntoHeaderName};
use http::{Response, StatusCode};

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
