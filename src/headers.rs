//! Bounded, allocation-free parsing of the `Connection` and `Upgrade` header lists.
//!
//! RFC 9110 §5.6.1: both fields are comma-separated lists that may span several field lines
//! (§5.3), with optional whitespace around elements and empty elements that a recipient must
//! tolerate "but not so much that they could be used as a denial-of-service mechanism". We
//! examine at most [`MAX_LIST_ELEMENTS`] elements (empty ones included) per field.

use http::header::{self, HeaderMap, HeaderValue};

/// The most list elements (empty ones included) examined in one field, across all its lines.
pub(crate) const MAX_LIST_ELEMENTS: usize = 64;

/// RFC 9110 §5.6.2: `tchar`.
#[inline]
pub(crate) const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`'
        | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// RFC 9110 §5.6.2: `token = 1*tchar`.
#[inline]
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Why a list could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListError {
    /// More than [`MAX_LIST_ELEMENTS`] elements.
    TooLong,
    /// An element is not of the expected grammar.
    Invalid,
}

/// The non-empty elements of a comma list over all field lines, trimmed of OWS.
///
/// Every piece between commas counts towards [`MAX_LIST_ELEMENTS`], empty ones included.
/// Past the bound the iterator yields `Err(ListError::TooLong)` once and then ends.
pub(crate) struct List<'a> {
    lines: header::ValueIter<'a, HeaderValue>,
    /// What is left of the current line; `None` means: read the next line.
    rest: Option<&'a [u8]>,
    seen: usize,
    done: bool,
}

impl<'a> List<'a> {
    pub(crate) fn new(headers: &'a HeaderMap, name: header::HeaderName) -> Self {
        Self::of(headers.get_all(name))
    }

    /// The list over lines already looked up: one hash and probe less than [`List::new`]
    /// for a caller that looked at them before.
    pub(crate) fn of(lines: header::GetAll<'a, HeaderValue>) -> Self {
        Self {
            lines: lines.into_iter(),
            rest: None,
            seen: 0,
            done: false,
        }
    }
}

impl<'a> Iterator for List<'a> {
    type Item = Result<&'a [u8], ListError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let rest = match self.rest {
                Some(rest) => rest,
                None => self.lines.next()?.as_bytes(),
            };
            let (elem, next) = match rest.iter().position(|&b| b == b',') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            self.rest = next;
            self.seen += 1;
            if self.seen > MAX_LIST_ELEMENTS {
                self.done = true;
                return Some(Err(ListError::TooLong));
            }
            let elem = trim_ows(elem);
            if !elem.is_empty() {
                return Some(Ok(elem));
            }
        }
    }
}

/// RFC 9110 §5.6.3: `OWS = *( SP / HTAB )`.
#[inline]
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether the `Connection` field lists `option` (case-insensitive, RFC 9110 §7.6.1).
///
/// Elements past the bound are not examined.
#[cfg_attr(not(feature = "h2c"), allow(dead_code))]
pub(crate) fn connection_has(headers: &HeaderMap, option: &str) -> bool {
    List::new(headers, header::CONNECTION)
        .map_while(Result::ok)
        .any(|elem| elem.eq_ignore_ascii_case(option.as_bytes()))
}

/// Whether the `Connection` field asks for an upgrade that can be honoured: it lists
/// `upgrade` and not `close`.
///
/// `Connection: close, upgrade` contradicts itself (RFC 9112 §9.6: after `close` the
/// server closes the connection once the response is sent); such a request is served as
/// an ordinary request rather than switched.
pub(crate) fn connection_upgrades(headers: &HeaderMap) -> bool {
    let mut upgrade = false;
    for elem in List::new(headers, header::CONNECTION).map_while(Result::ok) {
        if elem.eq_ignore_ascii_case(b"close") {
            return false;
        }
        upgrade |= elem.eq_ignore_ascii_case(b"upgrade");
    }
    upgrade
}

/// One element of an `Upgrade` list: `protocol-name ["/" protocol-version]`.
pub(crate) fn parse_protocol(elem: &[u8]) -> Result<(&[u8], Option<&[u8]>), ListError> {
    let (name, version) = match elem.iter().position(|&b| b == b'/') {
        Some(i) => (&elem[..i], Some(&elem[i + 1..])),
        None => (elem, None),
    };
    if !is_token(name) || version.is_some_and(|v| !is_token(v)) {
        return Err(ListError::Invalid);
    }
    Ok((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn map(name: &header::HeaderName, lines: &[&[u8]]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for l in lines {
            m.append(name, HeaderValue::from_bytes(l).unwrap());
        }
        m
    }

    fn elems(lines: &[&[u8]]) -> Vec<Result<String, ListError>> {
        let m = map(&header::UPGRADE, lines);
        List::new(&m, header::UPGRADE)
            .map(|r| r.map(|e| String::from_utf8(e.to_vec()).unwrap()))
            .collect()
    }

    fn ok(v: &[&str]) -> Vec<Result<String, ListError>> {
        v.iter().map(|s| Ok((*s).to_owned())).collect()
    }

    #[test]
    fn splits_one_line() {
        assert_eq!(elems(&[b"foo/2, bar"]), ok(&["foo/2", "bar"]));
        assert_eq!(elems(&[b"websocket"]), ok(&["websocket"]));
    }

    #[test]
    fn joins_several_lines() {
        assert_eq!(elems(&[b"a", b"b, c", b"d"]), ok(&["a", "b", "c", "d"]));
    }

    #[test]
    fn trims_optional_whitespace() {
        assert_eq!(elems(&[b" \ta\t ,  b  "]), ok(&["a", "b"]));
        assert_eq!(
            elems(&[b"a b"]),
            ok(&["a b"]),
            "inner space is kept (and later rejected)"
        );
    }

    #[test]
    fn skips_empty_elements() {
        assert_eq!(elems(&[b"foo ,bar,"]), ok(&["foo", "bar"]));
        assert_eq!(
            elems(&[b"foo , ,bar,charlie"]),
            ok(&["foo", "bar", "charlie"])
        );
        assert_eq!(elems(&[b",,, a"]), ok(&["a"]));
        assert_eq!(elems(&[b""]), ok(&[]));
        assert_eq!(elems(&[b","]), ok(&[]));
        assert_eq!(elems(&[b",   ,"]), ok(&[]));
        assert_eq!(elems(&[b"", b"a", b""]), ok(&["a"]));
        assert_eq!(elems(&[]), ok(&[]));
    }

    #[test]
    fn bounds_the_number_of_elements() {
        let exactly = vec!["x"; MAX_LIST_ELEMENTS].join(",").into_bytes();
        assert_eq!(elems(&[&exactly]).len(), MAX_LIST_ELEMENTS);
        assert!(elems(&[&exactly]).iter().all(Result::is_ok));

        let over = [exactly.as_slice(), b",y"].concat();
        let got = elems(&[&over]);
        assert_eq!(got.last(), Some(&Err(ListError::TooLong)));
        assert_eq!(got.len(), MAX_LIST_ELEMENTS + 1);

        // Empty elements count too, across lines, so a flood of commas is bounded.
        let commas = vec![b','; 10_000];
        assert_eq!(elems(&[&commas, b"a"]), vec![Err(ListError::TooLong)]);
        let lines: Vec<&[u8]> = vec![b""; MAX_LIST_ELEMENTS + 1];
        assert_eq!(elems(&lines), vec![Err(ListError::TooLong)]);
    }

    #[test]
    fn parses_protocols() {
        assert_eq!(parse_protocol(b"foo/2"), Ok((&b"foo"[..], Some(&b"2"[..]))));
        assert_eq!(parse_protocol(b"h2c"), Ok((&b"h2c"[..], None)));
        assert_eq!(
            parse_protocol(b"HTTP/2.0"),
            Ok((&b"HTTP"[..], Some(&b"2.0"[..])))
        );
        for bad in [
            &b"foo/"[..],
            b"/2",
            b"/",
            b"a/b/c",
            b"a b",
            b"a\tb",
            b"\"quoted\"",
            b"a;b",
            b"a=b",
            b"a@b",
            b"\x01",
            b"\x7f",
            b"caf\xc3\xa9",
            b"a(b)",
            b"{a}",
        ] {
            assert_eq!(parse_protocol(bad), Err(ListError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn connection_option_is_found_case_insensitively() {
        let has = |lines: &[&[u8]]| connection_has(&map(&header::CONNECTION, lines), "upgrade");
        assert!(has(&[b"upgrade"]));
        assert!(has(&[b"Upgrade"]));
        assert!(has(&[b"UPGRADE"]));
        assert!(has(&[b"keep-alive, Upgrade"]));
        assert!(has(&[b"keep-alive", b"upgrade"]));
        assert!(has(&[b" , upgrade ,"]));
        assert!(has(&[b"Upgrade, HTTP2-Settings"]));
        assert!(!has(&[b"keep-alive"]));
        assert!(!has(&[b"upgraded"]));
        assert!(!has(&[b"up grade"]));
        assert!(!has(&[]));
        // Past the bound nothing more is examined.
        let long = [[b'x', b','].repeat(MAX_LIST_ELEMENTS), b"upgrade".to_vec()].concat();
        assert!(!has(&[&long]));
    }

    #[test]
    fn close_cancels_upgrade() {
        let upgrades = |lines: &[&[u8]]| connection_upgrades(&map(&header::CONNECTION, lines));
        assert!(upgrades(&[b"keep-alive, Upgrade"]));
        assert!(!upgrades(&[b"close, upgrade"]));
        assert!(!upgrades(&[b"Upgrade", b"Close"]));
        assert!(!upgrades(&[b"keep-alive"]));
    }
}
