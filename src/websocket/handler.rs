//! [`WebSocketHandler`]: the `websocket` [`ProtocolHandler`], its builder and the two ways
//! to run a connection ([`Ready`] and [`Raw`]).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Version, request};

use super::config::WebSocketConfig;
use super::handshake::{Handshake, accept_key, check_key, check_version, offered_protocols};
use super::origin::OriginPolicy;
use super::rejection::{ForbiddenOrigin, MethodNotGet, NoMatchingProtocol, WebSocketRejection};
use super::socket::WebSocket;
use crate::handler::ServeResult;
use crate::headers::is_token;
use crate::{
    Accepted, BoxError, ConfigError, Decision, IntoServeResult, ProtocolHandler, UpgradeRequest,
    UpgradedIo,
};

/// A subprotocol selector: gets the request and the client's offers, returns the index of
/// the one to use.
type Selector = Arc<dyn Fn(&request::Parts, &[&str]) -> Option<usize> + Send + Sync>;

/// The `websocket` protocol handler: validates the handshake (RFC 6455 §4.2, RFC 8441),
/// then runs your callback on each connection.
///
/// Built with [`new`](WebSocketHandler::new) (the callback gets a ready [`WebSocket`]) or
/// [`raw`](WebSocketHandler::raw) (it gets the upgraded IO and the [`Handshake`], for your
/// own framing), then registered with
/// [`UpgradeLayer::protocol`](crate::UpgradeLayer::protocol).
///
/// See the [module docs](crate::websocket) for the checks it makes and for examples.
#[must_use]
pub struct WebSocketHandler<C> {
    settings: Settings,
    callback: C,
}

#[derive(Clone, Default)]
struct Settings {
    /// The server's subprotocols, in its order of preference.
    protocols: Vec<HeaderValue>,
    selector: Option<Selector>,
    require_protocol: bool,
    origin: OriginPolicy,
    config: WebSocketConfig,
    no_http2: bool,
    #[cfg(feature = "deflate")]
    deflate: Option<super::DeflateConfig>,
}

/// The callback of a [`WebSocketHandler::new`] handler: gets a ready [`WebSocket`].
#[derive(Clone)]
pub struct Ready<F>(F);

/// The callback of a [`WebSocketHandler::raw`] handler: gets the upgraded IO and the
/// [`Handshake`].
#[derive(Clone)]
pub struct Raw<F>(F);

impl<F> WebSocketHandler<Ready<F>> {
    /// A handler that runs `callback` with a ready [`WebSocket`] and the upgrade request
    /// (its head, and the extensions outer layers set) for each connection.
    ///
    /// The callback may return `()` or `Result<(), E>`; an error is reported to the
    /// layer's [`on_failed_upgrade`](crate::UpgradeLayer::on_failed_upgrade).
    pub fn new<Fut>(callback: F) -> Self
    where
        F: Fn(WebSocket, UpgradeRequest) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoServeResult,
    {
        Self {
            settings: Settings::default(),
            callback: Ready(callback),
        }
    }
}

impl<F> WebSocketHandler<Raw<F>> {
    /// A handler that validates the handshake like [`new`](WebSocketHandler::new), then
    /// runs `callback` with the raw upgraded connection and the negotiated [`Handshake`],
    /// for your own framing.
    ///
    /// [`WebSocket::from_raw_socket`] turns the IO into this crate's [`WebSocket`] after
    /// all, if you change your mind.
    pub fn raw<Fut>(callback: F) -> Self
    where
        F: Fn(UpgradedIo, Handshake, UpgradeRequest) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoServeResult,
    {
        Self {
            settings: Settings::default(),
            callback: Raw(callback),
        }
    }
}

impl<C> WebSocketHandler<C> {
    /// The subprotocols the server speaks, in its order of preference.
    ///
    /// Without a [selector](Self::select_protocol), the first protocol in the client's
    /// `Sec-WebSocket-Protocol` order that is in this list is selected (compared exactly,
    /// as browsers do). When none matches, the `101` carries no `Sec-WebSocket-Protocol`
    /// (RFC 6455 §4.2.2), unless a protocol is [required](Self::require_protocol).
    ///
    /// The default is no subprotocols.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if a name is not an RFC 9110 token.
    pub fn protocols<I>(mut self, protocols: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.settings.protocols = protocols
            .into_iter()
            .map(|p| {
                let p = p.as_ref();
                if !is_token(p.as_bytes()) {
                    return Err(ConfigError::invalid_header(&format!(
                        "subprotocol {p:?} is not a token"
                    )));
                }
                HeaderValue::from_str(p).map_err(|_| ConfigError::invalid_header(p))
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Selects the subprotocol with a callback instead of the [list](Self::protocols).
    ///
    /// `select` gets the request head and the client's offers in its order, and returns
    /// the index of the one to use, or `None`. The index is checked, so the answer is
    /// always one the client offered. It is not called when the client offers none.
    ///
    /// The default is no selector.
    pub fn select_protocol<S>(mut self, select: S) -> Self
    where
        S: Fn(&request::Parts, &[&str]) -> Option<usize> + Send + Sync + 'static,
    {
        self.settings.selector = Some(Arc::new(select));
        self
    }

    /// Refuses, with `400`, a handshake for which no subprotocol was selected.
    ///
    /// The default is to accept it with no subprotocol.
    pub fn require_protocol(mut self) -> Self {
        self.settings.require_protocol = true;
        self
    }

    /// Which `Origin`s may connect. See [`OriginPolicy`].
    ///
    /// The default is [`OriginPolicy::same_origin`].
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.settings.origin = policy;
        self
    }

    /// Accepts only requests without `Origin` and those from one of `origins`; shorthand
    /// for [`OriginPolicy::allow_list`].
    ///
    /// # Errors
    ///
    /// See [`OriginPolicy::allow_list`].
    pub fn allowed_origins<I>(self, origins: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Ok(self.origin_policy(OriginPolicy::allow_list(origins)?))
    }

    /// Accepts any `Origin`, giving up the defence against cross-site WebSocket
    /// hijacking; shorthand for [`OriginPolicy::dangerously_allow_any_origin`], which
    /// says when that is safe.
    pub fn dangerously_allow_any_origin(self) -> Self {
        self.origin_policy(OriginPolicy::dangerously_allow_any_origin())
    }

    /// Limits and buffer sizes of the [`WebSocket`]s. See [`WebSocketConfig`].
    ///
    /// The default is [`WebSocketConfig::default`].
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.settings.config = config;
        self
    }

    /// The largest message accepted; see [`WebSocketConfig::max_message_size`].
    ///
    /// The default value is 64 MiB.
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.settings.config = self.settings.config.max_message_size(max);
        self
    }

    /// The largest frame accepted; see [`WebSocketConfig::max_frame_size`].
    ///
    /// The default value is 16 MiB.
    pub fn max_frame_size(mut self, max: usize) -> Self {
        self.settings.config = self.settings.config.max_frame_size(max);
        self
    }

    /// Bytes read at most at once between frames; see
    /// [`WebSocketConfig::read_buffer_size`].
    ///
    /// The default value is 4 KiB.
    pub fn read_buffer_size(mut self, size: usize) -> Self {
        self.settings.config = self.settings.config.read_buffer_size(size);
        self
    }

    /// Whether to accept WebSockets over HTTP/2 (RFC 8441 extended CONNECT).
    ///
    /// The server must also announce `SETTINGS_ENABLE_CONNECT_PROTOCOL` (hyper:
    /// `http2::Builder::enable_connect_protocol`), or clients never try.
    ///
    /// The default is `true`.
    pub fn http2(mut self, enable: bool) -> Self {
        self.settings.no_http2 = !enable;
        self
    }

    /// Negotiates permessage-deflate (RFC 7692) with clients that offer it, over HTTP/1.1
    /// and HTTP/2 alike. See [`DeflateConfig`](super::DeflateConfig) for the two modes,
    /// and the [module docs](crate::websocket#permessage-deflate) for their memory.
    ///
    /// The first acceptable offer in `Sec-WebSocket-Extensions` is accepted; offers with
    /// unknown, repeated or invalid parameters are declined by leaving them out of the
    /// answer, and the handshake goes on without compression. With a
    /// [`raw`](Self::raw) handler, [`Handshake::deflate`] tells whether it was negotiated,
    /// and the compression is yours to do.
    ///
    /// The default is no compression: extensions are declined.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflate(mut self, config: super::DeflateConfig) -> Self {
        self.settings.deflate = Some(config);
        self
    }
}

impl Settings {
    /// The checks of the status table, in its order.
    fn accept(&self, req: &request::Parts) -> Result<Accepted<Handshake>, WebSocketRejection> {
        let http2 = req.version == Version::HTTP_2;
        // RFC 6455 §4.1: the handshake is a GET; RFC 8441 §4: over HTTP/2, a CONNECT.
        let method = if http2 { Method::CONNECT } else { Method::GET };
        if req.method != method {
            return Err(MethodNotGet.into());
        }
        check_version(&req.headers)?;
        // RFC 8441 §5: no key and no accept over HTTP/2.
        let key = if http2 {
            None
        } else {
            Some(check_key(&req.headers)?)
        };
        if !self.origin.allows(req) {
            return Err(ForbiddenOrigin.into());
        }
        let offered = offered_protocols(&req.headers)?;
        let protocol = self.select(req, &offered);
        if protocol.is_none() && self.require_protocol {
            return Err(NoMatchingProtocol.into());
        }
        // The request's header values are slices of hyper's read buffer: keeping one alive
        // would keep that whole buffer (8 KiB or more) alive for the life of the
        // connection. The handshake keeps copies.
        #[cfg(feature = "deflate")]
        let deflate = self
            .deflate
            .as_ref()
            .and_then(|config| super::deflate::negotiate(&req.headers, config));
        let mut accepted = Accepted::new(Handshake {
            key: key.and_then(|k| k.as_bytes().try_into().ok()),
            protocol: protocol.clone(),
            extensions: req
                .headers
                .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
                .iter()
                .map(copy_value)
                .collect(),
            http2,
            #[cfg(feature = "deflate")]
            deflate: deflate.as_ref().map(|(agreed, _)| *agreed),
        });
        let headers = accepted.headers_mut();
        if let Some(key) = key {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()));
        }
        if let Some(protocol) = protocol {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
        }
        #[cfg(feature = "deflate")]
        if let Some((_, answer)) = deflate {
            headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, answer);
        }
        // RFC 6455 §9.1: extensions not implemented here are left out of the response,
        // which declines them; the handshake still succeeds.
        Ok(accepted)
    }

    /// The subprotocol to answer with: always one the client offered, spelled as offered.
    fn select(&self, req: &request::Parts, offered: &[&str]) -> Option<HeaderValue> {
        if offered.is_empty() {
            return None;
        }
        let chosen = match &self.selector {
            Some(select) => {
                let index = select(req, offered)?;
                let Some(chosen) = offered.get(index) else {
                    tracing::warn!(index, "subprotocol selector returned an index out of range");
                    return None;
                };
                *chosen
            }
            None => *offered
                .iter()
                .find(|p| self.protocols.iter().any(|s| s.as_bytes() == p.as_bytes()))?,
        };
        HeaderValue::from_str(chosen).ok()
    }

    fn decide(&self, req: &request::Parts) -> Decision<Handshake> {
        match self.accept(req) {
            Ok(accepted) => accepted.into(),
            Err(rejection) => rejection.into_rejection(req.version).into(),
        }
    }
}

/// A header value that shares no buffer with the request.
fn copy_value(value: &HeaderValue) -> HeaderValue {
    let mut copy = HeaderValue::from_bytes(value.as_bytes()).expect("already a valid value");
    copy.set_sensitive(value.is_sensitive());
    copy
}

impl<F, Fut> ProtocolHandler for WebSocketHandler<Ready<F>>
where
    F: Fn(WebSocket, UpgradeRequest) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoServeResult,
{
    type State = Handshake;

    fn token(&self) -> &str {
        "websocket"
    }

    fn supports_http2(&self) -> bool {
        !self.settings.no_http2
    }

    fn accept(&self, req: &request::Parts) -> Decision<Handshake> {
        self.settings.decide(req)
    }

    fn serve(
        self: Arc<Self>,
        io: UpgradedIo,
        req: UpgradeRequest,
        handshake: Handshake,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        // Only the subprotocol is kept (the rest of the handshake is in the request); the
        // rest is dropped now rather than held for the life of the connection.
        // Without a budget set when the connection starts, frames are not counted at all.
        let budget = req.message_budget();
        let ws = WebSocket::for_handler(
            io,
            self.settings.config,
            handshake.protocol,
            req.shutdown().clone(),
            budget.limit().is_some().then_some(budget),
            #[cfg(feature = "deflate")]
            handshake.deflate,
        );
        // Made here rather than in an `async fn`, whose arguments would stay in its state
        // (and so in memory) for the whole connection.
        ServeResult::new((self.callback.0)(ws, req))
    }
}

impl<F, Fut> ProtocolHandler for WebSocketHandler<Raw<F>>
where
    F: Fn(UpgradedIo, Handshake, UpgradeRequest) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoServeResult,
{
    type State = Handshake;

    fn token(&self) -> &str {
        "websocket"
    }

    fn supports_http2(&self) -> bool {
        !self.settings.no_http2
    }

    fn accept(&self, req: &request::Parts) -> Decision<Handshake> {
        self.settings.decide(req)
    }

    fn serve(
        self: Arc<Self>,
        io: UpgradedIo,
        req: UpgradeRequest,
        handshake: Handshake,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        ServeResult::new((self.callback.0)(io, handshake, req))
    }
}

impl<C> fmt::Debug for WebSocketHandler<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("WebSocketHandler");
        d.field("protocols", &self.settings.protocols)
            .field("select_protocol", &self.settings.selector.is_some())
            .field("require_protocol", &self.settings.require_protocol)
            .field("origin_policy", &self.settings.origin)
            .field("config", &self.settings.config)
            .field("http2", &!self.settings.no_http2);
        #[cfg(feature = "deflate")]
        d.field("deflate", &self.settings.deflate);
        d.finish()
    }
}

impl<F> fmt::Debug for Ready<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ready")
    }
}

impl<F> fmt::Debug for Raw<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Raw")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, StatusCode};

    fn handler()
    -> WebSocketHandler<Ready<impl Fn(WebSocket, UpgradeRequest) -> std::future::Ready<()> + Clone>>
    {
        WebSocketHandler::new(|_ws: WebSocket, _req: UpgradeRequest| std::future::ready(()))
    }

    fn request() -> http::request::Builder {
        Request::get("/ws")
            .header("host", "example.com")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    fn decide<C>(h: &WebSocketHandler<C>, req: http::request::Builder) -> Decision<Handshake> {
        h.settings.decide(&req.body(()).unwrap().into_parts().0)
    }

    fn rejected(d: Decision<Handshake>) -> (StatusCode, String) {
        match d {
            Decision::Reject(r) => (r.status(), r.reason().to_owned()),
            other => panic!("not rejected: {other:?}"),
        }
    }

    fn accepted(d: Decision<Handshake>) -> Accepted<Handshake> {
        match d {
            Decision::Accept(a) => a,
            other => panic!("not accepted: {other:?}"),
        }
    }

    #[test]
    fn accepts_the_rfc_sample_and_sends_its_accept_key() {
        let mut a = accepted(decide(&handler(), request()));
        assert_eq!(
            a.headers_mut()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(
            a.headers_mut()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .is_none()
        );
        assert_eq!(a.state.key(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
    }

    #[test]
    fn refuses_other_methods_with_405() {
        let (status, body) = rejected(decide(&handler(), request().method("POST")));
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body.contains("GET"), "{body}");
    }

    #[test]
    fn selects_the_first_offered_protocol_the_server_speaks() {
        let h = handler().protocols(["v2", "v1"]).unwrap();
        let mut a = accepted(decide(
            &h,
            request().header("sec-websocket-protocol", "v0, v1, v2"),
        ));
        assert_eq!(a.headers_mut()[header::SEC_WEBSOCKET_PROTOCOL], "v1");
        assert_eq!(a.state.protocol(), Some("v1"));
        // None matches: no header, no failure.
        let mut a = accepted(decide(&h, request().header("sec-websocket-protocol", "V1")));
        assert!(
            a.headers_mut()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .is_none()
        );
    }

    #[test]
    fn selector_can_only_pick_an_offered_protocol() {
        let h = handler()
            .select_protocol(|_req, offered| offered.iter().position(|p| p.ends_with(".json")));
        let mut a = accepted(decide(
            &h,
            request().header("sec-websocket-protocol", "a.xml, b.json"),
        ));
        assert_eq!(a.headers_mut()[header::SEC_WEBSOCKET_PROTOCOL], "b.json");
        let h = handler().select_protocol(|_req, _offered| Some(7));
        let mut a = accepted(decide(&h, request().header("sec-websocket-protocol", "a")));
        assert!(
            a.headers_mut()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .is_none()
        );
    }

    #[test]
    fn required_protocol_missing_is_400() {
        let h = handler().protocols(["chat"]).unwrap().require_protocol();
        let (status, body) = rejected(decide(&h, request()));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("subprotocol"), "{body}");
        let (status, _) = rejected(decide(
            &h,
            request().header("sec-websocket-protocol", "other"),
        ));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let _ = accepted(decide(
            &h,
            request().header("sec-websocket-protocol", "chat"),
        ));
    }

    #[test]
    fn extensions_are_recorded_and_never_accepted() {
        let mut a = accepted(decide(
            &handler(),
            request().header(
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            ),
        ));
        assert!(
            a.headers_mut()
                .get(header::SEC_WEBSOCKET_EXTENSIONS)
                .is_none()
        );
        assert_eq!(a.state.extensions_offered().len(), 1);
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn deflate_is_negotiated_when_turned_on_over_http1_and_http2() {
        let h = handler().deflate(crate::websocket::DeflateConfig::new());
        let offer = "permessage-deflate; client_max_window_bits";
        let mut a = accepted(decide(
            &h,
            request().header("sec-websocket-extensions", offer),
        ));
        assert_eq!(
            a.headers_mut()[header::SEC_WEBSOCKET_EXTENSIONS],
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(a.state.deflate());
        let h2 = Request::connect("http://example.com/ws")
            .version(Version::HTTP_2)
            .header("sec-websocket-version", "13")
            .header("sec-websocket-extensions", offer);
        let mut a = accepted(decide(&h, h2));
        assert!(
            a.headers_mut()
                .contains_key(header::SEC_WEBSOCKET_EXTENSIONS)
        );
        // A bad offer is declined and the handshake goes on.
        let mut a = accepted(decide(
            &h,
            request().header("sec-websocket-extensions", "permessage-deflate; x=1"),
        ));
        assert!(
            !a.headers_mut()
                .contains_key(header::SEC_WEBSOCKET_EXTENSIONS)
        );
        assert!(!a.state.deflate());
    }

    #[test]
    fn cross_origin_is_403() {
        let (status, _) = rejected(decide(
            &handler(),
            request().header("origin", "http://evil.com"),
        ));
        assert_eq!(status, StatusCode::FORBIDDEN);
        let _ = accepted(decide(
            &handler(),
            request().header("origin", "http://example.com"),
        ));
    }

    #[test]
    fn invalid_protocol_names_are_config_errors() {
        assert!(handler().protocols(["chat room"]).is_err());
        assert!(handler().protocols([""]).is_err());
    }

    #[test]
    fn http2_needs_no_key_and_answers_version_mismatch_with_400() {
        let h2 = || {
            Request::connect("http://example.com/ws")
                .version(Version::HTTP_2)
                .header("sec-websocket-version", "13")
        };
        let mut a = accepted(decide(&handler(), h2()));
        assert!(a.headers_mut().get(header::SEC_WEBSOCKET_ACCEPT).is_none());
        assert!(a.state.is_http2());
        let d = decide(
            &handler(),
            Request::connect("http://example.com/ws")
                .version(Version::HTTP_2)
                .header("sec-websocket-version", "8"),
        );
        let Decision::Reject(r) = d else { panic!() };
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[header::SEC_WEBSOCKET_VERSION], "13");
    }
}
