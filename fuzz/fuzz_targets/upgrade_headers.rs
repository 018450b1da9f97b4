//! Fuzzes the `Connection` / `Upgrade` list parsing and protocol selection.
//!
//! Input: field lines separated by `\n`; a line starting with `c` is a `Connection` value,
//! any other an `Upgrade` value (the first byte is dropped). The first input byte picks the
//! selection order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_upgrade::{Registry, UpgradeRequest, UpgradedIo, handler_fn};

fn registry() -> Registry {
    let mut r = Registry::new();
    for token in ["upper/1", "websocket", "h2c", "Foo/A.b"] {
        r = r.protocol(handler_fn(token, |_io: UpgradedIo, _req: UpgradeRequest| async {})).unwrap();
    }
    r
}

/// An independent, naive reading of the `Upgrade` list: the offered elements, trimmed.
fn offers(values: &[&[u8]]) -> Vec<Vec<u8>> {
    values
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|e| e.trim_ascii().to_vec())
        .filter(|e| !e.is_empty())
        .collect()
}

fn matches(token: &str, offer: &[u8]) -> bool {
    let (tn, tv) = token.split_once('/').map_or((token, None), |(n, v)| (n, Some(v)));
    let offer = String::from_utf8_lossy(offer);
    let (on, ov) = offer.split_once('/').map_or((&*offer, None), |(n, v)| (n, Some(v)));
    tn.eq_ignore_ascii_case(on) && tv == ov
}

fuzz_target!(|data: &[u8]| {
    let Some((&order, rest)) = data.split_first() else { return };
    let mut req = http::Request::get("/");
    let mut upgrades = Vec::new();
    for line in rest.split(|&b| b == b'\n') {
        let Some((&kind, value)) = line.split_first() else { continue };
        if http::HeaderValue::from_bytes(value).is_err() {
            continue;
        }
        if kind == b'c' {
            req = req.header(http::header::CONNECTION, value);
        } else {
            req = req.header(http::header::UPGRADE, value);
            upgrades.push(value);
        }
    }
    let Ok(req) = req.body(()) else { return };
    let registry = registry();
    if let Ok(Some(token)) = tower_upgrade::fuzzing::select(&registry, &req, order & 1 == 1) {
        // RFC 9110 §7.8: never a protocol the client did not offer.
        assert!(offers(&upgrades).iter().any(|o| matches(&token, o)), "{token} not offered");
    }
});
