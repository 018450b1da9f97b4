//! The responses the layer builds itself: `101`, `426`, and its own rejections.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};

use crate::body::ResponseBody;
use crate::handler::Rejection;
use crate::registry::Registry;
use crate::tracker::Tracker;

const UPGRADE: HeaderValue = HeaderValue::from_static("upgrade");

/// `101 Switching Protocols`, or `200` for an HTTP/2 extended CONNECT.
///
/// RFC 9110 §15.2.2: the `101` names the new protocol in `Upgrade`, and (§7.6.1) lists
/// `upgrade` in `Connection`. No `Content-Length` or `Transfer-Encoding` (§8.6): hyper
/// writes none for a `101` with an empty body.
pub(crate) fn switching<B>(
    token: &HeaderValue,
    extra: HeaderMap,
    http2: bool,
) -> Response<ResponseBody<B>> {
    let mut res = Response::new(ResponseBody::default());
    *res.headers_mut() = extra;
    if http2 {
        // RFC 8441 §5: success is a 2xx; connection-specific fields are malformed in HTTP/2.
        *res.status_mut() = StatusCode::OK;
    } else {
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        res.headers_mut().insert(header::UPGRADE, token.clone());
        res.headers_mut().insert(header::CONNECTION, UPGRADE);
    }
    res
}

/// `426 Upgrade Required` with every registered protocol in `Upgrade` (RFC 9110 §15.5.22).
pub(crate) fn upgrade_required<B>(
    registry: &Registry,
    version: Version,
) -> Response<ResponseBody<B>> {
    let mut rejection = Rejection::new(
        StatusCode::UPGRADE_REQUIRED,
        upgrade_required_reason(registry),
    );
    if version == Version::HTTP_11 {
        if let Some(list) = registry.upgrade_list() {
            rejection = rejection
                .header(header::UPGRADE, list.clone())
                .header(header::CONNECTION, UPGRADE);
        }
    }
    rejection_response(rejection)
}

fn upgrade_required_reason(registry: &Registry) -> String {
    match registry.upgrade_list() {
        Some(list) => format!(
            "this resource requires a protocol upgrade: {}\n",
            list.to_str().unwrap_or_default()
        ),
        None => "this resource requires a protocol upgrade\n".to_owned(),
    }
}

pub(crate) fn rejection_response<B>(rejection: Rejection) -> Response<ResponseBody<B>> {
    rejection.into_response().map(ResponseBody::text)
}

/// `503 Service Unavailable` with `Retry-After`, for limits and shutdown.
pub(crate) fn unavailable<B>(tracker: &Tracker, reason: &'static str) -> Response<ResponseBody<B>> {
    rejection_response(
        Rejection::new(StatusCode::SERVICE_UNAVAILABLE, reason)
            .header(header::RETRY_AFTER, tracker.retry_after()),
    )
}
