//! The client side of stream 1: the upgrade request as HTTP/2 HEADERS, CONTINUATION and
//! DATA frames (RFC 7540 §3.2: the request that asked for the upgrade is stream 1).
//!
//! Header fields are encoded as HPACK "literal header field without indexing" (RFC 7541
//! §6.2.2) with plain (not Huffman) strings, so the server's HPACK decoder state is the same
//! after stream 1 as if nothing had been sent: the client's own encoder, which knows nothing
//! of stream 1, stays in step with it.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName};
use http::request;

use crate::headers::List;

/// The largest frame payload a server accepts before it has changed
/// SETTINGS_MAX_FRAME_SIZE (RFC 7540 §6.5.2).
pub(super) const MAX_FRAME: usize = 16_384;

/// HTTP/2 frame types and flags (RFC 7540 §6).
pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;
pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;

/// Length of a frame header.
pub(super) const FRAME_HEADER: usize = 9;

/// HPACK static table indices of the pseudo-header names (RFC 7541 Appendix A).
const AUTHORITY: usize = 1;
const METHOD: usize = 2;
const PATH: usize = 4;
const SCHEME: usize = 6;

/// Writes a frame header.
pub(super) fn frame_header(dst: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    dst.put_uint(len as u64, 3);
    dst.put_u8(kind);
    dst.put_u8(flags);
    dst.put_u32(stream & 0x7fff_ffff);
}

/// RFC 7541 §5.1: an integer with an `n`-bit prefix; `flags` fills the bits above it.
fn encode_int(dst: &mut BytesMut, flags: u8, prefix_bits: u32, mut value: usize) {
    let max = (1 << prefix_bits) - 1;
    if value < max {
        dst.put_u8(flags | value as u8);
        return;
    }
    dst.put_u8(flags | max as u8);
    value -= max;
    while value >= 128 {
        dst.put_u8((value % 128) as u8 | 0x80);
        value /= 128;
    }
    dst.put_u8(value as u8);
}

/// RFC 7541 §5.2: a string literal, not Huffman-coded.
fn encode_str(dst: &mut BytesMut, s: &[u8]) {
    encode_int(dst, 0, 7, s.len());
    dst.put_slice(s);
}

/// RFC 7541 §6.2.2: literal without indexing, name from the static table.
fn encode_indexed_name(dst: &mut BytesMut, index: usize, value: &[u8]) {
    encode_int(dst, 0x00, 4, index);
    encode_str(dst, value);
}

/// RFC 7541 §6.2.2: literal without indexing, new name.
fn encode_literal(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.put_u8(0x00);
    encode_str(dst, name);
    encode_str(dst, value);
}

/// Whether a request header goes on to HTTP/2.
///
/// RFC 9113 §8.2.2: connection-specific fields (`Connection` and the fields it names,
/// `Proxy-Connection`, `Keep-Alive`, `Transfer-Encoding`, `Upgrade`) are removed, and `TE`
/// only stays as `trailers`. RFC 7540 §3.2.1: `HTTP2-Settings` is connection-specific too.
/// `Host` becomes `:authority` (RFC 9113 §8.3.1). `Expect` has been dealt with: the body was
/// read (and `100 Continue` sent) before the switch.
fn is_forwarded(name: &HeaderName, value: &[u8], headers: &HeaderMap) -> bool {
    if *name == header::CONNECTION
        || *name == header::UPGRADE
        || *name == header::TRANSFER_ENCODING
        || *name == header::HOST
        || *name == header::EXPECT
        || name.as_str() == "http2-settings"
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
    {
        return false;
    }
    if *name == header::TE {
        return value.eq_ignore_ascii_case(b"trailers");
    }
    // The same bounded list reader as for `Upgrade`: options past the bound are not read,
    // and a request whose `Connection` is that long has been refused in `accept`.
    !List::new(headers, header::CONNECTION)
        .map_while(Result::ok)
        .any(|option| option.eq_ignore_ascii_case(name.as_str().as_bytes()))
}

/// The request's `:authority`: the URI's authority (absolute form), else `Host`.
pub(super) fn authority(parts: &request::Parts) -> Option<&[u8]> {
    parts
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| parts.headers.get(header::HOST).map(|v| v.as_bytes()))
}

/// The request's `:path`: the path and query, `*` for the asterisk form (RFC 9113 §8.3.1).
fn path(parts: &request::Parts) -> &str {
    match parts.uri.path_and_query().map(|p| p.as_str()) {
        Some(p) if !p.is_empty() => p,
        _ => "/",
    }
}

/// The header fields of stream 1, pseudo-fields first, in the order they are encoded.
fn fields(parts: &request::Parts) -> impl Iterator<Item = (Field<'_>, &[u8])> {
    let pseudo = [
        Some((Field::Indexed(METHOD), parts.method.as_str().as_bytes())),
        Some((Field::Indexed(SCHEME), &b"http"[..])),
        authority(parts).map(|a| (Field::Indexed(AUTHORITY), a)),
        Some((Field::Indexed(PATH), path(parts).as_bytes())),
    ];
    let regular = parts
        .headers
        .iter()
        .filter(|(name, value)| is_forwarded(name, value.as_bytes(), &parts.headers))
        .map(|(name, value)| (Field::Named(name.as_str().as_bytes()), value.as_bytes()));
    pseudo.into_iter().flatten().chain(regular)
}

#[derive(Clone, Copy)]
enum Field<'a> {
    Indexed(usize),
    Named(&'a [u8]),
}

impl Field<'_> {
    fn name_len(self) -> usize {
        match self {
            Self::Indexed(AUTHORITY) => ":authority".len(),
            Self::Indexed(METHOD) => ":method".len(),
            Self::Indexed(PATH) => ":path".len(),
            Self::Indexed(_) => ":scheme".len(),
            Self::Named(name) => name.len(),
        }
    }
}

/// The size of stream 1's header list as an HTTP/2 server counts it against
/// SETTINGS_MAX_HEADER_LIST_SIZE: name and value lengths plus 32 per field (RFC 7540 §6.5.2).
pub(super) fn header_list_size(parts: &request::Parts) -> usize {
    fields(parts)
        .map(|(field, value)| field.name_len() + value.len() + 32)
        .sum()
}

/// The HPACK header block of stream 1.
fn header_block(parts: &request::Parts) -> BytesMut {
    let mut block = BytesMut::with_capacity(256);
    for (field, value) in fields(parts) {
        match field {
            Field::Indexed(index) => encode_indexed_name(&mut block, index, value),
            Field::Named(name) => encode_literal(&mut block, name, value),
        }
    }
    block
}

/// Every frame of stream 1, as the client would have sent it: HEADERS (and CONTINUATION
/// frames when the block is longer than a frame), then DATA frames carrying `body`, the last
/// frame with END_STREAM.
pub(crate) fn stream1(parts: &request::Parts, body: &[u8]) -> Bytes {
    let block = header_block(parts);
    let frames = block.len().div_ceil(MAX_FRAME).max(1) + body.len().div_ceil(MAX_FRAME);
    let mut out = BytesMut::with_capacity(block.len() + body.len() + frames * FRAME_HEADER);

    let mut chunks = block.chunks(MAX_FRAME).peekable();
    let first = chunks.next().unwrap_or_default();
    let mut flags = if body.is_empty() { END_STREAM } else { 0 };
    if chunks.peek().is_none() {
        flags |= END_HEADERS;
    }
    frame_header(&mut out, first.len(), HEADERS, flags, 1);
    out.put_slice(first);
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            END_HEADERS
        } else {
            0
        };
        frame_header(&mut out, chunk.len(), CONTINUATION, flags, 1);
        out.put_slice(chunk);
    }

    let mut chunks = body.chunks(MAX_FRAME).peekable();
    while let Some(chunk) = chunks.next() {
        let flags = if chunks.peek().is_none() {
            END_STREAM
        } else {
            0
        };
        frame_header(&mut out, chunk.len(), DATA, flags, 1);
        out.put_slice(chunk);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn int(flags: u8, prefix: u32, value: usize) -> Vec<u8> {
        let mut dst = BytesMut::new();
        encode_int(&mut dst, flags, prefix, value);
        dst.to_vec()
    }

    fn parts(req: Request<()>) -> request::Parts {
        req.into_parts().0
    }

    /// A minimal HPACK decoder for what this module writes (literals without indexing).
    fn decode_block(mut block: &[u8]) -> Vec<(String, Vec<u8>)> {
        fn int(block: &mut &[u8], prefix: u32) -> usize {
            let max = (1usize << prefix) - 1;
            let mut value = usize::from(block[0]) & max;
            *block = &block[1..];
            if value < max {
                return value;
            }
            let mut shift = 0;
            loop {
                let b = block[0];
                *block = &block[1..];
                value += usize::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    return value;
                }
            }
        }
        fn string(block: &mut &[u8]) -> Vec<u8> {
            assert_eq!(block[0] & 0x80, 0, "Huffman-coded");
            let len = int(block, 7);
            let s = block[..len].to_vec();
            *block = &block[len..];
            s
        }
        let mut fields = Vec::new();
        while !block.is_empty() {
            assert_eq!(block[0] & 0xf0, 0, "not a literal without indexing");
            let index = int(&mut block, 4);
            let name = match index {
                0 => String::from_utf8(string(&mut block)).unwrap(),
                1 => ":authority".to_owned(),
                2 => ":method".to_owned(),
                4 => ":path".to_owned(),
                6 => ":scheme".to_owned(),
                other => panic!("unexpected index {other}"),
            };
            fields.push((name, string(&mut block)));
        }
        fields
    }

    /// Splits frames into (type, flags, stream, payload).
    fn split_frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let len =
                usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            frames.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        frames
    }

    fn block_of(frames: &[(u8, u8, u32, Vec<u8>)]) -> Vec<u8> {
        frames
            .iter()
            .filter(|f| f.0 == HEADERS || f.0 == CONTINUATION)
            .flat_map(|f| f.3.clone())
            .collect()
    }

    #[test]
    fn encodes_integers_at_prefix_boundaries() {
        // RFC 7541 §C.1.1-§C.1.3.
        assert_eq!(int(0, 5, 10), [0x0a]);
        assert_eq!(int(0, 5, 1337), [0x1f, 0x9a, 0x0a]);
        assert_eq!(int(0, 8, 42), [0x2a]);
        // Just below, at and above the 4- and 7-bit prefix maxima.
        assert_eq!(int(0, 4, 14), [0x0e]);
        assert_eq!(int(0, 4, 15), [0x0f, 0x00]);
        assert_eq!(int(0, 4, 16), [0x0f, 0x01]);
        assert_eq!(int(0, 7, 126), [0x7e]);
        assert_eq!(int(0, 7, 127), [0x7f, 0x00]);
        assert_eq!(int(0, 7, 128), [0x7f, 0x01]);
        assert_eq!(int(0, 7, 127 + 127), [0x7f, 0x7f]);
        assert_eq!(int(0, 7, 127 + 128), [0x7f, 0x80, 0x01]);
        assert_eq!(int(0, 7, 127 + 16_383), [0x7f, 0xff, 0x7f]);
        assert_eq!(int(0, 7, 127 + 16_384), [0x7f, 0x80, 0x80, 0x01]);
        // Flags above the prefix are kept.
        assert_eq!(int(0x80, 7, 3), [0x83]);
        assert_eq!(int(0x10, 4, 20), [0x1f, 0x05]);
        assert_eq!(int(0, 4, 0), [0x00]);
    }

    #[test]
    fn encodes_strings_without_huffman() {
        for len in [0, 1, 126, 127, 128, 255, 16_383, 16_384, 70_000] {
            let s = vec![b'a'; len];
            let mut dst = BytesMut::new();
            encode_str(&mut dst, &s);
            assert_eq!(dst[0] & 0x80, 0, "H bit set for len {len}");
            assert!(dst.ends_with(&s));
            let mut expected = int(0, 7, len);
            expected.extend_from_slice(&s);
            assert_eq!(&dst[..], &expected[..], "len {len}");
        }
    }

    #[test]
    fn encodes_the_rfc_7541_literal_example() {
        // RFC 7541 §C.2.2: literal without indexing, indexed name `:path`, value
        // `/sample/path`.
        let mut dst = BytesMut::new();
        encode_indexed_name(&mut dst, PATH, b"/sample/path");
        assert_eq!(
            &dst[..],
            b"\x04\x0c/sample/path",
            "RFC 7541 C.2.2 gives 040c 2f73 616d 706c 652f 7061 7468"
        );
        let mut dst = BytesMut::new();
        encode_literal(&mut dst, b"custom-key", b"custom-header");
        assert_eq!(&dst[..], b"\x00\x0acustom-key\x0dcustom-header");
    }

    #[test]
    fn writes_frame_headers() {
        let mut dst = BytesMut::new();
        frame_header(&mut dst, 0x01_02_03, HEADERS, END_HEADERS | END_STREAM, 1);
        assert_eq!(&dst[..], [1, 2, 3, 1, 5, 0, 0, 0, 1]);
        let mut dst = BytesMut::new();
        // The reserved bit of the stream id is never set.
        frame_header(&mut dst, 0, DATA, 0, u32::MAX);
        assert_eq!(&dst[..], [0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn get_is_one_headers_frame_with_end_stream() {
        let req = parts(
            Request::get("/a/b?x=1&y")
                .header("host", "example.com:8080")
                .header("user-agent", "curl/7.88.1")
                .header("accept", "*/*")
                .header("connection", "Upgrade, HTTP2-Settings")
                .header("upgrade", "h2c")
                .header("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")
                .body(())
                .unwrap(),
        );
        let frames = split_frames(&stream1(&req, b""));
        assert_eq!(frames.len(), 1);
        let (kind, flags, stream, _) = frames[0];
        assert_eq!(
            (kind, flags, stream),
            (HEADERS, END_STREAM | END_HEADERS, 1)
        );
        let fields = decode_block(&block_of(&frames));
        let expected: Vec<(String, Vec<u8>)> = [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "example.com:8080"),
            (":path", "/a/b?x=1&y"),
            ("user-agent", "curl/7.88.1"),
            ("accept", "*/*"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
        .collect();
        assert_eq!(fields, expected);
    }

    #[test]
    fn strips_connection_specific_fields() {
        let req = parts(
            Request::post("/")
                .header("host", "h")
                .header("connection", "Upgrade, HTTP2-Settings, X-Hop")
                .header("connection", "keep-alive")
                .header("upgrade", "h2c")
                .header("http2-settings", "AAMAAABk")
                .header("keep-alive", "timeout=5")
                .header("proxy-connection", "keep-alive")
                .header("transfer-encoding", "identity")
                .header("expect", "100-continue")
                .header("te", "gzip")
                .header("x-hop", "1")
                .header("x-end-to-end", "2")
                .header("content-length", "3")
                .body(())
                .unwrap(),
        );
        let fields = decode_block(&block_of(&split_frames(&stream1(&req, b"abc"))));
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                ":method",
                ":scheme",
                ":authority",
                ":path",
                "x-end-to-end",
                "content-length"
            ]
        );
        // `TE: trailers` is the one `TE` HTTP/2 allows.
        let req = parts(Request::get("/").header("te", "Trailers").body(()).unwrap());
        let fields = decode_block(&block_of(&split_frames(&stream1(&req, b""))));
        assert_eq!(
            fields.last().unwrap(),
            &("te".to_owned(), b"Trailers".to_vec())
        );
    }

    #[test]
    fn keeps_repeated_fields_in_order() {
        let req = parts(
            Request::get("/")
                .header("cookie", "a=1")
                .header("x-multi", "one")
                .header("cookie", "b=2")
                .header("x-multi", "two")
                .body(())
                .unwrap(),
        );
        let fields = decode_block(&block_of(&split_frames(&stream1(&req, b""))));
        let regular: Vec<(&str, &[u8])> = fields[3..]
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        assert_eq!(
            regular,
            [
                ("cookie", &b"a=1"[..]),
                ("cookie", b"b=2"),
                ("x-multi", b"one"),
                ("x-multi", b"two")
            ]
        );
    }

    #[test]
    fn authority_comes_from_the_uri_before_host() {
        let req = parts(
            Request::get("http://proxy.example:81/p?q")
                .header("host", "ignored")
                .body(())
                .unwrap(),
        );
        let fields = decode_block(&block_of(&split_frames(&stream1(&req, b""))));
        assert_eq!(
            fields[2],
            (":authority".to_owned(), b"proxy.example:81".to_vec())
        );
        assert_eq!(fields[3], (":path".to_owned(), b"/p?q".to_vec()));
        assert_eq!(fields.len(), 4, "Host is never forwarded: {fields:?}");
        // No authority at all: no `:authority` field.
        let req = parts(Request::get("/").body(()).unwrap());
        let fields = decode_block(&block_of(&split_frames(&stream1(&req, b""))));
        assert_eq!(fields.len(), 3);
        assert!(fields.iter().all(|(n, _)| n != ":authority"));
    }

    #[test]
    fn asterisk_form_is_path_star() {
        let req = parts(Request::options("*").header("host", "h").body(()).unwrap());
        let fields = decode_block(&block_of(&split_frames(&stream1(&req, b""))));
        assert_eq!(fields[0], (":method".to_owned(), b"OPTIONS".to_vec()));
        assert_eq!(fields[3], (":path".to_owned(), b"*".to_vec()));
        // An absolute form without a path is `/` (`http` cannot tell `http://h` from
        // `http://h/`).
        let req = parts(Request::get("http://h").body(()).unwrap());
        assert_eq!(path(&req), "/");
    }

    #[test]
    fn body_is_split_into_data_frames() {
        let req = parts(Request::post("/").body(()).unwrap());
        for len in [1_usize, 16_383, 16_384, 16_385, 32_768, 40_000, 65_535] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let frames = split_frames(&stream1(&req, &body));
            let (kind, flags, _, _) = frames[0];
            assert_eq!((kind, flags), (HEADERS, END_HEADERS), "len {len}");
            let data: Vec<_> = frames[1..].to_vec();
            assert_eq!(data.len(), len.div_ceil(MAX_FRAME), "len {len}");
            for (i, (kind, flags, stream, payload)) in data.iter().enumerate() {
                assert_eq!((*kind, *stream), (DATA, 1));
                assert!(payload.len() <= MAX_FRAME);
                let last = i == data.len() - 1;
                assert_eq!(
                    *flags,
                    if last { END_STREAM } else { 0 },
                    "len {len} frame {i}"
                );
                if !last {
                    assert_eq!(payload.len(), MAX_FRAME);
                }
            }
            let joined: Vec<u8> = data.into_iter().flat_map(|f| f.3).collect();
            assert_eq!(joined, body);
        }
    }

    #[test]
    fn long_header_blocks_use_continuation_frames() {
        for value_len in [16_000, 16_384, 40_000] {
            let req = parts(
                Request::get("/")
                    .header("x-big", "v".repeat(value_len))
                    .body(())
                    .unwrap(),
            );
            for body in [&b""[..], b"xyz"] {
                let frames = split_frames(&stream1(&req, body));
                let headers: Vec<_> = frames
                    .iter()
                    .filter(|f| f.0 == HEADERS || f.0 == CONTINUATION)
                    .collect();
                assert_eq!(headers[0].0, HEADERS);
                let end_stream = if body.is_empty() { END_STREAM } else { 0 };
                for (i, (kind, flags, stream, payload)) in headers.iter().enumerate() {
                    assert_eq!(*stream, 1);
                    assert!(payload.len() <= MAX_FRAME);
                    let last = i == headers.len() - 1;
                    let end_headers = if last { END_HEADERS } else { 0 };
                    if i == 0 {
                        assert_eq!(*flags, end_stream | end_headers);
                    } else {
                        assert_eq!((*kind, *flags), (CONTINUATION, end_headers));
                    }
                }
                let fields = decode_block(&block_of(&frames));
                assert_eq!(fields[3].1.len(), value_len);
                assert_eq!(frames.last().unwrap().0 == DATA, !body.is_empty());
            }
        }
    }

    #[test]
    fn counts_the_header_list_like_http2() {
        let req = parts(
            Request::get("/x")
                .header("host", "h")
                .header("connection", "upgrade")
                .header("a", "bc")
                .body(())
                .unwrap(),
        );
        // :method GET, :scheme http, :authority h, :path /x, a bc.
        let expected = (7 + 3) + (7 + 4) + (10 + 1) + (5 + 2) + (1 + 2) + 5 * 32;
        assert_eq!(header_list_size(&req), expected);
    }
}
