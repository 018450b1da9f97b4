//! The `websocket` handler over real TCP: tokio-tungstenite as the client, raw bytes for
//! the exact status lines of every rejection, and the `h2` crate for RFC 8441.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router, routing::any};
use futures_util::SinkExt;
use http::{HeaderValue, Method, Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{
    self, Message as TMessage, client::IntoClientRequest, protocol::CloseFrame as TCloseFrame,
    protocol::frame::coding::CloseCode as TCloseCode,
};
use tower_upgrade::websocket::{CloseFrame, Message, WebSocket, WebSocketHandler};
use tower_upgrade::{UpgradeLayer, UpgradeRequest};

use crate::support::{
    WS_KEY, WsClient as Client, read_response, send, spawn_axum, spawn_hyper, within, ws_connect,
    ws_echo, ws_next as next,
};

#[derive(Clone)]
struct User(&'static str);

fn layer<H: tower_upgrade::ProtocolHandler>(handler: H) -> UpgradeLayer {
    UpgradeLayer::new()
        .protocol(handler)
        .unwrap()
        .require_upgrade()
}

fn app() -> Router {
    let echo_handler = WebSocketHandler::new(|ws, _req| ws_echo(ws))
        .protocols(["chat", "superchat"])
        .unwrap();
    let whoami = WebSocketHandler::new(|mut ws: WebSocket, req: UpgradeRequest| async move {
        let user = req.extensions().get::<User>().map_or("nobody", |u| u.0);
        let text = format!("user={user} protocol={}", ws.protocol().unwrap_or("-"));
        ws.send(Message::text(text)).await?;
        ws.close(Some(CloseFrame {
            code: 4001,
            reason: "bye".into(),
        }))
        .await
    })
    .protocols(["chat"])
    .unwrap();
    let required = WebSocketHandler::new(|ws, _req| ws_echo(ws))
        .protocols(["chat"])
        .unwrap()
        .require_protocol();
    let allow = WebSocketHandler::new(|ws, _req| ws_echo(ws))
        .allowed_origins(["https://app.example.com"])
        .unwrap();
    let fallback = || any(|| async { "not an upgrade\n" });
    Router::new()
        .route("/ws", fallback().layer(layer(echo_handler)))
        .route("/whoami", fallback().layer(layer(whoami)))
        .route("/required", fallback().layer(layer(required)))
        .route("/allow", fallback().layer(layer(allow)))
        // An outer layer, as an authentication layer would be: its extension reaches the
        // connection handler.
        .layer(Extension(User("alice")))
}

/// HTTP/1.1 and HTTP/2 with `SETTINGS_ENABLE_CONNECT_PROTOCOL`, as `examples/echo.rs`.
async fn spawn_auto_h2() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    let builder = Arc::new(builder);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(app());
            let builder = Arc::clone(&builder);
            tokio::spawn(async move {
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn connect(
    addr: SocketAddr,
    path: &str,
    protocols: Option<&str>,
) -> (Client, tungstenite::handshake::client::Response) {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
    }
    ws_connect(addr, req).await
}

async fn echoes_text_binary_and_a_1_mib_message(addr: SocketAddr) {
    let (mut client, res) = connect(addr, "/ws", None).await;
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(res.headers().get("sec-websocket-protocol").is_none());

    client.send(TMessage::text("hello ✓")).await.unwrap();
    assert_eq!(next(&mut client).await, Some(TMessage::text("hello ✓")));

    client
        .send(TMessage::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        next(&mut client).await,
        Some(TMessage::binary(vec![0u8, 1, 2, 255]))
    );

    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    client.send(TMessage::binary(big.clone())).await.unwrap();
    assert_eq!(next(&mut client).await, Some(TMessage::binary(big)));

    // Frames over the read buffer size one at a time (the socket waits for the connection
    // to be readable before it allocates for the next), then one with a small frame right
    // behind it (read into the room left after the first).
    let mid: Vec<u8> = (0..16 * 1024 + 7).map(|i| (i % 241) as u8).collect();
    for _ in 0..3 {
        client.send(TMessage::binary(mid.clone())).await.unwrap();
        assert_eq!(next(&mut client).await, Some(TMessage::binary(mid.clone())));
    }
    client.feed(TMessage::binary(mid.clone())).await.unwrap();
    client.send(TMessage::text("behind")).await.unwrap();
    assert_eq!(next(&mut client).await, Some(TMessage::binary(mid)));
    assert_eq!(next(&mut client).await, Some(TMessage::text("behind")));

    client.send(TMessage::Ping("p".into())).await.unwrap();
    assert_eq!(next(&mut client).await, Some(TMessage::Pong("p".into())));

    client
        .send(TMessage::Close(Some(TCloseFrame {
            code: TCloseCode::Normal,
            reason: "done".into(),
        })))
        .await
        .unwrap();
    match next(&mut client).await {
        Some(TMessage::Close(Some(frame))) => assert_eq!(frame.code, TCloseCode::Normal),
        other => panic!("expected the close reply, got {other:?}"),
    }
    assert_eq!(next(&mut client).await, None);
}

#[tokio::test]
async fn echoes_over_axum_serve() {
    echoes_text_binary_and_a_1_mib_message(spawn_axum(app()).await).await;
}

#[tokio::test]
async fn echoes_over_hyper_http1_with_upgrades() {
    echoes_text_binary_and_a_1_mib_message(spawn_hyper(app(), true).await).await;
}

#[tokio::test]
async fn echoes_over_hyper_util_auto() {
    echoes_text_binary_and_a_1_mib_message(spawn_auto_h2().await).await;
}

#[tokio::test]
async fn selects_an_offered_subprotocol() {
    let addr = spawn_axum(app()).await;
    let (_client, res) = connect(addr, "/ws", Some("v1.unknown, superchat, chat")).await;
    assert_eq!(res.headers()["sec-websocket-protocol"], "superchat");
    // None matches: the 101 carries no Sec-WebSocket-Protocol (tungstenite's client then
    // gives up by itself, so this one is checked raw).
    let req = upgrade_request(
        "GET",
        "/ws",
        &refs(&valid(&["Sec-WebSocket-Protocol: other"])),
    );
    let head = expect(addr, req, "HTTP/1.1 101 Switching Protocols", "").await;
    assert!(!head.contains("sec-websocket-protocol"), "{head}");
    let (_client, res) = connect(addr, "/required", Some("chat")).await;
    assert_eq!(res.headers()["sec-websocket-protocol"], "chat");
}

#[tokio::test]
async fn handler_gets_outer_extensions_and_closes_with_its_code() {
    let addr = spawn_hyper(app(), true).await;
    let (mut client, _res) = connect(addr, "/whoami", Some("chat")).await;
    assert_eq!(
        next(&mut client).await,
        Some(TMessage::text("user=alice protocol=chat"))
    );
    match next(&mut client).await {
        Some(TMessage::Close(Some(frame))) => {
            assert_eq!(u16::from(frame.code), 4001);
            assert_eq!(frame.reason, "bye");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert_eq!(next(&mut client).await, None);
}

// ===== raw HTTP/1.1: exact status lines =====

/// Sends `head` (request line and headers, without the final empty line) and returns the
/// response head and body.
async fn raw(addr: SocketAddr, head: &str) -> (String, String) {
    let mut stream = send(addr, format!("{head}\r\n\r\n").as_bytes()).await;
    read_response(&mut stream).await
}

fn upgrade_request(method: &str, path: &str, extra: &[&str]) -> String {
    let mut lines = vec![
        format!("{method} {path} HTTP/1.1"),
        "Host: example.com".to_owned(),
        "Connection: Upgrade".to_owned(),
        "Upgrade: websocket".to_owned(),
    ];
    lines.extend(extra.iter().map(|s| (*s).to_owned()));
    lines.join("\r\n")
}

fn valid(extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "Sec-WebSocket-Version: 13".to_owned(),
        format!("Sec-WebSocket-Key: {WS_KEY}"),
    ];
    v.extend(extra.iter().map(|s| (*s).to_owned()));
    v
}

async fn expect(addr: SocketAddr, req: String, status_line: &str, body_has: &str) -> String {
    let (head, body) = raw(addr, &req).await;
    assert!(
        head.starts_with(&format!("{status_line}\r\n")),
        "{req}\n---\n{head}{body}"
    );
    assert!(body.contains(body_has), "body {body:?} lacks {body_has:?}");
    if !status_line.contains(" 101 ") {
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; charset=utf-8\r\n"),
            "{head}"
        );
    }
    head.to_ascii_lowercase()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn switches_with_mixed_case_upgrade_and_a_connection_list() {
    let addr = spawn_axum(app()).await;
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\
         Origin: http://example.com\r\nSec-WebSocket-Extensions: permessage-deflate"
    );
    let head = expect(addr, req, "HTTP/1.1 101 Switching Protocols", "").await;
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("connection: upgrade\r\n"), "{head}");
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
}

#[tokio::test]
async fn every_rejection_has_its_status_line() {
    let addr = spawn_axum(app()).await;
    let bad =
        |method: &str, path: &str, extra: Vec<String>| upgrade_request(method, path, &refs(&extra));

    let head = expect(
        addr,
        bad("POST", "/ws", valid(&[])),
        "HTTP/1.1 405 Method Not Allowed",
        "GET",
    )
    .await;
    assert!(head.contains("allow: get\r\n"), "{head}");

    expect(
        addr,
        bad("GET", "/ws", vec![format!("Sec-WebSocket-Key: {WS_KEY}")]),
        "HTTP/1.1 400 Bad Request",
        "missing Sec-WebSocket-Version",
    )
    .await;
    expect(
        addr,
        bad("GET", "/ws", valid(&["Sec-WebSocket-Version: 13"])),
        "HTTP/1.1 400 Bad Request",
        "Sec-WebSocket-Version header must appear once",
    )
    .await;
    let head = expect(
        addr,
        bad(
            "GET",
            "/ws",
            vec![
                "Sec-WebSocket-Version: 8".into(),
                format!("Sec-WebSocket-Key: {WS_KEY}"),
            ],
        ),
        "HTTP/1.1 426 Upgrade Required",
        "version 13",
    )
    .await;
    assert!(head.contains("sec-websocket-version: 13\r\n"), "{head}");
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
    assert!(head.contains("connection: upgrade\r\n"), "{head}");

    expect(
        addr,
        bad("GET", "/ws", vec!["Sec-WebSocket-Version: 13".into()]),
        "HTTP/1.1 400 Bad Request",
        "missing Sec-WebSocket-Key",
    )
    .await;
    expect(
        addr,
        bad(
            "GET",
            "/ws",
            valid(&[&format!("Sec-WebSocket-Key: {WS_KEY}")]),
        ),
        "HTTP/1.1 400 Bad Request",
        "Sec-WebSocket-Key header must appear once",
    )
    .await;
    for key in [
        "dGhlIHNhbXBsZSBub25jZQ=",
        "c2hvcnQ=",
        "dGhlIHNhbXBsZSBub25jZR==",
    ] {
        expect(
            addr,
            bad(
                "GET",
                "/ws",
                vec![
                    "Sec-WebSocket-Version: 13".into(),
                    format!("Sec-WebSocket-Key: {key}"),
                ],
            ),
            "HTTP/1.1 400 Bad Request",
            "base64 encoding of 16 bytes",
        )
        .await;
    }
    for origin in ["http://evil.example", "null", "http://example.com:8080"] {
        expect(
            addr,
            bad("GET", "/ws", valid(&[&format!("Origin: {origin}")])),
            "HTTP/1.1 403 Forbidden",
            "Origin",
        )
        .await;
    }
    expect(
        addr,
        bad("GET", "/allow", valid(&["Origin: http://example.com"])),
        "HTTP/1.1 403 Forbidden",
        "Origin",
    )
    .await;
    expect(
        addr,
        bad("GET", "/allow", valid(&["Origin: https://app.example.com"])),
        "HTTP/1.1 101 Switching Protocols",
        "",
    )
    .await;
    expect(
        addr,
        bad("GET", "/ws", valid(&["Sec-WebSocket-Protocol: chat room"])),
        "HTTP/1.1 400 Bad Request",
        "Sec-WebSocket-Protocol",
    )
    .await;
    expect(
        addr,
        bad("GET", "/required", valid(&[])),
        "HTTP/1.1 400 Bad Request",
        "subprotocol",
    )
    .await;
    expect(
        addr,
        bad(
            "GET",
            "/required",
            valid(&["Sec-WebSocket-Protocol: other"]),
        ),
        "HTTP/1.1 400 Bad Request",
        "subprotocol",
    )
    .await;
    // Not an upgrade request at all, on an upgrade-only route.
    let head = expect(
        addr,
        "GET /ws HTTP/1.1\r\nHost: example.com".to_owned(),
        "HTTP/1.1 426 Upgrade Required",
        "websocket",
    )
    .await;
    assert!(head.contains("upgrade: websocket\r\n"), "{head}");
}

// ===== HTTP/2 extended CONNECT (RFC 8441) =====

async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new().handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = within(client.ready()).await.unwrap();
    // The server's SETTINGS arrive with the first round trip.
    for _ in 0..50 {
        if client.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        client = client.ready().await.unwrap();
    }
    assert!(
        client.is_extended_connect_protocol_enabled(),
        "no SETTINGS_ENABLE_CONNECT_PROTOCOL"
    );
    client
}

fn h2_connect(addr: SocketAddr, version: &str) -> Request<()> {
    Request::builder()
        .method(Method::CONNECT)
        .version(Version::HTTP_2)
        .uri(format!("http://{addr}/ws"))
        .extension(h2::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", version)
        .header("sec-websocket-protocol", "chat")
        .header("origin", format!("http://{addr}"))
        .body(())
        .unwrap()
}

#[tokio::test]
async fn http2_extended_connect_echoes() {
    let addr = spawn_auto_h2().await;
    let mut client = h2_client(addr).await;
    let (response, mut send) = client.send_request(h2_connect(addr, "13"), false).unwrap();
    let response = within(response).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert!(response.headers().get("sec-websocket-accept").is_none());
    let mut body = response.into_body();

    // A masked text frame "hi", then the echo comes back unmasked.
    let mask = [9u8, 8, 7, 6];
    let frame = vec![0x81, 0x82, 9, 8, 7, 6, b'h' ^ mask[0], b'i' ^ mask[1]];
    send.send_data(frame.into(), false).unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        let chunk = within(body.data()).await.unwrap().unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, [0x81, 2, b'h', b'i']);

    // Close: the server replies with the same code and ends the stream.
    let close = vec![0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8];
    send.send_data(close.into(), false).unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = within(body.data()).await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, [0x88, 2, 0x03, 0xE8]);
}

#[tokio::test]
async fn http2_version_mismatch_is_400_with_the_supported_version() {
    let addr = spawn_auto_h2().await;
    let mut client = h2_client(addr).await;
    let (response, _send) = client.send_request(h2_connect(addr, "8"), true).unwrap();
    let response = within(response).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["sec-websocket-version"], "13");
}
