//! The layer stacked with tower-http's middleware, inside and outside, over real TCP.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::{HeaderName, HeaderValue, StatusCode};
use tokio::io::AsyncWriteExt;
use tower_http::compression::CompressionLayer;
use tower_http::cors::CorsLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::support::*;

fn routes() -> Router {
    // A body big enough for the compression layer to act on.
    Router::new().route("/", get(|| async { "plain ".repeat(100) }))
}

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\
    Accept-Encoding: gzip\r\nOrigin: http://example.com\r\n\r\n";

async fn upgrade_and_echo(app: Router, pause: Duration) -> String {
    let addr = spawn_axum(app).await;
    let mut stream = send(addr, UPGRADE).await;
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert_eq!(header(&head, "upgrade"), Some("upper/1"));
    assert_eq!(header(&head, "connection"), Some("upgrade"));
    assert_eq!(header(&head, "content-encoding"), None, "{head}");
    assert_eq!(header(&head, "content-length"), None, "{head}");
    tokio::time::sleep(pause).await;
    stream.write_all(b"still here\n").await.unwrap();
    assert_eq!(read_exact(&mut stream, 11).await, b"STILL HERE\n");
    head
}

async fn plain_gzip(app: Router) -> String {
    let addr = spawn_axum(app).await;
    let mut stream = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n",
    )
    .await;
    read_head(&mut stream).await
}

fn timeout() -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_millis(500))
}

fn marker() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        HeaderName::from_static("x-marker"),
        HeaderValue::from_static("set"),
    )
}

/// Every tower-http layer outside ours: the 101 keeps its headers and gains theirs, is
/// never compressed, and the timeout (500 ms) does not cut the upgraded connection.
#[tokio::test]
async fn tower_http_layers_outside() {
    let app = routes()
        .layer(upper_layer())
        .layer(CompressionLayer::new())
        .layer(timeout())
        .layer(CorsLayer::permissive())
        .layer(marker())
        .layer(TraceLayer::new_for_http());
    let head = upgrade_and_echo(app.clone(), Duration::from_millis(800)).await;
    assert_eq!(header(&head, "x-marker"), Some("set"));
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    // Ordinary requests are still compressed.
    assert_eq!(
        header(&plain_gzip(app).await, "content-encoding"),
        Some("gzip")
    );
}

/// Every tower-http layer inside ours: they see only the requests that pass through.
#[tokio::test]
async fn tower_http_layers_inside() {
    let app = routes()
        .layer(CompressionLayer::new())
        .layer(timeout())
        .layer(CorsLayer::permissive())
        .layer(marker())
        .layer(TraceLayer::new_for_http())
        .layer(upper_layer());
    let head = upgrade_and_echo(app.clone(), Duration::from_millis(800)).await;
    assert_eq!(
        header(&head, "x-marker"),
        None,
        "inner layers do not see the 101"
    );
    assert_eq!(header(&head, "access-control-allow-origin"), None);
    let head = plain_gzip(app).await;
    assert_eq!(header(&head, "content-encoding"), Some("gzip"));
    assert_eq!(header(&head, "x-marker"), Some("set"));
}

/// The one surprise: outside our layer, `CompressionLayer` answers 406 instead of the 101
/// when the client forbids the identity encoding. Inside, the 101 goes out.
#[tokio::test]
async fn compression_outside_turns_a_101_into_406_when_identity_is_refused() {
    let request = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\
        Accept-Encoding: br;q=1, identity;q=0\r\n\r\n";
    let outside = spawn_axum(routes().layer(upper_layer()).layer(CompressionLayer::new())).await;
    let mut stream = send(outside, request).await;
    let head = read_head(&mut stream).await;
    let inside = spawn_axum(routes().layer(CompressionLayer::new()).layer(upper_layer())).await;
    let mut stream = send(inside, request).await;
    let head_inside = read_head(&mut stream).await;
    assert!(
        head_inside.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head_inside}"
    );
    // What tower-http 0.7 does today (and the crate docs say): a change there fails here.
    assert!(
        head.starts_with("HTTP/1.1 406 Not Acceptable\r\n"),
        "{head}"
    );
}
