//! WebSockets and the connection lifecycle over real TCP: graceful shutdown sends close
//! `1001`, keep-alive pings, and back-pressure from a client that never reads.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCloseCode;
use tower_upgrade::websocket::{WebSocketConfig, WebSocketHandler};
use tower_upgrade::{Tracker, UpgradeLayer};

use crate::support::*;
use crate::support::{WsClient as Client, ws_next as next};

async fn serve(config: WebSocketConfig) -> (SocketAddr, Tracker) {
    let layer = UpgradeLayer::new()
        .protocol(WebSocketHandler::new(|ws, _req| ws_echo(ws)).config(config))
        .unwrap();
    let tracker = layer.tracker().clone();
    let app = Router::new().route("/ws", any(|| async { "plain" }).layer(layer));
    (spawn_axum(app).await, tracker)
}

async fn connect(addr: SocketAddr) -> Client {
    ws_connect(addr, format!("ws://{addr}/ws")).await.0
}

/// A WebSocket upgraded over raw TCP (no client library): the `101` is read, frames are
/// the test's to write.
async fn upgraded_raw(addr: SocketAddr) -> TcpStream {
    let mut raw = send(addr, WS_UPGRADE).await;
    assert!(read_head(&mut raw).await.starts_with("HTTP/1.1 101 "));
    raw
}

#[tokio::test]
async fn drain_closes_100_websockets_with_1001() {
    let (addr, tracker) = serve(WebSocketConfig::new()).await;
    let mut clients = Vec::new();
    for i in 0..100 {
        let mut client = connect(addr).await;
        client
            .send(TMessage::text(format!("hi {i}")))
            .await
            .unwrap();
        assert_eq!(
            next(&mut client).await,
            Some(TMessage::text(format!("hi {i}")))
        );
        clients.push(client);
    }
    assert_eq!(tracker.live(), 100);

    let drain = tokio::spawn(tracker.drain(Duration::from_secs(5)));
    for client in &mut clients {
        match next(client).await {
            Some(TMessage::Close(Some(frame))) => {
                assert_eq!(frame.code, TCloseCode::Away);
                assert_eq!(frame.reason, "server shutting down");
            }
            other => panic!("expected close 1001, got {other:?}"),
        }
        // tokio-tungstenite answers the close; then the server ends the connection.
        assert!(next(client).await.is_none());
    }
    let report = timeout(Duration::from_secs(6), drain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.live_at_start, 100);
    assert_eq!(report.aborted, 0);
    assert!(report.elapsed < Duration::from_secs(5), "{report:?}");
    let totals = tracker.stats().totals;
    assert_eq!((totals.live, totals.completed, totals.failed), (0, 100, 0));
}

#[tokio::test]
async fn keep_alive_pings_an_idle_peer_and_drops_a_dead_one() {
    let (addr, tracker) =
        serve(WebSocketConfig::new().keep_alive(Duration::from_millis(150))).await;

    // A live peer: tokio-tungstenite answers pings by itself, so the connection stays.
    let mut client = connect(addr).await;
    match next(&mut client).await {
        Some(TMessage::Ping(payload)) => assert!(payload.is_empty()),
        other => panic!("expected a ping, got {other:?}"),
    }
    // Keep reading (tokio-tungstenite sends its pongs while it reads) for several intervals.
    let until = tokio::time::Instant::now() + Duration::from_millis(600);
    let mut pings = 1;
    while let Ok(msg) = tokio::time::timeout_at(until, client.next()).await {
        assert!(matches!(msg, Some(Ok(TMessage::Ping(_)))), "{msg:?}");
        pings += 1;
    }
    assert!(pings >= 2, "{pings} pings");
    client.send(TMessage::text("still here")).await.unwrap();
    loop {
        match next(&mut client).await {
            Some(TMessage::Ping(_)) => continue,
            Some(msg) => {
                assert_eq!(msg, TMessage::text("still here"));
                break;
            }
            None => panic!("closed"),
        }
    }

    // A dead peer: upgraded, then never reads or answers.
    let mut raw = upgraded_raw(addr).await;
    // A ping after one interval, then close 1001 after another, then the end.
    let rest = read_to_end(&mut raw).await;
    assert_eq!(&rest[..2], [0x89, 0x00], "{rest:?}");
    assert_eq!(&rest[2..6], [0x88, 0x02, 0x03, 0xE9], "{rest:?}");
    assert_eq!(rest.len(), 6);
    drop(client);
    wait_live(&tracker, 0).await;
    assert_eq!(tracker.live(), 0);
    assert!(tracker.stats().totals.failed >= 1);
}

/// A client that sends and never reads: the server's echo blocks on the socket, then stops
/// reading, so the client's own writes stall. Nothing is buffered without bound.
#[tokio::test]
async fn a_client_that_never_reads_is_held_back() {
    let (addr, tracker) = serve(WebSocketConfig::new()).await;
    let mut raw = upgraded_raw(addr).await;
    // Masked binary frames of 64 KiB (mask 0: the payload is sent as is).
    let payload = vec![7u8; 64 * 1024];
    let mut frame = vec![0x82, 0xFF];
    frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(&payload);
    let mut sent = 0usize;
    let stalled = loop {
        match timeout(Duration::from_millis(500), raw.write_all(&frame)).await {
            Ok(Ok(())) => sent += frame.len(),
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => break true,
        }
        if sent > 256 << 20 {
            break false;
        }
    };
    assert!(stalled, "256 MiB went in without back-pressure");
    // Both directions' socket buffers, nothing more: well under 64 MiB on loopback.
    assert!(sent < 64 << 20, "{sent} bytes accepted before stalling");
    // Reading again un-stalls it: the echoes come back.
    let mut buf = vec![0u8; 64 * 1024];
    let n = timeout(IO_TIMEOUT, raw.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0);
    drop(raw);
    wait_live(&tracker, 0).await;
}

/// Clients that vanish in the middle of a frame, or without a close frame, leave nothing
/// counted and nothing running.
#[tokio::test]
async fn clients_that_vanish_mid_frame_leave_nothing_behind() {
    let (addr, tracker) = serve(WebSocketConfig::new()).await;
    // A masked text frame announcing 100 bytes: cut after the header, inside the mask key,
    // and inside the payload; and a whole frame, then gone without a close frame.
    let mut frame = vec![0x81, 0x80 | 100, 1, 2, 3, 4];
    frame.extend(std::iter::repeat_n(b'a', 100));
    for cut in [1, 4, 6 + 50, frame.len()] {
        let mut raw = upgraded_raw(addr).await;
        raw.write_all(&frame[..cut]).await.unwrap();
        if cut == frame.len() {
            let mut echo = [0u8; 102];
            timeout(IO_TIMEOUT, raw.read_exact(&mut echo))
                .await
                .unwrap()
                .unwrap();
        }
        drop(raw);
    }
    wait_live(&tracker, 0).await;
    let totals = tracker.stats().totals;
    assert_eq!(totals.live, 0, "{totals:?}");
    assert_eq!(totals.accepted, 4);
    assert_eq!(totals.completed + totals.failed, 4, "{totals:?}");
}
