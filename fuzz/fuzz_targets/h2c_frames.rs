//! Fuzzes the synthesis of the client's stream 1 for an h2c upgrade: for any request head
//! and body, the frames are well formed (stream 1, at most 16 384 bytes each, HEADERS then
//! CONTINUATIONs then DATA, END_HEADERS and END_STREAM where they belong), the header block
//! decodes with an independent HPACK decoder, and the DATA frames carry the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Input: method \n target \n (name: value \n)* \0 body
    let (head, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let method = lines.next().unwrap_or(b"GET");
    let target = lines.next().unwrap_or(b"/");
    let mut builder = http::Request::builder().method(method).uri(target);
    for line in lines {
        if let Some(i) = line.iter().position(|&b| b == b':') {
            builder = builder.header(&line[..i], line[i + 1..].trim_ascii());
        }
    }
    let Ok(req) = builder.body(()) else { return };
    let (parts, ()) = req.into_parts();
    let frames = tower_upgrade::fuzzing::h2c_stream1(&parts, body);

    let mut rest = &frames[..];
    let mut block = Vec::new();
    let mut data_out = Vec::new();
    let mut headers_done = false;
    let mut ended = false;
    let mut first = true;
    while !rest.is_empty() {
        assert!(!ended, "frames after END_STREAM");
        assert!(rest.len() >= 9);
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let (kind, flags) = (rest[3], rest[4]);
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
        assert_eq!(stream, 1);
        assert!(len <= 16_384);
        let payload = &rest[9..9 + len];
        match kind {
            1 => {
                assert!(first, "HEADERS not first");
                block.extend_from_slice(payload);
                headers_done = flags & 0x4 != 0;
                ended = flags & 0x1 != 0 && headers_done;
            }
            9 => {
                assert!(!first && !headers_done, "stray CONTINUATION");
                block.extend_from_slice(payload);
                headers_done = flags & 0x4 != 0;
            }
            0 => {
                assert!(headers_done, "DATA before END_HEADERS");
                data_out.extend_from_slice(payload);
                ended = flags & 0x1 != 0;
            }
            other => panic!("unexpected frame type {other}"),
        }
        first = false;
        rest = &rest[9 + len..];
    }
    assert!(headers_done, "no END_HEADERS");
    assert!(ended || (body.is_empty() && headers_done), "no END_STREAM");
    assert_eq!(data_out, body);
    let decoded = hpack::Decoder::new().decode(&block).expect("valid HPACK");
    let names: Vec<&[u8]> = decoded.iter().map(|(n, _)| n.as_slice()).collect();
    assert_eq!(names.first(), Some(&&b":method"[..]));
    assert!(names.contains(&&b":path"[..]) && names.contains(&&b":scheme"[..]));
    for name in names.iter().filter(|n| !n.starts_with(b":")) {
        assert!(!name.iter().any(u8::is_ascii_uppercase), "uppercase name");
        for banned in [&b"connection"[..], b"upgrade", b"http2-settings", b"keep-alive", b"transfer-encoding", b"host"] {
            assert_ne!(*name, banned, "connection-specific header kept");
        }
    }
});
