//! Resource exhaustion (issue 14), the scenarios that fit in the test process: slow heads
//! under the examples' serving pattern, the shared message budget, and HTTP/2 floods on an
//! h2c-upgraded connection. The descriptor limit and the echo app's RSS need a process of
//! their own: `.ci/exhaustion.sh`. A silent WebSocket: `websocket_lifecycle`'s
//! `keep_alive_pings_an_idle_peer_and_drops_a_dead_one`.
//!
//! Bounded in count and time, loopback only; no timing thresholds (each wait has an upper
//! bound that only fails a hang).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::Layer;
use tower_upgrade::h2c::H2c;
use tower_upgrade::websocket::{Message, WebSocketHandler};
use tower_upgrade::{Tracker, UpgradeLayer};

use crate::support::{H2C_SETTINGS, WS_UPGRADE, read_head, send, within};

#[path = "../../examples/support/mod.rs"]
mod serve_support;

/// Serves `app` the way `examples/echo` does: the backing-off accept, a deadline for the
/// HTTP/1.1 head and for the HTTP/2 preface, upgrades enabled.
async fn spawn_guarded(app: Router, head_timeout: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut acceptor = serve_support::Acceptor::new(listener);
    let builder = serve_support::builder(head_timeout);
    tokio::spawn(async move {
        loop {
            let (stream, _) = acceptor.accept().await;
            let service = TowerToHyperService::new(app.clone());
            let builder = builder.clone();
            tokio::spawn(async move {
                if serve_support::head_started(&stream, head_timeout)
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Whether the server closes `stream` (EOF or reset) within the bound.
async fn closed_by_server(mut stream: TcpStream) -> bool {
    let mut buf = [0; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_to_end)
        .await
        .is_ok()
}

async fn get_root(addr: SocketAddr) -> String {
    let mut stream = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    read_head(&mut stream).await
}

#[tokio::test]
async fn half_sent_heads_and_prefaces_are_closed_at_the_deadline() {
    let app = Router::new().route("/", get(|| async { "hello" }));
    let addr = spawn_guarded(app, Duration::from_millis(300)).await;
    let halves: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Ag",
        b"",                                             // nothing at all
        b"PRI * HTTP/2.0\r\n\r\nSM",                     // half the HTTP/2 preface
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x06\x04", // the preface, SETTINGS cut short
    ];
    let mut waits = Vec::new();
    for i in 0..60 {
        let half = halves[i % halves.len()];
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(half).await.unwrap();
        waits.push(tokio::spawn(closed_by_server(stream)));
    }
    // A client that sends its head in time is served meanwhile.
    assert!(get_root(addr).await.starts_with("HTTP/1.1 200 OK\r\n"));
    for (i, wait) in waits.into_iter().enumerate() {
        assert!(wait.await.unwrap(), "connection {i} is still open");
    }
    assert!(get_root(addr).await.starts_with("HTTP/1.1 200 OK\r\n"));
}

// ===== the message budget =====

/// A masked binary frame head (all-zero mask: the payload goes as is) announcing `len`.
fn frame_head(first: u8, len: usize) -> Vec<u8> {
    let mut head = vec![first, 0x80 | 127];
    head.extend_from_slice(&(len as u64).to_be_bytes());
    head.extend_from_slice(&[0; 4]);
    head
}

async fn ws_upgraded(addr: SocketAddr) -> TcpStream {
    let mut stream = send(addr, WS_UPGRADE).await;
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream
}

#[tokio::test]
async fn messages_past_the_shared_budget_close_with_1013_and_others_are_served() {
    const MIB: usize = 1 << 20;
    let tracker = Tracker::new();
    tracker.set_message_budget(Some(4 * MIB));
    let echo = WebSocketHandler::new(|mut ws, _req| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if let Message::Binary(_) | Message::Text(_) = msg {
                let _ = ws.send(msg).await;
            }
        }
    });
    let layer = UpgradeLayer::new()
        .with_tracker(tracker.clone())
        .protocol(echo)
        .unwrap();
    let app = Router::new().route("/ws", any(|| async { "not an upgrade" }).layer(layer));
    let addr = spawn_guarded(app, Duration::from_secs(10)).await;

    // One client may still send a message near the budget, and get it back.
    let mut big = ws_upgraded(addr).await;
    big.write_all(&frame_head(0x82, 3 * MIB)).await.unwrap();
    big.write_all(&vec![7; 3 * MIB]).await.unwrap();
    let mut echoed = vec![0; 10 + 3 * MIB];
    within(big.read_exact(&mut echoed)).await.unwrap();
    drop(big);

    // Ten clients, each 256 KiB into a 1.5 MiB message: two fit, the rest are refused.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let mut stream = ws_upgraded(addr).await;
        stream
            .write_all(&frame_head(0x82, 3 * MIB / 2))
            .await
            .unwrap();
        let _ = stream.write_all(&vec![0; MIB / 4]).await;
        held.push(stream);
    }
    for stream in &mut held {
        let mut close = [0; 4];
        let read = tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut close));
        if let Ok(Ok(_)) = read.await {
            assert_eq!(
                close,
                [0x88, 0x02, 0x03, 0xF5],
                "close 1013 Try Again Later"
            );
            refused += 1;
        }
    }
    assert_eq!(refused, 8);
    assert_eq!(tracker.stats().totals.over_budget, 8);
    assert_eq!(tracker.buffered_message_bytes(), 3 * MIB);

    // A fresh client with a small message is served while the budget is spent.
    let mut fresh = ws_upgraded(addr).await;
    fresh.write_all(&[0x82, 0x85, 0, 0, 0, 0]).await.unwrap();
    fresh.write_all(b"fresh").await.unwrap();
    let mut echo = [0; 7];
    within(fresh.read_exact(&mut echo)).await.unwrap();
    assert_eq!(&echo, b"\x82\x05fresh");

    // The held clients go away: their bytes come back.
    drop(held);
    crate::support::eventually(|| tracker.buffered_message_bytes() == 0).await;
    assert_eq!(tracker.buffered_message_bytes(), 0);
}

// ===== HTTP/2 floods on an h2c-upgraded connection =====

/// An HTTP/2 frame.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = len.to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[kind, flags]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// `GET http://localhost/`, HPACK without the dynamic table: `:method GET`, `:scheme
/// http`, `:path /` indexed, `:authority` a literal not indexed.
fn get_block() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, 0x09];
    block.extend_from_slice(b"localhost");
    block
}

/// An app that counts the requests in its handler at once, and the most ever.
fn counting_app(in_flight: &Arc<AtomicUsize>, most: &Arc<AtomicUsize>) -> Router {
    let (in_flight, most) = (Arc::clone(in_flight), Arc::clone(most));
    Router::new().route(
        "/",
        get(move || {
            let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most));
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                "hello"
            }
        }),
    )
}

/// Upgrades to h2c and sends the client preface and SETTINGS; the server's frames are
/// read in a task that returns the GOAWAY error code, if one came, at the end.
async fn h2c_upgraded(
    addr: SocketAddr,
) -> (
    tokio::net::tcp::OwnedWriteHalf,
    tokio::task::JoinHandle<Option<u32>>,
) {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n\r\n"
    );
    let mut stream = send(addr, head.as_bytes()).await;
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    stream
        .write_all(&h2_frame(SETTINGS, 0, 0, &[]))
        .await
        .unwrap();
    let (mut read, write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut goaway = None;
        let mut head = [0; 9];
        while read.read_exact(&mut head).await.is_ok() {
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0; len];
            if read.read_exact(&mut payload).await.is_err() {
                break;
            }
            if head[3] == GOAWAY && len >= 8 {
                goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
            }
        }
        goaway
    });
    (write, reader)
}

async fn h2c_app(in_flight: &Arc<AtomicUsize>, most: &Arc<AtomicUsize>) -> SocketAddr {
    let app = UpgradeLayer::new()
        .protocol(H2c::new())
        .unwrap()
        .layer(counting_app(in_flight, most));
    let app = tower::ServiceExt::<axum::extract::Request>::map_response(
        app,
        axum::response::IntoResponse::into_response,
    );
    spawn_guarded(Router::new().fallback_service(app), Duration::from_secs(10)).await
}

const ENHANCE_YOUR_CALM: u32 = 0xb;

#[tokio::test]
async fn a_rapid_reset_flood_on_an_upgraded_connection_is_cut_off() {
    let (in_flight, most) = (Arc::default(), Arc::default());
    let addr = h2c_app(&in_flight, &most).await;
    let (mut write, reader) = h2c_upgraded(addr).await;

    // CVE-2023-44487: HEADERS then RST_STREAM(CANCEL), 5,000 times, in batches of 100.
    let block = get_block();
    let mut sent = 0;
    'flood: for batch in 0..50u32 {
        let mut bytes = Vec::new();
        for i in 0..100 {
            let stream = 3 + 2 * (batch * 100 + i);
            bytes.extend(h2_frame(HEADERS, END_HEADERS | END_STREAM, stream, &block));
            bytes.extend(h2_frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
        }
        if write.write_all(&bytes).await.is_err() {
            break 'flood;
        }
        sent += 100;
    }
    // Meanwhile and after, another client is served.
    assert!(get_root(addr).await.starts_with("HTTP/1.1 200 OK\r\n"));
    let goaway = within(reader).await.unwrap();
    eprintln!(
        "rapid reset: {sent} pairs sent, GOAWAY {goaway:?}, at most {most:?} requests in the app at once"
    );
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "{sent} pairs sent");
    // The work the flood caused at once stayed within the stream limit.
    assert!(most.load(Ordering::SeqCst) <= 100, "{most:?}");
    assert!(get_root(addr).await.starts_with("HTTP/1.1 200 OK\r\n"));
}

#[tokio::test]
async fn a_continuation_flood_on_an_upgraded_connection_is_cut_off() {
    let (in_flight, most) = (Arc::default(), Arc::default());
    let addr = h2c_app(&in_flight, &most).await;
    let (mut write, reader) = h2c_upgraded(addr).await;

    // The CVE-2024-27316 class: a header block that never ends, 10,000 CONTINUATION
    // frames of 1 KiB (10 MiB of headers) with no END_HEADERS.
    let mut first = get_block();
    first.extend_from_slice(&[0x00, 0x01, b'x', 0x7f, 0x81, 0x07]); // x: (1 KiB value follows)
    write
        .write_all(&h2_frame(HEADERS, END_STREAM, 3, &first))
        .await
        .unwrap();
    let filler = h2_frame(CONTINUATION, 0, 3, &[b'a'; 1024]);
    let mut sent = 0;
    for _ in 0..100 {
        let batch: Vec<u8> = std::iter::repeat_n(&filler, 100)
            .flatten()
            .copied()
            .collect();
        if write.write_all(&batch).await.is_err() {
            break;
        }
        sent += 100;
    }
    assert!(get_root(addr).await.starts_with("HTTP/1.1 200 OK\r\n"));
    let goaway = within(reader).await.unwrap();
    eprintln!("continuation flood: {sent} frames sent, GOAWAY {goaway:?}");
    assert!(
        goaway.is_some(),
        "no GOAWAY after {sent} CONTINUATION frames"
    );
    assert!(
        sent < 10_000,
        "the server read all {sent} CONTINUATION frames"
    );
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "only stream 1 reached the app"
    );
}
