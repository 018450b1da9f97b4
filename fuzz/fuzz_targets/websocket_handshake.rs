//! Fuzzes the WebSocket handshake validation (RFC 6455 §4.2.1, §4.2.2) through the public
//! `ProtocolHandler::accept`: it never panics, rejections are one of the documented
//! statuses with a reason, and an accepted handshake has exactly one valid key, version 13,
//! the right `Sec-WebSocket-Accept` (computed here independently) and, if any, a
//! subprotocol the client offered.
//!
//! Input: `method\nname: value\n...`, one header line per input line.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};
use tower_upgrade::websocket::{WebSocket, WebSocketHandler};
use tower_upgrade::{Decision, ProtocolHandler, UpgradeRequest};

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let method = lines.next().unwrap_or(b"GET");
    let mut builder = http::Request::builder().method(method).uri("/ws").header("host", "x");
    for line in lines {
        if let Some(i) = line.iter().position(|&b| b == b':') {
            builder = builder.header(&line[..i], line[i + 1..].trim_ascii());
        }
    }
    let Ok(req) = builder.body(()) else { return };
    let (parts, ()) = req.into_parts();
    let handler = WebSocketHandler::new(|_ws: WebSocket, _req: UpgradeRequest| async {})
        .protocols(["chat", "v2.chat"])
        .unwrap();
    match handler.accept(&parts) {
        Decision::Accept(accepted) => {
            assert_eq!(parts.method, http::Method::GET);
            let keys: Vec<_> = parts.headers.get_all("sec-websocket-key").iter().collect();
            assert_eq!(keys.len(), 1);
            let decoded = base64::engine::general_purpose::STANDARD.decode(keys[0].as_bytes()).unwrap();
            assert_eq!(decoded.len(), 16);
            let versions: Vec<_> = parts.headers.get_all("sec-websocket-version").iter().collect();
            assert_eq!(versions.len(), 1);
            assert_eq!(versions[0].as_bytes().trim_ascii(), b"13");
            let mut sha = Sha1::new();
            sha.update(keys[0].as_bytes());
            sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
            let expected = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
            let headers = accepted_headers(accepted);
            assert_eq!(headers.get("sec-websocket-accept").unwrap(), expected.as_str());
            assert!(headers.get("sec-websocket-extensions").is_none(), "no extension is ever accepted");
            if let Some(p) = headers.get("sec-websocket-protocol") {
                let offered = parts.headers.get_all("sec-websocket-protocol").iter().any(|v| {
                    v.to_str().unwrap_or("").split(',').any(|o| o.trim().as_bytes() == p.as_bytes())
                });
                assert!(offered, "{p:?} was not offered");
            }
        }
        Decision::Reject(rejection) => {
            assert!(matches!(rejection.status().as_u16(), 400 | 403 | 405 | 426), "{rejection:?}");
            assert!(!rejection.reason().trim().is_empty());
        }
        Decision::Decline => {}
    }
});

fn accepted_headers<T>(mut accepted: tower_upgrade::Accepted<T>) -> http::HeaderMap {
    std::mem::take(accepted.headers_mut())
}
