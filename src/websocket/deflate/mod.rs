//! permessage-deflate (RFC 7692): [`DeflateConfig`], the negotiation in `negotiate.rs`,
//! and the compression and inflation of messages in `codec.rs`.
//!
//! See the [module docs](crate::websocket#permessage-deflate) for the modes and their
//! memory.

mod codec;
mod negotiate;

pub(crate) use self::codec::DeflateState;
pub(crate) use self::negotiate::negotiate;

/// The permessage-deflate extension (RFC 7692) of a
/// [`WebSocketHandler`](super::WebSocketHandler), turned on with
/// [`WebSocketHandler::deflate`](super::WebSocketHandler::deflate).
///
/// Two modes:
///
/// - [`new`](Self::new), the default: no context takeover on either side. The server
///   answers `server_no_context_takeover` and `client_no_context_takeover` (RFC 7692 lets it
///   add both), so each message is compressed and inflated on its own, and no compressor or
///   inflater lives between messages: they come from a small pool shared by all
///   connections for the length of one message. An idle connection costs what it costs
///   without deflate.
/// - [`context_takeover`](Self::context_takeover): each side keeps its compression
///   context between messages, which compresses streams of similar messages much better,
///   at the cost of a compressor and an inflater per connection (see the
///   [table](crate::websocket#permessage-deflate)). The client keeps its context only if it
///   offered `client_max_window_bits`, so that its window can be bounded; otherwise it is
///   asked not to.
///
/// See the [module docs](crate::websocket#permessage-deflate) for an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct DeflateConfig {
    pub(crate) context_takeover: bool,
    pub(crate) window_bits: u8,
    pub(crate) mem_level: u8,
    pub(crate) level: u8,
    pub(crate) threshold: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl DeflateConfig {
    /// No context takeover on either side: nothing is kept between messages.
    ///
    /// Defaults: window 15 bits, memory level 8 and compression level 6 (zlib's), used only
    /// while a message is compressed; messages under 64 bytes are sent uncompressed.
    pub fn new() -> Self {
        Self {
            context_takeover: false,
            window_bits: 15,
            mem_level: 8,
            level: 6,
            threshold: 64,
        }
    }

    /// Context takeover: both sides keep their compression context between messages.
    ///
    /// Defaults: window 12 bits and memory level 5 (as Python `websockets`), compression
    /// level 6; messages under 64 bytes are sent uncompressed.
    pub fn context_takeover() -> Self {
        Self {
            context_takeover: true,
            window_bits: 12,
            mem_level: 5,
            ..Self::new()
        }
    }

    /// The largest LZ77 window, as a power of two: 9 to 15 (8 is taken as 9, which zlib
    /// needs). With context takeover it also bounds the client's window when the client
    /// allows it (`client_max_window_bits`).
    ///
    /// The default value is 15, or 12 with [`context_takeover`](Self::context_takeover).
    pub fn window_bits(mut self, bits: u8) -> Self {
        self.window_bits = bits.clamp(9, 15);
        self
    }

    /// zlib's `memLevel`, 1 to 9: the size of the compressor's hash table and buffers.
    ///
    /// The default value is 8, or 5 with [`context_takeover`](Self::context_takeover).
    pub fn mem_level(mut self, level: u8) -> Self {
        self.mem_level = level.clamp(1, 9);
        self
    }

    /// The compression level, 0 (none) to 9 (best).
    ///
    /// The default value is 6.
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.min(9);
        self
    }

    /// Messages shorter than this many bytes are sent uncompressed (RFC 7692 lets each
    /// message choose). Whatever the size, received messages may be either.
    ///
    /// The default value is 64.
    pub fn threshold(mut self, bytes: u32) -> Self {
        self.threshold = bytes;
        self
    }
}

/// What one connection negotiated, with the settings it compresses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The server keeps its compressor between messages.
    pub(crate) server_takeover: bool,
    /// The client keeps its context: the server keeps its inflater between messages.
    pub(crate) client_takeover: bool,
    /// The window the server compresses with, 9..=15.
    pub(crate) server_window_bits: u8,
    /// The window the server inflates with, 9..=15.
    pub(crate) client_window_bits: u8,
    pub(crate) level: u8,
    pub(crate) mem_level: u8,
    pub(crate) threshold: u32,
}
