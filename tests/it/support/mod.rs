//! Helpers for tests that talk to real servers over loopback TCP.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_upgrade::{ProtocolHandler, UpgradeLayer, UpgradeRequest, UpgradedIo, handler_fn};

// The `echo` example needs both features.
#[cfg(feature = "deflate")]
mod deflate;
#[cfg(all(feature = "websocket", feature = "h2c"))]
mod process;
#[cfg(feature = "websocket")]
mod ws;
#[cfg(feature = "deflate")]
pub use deflate::*;
#[cfg(all(feature = "websocket", feature = "h2c"))]
pub use process::*;
#[cfg(feature = "websocket")]
pub use ws::*;

/// curl 7.88's `HTTP2-Settings`.
pub const H2C_SETTINGS: &str = "AAMAAABkAARAAAAAAAIAAAAA";

/// How long any single read in a test may take before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `app` (a `Router`, a layered `Router`, or a service wrapped in the upgrade
/// layer, whose response body is mapped back into axum's as the crate docs show) with
/// `axum::serve` on `127.0.0.1:0`.
pub async fn spawn_axum<S, B: 'static>(app: S) -> SocketAddr
where
    S: tower::Service<axum::extract::Request, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    http::Response<B>: axum::response::IntoResponse,
{
    use axum::response::IntoResponse;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app =
        tower::ServiceExt::<axum::extract::Request>::map_response(app, IntoResponse::into_response);
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service(app);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Serves `svc` with `hyper::server::conn::http1` on `127.0.0.1:0`, with upgrades on
/// (`with_upgrades = true`) or off.
pub async fn spawn_hyper<S, B>(svc: S, with_upgrades: bool) -> SocketAddr
where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new();
                if with_upgrades {
                    let _ = conn
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                } else {
                    let _ = conn.serve_connection(TokioIo::new(stream), svc).await;
                }
            });
        }
    });
    addr
}

/// Awaits `f` for at most [`IO_TIMEOUT`]; panics when it takes longer.
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(IO_TIMEOUT, f)
        .await
        .expect("timed out")
}

/// Connects and writes `request` at once.
pub async fn send(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream
}

/// Reads one response head (through the blank line), byte by byte so that nothing after it
/// is consumed.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut byte))
            .await
            .expect("timed out reading a response head")
            .unwrap();
        assert!(
            n == 1,
            "connection closed mid-head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Reads exactly `n` bytes.
pub async fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(IO_TIMEOUT, stream.read_exact(&mut buf))
        .await
        .expect("timed out reading")
        .unwrap();
    buf
}

/// Reads a full response with a `Content-Length` body: (head, body).
pub async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let head = read_head(stream).await;
    let len = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
    let body = read_exact(stream, len).await;
    (head, String::from_utf8(body).unwrap())
}

/// Reads until the peer closes the connection.
pub async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, stream.read_to_end(&mut buf))
        .await
        .expect("timed out waiting for the connection to close")
        .unwrap();
    buf
}

/// The value of a header in a response head (name compared case-insensitively).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The names of the headers in a response head, lowercased, in order.
pub fn header_names(head: &str) -> Vec<String> {
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
        .collect()
}

/// The `upper/1` test protocol: every line the client sends comes back uppercased.
pub async fn upper_lines(io: UpgradedIo, _req: UpgradeRequest) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut io = BufReader::new(io);
    let mut line = String::new();
    while io.read_line(&mut line).await? != 0 {
        io.get_mut()
            .write_all(line.to_uppercase().as_bytes())
            .await?;
        line.clear();
    }
    Ok(())
}

/// The `upper/1` test protocol as a handler.
pub fn upper() -> impl ProtocolHandler {
    handler_fn("upper/1", upper_lines)
}

/// The `panics` test protocol: its handler panics (`boom`) right after the switch.
pub fn panics() -> impl ProtocolHandler {
    handler_fn("panics", |_io: UpgradedIo, _req: UpgradeRequest| async {
        if true {
            panic!("boom");
        }
    })
}

/// A layer with `upper/1` registered.
pub fn upper_layer() -> UpgradeLayer {
    UpgradeLayer::new().protocol(upper()).unwrap()
}

/// The app most tests serve: `GET /` answers `plain` and `POST /echo` its body, with
/// `layer` around both.
pub fn plain_app(layer: UpgradeLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "plain" }))
        .route("/echo", post(|body: Bytes| async move { body }))
        .layer(layer)
}

/// Reads a response and returns its status code and head.
pub async fn status_of(stream: &mut TcpStream) -> (u16, String) {
    let (head, _body) = read_response(stream).await;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head)
}

/// Checks `done` every 10 ms, at most 500 times (5 s); returns whether it became true.
pub async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Like [`eventually`], for a condition that must be awaited (an HTTP request, say): at
/// most 5 s, with 20 ms between tries.
pub async fn eventually_async<F, Fut>(mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..250 {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Waits (at most 5 s) until the tracker counts `live` upgraded connections; panics with
/// the counters otherwise.
pub async fn wait_live(tracker: &tower_upgrade::Tracker, live: usize) {
    if eventually(|| tracker.live() == live).await {
        return;
    }
    panic!(
        "live stayed at {} (wanted {live}): {:?}",
        tracker.live(),
        tracker.stats()
    );
}

/// Sends a plain `GET /` on a connection that must still speak HTTP/1.1 (the caller reads
/// the answer).
pub async fn send_get(stream: &mut TcpStream) {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
}
