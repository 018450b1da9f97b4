//! The message budget of a [`WebSocket`]: message bytes are reserved against the layer's
//! [`MessageBudget`] before they are buffered, and given back when the message is handed
//! out or the connection fails.
//!
//! What is reserved is every data frame's payload length, reserved when its head is
//! accepted, which is when the socket makes room for the whole frame; a fragmented message
//! holds the sum of its frames until it is handed out. Control frames (at most 125 bytes)
//! and the read buffers between frames are not counted: they are bounded per connection
//! (a stack scratch buffer of at most 16 KiB, and at most 64 KiB kept for a connection
//! whose last frame was bigger, see `MAX_EXPECT`).

use super::WebSocket;
use crate::MessageBudget;
use crate::websocket::error::{Error, ErrorKind};
use crate::websocket::frame::Head;

impl<S> WebSocket<S> {
    /// Reserves every message's bytes against `budget` before buffering them, as
    /// [`WebSocketHandler`](crate::websocket::WebSocketHandler) does with the layer's
    /// [`UpgradeRequest::message_budget`](crate::UpgradeRequest::message_budget). A message
    /// that would pass it fails the connection with
    /// [`ErrorKind::OverBudget`](crate::websocket::ErrorKind::OverBudget) (close
    /// `1013 Try Again Later`).
    #[must_use]
    pub fn with_message_budget(mut self, budget: &MessageBudget) -> Self {
        self.budget = Some(budget.reservation());
        self
    }

    /// Reserves the payload of a data frame whose head was accepted.
    pub(super) fn reserve(&mut self, head: &Head) -> Result<(), Error> {
        let Some(budget) = &mut self.budget else {
            return Ok(());
        };
        if head.opcode.is_control() || budget.try_grow(head.len as usize) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::OverBudget,
            "message over the server's message budget",
        ))
    }

    /// Reserves what a compressed frame inflated to beyond its payload (permessage-deflate:
    /// the payload itself was reserved with its head).
    #[cfg(feature = "deflate")]
    pub(super) fn reserve_inflated(
        &mut self,
        inflated: usize,
        payload: usize,
    ) -> Result<(), Error> {
        let Some(budget) = &mut self.budget else {
            return Ok(());
        };
        if budget.try_grow(inflated.saturating_sub(payload)) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::OverBudget,
            "message over the server's message budget",
        ))
    }

    /// Gives back the bytes of the message just handed out, or dropped.
    pub(super) fn release(&mut self) {
        if let Some(budget) = &mut self.budget {
            budget.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use crate::Tracker;
    use crate::token::UpgradeToken;
    use crate::websocket::mask::apply_mask;
    use crate::websocket::{ErrorKind, Message, WebSocket, WebSocketConfig, close_code};

    /// A masked client frame head announcing `len` bytes, and `payload` masked behind it.
    fn frame(first: u8, len: usize, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match u16::try_from(len) {
            Ok(len) => {
                out.push(0x80 | 126);
                out.extend_from_slice(&len.to_be_bytes());
            }
            Err(_) => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        let mut body = payload.to_vec();
        apply_mask(&mut body, [1, 2, 3, 4]);
        out.extend_from_slice(&body);
        out
    }

    #[tokio::test]
    async fn messages_share_the_budget_and_the_one_past_it_closes_with_1013() {
        let tracker = Tracker::new();
        tracker.set_message_budget(Some(100_000));
        let budget = tracker.budget_for(&UpgradeToken::new("websocket").unwrap());
        let socket = |io| {
            WebSocket::from_raw_socket(io, WebSocketConfig::default()).with_message_budget(&budget)
        };
        let (a, mut peer_a) = duplex(1 << 20);
        let (b, mut peer_b) = duplex(1 << 20);
        let (mut a, mut b) = (socket(a), socket(b));

        // `a` is 10 KB into a 60 KB message: the frame is reserved whole when its head
        // arrives, as room is made for it then.
        peer_a
            .write_all(&frame(0x82, 60_000, &[7; 10_000]))
            .await
            .unwrap();
        let recv_a = tokio::time::timeout(Duration::from_millis(50), a.recv()).await;
        assert!(recv_a.is_err(), "the message is not complete");
        assert_eq!(tracker.buffered_message_bytes(), 60_000);

        // `b` announces 50 KB: over the budget.
        peer_b
            .write_all(&frame(0x82, 50_000, &[1; 100]))
            .await
            .unwrap();
        let err = b.recv().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OverBudget);
        let mut close = [0; 4];
        peer_b.read_exact(&mut close).await.unwrap();
        assert_eq!(close[..2], [0x88, 2]);
        assert_eq!(u16::from_be_bytes([close[2], close[3]]), close_code::AGAIN);
        assert_eq!(tracker.stats().totals.over_budget, 1);

        // `a` finishes its message: the bytes are given back once it is handed out.
        peer_a.write_all(&[7; 50_000]).await.unwrap();
        let msg = a.recv().await.unwrap().unwrap();
        assert!(matches!(msg, Message::Binary(ref data) if data.len() == 60_000));
        assert_eq!(tracker.buffered_message_bytes(), 0);
        drop(msg);

        // A fragmented message holds its frames until it is handed out; a connection that
        // ends mid-message gives its bytes back too.
        peer_a
            .write_all(&frame(0x02, 30_000, &[7; 30_000]))
            .await
            .unwrap();
        peer_a
            .write_all(&frame(0x00, 40_000, &[7; 10]))
            .await
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(50), a.recv()).await;
        assert_eq!(tracker.buffered_message_bytes(), 70_000);
        drop(a);
        assert_eq!(tracker.buffered_message_bytes(), 0);
    }
}
