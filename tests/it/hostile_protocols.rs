//! Hostile and malformed WebSocket and h2c upgrade requests over raw TCP, against an app
//! shaped like the echo example (h2c on the whole app, a WebSocket route that requires the
//! upgrade). Each case has the status it must get and the state of the connection after.
//! With the `hostile` module, more than 60 cases.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{any, get, post};
use tower::Layer;
use tower_upgrade::h2c::H2c;
use tower_upgrade::websocket::WebSocketHandler;
use tower_upgrade::{Tracker, UpgradeLayer};

use crate::support::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Still HTTP/1.1: a following `GET /` is answered.
    KeepAlive,
    /// Closed by the server.
    Closed,
    /// Switched: the `101` went out (the new protocol is exercised elsewhere).
    Switched,
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    after: After,
}

fn ws(extra: &str) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A WebSocket request with its own version and key lines.
fn ws_raw(lines: &str) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{lines}\r\n"
    )
    .into_bytes()
}

fn h2c(method_target: &str, extra: &str) -> Vec<u8> {
    format!("{method_target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n{extra}\r\n")
        .into_bytes()
}

fn cases() -> Vec<Case> {
    use After::*;
    let c = |name, request: Vec<u8>, status, after| Case {
        name,
        request,
        status,
        after,
    };
    vec![
        c("websocket", ws(""), 101, Switched),
        c("websocket, mixed case and a Connection list", format!("GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\r\n").into_bytes(), 101, Switched),
        c("two keys", ws(&format!("Sec-WebSocket-Key: {WS_KEY}\r\n")), 400, KeepAlive),
        c("two versions", ws("Sec-WebSocket-Version: 13\r\n"), 400, KeepAlive),
        c("no key", ws_raw("Sec-WebSocket-Version: 13\r\n"), 400, KeepAlive),
        c("no version", ws_raw(&format!("Sec-WebSocket-Key: {WS_KEY}\r\n")), 400, KeepAlive),
        c("key of 15 bytes", ws_raw("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n"), 400, KeepAlive),
        c("key of 17 bytes", ws_raw("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n"), 400, KeepAlive),
        c("key not base64", ws_raw("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n"), 400, KeepAlive),
        c("8 KiB key", ws_raw(&format!("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n", "A".repeat(8192))), 400, KeepAlive),
        c("version 8", ws_raw(&format!("Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {WS_KEY}\r\n")), 426, KeepAlive),
        c("version 013", ws_raw(&format!("Sec-WebSocket-Version: 013\r\nSec-WebSocket-Key: {WS_KEY}\r\n")), 426, KeepAlive),
        c("version 99999999999", ws_raw(&format!("Sec-WebSocket-Version: 99999999999\r\nSec-WebSocket-Key: {WS_KEY}\r\n")), 426, KeepAlive),
        c("POST", format!("POST /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\r\n").into_bytes(), 405, KeepAlive),
        c("Origin: null", ws("Origin: null\r\n"), 403, KeepAlive),
        c("cross-site Origin", ws("Origin: http://evil.example\r\n"), 403, KeepAlive),
        c("Origin with another port", ws("Origin: http://x:8080\r\n"), 403, KeepAlive),
        c("Origin not a URL", ws("Origin: :::\r\n"), 403, KeepAlive),
        c("8 KiB Origin", ws(&format!("Origin: http://{}.example\r\n", "a".repeat(8192))), 403, KeepAlive),
        c("same-origin Origin", ws("Origin: http://x\r\n"), 101, Switched),
        c("websocket with a body", ws("Content-Length: 3\r\n").into_iter().chain(*b"abc").collect(), 426, KeepAlive),
        c("plain GET /ws", b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 426, KeepAlive),
        // h2c: anything wrong is served over HTTP/1.1, never an error.
        c("h2c", h2c("GET /", &format!("HTTP2-Settings: {H2C_SETTINGS}\r\n")), 101, Switched),
        c("h2c without HTTP2-Settings", h2c("GET /", ""), 200, KeepAlive),
        c("h2c with two HTTP2-Settings", h2c("GET /", &format!("HTTP2-Settings: {H2C_SETTINGS}\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n")), 200, KeepAlive),
        c("h2c with padded HTTP2-Settings", h2c("GET /", "HTTP2-Settings: AAMAAABk==\r\n"), 200, KeepAlive),
        c("h2c with garbage HTTP2-Settings", h2c("GET /", "HTTP2-Settings: !!!~~~\r\n"), 200, KeepAlive),
        c("h2c with a 5-byte setting", h2c("GET /", "HTTP2-Settings: AAMAAAA\r\n"), 200, KeepAlive),
        c("h2c with ENABLE_PUSH=2", h2c("GET /", "HTTP2-Settings: AAIAAAAC\r\n"), 200, KeepAlive),
        c("h2c with 16 KiB of HTTP2-Settings", h2c("GET /", &format!("HTTP2-Settings: {}\r\n", "A".repeat(16 * 1024))), 200, KeepAlive),
        // Past the layer's bound on an upgrade request head: refused whatever the protocol.
        c("h2c with 64 KiB of HTTP2-Settings", h2c("GET /", &format!("HTTP2-Settings: {}\r\n", "A".repeat(64 * 1024))), 431, Closed),
        c("h2c, HTTP2-Settings not in Connection", format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n\r\n").into_bytes(), 200, KeepAlive),
        c("h2c with a body over 64 KiB", [h2c("POST /echo", &format!("HTTP2-Settings: {H2C_SETTINGS}\r\nContent-Length: 70000\r\n")), vec![b'x'; 70_000]].concat(), 200, KeepAlive),
        c("h2c, chunked", [h2c("POST /echo", &format!("HTTP2-Settings: {H2C_SETTINGS}\r\nTransfer-Encoding: chunked\r\n")), b"3\r\nabc\r\n0\r\n\r\n".to_vec()].concat(), 200, KeepAlive),
        c("h2 over cleartext (TLS only)", format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n\r\n").into_bytes(), 200, KeepAlive),
        c("h2c on HTTP/1.0", format!("GET / HTTP/1.0\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n\r\n").into_bytes(), 200, Closed),
        c("h2c, CONNECT", format!("CONNECT x:80 HTTP/1.1\r\nHost: x:80\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n\r\n").into_bytes(), 404, KeepAlive),
    ]
}

async fn spawn_app() -> (SocketAddr, Tracker) {
    let tracker = Tracker::new();
    let router = Router::new()
        .route("/", get(|| async { "plain" }))
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/ws",
            any(|| async { "upgrade only" }).layer(
                UpgradeLayer::new()
                    .with_tracker(tracker.clone())
                    .protocol(WebSocketHandler::new(|ws, _req| ws_echo(ws)))
                    .unwrap()
                    .require_upgrade(),
            ),
        );
    let app = UpgradeLayer::new()
        .with_tracker(tracker.clone())
        .protocol(H2c::new())
        .unwrap()
        .layer(router);
    (spawn_axum(app).await, tracker)
}

#[tokio::test]
async fn hostile_websocket_and_h2c_requests_get_clear_answers() {
    let (addr, tracker) = spawn_app().await;
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for case in &cases {
        let mut stream = send(addr, &case.request).await;
        let (status, head) = if case.after == After::Switched {
            (101, read_head(&mut stream).await)
        } else {
            status_of(&mut stream).await
        };
        assert!(
            head.starts_with(&format!(
                "HTTP/1.{} {status} ",
                u8::from(!case.name.contains("HTTP/1.0"))
            )),
            "{}: {head}",
            case.name
        );
        assert_eq!(status, case.status, "{}: {head}", case.name);
        // The layer's own answers (not the inner service's) say why in plain text.
        if status >= 400 && !case.name.starts_with("h2") {
            assert_eq!(
                header(&head, "content-type"),
                Some("text/plain; charset=utf-8"),
                "{}: {head}",
                case.name
            );
        }
        match case.after {
            After::Switched => drop(stream),
            After::KeepAlive => {
                send_get(&mut stream).await;
                let (status, head) = status_of(&mut stream).await;
                assert_eq!(status, 200, "{}: follow-up {head}", case.name);
            }
            After::Closed => {
                assert!(read_to_end(&mut stream).await.is_empty(), "{}", case.name);
            }
        }
    }
    // The server still serves, and every upgraded connection is gone.
    let mut stream = send(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(read_response(&mut stream).await.1, "plain");
    wait_live(&tracker, 0).await;
}
