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

#[cfg(test)]
mod tests {
    use super::*;

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
