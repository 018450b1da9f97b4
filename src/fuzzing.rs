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
