//! Fuzzes `HTTP2-Settings` decoding: never panics, and whatever is accepted is a valid
//! SETTINGS payload (a multiple of 6 bytes, known settings within their ranges) that
//! round-trips through unpadded base64url.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn encode(payload: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in payload.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if let Some(payload) = tower_upgrade::fuzzing::h2c_settings(data) {
        assert_eq!(payload.len() % 6, 0);
        for setting in payload.chunks(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                2 => assert!(value <= 1, "ENABLE_PUSH {value}"),
                4 => assert!(value <= 0x7fff_ffff, "INITIAL_WINDOW_SIZE {value}"),
                5 => assert!((16_384..=16_777_215).contains(&value), "MAX_FRAME_SIZE {value}"),
                8 | 9 => assert!(value <= 1, "setting {id} = {value}"),
                _ => {}
            }
        }
        assert_eq!(encode(&payload).as_bytes(), data, "not the canonical unpadded base64url");
    }
    // And the other way: any payload of valid settings decodes back to itself.
    let valid: Vec<u8> = data
        .chunks_exact(6)
        .filter(|s| u16::from_be_bytes([s[0], s[1]]) > 9)
        .flatten()
        .copied()
        .take(16 * 6)
        .collect();
    if !valid.is_empty() {
        let decoded = tower_upgrade::fuzzing::h2c_settings(encode(&valid).as_bytes());
        assert_eq!(decoded.as_deref(), Some(&valid[..]));
    }
});
