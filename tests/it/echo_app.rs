//! The echo example as a user runs it: a separate process, checked from outside over real
//! TCP, including a graceful shutdown with live WebSockets.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::ws_next as next;
use crate::support::*;

#[tokio::test]
async fn the_echo_app_keeps_its_contract() {
    let echo = Example::start("echo", &[]);
    let addr = echo.addr;

    let mut stream = send(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, body) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for id in [
        "id=\"state\"",
        "id=\"message\"",
        "id=\"send\"",
        "id=\"log\"",
        "/ws",
    ] {
        assert!(body.contains(id), "page lacks {id}");
    }

    let mut stream = send(addr, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, _) = read_response(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{head}"
    );
    assert_eq!(header(&head, "upgrade"), Some("websocket"));

    let mut stream = send(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(read_response(&mut stream).await.1, "hello");

    let mut client = ws_same_origin(addr).await;
    client.send(TMessage::text("héllo")).await.unwrap();
    assert_eq!(next(&mut client).await, Some(TMessage::text("héllo")));
    client
        .send(TMessage::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        next(&mut client).await,
        Some(TMessage::binary(vec![0u8, 1, 2, 255]))
    );
    client.close(None).await.unwrap();

    // A cross-site page is refused by the default origin policy.
    let mut stream = send(
        addr,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\nOrigin: http://evil.example\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(
        read_response(&mut stream)
            .await
            .0
            .starts_with("HTTP/1.1 403 Forbidden\r\n")
    );
}

#[tokio::test]
async fn max_upgrades_limits_live_websockets() {
    let echo = Example::start("echo", &[("MAX_UPGRADES", "2")]);
    let mut first = ws_same_origin(echo.addr).await;
    let _second = ws_same_origin(echo.addr).await;
    let mut stream = send(echo.addr, WS_UPGRADE).await;
    let (head, body) = read_response(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert!(header(&head, "retry-after").is_some());
    assert_eq!(body, "too many upgraded connections\n");
    first.close(None).await.unwrap();
    while next(&mut first).await.is_some() {}
    // The slot is free again (bounded wait for the server to see the close).
    for attempt in 0.. {
        let mut stream = send(echo.addr, WS_UPGRADE).await;
        if read_head(&mut stream).await.starts_with("HTTP/1.1 101 ") {
            break;
        }
        assert!(attempt < 100, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM with 50 live WebSockets: each gets close 1001, and the process exits well
/// within its 10 s drain deadline.
#[tokio::test]
async fn sigterm_closes_live_websockets_with_1001_and_exits() {
    let echo = Example::start("echo", &[]);
    let mut clients = Vec::new();
    for i in 0..50 {
        let mut client = ws_same_origin(echo.addr).await;
        client.send(TMessage::text(format!("{i}"))).await.unwrap();
        assert_eq!(
            next(&mut client).await,
            Some(TMessage::text(format!("{i}")))
        );
        clients.push(client);
    }
    let start = Instant::now();
    echo.terminate();
    let mut away = 0;
    for client in &mut clients {
        match next(client).await {
            Some(TMessage::Close(Some(frame))) if frame.code == CloseCode::Away => away += 1,
            other => panic!("expected close 1001, got {other:?}"),
        }
        assert!(next(client).await.is_none());
    }
    let (status, out) = tokio::task::spawn_blocking(move || echo.wait(Duration::from_secs(12)))
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        out.contains("drained 50 upgraded connections (0 aborted)"),
        "{out}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    eprintln!(
        "shutdown: {away}/50 clients got close 1001; the process exited after {} ms; it said: {}",
        took.as_millis(),
        out.trim()
    );
}
