//! The opening handshake (RFC 6455 §4.2, RFC 8441 §4): reading `Sec-WebSocket-*` request
//! headers and deriving `Sec-WebSocket-Accept`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use sha1::{Digest, Sha1};

use super::rejection::{
    InvalidWebSocketKey, InvalidWebSocketProtocol, MissingWebSocketKey, MissingWebSocketVersion,
    RepeatedWebSocketKey, RepeatedWebSocketVersion, UnsupportedWebSocketVersion,
    WebSocketRejection,
};
use crate::headers::{List, is_token};

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What the handshake negotiated, for handlers that bring their own framing
/// ([`WebSocketHandler::raw`](super::WebSocketHandler::raw)).
///
/// See the [module docs](crate::websocket) for an example.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Kept inline: a valid key is 24 base64 characters (checked by `check_key`).
    pub(crate) key: Option<[u8; 24]>,
    pub(crate) protocol: Option<HeaderValue>,
    pub(crate) extensions: Vec<HeaderValue>,
    pub(crate) http2: bool,
    /// What permessage-deflate negotiated, if it was.
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<super::deflate::Agreed>,
}

impl Handshake {
    /// The client's `Sec-WebSocket-Key`; `None` over HTTP/2, where there is none
    /// (RFC 8441 §5).
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        self.key.as_ref().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The subprotocol selected and sent back in `Sec-WebSocket-Protocol`, if any.
    #[must_use]
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_ref().and_then(|p| p.to_str().ok())
    }

    /// The `Sec-WebSocket-Extensions` lines the client sent, as sent.
    ///
    /// None of them was accepted unless permessage-deflate was turned on
    /// ([`WebSocketHandler::deflate`](super::WebSocketHandler::deflate)) and
    /// [`deflate`](Self::deflate) says it was negotiated.
    #[must_use]
    pub fn extensions_offered(&self) -> &[HeaderValue] {
        &self.extensions
    }

    /// Whether permessage-deflate (RFC 7692) was negotiated: the `101` carries its
    /// `Sec-WebSocket-Extensions`, and data frames may then set RSV1.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    #[must_use]
    pub fn deflate(&self) -> bool {
        self.deflate.is_some()
    }

    /// Whether this is a WebSocket over an HTTP/2 stream (RFC 8441) rather than a
    /// switched HTTP/1.1 connection.
    #[must_use]
    pub fn is_http2(&self) -> bool {
        self.http2
    }
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2 item 5.4):
/// base64(SHA-1(key ++ GUID)).
pub(crate) fn accept_key(key: &[u8]) -> HeaderValue {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    let mut out = [0u8; 28];
    let n = STANDARD
        .encode_slice(sha1.finalize(), &mut out)
        .expect("a SHA-1 digest is 28 base64 characters");
    HeaderValue::from_bytes(&out[..n]).expect("base64 is a valid header value")
}

/// The only value of a header that must appear at most once.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(());
    }
    Ok(first)
}

/// RFC 6455 §4.2.1 item 6 and §4.4: exactly one `Sec-WebSocket-Version`, and it is `13`.
pub(crate) fn check_version(headers: &HeaderMap) -> Result<(), WebSocketRejection> {
    match single(headers, &header::SEC_WEBSOCKET_VERSION) {
        Err(()) => Err(RepeatedWebSocketVersion.into()),
        Ok(None) => Err(MissingWebSocketVersion.into()),
        Ok(Some(v)) if v.as_bytes() == b"13" => Ok(()),
        Ok(Some(_)) => Err(UnsupportedWebSocketVersion.into()),
    }
}

/// RFC 6455 §4.2.1 item 5: exactly one `Sec-WebSocket-Key`, the base64 encoding of 16
/// bytes (24 characters with padding, canonical).
pub(crate) fn check_key(headers: &HeaderMap) -> Result<&HeaderValue, WebSocketRejection> {
    let key = match single(headers, &header::SEC_WEBSOCKET_KEY) {
        Err(()) => return Err(RepeatedWebSocketKey.into()),
        Ok(None) => return Err(MissingWebSocketKey.into()),
        Ok(Some(key)) => key,
    };
    if is_key(key.as_bytes()) {
        Ok(key)
    } else {
        Err(InvalidWebSocketKey.into())
    }
}

/// Whether `key` is the base64 (RFC 4648 §4, padded) of 16 bytes, as a decoder that
/// refuses non-canonical input reads it: 21 characters of the alphabet, a 22nd that
/// carries only the 16th byte's last two bits (its low four bits zero: `A`, `Q`, `g` or
/// `w`), then `==`.
///
/// Checked in place rather than decoded: the decoded bytes are never used (the accept key
/// hashes the characters), and decoding cost about 380 instructions per handshake
/// against about 80 for this.
fn is_key(key: &[u8]) -> bool {
    let [chars @ .., last, b'=', b'='] = key else {
        return false;
    };
    chars.len() == 21
        && chars.iter().all(|&c| BASE64[usize::from(c)] < 64)
        && BASE64[usize::from(*last)] & 0b1100_1111 == 0
}

/// The value of each base64 character (RFC 4648 table 1); 0xff for any other byte.
const BASE64: [u8; 256] = {
    let mut table = [0xff; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The most subprotocols read from a request.
const MAX_PROTOCOLS: usize = 64;

/// RFC 6455 §4.1 item 10: `Sec-WebSocket-Protocol` is a comma list of tokens, possibly
/// over several lines. Returns them in the client's order.
pub(crate) fn offered_protocols(
    headers: &HeaderMap,
) -> Result<Vec<&str>, InvalidWebSocketProtocol> {
    let mut offered = Vec::new();
    for elem in List::new(headers, header::SEC_WEBSOCKET_PROTOCOL) {
        let elem = elem.map_err(|_| InvalidWebSocketProtocol)?;
        if !is_token(elem) || offered.len() == MAX_PROTOCOLS {
            return Err(InvalidWebSocketProtocol);
        }
        // Tokens are ASCII.
        offered.push(std::str::from_utf8(elem).map_err(|_| InvalidWebSocketProtocol)?);
    }
    Ok(offered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn accept_key_matches_the_rfc_sample() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn key_must_be_the_base64_of_16_bytes() {
        let ok = headers(&[("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")]);
        assert!(check_key(&ok).is_ok());
        for bad in [
            "",
            "dGhlIHNhbXBsZSBub25jZQ=",    // 23 characters
            "dGhlIHNhbXBsZSBub25jZQ",     // no padding
            "dGhlIHNhbXBsZSBub25jZR==",   // non-canonical trailing bits
            "dGhlIHNhbXBsZSBub25jZQ==AA", // 16 bytes then more
            "dGhlIHNhbXBsZSBub25jZTEy",   // 18 bytes
            "dGhlIHNhbXBsZSBub25j",       // 15 bytes
            "dGhlIHNhbXBsZSBub25jZQ-_",   // URL-safe alphabet
            "dGhlIHNhbXBsZSBub25jZQ= =",  // space inside
            "!!!!!!!!!!!!!!!!!!!!!!==",
        ] {
            let h = headers(&[("sec-websocket-key", bad)]);
            assert_eq!(
                check_key(&h),
                Err(InvalidWebSocketKey.into()),
                "{bad:?} accepted"
            );
        }
        assert_eq!(check_key(&headers(&[])), Err(MissingWebSocketKey.into()));
        let twice = headers(&[
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(check_key(&twice), Err(RepeatedWebSocketKey.into()));
    }

    /// The check in place agrees with a strict base64 decoder on every key that differs
    /// from a valid one in one byte (every position, every byte value), on every length up
    /// to 40 with an otherwise valid alphabet, and on 10,000 random keys of mostly valid
    /// characters.
    #[test]
    fn the_key_check_agrees_with_a_base64_decoder() {
        fn decodes_to_16(key: &[u8]) -> bool {
            let mut out = [0u8; 64];
            matches!(STANDARD.decode_slice(key, &mut out), Ok(16))
        }
        let mut cases = 0;
        for valid in [
            &b"dGhlIHNhbXBsZSBub25jZQ=="[..],
            b"AAAAAAAAAAAAAAAAAAAAAA==",
            b"/////////////////////w==",
        ] {
            assert!(is_key(valid));
            for at in 0..valid.len() {
                for b in 0..=255u8 {
                    let mut key = valid.to_vec();
                    key[at] = b;
                    assert_eq!(
                        is_key(&key),
                        decodes_to_16(&key),
                        "{:?}",
                        String::from_utf8_lossy(&key)
                    );
                    cases += 1;
                }
            }
        }
        for len in 0..=40 {
            for fill in [b'A', b'Q', b'/', b'='] {
                let mut key = vec![fill; len];
                if len >= 2 {
                    key[len - 2..].copy_from_slice(b"==");
                }
                assert_eq!(
                    is_key(&key),
                    decodes_to_16(&key),
                    "{:?}",
                    String::from_utf8_lossy(&key)
                );
            }
        }
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ ";
        let mut random = crate::test_util::XorShift::new();
        let mut valid = 0;
        for _ in 0..10_000 {
            let mut key: Vec<u8> = (0..24)
                .map(|_| alphabet[random.below(alphabet.len())])
                .collect();
            if random.below(2) == 0 {
                key[22..].copy_from_slice(b"==");
            }
            valid += usize::from(decodes_to_16(&key));
            assert_eq!(
                is_key(&key),
                decodes_to_16(&key),
                "{:?}",
                String::from_utf8_lossy(&key)
            );
        }
        assert!(
            cases > 18_000 && valid > 30,
            "too few cases: {cases}, {valid} valid"
        );
    }

    #[test]
    fn version_must_be_13_once() {
        assert!(check_version(&headers(&[("sec-websocket-version", "13")])).is_ok());
        assert_eq!(
            check_version(&headers(&[])),
            Err(MissingWebSocketVersion.into())
        );
        for other in ["8", "12", "14", "13, 8", " 13x", "thirteen", ""] {
            assert_eq!(
                check_version(&headers(&[("sec-websocket-version", other)])),
                Err(UnsupportedWebSocketVersion.into()),
                "{other:?}"
            );
        }
        let twice = headers(&[
            ("sec-websocket-version", "13"),
            ("sec-websocket-version", "13"),
        ]);
        assert_eq!(check_version(&twice), Err(RepeatedWebSocketVersion.into()));
    }

    #[test]
    fn protocols_are_a_token_list_over_several_lines() {
        let h = headers(&[
            ("sec-websocket-protocol", "chat, superchat"),
            ("sec-websocket-protocol", " ,v2.json ,"),
        ]);
        assert_eq!(
            offered_protocols(&h).unwrap(),
            ["chat", "superchat", "v2.json"]
        );
        assert!(offered_protocols(&headers(&[])).unwrap().is_empty());
        for bad in ["chat superchat", "chat;q=1", "\"chat\"", "a/b"] {
            let h = headers(&[("sec-websocket-protocol", bad)]);
            assert_eq!(
                offered_protocols(&h),
                Err(InvalidWebSocketProtocol),
                "{bad:?}"
            );
        }
        let many = vec!["p"; MAX_PROTOCOLS + 1].join(",");
        let h = headers(&[("sec-websocket-protocol", &many)]);
        assert_eq!(offered_protocols(&h), Err(InvalidWebSocketProtocol));
    }
}
