//! The decision table of [`Upgrade`], request by request, through tower's `oneshot`.
//!
//! Switching needs hyper's `OnUpgrade`, which only a real hyper connection makes: the
//! requests that must reach a switch carry one taken from a hyper server over an in-memory
//! pipe (it is never completed, so no protocol runs).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version, request};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use hyper::upgrade::OnUpgrade;
use tokio::io::AsyncWriteExt;
use tower::{Layer, ServiceExt, service_fn};

use crate::{
    Accepted, BoxError, Decision, ProtocolHandler, Rejection, ServiceHandle, Tracker, UpgradeLayer,
    UpgradeRequest, UpgradedIo, handler_fn,
};

/// A handler whose `accept` does what the test says, and that records whether it saw a
/// service handle.
struct Scripted {
    decide: fn() -> Decision<()>,
    needs_service: bool,
    saw_handle: Arc<AtomicUsize>,
}

impl Scripted {
    fn new(decide: fn() -> Decision<()>) -> Self {
        Self {
            decide,
            needs_service: false,
            saw_handle: Arc::default(),
        }
    }
}

impl ProtocolHandler for Scripted {
    type State = ();

    fn token(&self) -> &str {
        "test/1"
    }

    fn needs_service(&self) -> bool {
        self.needs_service
    }

    fn accept(&self, req: &request::Parts) -> Decision<()> {
        if req.extensions.get::<ServiceHandle>().is_some() {
            self.saw_handle.fetch_add(1, Ordering::SeqCst);
        }
        (self.decide)()
    }

    async fn serve(
        self: Arc<Self>,
        _io: UpgradedIo,
        _req: UpgradeRequest,
        (): (),
    ) -> Result<(), BoxError> {
        Ok(())
    }
}

fn accept() -> Decision<()> {
    Accepted::new(())
        .header("x-accepted", HeaderValue::from_static("yes"))
        .into()
}

fn accept_small_body() -> Decision<()> {
    Accepted::new(()).read_body(4).into()
}

/// The inner service: answers `inner` and says whether it saw a service handle.
async fn inner<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let handle = req.extensions().get::<ServiceHandle>().is_some();
    let mut res = Response::new(Full::from("inner"));
    res.headers_mut()
        .insert("x-saw-handle", HeaderValue::from(u16::from(handle)));
    Ok(res)
}

async fn call<B>(layer: &UpgradeLayer, req: Request<B>) -> (StatusCode, http::HeaderMap, Bytes)
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let res = layer
        .layer(service_fn(inner::<B>))
        .oneshot(req)
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

fn upgrade(protocols: &str) -> http::request::Builder {
    Request::get("/")
        .header(header::HOST, "example.com")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, protocols)
}

/// A real `OnUpgrade`, from a hyper HTTP/1.1 server over an in-memory pipe.
async fn on_upgrade() -> OnUpgrade {
    let (mut client, server) = tokio::io::duplex(4096);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(req.extensions_mut().remove::<OnUpgrade>());
        }
        async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
    });
    tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(server), service)
            .with_upgrades(),
    );
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n")
        .await
        .unwrap();
    rx.await.unwrap().expect("hyper attaches OnUpgrade")
}

/// A body of unknown length (chunked), `n` bytes in one chunk.
struct Chunked(Option<Bytes>);

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }
}

fn layer_with(handler: Scripted) -> UpgradeLayer {
    UpgradeLayer::new().protocol(handler).unwrap()
}

fn assert_text(headers: &http::HeaderMap) {
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
}

#[tokio::test]
async fn a_plain_request_passes_through() {
    let layer = layer_with(Scripted::new(accept));
    let (status, headers, body) = call(
        &layer,
        Request::get("/").body(Empty::<Bytes>::new()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "inner");
    assert_eq!(headers["x-saw-handle"], "0");
    assert_eq!(layer.tracker().stats().totals.attempts, 0);
}

#[tokio::test]
async fn an_unreadable_upgrade_list_is_400() {
    let layer = layer_with(Scripted::new(accept));
    for bad in ["test/1 bad", "/1", "test/", "a, b, @"] {
        let (status, headers, body) =
            call(&layer, upgrade(bad).body(Empty::<Bytes>::new()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_text(&headers);
        assert_eq!(
            body,
            "invalid Upgrade header: expected a list of protocol[/version] tokens\n"
        );
    }
    let long = vec!["x"; 65].join(",");
    let (status, _, body) = call(&layer, upgrade(&long).body(Empty::<Bytes>::new()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, "invalid Upgrade header: too many elements\n");
}

#[tokio::test]
async fn required_upgrade_answers_426_with_every_protocol() {
    let layer = UpgradeLayer::new()
        .protocol(Scripted::new(accept))
        .unwrap()
        .protocol(handler_fn(
            "other",
            |_io: UpgradedIo, _req: UpgradeRequest| async {},
        ))
        .unwrap()
        .require_upgrade();
    for req in [
        Request::get("/").body(Empty::<Bytes>::new()).unwrap(),
        // Offers only what is not registered.
        upgrade("nope").body(Empty::new()).unwrap(),
    ] {
        let (status, headers, body) = call(&layer, req).await;
        assert_eq!(status, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(headers[header::UPGRADE], "test/1, other");
        assert_eq!(headers[header::CONNECTION], "upgrade");
        assert_text(&headers);
        assert_eq!(
            body,
            "this resource requires a protocol upgrade: test/1, other\n"
        );
    }
}

#[tokio::test]
async fn unregistered_protocols_and_http_1_0_pass_through() {
    let layer = layer_with(Scripted::new(accept));
    let (status, _, body) = call(
        &layer,
        upgrade("nope, h2c").body(Empty::<Bytes>::new()).unwrap(),
    )
    .await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"inner"[..]));

    // RFC 9110 §7.8: `Upgrade` in an HTTP/1.0 request is ignored.
    let req = upgrade("test/1")
        .version(Version::HTTP_10)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (status, _, body) = call(&layer, req).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"inner"[..]));
    // Without the `upgrade` connection option, `Upgrade` is ignored too.
    let req = Request::get("/")
        .header(header::UPGRADE, "test/1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (status, _, _) = call(&layer, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(layer.tracker().stats().totals.attempts, 0);
}

#[tokio::test]
async fn a_declined_upgrade_goes_on_without_the_service_handle() {
    let mut handler = Scripted::new(|| Decision::Decline);
    handler.needs_service = true;
    let saw = Arc::clone(&handler.saw_handle);
    let layer = layer_with(handler);
    let (status, headers, body) = call(
        &layer,
        upgrade("test/1").body(Empty::<Bytes>::new()).unwrap(),
    )
    .await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"inner"[..]));
    assert_eq!(saw.load(Ordering::SeqCst), 1, "accept saw the handle");
    assert_eq!(headers["x-saw-handle"], "0", "the inner service does not");
    let counts = layer.tracker().stats().totals;
    assert_eq!((counts.attempts, counts.declined), (1, 1));
}

#[tokio::test]
async fn a_handler_that_does_not_need_the_service_gets_no_handle() {
    let handler = Scripted::new(|| Decision::Decline);
    let saw = Arc::clone(&handler.saw_handle);
    let layer = layer_with(handler);
    call(
        &layer,
        upgrade("test/1").body(Empty::<Bytes>::new()).unwrap(),
    )
    .await;
    assert_eq!(saw.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_rejection_is_the_handlers_response() {
    let layer = layer_with(Scripted::new(|| {
        Rejection::new(StatusCode::FORBIDDEN, "not you\n")
            .header("x-why", HeaderValue::from_static("policy"))
            .into()
    }));
    let (status, headers, body) = call(
        &layer,
        upgrade("test/1").body(Empty::<Bytes>::new()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["x-why"], "policy");
    assert_text(&headers);
    assert_eq!(body, "not you\n");
    assert_eq!(layer.tracker().stats().totals.rejected_by_handler, 1);
}

#[tokio::test]
async fn a_body_the_handler_did_not_ask_for_declines() {
    let layer = layer_with(Scripted::new(accept));
    let req = upgrade("test/1")
        .body(Full::<Bytes>::from("hello"))
        .unwrap();
    let (status, _, body) = call(&layer, req).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"inner"[..]));
    // Announced longer than the handler allows: declined without reading it.
    let layer = layer_with(Scripted::new(accept_small_body));
    let req = upgrade("test/1")
        .body(Full::<Bytes>::from("hello"))
        .unwrap();
    let (status, _, _) = call(&layer, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(layer.tracker().stats().totals.declined, 1);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413() {
    let layer = layer_with(Scripted::new(accept_small_body));
    let mut req = upgrade("test/1")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Chunked(Some(Bytes::from_static(b"too long"))))
        .unwrap();
    req.extensions_mut().insert(on_upgrade().await);
    let (status, headers, body) = call(&layer, req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_text(&headers);
    assert_eq!(body, "request body too large for upgrade\n");
    let counts = layer.tracker().stats().totals;
    assert_eq!(
        (counts.rejected_body, counts.accepted, counts.live),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn without_on_upgrade_the_answer_is_500_not_101() {
    let layer = layer_with(Scripted::new(accept));
    let (status, headers, body) = call(
        &layer,
        upgrade("test/1").body(Empty::<Bytes>::new()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(headers.get(header::UPGRADE), None);
    assert_eq!(body, "this connection cannot switch protocols\n");
    assert_eq!(layer.tracker().stats().totals.rejected_cannot_switch, 1);
}

#[tokio::test]
async fn shutting_down_and_at_the_limit_are_503_with_retry_after() {
    let layer = layer_with(Scripted::new(accept));
    layer.tracker().set_max_connections(Some(0));
    let mut req = upgrade("test/1").body(Empty::<Bytes>::new()).unwrap();
    req.extensions_mut().insert(on_upgrade().await);
    let (status, headers, body) = call(&layer, req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert_eq!(body, "too many upgraded connections\n");

    let tracker = Tracker::new();
    let layer = layer.with_tracker(tracker.clone());
    tracker.shutdown();
    let (status, headers, body) = call(
        &layer,
        upgrade("test/1").body(Empty::<Bytes>::new()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert_eq!(body, "server is shutting down\n");
    assert_eq!(tracker.stats().totals.rejected_shutting_down, 1);
}

#[tokio::test]
async fn an_accepted_upgrade_is_101_with_the_handlers_headers() {
    let layer = layer_with(Scripted::new(accept));
    // The client's order: the first registered protocol it offers.
    let mut req = upgrade("nope, TEST/1, other")
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut().insert(on_upgrade().await);
    let (status, headers, body) = call(&layer, req).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(headers[header::UPGRADE], "test/1");
    assert_eq!(headers[header::CONNECTION], "upgrade");
    assert_eq!(headers["x-accepted"], "yes");
    assert!(body.is_empty());
    assert_eq!(layer.tracker().stats().totals.accepted, 1);
    // The connection task ends by itself: hyper never hands the connection over.
    let drained = layer
        .tracker()
        .drain(std::time::Duration::from_secs(5))
        .await;
    assert_eq!(drained.aborted, 0);
    assert_eq!(layer.tracker().live(), 0);
}

#[tokio::test]
async fn an_oversized_head_is_431_and_closes() {
    let layer = layer_with(Scripted::new(accept));
    let mut req = upgrade("test/1")
        .header("x-big", "b".repeat(crate::service::MAX_HEAD_SIZE))
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut().insert(on_upgrade().await);
    let (status, headers, body) = call(&layer, req).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(headers[header::CONNECTION], "close");
    assert_eq!(body, "upgrade request head too large\n");
    assert_eq!(layer.tracker().stats().totals.rejected_head, 1);
    // Just under the bound switches.
    let mut req = upgrade("test/1")
        .header("x-big", "b".repeat(crate::service::MAX_HEAD_SIZE - 1024))
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut().insert(on_upgrade().await);
    let (status, _, _) = call(&layer, req).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
}

#[tokio::test]
async fn a_wrapped_empty_body_that_does_not_say_so_still_switches() {
    // Other layers' body wrappers may not pass on `is_end_stream`; without `Content-Length`
    // or `Transfer-Encoding`, an HTTP/1.1 request has no body (RFC 9112 §6.3).
    let layer = layer_with(Scripted::new(accept));
    let mut req = upgrade("test/1").body(Chunked(None)).unwrap();
    req.extensions_mut().insert(on_upgrade().await);
    let (status, _, _) = call(&layer, req).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    // With `Content-Length: 0` too; with a length, it is a body the handler did not ask for.
    for (length, expected) in [
        ("0", StatusCode::SWITCHING_PROTOCOLS),
        ("3", StatusCode::OK),
    ] {
        let mut req = upgrade("test/1")
            .header(header::CONTENT_LENGTH, length)
            .body(Chunked(
                Some(Bytes::from_static(b"abc")).filter(|_| length != "0"),
            ))
            .unwrap();
        req.extensions_mut().insert(on_upgrade().await);
        let (status, _, _) = call(&layer, req).await;
        assert_eq!(status, expected, "Content-Length: {length}");
    }
}

#[tokio::test]
async fn an_http_1_1_upgrade_needs_exactly_one_valid_host() {
    let layer = layer_with(Scripted::new(accept));
    let no_host = Request::get("/")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "test/1");
    let cases = [
        no_host,
        upgrade("test/1").header(header::HOST, "other.example"),
        Request::get("/")
            .header(header::HOST, "a b")
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "test/1"),
    ];
    for req in cases {
        let (status, headers, body) = call(&layer, req.body(Empty::<Bytes>::new()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_text(&headers);
        assert_eq!(body, "missing, repeated or invalid Host header\n");
    }
    assert_eq!(layer.tracker().stats().totals.rejected_head, 3);
}
