//! [`OriginPolicy`]: which pages may open a WebSocket, against cross-site WebSocket
//! hijacking.
//!
//! Browsers send cookies and other credentials with the WebSocket handshake whatever page
//! opens it, and the same-origin policy does not apply to WebSockets. What a browser does
//! send is `Origin` (RFC 6454, RFC 6455 §10.2): the page's scheme, host and port. The server
//! must check it.

use std::fmt;
use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::request;

use crate::ConfigError;

/// Which `Origin`s may open a WebSocket.
///
/// | policy | no `Origin` (non-browser clients) | `Origin` |
/// | --- | --- | --- |
/// | [`same_origin`](Self::same_origin) (the default) | accepted | accepted if its host and port equal the request's `Host` (or `:authority`), else `403` |
/// | [`allow_list`](Self::allow_list) | accepted | accepted if it matches one of the patterns, else `403` |
/// | [`dangerously_allow_any_origin`](Self::dangerously_allow_any_origin) | accepted | accepted |
///
/// `Origin: null` (sandboxed frames, `file:` pages, some redirects) is cross-origin: it
/// only passes the last policy. A request with more than one `Origin` is refused.
///
/// See the [module docs](crate::websocket) for an example.
#[derive(Clone, Default)]
#[must_use]
pub struct OriginPolicy {
    kind: Kind,
}

#[derive(Clone, Default)]
enum Kind {
    #[default]
    SameOrigin,
    AllowList(Arc<[Pattern]>),
    Any,
}

impl OriginPolicy {
    /// Accepts requests without `Origin`, and those whose `Origin` has the host and port of
    /// the request's `Host`. This is the default.
    ///
    /// When `Host` has no port, the default port of the `Origin`'s scheme is assumed (`80`
    /// for `http`, `443` for `https`), so both a plain server and one behind a TLS proxy
    /// work.
    pub fn same_origin() -> Self {
        Self::default()
    }

    /// Accepts requests without `Origin`, and those whose `Origin` matches one of
    /// `patterns`.
    ///
    /// A pattern is a full origin, `scheme://host[:port]`: `https://example.com` (port
    /// 443), `http://localhost:8080`. Two wildcards are allowed: a host that starts with
    /// `*.` matches any subdomain (`https://*.example.com` matches `https://a.example.com`
    /// and `https://a.b.example.com`, not `https://example.com`), and the port `*` matches
    /// any port (`http://localhost:*`). Scheme and host compare case-insensitively.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a pattern that is not of that shape (a path, a query, a `*`
    /// elsewhere, a port out of range).
    pub fn allow_list<I>(patterns: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let patterns = patterns
            .into_iter()
            .map(|p| Pattern::parse(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            kind: Kind::AllowList(patterns.into()),
        })
    }

    /// Accepts any `Origin`: any web page a user visits can then open a WebSocket to this
    /// server with that user's cookies (cross-site WebSocket hijacking).
    ///
    /// Use it only when the WebSocket carries no credentials (no cookies, no HTTP auth that
    /// a browser would add by itself), for example a public feed, or a token checked in the
    /// first message.
    pub fn dangerously_allow_any_origin() -> Self {
        Self { kind: Kind::Any }
    }

    /// Whether the request passes this policy.
    pub(crate) fn allows(&self, req: &request::Parts) -> bool {
        let mut origins = req.headers.get_all(header::ORIGIN).iter();
        let Some(origin) = origins.next() else {
            return true;
        };
        if origins.next().is_some() {
            return false;
        }
        if let Kind::Any = self.kind {
            return true;
        }
        let Some(origin) = origin.to_str().ok().and_then(Origin::parse) else {
            // `null`, or not an origin at all.
            return false;
        };
        match &self.kind {
            Kind::SameOrigin => same_origin(&origin, req),
            Kind::AllowList(patterns) => patterns.iter().any(|p| p.matches(&origin)),
            Kind::Any => true,
        }
    }
}

impl fmt::Debug for OriginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::SameOrigin => f.write_str("SameOrigin"),
            Kind::AllowList(p) => f.debug_tuple("AllowList").field(&p.len()).finish(),
            Kind::Any => f.write_str("DangerouslyAllowAnyOrigin"),
        }
    }
}

/// A serialized origin, `scheme://host[:port]` (RFC 6454 §6.2).
#[derive(Debug, PartialEq, Eq)]
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
}

impl<'a> Origin<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let (scheme, rest) = s.split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return None;
        }
        let (host, port) = split_host_port(rest)?;
        Some(Self { scheme, host, port })
    }

    /// The port, or the scheme's default.
    fn effective_port(&self) -> Option<u16> {
        self.port.or_else(|| default_port(self.scheme))
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else {
        None
    }
}

/// Splits `host[:port]` (IPv6 in brackets); `None` if it is not of that shape.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, rest) = s.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        }
    };
    if !host_ok {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// The request's own authority: `Host` over HTTP/1.1, `:authority` over HTTP/2.
fn request_host(req: &request::Parts) -> Option<(&str, Option<u16>)> {
    if let Some(authority) = req.uri.authority() {
        return split_host_port(authority.as_str());
    }
    single(&req.headers, header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(split_host_port)
}

fn single(headers: &HeaderMap, name: header::HeaderName) -> Option<&http::HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

fn same_origin(origin: &Origin<'_>, req: &request::Parts) -> bool {
    let Some((host, port)) = request_host(req) else {
        return false;
    };
    let port = port.or_else(|| default_port(origin.scheme));
    origin.host.eq_ignore_ascii_case(host) && origin.effective_port() == port
}

/// One entry of an allow-list.
#[derive(Debug)]
struct Pattern {
    scheme: Box<str>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug)]
enum HostPattern {
    Exact(Box<str>),
    /// `*.example.com`, stored as `.example.com`.
    Subdomains(Box<str>),
}

#[derive(Debug)]
enum PortPattern {
    Exact(Option<u16>),
    Any,
}

impl Pattern {
    fn parse(s: &str) -> Result<Self, ConfigError> {
        let invalid = || {
            ConfigError::invalid_header(&format!(
                "allowed origin {s:?}: expected scheme://host[:port], with an optional `*.` \
                 host prefix or `*` port"
            ))
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(invalid)?;
        let (rest, any_port) = match rest.strip_suffix(":*") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let (subdomains, rest) = match rest.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let origin = Origin::parse(&format!("{scheme}://{rest}"))
            .map(|o| (o.host.to_ascii_lowercase(), o.port, o.effective_port()))
            .ok_or_else(invalid)?;
        let (host, port, effective) = origin;
        if any_port && port.is_some() {
            return Err(invalid());
        }
        Ok(Self {
            scheme: scheme.to_ascii_lowercase().into(),
            host: if subdomains {
                HostPattern::Subdomains(format!(".{host}").into())
            } else {
                HostPattern::Exact(host.into())
            },
            port: if any_port {
                PortPattern::Any
            } else {
                PortPattern::Exact(effective)
            },
        })
    }

    fn matches(&self, origin: &Origin<'_>) -> bool {
        if !origin.scheme.eq_ignore_ascii_case(&self.scheme) {
            return false;
        }
        let host_ok = match &self.host {
            HostPattern::Exact(host) => origin.host.eq_ignore_ascii_case(host),
            HostPattern::Subdomains(suffix) => {
                origin.host.len() > suffix.len()
                    && origin.host.as_bytes()[origin.host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        };
        host_ok
            && match self.port {
                PortPattern::Any => true,
                PortPattern::Exact(port) => origin.effective_port() == port,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Version};

    fn parts(host: &str, origins: &[&str]) -> request::Parts {
        let mut req = Request::get("/ws");
        if !host.is_empty() {
            req = req.header("host", host);
        }
        for o in origins {
            req = req.header("origin", *o);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn same_origin_accepts_no_origin_and_matching_host_and_port() {
        let p = OriginPolicy::same_origin();
        assert!(p.allows(&parts("example.com", &[])));
        assert!(p.allows(&parts("example.com", &["http://example.com"])));
        assert!(p.allows(&parts("example.com", &["https://EXAMPLE.com"])));
        assert!(p.allows(&parts("example.com:80", &["http://example.com"])));
        assert!(p.allows(&parts("127.0.0.1:3000", &["http://127.0.0.1:3000"])));
        assert!(p.allows(&parts("[::1]:3000", &["http://[::1]:3000"])));
    }

    #[test]
    fn same_origin_refuses_other_hosts_ports_null_and_garbage() {
        let p = OriginPolicy::same_origin();
        assert!(!p.allows(&parts("example.com", &["http://evil.com"])));
        assert!(!p.allows(&parts("example.com:3000", &["http://example.com:3001"])));
        assert!(!p.allows(&parts("example.com:3000", &["http://example.com"])));
        assert!(!p.allows(&parts("example.com", &["http://example.com:8080"])));
        assert!(!p.allows(&parts("example.com", &["null"])));
        assert!(!p.allows(&parts("example.com", &["example.com"])));
        assert!(!p.allows(&parts("example.com", &["http://example.com/path"])));
        assert!(!p.allows(&parts("", &["http://example.com"])));
        assert!(!p.allows(&parts(
            "example.com",
            &["http://example.com", "http://example.com"]
        )));
    }

    #[test]
    fn same_origin_uses_the_http2_authority() {
        let mut req = Request::connect("https://example.com:8443/ws")
            .version(Version::HTTP_2)
            .header("origin", "https://example.com:8443")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(OriginPolicy::same_origin().allows(&req));
        req.headers
            .insert("origin", "https://other.com:8443".parse().unwrap());
        assert!(!OriginPolicy::same_origin().allows(&req));
    }

    #[test]
    fn allow_list_matches_full_origins_and_wildcards() {
        let p = OriginPolicy::allow_list([
            "https://app.example.com",
            "https://*.example.org",
            "http://localhost:*",
        ])
        .unwrap();
        let ok = |o: &str| p.allows(&parts("api.example.com", &[o]));
        assert!(ok("https://app.example.com"));
        assert!(ok("https://APP.example.com:443"));
        assert!(!ok("http://app.example.com"));
        assert!(!ok("https://app.example.com:8443"));
        assert!(ok("https://a.example.org"));
        assert!(ok("https://a.b.example.org"));
        assert!(!ok("https://example.org"));
        assert!(!ok("https://aexample.org"));
        assert!(ok("http://localhost:5173"));
        assert!(ok("http://localhost"));
        assert!(!ok("null"));
        assert!(p.allows(&parts("api.example.com", &[])));
    }

    #[test]
    fn allow_list_rejects_malformed_patterns() {
        for bad in [
            "example.com",
            "https://",
            "https://exa*mple.com",
            "https://example.com/path",
            "https://example.com:99999",
            "https://example.com:80:*",
            "https://*",
        ] {
            assert!(OriginPolicy::allow_list([bad]).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn any_origin_accepts_everything() {
        let p = OriginPolicy::dangerously_allow_any_origin();
        assert!(p.allows(&parts("example.com", &["null"])));
        assert!(p.allows(&parts("example.com", &["http://evil.com"])));
    }
}
