//! Which upgrade offers [`H2c`] takes, from the request head alone.

use http::Request;

use super::*;

const SETTINGS: &str = "AAMAAABkAARAAAAAAAIAAAAA";

fn offer() -> http::request::Builder {
    Request::post("/")
        .header("host", "example.com")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("upgrade", "h2c")
}

fn check(req: http::request::Builder) -> Result<Bytes, &'static str> {
    H2c::new().check(&req.body(()).unwrap().into_parts().0)
}

#[test]
fn takes_a_well_formed_offer() {
    let settings = check(offer().header("http2-settings", SETTINGS)).unwrap();
    assert_eq!(settings.len(), 18);
    // Connection options in any case, spread over several lines, with other options.
    let req = Request::get("/")
        .header("host", "example.com")
        .header("connection", "keep-alive, UPGRADE")
        .header("connection", "http2-settings")
        .header("upgrade", "h2c")
        .header("http2-settings", SETTINGS)
        .header("content-length", "65535");
    assert!(check(req).is_ok());
    // No authority at all is fine: stream 1 then has no `:authority`.
    let req = Request::get("/")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("http2-settings", SETTINGS);
    assert!(check(req).is_ok());
}

#[test]
fn declines_without_exactly_one_http2_settings() {
    assert!(check(offer()).is_err());
    let two = offer()
        .header("http2-settings", SETTINGS)
        .header("http2-settings", SETTINGS);
    assert_eq!(check(two), Err("not exactly one HTTP2-Settings header"));
}

#[test]
fn declines_when_connection_does_not_name_http2_settings() {
    let req = Request::get("/")
        .header("connection", "Upgrade")
        .header("upgrade", "h2c")
        .header("http2-settings", SETTINGS);
    assert_eq!(check(req), Err("Connection does not name HTTP2-Settings"));
    let long = format!("upgrade, {}http2-settings", ",".repeat(80));
    let req = Request::get("/")
        .header("connection", long)
        .header("http2-settings", SETTINGS);
    assert_eq!(check(req), Err("Connection header too long"));
}

#[test]
fn declines_bad_settings() {
    for (value, reason) in [
        ("AAMAAABk=", "HTTP2-Settings is not unpadded base64url"),
        ("AAMA+ABk", "HTTP2-Settings is not unpadded base64url"),
        ("", "HTTP2-Settings is not unpadded base64url"),
        (
            "AAMAAA",
            "HTTP2-Settings payload length is not a multiple of 6",
        ),
        ("AAIAAAAC", "HTTP2-Settings has an invalid setting value"),
    ] {
        let req = offer().header("http2-settings", value);
        assert_eq!(check(req), Err(reason), "{value:?}");
    }
}

#[test]
fn declines_bodies_stream_1_cannot_carry() {
    let req = offer()
        .header("http2-settings", SETTINGS)
        .header("content-length", "65536");
    assert_eq!(check(req), Err("request body larger than 65535 bytes"));
    let req = offer()
        .header("http2-settings", SETTINGS)
        .header("transfer-encoding", "chunked");
    assert_eq!(check(req), Err("chunked request body"));
}

#[test]
fn declines_what_http2_would_refuse() {
    let req = Request::connect("example.com:443")
        .header("connection", "Upgrade, HTTP2-Settings")
        .header("http2-settings", SETTINGS);
    assert_eq!(check(req), Err("CONNECT"));
    let req = offer()
        .header("http2-settings", SETTINGS)
        .header("host", "bad host");
    // The first `Host` is used; add a bad one first.
    let req = {
        let mut req = req.body(()).unwrap();
        req.headers_mut()
            .insert("host", http::HeaderValue::from_static("bad host"));
        req.into_parts().0
    };
    assert_eq!(H2c::new().check(&req), Err("Host is not a valid authority"));
    let req = offer()
        .header("http2-settings", SETTINGS)
        .header("x-big", "v".repeat(MAX_HEADER_LIST_SIZE as usize));
    assert_eq!(check(req), Err("headers too large for HTTP/2"));
}

#[test]
fn accept_declines_when_the_connection_cannot_switch() {
    let req = offer().header("http2-settings", SETTINGS).body(()).unwrap();
    let decision = H2c::new().accept(&req.into_parts().0);
    assert!(matches!(decision, Decision::Decline), "{decision:?}");
}

#[test]
fn debug_shows_the_settings() {
    let h2c = H2c::new()
        .request_body(|_: Incoming| ())
        .preface_timeout(Duration::from_secs(3));
    let debug = format!("{h2c:?}");
    assert!(debug.contains("preface_timeout: 3s"), "{debug}");
    assert!(debug.contains("Some(\"()\")"), "{debug}");
}
