//! The permessage-deflate servers of `load echo --deflate` and `load idle --deflate`:
//! this crate's handler with deflate on, yawc (a peer from the registry with server-side
//! permessage-deflate, on zlib-rs), and a floor that makes the same zlib-rs calls on each
//! payload as the crate (inflate, then compress with a sync flush) and nothing else.
//!
//! All three run without context takeover on either side, which the client asks for.

use std::cell::RefCell;
use std::convert::Infallible;
use std::io;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_upgrade::UpgradeLayer;
use tower_upgrade::websocket::{DeflateConfig, Message, WebSocket, WebSocketHandler};
use zlib_rs::{Deflate, DeflateFlush, Inflate, InflateFlush};

use tower_upgrade_bench::apply_mask;

/// This crate's handler, echoing, with permessage-deflate: the default mode, or context
/// takeover.
pub(crate) fn tower_upgrade_app(takeover: bool) -> Router {
    let config = if takeover {
        DeflateConfig::context_takeover()
    } else {
        DeflateConfig::new()
    };
    let echo = WebSocketHandler::new(|mut ws: WebSocket, _req| async move {
        while let Some(msg) = ws.recv().await {
            if let msg @ (Message::Text(_) | Message::Binary(_)) = msg? {
                ws.send(msg).await?;
            }
        }
        Ok::<_, tower_upgrade::websocket::Error>(())
    })
    .deflate(config);
    let layer = UpgradeLayer::new()
        .protocol(echo)
        .expect("valid handler")
        .require_upgrade();
    Router::new().route("/ws", get(|| async { "upgrade only" }).layer(layer))
}

/// yawc 0.5 on a plain hyper `http1` server, compression level 6 (as this crate's), no
/// context takeover on either side, its UTF-8 check on (as this crate always checks).
pub(crate) async fn yawc_conn(tcp: TcpStream) {
    use yawc::{CompressionLevel, Frame, OpCode, Options};

    let service = service_fn(|mut req: Request<Incoming>| async move {
        let options = Options::default()
            .with_compression_level(CompressionLevel::new(6))
            .server_no_context_takeover()
            .client_no_context_takeover()
            .with_utf8();
        let Ok((res, fut)) = yawc::WebSocket::upgrade_with_options(&mut req, options) else {
            let mut res = Response::new(Empty::<Bytes>::new());
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return Ok::<_, Infallible>(res);
        };
        tokio::spawn(async move {
            let Ok(mut ws) = fut.await else { return };
            while let Some(frame) = ws.next().await {
                let (opcode, _fin, payload) = frame.into_parts();
                let frame = match opcode {
                    OpCode::Text => Frame::text(payload),
                    OpCode::Binary => Frame::binary(payload),
                    OpCode::Close => break,
                    _ => continue,
                };
                if ws.send(frame).await.is_err() {
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

const FIXED_101: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n";

/// RFC 7692 §7.2.1: the end of a sync flush.
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

thread_local! {
    /// One compressor and one inflater for the whole (current-thread) server, reset after
    /// each message: no pool, no lock.
    static ZLIB: RefCell<(Deflate, Inflate)> = RefCell::new((
        Deflate::new(6, false, 15),
        Inflate::new(false, 15),
    ));
}

/// The floor: a fixed `101` that accepts deflate, then for each message the inflate and
/// compress calls the crate makes, and one write. No validation, no fragments.
pub(crate) async fn floor_conn(mut tcp: TcpStream) {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        match tcp.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    if tcp.write_all(FIXED_101).await.is_err() {
        return;
    }
    let mut pending = buf.split_off(end);
    drop(buf);
    loop {
        while let Some((b0, start, len, mask)) = head(&pending) {
            if pending.len() < start + len {
                break;
            }
            let mut payload: Vec<u8> = pending.drain(..start + len).skip(start).collect();
            apply_mask(&mut payload, mask);
            let opcode = b0 & 0x0f;
            let (b0, out) = match opcode {
                0x1 | 0x2 => {
                    let message = if b0 & 0x40 != 0 {
                        inflate(&payload)
                    } else {
                        payload
                    };
                    if message.len() >= 64 {
                        (0xC0 | opcode, compress(&message))
                    } else {
                        (0x80 | opcode, message)
                    }
                }
                0x9 => (0x8A, payload),
                0x8 => {
                    let _ = write_frame(&mut tcp, 0x88, &payload).await;
                    return;
                }
                _ => continue,
            };
            if write_frame(&mut tcp, b0, &out).await.is_err() {
                return;
            }
        }
        if pending.is_empty() {
            pending = Vec::new();
            if tcp.readable().await.is_err() {
                return;
            }
        }
        pending.reserve(16 * 1024);
        match tcp.read_buf(&mut pending).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A client frame head: (b0, payload start, payload length, mask).
fn head(buf: &[u8]) -> Option<(u8, usize, usize, [u8; 4])> {
    let [b0, b1, ..] = *buf else { return None };
    let (at, len) = match b1 & 0x7f {
        126 => (
            4,
            usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
        ),
        127 => (
            10,
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, usize::from(n)),
    };
    let mask = buf.get(at..at + 4)?.try_into().ok()?;
    Some((b0, at + 4, len, mask))
}

async fn write_frame(tcp: &mut TcpStream, b0: u8, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(b0);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= 0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    tcp.write_all(&frame).await
}

/// The crate's inflate calls: the payload and the tail, into zeroed room that grows.
fn inflate(payload: &[u8]) -> Vec<u8> {
    ZLIB.with_borrow_mut(|(_, inflater)| {
        let mut out = Vec::new();
        for mut input in [payload, &TAIL[..]] {
            loop {
                let chunk = (input.len() * 4).clamp(1024, 64 * 1024);
                let start = out.len();
                out.resize(start + chunk, 0);
                let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
                let _ = inflater.decompress(input, &mut out[start..], InflateFlush::NoFlush);
                let produced = (inflater.total_out() - before_out) as usize;
                input = &input[(inflater.total_in() - before_in) as usize..];
                out.truncate(start + produced);
                if (input.is_empty() && produced < chunk) || produced == 0 {
                    break;
                }
            }
        }
        inflater.reset(false);
        out
    })
}

/// The crate's compress call: one sync flush into zeroed room, the tail taken off.
fn compress(message: &[u8]) -> Vec<u8> {
    ZLIB.with_borrow_mut(|(compressor, _)| {
        let mut out = vec![0u8; message.len() + message.len() / 1000 * 5 + 64];
        let before = compressor.total_out();
        let _ = compressor.compress(message, &mut out, DeflateFlush::SyncFlush);
        out.truncate((compressor.total_out() - before) as usize);
        compressor.reset();
        out.truncate(out.len() - TAIL.len());
        out
    })
}
