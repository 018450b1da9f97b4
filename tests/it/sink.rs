//! `WebSocket` as a `Sink`: `StreamExt::split` with the writing half in a task of its own,
//! `SinkExt::send_all` and `StreamExt::forward`, as they are used with axum's and
//! tokio-tungstenite's WebSocket; a real client over TCP.

use axum::Router;
use axum::routing::any;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tower_upgrade::UpgradeLayer;
use tower_upgrade::websocket::{Error, Message, WebSocket, WebSocketHandler};

use crate::support::*;

async fn serve<F, Fut>(f: F) -> std::net::SocketAddr
where
    F: Fn(WebSocket) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    let handler = WebSocketHandler::new(move |ws, _req| f(ws)).dangerously_allow_any_origin();
    let app = Router::new().route(
        "/",
        any(|| async { "" }).layer(UpgradeLayer::new().protocol(handler).unwrap()),
    );
    spawn_axum(app).await
}

fn is_data(msg: &Message) -> bool {
    matches!(msg, Message::Text(_) | Message::Binary(_))
}

/// Echoes by forwarding the data messages of a socket's two halves, whichever split made
/// them.
async fn forward_data<Si, St>((sink, stream): (Si, St)) -> Result<(), Error>
where
    Si: futures_util::Sink<Message, Error = Error>,
    St: futures_util::Stream<Item = Result<Message, Error>>,
{
    stream
        .try_filter(|msg| std::future::ready(is_data(msg)))
        .forward(sink)
        .await
}

/// The example: the reader feeds a channel, a writer task drains it into the sink.
#[tokio::test]
async fn split_halves_in_two_tasks() {
    let addr = serve(|ws| async move {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::channel::<Message>(8);
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                sink.send(msg).await?;
            }
            sink.close().await
        });
        while let Some(msg) = stream.next().await {
            let msg = msg?;
            if is_data(&msg) && tx.send(msg).await.is_err() {
                break;
            }
        }
        drop(tx);
        writer.await.unwrap()
    })
    .await;
    let (mut client, _) = ws_connect(addr, format!("ws://{addr}/")).await;
    for i in 0..100 {
        client.send(TMessage::text(format!("{i}"))).await.unwrap();
    }
    // A ping while the writer is busy is still answered (by the reading half).
    client
        .send(TMessage::Ping(b"p".to_vec().into()))
        .await
        .unwrap();
    let mut texts = Vec::new();
    let mut pong = false;
    while texts.len() < 100 || !pong {
        match ws_next(&mut client).await {
            Some(TMessage::Text(t)) => texts.push(t.to_string()),
            Some(TMessage::Pong(p)) => pong = &p[..] == b"p",
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(texts, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    client.close(None).await.unwrap();
    assert!(matches!(
        ws_next(&mut client).await,
        Some(TMessage::Close(_)) | None
    ));
}

#[tokio::test]
async fn send_all_then_close_with_1000() {
    let addr = serve(|mut ws| async move {
        let mut items =
            futures_util::stream::iter((0..50).map(|i| Ok(Message::text(format!("n{i}")))));
        ws.send_all(&mut items).await?;
        SinkExt::close(&mut ws).await?;
        // The peer's close completes the handshake.
        while ws.recv().await.transpose()?.is_some() {}
        Ok(())
    })
    .await;
    let (mut client, _) = ws_connect(addr, format!("ws://{addr}/")).await;
    for i in 0..50 {
        assert_eq!(
            ws_next(&mut client).await,
            Some(TMessage::text(format!("n{i}")))
        );
    }
    match ws_next(&mut client).await {
        Some(TMessage::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected close 1000, got {other:?}"),
    }
}

#[tokio::test]
async fn forward_echoes() {
    let addr = serve(|ws| forward_data(ws.split())).await;
    let (mut client, _) = ws_connect(addr, format!("ws://{addr}/")).await;
    client.send(TMessage::text("one")).await.unwrap();
    client
        .send(TMessage::binary(vec![9; 100_000]))
        .await
        .unwrap();
    assert_eq!(ws_next(&mut client).await, Some(TMessage::text("one")));
    assert_eq!(
        ws_next(&mut client).await,
        Some(TMessage::binary(vec![9; 100_000]))
    );
}

/// `futures`' own split of the socket (a `BiLock` around it) works too, for code that names
/// it; `ws.split()` is the crate's halves.
#[tokio::test]
async fn futures_split_of_the_socket_works_too() {
    let addr = serve(|ws| forward_data(StreamExt::split(ws))).await;
    let (mut client, _) = ws_connect(addr, format!("ws://{addr}/")).await;
    client.send(TMessage::text("one")).await.unwrap();
    assert_eq!(ws_next(&mut client).await, Some(TMessage::text("one")));
}

/// Over TCP, with a client that sends but does not read: the send half fills the socket
/// buffers and blocks in a frame, and the receive half still gets every message.
#[tokio::test]
async fn the_receive_half_reads_on_while_the_send_half_is_blocked() {
    let (got, mut counted) = mpsc::channel::<usize>(1);
    let addr = serve(move |ws| {
        let got = got.clone();
        async move {
            let (mut tx, mut rx) = ws.split();
            // Bounded: 64 MiB at most, far past what loopback buffers hold.
            let flood = tokio::spawn(async move {
                for _ in 0..1024 {
                    if tx.send(Message::binary(vec![1; 64 << 10])).await.is_err() {
                        break;
                    }
                }
            });
            let mut n = 0;
            while let Some(Ok(msg)) = rx.recv().await {
                if is_data(&msg) {
                    n += 1;
                    if n == 100 {
                        let _ = got.send(n).await;
                    }
                }
            }
            flood.abort();
            Ok(())
        }
    })
    .await;
    let (mut client, _) = ws_connect(addr, format!("ws://{addr}/")).await;
    // Let the flood fill the buffers first.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for i in 0..100 {
        client.send(TMessage::text(format!("{i}"))).await.unwrap();
    }
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), counted.recv())
        .await
        .expect("the receive half was blocked by the send half");
    assert_eq!(n, Some(100));
}
