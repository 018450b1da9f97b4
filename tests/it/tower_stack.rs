//! The layer in plain tower stacks (`ServiceBuilder`, served by hyper) and in axum's
//! `Router::layer` / `route_layer`, on either side of every tower-http layer, with
//! WebSocket and h2c registered together; each answer checked over TCP with real clients
//! (tokio-tungstenite, curl).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use futures_util::SinkExt;
use http::{HeaderName, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Message as ClientMessage;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::decompression::{DecompressionLayer, RequestDecompressionLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_upgrade::h2c::H2c;
use tower_upgrade::websocket::WebSocketHandler;
use tower_upgrade::{Tracker, UpgradeLayer};

use crate::support::*;

/// A page big enough for the compression layer to act on.
fn page() -> String {
    "tower stack ".repeat(200)
}

fn router() -> Router {
    Router::new().route("/", get(|| async { page() }))
}

/// WebSocket and h2c on one layer, with a tracker the test can shut down.
fn upgrade_layer(tracker: &Tracker, require: bool) -> UpgradeLayer {
    let layer = UpgradeLayer::new()
        .with_tracker(tracker.clone())
        .protocol(WebSocketHandler::new(|ws, _req| ws_echo(ws)))
        .unwrap()
        .protocol(H2c::new())
        .unwrap();
    if require {
        layer.require_upgrade()
    } else {
        layer
    }
}

const X_STACK: HeaderName = HeaderName::from_static("x-stack");

/// Serves the layer outside every tower-http layer: the inner service's request body is
/// hyper's own, and its response body whatever the layers made of axum's.
async fn spawn_outermost(tracker: &Tracker, require: bool) -> SocketAddr {
    let app = ServiceBuilder::new()
        .layer(upgrade_layer(tracker, require))
        .layer(TraceLayer::new_for_http())
        .layer(CompressionLayer::new())
        .layer(DecompressionLayer::new())
        .layer(RequestDecompressionLayer::new())
        .layer(CorsLayer::permissive())
        .layer(RequestBodyLimitLayer::new(1 << 20))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            X_STACK,
            HeaderValue::from_static("inner"),
        ))
        .service(router());
    spawn_hyper(app, true).await
}

/// Serves the layer inside every tower-http layer: they see the upgrade request and the
/// `101`, and the layer's own answers go through them.
async fn spawn_innermost(tracker: &Tracker, require: bool) -> SocketAddr {
    // CORS and the timeout make responses of their own, with a default body from the layer
    // inside them: the upgrade layer has one (not every tower-http body does).
    let app = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            X_STACK,
            HeaderValue::from_static("outer"),
        ))
        .layer(TraceLayer::new_for_http())
        .layer(RequestBodyLimitLayer::new(1 << 20))
        .layer(CompressionLayer::new())
        .layer(DecompressionLayer::new())
        .layer(RequestDecompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .layer(CorsLayer::permissive())
        .layer(upgrade_layer(tracker, require))
        .service(router());
    spawn_hyper(app, true).await
}

/// A WebSocket client switches (`101`, with the stack's header when the layer is inside)
/// and gets its echo, also after a pause longer than nothing (the timeout layer does not
/// cut the upgraded connection).
async fn assert_websocket_echo(addr: SocketAddr, stack_header: Option<&str>) {
    let (mut client, res) = ws_connect(addr, format!("ws://{addr}/")).await;
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(res.headers()["upgrade"], "websocket");
    assert_eq!(res.headers().get("content-encoding"), None);
    assert_eq!(
        res.headers().get("x-stack").map(|v| v.to_str().unwrap()),
        stack_header
    );
    client.send(ClientMessage::text("hello")).await.unwrap();
    assert_eq!(
        ws_next(&mut client).await,
        Some(ClientMessage::text("hello"))
    );
    client
        .send(ClientMessage::binary(vec![7; 70_000]))
        .await
        .unwrap();
    assert_eq!(
        ws_next(&mut client).await,
        Some(ClientMessage::binary(vec![7; 70_000]))
    );
    client.close(None).await.unwrap();
}

/// The status line and headers of a raw request's response.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = send(addr, request.as_bytes()).await;
    read_head(&mut stream).await
}

/// curl, bounded in time; its stdout.
async fn curl(args: &[&str]) -> String {
    let out = within(
        tokio::process::Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "5"])
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A plain GET passes through and comes back gzip-compressed (curl decodes it).
async fn assert_gzip_get(addr: SocketAddr) {
    let url = format!("http://{addr}/");
    let out = curl(&["--compressed", "--dump-header", "-", &url]).await;
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    assert_eq!(body, page());
}

/// `curl --http2` on `http://` upgrades with `h2c`; the answer's HTTP version says whether
/// the connection switched.
async fn curl_h2c(addr: SocketAddr) -> (String, String) {
    let url = format!("http://{addr}/");
    let out = curl(&["--http2", "--write-out", "\n%{http_version}", &url]).await;
    let (body, version) = out.rsplit_once('\n').unwrap();
    (version.to_owned(), body.to_owned())
}

async fn assert_answers(addr: SocketAddr, stack_header: Option<&str>) {
    assert_websocket_echo(addr, stack_header).await;
    assert_gzip_get(addr).await;
    // 400: an `Upgrade` list that cannot be read.
    let head = raw(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket/\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
    assert_eq!(header(&head, "x-stack"), stack_header);
}

#[tokio::test]
async fn outermost_in_a_tower_stack() {
    let tracker = Tracker::new();
    let addr = spawn_outermost(&tracker, false).await;
    assert_answers(addr, None).await;
    // h2c serves the stack inside the layer over HTTP/2, compression included.
    let (version, body) = curl_h2c(addr).await;
    assert_eq!((version.as_str(), body), ("2", page()));

    let required = spawn_outermost(&Tracker::new(), true).await;
    let head = raw(required, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{head}"
    );
    assert_eq!(header(&head, "upgrade"), Some("websocket, h2c"));

    // 503 once shutdown starts; plain requests still pass.
    tracker.shutdown();
    let head = raw(addr, &String::from_utf8_lossy(WS_UPGRADE)).await;
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert_eq!(header(&head, "retry-after"), Some("1"));
    assert_gzip_get(addr).await;
}

#[tokio::test]
async fn innermost_in_a_tower_stack() {
    let tracker = Tracker::new();
    let addr = spawn_innermost(&tracker, false).await;
    assert_answers(addr, Some("outer")).await;
    // The service the layer wraps takes the body the outer layers made of hyper's, which h2c
    // cannot make: the upgrade is declined and curl is served over HTTP/1.1.
    let (version, body) = curl_h2c(addr).await;
    assert_eq!((version.as_str(), body), ("1.1", page()));

    let required = spawn_innermost(&Tracker::new(), true).await;
    let head = raw(
        required,
        "GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
    )
    .await;
    assert!(
        head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{head}"
    );
    assert_eq!(header(&head, "upgrade"), Some("websocket, h2c"));
    assert_eq!(header(&head, "x-stack"), Some("outer"));
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));

    tracker.shutdown();
    let head = raw(addr, &String::from_utf8_lossy(WS_UPGRADE)).await;
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert_eq!(header(&head, "x-stack"), Some("outer"));
}

#[tokio::test]
async fn in_axum_layer_and_route_layer() {
    let tracker = Tracker::new();
    // `route_layer`: `/ws` requires an upgrade; `layer`: every route may switch.
    let app = Router::new()
        .route("/ws", any(|| async { "unreachable\n" }))
        .route_layer(upgrade_layer(&tracker, true))
        .route("/", get(|| async { page() }))
        .layer(upgrade_layer(&tracker, false))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .layer(CorsLayer::permissive());
    let addr = spawn_axum(app).await;
    assert_answers(addr, None).await;
    let (mut client, _) = ws_connect(addr, format!("ws://{addr}/ws")).await;
    client.send(ClientMessage::text("route")).await.unwrap();
    assert_eq!(
        ws_next(&mut client).await,
        Some(ClientMessage::text("route"))
    );
    // h2c under `Router::layer` serves the route it came in on over HTTP/2.
    let (version, body) = curl_h2c(addr).await;
    assert_eq!((version.as_str(), body), ("2", page()));
    let head = raw(addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{head}"
    );
    tracker.shutdown();
    let head = raw(addr, &String::from_utf8_lossy(WS_UPGRADE)).await;
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
}
