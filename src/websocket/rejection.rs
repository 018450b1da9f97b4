//! Why a WebSocket handshake was refused: one type per cause, and [`WebSocketRejection`]
//! for any of them.
//!
//! Every rejection has a status, a short plain-text body that names the problem, and
//! sometimes headers (`Allow`, `Sec-WebSocket-Version`). The handler answers with it before
//! any switch, so the connection stays HTTP. See the status table in the
//! [module docs](crate::websocket).

use std::fmt;

use http::header::{self, HeaderValue};
use http::{StatusCode, Version};

use crate::Rejection;

/// Defines one zero-sized rejection type (axum's shape): `status()`, `body_text()`,
/// `Display` equal to the body, and `Error`.
macro_rules! define_rejection {
    (
        #[status = $status:ident]
        #[body = $body:literal]
        $(#[$m:meta])*
        pub struct $name:ident;
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $name;

        impl $name {
            /// The status code of the response.
            #[must_use]
            pub fn status(&self) -> StatusCode {
                StatusCode::$status
            }

            /// The plain-text body of the response.
            #[must_use]
            pub fn body_text(&self) -> &'static str {
                $body
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad($body)
            }
        }

        impl std::error::Error for $name {}
    };
}

define_rejection! {
    #[status = METHOD_NOT_ALLOWED]
    #[body = "WebSocket upgrade requires the GET method"]
    /// The upgrade request's method is not `GET` (RFC 6455 §4.1): `405`, with `Allow: GET`.
    pub struct MethodNotGet;
}

define_rejection! {
    #[status = BAD_REQUEST]
    #[body = "missing Sec-WebSocket-Key header"]
    /// The request has no `Sec-WebSocket-Key` (RFC 6455 §4.2.1 item 5): `400`.
    pub struct MissingWebSocketKey;
}

define_rejection! {
    #[status = BAD_REQUEST]
    #[body = "Sec-WebSocket-Key header must appear once"]
    /// The request has more than one `Sec-WebSocket-Key` (RFC 6455 §11.3.1): `400`.
    pub struct RepeatedWebSocketKey;
}

define_rejection! {
    #[status = BAD_REQUEST]
    #[body = "invalid Sec-WebSocket-Key header: expected the base64 encoding of 16 bytes"]
    /// `Sec-WebSocket-Key` is not the base64 encoding of exactly 16 bytes (RFC 6455 §4.1):
    /// `400`.
    pub struct InvalidWebSocketKey;
}

define_rejection! {
    #[status = BAD_REQUEST]
    #[body = "missing Sec-WebSocket-Version header"]
    /// The request has no `Sec-WebSocket-Version` (RFC 6455 §4.2.1 item 6): `400`.
    pub struct MissingWebSocketVersion;
}

define_rejection! {
    #[status = BAD_REQUEST]
    #[body = "Sec-WebSocket-Version header must appear once"]
    /// The request has more than one `Sec-WebSocket-Version` (RFC 6455 §11.3.5): `400`.
    pub struct RepeatedWebSocketVersion;
}

define_rejection! {
    #[status = UPGRADE_REQUIRED]
    #[body = "unsupported WebSocket version: this server speaks version 13"]
    /// `Sec-WebSocket-Version` is not `13` (RFC 6455 §4.4): `426`, with
    /// `Sec-WebSocket-Version: 13`, `Upgrade: websocket` and `Connection: upgrade`.
    ///
    /// Over HTTP/2 (RFC 8441) the status is `400` with `sec-websocket-version: 13`, since
    /// HTTP/2 has no `Upgrade`.
    pub struct UnsupportedWebSocketVersion;
}

define_rejection! {
    #[status = FORBIDDEN]
    #[body = "cross-origin WebSocket request refused: Origin not allowed"]
    /// The request's `Origin` is not allowed by the handler's
    /// [`OriginPolicy`](super::OriginPolicy): `403`.
    ///
    /// This is the defence against cross-site WebSocket hijacking: a browser sends cookies
    /// with a WebSocket handshake from any page, and tells the server which page in
    /// `Origin`.
    pub struct ForbiddenOrigin;
}

define_rejection! {
    #[status = BAD_REQUEST]
    #[body = "invalid Sec-WebSocket-Protocol header: expected a list of tokens"]
    /// `Sec-WebSocket-Protocol` is not a comma-separated list of tokens (RFC 6455 §4.1):
    /// `400`.
    pub struct InvalidWebSocketProtocol;
}

define_rejection! {
    #[status = BAD_REQUEST]
    #[body = "no supported WebSocket subprotocol offered in Sec-WebSocket-Protocol"]
    /// The handler [requires a subprotocol](super::WebSocketHandler::require_protocol) and
    /// none of the client's (if any) was selected: `400`.
    pub struct NoMatchingProtocol;
}

/// Any reason a WebSocket handshake was refused.
///
/// See the status table in the [module docs](crate::websocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebSocketRejection {
    /// See [`MethodNotGet`].
    MethodNotGet(MethodNotGet),
    /// See [`MissingWebSocketKey`].
    MissingWebSocketKey(MissingWebSocketKey),
    /// See [`RepeatedWebSocketKey`].
    RepeatedWebSocketKey(RepeatedWebSocketKey),
    /// See [`InvalidWebSocketKey`].
    InvalidWebSocketKey(InvalidWebSocketKey),
    /// See [`MissingWebSocketVersion`].
    MissingWebSocketVersion(MissingWebSocketVersion),
    /// See [`RepeatedWebSocketVersion`].
    RepeatedWebSocketVersion(RepeatedWebSocketVersion),
    /// See [`UnsupportedWebSocketVersion`].
    UnsupportedWebSocketVersion(UnsupportedWebSocketVersion),
    /// See [`ForbiddenOrigin`].
    ForbiddenOrigin(ForbiddenOrigin),
    /// See [`InvalidWebSocketProtocol`].
    InvalidWebSocketProtocol(InvalidWebSocketProtocol),
    /// See [`NoMatchingProtocol`].
    NoMatchingProtocol(NoMatchingProtocol),
}

macro_rules! composite {
    ($($variant:ident),* $(,)?) => {
        impl WebSocketRejection {
            /// The status code of the response (over HTTP/1.1).
            #[must_use]
            pub fn status(&self) -> StatusCode {
                match self {
                    $(Self::$variant(inner) => inner.status(),)*
                }
            }

            /// The plain-text body of the response.
            #[must_use]
            pub fn body_text(&self) -> &'static str {
                match self {
                    $(Self::$variant(inner) => inner.body_text(),)*
                }
            }
        }

        $(
            impl From<$variant> for WebSocketRejection {
                fn from(inner: $variant) -> Self {
                    Self::$variant(inner)
                }
            }
        )*

        // Transparent, as axum's composite rejections are: `Display` is the inner
        // rejection's, so `source()` is the inner's source (none), not the inner itself,
        // which would print the same text twice in an error chain.
        impl std::error::Error for WebSocketRejection {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    $(Self::$variant(inner) => inner.source(),)*
                }
            }
        }
    };
}

composite!(
    MethodNotGet,
    MissingWebSocketKey,
    RepeatedWebSocketKey,
    InvalidWebSocketKey,
    MissingWebSocketVersion,
    RepeatedWebSocketVersion,
    UnsupportedWebSocketVersion,
    ForbiddenOrigin,
    InvalidWebSocketProtocol,
    NoMatchingProtocol,
);

impl fmt::Display for WebSocketRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.body_text())
    }
}

const VERSION_13: HeaderValue = HeaderValue::from_static("13");

impl WebSocketRejection {
    /// The response for a request of this HTTP version: status, body and headers.
    pub(crate) fn into_rejection(self, version: Version) -> Rejection {
        let http2 = version == Version::HTTP_2;
        let status = match self {
            // RFC 8441 §5: HTTP/2 has no `Upgrade`, so no 426.
            Self::UnsupportedWebSocketVersion(_) if http2 => StatusCode::BAD_REQUEST,
            _ => self.status(),
        };
        let mut body = String::with_capacity(self.body_text().len() + 1);
        body.push_str(self.body_text());
        body.push('\n');
        let mut rejection = Rejection::new(status, body);
        match self {
            Self::MethodNotGet(_) => {
                let allow = if http2 { "CONNECT" } else { "GET" };
                rejection = rejection.header(header::ALLOW, HeaderValue::from_static(allow));
            }
            Self::UnsupportedWebSocketVersion(_) => {
                rejection = rejection.header(header::SEC_WEBSOCKET_VERSION, VERSION_13);
                if !http2 {
                    rejection = rejection
                        .header(header::UPGRADE, HeaderValue::from_static("websocket"))
                        .header(header::CONNECTION, HeaderValue::from_static("upgrade"));
                }
            }
            _ => {}
        }
        rejection
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl axum_core::response::IntoResponse for WebSocketRejection {
    /// The HTTP/1.1 response: status, headers and plain-text body as in the status table.
    fn into_response(self) -> axum_core::response::Response {
        self.into_rejection(Version::HTTP_11)
            .into_response()
            .map(axum_core::body::Body::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_equals_body() {
        let r = WebSocketRejection::from(InvalidWebSocketKey);
        assert_eq!(r.to_string(), InvalidWebSocketKey.body_text());
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn error_chain_prints_the_rejection_once() {
        use std::error::Error as _;
        let r = WebSocketRejection::from(ForbiddenOrigin);
        assert_eq!(r.to_string(), ForbiddenOrigin.body_text());
        assert!(r.source().is_none());
    }

    #[test]
    fn version_mismatch_is_426_over_http1_and_400_over_http2() {
        let r = WebSocketRejection::from(UnsupportedWebSocketVersion);
        let h1 = r.into_rejection(Version::HTTP_11);
        assert_eq!(h1.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(h1.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(h1.headers()[header::UPGRADE], "websocket");
        assert_eq!(h1.headers()[header::CONNECTION], "upgrade");
        let h2 = r.into_rejection(Version::HTTP_2);
        assert_eq!(h2.status(), StatusCode::BAD_REQUEST);
        assert_eq!(h2.headers()[header::SEC_WEBSOCKET_VERSION], "13");
        assert!(h2.headers().get(header::UPGRADE).is_none());
    }

    #[test]
    fn method_rejection_names_the_allowed_method() {
        let r = WebSocketRejection::from(MethodNotGet).into_rejection(Version::HTTP_11);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET");
        assert_eq!(r.reason(), "WebSocket upgrade requires the GET method\n");
    }

    #[cfg(feature = "axum")]
    #[test]
    fn into_response_is_the_http1_response() {
        use axum_core::response::IntoResponse;
        let res = WebSocketRejection::from(MethodNotGet).into_response();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()[header::ALLOW], "GET");
    }
}
