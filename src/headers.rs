//! Bounded, allocation-free parsing of the `Connection` and `Upgrade` header lists.
//!
//! RFC 9110 §5.6.1: both fields are comma-separated lists that may span several field lines
//! (§5.3), with optional whitespace around elements and empty elements that a recipient must
//! tolerate "but not so much that they could be used as a denial-of-service mechanism". We
//! examine at most [`MAX_LIST_ELEMENTS`] elements (empty ones included) per field.

use http::header::{self, HeaderMap, HeaderValue};

use crate::token::UpgradeToken;

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
        Self {
            lines: headers.get_all(name).iter(),
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
/// Elements past the bound are not examined; an invalid element is skipped.
pub(crate) fn connection_has(headers: &HeaderMap, option: &str) -> bool {
    List::new(headers, header::CONNECTION)
        .map_while(Result::ok)
        .any(|elem| elem.eq_ignore_ascii_case(option.as_bytes()))
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

/// Whether a parsed offer names `token` (name case-insensitive, version exact).
#[inline]
pub(crate) fn offer_matches(token: &UpgradeToken, name: &[u8], version: Option<&[u8]>) -> bool {
    token.name().as_bytes().eq_ignore_ascii_case(name)
        && token.version().map(str::as_bytes) == version
}
