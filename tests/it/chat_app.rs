//! The chat example as a user runs it: a separate process, checked from outside over real
//! TCP with real WebSocket clients.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let raw = String::from_utf8(read_to_end(&mut stream).await).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

async fn online(addr: std::net::SocketAddr) -> usize {
    get(addr, "/online").await.1.trim().parse().unwrap()
}

#[tokio::test]
async fn the_chat_app_keeps_its_contract() {
    let chat = Example::start("chat", &[]);
    let addr = chat.addr;

    let (head, page) = get(addr, "/").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for id in ["name", "log", "message", "send", "state", "online"] {
        assert!(
            page.contains(&format!("id=\"{id}\"")),
            "the page has no #{id}"
        );
    }
    assert!(page.contains("setTimeout(connect"), "the page reconnects");
    let (head, _) = get(addr, "/ws").await;
    assert!(
        head.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{head}"
    );
    assert_eq!(header(&head, "upgrade"), Some("websocket"));
    assert_eq!(online(addr).await, 0);

    // Three members, each sending 40 messages at once: every member gets all 120,
    // unchanged, in one order (the server's), its own among them in the order it sent them.
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(ws_same_origin(addr).await);
    }
    assert!(eventually_async(|| async { online(addr).await == 3 }).await);
    let (mut sinks, mut streams): (Vec<_>, Vec<_>) = members.into_iter().map(|m| m.split()).unzip();
    let senders = sinks.iter_mut().enumerate().map(|(who, sink)| async move {
        for i in 0..40 {
            sink.send(TMessage::text(format!("m{who}: {i} ✓")))
                .await
                .unwrap();
        }
    });
    futures_util::future::join_all(senders).await;
    let mut orders = Vec::new();
    for stream in &mut streams {
        let mut seen = Vec::new();
        while seen.len() < 120 {
            match within(stream.next()).await {
                Some(Ok(TMessage::Text(text))) => seen.push(text.to_string()),
                other => panic!("expected a text message, got {other:?}"),
            }
        }
        orders.push(seen);
    }
    assert!(
        orders.iter().all(|o| o == &orders[0]),
        "members saw different orders"
    );
    for who in 0..3 {
        let own: Vec<_> = orders[0]
            .iter()
            .filter(|m| m.starts_with(&format!("m{who}: ")))
            .cloned()
            .collect();
        let sent: Vec<_> = (0..40).map(|i| format!("m{who}: {i} ✓")).collect();
        assert_eq!(own, sent);
    }
    drop((sinks, streams));
    assert!(eventually_async(|| async { online(addr).await == 0 }).await);
}

/// A member that never reads is dropped; the others keep getting every message meanwhile.
#[tokio::test]
async fn a_member_that_does_not_read_is_dropped_and_slows_nobody() {
    let chat = Example::start("chat", &[]);
    let addr = chat.addr;
    // The slow one: upgrades, then never reads.
    let mut slow = send(addr, &ws_upgrade_request(addr)).await;
    let head = read_head(&mut slow).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (mut sink, mut stream) = ws_same_origin(addr).await.split();

    // 3 000 messages of 8 KiB: far more than the socket buffers and the room's backlog.
    let payload = "x".repeat(8 * 1024);
    let start = Instant::now();
    let writer = async {
        for i in 0..3000 {
            sink.send(TMessage::text(format!("{i} {payload}")))
                .await
                .unwrap();
        }
    };
    let reader = async {
        for i in 0..3000 {
            match within(stream.next()).await {
                Some(Ok(TMessage::Text(text))) => {
                    assert!(
                        text.starts_with(&format!("{i} ")),
                        "message {i} out of order"
                    );
                }
                other => panic!("message {i}: {other:?}"),
            }
        }
    };
    tokio::join!(writer, reader);
    let took = start.elapsed();

    // The slow member's connection ends: read what the kernel buffered until EOF, bounded.
    let mut buf = vec![0; 64 * 1024];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the member that does not read was not dropped"
    );
    assert!(eventually_async(|| async { online(addr).await == 1 }).await);
    eprintln!(
        "3000 messages of 8 KiB reached the reading member in {} ms while the other did not read",
        took.as_millis()
    );
}

#[tokio::test]
async fn max_upgrades_and_graceful_shutdown() {
    let chat = Example::start("chat", &[("MAX_UPGRADES", "2")]);
    let mut first = ws_same_origin(chat.addr).await;
    let mut second = ws_same_origin(chat.addr).await;
    let mut third = send(chat.addr, &ws_upgrade_request(chat.addr)).await;
    let head = read_head(&mut third).await;
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );

    first.send(TMessage::text("a: hi")).await.unwrap();
    assert_eq!(ws_next(&mut second).await, Some(TMessage::text("a: hi")));
    assert_eq!(ws_next(&mut first).await, Some(TMessage::text("a: hi")));

    let start = Instant::now();
    chat.terminate();
    for client in [&mut first, &mut second] {
        match ws_next(client).await {
            Some(TMessage::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected close 1001, got {other:?}"),
        }
        // Reading on sends tungstenite's close reply; then the server ends the connection.
        assert!(ws_next(client).await.is_none());
    }
    let (status, out) = tokio::task::spawn_blocking(move || chat.wait(Duration::from_secs(12)))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(out.contains("drained 2 connections (0 aborted)"), "{out}");
    assert!(start.elapsed() < Duration::from_secs(10));
}
