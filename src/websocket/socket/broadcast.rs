//! Sending a [`PreparedMessage`]: the frame encoded once is written as it is, and with
//! permessage-deflate without context takeover, the frame compressed once.

use std::future::poll_fn;

use tokio::io::{AsyncRead, AsyncWrite};

use super::write::Outgoing;
use super::{State, WebSocket};
use crate::websocket::error::Error;
use crate::websocket::prepared::PreparedMessage;

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Sends a [`PreparedMessage`], and flushes it: what [`send`](Self::send) does with the
    /// same message, but the frame is the one encoded when the message was prepared, shared
    /// by every socket it goes to (no payload copy, no frame head to format).
    ///
    /// With permessage-deflate, a socket without server context takeover sends the frame
    /// compressed once for all sockets with its settings, and a socket with it compresses
    /// with its own compressor, as `send` does; see [`PreparedMessage`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as `send`: the frame is kept in the socket, not in the future. If the
    /// future is dropped before it completes, the message may have been sent or not, but the
    /// rest of its frame is written before any other frame (including the pongs and close
    /// replies the socket writes itself), so the stream stays well-formed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::AlreadyClosed`](crate::websocket::ErrorKind::AlreadyClosed) after a
    /// close frame was sent or received, [`ErrorKind::Io`](crate::websocket::ErrorKind::Io)
    /// if writing failed (the socket is then closed).
    pub async fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        // `send`'s steps, with the prepared frame queued.
        poll_fn(|cx| self.poll_pending(cx)).await?;
        self.queue_prepared(msg)?;
        poll_fn(|cx| self.poll_pending(cx)).await.inspect_err(|_| {
            self.state = State::Closed;
        })
    }

    /// Makes `msg` the frame in flight, writing nothing yet; the previous frame must be
    /// written ([`poll_pending`](Self::poll_pending) ready). [`queue`](Self::queue) for a
    /// prepared message.
    #[inline]
    pub(super) fn queue_prepared(&mut self, msg: &PreparedMessage) -> Result<(), Error> {
        self.ensure_open()?;
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &mut self.deflate {
            if let Some(out) = compressed(deflate, msg)? {
                self.out = Some(out);
                return Ok(());
            }
        }
        // A reference to the shared frame: written from it with one write, no copy.
        self.out = Some(Outgoing::encoded(msg.frame().clone()));
        Ok(())
    }
}

/// The frame to send for `msg` on a connection with permessage-deflate; `None` to send it
/// uncompressed: under the threshold, or when compressing would not shrink it.
#[cfg(feature = "deflate")]
fn compressed(
    deflate: &mut crate::websocket::deflate::DeflateState,
    msg: &PreparedMessage,
) -> Result<Option<Outgoing>, Error> {
    let agreed = *deflate.agreed();
    if agreed.server_takeover {
        // The compressor's window holds what this connection sent before: nothing can be
        // shared. Compressed as `send` compresses (the threshold included), so that the
        // bytes on the wire are the same.
        let Some(payload) = deflate.compress(msg.as_bytes())? else {
            return Ok(None);
        };
        return Ok(Some(Outgoing::message(msg.opcode(), payload, true)));
    }
    // RFC 7692 lets each message be compressed or not: small ones are not.
    if msg.len() < agreed.threshold as usize {
        return Ok(None);
    }
    Ok(msg.compressed_frame(&agreed)?.map(Outgoing::encoded))
}

#[cfg(test)]
mod tests {

    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, DuplexStream, duplex};

    use super::*;
    use crate::websocket::error::ErrorKind;
    use crate::websocket::{Message, WebSocketConfig};

    fn pair() -> (WebSocket<DuplexStream>, DuplexStream) {
        let (a, b) = duplex(1 << 20);
        (WebSocket::from_raw_socket(a, WebSocketConfig::default()), b)
    }

    /// Everything the peer has received so far (the writes are done and flushed).
    async fn drain(peer: &mut DuplexStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0; 1 << 20];
        loop {
            tokio::select! {
                biased;
                n = peer.read(&mut buf) => {
                    let n = n.unwrap();
                    out.extend_from_slice(&buf[..n]);
                    if n == 0 { break; }
                }
                () = std::future::ready(()) => break,
            }
        }
        out
    }

    fn messages() -> Vec<Message> {
        let mut out = Vec::new();
        for len in [0, 1, 100, 125, 126, 1000, 4096, 0xFFFF, 0x1_0000, 70_000] {
            out.push(Message::text("é".repeat(len / 2) + &"a".repeat(len % 2)));
            out.push(Message::binary(vec![7u8; len]));
        }
        out
    }

    #[tokio::test]
    async fn the_bytes_on_the_wire_are_those_of_send() {
        let (mut ws, mut peer) = pair();
        for msg in messages() {
            ws.send(msg.clone()).await.unwrap();
            let sent = drain(&mut peer).await;
            let prepared = PreparedMessage::try_from(msg.clone()).unwrap();
            ws.send_prepared(&prepared).await.unwrap();
            // And again: the frame is shared, not used up.
            ws.send_prepared(&prepared).await.unwrap();
            let both = drain(&mut peer).await;
            assert_eq!(both.len(), 2 * sent.len(), "{}", msg.as_bytes().len());
            assert_eq!(both[..sent.len()], sent[..]);
            assert_eq!(both[sent.len()..], sent[..]);
            assert_eq!(prepared.as_message(), &msg);
            assert_eq!(prepared.len(), msg.as_bytes().len());
            assert_eq!(Message::from(prepared), msg);
        }
    }

    #[tokio::test]
    async fn a_closed_socket_refuses_it() {
        let (mut ws, mut peer) = pair();
        ws.send(Message::Close(None)).await.unwrap();
        let e = ws
            .send_prepared(&PreparedMessage::text("late"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyClosed);
        // Only the close frame went out.
        assert_eq!(drain(&mut peer).await, [0x88, 0]);
    }

    #[tokio::test]
    async fn a_failed_write_closes_the_socket() {
        let (mut ws, peer) = pair();
        drop(peer);
        let msg = PreparedMessage::binary(Bytes::from_static(b"x"));
        let e = ws.send_prepared(&msg).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(ws.is_closed());
    }

    #[test]
    fn control_messages_cannot_be_prepared() {
        for msg in [
            Message::Ping(Bytes::new()),
            Message::Pong(Bytes::new()),
            Message::Close(None),
        ] {
            let e = PreparedMessage::try_from(msg).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidMessage);
        }
    }

    #[test]
    fn is_cheap_to_share() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<PreparedMessage>();
        let msg = PreparedMessage::text("hi");
        let copy = msg.clone();
        assert!(std::ptr::eq(copy.as_bytes(), msg.as_bytes()));
        assert_eq!(msg.as_text(), Some("hi"));
        assert!(msg.is_text() && !msg.is_binary() && !msg.is_empty());
        assert_eq!(msg.frame()[..], [0x81, 2, b'h', b'i']);
    }

    /// A `send_prepared` cancelled half-way finishes its frame before any other.
    #[tokio::test]
    async fn a_cancelled_send_finishes_its_frame_first() {
        let (a, mut peer) = duplex(64);
        let mut ws = WebSocket::from_raw_socket(a, WebSocketConfig::default());
        let msg = PreparedMessage::binary(vec![b'a'; 1000]);
        let cancelled =
            tokio::time::timeout(std::time::Duration::from_millis(20), ws.send_prepared(&msg))
                .await;
        assert!(cancelled.is_err(), "only 64 bytes fit");
        let reader = tokio::spawn(async move {
            let mut got = vec![0; 4 + 1000 + 4 + 1000];
            peer.read_exact(&mut got).await.unwrap();
            got
        });
        ws.send_prepared(&msg).await.unwrap();
        let got = reader.await.unwrap();
        let one = msg.frame();
        assert_eq!(got[..one.len()], one[..]);
        assert_eq!(got[one.len()..], one[..]);
    }

    #[cfg(feature = "deflate")]
    mod deflate {
        use super::*;
        use crate::websocket::deflate::Agreed;

        fn agreed(takeover: bool, window_bits: u8) -> Agreed {
            Agreed {
                server_takeover: takeover,
                client_takeover: takeover,
                server_window_bits: window_bits,
                client_window_bits: 15,
                level: 6,
                mem_level: 8,
                threshold: 64,
            }
        }

        fn deflate_pair(agreed: Agreed) -> (WebSocket<DuplexStream>, DuplexStream) {
            let (mut ws, peer) = pair();
            ws.deflate = Some(Box::new(crate::websocket::deflate::DeflateState::new(
                agreed,
            )));
            (ws, peer)
        }

        /// The frames in `bytes` (server frames: unmasked, unfragmented): RSV1 and payload.
        fn frames(mut bytes: &[u8]) -> Vec<(bool, Vec<u8>)> {
            let mut out = Vec::new();
            while !bytes.is_empty() {
                let head = crate::websocket::frame::parse(bytes).unwrap().unwrap();
                assert!(head.fin);
                let start = usize::from(head.size);
                let end = start + head.len as usize;
                out.push((head.rsv == 0x40, bytes[start..end].to_vec()));
                bytes = &bytes[end..];
            }
            out
        }

        /// What a client inflater makes of one compressed message (RFC 7692 §7.2.2: the
        /// sync-flush tail appended), with a fresh window each time (no context takeover).
        fn inflate(payload: &[u8]) -> Vec<u8> {
            let mut inflater = flate2::Decompress::new(false);
            let mut input = payload.to_vec();
            input.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut out = Vec::with_capacity(1 << 20);
            inflater
                .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
                .unwrap();
            out
        }

        fn json(len: usize) -> String {
            let mut s = String::new();
            let mut i = 0;
            while s.len() < len {
                s.push_str(&format!(r#"{{"id":{i},"user":"ana","text":"hello"}},"#));
                i += 1;
            }
            s.truncate(len);
            s
        }

        #[tokio::test]
        async fn no_context_takeover_compresses_once_and_decodes() {
            let text = json(1000);
            let msg = PreparedMessage::text(text.clone());
            // Three sockets with one setting, one with another window.
            let mut sockets: Vec<_> = [15, 15, 15, 10]
                .into_iter()
                .map(|bits| deflate_pair(agreed(false, bits)))
                .collect();
            let mut wires = Vec::new();
            for (ws, peer) in &mut sockets {
                ws.send_prepared(&msg).await.unwrap();
                wires.push(drain(peer).await);
            }
            assert_eq!(msg.compressed_variants(), 2);
            for wire in &wires {
                let frames = frames(wire);
                assert_eq!(frames.len(), 1);
                let (rsv1, payload) = &frames[0];
                assert!(rsv1);
                assert!(payload.len() < text.len() / 2, "{}", payload.len());
                assert_eq!(inflate(payload), text.as_bytes());
            }
            assert_eq!(wires[0], wires[1]);
            assert_eq!(wires[0], wires[2]);
            // The same bytes as `send` on such a socket.
            let (ws, peer) = &mut sockets[0];
            ws.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(drain(peer).await, wires[0]);
            let (ws, peer) = &mut sockets[3];
            ws.send(Message::text(text)).await.unwrap();
            assert_eq!(drain(peer).await, wires[3]);
        }

        #[tokio::test]
        async fn under_the_threshold_or_incompressible_goes_uncompressed() {
            let noise = crate::test_util::noise(1000);
            for msg in [
                PreparedMessage::text(json(63)),
                PreparedMessage::binary(noise),
            ] {
                let (mut ws, mut peer) = deflate_pair(agreed(false, 15));
                ws.send_prepared(&msg).await.unwrap();
                ws.send(msg.as_message().clone()).await.unwrap();
                let wire = drain(&mut peer).await;
                assert_eq!(wire.len(), 2 * msg.frame().len());
                assert_eq!(wire[..msg.frame().len()], msg.frame()[..]);
                assert_eq!(wire[msg.frame().len()..], msg.frame()[..]);
            }
            // At the threshold it is compressed.
            let msg = PreparedMessage::text(json(64));
            let (mut ws, mut peer) = deflate_pair(agreed(false, 15));
            ws.send_prepared(&msg).await.unwrap();
            let wire = drain(&mut peer).await;
            let frames = frames(&wire);
            assert!(frames[0].0);
            assert_eq!(inflate(&frames[0].1), json(64).as_bytes());
        }

        /// With context takeover each socket compresses with its own compressor: the same
        /// bytes as `send`, message after message.
        #[tokio::test]
        async fn context_takeover_compresses_as_send_does() {
            let (mut by_send, mut peer_a) = deflate_pair(agreed(true, 12));
            let (mut by_prepared, mut peer_b) = deflate_pair(agreed(true, 12));
            for text in [json(500), json(500), json(10), json(2000)] {
                by_send.send(Message::text(text.clone())).await.unwrap();
                let msg = PreparedMessage::text(text);
                by_prepared.send_prepared(&msg).await.unwrap();
            }
            let (a, b) = (drain(&mut peer_a).await, drain(&mut peer_b).await);
            assert_eq!(a, b);
            let frames = frames(&a);
            assert_eq!(
                frames.iter().map(|f| f.0).collect::<Vec<_>>(),
                [true, true, false, true]
            );
            // The second is much smaller: it refers back to the first.
            assert!(frames[1].1.len() < frames[0].1.len() / 4);
        }
    }
}
