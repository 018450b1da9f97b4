//! Error types: configuration errors and failures after the `101`.

use std::error::Error as StdError;
use std::fmt;

/// Alias for a type-erased error type.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The layer was configured with something it cannot use.
///
/// Returned by the builder methods that take user-supplied protocol names or header values,
/// so that a mistake fails at start-up rather than on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    what: Box<str>,
}

/// What kind of [`ConfigError`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A protocol name or version is not an RFC 9110 token.
    InvalidToken,
    /// The same protocol (name compared case-insensitively, version exactly) was registered
    /// twice.
    DuplicateProtocol,
    /// A header name or value given to a builder is not valid.
    InvalidHeader,
    /// Another option is out of its range.
    InvalidOption,
}

impl ConfigError {
    pub(crate) fn invalid_token(token: &str) -> Self {
        Self {
            kind: ConfigErrorKind::InvalidToken,
            what: token.into(),
        }
    }

    pub(crate) fn duplicate(token: &str) -> Self {
        Self {
            kind: ConfigErrorKind::DuplicateProtocol,
            what: token.into(),
        }
    }

    #[allow(dead_code)] // used by the protocol modules
    pub(crate) fn invalid_header(what: &str) -> Self {
        Self {
            kind: ConfigErrorKind::InvalidHeader,
            what: what.into(),
        }
    }

    /// An option outside of its range; `what` names the option and the rule.
    #[allow(dead_code)] // used by the protocol modules
    pub(crate) fn invalid_option(what: &str) -> Self {
        Self {
            kind: ConfigErrorKind::InvalidOption,
            what: what.into(),
        }
    }

    /// What kind of error this is.
    #[must_use]
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ConfigErrorKind::InvalidToken => {
                write!(
                    f,
                    "invalid upgrade token {:?}: expected `name` or `name/version` made of RFC 9110 token characters",
                    self.what
                )
            }
            ConfigErrorKind::DuplicateProtocol => {
                write!(f, "protocol {:?} is registered twice", self.what)
            }
            ConfigErrorKind::InvalidHeader => write!(f, "invalid header: {}", self.what),
            ConfigErrorKind::InvalidOption => write!(f, "invalid option: {}", self.what),
        }
    }
}

impl StdError for ConfigError {}

/// A failure after the `101 Switching Protocols` went out.
///
/// Its `Display` names the protocol and what went wrong; the cause (the handler's error,
/// the panic message, hyper's error) is its [`source`](StdError::source).
///
/// These are reported to the [`on_failed_upgrade`](crate::UpgradeLayer::on_failed_upgrade)
/// callback and logged with `tracing`; they never reach the client as an HTTP response (the
/// connection no longer speaks HTTP) and never take the server down.
#[derive(Debug)]
pub struct UpgradeError {
    kind: UpgradeErrorKind,
    protocol: Box<str>,
    source: Option<BoxError>,
}

/// What kind of [`UpgradeError`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpgradeErrorKind {
    /// hyper could not hand over the connection. The usual cause is a server connection
    /// served without upgrade support: use `http1::Builder::serve_connection(..)
    /// .with_upgrades()`, hyper-util's `serve_connection_with_upgrades`, or `axum::serve`.
    Upgrade,
    /// The protocol handler returned an error.
    Handler,
    /// The protocol handler panicked.
    Panic,
    /// The connection was aborted when a graceful shutdown ran past its deadline.
    Aborted,
}

impl UpgradeError {
    pub(crate) fn new(kind: UpgradeErrorKind, protocol: &str, source: Option<BoxError>) -> Self {
        Self {
            kind,
            protocol: protocol.into(),
            source,
        }
    }

    /// What kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> UpgradeErrorKind {
        self.kind
    }

    pub(crate) fn kind_str(&self) -> &'static str {
        match self.kind {
            UpgradeErrorKind::Upgrade => "upgrade_failed",
            UpgradeErrorKind::Handler => "handler_error",
            UpgradeErrorKind::Panic => "panic",
            UpgradeErrorKind::Aborted => "aborted",
        }
    }

    /// The protocol the connection had switched to.
    #[must_use]
    pub fn protocol(&self) -> &str {
        &self.protocol
    }
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            UpgradeErrorKind::Upgrade => {
                "connection could not be upgraded (is the server connection served `.with_upgrades()`?)"
            }
            UpgradeErrorKind::Handler => "protocol handler failed",
            UpgradeErrorKind::Panic => "protocol handler panicked",
            UpgradeErrorKind::Aborted => "upgraded connection aborted at shutdown deadline",
        };
        // hyper's rule: the cause is reached through `source()`, never printed here too,
        // so that error-chain reporters print it once.
        write!(f, "{}: {what}", self.protocol)
    }
}

impl StdError for UpgradeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_error_prints_its_cause_once() {
        let error = UpgradeError::new(
            UpgradeErrorKind::Handler,
            "upper/1",
            Some("the peer sent garbage".into()),
        );
        assert_eq!(error.to_string(), "upper/1: protocol handler failed");
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("the peer sent garbage")
        );
        // As an error-chain reporter prints it: each cause once.
        let mut chain = vec![error.to_string()];
        let mut source = error.source();
        while let Some(e) = source {
            chain.push(e.to_string());
            source = e.source();
        }
        assert_eq!(
            chain.join(": "),
            "upper/1: protocol handler failed: the peer sent garbage"
        );
    }
}
