//! The core layer over real TCP: status lines and headers read as raw bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::routing::get;
use http::StatusCode;
use http::request::Parts;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tower_upgrade::{
    Accepted, BoxError, Decision, ProtocolHandler, Rejection, UpgradeErrorKind, UpgradeLayer,
    UpgradeRequest, UpgradedIo, handler_fn,
};

use crate::support::*;

/// A handler with an accept step: `x-allow: yes` accepts, `x-decline` declines, anything
/// else is refused with 403. It takes bodies up to 1 KiB and greets with what it got.
struct Guarded;

impl ProtocolHandler for Guarded {
    type State = &'static str;

    fn token(&self) -> &str {
        "guarded"
    }

    fn accept(&self, req: &Parts) -> Decision<&'static str> {
        if req.headers.contains_key("x-decline") {
            return Decision::Decline;
        }
        match req.headers.get("x-allow") {
            Some(v) if v == "yes" => Accepted::new("welcome")
                .header("x-accepted", http::HeaderValue::from_static("1"))
                .read_body(1024)
                .into(),
            _ => Rejection::new(StatusCode::FORBIDDEN, "not allowed\n").into(),
        }
    }

    async fn serve(
        self: Arc<Self>,
        mut io: UpgradedIo,
        req: UpgradeRequest,
        greeting: &'static str,
    ) -> Result<(), BoxError> {
        let user = req.extensions().get::<User>().map_or("anonymous", |u| u.0);
        let msg = format!(
            "{greeting} {user}: {} {} body={:?}\n",
            req.parts().method,
            req.uri(),
            String::from_utf8_lossy(req.body())
        );
        io.write_all(msg.as_bytes()).await?;
        upper_lines(io, req).await?;
        Ok(())
    }
}

#[derive(Clone)]
struct User(&'static str);

fn layer() -> UpgradeLayer {
    UpgradeLayer::new()
        .protocol(upper())
        .unwrap()
        .protocol(Guarded)
        .unwrap()
}

const UPGRADE_UPPER: &[u8] =
    b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\n";

async fn assert_upper_echo(stream: &mut tokio::net::TcpStream) {
    stream.write_all(b"abc\n").await.unwrap();
    assert_eq!(read_exact(stream, 4).await, b"ABC\n");
}

fn assert_101(head: &str, token: &str) {
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert_eq!(header(head, "upgrade"), Some(token), "{head}");
    assert_eq!(header(head, "connection"), Some("upgrade"), "{head}");
    assert_eq!(header(head, "content-length"), None, "{head}");
    assert_eq!(header(head, "transfer-encoding"), None, "{head}");
}

#[tokio::test]
async fn switches_protocols_with_axum_serve() {
    let addr = spawn_axum(plain_app(layer())).await;
    let mut stream = send(addr, UPGRADE_UPPER).await;
    let head = read_head(&mut stream).await;
    assert_101(&head, "upper/1");
    assert_upper_echo(&mut stream).await;
}

#[tokio::test]
async fn switches_protocols_with_hyper_http1() {
    let addr = spawn_hyper(plain_app(layer()), true).await;
    let mut stream = send(addr, UPGRADE_UPPER).await;
    assert_101(&read_head(&mut stream).await, "upper/1");
    assert_upper_echo(&mut stream).await;
}

#[tokio::test]
async fn bytes_sent_right_behind_the_request_reach_the_handler() {
    for addr in [
        spawn_axum(plain_app(layer())).await,
        spawn_hyper(plain_app(layer()), true).await,
    ] {
        let mut stream = send(addr, &[UPGRADE_UPPER, b"early\nbirds\n"].concat()).await;
        assert_101(&read_head(&mut stream).await, "upper/1");
        assert_eq!(read_exact(&mut stream, 12).await, b"EARLY\nBIRDS\n");
        assert_upper_echo(&mut stream).await;
    }
}

#[tokio::test]
async fn ordinary_requests_pass_through() {
    let addr = spawn_axum(plain_app(layer())).await;
    let mut stream = send(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(header(&head, "upgrade"), None);
    assert_eq!(body, "plain");
}

/// Requests that are not upgrade requests, or that offer nothing registered, reach the
/// inner service and get its ordinary answer.
#[tokio::test]
async fn requests_that_do_not_switch_reach_the_inner_service() {
    let addr = spawn_axum(plain_app(layer())).await;
    let cases: &[&[u8]] = &[
        // `Upgrade` without the `upgrade` connection option (RFC 9110 §7.6.1).
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: upper/1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nUpgrade: upper/1\r\n\r\n",
        // `Connection: upgrade` without `Upgrade`, or with an empty list.
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: , ,\r\n\r\n",
        // Nothing registered is offered; versions compare exactly.
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo/2, bar\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper/2\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
        // The handler declines.
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: guarded\r\nx-decline: 1\r\n\r\n",
    ];
    for request in cases {
        let mut stream = send(addr, request).await;
        let (head, body) = read_response(&mut stream).await;
        let shown = String::from_utf8_lossy(request);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{shown}\n{head}");
        assert_eq!(body, "plain", "{shown}");
        // The connection is still HTTP/1.1.
        send_get(&mut stream).await;
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{shown}\n{head}");
        assert_eq!(body, "plain");
    }
}

/// RFC 9110 §7.8: a server MUST ignore `Upgrade` in an HTTP/1.0 request (and MUST NOT send
/// it a 1xx).
#[tokio::test]
async fn http_1_0_upgrade_requests_are_served_normally() {
    let addr = spawn_axum(plain_app(layer())).await;
    let mut stream = send(
        addr,
        b"GET / HTTP/1.0\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\n",
    )
    .await;
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert_eq!(body, "plain");
}

#[tokio::test]
async fn lists_follow_rfc_9110() {
    let addr = spawn_axum(plain_app(layer())).await;
    let cases: &[(&[u8], &str)] = &[
        (
            b"Connection: keep-alive, Upgrade\r\nUpgrade: upper/1\r\n",
            "upper/1",
        ),
        (
            b"Connection: keep-alive\r\nConnection: UPGRADE\r\nUpgrade: upper/1\r\n",
            "upper/1",
        ),
        (
            b"Connection: upgrade\r\nUpgrade: foo\r\nUpgrade: UPPER/1\r\n",
            "upper/1",
        ),
        (
            b"Connection: upgrade\r\nUpgrade: ,\t upper/1 ,,\r\n",
            "upper/1",
        ),
        (b"Connection: ,upgrade,\r\nUpgrade: Upper/1\r\n", "upper/1"),
    ];
    for (headers, token) in cases {
        let request = [b"GET / HTTP/1.1\r\nHost: x\r\n", *headers, b"\r\n"].concat();
        let mut stream = send(addr, &request).await;
        assert_101(&read_head(&mut stream).await, token);
        assert_upper_echo(&mut stream).await;
    }
}

#[tokio::test]
async fn selects_in_client_order_by_default() {
    let addr = spawn_axum(plain_app(layer())).await;
    let mut stream = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo, guarded, upper/1\r\nx-allow: yes\r\n\r\n",
    )
    .await;
    let head = read_head(&mut stream).await;
    assert_101(&head, "guarded");
    assert_eq!(header(&head, "x-accepted"), Some("1"));
}

#[tokio::test]
async fn selects_in_server_order_when_asked() {
    let addr = spawn_axum(plain_app(layer().prefer_server_order())).await;
    let mut stream = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo, guarded, upper/1\r\nx-allow: yes\r\n\r\n",
    )
    .await;
    assert_101(&read_head(&mut stream).await, "upper/1");
    assert_upper_echo(&mut stream).await;
}

#[tokio::test]
async fn invalid_upgrade_lists_are_bad_requests() {
    let addr = spawn_axum(plain_app(layer())).await;
    let many = format!("Upgrade: {}\r\n", vec!["x"; 65].join(","));
    let cases: Vec<Vec<u8>> = vec![
        b"Upgrade: upper/1, foo/\r\n".to_vec(),
        b"Upgrade: /1\r\n".to_vec(),
        b"Upgrade: a b\r\n".to_vec(),
        b"Upgrade: upper/1/2\r\n".to_vec(),
        b"Upgrade: \"upper/1\"\r\n".to_vec(),
        b"Upgrade: upper/1\r\nUpgrade: caf\xc3\xa9\r\n".to_vec(),
        b"Upgrade: upper/1;q=1\r\n".to_vec(),
        many.into_bytes(),
    ];
    for upgrade in cases {
        let request = [
            &b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n"[..],
            &upgrade,
            b"\r\n",
        ]
        .concat();
        let mut stream = send(addr, &request).await;
        let (head, body) = read_response(&mut stream).await;
        assert!(
            head.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{upgrade:?}\n{head}"
        );
        assert_eq!(
            header(&head, "content-type"),
            Some("text/plain; charset=utf-8"),
            "{upgrade:?}\n{head}"
        );
        assert!(body.starts_with("invalid Upgrade header"), "{body}");
        // Still HTTP/1.1.
        send_get(&mut stream).await;
        assert!(
            read_response(&mut stream)
                .await
                .0
                .starts_with("HTTP/1.1 200 OK\r\n")
        );
    }
}

#[tokio::test]
async fn required_upgrade_answers_426_with_every_protocol() {
    let addr = spawn_axum(plain_app(layer().require_upgrade())).await;
    for request in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: guarded\r\nx-decline: 1\r\n\r\n",
    ] {
        let mut stream = send(addr, request).await;
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{head}");
        assert_eq!(header(&head, "upgrade"), Some("upper/1, guarded"));
        assert_eq!(header(&head, "connection"), Some("upgrade"));
        assert_eq!(body, "this resource requires a protocol upgrade: upper/1, guarded\n");
    }
    // An upgrade still switches.
    let mut stream = send(addr, UPGRADE_UPPER).await;
    assert_101(&read_head(&mut stream).await, "upper/1");
}

#[tokio::test]
async fn rejections_are_answered_and_the_connection_stays_http() {
    let addr = spawn_axum(plain_app(layer())).await;
    let mut stream = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: guarded\r\n\r\n",
    )
    .await;
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{head}");
    assert_eq!(header(&head, "upgrade"), None);
    assert_eq!(body, "not allowed\n");
    stream.write_all(UPGRADE_UPPER).await.unwrap();
    assert_101(&read_head(&mut stream).await, "upper/1");
    assert_upper_echo(&mut stream).await;
}

#[tokio::test]
async fn outer_extensions_and_the_request_head_reach_the_handler() {
    let app = plain_app(layer()).layer(axum::middleware::from_fn(
        |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
            req.extensions_mut().insert(User("alice"));
            next.run(req).await
        },
    ));
    let addr = spawn_axum(app).await;
    let mut stream = send(
        addr,
        b"GET /room?x=1 HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: guarded\r\nx-allow: yes\r\n\r\n",
    )
    .await;
    assert_101(&read_head(&mut stream).await, "guarded");
    let greeting = b"welcome alice: GET /room?x=1 body=\"\"\n";
    assert_eq!(read_exact(&mut stream, greeting.len()).await, greeting);
}

/// RFC 9110 §7.8: with `Expect: 100-continue`, the 100 goes out before the 101, and the body
/// is read before switching.
#[tokio::test]
async fn expect_continue_sends_100_before_101_and_the_body_reaches_the_handler() {
    for addr in [
        spawn_axum(plain_app(layer())).await,
        spawn_hyper(plain_app(layer()), true).await,
    ] {
        let mut stream = send(
            addr,
            b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: guarded\r\nx-allow: yes\r\n\
              Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .await;
        let head = read_head(&mut stream).await;
        assert_eq!(head, "HTTP/1.1 100 Continue\r\n\r\n");
        stream.write_all(b"hello").await.unwrap();
        assert_101(&read_head(&mut stream).await, "guarded");
        let greeting = b"welcome anonymous: POST /up body=\"hello\"\n";
        assert_eq!(read_exact(&mut stream, greeting.len()).await, greeting);
        assert_upper_echo(&mut stream).await;
    }
}

#[tokio::test]
async fn chunked_bodies_are_read_before_switching() {
    let addr = spawn_axum(plain_app(layer())).await;
    let mut stream = send(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: guarded\r\nx-allow: yes\r\n\
          Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nnext\n",
    )
    .await;
    assert_101(&read_head(&mut stream).await, "guarded");
    let greeting = b"welcome anonymous: POST / body=\"abcde\"\nNEXT\n";
    assert_eq!(read_exact(&mut stream, greeting.len()).await, greeting);
}

#[tokio::test]
async fn bodies_the_handler_did_not_ask_for_decline_the_upgrade() {
    let addr = spawn_axum(plain_app(layer())).await;
    // `upper/1` takes no body: the request is served by the inner service, which reads it.
    let mut stream = send(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper/1\r\nContent-Length: 4\r\n\r\nbody",
    )
    .await;
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "body");
    // A body announced above the handler's limit is declined the same way.
    let big = vec![b'x'; 2000];
    let request = [
        &b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: guarded\r\nx-allow: yes\r\nContent-Length: 2000\r\n\r\n"[..],
        &big,
    ]
    .concat();
    let mut stream = send(addr, &request).await;
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body.len(), 2000);
}

#[tokio::test]
async fn chunked_bodies_over_the_limit_are_413() {
    let addr = spawn_axum(plain_app(layer())).await;
    let chunk = format!("800\r\n{}\r\n0\r\n\r\n", "y".repeat(0x800));
    let request = [
        &b"POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: guarded\r\nx-allow: yes\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        chunk.as_bytes(),
    ]
    .concat();
    let mut stream = send(addr, &request).await;
    let (head, body) = read_response(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{head}"
    );
    assert_eq!(body, "request body too large for upgrade\n");
}

/// Pipelined requests behind a declined upgrade are ordinary HTTP/1.1 requests (RFC 9931).
#[tokio::test]
async fn pipelined_requests_after_a_declined_upgrade_are_served() {
    let addr = spawn_axum(plain_app(layer())).await;
    let mut stream = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: unknown\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    for _ in 0..2 {
        let (head, body) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(body, "plain");
    }
}

/// The layer leaves `OnUpgrade` in place for requests it does not take, so an inner axum
/// `WebSocketUpgrade` still works.
#[tokio::test]
async fn inner_axum_websocket_upgrade_still_works() {
    let app = Router::new()
        .route(
            "/ws",
            get(|ws: WebSocketUpgrade| async move { ws.on_upgrade(|_socket| async {}) }),
        )
        .layer(layer());
    let addr = spawn_axum(app).await;
    let mut stream = send(
        addr,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert_eq!(
        header(&head, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

fn failing_layer(tx: mpsc::UnboundedSender<(UpgradeErrorKind, String)>) -> UpgradeLayer {
    UpgradeLayer::new()
        .protocol(panics())
        .unwrap()
        .protocol(handler_fn(
            "fails",
            |_io: UpgradedIo, _req: UpgradeRequest| async {
                Err::<(), _>(std::io::Error::other("handler gave up"))
            },
        ))
        .unwrap()
        .protocol(upper())
        .unwrap()
        .on_failed_upgrade(move |e| {
            // The cause is the error's source, not part of its `Display`.
            let cause = std::error::Error::source(e).map(ToString::to_string);
            let _ = tx.send((e.kind(), format!("{e}: {}", cause.unwrap_or_default())));
        })
}

#[tokio::test]
async fn handler_failures_are_reported_and_contained() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = spawn_axum(plain_app(failing_layer(tx))).await;

    let mut stream = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: panics\r\n\r\n",
    )
    .await;
    assert_101(&read_head(&mut stream).await, "panics");
    let (kind, msg) = tokio::time::timeout(IO_TIMEOUT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kind, UpgradeErrorKind::Panic);
    assert_eq!(msg, "panics: protocol handler panicked: boom");
    assert!(
        read_to_end(&mut stream).await.is_empty(),
        "the connection is closed"
    );

    let mut stream = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: fails\r\n\r\n",
    )
    .await;
    assert_101(&read_head(&mut stream).await, "fails");
    let (kind, msg) = tokio::time::timeout(IO_TIMEOUT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kind, UpgradeErrorKind::Handler);
    assert_eq!(msg, "fails: protocol handler failed: handler gave up");

    // The server still serves, plain and upgraded.
    let mut stream = send(addr, UPGRADE_UPPER).await;
    assert_101(&read_head(&mut stream).await, "upper/1");
    assert_upper_echo(&mut stream).await;
    let mut stream = send(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(read_response(&mut stream).await.1, "plain");
}

/// A server that does not enable upgrades sends the 101 but cannot hand over the
/// connection; the failure is reported, not silent.
#[tokio::test]
async fn missing_with_upgrades_is_reported() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = spawn_hyper(plain_app(failing_layer(tx)), false).await;
    let mut stream = send(addr, UPGRADE_UPPER).await;
    let _ = read_head(&mut stream).await;
    let (kind, msg) = tokio::time::timeout(IO_TIMEOUT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kind, UpgradeErrorKind::Upgrade);
    assert!(msg.contains("with_upgrades"), "{msg}");
}

/// Without hyper's `OnUpgrade` (a `oneshot` call) the layer never answers 101.
#[tokio::test]
async fn requests_that_cannot_switch_get_500_not_101() {
    use tower::ServiceExt;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let svc = tower::Layer::layer(
        &layer(),
        tower::service_fn(move |_req: http::Request<axum::body::Body>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
            }
        }),
    );
    let req = http::Request::get("/")
        .header("host", "example.com")
        .header("connection", "upgrade")
        .header("upgrade", "upper/1")
        .body(axum::body::Body::empty())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers().get("upgrade"), None);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "this connection cannot switch protocols\n");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
