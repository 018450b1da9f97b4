//! The servers of `load broadcast` (issue 13, "Broadcast once"): one text message sent to
//! every connected WebSocket, by each way of sending it.
//!
//! Every impl fans out the same way: one [`tokio::sync::broadcast`] channel, one task per
//! connection that waits on its receiver and sends what comes, and nothing else (no read
//! of the socket). Only the item in the channel and the send differ:
//!
//! | impl | item | per connection |
//! | --- | --- | --- |
//! | `bcast-floor` | the whole frame, `Bytes` | `write_all(&frame)` on the TCP stream after a fixed `101` |
//! | `bcast-message` | `Utf8Bytes` | this crate's `WebSocket::send(Message::Text(text))` |
//! | `bcast-prepared` | `PreparedMessage` | this crate's `WebSocket::send_prepared(&msg)` |
//! | `bcast-axum` | axum's `Utf8Bytes` | axum's `WebSocket::send(Message::Text(text))` |
//! | `bcast-message-deflate` | `Utf8Bytes` | `send`, permessage-deflate without context takeover |
//! | `bcast-prepared-deflate` | `PreparedMessage` | `send_prepared`, the same deflate |
//!
//! Control, over plain HTTP/1.1 on the same port: `GET /count` answers how many
//! connections are subscribed, `GET /broadcast` sends the next message (a 100-byte JSON
//! text with a sequence number, compressible) and answers how many receivers it went to.
//! One control request per broadcast of 10 000 recipients costs the server about as much
//! as one or two recipients.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tower_upgrade::UpgradeLayer;
use tower_upgrade::websocket::{
    DeflateConfig, Error, Message, PreparedMessage, Utf8Bytes, WebSocket, WebSocketHandler,
};

/// The size of every broadcast message, in bytes.
pub(crate) const MESSAGE_LEN: usize = 100;
/// Broadcasts the channel holds for a receiver that has not sent them yet. The harness
/// waits for each broadcast to be delivered before it asks for the next.
const CAPACITY: usize = 16;

/// Which send a broadcast server uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Floor,
    Message,
    Prepared,
    Axum,
    MessageDeflate,
    PreparedDeflate,
}

/// Broadcast message `seq`: JSON-like text of exactly [`MESSAGE_LEN`] bytes that deflate
/// shrinks (about 60%).
pub(crate) fn message_text(seq: u64) -> String {
    let mut text = format!(r#"{{"seq":{seq:08},"from":"bench","text":""#);
    while text.len() < MESSAGE_LEN - 2 {
        text.push_str(&"hello "[..(MESSAGE_LEN - 2 - text.len()).min(6)]);
    }
    text.push_str("\"}");
    debug_assert_eq!(text.len(), MESSAGE_LEN);
    text
}

pub(crate) async fn serve(kind: Kind, listener: TcpListener) -> io::Result<()> {
    match kind {
        Kind::Floor => {
            let (tx, _) = broadcast::channel::<Bytes>(CAPACITY);
            let publish = Publish::new(tx.clone(), |text| {
                let mut frame = vec![0x81, text.len() as u8];
                frame.extend_from_slice(text.as_bytes());
                Bytes::from(frame)
            });
            super::accept_loop(listener, move |tcp| floor_conn(tcp, publish.clone())).await
        }
        Kind::Message | Kind::MessageDeflate => {
            serve_crate::<Utf8Bytes>(listener, kind == Kind::MessageDeflate).await
        }
        Kind::Prepared | Kind::PreparedDeflate => {
            serve_crate::<PreparedMessage>(listener, kind == Kind::PreparedDeflate).await
        }
        Kind::Axum => {
            use axum::extract::ws::{self, WebSocketUpgrade};

            let (tx, _) = broadcast::channel::<ws::Utf8Bytes>(CAPACITY);
            let publish = Publish::new(tx.clone(), ws::Utf8Bytes::from);
            let router = Router::new().route(
                "/ws",
                get(move |upgrade: WebSocketUpgrade| {
                    let mut rx = tx.subscribe();
                    async move {
                        upgrade.on_upgrade(move |mut socket| async move {
                            while let Ok(text) = rx.recv().await {
                                if socket.send(ws::Message::Text(text)).await.is_err() {
                                    break;
                                }
                            }
                        })
                    }
                }),
            );
            super::serve_axum(listener, router.merge(control(publish))).await
        }
    }
}

/// `/ws` behind this crate's layer, and the control routes.
/// What this crate's servers put in the channel, and how each connection sends it.
trait Outgoing: Clone + Send + Sync + 'static {
    fn from_text(text: String) -> Self;
    fn send(self, ws: &mut WebSocket) -> impl Future<Output = Result<(), Error>> + Send + '_;
}

impl Outgoing for Utf8Bytes {
    fn from_text(text: String) -> Self {
        Self::from(text)
    }

    fn send(self, ws: &mut WebSocket) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        ws.send(Message::Text(self))
    }
}

impl Outgoing for PreparedMessage {
    fn from_text(text: String) -> Self {
        Self::text(text)
    }

    async fn send(self, ws: &mut WebSocket) -> Result<(), Error> {
        ws.send_prepared(&self).await
    }
}

/// `bcast-message` and `bcast-prepared`, with or without permessage-deflate.
async fn serve_crate<T: Outgoing>(listener: TcpListener, deflate: bool) -> io::Result<()> {
    let (tx, _) = broadcast::channel::<T>(CAPACITY);
    let publish = Publish::new(tx.clone(), T::from_text);
    let handler = WebSocketHandler::new(move |mut ws: WebSocket, req| {
        drop(req);
        let mut rx = tx.subscribe();
        async move {
            while let Ok(item) = rx.recv().await {
                item.send(&mut ws).await?;
            }
            Ok::<_, Error>(())
        }
    });
    let handler = if deflate {
        handler.deflate(DeflateConfig::new())
    } else {
        handler
    };
    let layer = UpgradeLayer::new()
        .protocol(handler)
        .expect("valid handler");
    super::serve_axum(listener, app(layer, publish)).await
}

fn app<T: Clone + Send + 'static>(layer: UpgradeLayer, publish: Publish<T>) -> Router {
    Router::new()
        .route("/ws", get(|| async { "upgrade only" }).layer(layer))
        .merge(control(publish))
}

fn control<T: Clone + Send + 'static>(publish: Publish<T>) -> Router {
    let count = publish.clone();
    Router::new()
        .route(
            "/broadcast",
            get(move || {
                let n = publish.broadcast();
                async move { n.to_string() }
            }),
        )
        .route(
            "/count",
            get(move || {
                let n = count.tx.receiver_count();
                async move { n.to_string() }
            }),
        )
}

/// Sends the next message into the channel, made into the impl's item once.
struct Publish<T> {
    tx: broadcast::Sender<T>,
    seq: Arc<AtomicU64>,
    make: fn(String) -> T,
}

impl<T> Clone for Publish<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            seq: self.seq.clone(),
            make: self.make,
        }
    }
}

impl<T> Publish<T> {
    fn new(tx: broadcast::Sender<T>, make: fn(String) -> T) -> Self {
        Self {
            tx,
            seq: Arc::new(AtomicU64::new(0)),
            make,
        }
    }

    /// Sends message number `seq`; returns how many receivers it went to.
    fn broadcast(&self) -> usize {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.tx.send((self.make)(message_text(seq))).unwrap_or(0)
    }
}

/// The floor: read the request head; `/ws` gets a fixed `101` and then every frame from
/// the channel with one `write_all` each; anything else is a control request.
async fn floor_conn(mut tcp: TcpStream, publish: Publish<Bytes>) {
    let mut buf = Vec::with_capacity(1024);
    let Some(end) = read_head(&mut tcp, &mut buf).await else {
        return;
    };
    if buf.starts_with(b"GET /ws") {
        if tcp.write_all(super::FIXED_101).await.is_err() {
            return;
        }
        drop(buf);
        let mut rx = publish.tx.subscribe();
        drop(publish);
        while let Ok(frame) = rx.recv().await {
            if tcp.write_all(&frame).await.is_err() {
                return;
            }
        }
        return;
    }
    // Control requests, one after another on this connection (bounded by it).
    let mut end = end;
    loop {
        let body = if buf.starts_with(b"GET /broadcast") {
            publish.broadcast()
        } else {
            publish.tx.receiver_count()
        }
        .to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if tcp.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        buf.drain(..end);
        end = match read_head(&mut tcp, &mut buf).await {
            Some(end) => end,
            None => return,
        };
    }
}

/// Reads until `buf` holds a whole request head; returns where it ends. `None` at the end
/// of the connection, or past 8 KiB.
async fn read_head(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(at) = super::find(buf, b"\r\n\r\n") {
            return Some(at + 4);
        }
        if buf.len() >= super::MAX_HEAD {
            return None;
        }
        match tcp.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_are_100_bytes() {
        for seq in [0, 1, 99_999_999, 123_456_789_012] {
            assert_eq!(super::message_text(seq).len(), super::MESSAGE_LEN);
        }
    }
}
