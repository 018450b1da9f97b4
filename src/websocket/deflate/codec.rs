//! Compressing and inflating messages (RFC 7692 §7.2), with zlib-rs.
//!
//! zlib-rs is the pure-Rust zlib that flate2's `zlib-rs` backend wraps; it is used
//! directly because flate2 cannot set zlib's `memLevel`, which the context-takeover mode
//! needs to stay small. Like flate2's default backend, miniz_oxide cannot set the window.
//!
//! Without context takeover, compressors and inflaters are taken from a small pool shared
//! by every connection for the length of one message and reset when they come back, so an
//! idle connection holds none. With context takeover, a connection keeps its own.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use zlib_rs::{Deflate, DeflateFlush, Inflate, InflateFlush, Method, Status, Strategy};

use super::Agreed;
use crate::websocket::error::{Error, ErrorKind};
use crate::websocket::utf8::check_utf8;

/// RFC 7692 §7.2.1: the end of a sync flush, taken off each compressed message and put
/// back before it is inflated.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// At most this many idle compressors, and as many inflaters, are pooled for all
/// connections together (about 370 KiB and 40 KiB each at window 15, memory level 8).
const POOL_SIZE: usize = 8;

/// The largest piece an inflation writes at once, so that the size limit is checked
/// before much more than it is produced.
const INFLATE_CHUNK: usize = 64 * 1024;

/// The permessage-deflate state of one connection.
pub(crate) struct DeflateState {
    agreed: Agreed,
    /// The compressor kept between messages (context takeover only). Boxed, as are the
    /// inflater and the pooled ones (zlib-rs's stream structs are over 100 bytes each), so
    /// that this state is 32 bytes between messages.
    compressor: Option<Box<Deflate>>,
    /// The inflater of the message being received, or the one kept between messages
    /// (context takeover only).
    inflater: Option<Box<Inflate>>,
}

impl DeflateState {
    pub(crate) fn new(agreed: Agreed) -> Self {
        Self {
            agreed,
            compressor: None,
            inflater: None,
        }
    }

    /// What the connection agreed to, with the settings it compresses with.
    pub(crate) fn agreed(&self) -> &Agreed {
        &self.agreed
    }

    /// Compresses a message, or returns `None` to send it as it is: when it is under the
    /// threshold, or (without context takeover) when compressing does not make it smaller.
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Result<Option<Bytes>, Error> {
        if payload.len() < self.agreed.threshold as usize {
            return Ok(None);
        }
        let key = self.key();
        let mut compressor = match self.compressor.take() {
            Some(c) => c,
            None => take_pooled(&COMPRESSORS, key).unwrap_or_else(|| Box::new(new_compressor(key))),
        };
        // A sync flush of the whole payload fits this: the stored-block worst case, and
        // the flush marker.
        let mut out = vec![0u8; payload.len() + payload.len() / 1000 * 5 + 64];
        let mut written = 0;
        let mut input = payload;
        loop {
            let (before_in, before_out) = (compressor.total_in(), compressor.total_out());
            let status = compressor
                .compress(input, &mut out[written..], DeflateFlush::SyncFlush)
                .map_err(|_| Error::new(ErrorKind::InvalidMessage, "compression failed"))?;
            input = &input[(compressor.total_in() - before_in) as usize..];
            written += (compressor.total_out() - before_out) as usize;
            // Done once the input is in and the flush did not fill the output.
            if input.is_empty() && written < out.len() && status != Status::BufError {
                break;
            }
            if written == out.len() {
                out.resize(out.len() * 2, 0);
            }
        }
        out.truncate(written);
        if self.agreed.server_takeover {
            self.compressor = Some(compressor);
        } else {
            compressor.reset();
            put_pooled(&COMPRESSORS, key, compressor);
        }
        debug_assert!(out.ends_with(&TAIL));
        out.truncate(out.len().saturating_sub(TAIL.len()));
        if !self.agreed.server_takeover && out.len() >= payload.len() {
            return Ok(None);
        }
        Ok(Some(out.into()))
    }

    /// Inflates one frame of a compressed message into `out`, the message so far, with the
    /// sync-flush tail when it is the last (`fin`).
    ///
    /// Fails with `1009` as soon as the message passes `max` bytes (at most one chunk of
    /// 64 KiB past it is ever written), and text with `1007` as soon as the bytes inflated
    /// so far cannot be UTF-8; `utf8_valid` carries how far `out` is known to be valid.
    pub(crate) fn inflate(
        &mut self,
        frame: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max: usize,
        utf8_valid: Option<&mut usize>,
    ) -> Result<(), Error> {
        let mut inflater = match self.inflater.take() {
            Some(i) => i,
            None if self.agreed.client_takeover => {
                Box::new(Inflate::new(false, self.agreed.client_window_bits))
            }
            None => take_pooled(&INFLATERS, INFLATER_KEY)
                .unwrap_or_else(|| Box::new(Inflate::new(false, 15))),
        };
        let result = inflate_into(&mut inflater, frame, fin, out, max, utf8_valid);
        if result.is_ok() && (!fin || self.agreed.client_takeover) {
            self.inflater = Some(inflater);
        } else if !self.agreed.client_takeover {
            inflater.reset(false);
            put_pooled(&INFLATERS, INFLATER_KEY, inflater);
        }
        result
    }

    /// Drops the message in progress (the connection failed): its inflater goes back.
    pub(crate) fn abort(&mut self) {
        if let Some(mut inflater) = self.inflater.take() {
            if !self.agreed.client_takeover {
                inflater.reset(false);
                put_pooled(&INFLATERS, INFLATER_KEY, inflater);
            }
        }
    }

    fn key(&self) -> Key {
        Key {
            window_bits: self.agreed.server_window_bits,
            mem_level: self.agreed.mem_level,
            level: self.agreed.level,
        }
    }
}

fn inflate_into(
    inflater: &mut Inflate,
    frame: &[u8],
    fin: bool,
    out: &mut BytesMut,
    max: usize,
    mut utf8_valid: Option<&mut usize>,
) -> Result<(), Error> {
    let parts: [&[u8]; 2] = [frame, if fin { &TAIL } else { &[] }];
    for mut input in parts {
        loop {
            // Room for the next piece, but never more than one byte past the limit.
            let room = max.saturating_sub(out.len()).saturating_add(1);
            let chunk = (input.len() * 4).clamp(1024, INFLATE_CHUNK).min(room);
            let start = out.len();
            out.resize(start + chunk, 0);
            let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
            let status = inflater.decompress(input, &mut out[start..], InflateFlush::NoFlush);
            let produced = (inflater.total_out() - before_out) as usize;
            input = &input[(inflater.total_in() - before_in) as usize..];
            out.truncate(start + produced);
            let status =
                status.map_err(|_| Error::new(ErrorKind::Protocol, "invalid compressed data"))?;
            if out.len() > max {
                return Err(Error::new(
                    ErrorKind::MessageTooBig,
                    "message too big once inflated",
                ));
            }
            // Done with this input once it is all in and the output was not filled.
            let done = (input.is_empty() && produced < chunk) || status == Status::StreamEnd;
            // Text is checked as it is inflated, except for what ends the message: the
            // whole message is checked once more when it is made a `Utf8Bytes`.
            if let Some(valid) = utf8_valid.as_deref_mut() {
                if !(fin && done) {
                    *valid = check_utf8(out, *valid)?;
                }
            }
            if done {
                break;
            }
            if produced == 0 && status == Status::BufError {
                break;
            }
        }
    }
    Ok(())
}

/// What a pooled compressor was made with.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    window_bits: u8,
    mem_level: u8,
    level: u8,
}

/// Pooled inflaters are all made with a window of 15 (which inflates any smaller one).
const INFLATER_KEY: Key = Key {
    window_bits: 15,
    mem_level: 0,
    level: 0,
};

static COMPRESSORS: Mutex<Vec<(Key, Box<Deflate>)>> = Mutex::new(Vec::new());
static INFLATERS: Mutex<Vec<(Key, Box<Inflate>)>> = Mutex::new(Vec::new());

fn take_pooled<T>(pool: &Mutex<Vec<(Key, T)>>, key: Key) -> Option<T> {
    let mut pool = pool
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let i = pool.iter().rposition(|(k, _)| *k == key)?;
    Some(pool.swap_remove(i).1)
}

fn put_pooled<T>(pool: &Mutex<Vec<(Key, T)>>, key: Key, item: T) {
    let mut pool = pool
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if pool.len() < POOL_SIZE {
        pool.push((key, item));
    } else {
        // Full: the oldest gives way, so that a change of settings is not starved.
        let old = std::mem::replace(&mut pool[0], (key, item));
        drop(pool);
        drop(old);
    }
}

fn new_compressor(key: Key) -> Deflate {
    Deflate::new_with_config(zlib_rs::DeflateConfig {
        level: i32::from(key.level),
        method: Method::Deflated,
        // Negative: raw deflate, no zlib header (RFC 7692 §7.2.1).
        window_bits: -i32::from(key.window_bits),
        mem_level: i32::from(key.mem_level),
        strategy: Strategy::Default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreed(takeover: bool) -> Agreed {
        Agreed {
            server_takeover: takeover,
            client_takeover: takeover,
            server_window_bits: 15,
            client_window_bits: 15,
            level: 6,
            mem_level: 8,
            threshold: 0,
        }
    }

    fn round_trip(state: &mut DeflateState, msg: &[u8]) -> Vec<u8> {
        let compressed = state.compress(msg).unwrap().expect("compressible");
        let mut out = BytesMut::new();
        state
            .inflate(&compressed, true, &mut out, usize::MAX, None)
            .unwrap();
        out.to_vec()
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        let msg = br#"{"id":1,"name":"alice","tags":["a","b","c"],"text":"hello hello hello"}"#;
        for takeover in [false, true] {
            let mut state = DeflateState::new(agreed(takeover));
            for _ in 0..3 {
                assert_eq!(round_trip(&mut state, msg), msg);
            }
            assert_eq!(state.compressor.is_some(), takeover);
            assert_eq!(state.inflater.is_some(), takeover);
        }
    }

    #[test]
    fn context_takeover_compresses_repeats_smaller() {
        let msg = br#"{"id":1,"name":"alice","tags":["a","b","c"],"text":"hello world"}"#;
        let mut state = DeflateState::new(agreed(true));
        let first = state.compress(msg).unwrap().unwrap();
        let second = state.compress(msg).unwrap().unwrap();
        assert!(
            second.len() < first.len() / 2,
            "{} {}",
            second.len(),
            first.len()
        );
    }

    #[test]
    fn inflates_in_frames_and_stops_a_bomb_at_the_limit() {
        let mut state = DeflateState::new(agreed(false));
        let big = vec![b'a'; 1 << 20];
        let compressed = state.compress(&big).unwrap().unwrap();
        assert!(compressed.len() < 2048, "{}", compressed.len());
        // In two frames.
        let mut out = BytesMut::new();
        let (a, b) = compressed.split_at(compressed.len() / 2);
        state.inflate(a, false, &mut out, usize::MAX, None).unwrap();
        state.inflate(b, true, &mut out, usize::MAX, None).unwrap();
        assert_eq!(out.len(), big.len());
        // Limited: fails with at most one byte past the limit written.
        let mut out = BytesMut::new();
        let e = state
            .inflate(&compressed, true, &mut out, 100_000, None)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MessageTooBig);
        assert!(out.len() <= 100_001, "{}", out.len());
    }

    #[test]
    fn invalid_utf8_is_found_while_inflating() {
        let mut state = DeflateState::new(agreed(false));
        let mut msg = vec![b'a'; 200_000];
        msg[1000] = 0xff;
        let compressed = state.compress(&msg).unwrap().unwrap();
        let mut out = BytesMut::new();
        let mut valid = 0;
        let e = state
            .inflate(&compressed, true, &mut out, usize::MAX, Some(&mut valid))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidUtf8);
        assert!(out.len() < 200_000, "{}", out.len());
    }

    #[test]
    fn small_and_incompressible_messages_go_uncompressed() {
        let mut state = DeflateState::new(Agreed {
            threshold: 64,
            ..agreed(false)
        });
        assert_eq!(state.compress(b"short").unwrap(), None);
        let noise = crate::test_util::noise(1000);
        assert_eq!(state.compress(&noise).unwrap(), None);
    }

    /// The memory table of the module docs: the growth of resident memory over 1 000
    /// context-takeover pairs (compressor, inflater), each after one 16 KiB message, for the
    /// setting in `DEFLATE_MEMORY` (`BITS/MEMLEVEL`; one per process, so that no memory
    /// freed by another setting is reused):
    /// `DEFLATE_MEMORY=12/5 cargo test --features deflate --lib deflate_memory -- --ignored --nocapture`
    #[test]
    #[ignore = "measures the process's memory; run alone"]
    fn deflate_memory() {
        fn rss_kib() -> f64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        const N: usize = 1000;
        let msg: Vec<u8> = (0..)
            .flat_map(|i: u32| {
                format!(r#"{{"id":{i},"name":"user{}","ok":true}},"#, i % 13).into_bytes()
            })
            .take(16 * 1024)
            .collect();
        let setting = std::env::var("DEFLATE_MEMORY").unwrap_or_else(|_| "12/5".into());
        let (bits, mem_level) = setting.split_once('/').unwrap();
        let (bits, mem_level): (u8, u8) = (bits.parse().unwrap(), mem_level.parse().unwrap());
        {
            let agreed = Agreed {
                server_window_bits: bits,
                client_window_bits: bits,
                mem_level,
                ..agreed(true)
            };
            let before = rss_kib();
            let mut compressors: Vec<DeflateState> =
                (0..N).map(|_| DeflateState::new(agreed)).collect();
            let mut compressed = Bytes::new();
            for state in &mut compressors {
                compressed = state.compress(&msg).unwrap().unwrap();
                state.inflater = None;
            }
            let middle = rss_kib();
            let mut inflaters: Vec<DeflateState> =
                (0..N).map(|_| DeflateState::new(agreed)).collect();
            for state in &mut inflaters {
                let mut out = BytesMut::new();
                state
                    .inflate(&compressed, true, &mut out, usize::MAX, None)
                    .unwrap();
            }
            let after = rss_kib();
            let (c, i) = ((middle - before) / N as f64, (after - middle) / N as f64);
            println!(
                "| {bits} / {mem_level} | {c:.1} KiB | {i:.1} KiB | {:.1} KiB |",
                c + i
            );
            drop((compressors, inflaters));
        }
    }

    #[test]
    fn the_state_between_messages_is_small() {
        let size = std::mem::size_of::<DeflateState>();
        assert!(size <= 32, "{size}");
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        let mut state = DeflateState::new(agreed(false));
        let mut out = BytesMut::new();
        let e = state
            .inflate(&[0xff, 0xff, 0xff], true, &mut out, usize::MAX, None)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Protocol);
    }
}
