//! A chat room: every message any client sends goes to every client, in one order.
//!
//! ```text
//! cargo run --example chat
//! ```
//!
//! Then open the printed URL in two browser windows. The contract, checked from outside:
//!
//! - listens on `ADDR` (default `127.0.0.1:3003`);
//! - `GET /` is a page with a name field, the message list, an input, the connection state
//!   and the number of people online; it reconnects when the connection drops, and sends
//!   each message as its own text (`"ana: hello"`);
//! - `/ws` joins the one room: every text message the server receives from any client is
//!   delivered unchanged to every connected client, the sender included, in the order the
//!   server received them; a plain `GET /ws` gets `426`;
//! - `GET /online` is the number of people in the room (the page polls it, so the room's
//!   WebSocket carries nothing but the messages);
//! - a client that does not read is dropped once it is more than [`BACKLOG`] messages
//!   behind (close `1008`), or when a single send to it stalls for [`SEND_STALL`]; the
//!   room holds each message once, whatever the number of clients, so the server's memory
//!   stays bounded and the other clients are not slowed;
//! - with `REDIS_URL` set (for example `redis://127.0.0.1:6379/`), the room spans every
//!   instance that uses the same Redis: see [Across instances](#across-instances-redis_url);
//!   without it, the room is this one process, and the WebSocket carries nothing but the
//!   members' texts;
//! - SIGINT or SIGTERM shut it down gracefully (clients get close `1001 Going Away`, the
//!   process exits within 10 s); `MAX_UPGRADES`, if set, limits the live WebSockets (`503`
//!   past it).
//!
//! The pattern for a WebSocket app with shared state: one `tokio::sync::broadcast`
//! channel is the room (it fixes the order, stores each message once, and tells a receiver
//! that fell behind), and each connection is one task that `select!`s between the socket
//! and the room (`WebSocket::recv` and `send` are cancel-safe). Each message goes into the
//! room as a [`PreparedMessage`]: its frame is encoded once, and `send_prepared` writes that
//! same frame to every member.
//!
//! # Across instances (`REDIS_URL`)
//!
//! An upgraded connection is pinned to one process, so instances behind a load balancer
//! (`examples/nginx/chat.conf`) share the room through a Redis pub/sub channel
//! (`backplane.rs`):
//!
//! - each instance publishes what its members send to one Redis channel, and delivers to its
//!   members only what its subscription to that channel receives, its own members' messages
//!   included (never locally first); so every member of every instance receives every
//!   message, unchanged, and all of them in one order: the channel's; a sender sees its own
//!   message only once it has come back through the channel, so seeing it means it went to
//!   every instance subscribed at the time;
//! - the WebSocket also carries the room's **notices**. A notice is a *binary* message (the
//!   room's messages are all text, and the room ignores binary messages from clients, so
//!   a notice can never be confused with what someone said, and no text is reserved): UTF-8
//!   JSON, `{"room":KIND,"text":TEXT}`, where `KIND` is
//!   - `degraded`: this instance lost Redis (sent to every member when it happens, and to a
//!     member that joins meanwhile); the WebSocket stays open;
//!   - `up`: Redis is back and cross-instance delivery has resumed (messages published on other
//!     instances meanwhile are not replayed: Redis pub/sub keeps nothing);
//!   - `refused`: the message `TEXT` was *not* delivered to anyone, because the room is
//!     degraded (sent to its sender only). While degraded, messages are refused, not delivered
//!     locally: a message that reached only this instance would look as if it reached the room;
//!   - `unconfirmed`: sending `TEXT` to Redis failed midway; it may or may not have reached the
//!     room (sent to its sender only);
//!
//!   the page shows them as system lines (`#log li.system`) and the room's state in `#room`;
//! - the instance reconnects to Redis by itself, with backoff from 100 ms doubling to 5 s; it
//!   starts even when Redis is down (degraded);
//! - `GET /online` counts this instance's members only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod backplane;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{any, get};
use bytes::Bytes;
use tokio::sync::broadcast::{self, error::RecvError};
use tower_upgrade::websocket::{
    CloseFrame, Message, PreparedMessage, Utf8Bytes, WebSocket, WebSocketHandler, close_code,
};
use tower_upgrade::{Tracker, UpgradeLayer};

/// How many messages a client may fall behind the room before it is dropped.
const BACKLOG: usize = 256;
/// How long one send to a client may take before the client is dropped.
const SEND_STALL: Duration = Duration::from_secs(5);
/// The largest message the room takes.
const MAX_MESSAGE: usize = 16 * 1024;
/// How long a graceful shutdown waits for live connections before aborting them.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tower-upgrade chat</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  #state { font-weight: bold; }
  #log { font-family: ui-monospace, monospace; list-style: none; padding: 0; min-height: 10rem; }
  #log li { padding: 0.1rem 0; white-space: pre-wrap; }
  #log li.system { color: #8a4b00; font-style: italic; }
  #room.degraded { color: #b00020; font-weight: bold; }
  form { display: flex; gap: 0.5rem; }
  #message { flex: 1; }
</style>
</head>
<body>
<h1>Chat</h1>
<p>Connection: <span id="state">connecting</span> · online: <span id="online">?</span><span id="room-box" hidden> · room: <span id="room">up</span></span></p>
<p><label>Name <input type="text" id="name" autocomplete="off" value="guest"></label></p>
<ul id="log"></ul>
<form id="form">
  <input type="text" id="message" autocomplete="off" placeholder="type a message" autofocus>
  <button type="submit" id="send">Send</button>
</form>
<script>
  const state = document.getElementById('state');
  const online = document.getElementById('online');
  const nameInput = document.getElementById('name');
  const input = document.getElementById('message');
  const log = document.getElementById('log');
  const room = document.getElementById('room');
  nameInput.value = 'guest-' + Math.floor(Math.random() * 1000);
  const entry = (text, cls) => {
    const li = document.createElement('li');
    li.textContent = text;
    if (cls) li.className = cls;
    log.appendChild(li);
    li.scrollIntoView({ block: 'nearest' });
  };
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  let ws;
  let retry = 250;
  const connect = () => {
    state.textContent = 'connecting';
    ws = new WebSocket(scheme + location.host + '/ws');
    ws.binaryType = 'arraybuffer';
    window.chatSocket = ws; // for tests and the console
    ws.onopen = () => { state.textContent = 'open'; retry = 250; refresh(); };
    ws.onmessage = (event) => {
      if (typeof event.data === 'string') { entry(event.data); return; }
      // A binary message is a notice about the room (only across instances, REDIS_URL):
      // {"room": "degraded" | "up" | "refused" | "unconfirmed", "text": ...}.
      let notice;
      try { notice = JSON.parse(new TextDecoder().decode(event.data)); } catch (e) { return; }
      document.getElementById('room-box').hidden = false;
      if (notice.room === 'degraded' || notice.room === 'up') {
        room.textContent = notice.room;
        room.className = notice.room;
        entry('* ' + notice.text, 'system');
      } else if (notice.room === 'refused') {
        entry('* not sent (the room is degraded): ' + notice.text, 'system');
      } else if (notice.room === 'unconfirmed') {
        entry('* may not have reached everyone: ' + notice.text, 'system');
      }
    };
    ws.onclose = () => {
      state.textContent = 'closed';
      // Reconnect, backing off up to 5 s.
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 5000);
    };
  };
  const refresh = async () => {
    try {
      const res = await fetch('/online', { cache: 'no-store' });
      online.textContent = (await res.text()).trim();
    } catch (e) {
      online.textContent = '?';
    }
  };
  setInterval(refresh, 2000);
  connect();
  document.getElementById('form').addEventListener('submit', (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text || ws.readyState !== WebSocket.OPEN) return;
    ws.send(nameInput.value + ': ' + text);
    input.value = '';
  });
</script>
</body>
</html>
"#;

/// What the room fans out to its members.
#[derive(Clone, Debug)]
enum Event {
    /// A member's message, sent as text.
    /// Prepared once for every member: the frame is encoded once, not once per member.
    Say(PreparedMessage),
    /// A notice about the room itself, sent as a binary message (only with `REDIS_URL`).
    Notice(Bytes),
}

/// The one room: the channel that orders and fans out its messages, and who is in it.
struct Room {
    messages: broadcast::Sender<Event>,
    online: AtomicUsize,
    /// With `REDIS_URL`: the channel across instances that orders the messages; the local
    /// channel then only fans out what it delivers.
    backplane: Option<backplane::Backplane>,
}

impl Room {
    /// Takes what a member said; an `Err` is the notice for the sender when the room could
    /// not take it.
    async fn say(&self, text: Utf8Bytes) -> Result<(), Bytes> {
        match &self.backplane {
            // `send` fails only when nobody is subscribed, and the sender is.
            None => {
                let _ = self.messages.send(Event::Say(PreparedMessage::text(text)));
                Ok(())
            }
            Some(backplane) => backplane
                .publish(&text)
                .await
                .map_err(|refusal| refusal.notice(&text)),
        }
    }
}

/// Counts a member in the room for as long as it lives.
struct Presence<'a>(&'a Room);

impl<'a> Presence<'a> {
    fn join(room: &'a Room) -> Self {
        room.online.fetch_add(1, Ordering::Relaxed);
        Self(room)
    }
}

impl Drop for Presence<'_> {
    fn drop(&mut self) {
        self.0.online.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One member's connection: what it says goes to the room, what the room says goes to it.
async fn member(mut ws: WebSocket, room: Arc<Room>) {
    let mut from_room = room.messages.subscribe();
    let _presence = Presence::join(&room);
    if room.backplane.as_ref().is_some_and(|b| !b.is_up())
        && !bounded(ws.send(Message::Binary(backplane::degraded_notice()))).await
    {
        return;
    }
    loop {
        // Both branches are cancel-safe: `recv` and `send` keep their state in the socket,
        // and `broadcast::Receiver::recv` loses nothing when dropped.
        tokio::select! {
            msg = ws.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if let Err(notice) = room.say(text).await {
                        if !bounded(ws.send(Message::Binary(notice))).await {
                            return;
                        }
                    }
                }
                // Binary messages are not part of the room; pings are answered by the
                // socket, and a close is replied to by it.
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "member left with an error");
                    return;
                }
                None => return,
            },
            out = from_room.recv() => match out {
                Ok(event) => {
                    let sent = match event {
                        Event::Say(msg) => bounded(ws.send_prepared(&msg)).await,
                        Event::Notice(notice) => bounded(ws.send(Message::Binary(notice))).await,
                    };
                    if !sent {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "member dropped: too far behind");
                    let frame = CloseFrame {
                        code: close_code::POLICY,
                        reason: "too slow: fell behind the room".into(),
                    };
                    let _ = tokio::time::timeout(SEND_STALL, ws.close(Some(frame))).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Runs a send; `false` when the member is gone, or dropped because the send stalled for
/// [`SEND_STALL`] (it does not read).
async fn bounded(send: impl Future<Output = Result<(), tower_upgrade::websocket::Error>>) -> bool {
    match tokio::time::timeout(SEND_STALL, send).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::info!("member dropped: a send stalled");
            false
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let tracker = Tracker::new();
    if let Ok(max) = std::env::var("MAX_UPGRADES") {
        tracker.set_max_connections(Some(max.parse()?));
    }
    let messages = broadcast::channel(BACKLOG).0;
    let backplane = match std::env::var("REDIS_URL") {
        Ok(url) => {
            let backplane = backplane::Backplane::start(&url, messages.clone())?;
            if !backplane.wait_up(Duration::from_secs(2)).await {
                tracing::warn!("Redis is unreachable: starting degraded, reconnecting");
            }
            Some(backplane)
        }
        Err(_) => None,
    };
    let room = Arc::new(Room {
        messages,
        online: AtomicUsize::new(0),
        backplane,
    });

    let ws_room = Arc::clone(&room);
    let websocket = WebSocketHandler::new(move |ws, _req| member(ws, Arc::clone(&ws_room)))
        .max_message_size(MAX_MESSAGE);
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/online",
            get(|State(room): State<Arc<Room>>| async move {
                format!("{}\n", room.online.load(Ordering::Relaxed))
            }),
        )
        // `any`: the handler answers other methods itself (`405`).
        .route(
            "/ws",
            any(|| async { "unreachable: the route requires an upgrade\n" }).layer(
                UpgradeLayer::new()
                    .with_tracker(tracker.clone())
                    .protocol(websocket)?
                    .require_upgrade(),
            ),
        )
        .with_state(room);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3003".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("chat: open http://{}/ in a browser", listener.local_addr()?);

    // Graceful shutdown: the listener closes and HTTP connections finish, while live
    // WebSockets are told (close 1001); then they are drained, and whatever is left at the
    // deadline is aborted.
    let signal = tracker.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            println!("chat: shutting down, {} members online", signal.live());
            signal.shutdown();
        })
        .await?;
    let report = tracker.drain(DRAIN_DEADLINE).await;
    println!(
        "chat: drained {} connections ({} aborted)",
        report.live_at_start, report.aborted
    );
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
