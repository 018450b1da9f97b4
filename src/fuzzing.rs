//! Entry points for the fuzz targets in `fuzz/` (built only with `--cfg fuzzing`, which
//! cargo-fuzz sets). Not part of the API.

use http::Request;

use crate::registry::{Registry, Selection};

/// Classifies `req` against `registry` and returns the selected token, if any, or the
/// kind of outcome.
pub fn select<B>(
    registry: &Registry,
    req: &Request<B>,
    server_order: bool,
) -> Result<Option<String>, &'static str> {
    match registry.select(req, server_order) {
        Selection::None => Err("none"),
        Selection::Unmatched => Ok(None),
        Selection::Invalid(_) => Err("invalid"),
        Selection::Selected { index, .. } => {
            Ok(Some(registry.entry(index).token.as_str().to_owned()))
        }
    }
}

/// Decodes an `HTTP2-Settings` value (RFC 7540 §3.2.1) into a SETTINGS payload.
#[cfg(feature = "h2c")]
pub fn h2c_settings(value: &[u8]) -> Option<bytes::Bytes> {
    crate::h2c::settings::decode(value).ok()
}

/// Builds the client-side stream 1 frames (HEADERS, CONTINUATION, DATA) for a request.
#[cfg(feature = "h2c")]
pub fn h2c_stream1(parts: &http::request::Parts, body: &[u8]) -> bytes::Bytes {
    crate::h2c::frames::stream1(parts, body)
}
