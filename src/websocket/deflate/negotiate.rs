//! RFC 7692 §5 and §7.1: reading the client's `permessage-deflate` offers from
//! `Sec-WebSocket-Extensions` and answering the first acceptable one.
//!
//! The header is an RFC 6455 §9.1 extension list: comma-separated elements, each a name
//! followed by `; param` or `; param=value` (a token or a quoted string), over one or more
//! field lines. An offer whose syntax is broken, or which has an unknown, repeated or
//! invalid parameter, is declined by leaving it out of the answer (RFC 7692 §7); the
//! handshake itself goes on.

use http::HeaderValue;
use http::header::{self, HeaderMap};

use super::{Agreed, DeflateConfig};

/// One `permessage-deflate` offer, its parameters checked (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// `server_max_window_bits=N`, 8..=15.
    server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`: `Some(None)` for the valueless form (the client
    /// supports the parameter, and takes any value in the answer).
    client_max_window_bits: Option<Option<u8>>,
}

/// Picks the first acceptable `permessage-deflate` offer in the request: the parameters
/// agreed, and the value of `Sec-WebSocket-Extensions` to answer with.
pub(crate) fn negotiate(
    headers: &HeaderMap,
    config: &DeflateConfig,
) -> Option<(Agreed, HeaderValue)> {
    headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .flat_map(|line| elements(line.as_bytes()))
        .filter_map(parse_offer)
        .find_map(|offer| accept(&offer, config))
}

/// Answers one offer with the server's configuration, or declines it (`None`).
pub(crate) fn accept(offer: &Offer, config: &DeflateConfig) -> Option<(Agreed, HeaderValue)> {
    let mut answer = String::from("permessage-deflate");
    // The server's side: without context takeover unless both sides want it.
    let server_takeover = config.context_takeover && !offer.server_no_context_takeover;
    if !server_takeover {
        answer.push_str("; server_no_context_takeover");
    }
    let mut server_bits = config.window_bits;
    if let Some(offered) = offer.server_max_window_bits {
        // Accepted with the value offered (RFC 7692 §7.1.2.1: the same or smaller); an
        // offered 8 is compressed with 9, which zlib needs and whose distances (at most
        // 512 - 262 bytes) still fit a window of 256.
        server_bits = server_bits.min(offered.max(9));
        answer.push_str(&format!("; server_max_window_bits={offered}"));
    } else if server_takeover && server_bits < 15 {
        // RFC 7692 §7.1.2.1: the server may limit its own window unasked.
        answer.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    // The client's side: its context is kept only in the context-takeover mode, and only
    // when its window can be bounded to the configured one; otherwise the server asks it
    // to drop its context (RFC 7692 §7.1.1.2 lets the server add this unasked), so that
    // nothing but the configured window ever lives between messages.
    let mut client_bits = 15;
    let client_takeover = config.context_takeover
        && !offer.client_no_context_takeover
        && offer.client_max_window_bits.is_some();
    if client_takeover {
        let offered = offer.client_max_window_bits.flatten().unwrap_or(15);
        let bits = offered.min(config.window_bits);
        client_bits = bits.max(9);
        answer.push_str(&format!("; client_max_window_bits={bits}"));
    } else {
        answer.push_str("; client_no_context_takeover");
    }
    let value = HeaderValue::try_from(answer).ok()?;
    Some((
        Agreed {
            server_takeover,
            client_takeover,
            server_window_bits: server_bits,
            client_window_bits: client_bits,
            level: config.level,
            mem_level: config.mem_level,
            threshold: config.threshold,
        },
        value,
    ))
}

/// The elements of one field line, split at the commas outside quoted strings. Each is
/// returned with its surrounding whitespace; broken quoting yields one last element that
/// `parse_offer` refuses.
fn elements(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let line = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, &b) in line.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == b',' && !quoted {
                rest = Some(&line[i + 1..]);
                return Some(&line[..i]);
            }
        }
        rest = None;
        Some(line)
    })
}

/// Parses one element as a `permessage-deflate` offer; `None` for another extension, a
/// broken element, or an offer that must be declined.
pub(crate) fn parse_offer(element: &[u8]) -> Option<Offer> {
    let mut params = Params { rest: element };
    let name = params.token()?;
    if !name.eq_ignore_ascii_case(b"permessage-deflate") {
        return None;
    }
    let mut offer = Offer::default();
    let mut seen = 0u8;
    while params.skip(b';') {
        let name = params.token()?;
        let value = if params.skip(b'=') {
            Some(params.value()?)
        } else {
            None
        };
        // RFC 7692 §7: parameter names as defined, each at most once.
        let (bit, ok) = if name.eq_ignore_ascii_case(b"server_no_context_takeover") {
            offer.server_no_context_takeover = true;
            (1, value.is_none())
        } else if name.eq_ignore_ascii_case(b"client_no_context_takeover") {
            offer.client_no_context_takeover = true;
            (2, value.is_none())
        } else if name.eq_ignore_ascii_case(b"server_max_window_bits") {
            offer.server_max_window_bits = value.as_deref().and_then(window_bits);
            (4, offer.server_max_window_bits.is_some())
        } else if name.eq_ignore_ascii_case(b"client_max_window_bits") {
            let bits = value.as_deref().map(window_bits);
            offer.client_max_window_bits = Some(bits.flatten());
            (8, bits != Some(None))
        } else {
            return None;
        };
        if !ok || seen & bit != 0 {
            return None;
        }
        seen |= bit;
    }
    params.end().then_some(offer)
}

/// RFC 7692 §7.1.2: `1*DIGIT` with no leading zero, from 8 to 15.
fn window_bits(value: &[u8]) -> Option<u8> {
    match value {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// A cursor over the parameters of one element.
struct Params<'a> {
    rest: &'a [u8],
}

impl<'a> Params<'a> {
    fn trim(&mut self) {
        while let [b' ' | b'\t', rest @ ..] = self.rest {
            self.rest = rest;
        }
    }

    /// Skips whitespace and `c`, if it comes next.
    fn skip(&mut self, c: u8) -> bool {
        self.trim();
        match self.rest.split_first() {
            Some((&b, rest)) if b == c => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    /// An RFC 9110 token, after whitespace.
    fn token(&mut self) -> Option<&'a [u8]> {
        self.trim();
        let end = self
            .rest
            .iter()
            .position(|&b| !crate::headers::is_tchar(b))
            .unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(token)
    }

    /// A token or a quoted string (RFC 6455 §9.1: whose unescaped content must itself
    /// be a token), unescaped.
    fn value(&mut self) -> Option<std::borrow::Cow<'a, [u8]>> {
        self.trim();
        let Some(quoted) = self.rest.strip_prefix(b"\"") else {
            return self.token().map(std::borrow::Cow::Borrowed);
        };
        let mut out = Vec::new();
        let mut iter = quoted.iter().enumerate();
        while let Some((i, &b)) = iter.next() {
            match b {
                b'"' => {
                    self.rest = &quoted[i + 1..];
                    let token = !out.is_empty() && out.iter().all(|&b| crate::headers::is_tchar(b));
                    return token.then_some(std::borrow::Cow::Owned(out));
                }
                b'\\' => out.push(*iter.next()?.1),
                _ => out.push(b),
            }
        }
        None
    }

    /// Only whitespace is left.
    fn end(mut self) -> bool {
        self.trim();
        self.rest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(s: &str) -> Option<Offer> {
        parse_offer(s.as_bytes())
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(header::SEC_WEBSOCKET_EXTENSIONS, line.parse().unwrap());
        }
        h
    }

    /// The answer to `lines` with `config`, or `None` when every offer is declined.
    fn answer(lines: &[&str], config: &DeflateConfig) -> Option<(Agreed, String)> {
        negotiate(&headers(lines), config).map(|(a, v)| (a, v.to_str().unwrap().to_owned()))
    }

    #[test]
    fn parses_every_parameter_and_the_valueless_forms() {
        assert_eq!(offer("permessage-deflate"), Some(Offer::default()));
        assert_eq!(
            offer(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10; client_max_window_bits=12"
            ),
            Some(Offer {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: Some(10),
                client_max_window_bits: Some(Some(12)),
            })
        );
        assert_eq!(
            offer("permessage-deflate;client_max_window_bits")
                .unwrap()
                .client_max_window_bits,
            Some(None)
        );
        // Names compare case-insensitively; whitespace around `;` and `=` is allowed.
        assert_eq!(
            offer("PerMessage-Deflate ;\tSERVER_MAX_WINDOW_BITS = 9 ")
                .unwrap()
                .server_max_window_bits,
            Some(9)
        );
    }

    #[test]
    fn parses_quoted_values() {
        assert_eq!(
            offer(r#"permessage-deflate; server_max_window_bits="10""#)
                .unwrap()
                .server_max_window_bits,
            Some(10)
        );
        assert_eq!(
            offer(r#"permessage-deflate; client_max_window_bits="1\5""#)
                .unwrap()
                .client_max_window_bits,
            Some(Some(15))
        );
        // A quoted value must still be a token, and be closed.
        assert_eq!(
            offer(r#"permessage-deflate; server_max_window_bits="1 0""#),
            None
        );
        assert_eq!(
            offer(r#"permessage-deflate; server_max_window_bits="10"#),
            None
        );
        assert_eq!(
            offer(r#"permessage-deflate; server_max_window_bits="""#),
            None
        );
    }

    #[test]
    fn declines_unknown_repeated_and_invalid_parameters() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; foo=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"x\"",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=",
            "permessage-deflate;",
            "permessage-deflate; ; server_no_context_takeover",
            "permessage-deflate server_no_context_takeover",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(offer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn accepts_the_first_acceptable_of_several_offers_and_lines() {
        let config = DeflateConfig::new();
        // The first offer is declined (unknown parameter), the second is taken.
        let (_, value) = answer(
            &[
                "foo, permessage-deflate; bogus, x-webkit-deflate-frame",
                "permessage-deflate; server_max_window_bits=10, permessage-deflate",
            ],
            &config,
        )
        .unwrap();
        assert_eq!(
            value,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; \
             client_no_context_takeover"
        );
        // Commas inside quotes do not split.
        let (_, value) = answer(
            &[r#"foo; a="x,y", permessage-deflate; client_max_window_bits"#],
            &config,
        )
        .unwrap();
        assert_eq!(
            value,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        // Nothing acceptable: no answer, and the caller leaves the header out.
        assert!(answer(&["permessage-deflate; bogus", "foo"], &config).is_none());
        assert!(answer(&[], &config).is_none());
    }

    #[test]
    fn default_mode_keeps_no_context_on_either_side() {
        let (agreed, value) = answer(&["permessage-deflate"], &DeflateConfig::new()).unwrap();
        assert_eq!(
            value,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(!agreed.server_takeover && !agreed.client_takeover);
        assert_eq!(agreed.server_window_bits, 15);
        assert_eq!(agreed.client_window_bits, 15);
    }

    #[test]
    fn a_window_of_8_is_answered_8_and_used_as_9() {
        let (agreed, value) = answer(
            &["permessage-deflate; server_max_window_bits=8"],
            &DeflateConfig::new(),
        )
        .unwrap();
        assert!(value.contains("server_max_window_bits=8"), "{value}");
        assert_eq!(agreed.server_window_bits, 9);
        let (agreed, value) = answer(
            &["permessage-deflate; client_max_window_bits=8"],
            &DeflateConfig::context_takeover(),
        )
        .unwrap();
        assert!(value.contains("client_max_window_bits=8"), "{value}");
        assert_eq!(agreed.client_window_bits, 9);
        assert!(agreed.client_takeover);
    }

    #[test]
    fn context_takeover_mode_bounds_both_windows() {
        let config = DeflateConfig::context_takeover();
        // The client can bound its window: both contexts kept, both windows 12.
        let (agreed, value) =
            answer(&["permessage-deflate; client_max_window_bits"], &config).unwrap();
        assert_eq!(
            value,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        );
        assert!(agreed.server_takeover && agreed.client_takeover);
        assert_eq!(
            (agreed.server_window_bits, agreed.client_window_bits),
            (12, 12)
        );
        // A smaller offer wins.
        let (agreed, value) = answer(
            &["permessage-deflate; client_max_window_bits=10; server_max_window_bits=11"],
            &config,
        )
        .unwrap();
        assert_eq!(
            value,
            "permessage-deflate; server_max_window_bits=11; client_max_window_bits=10"
        );
        assert_eq!(
            (agreed.server_window_bits, agreed.client_window_bits),
            (11, 10)
        );
        // The client cannot bound its window: it is asked to drop its context instead.
        let (agreed, value) = answer(&["permessage-deflate"], &config).unwrap();
        assert_eq!(
            value,
            "permessage-deflate; server_max_window_bits=12; client_no_context_takeover"
        );
        assert!(agreed.server_takeover && !agreed.client_takeover);
        // The client's own no-context-takeover requests are honoured.
        let (agreed, value) = answer(
            &["permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"],
            &config,
        )
        .unwrap();
        assert_eq!(
            value,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert!(!agreed.server_takeover && !agreed.client_takeover);
    }
}
