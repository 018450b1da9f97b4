//! [`Upgrade`]: the middleware service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use hyper::upgrade::OnUpgrade;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::config::Config;
use crate::connection;
use crate::error::BoxError;
use crate::future::ResponseFuture;
use crate::handle::ServiceHandle;
use crate::handler::{Decision, Rejection, UpgradeRequest};
use crate::headers::ListError;
use crate::registry::Selection;
use crate::response::{rejection_response, switching, unavailable, upgrade_required};
use crate::tracker::{Event, Refusal};

/// Middleware that switches protocols on upgrade requests and passes every other request
/// to the inner service.
///
/// Made by [`UpgradeLayer`](crate::UpgradeLayer); see the [crate docs](crate) for an
/// example.
///
/// # What it answers
///
/// | request | response |
/// | --- | --- |
/// | not an upgrade request (no `Connection: upgrade`, no `Upgrade`, HTTP/1.0, HTTP/2 other than extended CONNECT) | the inner service's, untouched; `426` if [required](crate::UpgradeLayer::require_upgrade) |
/// | upgrade request offering only unregistered protocols | the inner service's; `426` if required |
/// | `Upgrade` that is not a list of `name["/"version]` tokens, or longer than 64 elements | `400 Bad Request` |
/// | a registered protocol, request head (target and headers) over 64 KiB | `431 Request Header Fields Too Large`, and the connection closes |
/// | a registered protocol over HTTP/1.1, no `Host`, several, or one that is not a valid `host[:port]` (RFC 9112 §3.2) | `400 Bad Request` |
/// | a registered protocol, handler declines | the inner service's; `426` if required |
/// | a registered protocol, handler rejects | the handler's rejection (`400`, `403`, `405`, ...) |
/// | a registered protocol, accepted | `101 Switching Protocols`, `Upgrade: <token>`, `Connection: upgrade`, the handler's headers |
/// | the same over HTTP/2 extended CONNECT (RFC 8441), handler supports HTTP/2 | `200 OK` with the handler's headers |
/// | accepted, but the request has a body the handler did not ask for, or announces more than it allows | the inner service's; `426` if required |
/// | accepted, chunked body longer than the handler allows | `413 Content Too Large` |
/// | accepted, but the connection cannot switch (no hyper `OnUpgrade`: a server without `.with_upgrades()`, a `oneshot` call) | `500 Internal Server Error`, and a `tracing` error that names the fix |
///
/// # Bounds
///
/// The response body is the crate's own [`ResponseBody`]: the inner body, or the layer's
/// short text. It implements [`Default`] and asks nothing of the inner body but to be a
/// [`Body`], so the layer composes with tower-http layers on either side.
///
/// The inner service must be `Clone + Send + 'static` with a `Send + 'static` future and an
/// error that converts into [`BoxError`](crate::BoxError), and its request and response
/// bodies must be `Send + 'static` [`Body`]s with errors that convert too. That is what it
/// takes to read an upgrade request's body before the switch, and to hand the service to a
/// handler that [needs it](crate::ProtocolHandler::needs_service) as a type-erased
/// [`ServiceHandle`](crate::ServiceHandle). The bounds are the same whatever features are
/// enabled, so that enabling one never breaks a build. axum's `Router` and `Route`, hyper's
/// `Incoming`, and tower-http's bodies meet them.
pub struct Upgrade<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> Upgrade<S> {
    pub(crate) fn from_config(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// Gets a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Upgrade<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Upgrade<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgrade")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Upgrade<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.config.registry.select(&req, self.config.server_order) {
            Selection::None | Selection::Unmatched => self.pass(req),
            Selection::Invalid(e) => {
                let reason = match e {
                    ListError::TooLong => "invalid Upgrade header: too many elements\n",
                    ListError::Invalid => {
                        "invalid Upgrade header: expected a list of protocol[/version] tokens\n"
                    }
                };
                tracing::debug!(reason, "upgrade request rejected");
                ResponseFuture::ready(rejection_response(Rejection::new(
                    StatusCode::BAD_REQUEST,
                    reason,
                )))
            }
            Selection::Selected { index, http2 } => self.switch(req, index, http2),
        }
    }
}

/// The largest upgrade request head the layer switches on: target and header fields,
/// as RFC 9113 §6.5.2 counts them (name, value and 32 bytes each). Larger ones are answered
/// `431` (RFC 6585 §5).
pub(crate) const MAX_HEAD_SIZE: usize = 64 * 1024;

/// Exactly one `Host`, empty or `uri-host [":" port]` (RFC 9112 §3.2, RFC 9110 §7.2).
fn valid_host(headers: &http::HeaderMap) -> bool {
    let mut hosts = headers.get_all(header::HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return false;
    };
    valid_authority(host.as_bytes())
}

/// `uri-host [":" port]` (RFC 3986 §3.2.2, §3.2.3), or empty; checked in place, without
/// the allocation and copy of parsing an [`http::uri::Authority`].
fn valid_authority(host: &[u8]) -> bool {
    let (host, port) = match host.first() {
        // IP-literal: "[" ( IPv6address / IPvFuture ) "]"
        Some(b'[') => {
            let Some(end) = host.iter().position(|&b| b == b']') else {
                return false;
            };
            let inside = &host[1..end];
            if inside.is_empty() || !inside.iter().all(|&b| HOST_CHAR[usize::from(b)] >= 1) {
                return false;
            }
            match &host[end + 1..] {
                [] => return true,
                [b':', port @ ..] => (&[][..], port),
                _ => return false,
            }
        }
        _ => match host.iter().rposition(|&b| b == b':') {
            Some(colon) => (&host[..colon], &host[colon + 1..]),
            None => (host, &[][..]),
        },
    };
    host.iter().all(|&b| HOST_CHAR[usize::from(b)] == 2) && port.iter().all(u8::is_ascii_digit)
}

/// 2: a reg-name or IPv4address character (unreserved, `%`, sub-delims); 1: also allowed
/// inside an IP-literal's brackets (`:`); 0: neither.
const HOST_CHAR: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            table[b] = 2;
        }
        b += 1;
    }
    let extra = b"-._~%!$&'()*+,;=";
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = 2;
        i += 1;
    }
    table[b':' as usize] = 1;
    table
};

/// Whether the request has a body to read before switching.
///
/// An HTTP/1.x request has one only if `Content-Length` (other than 0) or
/// `Transfer-Encoding` says so (RFC 9112 §6.3), or its body says it has bytes. The headers
/// decide, rather than the body's `is_end_stream`, which body wrappers of other layers
/// (tower-http's decompression and limit bodies, for example) do not all pass on.
fn has_body<B: Body>(parts: &http::request::Parts, body: &B) -> bool {
    if body.is_end_stream() {
        return false;
    }
    if parts.version > http::Version::HTTP_11 || body.size_hint().lower() > 0 {
        return true;
    }
    parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts
            .headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

fn head_size<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    req.headers().iter().fold(target, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 32
    })
}

impl<S> Upgrade<S> {
    /// A request that does not switch: on to the inner service, or `426` if required.
    #[inline]
    fn pass<ReqBody, ResBody>(
        &mut self,
        req: Request<ReqBody>,
    ) -> ResponseFuture<S::Future, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        if self.config.require_upgrade {
            return ResponseFuture::ready(upgrade_required(&self.config.registry, req.version()));
        }
        ResponseFuture::future(self.inner.call(req))
    }

    fn switch<ReqBody, ResBody>(
        &mut self,
        req: Request<ReqBody>,
        index: usize,
        http2: bool,
    ) -> ResponseFuture<S::Future, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        ReqBody: Body + Send + 'static,
        ReqBody::Data: Send,
        ReqBody::Error: Into<BoxError>,
        ResBody: Body + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let entry = self.config.registry.entry(index);
        let tracker = &self.config.tracker;
        let protocol = Arc::clone(self.config.protocol(index));
        tracker.record(&protocol, Event::Attempt);
        if tracker.is_shutting_down() {
            tracker.record(&protocol, Event::RejectedShuttingDown);
            tracing::debug!(protocol = %entry.token, reason = "shutting down", "upgrade request refused");
            return ResponseFuture::ready(unavailable(tracker, "server is shutting down\n"));
        }
        // Bound what the client controls: hyper's own limit on the head (about 400 KiB by
        // default) is not exact, and the head goes with the connection into the handler.
        if head_size(&req) > MAX_HEAD_SIZE {
            tracker.record(&protocol, Event::RejectedHead);
            tracing::debug!(protocol = %entry.token, "upgrade request head too large");
            return ResponseFuture::ready(rejection_response(
                Rejection::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "upgrade request head too large\n",
                )
                .header(header::CONNECTION, HeaderValue::from_static("close")),
            ));
        }
        // RFC 9112 §3.2: an HTTP/1.1 request with no `Host`, several, or an invalid one is a
        // bad request (RFC 6455 §4.2.1 item 2 asks the same of a WebSocket handshake).
        if !http2 && !valid_host(req.headers()) {
            tracker.record(&protocol, Event::RejectedHead);
            tracing::debug!(protocol = %entry.token, "upgrade request without a valid Host");
            return ResponseFuture::ready(rejection_response(Rejection::new(
                StatusCode::BAD_REQUEST,
                "missing, repeated or invalid Host header\n",
            )));
        }
        let (mut parts, body) = req.into_parts();
        // A handler that carries HTTP requests on the connection gets this very service,
        // erased; the handle goes with the request head into `serve`.
        let needs_service = entry.handler.needs_service();
        if needs_service {
            parts.extensions.insert(ServiceHandle::new(self.clone()));
        }
        let accepted = match entry.handler.accept(&parts) {
            Decision::Accept(accepted) => accepted,
            Decision::Reject(rejection) => {
                tracker.record(&protocol, Event::RejectedByHandler);
                tracing::debug!(
                    protocol = %entry.token,
                    status = rejection.status().as_u16(),
                    reason = rejection.reason().trim_end(),
                    "upgrade request rejected"
                );
                return ResponseFuture::ready(rejection_response(rejection));
            }
            Decision::Decline => {
                tracker.record(&protocol, Event::Declined);
                if needs_service {
                    parts.extensions.remove::<ServiceHandle>();
                }
                return self.pass(Request::from_parts(parts, body));
            }
        };
        // RFC 9110 §7.8: the client starts the new protocol only after the whole request;
        // a body must be read before switching, or the upgrade declined.
        let has_body = has_body(&parts, &body);
        if has_body
            && (accepted.body_limit == 0 || body.size_hint().lower() > accepted.body_limit as u64)
        {
            tracker.record(&protocol, Event::Declined);
            tracing::debug!(protocol = %entry.token, "upgrade declined: request body not accepted");
            if needs_service {
                parts.extensions.remove::<ServiceHandle>();
            }
            return self.pass(Request::from_parts(parts, body));
        }
        // Never send a 101 that cannot be honoured. hyper attaches `OnUpgrade` to every
        // HTTP/1.1 request with `Upgrade` and to HTTP/2 CONNECT requests.
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            tracker.record(&protocol, Event::RejectedCannotSwitch);
            tracing::error!(
                protocol = %entry.token,
                "cannot switch protocols: the request carries no hyper `OnUpgrade`. Serve the \
                 connection with `hyper::server::conn::http1::Builder::serve_connection(..)\
                 .with_upgrades()`, hyper-util's `serve_connection_with_upgrades`, or \
                 `axum::serve`"
            );
            return ResponseFuture::ready(rejection_response(Rejection::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "this connection cannot switch protocols\n",
            )));
        };
        // The slot is held from here to the end of the handler, however it ends.
        let slot = match tracker.acquire(&protocol) {
            Ok(slot) => slot,
            Err(refusal) => {
                let (event, reason) = match refusal {
                    Refusal::AtLimit => (Event::RejectedAtLimit, "too many upgraded connections\n"),
                    Refusal::ShuttingDown => {
                        (Event::RejectedShuttingDown, "server is shutting down\n")
                    }
                };
                tracker.record(&protocol, event);
                tracing::debug!(protocol = %entry.token, reason = reason.trim_end(), "upgrade request refused");
                return ResponseFuture::ready(unavailable(tracker, reason));
            }
        };
        let token = entry.token.clone();
        let config = Arc::clone(&self.config);
        let serve = accepted.state;
        let response_headers = accepted.headers;
        let start = move |body: Bytes, parts| {
            let res = switching(token.header_value(), response_headers, http2);
            slot.tracker().record(slot.protocol(), Event::Accepted);
            let shutdown = slot.tracker().signal();
            let budget = slot.message_budget();
            let req = UpgradeRequest::new(parts, token, body, shutdown, budget);
            connection::spawn(config, on_upgrade, serve, req, slot);
            res
        };
        if !has_body {
            return ResponseFuture::ready(start(Bytes::new(), parts));
        }
        let limit = accepted.body_limit;
        let tracker = tracker.clone();
        ResponseFuture::upgrade(Box::pin(async move {
            // Polling the body makes hyper send `100 Continue` first when the client sent
            // `Expect: 100-continue` (RFC 9110 §7.8: 100 before 101).
            match Limited::new(body, limit).collect().await {
                Ok(collected) => start(collected.to_bytes(), parts),
                Err(e) => {
                    let e: BoxError = e;
                    let rejection = if e.is::<http_body_util::LengthLimitError>() {
                        Rejection::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "request body too large for upgrade\n",
                        )
                    } else {
                        Rejection::new(StatusCode::BAD_REQUEST, "failed to read request body\n")
                    };
                    tracker.record(&protocol, Event::RejectedBody);
                    tracing::debug!(error = %e, "upgrade request body not read");
                    rejection_response(rejection)
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod host_tests {
    use super::valid_authority;

    #[test]
    fn hosts_as_rfc_3986_writes_them() {
        for good in [
            "",
            "example.com",
            "example.com:8080",
            "127.0.0.1:3000",
            "[::1]",
            "[::1]:443",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a_b~c",
            "%41",
            "host:",
        ] {
            assert!(valid_authority(good.as_bytes()), "{good:?} refused");
        }
        for bad in [
            "a b", "u@host", "host:80a", "[::1", "[]", "[::1]x", "[::1]:8a", "a/b", "a?b", "a#b",
            "h\"", "[::1]]",
        ] {
            assert!(!valid_authority(bad.as_bytes()), "{bad:?} accepted");
        }
    }
}
