//! The frame head codec of RFC 6455 §5.2: parse the head of a client frame from a byte
//! slice, format the head of a server frame.
//!
//! The head is the fixed part of a frame before its payload:
//!
//! ```text
//!  byte 0: FIN | RSV1 | RSV2 | RSV3 | opcode (4 bits)
//!  byte 1: MASK | payload length (7 bits: 0-125, or 126 / 127 for a longer length)
//!  then:   16-bit length (126) or 64-bit length (127), network byte order
//!  then:   4-byte masking key, when MASK is set
//! ```
//!
//! This module only reads and writes those bytes. The rules that depend on the connection
//! (a client must mask, no extension sets an RSV bit, control frame limits, size limits)
//! are the socket's.

/// The longest frame head: 2 bytes, a 64-bit length and a masking key.
#[cfg(test)]
pub(crate) const MAX_HEAD: usize = 14;
/// The longest head of a server (unmasked) frame.
pub(crate) const MAX_SERVER_HEAD: usize = 10;

/// A frame opcode (RFC 6455 §5.2, §11.8). The reserved values are refused by [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    /// Control frames have the high bit of the opcode set (RFC 6455 §5.5).
    pub(crate) fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }

    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }
}

/// A parsed frame head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// FIN: the last frame of a message.
    pub(crate) fin: bool,
    /// RSV1, RSV2 and RSV3 as they stand in the first byte (mask `0x70`); 0 when none is set.
    pub(crate) rsv: u8,
    pub(crate) opcode: OpCode,
    /// The masking key, when the MASK bit is set.
    pub(crate) mask: Option<[u8; 4]>,
    /// The payload length.
    pub(crate) len: u64,
    /// How many bytes the head takes: 2 ..= 14.
    pub(crate) size: u8,
}

/// Why a frame head cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// An opcode RFC 6455 §5.2 reserves (`0x3`-`0x7`, `0xB`-`0xF`).
    ReservedOpcode,
    /// A 64-bit length with its most significant bit set (RFC 6455 §5.2).
    LengthTooLong,
}

impl ParseError {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ReservedOpcode => "reserved opcode",
            Self::LengthTooLong => "64-bit payload length with the most significant bit set",
        }
    }
}

/// Parses the frame head at the start of `buf`. `Ok(None)` if `buf` does not hold all of it
/// yet.
///
/// A bad opcode is reported as soon as the first byte is there. Lengths in a longer form
/// than needed (say, 5 as a 16-bit length) are accepted: RFC 6455 §5.2 requires the
/// minimal form from senders only.
#[inline]
pub(crate) fn parse(buf: &[u8]) -> Result<Option<Head>, ParseError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(ParseError::ReservedOpcode)?;
    let Some(&b1) = buf.get(1) else {
        return Ok(None);
    };
    let (len, mut size) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                // RFC 6455 §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(ParseError::LengthTooLong);
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let Some(key) = buf.get(size..size + 4) else {
            return Ok(None);
        };
        size += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    Ok(Some(Head {
        fin: b0 & 0x80 != 0,
        rsv: b0 & 0x70,
        opcode,
        mask,
        len,
        size: size as u8,
    }))
}

/// Formats the head of a final, unmasked (server) frame of `len` payload bytes at the start
/// of `out`, in the shortest length form (RFC 6455 §5.2); returns its size: 2, 4 or 10.
#[inline]
pub(crate) fn format(out: &mut [u8; MAX_SERVER_HEAD], opcode: OpCode, len: usize) -> usize {
    out[0] = 0x80 | opcode as u8;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPCODES: [(u8, OpCode); 6] = [
        (0x0, OpCode::Continuation),
        (0x1, OpCode::Text),
        (0x2, OpCode::Binary),
        (0x8, OpCode::Close),
        (0x9, OpCode::Ping),
        (0xA, OpCode::Pong),
    ];

    /// A client frame head built by hand: `b0` as is, the length in the form `form` asks
    /// for (0: 7-bit, 2: 16-bit, 8: 64-bit), and the key if any.
    fn head_bytes(b0: u8, len: u64, form: usize, mask: Option<[u8; 4]>) -> Vec<u8> {
        let m = if mask.is_some() { 0x80 } else { 0 };
        let mut out = vec![b0];
        match form {
            0 => out.push(m | len as u8),
            2 => {
                out.push(m | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            8 => {
                out.push(m | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
            _ => unreachable!(),
        }
        if let Some(key) = mask {
            out.extend_from_slice(&key);
        }
        out
    }

    /// The reference: RFC 6455 §5.2 read bit by bit.
    fn expected(bytes: &[u8]) -> Head {
        let form = match bytes[1] & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let len = match form {
            0 => u64::from(bytes[1] & 0x7F),
            _ => bytes[2..2 + form]
                .iter()
                .fold(0u64, |acc, b| acc << 8 | u64::from(*b)),
        };
        let masked = bytes[1] & 0x80 != 0;
        Head {
            fin: bytes[0] & 0x80 != 0,
            rsv: bytes[0] & 0x70,
            opcode: OPCODES
                .iter()
                .find(|(b, _)| *b == bytes[0] & 0xF)
                .expect("a valid opcode")
                .1,
            mask: masked.then(|| bytes[2 + form..6 + form].try_into().unwrap()),
            len,
            size: (2 + form + if masked { 4 } else { 0 }) as u8,
        }
    }

    #[test]
    fn parses_every_length_form_at_its_boundaries() {
        let key = [0xA1, 0xB2, 0xC3, 0xD4];
        let cases: [(u64, usize); 12] = [
            (0, 0),
            (1, 0),
            (125, 0),
            (126, 2),
            (127, 2),
            (0xFFFF, 2),
            (0x1_0000, 8),
            (0x1_0001, 8),
            (u64::from(u32::MAX), 8),
            (u64::from(u32::MAX) + 1, 8),
            (i64::MAX as u64, 8),
            (16 << 20, 8),
        ];
        for (len, form) in cases {
            for mask in [None, Some(key)] {
                let bytes = head_bytes(0x82, len, form, mask);
                let head = parse(&bytes).unwrap().unwrap();
                assert_eq!(head, expected(&bytes), "{bytes:02x?}");
                assert_eq!(head.len, len);
                assert_eq!(usize::from(head.size), bytes.len());
                assert_eq!(head.mask, mask);
            }
        }
    }

    #[test]
    fn accepts_lengths_in_a_longer_form_than_needed() {
        // RFC 6455 §5.2 asks the sender for the minimal form; a receiver can read any.
        for (len, form) in [
            (0, 2),
            (5, 2),
            (125, 2),
            (0, 8),
            (125, 8),
            (126, 8),
            (0xFFFF, 8),
        ] {
            let bytes = head_bytes(0x81, len, form, Some([1, 2, 3, 4]));
            let head = parse(&bytes).unwrap().unwrap();
            assert_eq!(head.len, len);
            assert_eq!(usize::from(head.size), 2 + form + 4);
        }
    }

    #[test]
    fn refuses_a_64_bit_length_with_the_top_bit_set() {
        for len in [1 << 63, u64::MAX, (1 << 63) | 5] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let bytes = head_bytes(0x82, len, 8, mask);
                assert_eq!(parse(&bytes), Err(ParseError::LengthTooLong));
                // The length is checked as soon as it is complete, before the key.
                assert_eq!(parse(&bytes[..10]), Err(ParseError::LengthTooLong));
            }
        }
    }

    #[test]
    fn reads_fin_and_each_rsv_bit() {
        for fin in [0, 0x80] {
            for rsv in 0..8u8 {
                let b0 = fin | rsv << 4 | 0x1;
                let bytes = head_bytes(b0, 3, 0, Some([9, 9, 9, 9]));
                let head = parse(&bytes).unwrap().unwrap();
                assert_eq!(head.fin, fin != 0);
                assert_eq!(head.rsv, rsv << 4);
                assert_eq!(head.opcode, OpCode::Text);
                assert_eq!(head, expected(&bytes));
            }
        }
    }

    #[test]
    fn reads_every_opcode_and_refuses_the_reserved_ones() {
        for bits in 0..16u8 {
            let bytes = head_bytes(0x80 | bits, 0, 0, Some([1, 2, 3, 4]));
            let known = OPCODES.iter().find(|(b, _)| *b == bits);
            match known {
                Some((_, opcode)) => {
                    let head = parse(&bytes).unwrap().unwrap();
                    assert_eq!(head.opcode, *opcode);
                    assert_eq!(head.opcode.is_control(), bits >= 8);
                    assert_eq!(head.opcode as u8, bits);
                }
                None => {
                    assert_eq!(parse(&bytes), Err(ParseError::ReservedOpcode), "{bits:#x}");
                    // Known from the first byte on.
                    assert_eq!(parse(&bytes[..1]), Err(ParseError::ReservedOpcode));
                }
            }
        }
    }

    #[test]
    fn a_head_cut_anywhere_is_incomplete() {
        let key = Some([5, 6, 7, 8]);
        for (len, form) in [(7, 0), (300, 2), (70_000, 8)] {
            for mask in [None, key] {
                let bytes = head_bytes(0x02, len, form, mask);
                for cut in 0..bytes.len() {
                    assert_eq!(parse(&bytes[..cut]), Ok(None), "{len} cut at {cut}");
                }
                // Bytes behind the head (payload, next frame) change nothing.
                let mut longer = bytes.clone();
                longer.extend_from_slice(&[0xFF; MAX_HEAD]);
                assert_eq!(parse(&longer), parse(&bytes));
            }
        }
    }

    #[test]
    fn every_two_byte_head_parses_as_the_rfc_says() {
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                let mut bytes = vec![b0, b1];
                bytes.extend_from_slice(&[0x01; 12]);
                let got = parse(&bytes);
                if OpCode::from_bits(b0 & 0xF).is_none() {
                    assert_eq!(got, Err(ParseError::ReservedOpcode));
                    continue;
                }
                let head = got.unwrap().unwrap();
                let size = usize::from(head.size);
                assert_eq!(head, expected(&bytes[..size]), "{b0:#x} {b1:#x}");
            }
        }
    }

    #[test]
    fn formats_the_shortest_length_form() {
        let mut out = [0; MAX_SERVER_HEAD];
        let cases: [(usize, &[u8]); 9] = [
            (0, &[0x82, 0]),
            (5, &[0x82, 5]),
            (125, &[0x82, 125]),
            (126, &[0x82, 126, 0, 126]),
            (127, &[0x82, 126, 0, 127]),
            (0xFFFF, &[0x82, 126, 0xFF, 0xFF]),
            (0x1_0000, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            (70_000, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]),
            (16 << 20, &[0x82, 127, 0, 0, 0, 0, 1, 0, 0, 0]),
        ];
        for (len, want) in cases {
            let n = format(&mut out, OpCode::Binary, len);
            assert_eq!(&out[..n], want, "{len}");
        }
    }

    #[test]
    fn formats_every_opcode_final_and_unmasked() {
        let mut out = [0; MAX_SERVER_HEAD];
        for (bits, opcode) in OPCODES {
            assert_eq!(format(&mut out, opcode, 3), 2);
            assert_eq!(out[..2], [0x80 | bits, 3]);
        }
    }

    #[test]
    fn what_is_formatted_parses_back() {
        let mut out = [0; MAX_SERVER_HEAD];
        for len in [0, 1, 125, 126, 0xFFFF, 0x1_0000, 1 << 32] {
            for (_, opcode) in OPCODES {
                let n = format(&mut out, opcode, len);
                let head = parse(&out[..n]).unwrap().unwrap();
                assert_eq!(
                    head,
                    Head {
                        fin: true,
                        rsv: 0,
                        opcode,
                        mask: None,
                        len: len as u64,
                        size: n as u8,
                    }
                );
            }
        }
    }
}
