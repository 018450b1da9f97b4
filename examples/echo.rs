//! A WebSocket echo server with a web page to try it from a browser.
//!
//! ```text
//! cargo run --example echo
//! ```
//!
//! Then open the printed URL. The contract, which `.ci/websocket.sh` checks from outside
//! (with Autobahn|Testsuite and a headless Chromium):
//!
//! - listens on `ADDR` (default `127.0.0.1:3000`), HTTP/1.1 and HTTP/2 (cleartext, prior
//!   knowledge) on the same port, with `SETTINGS_ENABLE_CONNECT_PROTOCOL` so that HTTP/2
//!   clients can open WebSockets with extended CONNECT (RFC 8441);
//! - `GET /` is a small self-contained page whose script opens a WebSocket to `/ws`, lets
//!   you type messages, and shows each echo and the connection state;
//! - `/ws` echoes every text and binary message back exactly, answers pings, and closes
//!   cleanly; a plain `GET /ws` gets `426 Upgrade Required` with `Upgrade: websocket`;
//! - `/ws` negotiates permessage-deflate (RFC 7692) in its default mode, no context
//!   takeover; the page shows the extensions negotiated (`#extensions`) and each echo's
//!   round trip in ms (`data-rtt` on its log entry), and `window.sendBinary(size)` sends a
//!   binary message of `size` bytes whose echo it compares (`< (binary: N bytes, same)`);
//! - the default origin policy is on: the page itself is same-origin, other sites' pages
//!   get `403`.
//!
//! - h2c is registered on the whole app: `curl --http2 http://ADDR/` gets the page over
//!   HTTP/2 after an upgrade, and `POST /echo` answers with the request body
//!   (`curl --http2 --data-binary @file http://ADDR/echo`);
//! - SIGINT or SIGTERM shut it down gracefully: live WebSockets get close `1001 Going
//!   Away`, h2c connections a GOAWAY, and the process exits within 10 s;
//! - a request head (or the HTTP/2 preface and first SETTINGS) must be complete within
//!   10 s; a silent WebSocket is pinged after 30 s and closed when 10 s more pass without
//!   a byte; accept errors (out of descriptors) back off from 10 ms to 1 s, with one log
//!   line per 5 s (see `examples/support/mod.rs`);
//! - `MESSAGE_BUDGET` (bytes, default 256 MiB, `0` for none) bounds the WebSocket message
//!   bytes buffered by all connections together: past it, a message closes its connection
//!   with `1013 Try Again Later`;
//! - `MAX_UPGRADES`, if set, limits the live upgraded connections (`503` past it);
//!   `INSTANCE`, if set, is sent as `x-instance` on every response (to tell instances apart
//!   behind a load balancer).
//!
//! It serves with hyper-util's `auto::Builder` rather than `axum::serve`, because only the
//! former can enable the HTTP/2 extended CONNECT protocol; the app is still an axum
//! `Router`.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::{any, get, post};
use axum::{Router, response::Html};
use http::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_upgrade::h2c::H2c;
use tower_upgrade::websocket::{
    DeflateConfig, Error, Message, WebSocket, WebSocketConfig, WebSocketHandler,
};
use tower_upgrade::{Tracker, UpgradeLayer};

#[path = "support/mod.rs"]
mod support;

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tower-upgrade echo</title>
<style>
  body { font: 16px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  #state { font-weight: bold; }
  #log { font-family: ui-monospace, monospace; list-style: none; padding: 0; }
  #log li { padding: 0.1rem 0; white-space: pre-wrap; }
  #log li[data-rtt]::after { content: "  (" attr(data-rtt) " ms)"; color: #777; }
</style>
</head>
<body>
<h1>WebSocket echo</h1>
<p>Connection: <span id="state">connecting</span></p>
<p>Extensions: <span id="extensions">none</span></p>
<form id="form">
  <input type="text" id="message" autocomplete="off" placeholder="type a message" autofocus>
  <button type="submit" id="send">Send</button>
</form>
<ul id="log"></ul>
<script>
  const state = document.getElementById('state');
  const input = document.getElementById('message');
  const log = document.getElementById('log');
  const entry = (text, rtt) => {
    const li = document.createElement('li');
    li.textContent = text;
    if (rtt !== undefined) li.dataset.rtt = rtt.toFixed(1);
    log.appendChild(li);
  };
  // The echo comes back in order: the send times of the messages in flight.
  const sentAt = [];
  let lastBinary = null;
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const ws = new WebSocket(scheme + location.host + '/ws');
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    state.textContent = 'open';
    document.getElementById('extensions').textContent = ws.extensions || 'none';
  };
  ws.onclose = () => { state.textContent = 'closed'; };
  ws.onerror = () => { state.textContent = 'closed'; };
  ws.onmessage = (event) => {
    const rtt = performance.now() - sentAt.shift();
    if (typeof event.data === 'string') {
      entry('< ' + event.data, rtt);
    } else {
      const got = new Uint8Array(event.data);
      const same = !!lastBinary && got.length === lastBinary.length && got.every((b, i) => b === lastBinary[i]);
      entry('< (binary: ' + got.length + ' bytes, ' + (same ? 'same' : 'different') + ')', rtt);
    }
  };
  const send = (data) => {
    sentAt.push(performance.now());
    ws.send(data);
  };
  // A binary message of `size` bytes, compressible like most real data.
  window.sendBinary = (size) => {
    lastBinary = new Uint8Array(size);
    for (let i = 0; i < size; i++) lastBinary[i] = (i % 251) ^ ((i >> 12) & 0xff);
    send(lastBinary);
    entry('> (binary: ' + size + ' bytes)');
  };
  document.getElementById('form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (ws.readyState !== WebSocket.OPEN) return;
    send(input.value);
    entry('> ' + input.value);
    input.value = '';
  });
</script>
</body>
</html>
"#;

/// Echoes every text and binary message. Pings are answered and the peer's close frame
/// replied to by the socket itself.
async fn echo(mut ws: WebSocket) -> Result<(), Error> {
    while let Some(msg) = ws.recv().await {
        match msg? {
            msg @ (Message::Text(_) | Message::Binary(_)) => ws.send(msg).await?,
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => {}
        }
    }
    Ok(())
}

/// How long a graceful shutdown waits for live connections before aborting them.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// The default `MESSAGE_BUDGET`: WebSocket message bytes buffered by all connections.
const MESSAGE_BUDGET: usize = 256 << 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // One tracker for both layers: one live count, one limit, one shutdown.
    let tracker = Tracker::new();
    if let Ok(max) = std::env::var("MAX_UPGRADES") {
        tracker.set_max_connections(Some(max.parse()?));
    }
    let budget = match std::env::var("MESSAGE_BUDGET") {
        Ok(bytes) => Some(bytes.parse::<usize>()?).filter(|&b| b > 0),
        Err(_) => Some(MESSAGE_BUDGET),
    };
    tracker.set_message_budget(budget);

    // permessage-deflate without context takeover: nothing kept between messages.
    let websocket = WebSocketHandler::new(|ws, _req| echo(ws))
        .config(
            WebSocketConfig::new()
                .keep_alive(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10)),
        )
        .deflate(DeflateConfig::new());
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/echo", post(|body: Bytes| async move { body }))
        .route(
            "/ws",
            // `any`: HTTP/2 WebSockets arrive as CONNECT, and other methods get the
            // handler's `405`.
            any(|| async { "unreachable: the route requires an upgrade\n" }).layer(
                UpgradeLayer::new()
                    .with_tracker(tracker.clone())
                    .protocol(websocket)?
                    .require_upgrade(),
            ),
        );
    // Behind a load balancer, tell the instances apart.
    let router = match std::env::var("INSTANCE") {
        Ok(name) => router.layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-instance"),
            HeaderValue::from_str(&name)?,
        )),
        Err(_) => router,
    };
    // h2c wraps the whole router, so that every HTTP/2 request on an upgraded connection is
    // routed (`Router::layer` would wrap each route on its own).
    let app = UpgradeLayer::new()
        .with_tracker(tracker.clone())
        .protocol(H2c::new())?
        .layer(router);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    println!("echo: open http://{}/ in a browser", listener.local_addr()?);
    let mut listener = support::Acceptor::new(listener);

    // A deadline for each request head (HTTP/1.1); the HTTP/2 preface gets the same below.
    let mut builder = support::builder(support::HEAD_TIMEOUT);
    // RFC 8441: announce SETTINGS_ENABLE_CONNECT_PROTOCOL.
    builder.http2().enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        // Backs off on accept errors (out of file descriptors): no spin, no log flood.
        let (stream, peer) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // HTTP/2 prior knowledge: the preface and first SETTINGS within the deadline.
            if let Err(e) = support::head_started(&stream, support::HEAD_TIMEOUT).await {
                tracing::debug!(%peer, error = %e, "connection dropped before its head");
                return;
            }
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection error");
            }
        });
    }

    // Graceful shutdown: no new connections; upgraded ones are told (WebSockets get close
    // 1001, h2c connections a GOAWAY) and drained; HTTP/1.1 connections finish their
    // request in flight. Whatever is left at the deadline is aborted.
    drop(listener);
    println!(
        "echo: shutting down, {} upgraded connections live",
        tracker.live()
    );
    let started = Instant::now();
    let (report, http) = tokio::join!(
        tracker.drain(DRAIN_DEADLINE),
        tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown()),
    );
    println!(
        "echo: drained {} upgraded connections ({} aborted){} in {} ms",
        report.live_at_start,
        report.aborted,
        if http.is_err() {
            ", HTTP connections cut at the deadline"
        } else {
            ""
        },
        started.elapsed().as_millis(),
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
