//! h2c over real TCP: the HTTP/1.1 upgrade spoken by hand, then the `h2` crate as the
//! HTTP/2 client on the upgraded connection.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tower::{Layer, ServiceExt, service_fn};
use tower_upgrade::{UpgradeLayer, h2c::H2c};

use crate::support::{
    H2C_SETTINGS, header, read_head, read_response, read_to_end, send, spawn_axum, spawn_hyper,
    within,
};

/// Counts failures after the `101`, which none of these tests expect.
fn layer(failures: &Arc<AtomicUsize>) -> UpgradeLayer {
    let failures = Arc::clone(failures);
    UpgradeLayer::new()
        .protocol(H2c::new())
        .unwrap()
        .on_failed_upgrade(move |e| {
            eprintln!("upgrade failed: {e}");
            failures.fetch_add(1, Ordering::SeqCst);
        })
}

/// Describes a request as the service saw it.
fn describe(
    version: http::Version,
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> String {
    let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    format!(
        "{version:?} {method} {uri} x-test={:?} headers={}",
        headers.get("x-test").map(|v| v.to_str().unwrap()),
        names.join(",")
    )
}

fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/info",
            get(|req: Request<Body>| async move {
                describe(req.version(), req.method(), req.uri(), req.headers())
            }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/late",
            post(|body: Body| async move {
                // Reads the body only after the client has filled every window it has.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let body = body.collect().await.unwrap().to_bytes();
                body.len().to_string()
            }),
        )
}

/// `axum::serve`, the layer around the whole router.
async fn spawn_router(failures: &Arc<AtomicUsize>) -> SocketAddr {
    spawn_axum(layer(failures).layer(router())).await
}

/// hyper's HTTP/1.1 server with upgrades, and a service that takes hyper's own body and
/// answers every method (`HEAD` included) with a body describing the request.
async fn spawn_describing(failures: &Arc<AtomicUsize>) -> SocketAddr {
    let inner = service_fn(|req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let text = format!(
            "{} body={}",
            describe(parts.version, &parts.method, &parts.uri, &parts.headers),
            String::from_utf8_lossy(&body)
        );
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
    });
    spawn_hyper(layer(failures).layer(inner), true).await
}

/// Sends an h2c upgrade request and checks the `101`.
async fn upgrade(addr: SocketAddr, head: &str, body: &[u8]) -> TcpStream {
    let mut stream = send(addr, head.as_bytes()).await;
    stream.write_all(body).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("\r\nupgrade: h2c\r\n"), "{head}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    stream
}

fn upgrade_head(method: &str, target: &str, extra: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n{extra}\r\n"
    )
}

/// The client side of an upgraded connection for the `h2` crate.
///
/// The `h2` client opens stream 1 itself with its first request, whose response is then the
/// server's answer to the upgrade request. This wrapper keeps that first request's HEADERS
/// from the server (stream 1 was the HTTP/1.1 request). The first request must be
/// `GET /` without an authority: `h2` encodes it from the static HPACK table alone, so
/// dropping it leaves the header compression state of both ends in step.
struct Stream1Client<'a> {
    inner: &'a mut TcpStream,
    preface_left: usize,
    /// Bytes written by `h2` that do not yet form a whole frame.
    pending: Vec<u8>,
    /// Bytes to send.
    out: Vec<u8>,
}

impl<'a> Stream1Client<'a> {
    fn new(inner: &'a mut TcpStream) -> Self {
        Self {
            inner,
            preface_left: 24,
            pending: Vec::new(),
            out: Vec::new(),
        }
    }

    fn parse(&mut self) {
        let n = self.preface_left.min(self.pending.len());
        self.out.extend(self.pending.drain(..n));
        self.preface_left -= n;
        while self.pending.len() >= 9 {
            let len = (usize::from(self.pending[0]) << 16)
                | (usize::from(self.pending[1]) << 8)
                | usize::from(self.pending[2]);
            if self.pending.len() < 9 + len {
                break;
            }
            let kind = self.pending[3];
            let stream = u32::from_be_bytes(self.pending[5..9].try_into().unwrap()) & 0x7fff_ffff;
            let frame: Vec<u8> = self.pending.drain(..9 + len).collect();
            // HEADERS or CONTINUATION of stream 1.
            if stream == 1 && (kind == 0x1 || kind == 0x9) {
                continue;
            }
            assert!(stream != 1, "the first request must have no body");
            self.out.extend(frame);
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut *self.inner).poll_write(cx, &self.out))?;
            self.out.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Stream1Client<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream1Client<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        self.parse();
        if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

type SendRequest = h2::client::SendRequest<Bytes>;

/// The response to the upgrade request, on stream 1.
async fn stream1(send: &mut SendRequest) -> (http::response::Parts, Bytes) {
    let (res, _) = send
        .send_request(Request::get("/").body(()).unwrap(), true)
        .unwrap();
    response(res).await
}

async fn response(res: h2::client::ResponseFuture) -> (http::response::Parts, Bytes) {
    let (parts, mut body) = within(res).await.unwrap().into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = within(body.data()).await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        data.extend_from_slice(&chunk);
    }
    (parts, Bytes::from(data))
}

async fn request(
    send: &SendRequest,
    method: &str,
    path: &str,
    body: Option<Bytes>,
) -> (http::response::Parts, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .body(())
        .unwrap();
    let mut send = within(send.clone().ready()).await.unwrap();
    let (res, mut stream) = send.send_request(req, body.is_none()).unwrap();
    if let Some(body) = body {
        stream.send_data(body, true).unwrap();
    }
    response(res).await
}

/// Waits for the server to close the connection, and checks that nothing failed.
async fn assert_closed_cleanly(mut tcp: TcpStream, failures: &AtomicUsize) {
    read_to_end(&mut tcp).await;
    // The connection task reports a failure right after it drops the connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "an upgraded connection failed"
    );
}

/// Speaks HTTP/2 on the upgraded connection: `client` gets the sender (stream 1 is open
/// already) while the connection is driven beside it; then the server must close the
/// connection cleanly.
async fn over_h2<F, Fut>(
    mut tcp: TcpStream,
    failures: &AtomicUsize,
    builder: &h2::client::Builder,
    client: F,
) where
    F: FnOnce(SendRequest) -> Fut,
    Fut: Future<Output = ()>,
{
    {
        let (send, conn) = builder
            .handshake(Stream1Client::new(&mut tcp))
            .await
            .unwrap();
        let (conn, ()) = within(async { tokio::join!(conn, client(send)) }).await;
        conn.unwrap();
    }
    assert_closed_cleanly(tcp, failures).await;
}

#[tokio::test]
async fn answers_stream_1_then_concurrent_streams_with_axum_serve() {
    let failures = Arc::default();
    let addr = spawn_router(&failures).await;
    let tcp = upgrade(
        addr,
        &upgrade_head(
            "GET",
            "/info?q=1",
            "X-Test: one\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n",
        ),
        b"",
    )
    .await;
    over_h2(
        tcp,
        &failures,
        &h2::client::Builder::new(),
        |mut send| async move {
            let (parts, body) = stream1(&mut send).await;
            assert_eq!(parts.status, StatusCode::OK);
            assert_eq!(parts.version, http::Version::HTTP_2);
            assert_eq!(
                body,
                "HTTP/2.0 GET http://localhost/info?q=1 x-test=Some(\"one\") headers=te,x-test"
            );

            // Eight concurrent streams on the same connection, GETs and POSTs.
            let requests = (0..8).map(|i| {
                let send = send.clone();
                async move {
                    if i % 2 == 0 {
                        let (parts, body) =
                            request(&send, "GET", &format!("/info?i={i}"), None).await;
                        assert_eq!(parts.status, StatusCode::OK);
                        assert!(
                            body.starts_with(
                                format!("HTTP/2.0 GET http://localhost/info?i={i} ").as_bytes()
                            ),
                            "{body:?}"
                        );
                    } else {
                        let data = Bytes::from(vec![b'0' + i as u8; 20_000 * i]);
                        let (parts, body) =
                            request(&send, "POST", "/echo", Some(data.clone())).await;
                        assert_eq!(parts.status, StatusCode::OK);
                        assert_eq!(body, data);
                    }
                }
            });
            futures_join_all(requests).await;
            let (parts, body) = request(&send, "GET", "/", None).await;
            assert_eq!((parts.status, &body[..]), (StatusCode::OK, &b"hello"[..]));
        },
    )
    .await;
}

/// Runs futures concurrently on the current task.
async fn futures_join_all<F: Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

#[tokio::test]
async fn answers_a_post_body_with_expect_100_continue_on_hyper() {
    let failures = Arc::default();
    let addr = spawn_describing(&failures).await;
    let body = "x".repeat(1000);
    let head = upgrade_head(
        "POST",
        "/submit",
        "Content-Length: 1000\r\nExpect: 100-continue\r\nX-Test: two\r\n",
    );
    let mut tcp = send(addr, head.as_bytes()).await;
    let cont = read_head(&mut tcp).await;
    assert_eq!(cont, "HTTP/1.1 100 Continue\r\n\r\n");
    tcp.write_all(body.as_bytes()).await.unwrap();
    let head = read_head(&mut tcp).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    over_h2(
        tcp,
        &failures,
        &h2::client::Builder::new(),
        |mut send| async move {
            let (parts, res) = stream1(&mut send).await;
            assert_eq!(parts.status, StatusCode::OK);
            assert_eq!(
                res,
                format!(
                    "HTTP/2.0 POST http://localhost/submit x-test=Some(\"two\") \
                     headers=content-length,x-test body={body}"
                )
            );
            // A later stream reaches the same service.
            let (_, res) = request(&send, "PUT", "/again", Some(Bytes::from_static(b"abc"))).await;
            assert!(res.ends_with(b"body=abc"), "{res:?}");
            assert!(
                res.starts_with(b"HTTP/2.0 PUT http://localhost/again"),
                "{res:?}"
            );
        },
    )
    .await;
}

#[tokio::test]
async fn head_over_http2_has_an_empty_body() {
    let failures = Arc::default();
    let addr = spawn_describing(&failures).await;
    let tcp = upgrade(addr, &upgrade_head("HEAD", "/", ""), b"").await;
    over_h2(
        tcp,
        &failures,
        &h2::client::Builder::new(),
        |mut send| async move {
            // The service answers HEAD with a body; stream 1 carries none.
            let (parts, body) = stream1(&mut send).await;
            assert_eq!(parts.status, StatusCode::OK);
            assert!(body.is_empty(), "{body:?}");
            let (parts, body) = request(&send, "HEAD", "/x", None).await;
            assert_eq!(parts.status, StatusCode::OK);
            assert!(body.is_empty(), "{body:?}");
            let (_, body) = request(&send, "GET", "/x", None).await;
            assert!(body.starts_with(b"HTTP/2.0 GET"), "{body:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn options_asterisk_is_answered_on_stream_1() {
    // What `nghttp -u -d` sends first.
    let failures = Arc::default();
    let addr = spawn_describing(&failures).await;
    let tcp = upgrade(addr, &upgrade_head("OPTIONS", "*", ""), b"").await;
    over_h2(
        tcp,
        &failures,
        &h2::client::Builder::new(),
        |mut send| async move {
            let (parts, body) = stream1(&mut send).await;
            assert_eq!(parts.status, StatusCode::OK);
            let body = String::from_utf8(body.to_vec()).unwrap();
            assert!(body.starts_with("HTTP/2.0 OPTIONS "), "{body}");
            assert!(body.contains('*'), "{body}");
            let (_, body) = request(&send, "POST", "/data", Some(Bytes::from_static(b"d"))).await;
            assert!(body.ends_with(b"body=d"), "{body:?}");
        },
    )
    .await;
}

#[tokio::test]
async fn upgrade_with_a_40kb_body_then_a_1mib_upload_to_a_late_reader() {
    // The upgrade body takes 40 000 bytes of the server's connection window that the client
    // never spent; unless the server's WINDOW_UPDATEs make up for it, the client overruns
    // the window (FLOW_CONTROL_ERROR) while the handler is not reading.
    let failures = Arc::default();
    let addr = spawn_router(&failures).await;
    let body: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let head = upgrade_head("POST", "/echo", "Content-Length: 40000\r\n");
    let tcp = upgrade(addr, &head, &body).await;
    let mut builder = h2::client::Builder::new();
    // Big windows on the client side, so only the server's limit the upload.
    builder
        .initial_window_size(4 << 20)
        .initial_connection_window_size(4 << 20);
    over_h2(tcp, &failures, &builder, move |mut send| async move {
        let (parts, echoed) = stream1(&mut send).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(&echoed[..], &body[..]);
        let upload = Bytes::from(vec![7; 1 << 20]);
        let (parts, res) = request(&send, "POST", "/late", Some(upload)).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(res, (1 << 20).to_string());
        // And again, once the windows have moved on.
        let (_, res) = request(&send, "POST", "/late", Some(Bytes::from(vec![1; 300_000]))).await;
        assert_eq!(res, "300000");
    })
    .await;
}

/// Sends a request that must not switch and returns the whole HTTP/1.1 response.
async fn http1_response(addr: SocketAddr, req: &[u8]) -> String {
    let mut tcp = send(addr, req).await;
    let (head, body) = read_response(&mut tcp).await;
    assert!(
        header(&head, "content-length").is_some(),
        "no content-length: {head}"
    );
    head + &body
}

#[tokio::test]
async fn bad_offers_are_served_over_http1() {
    let failures = Arc::default();
    let addr = spawn_router(&failures).await;
    let body = "0123456789";
    let big = "b".repeat(70_000);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "no HTTP2-Settings",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n".to_owned(),
            body,
        ),
        (
            "two HTTP2-Settings",
            format!(
                "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
                 HTTP2-Settings: {H2C_SETTINGS}\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n"
            ),
            body,
        ),
        (
            "padded base64",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk=\r\n"
                .to_owned(),
            body,
        ),
        (
            "length not a multiple of 6",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAA\r\n"
                .to_owned(),
            body,
        ),
        (
            "ENABLE_PUSH=2",
            "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAIAAAAC\r\n"
                .to_owned(),
            body,
        ),
        (
            "HTTP2-Settings not named in Connection",
            format!("Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n"),
            body,
        ),
        (
            "Upgrade: h2 (TLS only)",
            format!(
                "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n"
            ),
            body,
        ),
        (
            "body above 65535 bytes",
            format!(
                "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n"
            ),
            &big,
        ),
    ];
    for (name, headers, body) in &cases {
        let req = format!(
            "POST /echo HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let res = http1_response(addr, req.as_bytes()).await;
        assert!(
            res.starts_with("HTTP/1.1 200 OK\r\n"),
            "{name}: {}",
            &res[..res.len().min(200)]
        );
        assert!(res.ends_with(body), "{name}");
    }
    // A chunked body is served over HTTP/1.1 too.
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: {H2C_SETTINGS}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n"
    );
    let res = http1_response(addr, req.as_bytes()).await;
    assert!(res.starts_with("HTTP/1.1 200 OK\r\n"), "{res}");
    assert!(res.ends_with("\r\n\r\nhello"), "{res}");
    assert_eq!(failures.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_request_that_cannot_switch_is_served_as_usual() {
    // No hyper connection behind the request: no `OnUpgrade`, so no 101 (and no 500).
    let failures = Arc::default();
    let app = layer(&failures).layer(router());
    let res = app
        .oneshot(
            Request::get("/")
                .header("host", "localhost")
                .header("connection", "Upgrade, HTTP2-Settings")
                .header("upgrade", "h2c")
                .header("http2-settings", H2C_SETTINGS)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        &res.into_body().collect().await.unwrap().to_bytes()[..],
        b"hello"
    );
}
