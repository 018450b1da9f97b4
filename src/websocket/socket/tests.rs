use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf, duplex,
};

use super::WebSocket;
use super::read::MAX_EXPECT;
use super::timers::SHUTDOWN_REASON;
use super::write::COPY_WRITE_MAX;
use crate::websocket::frame::{self, MAX_SERVER_HEAD, OpCode};
use crate::websocket::mask::apply_mask;
use crate::websocket::{CloseFrame, ErrorKind, Message, WebSocketConfig};

fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = vec![first];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let mut body = payload.to_vec();
    apply_mask(&mut body, mask);
    out.extend_from_slice(&body);
    out
}

fn pair() -> (WebSocket<DuplexStream>, DuplexStream) {
    let (a, b) = duplex(1 << 20);
    (WebSocket::from_raw_socket(a, WebSocketConfig::default()), b)
}

async fn read_n(peer: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    peer.read_exact(&mut buf).await.unwrap();
    buf
}

#[tokio::test]
async fn receives_a_fragmented_text_message_split_inside_a_code_point() {
    let (mut ws, mut peer) = pair();
    let text = "h\u{e9}llo"; // é is two bytes: split between them
    let bytes = text.as_bytes();
    peer.write_all(&client_frame(0x01, &bytes[..2]))
        .await
        .unwrap();
    peer.write_all(&client_frame(0x80, &bytes[2..]))
        .await
        .unwrap();
    let msg = ws.recv().await.unwrap().unwrap();
    assert_eq!(msg, Message::text(text));
}

/// A `send` cancelled half-way leaves the rest of its frame to be written before any
/// other frame: the stream never carries an interleaved frame.
#[tokio::test]
async fn a_cancelled_send_finishes_its_frame_first() {
    let (a, mut peer) = duplex(64);
    let mut ws = WebSocket::from_raw_socket(a, WebSocketConfig::default());
    let big = vec![b'a'; 1000];
    let first = ws.send(Message::binary(big.clone()));
    // Only 64 bytes fit: the send is pending, then dropped.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(50), first)
            .await
            .is_err()
    );
    // A ping arrives meanwhile: its pong must wait for the rest of the frame.
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; 4 + 1000 + 2 + 2 + 3];
        peer.write_all(&client_frame(0x89, b"")).await.unwrap();
        peer.read_exact(&mut got).await.unwrap();
        got
    });
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Ping(Bytes::new())
    );
    ws.send(Message::text("end")).await.unwrap();
    let got = reader.await.unwrap();
    assert_eq!(&got[..4], &[0x82, 126, 0x03, 0xE8]);
    assert_eq!(&got[4..1004], &big[..]);
    assert_eq!(&got[1004..1006], &[0x8A, 0]);
    assert_eq!(&got[1006..], &[0x81, 3, b'e', b'n', b'd']);
}

/// A transport that takes at most `step` bytes per write, is pending on every other
/// call, and never has anything to read.
struct Trickle {
    written: Vec<u8>,
    step: usize,
    vectored: bool,
    pending: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Pending
    }
}

impl Trickle {
    fn take(&mut self, cx: &mut Context<'_>, bufs: &[&[u8]]) -> Poll<io::Result<usize>> {
        self.pending = !self.pending;
        if self.pending {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(self.step - n);
            self.written.extend_from_slice(&buf[..take]);
            n += take;
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().take(cx, &[buf])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
        self.get_mut().take(cx, &bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Small frames are copied and written whole, big ones vectored or head first; every
/// way survives writes cut at any byte and a transport that is often not ready.
#[tokio::test]
async fn frames_survive_short_and_pending_writes() {
    let lens = [
        0,
        20,
        125,
        126,
        COPY_WRITE_MAX - 4,
        COPY_WRITE_MAX - 3,
        70_000,
    ];
    for vectored in [true, false] {
        for step in [1, 3, 1000, usize::MAX] {
            for len in lens {
                if step == 1 && len > COPY_WRITE_MAX {
                    continue;
                }
                let io = Trickle {
                    written: Vec::new(),
                    step,
                    vectored,
                    pending: false,
                };
                let mut ws = WebSocket::from_raw_socket(io, WebSocketConfig::default());
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                ws.send(Message::binary(payload.clone())).await.unwrap();
                ws.send(Message::text("end")).await.unwrap();
                let mut want = [0; MAX_SERVER_HEAD];
                let n = frame::format(&mut want, OpCode::Binary, len);
                let mut want = want[..n].to_vec();
                want.extend_from_slice(&payload);
                want.extend_from_slice(&[0x81, 3, b'e', b'n', b'd']);
                assert!(
                    ws.io.written == want,
                    "{len} bytes, step {step}, {vectored}"
                );
            }
        }
    }
}

#[tokio::test]
async fn answers_a_ping_with_a_pong() {
    let (mut ws, mut peer) = pair();
    peer.write_all(&client_frame(0x89, b"hi")).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Ping(Bytes::from_static(b"hi"))
    );
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(read_n(&mut peer, 4).await, [0x8A, 2, b'h', b'i']);
    assert_eq!(read_n(&mut peer, 3).await, [0x81, 1, b'x']);
}

#[tokio::test]
async fn echoes_the_close_code_and_ends() {
    let (mut ws, mut peer) = pair();
    let mut body = 1000u16.to_be_bytes().to_vec();
    body.extend_from_slice(b"bye");
    peer.write_all(&client_frame(0x88, &body)).await.unwrap();
    let msg = ws.recv().await.unwrap().unwrap();
    assert_eq!(
        msg,
        Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "bye".into()
        }))
    );
    assert_eq!(read_n(&mut peer, 4).await, [0x88, 2, 0x03, 0xE8]);
    assert!(ws.recv().await.is_none());
    assert_eq!(
        ws.send(Message::text("late")).await.unwrap_err().kind(),
        ErrorKind::AlreadyClosed
    );
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let (mut ws, mut peer) = pair();
    peer.write_all(&client_frame(0x81, &[0xFF, 0xFE]))
        .await
        .unwrap();
    let err = ws.recv().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidUtf8);
    assert_eq!(read_n(&mut peer, 4).await, [0x88, 2, 0x03, 0xEF]);
    assert!(ws.recv().await.is_none());
}

#[tokio::test]
async fn unmasked_frames_and_reserved_bits_close_with_1002() {
    for frame in [vec![0x81, 0x01, b'a'], {
        let mut f = client_frame(0x81, b"a");
        f[0] |= 0x40;
        f
    }] {
        let (mut ws, mut peer) = pair();
        peer.write_all(&frame).await.unwrap();
        let err = ws.recv().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol);
        assert_eq!(read_n(&mut peer, 4).await, [0x88, 2, 0x03, 0xEA]);
    }
}

#[tokio::test]
async fn reserved_opcodes_and_64_bit_lengths_with_the_top_bit_close_with_1002() {
    let mut huge = vec![0x82, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    for frame in [client_frame(0x83, b"a"), client_frame(0x8B, b""), huge] {
        let (mut ws, mut peer) = pair();
        peer.write_all(&frame).await.unwrap();
        let err = ws.recv().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{frame:02x?}");
        assert_eq!(read_n(&mut peer, 4).await, [0x88, 2, 0x03, 0xEA]);
        assert!(ws.recv().await.is_none());
    }
}

/// Control frame rules are settled by the head: the payload is never waited for.
#[tokio::test]
async fn long_or_fragmented_control_frames_close_with_1002_before_the_payload() {
    let long_ping = client_frame(0x89, &[0; 126]);
    let fragmented_ping = client_frame(0x09, b"a");
    for head in [&long_ping[..8], &fragmented_ping[..6]] {
        let (mut ws, mut peer) = pair();
        peer.write_all(head).await.unwrap();
        let err = ws.recv().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol);
        assert_eq!(read_n(&mut peer, 4).await, [0x88, 2, 0x03, 0xEA]);
    }
}

/// Frames that arrive a byte at a time, heads included, come out whole and in order.
#[tokio::test]
async fn frames_arriving_a_byte_at_a_time_are_put_together() {
    let (mut ws, mut peer) = pair();
    let big = vec![3u8; 300];
    let mut bytes = client_frame(0x82, &big);
    bytes.extend_from_slice(&client_frame(0x89, b""));
    bytes.extend_from_slice(&client_frame(0x81, b"tail"));
    let writer = tokio::spawn(async move {
        for b in bytes {
            peer.write_all(&[b]).await.unwrap();
            tokio::task::yield_now().await;
        }
        peer
    });
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(big));
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Ping(Bytes::new())
    );
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("tail"));
    let mut peer = writer.await.unwrap();
    // The pong for the ping went out.
    assert_eq!(read_n(&mut peer, 2).await, [0x8A, 0]);
}

#[tokio::test]
async fn too_big_messages_close_with_1009_before_the_payload_is_read() {
    let (a, mut peer) = duplex(1 << 16);
    let mut ws = WebSocket::from_raw_socket(a, WebSocketConfig::new().max_message_size(10));
    peer.write_all(&client_frame(0x82, &[0; 11])[..8])
        .await
        .unwrap();
    let err = ws.recv().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooBig);
    assert_eq!(read_n(&mut peer, 4).await, [0x88, 2, 0x03, 0xF1]);
}

#[tokio::test]
async fn holds_no_read_buffer_between_messages() {
    let (mut ws, mut peer) = pair();
    let big = vec![7u8; 100_000];
    peer.write_all(&client_frame(0x82, &big)).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Binary(big.into())
    );
    assert_eq!(ws.read_buf.capacity(), 0);
    peer.write_all(&client_frame(0x81, b"small")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("small"));
    assert_eq!(ws.read_buf.capacity(), 0);
}

/// After a frame bigger than the scratch buffer, the next idle read goes into a heap
/// buffer that size: one read for a frame like it, and none held while idle.
#[tokio::test]
async fn a_big_frame_makes_the_next_read_expect_one_like_it() {
    let (mut ws, mut peer) = pair();
    let first = vec![1u8; 20_000];
    peer.write_all(&client_frame(0x82, &first)).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Binary(first.into())
    );
    assert_eq!(ws.expect, 20_000 + 8);
    // Nothing to read: the buffer made for the read is not kept.
    let idle = std::future::poll_fn(|cx| Poll::Ready(ws.poll_recv(cx))).await;
    assert!(idle.is_pending());
    assert_eq!(ws.read_buf.capacity(), 0);
    // A frame like it, a small one and a bigger one, all in one go.
    let second = vec![2u8; 20_000];
    let third = vec![4u8; 200_000];
    let mut bytes = client_frame(0x82, &second);
    bytes.extend(client_frame(0x81, b"small"));
    bytes.extend(client_frame(0x82, &third));
    peer.write_all(&bytes).await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Binary(second.into())
    );
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("small"));
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::Binary(third.into())
    );
    assert_eq!(ws.expect as usize, MAX_EXPECT, "bounded");
    assert_eq!(ws.read_buf.capacity(), 0);
    // Back to small frames: back to the stack.
    peer.write_all(&client_frame(0x81, b"tiny")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("tiny"));
    assert_eq!(ws.expect, 0);
    // A close after all that still works.
    peer.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert!(matches!(ws.recv().await, Some(Ok(Message::Close(_)))));
}

/// A peer that always has more to send cannot hold off graceful shutdown: the timers
/// are checked after every read that fills its buffer.
#[tokio::test]
async fn shutdown_closes_a_connection_that_never_stops_sending() {
    let (a, peer) = duplex(1 << 12);
    let tracker = crate::Tracker::new();
    let mut ws = WebSocket::from_raw_socket(a, WebSocketConfig::new().read_buffer_size(64))
        .close_on(tracker.signal());
    let (mut peer_read, mut peer_write) = tokio::io::split(peer);
    let flood = tokio::spawn(async move {
        let frame = client_frame(0x82, b"x");
        // Bounded; ends early when the socket is gone.
        for _ in 0..1_000_000 {
            if peer_write.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    for _ in 0..10 {
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::binary(&b"x"[..])
        );
    }
    tracker.shutdown();
    let mut after = 0;
    while !ws.is_closed() {
        assert_eq!(
            ws.recv().await.unwrap().unwrap(),
            Message::binary(&b"x"[..])
        );
        after += 1;
        assert!(after < 20, "still open after {after} messages");
    }
    let mut close = vec![0; 2 + 2 + SHUTDOWN_REASON.len()];
    peer_read.read_exact(&mut close).await.unwrap();
    assert_eq!(&close[..4], &[0x88, close.len() as u8 - 2, 0x03, 0xE9]);
    drop(ws);
    flood.await.unwrap();
}

#[tokio::test]
async fn eof_without_close_is_a_reset() {
    let (mut ws, peer) = pair();
    drop(peer);
    let err = ws.recv().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert!(ws.recv().await.is_none());
}

/// The receiving half reads on while the sending half is blocked in a big frame (the peer
/// does not read), answers a ping right after that frame, never inside it, and the halves
/// wake each other when one finishes the other's write.
#[tokio::test]
async fn split_halves_read_on_while_a_frame_is_blocked_and_pong_after_it() {
    let (a, mut peer) = duplex(64);
    let (mut tx, mut rx) = WebSocket::from_raw_socket(a, WebSocketConfig::default()).split();
    let sending = tokio::spawn(async move {
        tx.send(Message::binary(vec![7u8; 10_000]))
            .await
            .map(|()| tx)
    });
    // The send has started, and is blocked: the pipe holds 64 bytes.
    assert_eq!(read_n(&mut peer, 4).await, [0x82, 126, 0x27, 0x10]);
    peer.write_all(&client_frame(0x81, b"after")).await.unwrap();
    peer.write_all(&client_frame(0x89, b"p")).await.unwrap();
    assert_eq!(rx.recv().await.unwrap().unwrap(), Message::text("after"));
    assert_eq!(
        rx.recv().await.unwrap().unwrap(),
        Message::Ping(Bytes::from_static(b"p"))
    );
    let receiving = tokio::spawn(async move {
        let msg = rx.recv().await;
        (rx, msg)
    });
    let rest = read_n(&mut peer, 10_000 + 3).await;
    assert!(rest[..10_000].iter().all(|&b| b == 7));
    assert_eq!(&rest[10_000..], &[0x8A, 1, b'p']);
    let tx = sending.await.unwrap().unwrap();
    peer.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    let (rx, msg) = receiving.await.unwrap();
    assert_eq!(
        msg.unwrap().unwrap(),
        Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into()
        }))
    );
    assert_eq!(read_n(&mut peer, 4).await, [0x88, 2, 0x03, 0xE8]);
    let ws = rx.reunite(tx).unwrap();
    assert!(ws.is_closed());
}

#[tokio::test]
async fn halves_of_different_sockets_do_not_reunite() {
    let (a, mut peer_a) = pair();
    let (b, _peer_b) = pair();
    let (tx_a, rx_a) = a.split();
    let (tx_b, rx_b) = b.split();
    assert!(tx_a.is_pair_of(&rx_a) && !tx_a.is_pair_of(&rx_b) && rx_b.is_pair_of(&tx_b));
    let super::ReuniteError(tx_a, rx_b) = tx_a.reunite(rx_b).unwrap_err();
    let _b = rx_b.reunite(tx_b).unwrap();
    let mut a = tx_a.reunite(rx_a).unwrap();
    // The reunited socket is the one that was split.
    a.send(Message::text("hi")).await.unwrap();
    assert_eq!(read_n(&mut peer_a, 4).await, [0x81, 2, b'h', b'i']);
    peer_a.write_all(&client_frame(0x82, b"x")).await.unwrap();
    assert_eq!(a.recv().await.unwrap().unwrap(), Message::binary(&b"x"[..]));
}

/// The halves as `futures` uses them: `SinkExt` on the send half (`send`, `close`), and
/// `StreamExt` on the receive half.
#[tokio::test]
async fn halves_are_a_sink_and_a_stream() {
    use futures_util::{SinkExt, StreamExt};
    let (ws, mut peer) = pair();
    let (mut tx, mut rx) = ws.split();
    SinkExt::send(&mut tx, Message::text("a")).await.unwrap();
    SinkExt::close(&mut tx).await.unwrap();
    assert_eq!(read_n(&mut peer, 3).await, [0x81, 1, b'a']);
    assert_eq!(read_n(&mut peer, 4).await, [0x88, 2, 0x03, 0xE8]);
    assert!(tx.is_closed());
    peer.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert!(matches!(rx.next().await, Some(Ok(Message::Close(Some(_))))));
    assert!(rx.next().await.is_none());
}

#[tokio::test]
async fn the_send_half_sends_prepared_messages() {
    let (ws, mut peer) = pair();
    let (mut tx, _rx) = ws.split();
    let msg = crate::websocket::PreparedMessage::text("hi");
    tx.send_prepared(&msg).await.unwrap();
    tx.send_prepared(&msg).await.unwrap();
    assert_eq!(
        read_n(&mut peer, 8).await,
        [0x81, 2, b'h', b'i', 0x81, 2, b'h', b'i']
    );
}
