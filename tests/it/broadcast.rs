//! `PreparedMessage` over real TCP: one message prepared once and sent by a server to
//! several tokio-tungstenite clients, and to raw clients that negotiated
//! permessage-deflate (tokio-tungstenite has none), whose compressed frames are inflated
//! here with flate2.

use std::net::SocketAddr;

use axum::{Router, routing::any};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::Message as TMessage;
use tower_upgrade::UpgradeLayer;
use tower_upgrade::websocket::{
    DeflateConfig, Message, PreparedMessage, WebSocket, WebSocketHandler,
};

use crate::support::*;

/// A room on `/ws` with permessage-deflate (no context takeover): every connection sends
/// whatever is published. `joined` gets a `()` once a connection is subscribed.
async fn spawn_room() -> (
    SocketAddr,
    broadcast::Sender<PreparedMessage>,
    mpsc::UnboundedReceiver<()>,
) {
    let (tx, _) = broadcast::channel::<PreparedMessage>(16);
    let (joined_tx, joined) = mpsc::unbounded_channel();
    let room = tx.clone();
    let handler = WebSocketHandler::new(move |mut ws: WebSocket, _req| {
        let mut rx = room.subscribe();
        let _ = joined_tx.send(());
        async move {
            while let Ok(msg) = rx.recv().await {
                ws.send_prepared(&msg).await?;
            }
            ws.close(None).await
        }
    })
    .deflate(DeflateConfig::new())
    .dangerously_allow_any_origin();
    let layer = UpgradeLayer::new().protocol(handler).unwrap();
    let addr = spawn_axum(Router::new().route("/ws", any(|| async { "" }).layer(layer))).await;
    (addr, tx, joined)
}

/// A raw client offering permessage-deflate with `params`; checks the answer.
async fn open_deflate(addr: SocketAddr, params: &str) -> TcpStream {
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\
         Sec-WebSocket-Extensions: permessage-deflate{params}\r\n\r\n"
    );
    let mut stream = send(addr, request.as_bytes()).await;
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    let answer = header(&head, "sec-websocket-extensions").unwrap();
    assert!(
        answer.starts_with("permessage-deflate; server_no_context_takeover"),
        "{answer}"
    );
    stream
}

fn json(size: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while out.len() < size {
        out.push_str(&format!(
            r#"{{"id":{i},"user":"ana","text":"hello world"}},"#
        ));
        i += 1;
    }
    out.truncate(size);
    out
}

#[tokio::test]
async fn one_prepared_message_reaches_every_client() {
    let (addr, room, mut joined) = spawn_room().await;
    let mut plain = Vec::new();
    for _ in 0..4 {
        plain.push(ws_connect(addr, format!("ws://{addr}/ws")).await.0);
    }
    let mut deflate = Vec::new();
    for params in [
        "; client_max_window_bits",
        "",
        // Another server window: another compressed variant.
        "; server_max_window_bits=10",
    ] {
        deflate.push(open_deflate(addr, params).await);
    }
    for _ in 0..plain.len() + deflate.len() {
        within(joined.recv()).await.unwrap();
    }

    let big = json(4000);
    let messages = [
        PreparedMessage::text(big.clone()),
        // Under the threshold (64 bytes): never compressed.
        PreparedMessage::text("hi all"),
        PreparedMessage::binary(big.clone().into_bytes()),
    ];
    for msg in &messages {
        assert_eq!(room.send(msg.clone()).unwrap(), 7);
    }

    for client in &mut plain {
        assert_eq!(ws_next(client).await, Some(TMessage::text(big.clone())));
        assert_eq!(ws_next(client).await, Some(TMessage::text("hi all")));
        assert_eq!(
            ws_next(client).await,
            Some(TMessage::binary(big.clone().into_bytes()))
        );
    }
    let mut wires = Vec::new();
    for stream in &mut deflate {
        let mut frames = Vec::new();
        for (msg, opcode) in messages.iter().zip([0x1, 0x1, 0x2]) {
            let (b0, payload) = read_frame(stream).await;
            assert_eq!(b0 & 0x8f, 0x80 | opcode, "one final frame per message");
            let compressed = b0 & 0x40 != 0;
            assert_eq!(compressed, msg.len() >= 64, "{b0:#x}");
            let got = if compressed {
                assert!(payload.len() < msg.len() / 4, "{}", payload.len());
                inflate(&payload)
            } else {
                payload.clone()
            };
            assert_eq!(got, msg.as_bytes());
            frames.push((b0, payload));
        }
        wires.push(frames);
    }
    // The two clients with the default window got the very same bytes.
    assert_eq!(wires[0], wires[1]);
    assert_eq!(wires[1][1], wires[2][1]);

    // The message is still usable as a `Message` elsewhere.
    assert_eq!(Message::from(messages[1].clone()), Message::text("hi all"));
}
