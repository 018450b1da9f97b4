//! WebSocket helpers: the tokio-tungstenite client, a raw upgrade request and the echo
//! handler the servers under test run.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;

use super::IO_TIMEOUT;

/// The `Sec-WebSocket-Key` of RFC 6455 §1.3; its accept value is
/// `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A valid WebSocket upgrade request for `GET /ws`, as raw bytes (key [`WS_KEY`]).
pub const WS_UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A WebSocket client (tokio-tungstenite) over a test's TCP connection.
pub type WsClient = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Connects to `addr` and does tokio-tungstenite's client handshake for `request` (a
/// `ws://` URL or a whole request) within [`IO_TIMEOUT`]; panics if it fails.
pub async fn ws_connect(
    addr: SocketAddr,
    request: impl IntoClientRequest + Unpin,
) -> (WsClient, Response) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::client_async(request, tcp))
        .await
        .expect("handshake timed out")
        .expect("handshake failed")
}

/// The next message from the server, within [`IO_TIMEOUT`]; `None` once the stream ends.
pub async fn ws_next(client: &mut WsClient) -> Option<tokio_tungstenite::tungstenite::Message> {
    use futures_util::StreamExt;
    tokio::time::timeout(IO_TIMEOUT, client.next())
        .await
        .expect("read timed out")
        .map(|r| r.expect("read failed"))
}

/// The server side: sends every text and binary message back.
pub async fn ws_echo(
    mut ws: tower_upgrade::websocket::WebSocket,
) -> Result<(), tower_upgrade::websocket::Error> {
    use tower_upgrade::websocket::Message;
    while let Some(msg) = ws.recv().await {
        if let msg @ (Message::Text(_) | Message::Binary(_)) = msg? {
            ws.send(msg).await?;
        }
    }
    Ok(())
}
