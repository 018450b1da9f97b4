//! permessage-deflate (RFC 7692) over real TCP: the negotiation answered to raw requests,
//! and compressed frames written and read by a small client here, with flate2 (zlib-rs)
//! as its compressor (tokio-tungstenite has no deflate). Also the strict UTF-8 check of a
//! text frame that has only partly arrived.

use std::net::SocketAddr;

use axum::{Router, routing::any};
use flate2::{Compress, Compression, FlushCompress};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower_upgrade::UpgradeLayer;
use tower_upgrade::websocket::{DeflateConfig, WebSocketHandler};

use crate::support::{header, inflate, read_frame, read_head, send, spawn_axum, within, ws_echo};

const MAX_MESSAGE: usize = 1 << 20;

async fn spawn(config: Option<DeflateConfig>) -> SocketAddr {
    let mut handler = WebSocketHandler::new(|ws, _req| ws_echo(ws)).max_message_size(MAX_MESSAGE);
    if let Some(config) = config {
        handler = handler.deflate(config);
    }
    let layer = UpgradeLayer::new()
        .protocol(handler)
        .unwrap()
        .require_upgrade();
    spawn_axum(Router::new().route("/ws", any(|| async { "" }).layer(layer))).await
}

fn upgrade(extensions: &[&str]) -> Vec<u8> {
    let mut req = String::from(
        "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    for line in extensions {
        req.push_str(&format!("Sec-WebSocket-Extensions: {line}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// Opens a WebSocket offering `extensions`; returns the stream and the answer's
/// `Sec-WebSocket-Extensions`, if any.
async fn open(addr: SocketAddr, extensions: &[&str]) -> (TcpStream, Option<String>) {
    let mut stream = send(addr, &upgrade(extensions)).await;
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    let answer = header(&head, "sec-websocket-extensions").map(str::to_owned);
    (stream, answer)
}

/// A masked client frame.
fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Raw deflate with a sync flush, its `00 00 ff ff` taken off (RFC 7692 §7.2.1).
fn compress(c: &mut Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let start = c.total_in();
    loop {
        out.reserve(data.len() / 2 + 64);
        let consumed = (c.total_in() - start) as usize;
        c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        if (c.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Reads frames up to the server's close frame; returns its status code.
async fn close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let (b0, payload) = read_frame(stream).await;
        if b0 & 0x0f == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

/// The next data message, inflated if RSV1 is set: (opcode, payload).
async fn read_message(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let (b0, payload) = read_frame(stream).await;
    assert_eq!(b0 & 0x80, 0x80, "the server sends one frame per message");
    assert_eq!(b0 & 0x30, 0, "RSV2 and RSV3 are never set");
    if b0 & 0x40 != 0 {
        (b0 & 0x0f, inflate(&payload))
    } else {
        (b0 & 0x0f, payload)
    }
}

fn json(size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < size {
        out.extend_from_slice(
            format!(
                r#"{{"id":{i},"user":"user{}","text":"hello world","ok":true}},"#,
                i % 7
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(size);
    out
}

#[tokio::test]
async fn negotiates_every_parameter_and_declines_bad_offers() {
    let addr = spawn(Some(DeflateConfig::new())).await;
    let default = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    for (offers, want) in [
        (&["permessage-deflate"][..], Some(default.to_owned())),
        (
            &["permessage-deflate; client_max_window_bits"],
            Some(default.to_owned()),
        ),
        (
            &["permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"],
            Some(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; \
                 client_no_context_takeover"
                    .to_owned(),
            ),
        ),
        (
            &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
            Some(default.to_owned()),
        ),
        // Several offers on several lines, quoted values: the first acceptable one.
        (
            &[
                "x-webkit-deflate-frame, permessage-deflate; bogus",
                "permessage-deflate; server_max_window_bits=\"8\", permessage-deflate",
            ],
            Some(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=8; \
                 client_no_context_takeover"
                    .to_owned(),
            ),
        ),
        // Declined: unknown, repeated, invalid; the handshake still succeeds.
        (&["permessage-deflate; foo"], None),
        (
            &["permessage-deflate; client_no_context_takeover; client_no_context_takeover"],
            None,
        ),
        (&["permessage-deflate; server_max_window_bits=16"], None),
        (&["permessage-deflate; server_max_window_bits"], None),
        (&["permessage-deflate; client_max_window_bits=07"], None),
    ] {
        let (_, answer) = open(addr, offers).await;
        assert_eq!(answer, want, "{offers:?}");
    }
    // Without `deflate` on the handler, offers are declined.
    let addr = spawn(None).await;
    let (_, answer) = open(addr, &["permessage-deflate"]).await;
    assert_eq!(answer, None);
}

#[tokio::test]
async fn context_takeover_mode_answers_bounded_windows() {
    let addr = spawn(Some(DeflateConfig::context_takeover())).await;
    let (mut stream, answer) = open(addr, &["permessage-deflate; client_max_window_bits"]).await;
    assert_eq!(
        answer.as_deref(),
        Some("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12")
    );
    // Both sides keep their context: the same message twice compresses far better the
    // second time, and the server inflates ours with its kept window.
    let msg = json(2000);
    let mut c = Compress::new_with_window_bits(Compression::default(), false, 12);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        stream
            .write_all(&frame(true, true, 0x1, &compress(&mut c, &msg)))
            .await
            .unwrap();
        let (b0, payload) = read_frame(&mut stream).await;
        assert_eq!(b0, 0xC1, "compressed text");
        sizes.push(payload.len());
    }
    assert!(sizes[1] < sizes[0] / 4, "{sizes:?}");
}

#[tokio::test]
async fn echoes_compressed_fragmented_messages_interleaved_with_pings() {
    let addr = spawn(Some(DeflateConfig::new())).await;
    let (mut stream, answer) = open(addr, &["permessage-deflate"]).await;
    assert!(answer.is_some());
    let mut c = Compress::new(Compression::default(), false);
    // One frame.
    let msg = json(16 * 1024);
    stream
        .write_all(&frame(true, true, 0x1, &compress(&mut c, &msg)))
        .await
        .unwrap();
    let (opcode, echo) = read_message(&mut stream).await;
    assert_eq!((opcode, echo.len()), (0x1, msg.len()));
    assert_eq!(echo, msg);
    // Three frames, RSV1 on the first only, with a ping between them; binary.
    c.reset();
    let msg = json(40_000);
    let compressed = compress(&mut c, &msg);
    let (a, rest) = compressed.split_at(compressed.len() / 3);
    let (b, d) = rest.split_at(rest.len() / 2);
    let mut bytes = frame(false, true, 0x2, a);
    bytes.extend(frame(true, false, 0x9, b"ping"));
    bytes.extend(frame(false, false, 0x0, b));
    bytes.extend(frame(true, false, 0x9, b"ping2"));
    bytes.extend(frame(true, false, 0x0, d));
    stream.write_all(&bytes).await.unwrap();
    assert_eq!(read_frame(&mut stream).await, (0x8A, b"ping".to_vec()));
    assert_eq!(read_frame(&mut stream).await, (0x8A, b"ping2".to_vec()));
    let (opcode, echo) = read_message(&mut stream).await;
    assert_eq!(opcode, 0x2);
    assert_eq!(echo, msg);
    // Uncompressed messages still pass; a small one comes back uncompressed.
    stream
        .write_all(&frame(true, false, 0x1, b"hi"))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut stream).await, (0x81, b"hi".to_vec()));
    // An empty compressed message, as the single byte 00 and as nothing.
    for empty in [&[0u8][..], &[]] {
        stream
            .write_all(&frame(true, true, 0x1, empty))
            .await
            .unwrap();
        assert_eq!(read_frame(&mut stream).await, (0x81, Vec::new()));
    }
    // The closing handshake after compressed messages.
    stream
        .write_all(&frame(true, false, 0x8, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut stream).await, 1000);
}

#[tokio::test]
async fn rsv1_where_deflate_does_not_allow_it_closes_with_1002() {
    let with = spawn(Some(DeflateConfig::new())).await;
    let without = spawn(None).await;
    let mut c = Compress::new(Compression::default(), false);
    let compressed = compress(&mut c, b"hello");
    let cases: [(SocketAddr, Vec<u8>); 5] = [
        // Not negotiated: RSV1 on a data frame.
        (without, frame(true, true, 0x1, &compressed)),
        // Negotiated, but on a control frame: a compressed close, a ping.
        (with, frame(true, true, 0x8, &1000u16.to_be_bytes())),
        (with, frame(true, true, 0x9, b"")),
        // On a continuation frame.
        (with, {
            let mut b = frame(false, true, 0x1, &compressed);
            b.extend(frame(true, true, 0x0, &[0]));
            b
        }),
        // RSV2.
        (with, {
            let mut b = frame(true, false, 0x1, b"x");
            b[0] |= 0x20;
            b
        }),
    ];
    for (addr, bytes) in cases {
        let (mut stream, _) = open(addr, &["permessage-deflate"]).await;
        stream.write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut stream).await, 1002, "{bytes:02x?}");
    }
}

#[tokio::test]
async fn a_decompression_bomb_closes_with_1009() {
    let addr = spawn(Some(DeflateConfig::new())).await;
    let (mut stream, _) = open(addr, &["permessage-deflate"]).await;
    // 1 GiB of zeros compresses to about 1 MiB; the server stops at MAX_MESSAGE (1 MiB).
    let mut c = Compress::new(Compression::default(), false);
    let zeros = vec![0u8; 1 << 20];
    let mut bomb = Vec::new();
    for _ in 0..1024 {
        let start = c.total_in();
        while ((c.total_in() - start) as usize) < zeros.len() {
            bomb.reserve(64 << 10);
            let consumed = (c.total_in() - start) as usize;
            c.compress_vec(&zeros[consumed..], &mut bomb, FlushCompress::None)
                .unwrap();
        }
    }
    bomb.extend(compress(&mut c, b""));
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    stream
        .write_all(&frame(true, true, 0x2, &bomb))
        .await
        .unwrap();
    assert_eq!(close_code(&mut stream).await, 1009);
}

#[tokio::test]
async fn invalid_utf8_fails_before_the_frame_is_whole() {
    for deflate in [false, true] {
        let addr = spawn(deflate.then(DeflateConfig::new)).await;
        let (mut stream, _) = open(addr, &["permessage-deflate"]).await;
        if deflate {
            // Compressed: found while inflating the frame.
            let mut text = json(100_000);
            text[50_000] = 0xff;
            let mut c = Compress::new(Compression::default(), false);
            let bytes = frame(true, true, 0x1, &compress(&mut c, &text));
            stream.write_all(&bytes).await.unwrap();
        } else {
            // A text frame of 1000 bytes of which only the first 10 arrive, the 6th invalid:
            // the server closes without waiting for the other 990.
            let mut text = vec![b'a'; 1000];
            text[5] = 0xC0;
            let bytes = frame(true, false, 0x1, &text);
            stream.write_all(&bytes[..8 + 10]).await.unwrap();
        }
        assert_eq!(close_code(&mut stream).await, 1007, "deflate: {deflate}");
    }
}

/// RFC 8441: the same negotiation over an HTTP/2 extended CONNECT, and a compressed echo on
/// the stream.
#[tokio::test]
async fn negotiates_and_compresses_over_http2() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = WebSocketHandler::new(|ws, _req| ws_echo(ws)).deflate(DeflateConfig::new());
    let app = Router::new().route(
        "/ws",
        any(|| async { "" }).layer(UpgradeLayer::new().protocol(handler).unwrap()),
    );
    tokio::spawn(async move {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http2().enable_connect_protocol();
        let (stream, _) = listener.accept().await.unwrap();
        let _ = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(app))
            .await;
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::Builder::new()
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = within(client.ready()).await.unwrap();
    for _ in 0..50 {
        if client.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        client = client.ready().await.unwrap();
    }
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .version(http::Version::HTTP_2)
        .uri(format!("http://{addr}/ws"))
        .extension(h2::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-extensions",
            "permessage-deflate; client_max_window_bits",
        )
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    let response = within(response).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(
        response.headers()["sec-websocket-extensions"],
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    let mut body = response.into_body();
    let msg = json(4000);
    let mut c = Compress::new(Compression::default(), false);
    send.send_data(
        frame(true, true, 0x1, &compress(&mut c, &msg)).into(),
        false,
    )
    .unwrap();
    let mut got = Vec::new();
    let (b0, payload) = loop {
        let chunk = within(body.data()).await.unwrap().unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
        let len = match got.get(1).map(|b| b & 0x7f) {
            Some(126) if got.len() >= 4 => {
                Some((4, usize::from(u16::from_be_bytes([got[2], got[3]]))))
            }
            Some(n) if n < 126 => Some((2, usize::from(n))),
            _ => None,
        };
        if let Some((head, len)) = len {
            if got.len() >= head + len {
                break (got[0], got[head..head + len].to_vec());
            }
        }
    };
    assert_eq!(b0, 0xC1, "compressed text");
    assert_eq!(inflate(&payload), msg);
}
