//! [`UpgradeRequest`]: the request as the `serve` step gets it.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderValue};
use http::request;

use crate::token::UpgradeToken;
use crate::tracker::{MessageBudget, ShutdownSignal};

/// The upgrade request, as handed to [`serve`](crate::ProtocolHandler::serve).
///
/// It carries the request head with the extensions that outer layers set (an authenticated
/// user, a request id, ...), the protocol that was selected, and the request body, if the
/// handler [asked for one](crate::Accepted::read_body).
#[derive(Debug)]
pub struct UpgradeRequest {
    pub(crate) parts: request::Parts,
    pub(crate) protocol: UpgradeToken,
    pub(crate) body: Bytes,
    pub(crate) shutdown: ShutdownSignal,
    pub(crate) budget: MessageBudget,
}

impl UpgradeRequest {
    /// Builds the request handed to `serve`, with its head copied out of hyper's read
    /// buffer.
    ///
    /// hyper parses the URI and header values as views into its read buffer (8 KiB or
    /// more). A handler that keeps the request for the life of the connection would keep
    /// that whole buffer alive with it; copying the few bytes of the head frees it.
    pub(crate) fn new(
        mut parts: request::Parts,
        protocol: UpgradeToken,
        body: Bytes,
        shutdown: ShutdownSignal,
        budget: MessageBudget,
    ) -> Self {
        copy_head(&mut parts);
        Self {
            parts,
            protocol,
            body,
            shutdown,
            budget,
        }
    }

    /// The request head.
    #[must_use]
    pub fn parts(&self) -> &request::Parts {
        &self.parts
    }

    /// The request head, owned.
    #[must_use]
    pub fn into_parts(self) -> request::Parts {
        self.parts
    }

    /// The request headers.
    #[must_use]
    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    /// The request URI.
    #[must_use]
    pub fn uri(&self) -> &http::Uri {
        &self.parts.uri
    }

    /// The request extensions.
    #[must_use]
    pub fn extensions(&self) -> &http::Extensions {
        &self.parts.extensions
    }

    /// The protocol the connection switched to, as registered.
    #[must_use]
    pub fn protocol(&self) -> &UpgradeToken {
        &self.protocol
    }

    /// Fires when graceful shutdown starts: end the protocol cleanly then. A handler that
    /// ignores it is aborted at the drain deadline; see [`Tracker`](crate::Tracker).
    #[must_use]
    pub fn shutdown(&self) -> &ShutdownSignal {
        &self.shutdown
    }

    /// The budget of buffered message bytes shared by the connections of the layer's
    /// [`Tracker`](crate::Tracker); see [`Tracker::set_message_budget`](crate::Tracker::set_message_budget).
    #[must_use]
    pub fn message_budget(&self) -> &MessageBudget {
        &self.budget
    }

    /// The request body, read before the switch; empty unless the handler
    /// [accepted one](crate::Accepted::read_body).
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// Copies the URI and header values of `parts` into one allocation of their own, so that
/// they no longer share hyper's read buffer. One buffer rather than one per value: this is
/// on the path of every upgrade.
fn copy_head(parts: &mut request::Parts) {
    // Origin form (`/path?query`, or `*`) is what servers see; anything else is rare and
    // copied through its string form.
    let origin_form = parts.uri.scheme().is_none() && parts.uri.authority().is_none();
    let path = match (origin_form, parts.uri.path_and_query()) {
        (true, Some(pq)) => pq.as_str(),
        _ => "",
    };
    let len = path.len() + parts.headers.values().map(|v| v.len()).sum::<usize>();
    let mut buf = BytesMut::with_capacity(len);
    buf.extend_from_slice(path.as_bytes());
    for value in parts.headers.values() {
        buf.extend_from_slice(value.as_bytes());
    }
    let buf = buf.freeze();
    let mut at = path.len();
    for value in parts.headers.values_mut() {
        let end = at + value.len();
        // The bytes were a valid value already.
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(buf.slice(at..end)) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
        at = end;
    }
    let uri = if origin_form {
        http::Uri::from_maybe_shared(buf.slice(..path.len()))
    } else {
        http::Uri::try_from(parts.uri.to_string())
    };
    if let Ok(uri) = uri {
        parts.uri = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::Tracker;
    use http::header;

    #[test]
    fn the_request_head_is_copied_out_of_the_read_buffer() {
        // As hyper does: the URI and header values are views into one big read buffer.
        let mut buffer = b"/chat?room=1 upper/1.0 secret".to_vec();
        buffer.resize(8192, 0);
        let buffer = Bytes::from(buffer);
        let mut req = http::Request::new(());
        *req.uri_mut() = http::Uri::from_maybe_shared(buffer.slice(0..12)).unwrap();
        let value = HeaderValue::from_maybe_shared(buffer.slice(13..22)).unwrap();
        req.headers_mut().insert(header::UPGRADE, value);
        let mut secret = HeaderValue::from_maybe_shared(buffer.slice(23..29)).unwrap();
        secret.set_sensitive(true);
        req.headers_mut().insert(header::AUTHORIZATION, secret);
        assert!(!buffer.is_unique());

        let (parts, ()) = req.into_parts();
        let token = UpgradeToken::new("upper/1.0").unwrap();
        let tracker = Tracker::new();
        let budget = tracker.budget_for(&token);
        let req = UpgradeRequest::new(parts, token, Bytes::new(), tracker.signal(), budget);
        assert!(
            buffer.is_unique(),
            "the request still holds the read buffer"
        );
        assert_eq!(req.uri(), "/chat?room=1");
        assert_eq!(req.headers()[header::UPGRADE], "upper/1.0");
        assert!(req.headers()[header::AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn every_form_of_the_head_survives_the_copy() {
        let token = UpgradeToken::new("upper/1.0").unwrap();
        for uri in [
            "/",
            "*",
            "/a/b?c=d&e",
            "http://example.com:8080/x?y",
            "example.com:443",
        ] {
            let mut req = http::Request::new(());
            *req.uri_mut() = uri.parse().unwrap();
            req.headers_mut()
                .append("x-multi", HeaderValue::from_static("one"));
            req.headers_mut()
                .append("x-multi", HeaderValue::from_static(""));
            req.headers_mut()
                .append("x-multi", HeaderValue::from_static("three"));
            req.headers_mut()
                .insert(header::HOST, HeaderValue::from_static("example.com"));
            let (parts, ()) = req.into_parts();
            let req = UpgradeRequest::new(
                parts,
                token.clone(),
                Bytes::new(),
                Tracker::new().signal(),
                Tracker::new().budget_for(&token),
            );
            assert_eq!(
                req.uri().to_string(),
                uri.parse::<http::Uri>().unwrap().to_string()
            );
            let multi: Vec<_> = req.headers().get_all("x-multi").iter().collect();
            assert_eq!(multi, ["one", "", "three"], "{uri}");
            assert_eq!(req.headers()[header::HOST], "example.com");
        }
    }
}
