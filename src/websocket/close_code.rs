//! The close status codes of RFC 6455 §7.4.1 that an endpoint may send.

/// Normal closure: the purpose of the connection has been fulfilled.
pub const NORMAL: u16 = 1000;
/// The endpoint is going away (server shutting down, browser leaving the page).
pub const AWAY: u16 = 1001;
/// The peer broke the protocol.
pub const PROTOCOL: u16 = 1002;
/// The endpoint received a kind of data it cannot accept.
pub const UNSUPPORTED: u16 = 1003;
/// A text message was not valid UTF-8, or data did not fit the message type.
pub const INVALID: u16 = 1007;
/// A message broke the endpoint's policy.
pub const POLICY: u16 = 1008;
/// A message was too big to process.
pub const SIZE: u16 = 1009;
/// The client expected an extension the server did not negotiate.
pub const EXTENSION: u16 = 1010;
/// The server met an unexpected condition.
pub const ERROR: u16 = 1011;
/// The server is restarting.
pub const RESTART: u16 = 1012;
/// The server is overloaded; try again later.
pub const AGAIN: u16 = 1013;

/// RFC 6455 §7.4: the codes a close frame may carry. 1004 is reserved, 1005, 1006 and 1015
/// must never be sent, the rest of 0-2999 is unassigned (1012 and 1013 have been
/// registered since, §7.4.2), 3000-4999 are for libraries and applications.
pub(crate) fn allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_allowed_are_those_of_rfc_6455() {
        let count = (0..=u16::MAX).filter(|c| allowed(*c)).count();
        assert_eq!(count, 4 + 7 + 2000);
        for code in [1000, 1003, 1007, 1011, 1012, 1013, 3000, 3999, 4000, 4999] {
            assert!(allowed(code), "{code}");
        }
        for code in [
            0,
            999,
            1004,
            1005,
            1006,
            1014,
            1015,
            1016,
            2999,
            5000,
            u16::MAX,
        ] {
            assert!(!allowed(code), "{code}");
        }
    }
}
