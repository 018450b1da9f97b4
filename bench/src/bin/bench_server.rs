//! One server under test for the load harness (`bench/src/bin/load.rs`), one per process, so
//! that its CPU time and memory can be read from `/proc` on their own.
//!
//! ```text
//! cargo build --release -p tower-upgrade-bench
//! target/release/bench_server --impl floor --addr 127.0.0.1:0 --cpu 0
//! ```
//!
//! The first line on stdout is the bound address. `/ws` echoes text and binary messages
//! and answers close frames; `GET /` answers `hello` on the pass-through impls.
//!
//! | `--impl` | what runs |
//! | --- | --- |
//! | `floor` | the limit: minimal HTTP parsing (read to the empty line), a fixed `101` with no validation, a raw frame echo |
//! | `tower-upgrade` | this crate's WebSocket handler, on an axum router; `GET /stats` answers the layer's [`Tracker`] totals as `live=… accepted=… completed=… failed=…` |
//! | `tower-upgrade-raw` | the core layer only: an axum router with [`UpgradeLayer`] and a small [`ProtocolHandler`] that checks the key and computes `Sec-WebSocket-Accept`, then the floor's frame echo on the [`UpgradedIo`] |
//! | `tower-upgrade-hyper` | this crate's WebSocket handler, on a plain hyper 1 `http1` server as the hyper-based peers use |
//! | `tower-upgrade-raw-hyper` | the same layer and handler around a `tower::service_fn`, on a plain hyper 1 `http1` server as the hyper-based peers use (no axum router, no `auto::Builder`) |
//! | `axum` | axum 0.8 `WebSocketUpgrade` (tokio-tungstenite) |
//! | `hyper-tungstenite` | hyper 1 `http1` server with hyper-tungstenite |
//! | `fastwebsockets` | hyper 1 `http1` server with fastwebsockets' `upgrade` |
//! | `tokio-websockets` | tokio-websockets' own server handshake on the TCP stream |
//! | `plain-axum` | `GET /` → `hello`, a bare axum router |
//! | `layered-axum` | the same router with [`UpgradeLayer`] (two protocols registered) |
//! | `h2-prior-knowledge` | `layered-axum` served by hyper-util's `auto::Builder` (HTTP/2 with prior knowledge) |
//! | `h2c` | `plain-axum`'s router wrapped whole in [`UpgradeLayer`] with [`H2c`], on the same `auto::Builder` setup as `h2-prior-knowledge`: clients upgrade from HTTP/1.1 |
//! | `bcast-floor`, `bcast-message`, `bcast-prepared`, `bcast-axum`, `bcast-message-deflate`, `bcast-prepared-deflate` | `load broadcast`: one message to every connection (see `bench/src/broadcast_server.rs`) |
//!
//! Every impl sets `TCP_NODELAY` on accepted connections. Options:
//!
//! - `--cpu N`: pin the process to core `N` (before the runtime starts, so every thread
//!   inherits it);
//! - `--threads N`: runtime worker threads; `1` (the default) is a current-thread runtime;
//! - `--max-secs N`: exit after `N` seconds (default 900). The server also exits when its
//!   stdin closes, so it never outlives the harness that started it.
//!
//! [`UpgradeLayer`]: tower_upgrade::UpgradeLayer
//! [`ProtocolHandler`]: tower_upgrade::ProtocolHandler
//! [`UpgradedIo`]: tower_upgrade::UpgradedIo
//! [`Tracker`]: tower_upgrade::Tracker
//! [`H2c`]: tower_upgrade::h2c::H2c

/// The permessage-deflate servers (`load echo --deflate`, `load idle --deflate`).
#[path = "../deflate_server.rs"]
mod deflate_server;

/// The broadcast servers (`load broadcast`): the `bcast-*` impls.
#[path = "../broadcast_server.rs"]
mod broadcast_server;

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, SEC_WEBSOCKET_ACCEPT};
use http::{Request, Response, StatusCode, request};
use http_body_util::{Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_upgrade::{
    Accepted, BoxError, Decision, ProtocolHandler, Rejection, UpgradeLayer, UpgradeRequest,
    UpgradedIo, handler_fn,
};

use tower_upgrade_bench::{apply_mask, pin_to_cpu, raise_nofile_limit};

/// The servers this binary can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Floor,
    TowerUpgrade,
    TowerUpgradeDeflate,
    TowerUpgradeDeflateTakeover,
    FloorDeflate,
    YawcDeflate,
    TowerUpgradeRaw,
    TowerUpgradeRawHyper,
    TowerUpgradeHyper,
    TowerUpgradeSplit,
    TowerUpgradeSplitTasks,
    TowerUpgradeBilockTasks,
    Axum,
    HyperTungstenite,
    Fastwebsockets,
    TokioWebsockets,
    PlainAxum,
    LayeredAxum,
    H2PriorKnowledge,
    H2c,
    Broadcast(broadcast_server::Kind),
}

impl Impl {
    const ALL: [(&'static str, Self); 26] = [
        ("floor", Self::Floor),
        ("tower-upgrade", Self::TowerUpgrade),
        ("tower-upgrade-deflate", Self::TowerUpgradeDeflate),
        (
            "tower-upgrade-deflate-takeover",
            Self::TowerUpgradeDeflateTakeover,
        ),
        ("floor-deflate", Self::FloorDeflate),
        ("yawc-deflate", Self::YawcDeflate),
        ("tower-upgrade-raw", Self::TowerUpgradeRaw),
        ("tower-upgrade-raw-hyper", Self::TowerUpgradeRawHyper),
        ("tower-upgrade-hyper", Self::TowerUpgradeHyper),
        ("tower-upgrade-split", Self::TowerUpgradeSplit),
        ("tower-upgrade-split-tasks", Self::TowerUpgradeSplitTasks),
        ("tower-upgrade-bilock-tasks", Self::TowerUpgradeBilockTasks),
        ("axum", Self::Axum),
        ("hyper-tungstenite", Self::HyperTungstenite),
        ("fastwebsockets", Self::Fastwebsockets),
        ("tokio-websockets", Self::TokioWebsockets),
        ("plain-axum", Self::PlainAxum),
        ("layered-axum", Self::LayeredAxum),
        ("h2-prior-knowledge", Self::H2PriorKnowledge),
        ("h2c", Self::H2c),
        (
            "bcast-floor",
            Self::Broadcast(broadcast_server::Kind::Floor),
        ),
        (
            "bcast-message",
            Self::Broadcast(broadcast_server::Kind::Message),
        ),
        (
            "bcast-prepared",
            Self::Broadcast(broadcast_server::Kind::Prepared),
        ),
        ("bcast-axum", Self::Broadcast(broadcast_server::Kind::Axum)),
        (
            "bcast-message-deflate",
            Self::Broadcast(broadcast_server::Kind::MessageDeflate),
        ),
        (
            "bcast-prepared-deflate",
            Self::Broadcast(broadcast_server::Kind::PreparedDeflate),
        ),
    ];

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, i)| *i)
    }
}

#[derive(Debug)]
struct Args {
    imp: Impl,
    addr: SocketAddr,
    cpu: Option<usize>,
    threads: usize,
    max_secs: u64,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut imp = None;
        let mut addr: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
        let mut cpu = None;
        let mut threads = 1;
        let mut max_secs = 900;
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--impl" => {
                    let name = value()?;
                    imp = Some(Impl::parse(&name).ok_or_else(|| {
                        let names: Vec<_> = Impl::ALL.iter().map(|(n, _)| *n).collect();
                        format!("unknown impl {name:?}; one of: {}", names.join(", "))
                    })?);
                }
                "--addr" => addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
                "--cpu" => cpu = Some(value()?.parse().map_err(|e| format!("--cpu: {e}"))?),
                "--threads" => threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
                "--max-secs" => {
                    max_secs = value()?.parse().map_err(|e| format!("--max-secs: {e}"))?;
                }
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        if !addr.ip().is_loopback() {
            return Err(format!("--addr must be a loopback address, not {addr}"));
        }
        Ok(Self {
            imp: imp.ok_or("--impl NAME is required")?,
            addr,
            cpu,
            threads: threads.max(1),
            max_secs,
        })
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bench_server: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Before the runtime: its threads inherit the affinity.
    if let Some(cpu) = args.cpu
        && let Err(e) = pin_to_cpu(cpu)
    {
        eprintln!("bench_server: cannot pin to cpu {cpu}: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = raise_nofile_limit() {
        eprintln!("bench_server: cannot raise RLIMIT_NOFILE: {e}");
    }
    exit_when_stdin_closes();

    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_server: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = TcpListener::bind(args.addr).await?;
        // The harness reads this line.
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{}", listener.local_addr()?)?;
        stdout.flush()?;
        drop(stdout);
        match tokio::time::timeout(
            Duration::from_secs(args.max_secs),
            serve(args.imp, listener),
        )
        .await
        {
            Ok(result) => result,
            // The lifetime bound ran out: a normal end.
            Err(_elapsed) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ends the process when stdin reaches end of file: the harness holds the other end, so a
/// server never outlives it.
fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut sink = [0; 64];
        let mut stdin = io::stdin().lock();
        // Bounded: every read either returns data (the harness sends none) or ends the loop.
        for _ in 0..1024 {
            match stdin.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        std::process::exit(0);
    });
}

async fn serve(imp: Impl, listener: TcpListener) -> io::Result<()> {
    match imp {
        Impl::Floor => accept_loop(listener, floor_conn).await,
        Impl::TowerUpgrade => serve_tower_upgrade(listener).await,
        Impl::TowerUpgradeDeflate => {
            serve_axum(listener, deflate_server::tower_upgrade_app(false)).await
        }
        Impl::TowerUpgradeDeflateTakeover => {
            serve_axum(listener, deflate_server::tower_upgrade_app(true)).await
        }
        Impl::FloorDeflate => accept_loop(listener, deflate_server::floor_conn).await,
        Impl::YawcDeflate => accept_loop(listener, deflate_server::yawc_conn).await,
        Impl::TowerUpgradeHyper => {
            let layer = tower_upgrade_layer();
            accept_loop(listener, move |tcp| {
                tower_upgrade_hyper_conn(tcp, layer.clone())
            })
            .await
        }
        Impl::TowerUpgradeSplit | Impl::TowerUpgradeSplitTasks | Impl::TowerUpgradeBilockTasks => {
            let layer = split::layer(imp);
            accept_loop(listener, move |tcp| {
                tower_upgrade_hyper_conn(tcp, layer.clone())
            })
            .await
        }
        Impl::TowerUpgradeRaw => serve_axum(listener, tower_upgrade_raw_app()).await,
        Impl::TowerUpgradeRawHyper => {
            let layer = raw_layer();
            accept_loop(listener, move |tcp| {
                tower_upgrade_hyper_conn(tcp, layer.clone())
            })
            .await
        }
        Impl::Axum => serve_axum(listener, axum_app()).await,
        Impl::HyperTungstenite => accept_loop(listener, hyper_tungstenite_conn).await,
        Impl::Fastwebsockets => accept_loop(listener, fastwebsockets_conn).await,
        Impl::TokioWebsockets => accept_loop(listener, tokio_websockets_conn).await,
        Impl::PlainAxum => serve_axum(listener, hello_app()).await,
        Impl::LayeredAxum => serve_axum(listener, layered_app()).await,
        Impl::H2PriorKnowledge => {
            let app = layered_app();
            accept_loop(listener, move |tcp| auto_conn(tcp, app.clone())).await
        }
        Impl::H2c => serve_h2c(listener).await,
        Impl::Broadcast(kind) => broadcast_server::serve(kind, listener).await,
    }
}

/// Accepts connections and runs `conn` on each in a task of its own. Ends with the
/// server's lifetime (see `--max-secs`).
async fn accept_loop<F, Fut>(listener: TcpListener, conn: F) -> io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(conn(tcp));
            }
            // Out of file descriptors, or an aborted connection: back off a little, as
            // hyper-util and axum do.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

async fn serve_axum(listener: TcpListener, app: Router) -> io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

// ===== pass-through and HTTP/2 =====

fn hello_app() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

/// The bare router with the layer, as `benches/upgrade.rs` builds it: two protocols
/// registered, so every request goes through the classification.
fn layered_app() -> Router {
    let layer = UpgradeLayer::new()
        .protocol(handler_fn(
            "upper/1",
            |_io: UpgradedIo, _req: UpgradeRequest| async {},
        ))
        .and_then(|layer| {
            layer.protocol(handler_fn(
                "websocket",
                |_io: UpgradedIo, _req: UpgradeRequest| async {},
            ))
        })
        .expect("valid static tokens");
    hello_app().layer(layer)
}

/// HTTP/1.1 or HTTP/2 with prior knowledge, chosen by hyper-util from the first bytes.
async fn auto_conn(tcp: TcpStream, app: Router) {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
        .await;
}

// ===== h2c =====

/// `plain-axum`'s router with the layer around the whole of it (the h2c handler routes
/// every HTTP/2 request on an upgraded connection through it again), served as
/// `h2-prior-knowledge` is. Both impls then put exactly one [`UpgradeLayer`] on the path of
/// each request.
async fn serve_h2c(listener: TcpListener) -> io::Result<()> {
    use tower::Layer as _;

    let app = UpgradeLayer::new()
        .protocol(tower_upgrade::h2c::H2c::new())
        .map_err(io::Error::other)?
        .layer(hello_app());
    accept_loop(listener, move |tcp| {
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        async move {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                .await;
        }
    })
    .await
}

// ===== floor =====

/// The answer to every handshake: no validation, and the accept key of RFC 6455's sample
/// key (the harness's client does not check it).
const FIXED_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// The longest request head the floor reads.
const MAX_HEAD: usize = 8 * 1024;

async fn floor_conn(mut tcp: TcpStream) {
    let mut head = Vec::with_capacity(1024);
    let end = loop {
        if head.len() >= MAX_HEAD {
            return;
        }
        match tcp.read_buf(&mut head).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(at) = find(&head, b"\r\n\r\n") {
            break at + 4;
        }
    };
    if tcp.write_all(FIXED_101).await.is_err() {
        return;
    }
    // Frames the client sent right behind the request.
    let pending = head.split_off(end);
    drop(head);
    let _ = echo_frames(tcp, pending).await;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ===== raw frame echo (floor and tower-upgrade-raw) =====

/// How much one read may take when no frame is in progress.
const READ_CHUNK: usize = 64 * 1024;
/// The largest frame the echo accepts.
const MAX_FRAME: usize = 16 << 20;

/// Waits until a connection has bytes to read, without holding a buffer: an idle
/// connection then owns no read buffer at all.
trait WaitReadable {
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> + Send;
}

impl WaitReadable for TcpStream {
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.readable()
    }
}

impl WaitReadable for UpgradedIo {
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        let tcp = self.tcp_stream();
        async move {
            match tcp {
                Some(tcp) => tcp.readable().await,
                // Not a plain TCP connection: the read itself waits.
                None => Ok(()),
            }
        }
    }
}

/// A parsed client frame header.
struct FrameHead {
    /// FIN, RSV and opcode, as received.
    b0: u8,
    /// Header length, mask key included.
    len: usize,
    payload: usize,
    mask: [u8; 4],
}

/// Parses a masked client frame header from the start of `buf`; `None` if `buf` does not
/// hold the whole header yet.
fn parse_head(buf: &[u8]) -> io::Result<Option<FrameHead>> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    // RFC 6455 §5.1: a server MUST close the connection on an unmasked client frame.
    if b1 & 0x80 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unmasked client frame",
        ));
    }
    let (ext, payload) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (2, usize::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let n = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                (8, usize::try_from(n).unwrap_or(usize::MAX))
            }
            None => return Ok(None),
        },
        n => (0, usize::from(n)),
    };
    if payload > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let Some(mask) = buf.get(2 + ext..6 + ext) else {
        return Ok(None);
    };
    Ok(Some(FrameHead {
        b0,
        len: 6 + ext,
        payload,
        mask: mask.try_into().expect("4 bytes"),
    }))
}

/// The unmasked server header for a payload of `len` bytes, written at the end of `out`.
/// Returns how many bytes it takes: 2, 4 or 10, always 4 less than the client's header.
fn write_server_head(b0: u8, len: usize, out: &mut [u8]) -> usize {
    let n = out.len();
    if len < 126 {
        out[n - 2] = b0;
        out[n - 1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        out[n - 4] = b0;
        out[n - 3] = 126;
        out[n - 2..].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[n - 10] = b0;
        out[n - 9] = 127;
        out[n - 8..].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Echoes WebSocket frames: each client frame is unmasked in place, its header rewritten
/// in place (the server header is the client's without the 4-byte key), and the frame
/// written back with one write. Pings become pongs, pongs are dropped, a close frame is
/// answered with the same payload and ends the connection. No UTF-8 check, no message
/// assembly: this is the floor.
async fn echo_frames<S>(mut io: S, mut pending: Vec<u8>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + WaitReadable + Unpin,
{
    // Bounded by the connection: every turn reads at least one byte or returns.
    loop {
        if pending.is_empty() {
            // Idle: give the buffer back before waiting.
            pending = Vec::new();
            io.wait_readable().await?;
            pending.reserve(READ_CHUNK);
        }
        if io.read_buf(&mut pending).await? == 0 {
            return Ok(());
        }
        let mut at = 0;
        let mut closed = false;
        while let Some(head) = parse_head(&pending[at..])? {
            let start = at + head.len;
            let end = start + head.payload;
            if end > pending.len() {
                // The rest of this frame is on its way: make room for all of it.
                pending.reserve(end - pending.len());
                break;
            }
            apply_mask(&mut pending[start..end], head.mask);
            let b0 = match head.b0 & 0x0f {
                // Pong: nothing to answer.
                0xa => {
                    at = end;
                    continue;
                }
                // Ping: answer with a pong.
                0x9 => (head.b0 & 0xf0) | 0xa,
                0x8 => {
                    closed = true;
                    head.b0
                }
                _ => head.b0,
            };
            let n = write_server_head(b0, head.payload, &mut pending[at..start]);
            io.write_all(&pending[start - n..end]).await?;
            at = end;
            if closed {
                break;
            }
        }
        if closed {
            let _ = io.shutdown().await;
            return Ok(());
        }
        pending.drain(..at);
    }
}

// ===== tower-upgrade-raw =====

/// The GUID of RFC 6455 §1.3.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A WebSocket handshake on the core API alone: checks the version and the key, answers
/// with `Sec-WebSocket-Accept`, then runs the floor's frame echo on the [`UpgradedIo`].
///
/// It measures what the layer itself costs on top of hyper and axum, next to the floor.
struct RawWebSocket;

impl ProtocolHandler for RawWebSocket {
    type State = ();

    fn token(&self) -> &str {
        "websocket"
    }

    fn accept(&self, req: &request::Parts) -> Decision<()> {
        // RFC 6455 §4.2.1: version 13 and a key are required.
        if req
            .headers
            .get("sec-websocket-version")
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Rejection::new(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13")
                .into();
        }
        let Some(key) = req.headers.get("sec-websocket-key") else {
            return Rejection::new(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key").into();
        };
        Accepted::new(())
            .header(SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()))
            .into()
    }

    async fn serve(
        self: Arc<Self>,
        mut io: UpgradedIo,
        req: UpgradeRequest,
        (): (),
    ) -> Result<(), BoxError> {
        // The echo needs nothing from the request: do not keep it for the connection's life.
        drop(req);
        let pending = io.take_read_ahead().map(Vec::from).unwrap_or_default();
        echo_frames(io, pending).await?;
        Ok(())
    }
}

/// `base64(SHA-1(key ++ GUID))`, RFC 6455 §4.2.2.
fn accept_key(key: &[u8]) -> HeaderValue {
    use base64::Engine as _;
    use sha1::{Digest as _, Sha1};
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(WS_GUID);
    let accept = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    HeaderValue::try_from(accept).expect("base64 is a valid header value")
}

fn raw_layer() -> UpgradeLayer {
    UpgradeLayer::new()
        .protocol(RawWebSocket)
        .expect("valid static token")
        .require_upgrade()
}

fn tower_upgrade_raw_app() -> Router {
    Router::new().route("/ws", get(|| async { "upgrade only" }).layer(raw_layer()))
}

/// The layer on a plain hyper `http1` connection, the way the hyper-based peers are served.
async fn tower_upgrade_hyper_conn(tcp: TcpStream, layer: UpgradeLayer) {
    use tower::Layer as _;

    let inner = tower::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("upgrade only")))
    });
    let service = hyper_util::service::TowerToHyperService::new(layer.layer(inner));
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades()
        .await;
}

// ===== tower-upgrade (this crate's WebSocket handler) =====

/// This crate's `websocket` module, echoing, on the same router shape as the other axum
/// impls.
///
fn tower_upgrade_layer() -> UpgradeLayer {
    use tower_upgrade::websocket::{Message, WebSocket, WebSocketHandler};

    let echo = WebSocketHandler::new(|mut ws: WebSocket, req: UpgradeRequest| async move {
        drop(req);
        while let Some(msg) = ws.recv().await {
            // Pings are answered and close frames replied to by the socket itself.
            if let msg @ (Message::Text(_) | Message::Binary(_)) = msg? {
                ws.send(msg).await?;
            }
        }
        Ok::<_, tower_upgrade::websocket::Error>(())
    });
    UpgradeLayer::new()
        .protocol(echo)
        .expect("valid handler")
        .require_upgrade()
}

fn tower_upgrade_app() -> Router {
    let layer = tower_upgrade_layer();
    let tracker = layer.tracker().clone();
    Router::new()
        .route("/ws", get(|| async { "upgrade only" }).layer(layer))
        // For the soak test: the upgraded connections the layer counts.
        .route(
            "/stats",
            get(move || async move {
                let t = tracker.stats().totals;
                format!(
                    "live={} accepted={} completed={} failed={}\n",
                    t.live, t.accepted, t.completed, t.failed
                )
            }),
        )
}

async fn serve_tower_upgrade(listener: TcpListener) -> io::Result<()> {
    serve_axum(listener, tower_upgrade_app()).await
}

// ===== tower-upgrade, split =====

/// The same echo through the socket's halves: `tower-upgrade-split` in one task (what the
/// halves' lock costs over `tower-upgrade-hyper`), `tower-upgrade-split-tasks` with the
/// send half in a task of its own fed by a channel (how apps use it), and
/// `tower-upgrade-bilock-tasks` the same with `futures`' `StreamExt::split` of the socket.
mod split {
    use futures_util::{SinkExt, StreamExt};
    use tokio::sync::mpsc;
    use tower_upgrade::UpgradeLayer;
    use tower_upgrade::websocket::{Error, Message, WebSocket, WebSocketHandler};

    use super::Impl;

    pub(super) fn layer(imp: Impl) -> UpgradeLayer {
        let echo = WebSocketHandler::new(move |ws: WebSocket, _req| async move {
            match imp {
                Impl::TowerUpgradeSplit => {
                    let (mut tx, mut rx) = ws.split();
                    while let Some(msg) = rx.recv().await {
                        if let msg @ (Message::Text(_) | Message::Binary(_)) = msg? {
                            tx.send(msg).await?;
                        }
                    }
                    Ok(())
                }
                Impl::TowerUpgradeSplitTasks => {
                    let (tx, rx) = ws.split();
                    two_tasks(tx, rx).await
                }
                _ => {
                    let (tx, rx) = StreamExt::split(ws);
                    two_tasks(tx, rx).await
                }
            }
        });
        UpgradeLayer::new()
            .protocol(echo)
            .expect("valid handler")
            .require_upgrade()
    }

    async fn two_tasks<T, R>(mut tx: T, mut rx: R) -> Result<(), Error>
    where
        T: futures_util::Sink<Message, Error = Error> + Unpin + Send + 'static,
        R: futures_util::Stream<Item = Result<Message, Error>> + Unpin,
    {
        let (queue, mut queued) = mpsc::channel::<Message>(16);
        let writer = tokio::spawn(async move {
            while let Some(msg) = queued.recv().await {
                tx.send(msg).await?;
            }
            Ok::<_, Error>(())
        });
        while let Some(msg) = rx.next().await {
            if let msg @ (Message::Text(_) | Message::Binary(_)) = msg? {
                if queue.send(msg).await.is_err() {
                    break;
                }
            }
        }
        drop(queue);
        writer
            .await
            .map_err(|e| Error::from(std::io::Error::other(e)))?
    }
}

// ===== peers =====

fn axum_app() -> Router {
    use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};

    async fn echo(mut socket: WebSocket) {
        // tungstenite replies to a close frame on the next read, which then ends the stream.
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Text(_) | Message::Binary(_))
                && socket.send(msg).await.is_err()
            {
                break;
            }
        }
    }

    Router::new().route(
        "/ws",
        get(|ws: WebSocketUpgrade| async move { ws.on_upgrade(echo) }),
    )
}

async fn hyper_tungstenite_conn(tcp: TcpStream) {
    let service = service_fn(|mut req: Request<Incoming>| async move {
        if !hyper_tungstenite::is_upgrade_request(&req) {
            return Ok::<_, Infallible>(Response::new(Full::from("hello")));
        }
        let Ok((res, ws)) = hyper_tungstenite::upgrade(&mut req, None) else {
            let mut res = Response::new(Full::default());
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(res);
        };
        tokio::spawn(async move {
            let Ok(mut ws) = ws.await else { return };
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        Ok(res)
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades()
        .await;
}

async fn fastwebsockets_conn(tcp: TcpStream) {
    use fastwebsockets::{Frame, OpCode};

    let service = service_fn(|mut req: Request<Incoming>| async move {
        let Ok((res, fut)) = fastwebsockets::upgrade::upgrade(&mut req) else {
            let mut res = Response::new(Empty::<Bytes>::new());
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return Ok::<_, Infallible>(res);
        };
        tokio::spawn(async move {
            let Ok(mut ws) = fut.await else { return };
            // Both on by default; set here so the echo does not depend on defaults.
            ws.set_auto_close(true);
            ws.set_auto_pong(true);
            while let Ok(frame) = ws.read_frame().await {
                match frame.opcode {
                    OpCode::Close => break,
                    OpCode::Text | OpCode::Binary => {
                        // A frame as read keeps the client's mask key, and `write_frame`
                        // would send it with the mask bit set over the unmasked payload:
                        // echo it as a new, unmasked frame (RFC 6455 §5.1).
                        let frame = Frame::new(frame.fin, frame.opcode, None, frame.payload);
                        if ws.write_frame(frame).await.is_err() {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        });
        Ok(res)
    });
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades()
        .await;
}

async fn tokio_websockets_conn(tcp: TcpStream) {
    let Ok((_req, mut ws)) = tokio_websockets::ServerBuilder::new().accept(tcp).await else {
        return;
    };
    // Close frames are answered by the stream itself, which then ends.
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}
