//! Decoding and validating `HTTP2-Settings` (RFC 7540 §3.2.1).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;

/// The most settings accepted in `HTTP2-Settings`. Real clients send 2 to 6; the bound keeps
/// a hostile header from costing more than a few bytes.
pub(super) const MAX_SETTINGS: usize = 16;

/// The longest `HTTP2-Settings` value read: the base64url length of [`MAX_SETTINGS`]
/// settings (6 bytes each, no padding).
const MAX_ENCODED_LEN: usize = (MAX_SETTINGS * 6 * 4).div_ceil(3);

/// Why an `HTTP2-Settings` value is refused. The upgrade is then declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SettingsError {
    /// Not unpadded base64url (RFC 7540 §3.2.1: `token68` with any trailing `=` omitted),
    /// or empty.
    Encoding,
    /// The payload length is not a multiple of 6 (RFC 7540 §6.5).
    Length,
    /// More than [`MAX_SETTINGS`] settings.
    TooMany,
    /// A setting has a value RFC 7540 §6.5.2 (or RFC 8441 §3) calls a connection error.
    Value,
}

impl SettingsError {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Encoding => "HTTP2-Settings is not unpadded base64url",
            Self::Length => "HTTP2-Settings payload length is not a multiple of 6",
            Self::TooMany => "HTTP2-Settings has too many settings",
            Self::Value => "HTTP2-Settings has an invalid setting value",
        }
    }
}

/// Decodes an `HTTP2-Settings` value into a SETTINGS frame payload, and checks that every
/// setting would be accepted in a SETTINGS frame.
///
/// The payload is returned as sent, to be put in front of the client's first SETTINGS frame
/// (so the client's own values, coming later, win).
pub(crate) fn decode(value: &[u8]) -> Result<Bytes, SettingsError> {
    if value.is_empty() {
        // `token68` is at least one character.
        return Err(SettingsError::Encoding);
    }
    if value.len() > MAX_ENCODED_LEN {
        // Decide from the length alone, without decoding a long value.
        return Err(if value.iter().all(|&b| is_base64url(b)) {
            SettingsError::TooMany
        } else {
            SettingsError::Encoding
        });
    }
    // Only the URL-safe alphabet, no `=`, and canonical trailing bits.
    if !value.iter().all(|&b| is_base64url(b)) {
        return Err(SettingsError::Encoding);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| SettingsError::Encoding)?;
    validate(&payload)?;
    Ok(Bytes::from(payload))
}

/// Checks a SETTINGS payload: whole settings, at most [`MAX_SETTINGS`], valid values.
pub(super) fn validate(payload: &[u8]) -> Result<(), SettingsError> {
    if payload.len() % 6 != 0 {
        return Err(SettingsError::Length);
    }
    if payload.len() / 6 > MAX_SETTINGS {
        return Err(SettingsError::TooMany);
    }
    for setting in payload.chunks_exact(6) {
        let id = u16::from_be_bytes([setting[0], setting[1]]);
        let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
        let valid = match id {
            // RFC 7540 §6.5.2: SETTINGS_ENABLE_PUSH is 0 or 1.
            0x2 => value <= 1,
            // SETTINGS_INITIAL_WINDOW_SIZE: at most 2^31 - 1.
            0x4 => value <= 0x7fff_ffff,
            // SETTINGS_MAX_FRAME_SIZE: between 2^14 and 2^24 - 1.
            0x5 => (1 << 14..1 << 24).contains(&value),
            // RFC 8441 §3 SETTINGS_ENABLE_CONNECT_PROTOCOL and RFC 9218 §2.1
            // SETTINGS_NO_RFC7540_PRIORITIES: 0 or 1.
            0x8 | 0x9 => value <= 1,
            // HEADER_TABLE_SIZE, MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE take any value;
            // RFC 7540 §6.5.2: unknown settings MUST be ignored.
            _ => true,
        };
        if !valid {
            return Err(SettingsError::Value);
        }
    }
    Ok(())
}

const fn is_base64url(b: u8) -> bool {
    matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(payload: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(payload)
    }

    fn setting(id: u16, value: u32) -> [u8; 6] {
        let mut s = [0; 6];
        s[..2].copy_from_slice(&id.to_be_bytes());
        s[2..].copy_from_slice(&value.to_be_bytes());
        s
    }

    #[test]
    fn decodes_curl_settings() {
        // curl 7.88: MAX_CONCURRENT_STREAMS=100, INITIAL_WINDOW_SIZE=2^30, ENABLE_PUSH=0.
        let payload = decode(b"AAMAAABkAARAAAAAAAIAAAAA").unwrap();
        let mut expected = Vec::new();
        expected.extend(setting(3, 100));
        expected.extend(setting(4, 1 << 30));
        expected.extend(setting(2, 0));
        assert_eq!(&payload[..], &expected[..]);
    }

    #[test]
    fn decodes_nghttp_settings() {
        // nghttp 1.52 `-u`: MAX_CONCURRENT_STREAMS=100, INITIAL_WINDOW_SIZE=65535.
        let value = encode(&[setting(3, 100), setting(4, 65_535)].concat());
        assert_eq!(value, "AAMAAABkAAQAAP__");
        assert_eq!(decode(value.as_bytes()).unwrap().len(), 12);
    }

    #[test]
    fn refuses_empty_value() {
        assert_eq!(decode(b""), Err(SettingsError::Encoding));
    }

    #[test]
    fn refuses_padding() {
        // A multiple of 6 bytes never needs padding, so any `=` is refused.
        let one = encode(&setting(3, 100));
        assert_eq!(one.len(), 8);
        assert_eq!(
            decode(format!("{one}=").as_bytes()),
            Err(SettingsError::Encoding)
        );
        assert_eq!(
            decode(format!("{one}==").as_bytes()),
            Err(SettingsError::Encoding)
        );
        // A 4-byte payload would be padded as `xxxxxx==`; unpadded it is 6 chars, still refused
        // because 4 is not a multiple of 6.
        let four = encode(&[0, 3, 0, 0]);
        assert_eq!(
            decode(format!("{four}==").as_bytes()),
            Err(SettingsError::Encoding)
        );
        assert_eq!(decode(four.as_bytes()), Err(SettingsError::Length));
    }

    #[test]
    fn refuses_standard_alphabet() {
        // 0xfb 0xff -> `+/8` in standard base64, `-_8` in base64url.
        let payload = [setting(3, 0xfbff_fbff), setting(1, 0xffff_ffff)].concat();
        let url = encode(&payload);
        assert!(url.contains('-') || url.contains('_'), "{url}");
        assert!(decode(url.as_bytes()).is_ok());
        let standard = url.replace('-', "+").replace('_', "/");
        assert_eq!(decode(standard.as_bytes()), Err(SettingsError::Encoding));
    }

    #[test]
    fn refuses_non_canonical_trailing_bits() {
        // A multiple of 6 bytes encodes to a multiple of 4 characters, with no spare bits;
        // any other length fails the length check even when its trailing bits are zero.
        let value = encode(&[0, 3, 0, 0, 0, 100, 0]);
        assert_eq!(value.len(), 10);
        assert_eq!(decode(value.as_bytes()), Err(SettingsError::Length));
        // `AB` has non-zero trailing bits after the single byte 0x00.
        assert_eq!(decode(b"AB"), Err(SettingsError::Encoding));
        // A lone character cannot encode a byte.
        assert_eq!(decode(b"A"), Err(SettingsError::Encoding));
    }

    #[test]
    fn refuses_other_bytes() {
        for bad in [
            &b"AAMA AABk"[..],
            b"AAMAAABk\t",
            b"AAMA.ABk",
            b"AAMAAABk,AAMAAABk",
            b"\"AAMAAABk\"",
        ] {
            assert_eq!(decode(bad), Err(SettingsError::Encoding), "{bad:?}");
        }
    }

    #[test]
    fn refuses_length_not_multiple_of_6() {
        for len in [1, 2, 3, 4, 5, 7, 11, 13, 17] {
            let value = encode(&vec![0; len]);
            assert_eq!(
                decode(value.as_bytes()),
                Err(SettingsError::Length),
                "len {len}"
            );
        }
    }

    #[test]
    fn bounds_the_number_of_settings() {
        let max = encode(&setting(3, 1).repeat(MAX_SETTINGS));
        assert_eq!(max.len(), MAX_ENCODED_LEN);
        assert_eq!(decode(max.as_bytes()).unwrap().len(), MAX_SETTINGS * 6);
        let over = encode(&setting(3, 1).repeat(MAX_SETTINGS + 1));
        assert_eq!(decode(over.as_bytes()), Err(SettingsError::TooMany));
        // A long value that is not base64url is an encoding error, whatever its length.
        assert_eq!(decode(&[b'!'; 4096]), Err(SettingsError::Encoding));
        assert_eq!(
            validate(&[0; 6 * (MAX_SETTINGS + 1)]),
            Err(SettingsError::TooMany)
        );
    }

    #[test]
    fn validates_each_known_setting() {
        let cases: &[(u16, u32, bool)] = &[
            (0x1, 0, true),
            (0x1, u32::MAX, true),
            (0x2, 0, true),
            (0x2, 1, true),
            (0x2, 2, false),
            (0x2, u32::MAX, false),
            (0x3, 0, true),
            (0x3, u32::MAX, true),
            (0x4, 0, true),
            (0x4, 0x7fff_ffff, true),
            (0x4, 0x8000_0000, false),
            (0x4, u32::MAX, false),
            (0x5, 0, false),
            (0x5, 16_383, false),
            (0x5, 16_384, true),
            (0x5, 16_777_215, true),
            (0x5, 16_777_216, false),
            (0x6, 0, true),
            (0x6, u32::MAX, true),
            (0x8, 0, true),
            (0x8, 1, true),
            (0x8, 2, false),
            (0x9, 1, true),
            (0x9, 2, false),
            // Unknown and reserved identifiers are ignored, whatever their value.
            (0x0, u32::MAX, true),
            (0x7, u32::MAX, true),
            (0xa, u32::MAX, true),
            (0xffff, u32::MAX, true),
        ];
        for &(id, value, ok) in cases {
            let encoded = encode(&setting(id, value));
            let result = decode(encoded.as_bytes());
            assert_eq!(result.is_ok(), ok, "id {id:#x} value {value}: {result:?}");
            if !ok {
                assert_eq!(result, Err(SettingsError::Value));
            }
        }
    }

    #[test]
    fn an_invalid_value_anywhere_refuses_all() {
        let payload = [setting(3, 100), setting(4, 65_535), setting(2, 7)].concat();
        assert_eq!(
            decode(encode(&payload).as_bytes()),
            Err(SettingsError::Value)
        );
    }

    #[test]
    fn repeated_settings_are_kept_in_order() {
        let payload = [setting(4, 1), setting(4, 2)].concat();
        assert_eq!(
            &decode(encode(&payload).as_bytes()).unwrap()[..],
            &payload[..]
        );
    }
}
