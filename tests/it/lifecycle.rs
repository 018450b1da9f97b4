//! Lifecycle of upgraded connections over real TCP: counts, limits, shutdown, failures.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_upgrade::{UpgradeLayer, UpgradeRequest, UpgradedIo, handler_fn};

use crate::support::*;

/// `polite`: echoes bytes; says `bye\n` and ends when shutdown starts.
async fn polite(mut io: UpgradedIo, req: UpgradeRequest) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            () = req.shutdown().fired() => {
                io.write_all(b"bye\n").await?;
                return Ok(());
            }
            n = io.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                io.write_all(&buf[..n]).await?;
            }
        }
    }
}

/// `stubborn`: ignores shutdown and never ends by itself.
async fn stubborn(_io: UpgradedIo, _req: UpgradeRequest) {
    std::future::pending::<()>().await;
}

fn layer() -> UpgradeLayer {
    UpgradeLayer::new()
        .protocol(handler_fn("polite", polite))
        .unwrap()
        .protocol(handler_fn("stubborn", stubborn))
        .unwrap()
        .protocol(panics())
        .unwrap()
}

fn request(token: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: {token}\r\n\r\n")
        .into_bytes()
}

async fn upgrade(addr: std::net::SocketAddr, token: &str) -> TcpStream {
    let mut stream = send(addr, &request(token)).await;
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    stream
}

async fn echo_once(stream: &mut TcpStream) {
    stream.write_all(b"ping").await.unwrap();
    assert_eq!(read_exact(stream, 4).await, b"ping");
}

#[tokio::test]
async fn drain_tells_100_live_connections_and_waits_for_them() {
    let layer = layer();
    let tracker = layer.tracker().clone();
    let addr = spawn_axum(plain_app(layer)).await;
    let mut clients = Vec::new();
    for _ in 0..100 {
        let mut stream = upgrade(addr, "polite").await;
        echo_once(&mut stream).await;
        clients.push(stream);
    }
    assert_eq!(tracker.live(), 100);
    let stats = tracker.stats();
    assert_eq!(stats.protocol("polite").unwrap().live, 100);
    assert_eq!(stats.totals.accepted, 100);

    let report = tokio::time::timeout(
        Duration::from_secs(10),
        tracker.drain(Duration::from_secs(5)),
    )
    .await
    .expect("drain finished");
    assert_eq!(report.live_at_start, 100);
    assert_eq!(report.aborted, 0);
    assert!(report.elapsed < Duration::from_secs(5), "{report:?}");
    for stream in &mut clients {
        assert_eq!(read_exact(stream, 4).await, b"bye\n");
        assert!(read_to_end(stream).await.is_empty());
    }
    let stats = tracker.stats();
    assert_eq!(stats.totals.live, 0);
    assert_eq!(stats.totals.completed, 100);
    assert_eq!(stats.totals.failed, 0);

    // New upgrades are refused; plain requests are still served.
    let mut stream = send(addr, &request("polite")).await;
    let (head, body) = read_response(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert_eq!(header(&head, "retry-after"), Some("1"));
    assert_eq!(body, "server is shutting down\n");
    assert_eq!(tracker.stats().totals.rejected_shutting_down, 1);
    let mut stream = send(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(read_response(&mut stream).await.1, "plain");
}

#[tokio::test]
async fn handlers_that_ignore_shutdown_are_aborted_at_the_deadline() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let layer = layer().on_failed_upgrade(move |e| {
        let _ = tx.send(e.kind());
    });
    let tracker = layer.tracker().clone();
    let addr = spawn_axum(plain_app(layer)).await;
    let mut stubborn = upgrade(addr, "stubborn").await;
    let mut polite = upgrade(addr, "polite").await;
    echo_once(&mut polite).await;
    wait_live(&tracker, 2).await;

    let report = tracker.drain(Duration::from_millis(300)).await;
    assert_eq!(report.live_at_start, 2);
    assert_eq!(report.aborted, 1);
    assert!(report.elapsed >= Duration::from_millis(300), "{report:?}");
    assert!(report.elapsed < Duration::from_secs(3), "{report:?}");
    assert_eq!(tracker.live(), 0);
    assert_eq!(read_exact(&mut polite, 4).await, b"bye\n");
    // The aborted handler's connection is closed.
    assert!(read_to_end(&mut stubborn).await.is_empty());
    assert_eq!(
        rx.recv().await,
        Some(tower_upgrade::UpgradeErrorKind::Aborted)
    );
    let stats = tracker.stats();
    assert_eq!((stats.totals.completed, stats.totals.failed), (1, 1));
}

#[tokio::test]
async fn the_limit_refuses_upgrades_before_switching_and_frees_slots() {
    let layer = layer();
    let tracker = layer.tracker().clone();
    tracker.set_max_connections(Some(3));
    tracker.set_retry_after(Duration::from_secs(7));
    let addr = spawn_axum(plain_app(layer)).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(upgrade(addr, "polite").await);
    }
    let mut stream = send(addr, &request("polite")).await;
    let (head, body) = read_response(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    assert_eq!(header(&head, "retry-after"), Some("7"));
    assert_eq!(body, "too many upgraded connections\n");
    // Still HTTP/1.1 on that connection.
    send_get(&mut stream).await;
    assert_eq!(read_response(&mut stream).await.1, "plain");

    // One closes: a new one is admitted.
    drop(open.pop());
    wait_live(&tracker, 2).await;
    let mut stream = upgrade(addr, "polite").await;
    echo_once(&mut stream).await;
    let stats = tracker.stats();
    assert_eq!(stats.totals.rejected_at_limit, 1);
    assert_eq!(stats.totals.accepted, 4);
    assert_eq!(stats.totals.live, 3);
}

#[tokio::test]
async fn per_protocol_limits_apply_to_their_protocol_only() {
    let layer = layer();
    let tracker = layer.tracker().clone();
    tracker
        .set_protocol_max_connections("stubborn", Some(1))
        .unwrap();
    let addr = spawn_axum(plain_app(layer)).await;
    let _first = upgrade(addr, "stubborn").await;
    let mut stream = send(addr, &request("stubborn")).await;
    assert!(
        read_response(&mut stream)
            .await
            .0
            .starts_with("HTTP/1.1 503 ")
    );
    let mut polite = upgrade(addr, "polite").await;
    echo_once(&mut polite).await;
    let stats = tracker.stats();
    assert_eq!(stats.protocol("stubborn").unwrap().rejected_at_limit, 1);
    assert_eq!(stats.protocol("polite").unwrap().live, 1);
}

#[tokio::test]
async fn every_way_a_connection_ends_leaves_the_counters_right() {
    let layer = layer();
    let tracker = layer.tracker().clone();
    let addr = spawn_axum(plain_app(layer)).await;

    // A handler panic.
    let mut stream = upgrade(addr, "panics").await;
    assert!(read_to_end(&mut stream).await.is_empty());
    // A client that disconnects before reading the 101.
    drop(send(addr, &request("polite")).await);
    // A client that disconnects mid-stream, without a goodbye.
    let mut stream = upgrade(addr, "polite").await;
    echo_once(&mut stream).await;
    stream.write_all(b"half").await.unwrap();
    drop(stream);

    wait_live(&tracker, 0).await;
    eventually(|| {
        let t = tracker.stats().totals;
        t.completed + t.failed == 3
    })
    .await;
    let t = tracker.stats().totals;
    assert_eq!(t.attempts, 3);
    assert_eq!(t.accepted, 3);
    assert_eq!(t.failed, 1, "the panic: {t:?}");
    assert_eq!(t.completed + t.failed, 3, "{t:?}");
    assert_eq!(t.live, 0);
    // Nothing is left running: a drain with no time at all aborts nothing.
    let report = tracker.drain(Duration::ZERO).await;
    assert_eq!(report.aborted, 0, "{report:?}");
}

#[tokio::test]
async fn idle_connections_time_out() {
    let layer = layer().idle_timeout(Duration::from_millis(400));
    let tracker = layer.tracker().clone();
    let addr = spawn_axum(plain_app(layer)).await;
    let mut stream = upgrade(addr, "polite").await;
    // Traffic keeps it open past the timeout.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        echo_once(&mut stream).await;
    }
    // Silence closes it.
    assert!(read_to_end(&mut stream).await.is_empty());
    wait_live(&tracker, 0).await;
    assert_eq!(tracker.stats().totals.failed, 1);
}

/// A `tracing` writer that keeps what it is given.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// With `DEBUG` on, each upgraded connection has its span, with the protocol, the peer, the
/// outcome and the duration; with it off (the other tests), there is none to pay for.
#[tokio::test]
async fn the_connection_span_records_protocol_peer_and_outcome_at_debug() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test's runtime has one thread, so the server's tasks run under this default.
    let _guard = tracing::subscriber::set_default(subscriber);
    let layer = upper_layer();
    let tracker = layer.tracker().clone();
    let addr = spawn_axum(plain_app(layer)).await;
    let mut stream = upgrade(addr, "upper/1").await;
    let client = stream.local_addr().unwrap();
    stream.write_all(b"ping\n").await.unwrap();
    assert_eq!(read_exact(&mut stream, 5).await, b"PING\n");
    drop(stream);
    wait_live(&tracker, 0).await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let ended = log
        .lines()
        .find(|l| l.contains("upgraded connection ended"))
        .unwrap_or_else(|| panic!("no end of connection logged:\n{log}"));
    assert!(ended.contains("protocol=upper/1"), "{ended}");
    assert!(ended.contains(&format!("peer={client}")), "{ended}");
    assert!(ended.contains("outcome=\"completed\""), "{ended}");
    assert!(ended.contains("duration_ms="), "{ended}");
}
