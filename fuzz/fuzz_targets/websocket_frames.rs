//! Fuzzes the WebSocket frame codec and the receive path:
//!
//! - the frame head parser agrees with a reading of RFC 6455 §5.2 written here (lengths in
//!   every form, the 64-bit length's top bit, reserved opcodes, the key, truncation);
//! - an echo `WebSocket` fed the input as a client's bytes (cut into reads of 1-32 bytes)
//!   never panics and writes only well-formed server frames: final, unmasked, no RSV bit,
//!   a known opcode, control payloads of at most 125 bytes, valid UTF-8 in text, a close
//!   body that is empty or carries a code, and nothing after a close frame.
//!
//! Input: the first byte picks the read size, the rest is the client's stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_upgrade::fuzzing::{FrameHead, websocket_echo, websocket_frame_head};

/// RFC 6455 §5.2, byte by byte.
fn reference(b: &[u8]) -> Result<Option<FrameHead>, ()> {
    let Some(&b0) = b.first() else {
        return Ok(None);
    };
    let opcode = b0 & 0x0F;
    if !matches!(opcode, 0x0 | 0x1 | 0x2 | 0x8 | 0x9 | 0xA) {
        return Err(());
    }
    let Some(&b1) = b.get(1) else { return Ok(None) };
    let ext = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    if b.len() < 2 + ext {
        return Ok(None);
    }
    let len = match ext {
        0 => u64::from(b1 & 0x7F),
        _ => b[2..2 + ext]
            .iter()
            .fold(0u64, |acc, &x| acc << 8 | u64::from(x)),
    };
    if ext == 8 && len >= 1 << 63 {
        return Err(());
    }
    let masked = b1 & 0x80 != 0;
    let size = 2 + ext + if masked { 4 } else { 0 };
    if b.len() < size {
        return Ok(None);
    }
    let mask = masked.then(|| [b[2 + ext], b[3 + ext], b[4 + ext], b[5 + ext]]);
    Ok(Some((b0 & 0x80 != 0, b0 & 0x70, opcode, mask, len, size)))
}

fn check_server_stream(mut out: &[u8]) {
    let mut closed = false;
    while !out.is_empty() {
        assert!(!closed, "bytes after a close frame");
        let (fin, rsv, opcode, mask, len, size) = websocket_frame_head(out)
            .expect("a valid server head")
            .expect("a whole server head");
        assert!(fin && rsv == 0 && mask.is_none(), "{:02x?}", &out[..size]);
        assert!(
            matches!(opcode, 0x1 | 0x2 | 0x8 | 0x9 | 0xA),
            "opcode {opcode:#x}"
        );
        // The shortest length form (RFC 6455 §5.2: a sender MUST use it).
        let minimal = match len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        assert_eq!(size, minimal, "length {len} in a {size}-byte head");
        let end = size + usize::try_from(len).unwrap();
        assert!(out.len() >= end, "a frame cut short");
        let payload = &out[size..end];
        if opcode >= 0x8 {
            assert!(len <= 125);
        }
        if opcode == 0x1 {
            assert!(std::str::from_utf8(payload).is_ok());
        }
        if opcode == 0x8 {
            assert!(payload.len() != 1);
            closed = true;
        }
        out = &out[end..];
    }
}

fuzz_target!(|data: &[u8]| {
    let got = websocket_frame_head(data);
    match reference(data) {
        Ok(want) => assert_eq!(got, Ok(want), "{data:02x?}"),
        Err(()) => assert!(got.is_err(), "{data:02x?}: {got:?}"),
    }
    if let Ok(Some(head)) = got {
        // Only the head's bytes count: every shorter prefix is incomplete.
        assert_eq!(websocket_frame_head(&data[..head.5]), Ok(Some(head)));
        for cut in 0..head.5 {
            assert_eq!(websocket_frame_head(&data[..cut]), Ok(None));
        }
    }

    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let out = websocket_echo(input, usize::from(first % 32) + 1);
    check_server_stream(&out);
});
