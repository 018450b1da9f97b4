//! Hostile and malformed upgrade requests over raw TCP: each case has the status it must get
//! and the state the connection must be in afterwards. After the suite the server still
//! serves and no upgraded connection is left counted.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;

/// What the connection is after the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Still HTTP/1.1: a following `GET /` is answered.
    KeepAlive,
    /// Closed by the server.
    Closed,
    /// Switched to `upper/1`: a line comes back uppercased.
    Upgraded,
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    /// The status line's code.
    status: u16,
    after: After,
}

fn case(name: &'static str, request: impl Into<Vec<u8>>, status: u16, after: After) -> Case {
    Case {
        name,
        request: request.into(),
        status,
        after,
    }
}

/// A GET / upgrade request with extra header lines.
fn up(headers: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes()
}

fn cases() -> Vec<Case> {
    use After::*;
    let many = |n: usize, item: &str| vec![item; n].join(",");
    let lines = |n: usize, line: &str| (0..n).map(|_| format!("{line}\r\n")).collect::<String>();
    vec![
        // The baseline.
        case("plain upgrade", up("Connection: upgrade\r\nUpgrade: upper/1\r\n"), 101, Upgraded),
        case("mixed case", up("Connection: UPGRADE\r\nUpgrade: UPPER/1\r\n"), 101, Upgraded),
        case("keep-alive, Upgrade", up("Connection: keep-alive, Upgrade\r\nUpgrade: upper/1\r\n"), 101, Upgraded),
        case("split Connection lines", up("Connection: keep-alive\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n"), 101, Upgraded),
        case("split Upgrade lines", up("Connection: upgrade\r\nUpgrade: foo\r\nUpgrade: upper/1\r\n"), 101, Upgraded),
        case("empty elements", up("Connection: ,,upgrade,,\r\nUpgrade: ,, ,upper/1,\r\n"), 101, Upgraded),
        case("64 elements, match last", up(&format!("Connection: upgrade\r\nUpgrade: {},upper/1\r\n", many(63, "x"))), 101, Upgraded),
        // Not upgrade requests: served as usual.
        case("Upgrade without Connection", up("Upgrade: upper/1\r\n"), 200, KeepAlive),
        case("Connection without Upgrade", up("Connection: upgrade\r\n"), 200, KeepAlive),
        case("empty Upgrade", up("Connection: upgrade\r\nUpgrade:\r\n"), 200, KeepAlive),
        case("only commas", up("Connection: upgrade\r\nUpgrade: ,,,\r\n"), 200, KeepAlive),
        case("Connection option with parameters", up("Connection: upgrade;q=1\r\nUpgrade: upper/1\r\n"), 200, KeepAlive),
        case("upgrade past 64 Connection elements", up(&format!("Connection: {},upgrade\r\nUpgrade: upper/1\r\n", many(64, "a"))), 200, KeepAlive),
        case("8 KiB Connection value", up(&format!("Connection: {}\r\nUpgrade: upper/1\r\n", many(4096, "a"))), 200, KeepAlive),
        case("Connection: close, upgrade", up("Connection: close, upgrade\r\nUpgrade: upper/1\r\n"), 200, Closed),
        case("unregistered protocol", up("Connection: upgrade\r\nUpgrade: websocket\r\n"), 200, KeepAlive),
        case("h2 (TLS only)", up("Connection: upgrade\r\nUpgrade: h2\r\n"), 200, KeepAlive),
        case("wrong version", up("Connection: upgrade\r\nUpgrade: upper/2\r\n"), 200, KeepAlive),
        case("no version", up("Connection: upgrade\r\nUpgrade: upper\r\n"), 200, KeepAlive),
        case("8000-character token", up(&format!("Connection: upgrade\r\nUpgrade: {}\r\n", "t".repeat(8000))), 200, KeepAlive),
        case("HTTP/1.0", b"GET / HTTP/1.0\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\n".to_vec(), 200, Closed),
        case("HTTP/1.0 keep-alive", b"GET / HTTP/1.0\r\nHost: x\r\nConnection: upgrade, keep-alive\r\nUpgrade: upper/1\r\n\r\n".to_vec(), 200, KeepAlive),
        // Invalid `Upgrade` lists: 400, the connection stays usable.
        case("name/", up("Connection: upgrade\r\nUpgrade: upper/\r\n"), 400, KeepAlive),
        case("/version", up("Connection: upgrade\r\nUpgrade: /1\r\n"), 400, KeepAlive),
        case("two slashes", up("Connection: upgrade\r\nUpgrade: upper/1/1\r\n"), 400, KeepAlive),
        case("inner space", up("Connection: upgrade\r\nUpgrade: up per\r\n"), 400, KeepAlive),
        case("quoted", up("Connection: upgrade\r\nUpgrade: \"upper/1\"\r\n"), 400, KeepAlive),
        case("parameters", up("Connection: upgrade\r\nUpgrade: upper/1;q=1\r\n"), 400, KeepAlive),
        case("parens", up("Connection: upgrade\r\nUpgrade: (upper)\r\n"), 400, KeepAlive),
        case("UTF-8", up("Connection: upgrade\r\nUpgrade: ünïcode\r\n"), 400, KeepAlive),
        case("invalid after a match", up("Connection: upgrade\r\nUpgrade: upper/1, bad token\r\n"), 400, KeepAlive),
        case("65 elements", up(&format!("Connection: upgrade\r\nUpgrade: {}\r\n", many(65, "x"))), 400, KeepAlive),
        case("hundreds of elements", up(&format!("Connection: upgrade\r\nUpgrade: {}\r\n", many(500, "upper/1"))), 400, KeepAlive),
        case("64 commas then a match", up(&format!("Connection: upgrade\r\nUpgrade: {}upper/1\r\n", ",".repeat(64))), 400, KeepAlive),
        case("90 Upgrade lines", up(&format!("Connection: upgrade\r\n{}", lines(90, "Upgrade: x"))), 400, KeepAlive),
        // What hyper refuses before the layer sees it: 4xx and close.
        case("control character", up("Connection: upgrade\r\nUpgrade: up\x01per\r\n"), 400, Closed),
        case("NUL byte", up("Connection: upgrade\r\nUpgrade: up\0per\r\n"), 400, Closed),
        case("obs-fold", up("Connection: upgrade\r\nUpgrade: foo,\r\n upper/1\r\n"), 400, Closed),
        case("150 header lines", up(&format!("Connection: upgrade\r\nUpgrade: upper/1\r\n{}", lines(150, "X-Pad: 1"))), 431, Closed),
        case("500 KiB header", up(&format!("Connection: upgrade\r\nUpgrade: upper/1\r\nX-Big: {}\r\n", "b".repeat(500 * 1024))), 431, Closed),
        case("bad Content-Length", up("Connection: upgrade\r\nUpgrade: upper/1\r\nContent-Length: abc\r\n"), 400, Closed),
        // Bodies and expectations.
        case("body the handler did not ask for", [up("Connection: upgrade\r\nUpgrade: upper/1\r\nContent-Length: 4\r\n"), b"body".to_vec()].concat(), 200, KeepAlive),
        case("chunked body the handler did not ask for", [up("Connection: upgrade\r\nUpgrade: upper/1\r\nTransfer-Encoding: chunked\r\n"), b"4\r\nbody\r\n0\r\n\r\n".to_vec()].concat(), 200, KeepAlive),
        case("POST upgrade with a body to an echo route", [b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper/1\r\nContent-Length: 3\r\n\r\nabc".to_vec()].concat(), 200, KeepAlive),
        case("Expect without a body", up("Connection: upgrade\r\nUpgrade: upper/1\r\nExpect: 100-continue\r\n"), 101, Upgraded),
        case("Content-Length: 0", up("Connection: upgrade\r\nUpgrade: upper/1\r\nContent-Length: 0\r\n"), 101, Upgraded),
        // Methods and targets: a custom protocol takes any.
        case("POST without body", b"POST /x?y HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\n".to_vec(), 101, Upgraded),
        case("OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\n".to_vec(), 101, Upgraded),
        // RFC 9112 §3.2: exactly one valid Host, or 400.
        case("no Host", b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\n".to_vec(), 400, KeepAlive),
        case("two Host lines", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\n".to_vec(), 400, KeepAlive),
        case("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\n".to_vec(), 400, KeepAlive),
        case("Host not an authority", b"GET / HTTP/1.1\r\nHost: a b\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\n".to_vec(), 400, KeepAlive),
        case("Host with a port", b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\n".to_vec(), 101, Upgraded),
        case("empty Host", b"GET / HTTP/1.1\r\nHost: \r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\n".to_vec(), 101, Upgraded),
    ]
}

async fn check(addr: SocketAddr, case: &Case, split: bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    if split {
        // The same request, one byte per write.
        stream.set_nodelay(true).unwrap();
        for byte in &case.request {
            stream.write_all(std::slice::from_ref(byte)).await.unwrap();
        }
    } else {
        stream.write_all(&case.request).await.unwrap();
    }
    let (status, head) = if case.status == 101 {
        let head = read_head(&mut stream).await;
        (101, head)
    } else {
        status_of(&mut stream).await
    };
    assert_eq!(status, case.status, "{}: {head}", case.name);
    match case.after {
        After::Upgraded => {
            stream.write_all(b"quiet\n").await.unwrap();
            assert_eq!(
                read_exact(&mut stream, 6).await,
                b"QUIET\n",
                "{}",
                case.name
            );
        }
        After::KeepAlive => {
            send_get(&mut stream).await;
            let (status, head) = status_of(&mut stream).await;
            assert_eq!(status, 200, "{}: follow-up {head}", case.name);
        }
        After::Closed => {
            let rest = read_to_end(&mut stream).await;
            assert!(
                rest.is_empty(),
                "{}: {:?}",
                case.name,
                String::from_utf8_lossy(&rest)
            );
        }
    }
}

#[tokio::test]
async fn hostile_requests_get_clear_answers() {
    let layer = upper_layer();
    let tracker = layer.tracker().clone();
    let cases = cases();
    assert!(cases.len() >= 45, "{} cases", cases.len());
    for addr in [
        spawn_axum(plain_app(layer.clone())).await,
        spawn_hyper(plain_app(layer), true).await,
    ] {
        for case in &cases {
            check(addr, case, false).await;
        }
        // The server still serves.
        let mut stream = send(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(read_response(&mut stream).await.1, "plain");
    }
    wait_live(&tracker, 0).await;
    let totals = tracker.stats().totals;
    assert_eq!(totals.live, 0);
    assert_eq!(
        totals.accepted,
        totals.completed + totals.failed,
        "{totals:?}"
    );
}

#[tokio::test]
async fn requests_split_into_single_bytes_get_the_same_answers() {
    let layer = upper_layer();
    let tracker = layer.tracker().clone();
    let addr = spawn_axum(plain_app(layer)).await;
    // The big ones would take a while byte by byte; their handling does not depend on it.
    for case in cases().iter().filter(|c| c.request.len() < 4096) {
        check(addr, case, true).await;
    }
    wait_live(&tracker, 0).await;
}

#[tokio::test]
async fn pipelined_requests_around_upgrades() {
    let addr = spawn_axum(plain_app(upper_layer())).await;
    // A plain request, then an upgrade, in one write: 200, then 101, then the new protocol.
    let mut stream = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: upper/1\r\n\r\nafter\n",
    )
    .await;
    assert_eq!(status_of(&mut stream).await.0, 200);
    assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 101 "));
    assert_eq!(read_exact(&mut stream, 6).await, b"AFTER\n");
    // A refused upgrade (400), then a plain request: both answered in order.
    let mut stream = send(
        addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: a b\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&mut stream).await.0, 400);
    assert_eq!(status_of(&mut stream).await.0, 200);
}

#[tokio::test]
async fn clients_that_vanish_leave_nothing_behind() {
    let layer = upper_layer();
    let tracker = layer.tracker().clone();
    let addr = spawn_axum(plain_app(layer)).await;
    let request = up("Connection: upgrade\r\nUpgrade: upper/1\r\n");
    for cut in [1, 10, request.len() - 2, request.len()] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&request[..cut]).await.unwrap();
        drop(stream);
    }
    // Mid-stream, after the switch: half a line, then gone.
    let mut stream = send(addr, &request).await;
    read_head(&mut stream).await;
    stream.write_all(b"half a li").await.unwrap();
    drop(stream);
    wait_live(&tracker, 0).await;
    let mut stream = send(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(read_response(&mut stream).await.1, "plain");
}
