//! Validated upgrade tokens: `protocol-name ["/" protocol-version]` (RFC 9110 §7.8).

use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

use crate::error::ConfigError;
use crate::headers::parse_protocol;

/// A protocol as named in an `Upgrade` header: `protocol-name ["/" protocol-version]`.
///
/// Both parts are RFC 9110 tokens. When matched against a client's offer, the name compares
/// case-insensitively (RFC 9110 §7.8) and the version, if any, exactly. A token registered
/// without a version matches only offers without a version.
///
/// # Example
///
/// ```
/// use tower_upgrade::UpgradeToken;
///
/// let token = UpgradeToken::new("upper/1").unwrap();
/// assert_eq!(token.name(), "upper");
/// assert_eq!(token.version(), Some("1"));
/// assert!(UpgradeToken::new("bad token").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UpgradeToken {
    /// The whole token as given; `slash` splits it.
    full: Arc<str>,
    /// Index of the `/`, if there is a version.
    slash: Option<usize>,
    /// The token, ready to be sent in `Upgrade`.
    header: HeaderValue,
}

impl UpgradeToken {
    /// Parses and validates a token.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if the name or the version is not an RFC 9110 token.
    pub fn new(token: &str) -> Result<Self, ConfigError> {
        parse_protocol(token.as_bytes()).map_err(|_| ConfigError::invalid_token(token))?;
        let header = HeaderValue::from_str(token).map_err(|_| ConfigError::invalid_token(token))?;
        Ok(Self {
            full: token.into(),
            slash: token.find('/'),
            header,
        })
    }

    /// The protocol name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self.slash {
            Some(i) => &self.full[..i],
            None => &self.full,
        }
    }

    /// The protocol version, if the token has one.
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.slash.map(|i| &self.full[i + 1..])
    }

    /// The whole token, as registered.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub(crate) fn header_value(&self) -> &HeaderValue {
        &self.header
    }

    /// Whether this token is the same protocol as `other` (names compared
    /// case-insensitively, versions exactly).
    pub(crate) fn same_protocol(&self, other: &Self) -> bool {
        self.name().eq_ignore_ascii_case(other.name()) && self.version() == other.version()
    }

    /// Whether a parsed offer names this protocol (name case-insensitive, version exact).
    #[inline]
    pub(crate) fn matches_offer(&self, name: &[u8], version: Option<&[u8]>) -> bool {
        self.name().as_bytes().eq_ignore_ascii_case(name)
            && self.version().map(str::as_bytes) == version
    }

    /// Whether this token matches an RFC 8441 `:protocol` value.
    pub(crate) fn matches_str(&self, offer: &str) -> bool {
        parse_protocol(offer.as_bytes())
            .is_ok_and(|(name, version)| self.matches_offer(name, version))
    }
}

impl fmt::Debug for UpgradeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.full, f)
    }
}

impl fmt::Display for UpgradeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.full)
    }
}

impl std::str::FromStr for UpgradeToken {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::is_token;

    #[test]
    fn parses_name_and_version() {
        let t = UpgradeToken::new("foo/2").unwrap();
        assert_eq!((t.name(), t.version()), ("foo", Some("2")));
        let t = UpgradeToken::new("websocket").unwrap();
        assert_eq!((t.name(), t.version()), ("websocket", None));
    }

    #[test]
    fn rejects_invalid_tokens() {
        for bad in [
            "", "/", "foo/", "/1", "a b", "foo/1/2", "a,b", "a\"", "é", "a\tb", "x:y",
        ] {
            assert!(UpgradeToken::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(is_token(b"!#$%&'*+-.^_`|~09azAZ"));
    }

    #[test]
    fn same_protocol_is_case_insensitive_on_name_only() {
        let a = UpgradeToken::new("Foo/A").unwrap();
        assert!(a.same_protocol(&UpgradeToken::new("fOO/A").unwrap()));
        assert!(!a.same_protocol(&UpgradeToken::new("foo/a").unwrap()));
        assert!(!a.same_protocol(&UpgradeToken::new("foo").unwrap()));
    }

    #[test]
    fn offers_match_name_case_insensitively_and_version_exactly() {
        let t = UpgradeToken::new("foo/2").unwrap();
        assert!(t.matches_offer(b"FOO", Some(b"2")));
        assert!(!t.matches_offer(b"foo", None));
        assert!(!t.matches_offer(b"foo", Some(b"20")));
        let t = UpgradeToken::new("websocket").unwrap();
        assert!(t.matches_offer(b"WebSocket", None));
        assert!(!t.matches_offer(b"websocket", Some(b"13")));
        let t = UpgradeToken::new("x/A").unwrap();
        assert!(!t.matches_offer(b"x", Some(b"a")));
    }
}
