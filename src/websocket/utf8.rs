//! [`Utf8Bytes`]: text backed by [`Bytes`], and the UTF-8 check of text that arrives in
//! fragments.

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;

use super::error::{Error, ErrorKind};

/// UTF-8 text backed by [`Bytes`]: cheap to clone (to send one message to many sockets)
/// and received without a copy.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(
    // `ByteString` holds `Bytes` known to be UTF-8 and hands out `&str` without checking
    // again, which takes `unsafe` code; this crate forbids it in its own.
    ByteString,
);

impl Utf8Bytes {
    /// Text from a static string, without a copy.
    #[must_use]
    pub const fn from_static(text: &'static str) -> Self {
        Self(ByteString::from_static(text))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn try_from_bytes(bytes: Bytes) -> Result<Self, Error> {
        ByteString::try_from(bytes)
            .map(Self)
            .map_err(|_| Error::new(ErrorKind::InvalidUtf8, "text is not valid UTF-8"))
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl From<String> for Utf8Bytes {
    fn from(text: String) -> Self {
        Self(text.into())
    }
}

impl From<&str> for Utf8Bytes {
    fn from(text: &str) -> Self {
        Self(text.into())
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(text: Utf8Bytes) -> Self {
        text.0.into_bytes()
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = Error;

    fn try_from(bytes: Bytes) -> Result<Self, Error> {
        Self::try_from_bytes(bytes)
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Checks UTF-8 from `from` on; returns how far the bytes are valid, allowing an incomplete
/// code point at the end (RFC 6455 §8.1: fail as soon as the text cannot be valid).
pub(super) fn check_utf8(data: &[u8], from: usize) -> Result<usize, Error> {
    match std::str::from_utf8(&data[from..]) {
        Ok(_) => Ok(data.len()),
        Err(e) if e.error_len().is_none() => Ok(from + e.valid_up_to()),
        Err(_) => Err(Error::new(
            ErrorKind::InvalidUtf8,
            "text is not valid UTF-8",
        )),
    }
}

/// The start of a code point that a read cut off: up to 3 bytes, kept between the reads of
/// one frame so that text is checked as it arrives (RFC 6455 §8.1, Autobahn 6.4.3-6.4.4).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Utf8Tail {
    bytes: [u8; 3],
    len: u8,
}

impl Utf8Tail {
    /// A tail left by text checked before, for example by the frames before this one.
    pub(super) fn new(tail: &[u8]) -> Self {
        let mut this = Self::default();
        this.keep(tail);
        this
    }

    fn keep(&mut self, tail: &[u8]) {
        debug_assert!(tail.len() <= 3);
        self.bytes[..tail.len()].copy_from_slice(tail);
        self.len = tail.len() as u8;
    }

    /// Checks `data`, which follows the bytes checked before: fails as soon as the text
    /// cannot be valid, and keeps the start of a code point cut off at its end.
    pub(super) fn feed(&mut self, mut data: &[u8]) -> Result<(), Error> {
        let invalid = || Error::new(ErrorKind::InvalidUtf8, "text is not valid UTF-8");
        if self.len > 0 {
            let have = usize::from(self.len);
            let mut point = [0u8; 4];
            point[..have].copy_from_slice(&self.bytes[..have]);
            let width = match point[0] {
                0xF0.. => 4,
                0xE0.. => 3,
                _ => 2,
            };
            let take = (width - have).min(data.len());
            point[have..have + take].copy_from_slice(&data[..take]);
            data = &data[take..];
            match std::str::from_utf8(&point[..have + take]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() => {
                    self.keep(&point[..have + take]);
                    return Ok(());
                }
                Err(_) => return Err(invalid()),
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                self.keep(&data[e.valid_up_to()..]);
                Ok(())
            }
            Err(_) => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_tail_checks_text_cut_anywhere() {
        let text = "a\u{e9}\u{20ac}\u{1f600}z".as_bytes();
        // Every way of cutting it in three pieces is valid.
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let mut tail = Utf8Tail::default();
                tail.feed(&text[..i]).unwrap();
                tail.feed(&text[i..j]).unwrap();
                tail.feed(&text[j..]).unwrap();
                assert_eq!(tail.len, 0, "{i} {j}");
            }
        }
        // Invalid bytes fail in the piece that holds them, even mid code point.
        let mut tail = Utf8Tail::default();
        tail.feed(&[b'a', 0xF0, 0x9F]).unwrap();
        assert!(tail.feed(&[0x41]).is_err());
        let mut tail = Utf8Tail::new(&[0xE2]);
        assert!(tail.feed(&[0xC0]).is_err());
        let mut tail = Utf8Tail::default();
        assert!(
            tail.feed(&[0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xF4, 0x90])
                .is_err()
        );
        let mut tail = Utf8Tail::default();
        assert!(tail.feed(&[0xED, 0xA0, 0x80]).is_err());
    }

    #[test]
    fn utf8_bytes_checks_and_converts_without_copying() {
        let bytes = Bytes::from_static("h\u{e9}llo".as_bytes());
        let text = Utf8Bytes::try_from(bytes.clone()).unwrap();
        assert_eq!(text, "h\u{e9}llo");
        assert_eq!(text.as_str().as_ptr(), bytes.as_ptr());
        assert_eq!(Bytes::from(text.clone()).as_ptr(), bytes.as_ptr());
        assert_eq!(format!("{text:>7}|{text:?}"), "  h\u{e9}llo|\"h\u{e9}llo\"");
        assert_eq!(
            Utf8Bytes::try_from(Bytes::from_static(b"\xFF"))
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidUtf8
        );
        assert_eq!(
            Utf8Bytes::from_static("a"),
            Utf8Bytes::from(String::from("a"))
        );
        let (a, b) = (Utf8Bytes::from("a"), Utf8Bytes::from(String::from("b")));
        assert!(a < b);
        assert_eq!(Utf8Bytes::default().len(), 0);
    }
}
