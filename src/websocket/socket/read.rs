//! The read path of a [`WebSocket`]: [`recv`](WebSocket::recv), the reads between and
//! inside frames, and the RFC 6455 §5 rules that turn frames into [`Message`]s.

use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::write::{ControlFrame, MAX_CONTROL_PAYLOAD};
use super::{Finish, State, WebSocket};
use crate::websocket::close_code;
use crate::websocket::config::MAX_SCRATCH;
use crate::websocket::error::{Error, ErrorKind};
use crate::websocket::frame::{self, Head, OpCode};
use crate::websocket::mask::apply_mask;
use crate::websocket::message::{CloseFrame, Message};
use crate::websocket::utf8::{Utf8Bytes, Utf8Tail, check_utf8};

/// The biggest buffer an idle read allocates up front, for a connection whose last frame
/// did not fit the scratch buffer (see `WebSocket::expect`).
pub(super) const MAX_EXPECT: usize = 64 * 1024;

/// A fragmented message being assembled (RFC 6455 §5.4).
pub(super) struct Partial {
    text: bool,
    data: BytesMut,
    /// How many bytes of `data` are known to be valid UTF-8 (text only); the rest is at most
    /// an incomplete code point.
    utf8_valid: usize,
    /// Compressed (permessage-deflate): `data` holds what its frames inflated to so far.
    compressed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Receives the next message.
    ///
    /// Returns `None` once the connection is closed: after the peer's
    /// [`Message::Close`] or an error was returned. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next message; the poll form of [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        loop {
            match self.poll_pending(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    self.state = State::Closed;
                    return Poll::Ready(Some(Err(e)));
                }
                // A data frame still going out to a peer that reads slowly does not stop
                // reading (a `SendHalf` may be blocked in it); a control frame owed to the
                // peer does, so that the next one never replaces it half-written, and so
                // does the end of the connection.
                Poll::Pending => {
                    if self.pending.is_some()
                        || !matches!(self.state, State::Open | State::CloseSent)
                    {
                        return Poll::Pending;
                    }
                }
            }
            match &self.state {
                State::Open | State::CloseSent => {}
                State::Closed => return Poll::Ready(None),
                State::Finishing(_) => {
                    // RFC 6455 §7.1.1: the server closes the TCP connection first. A
                    // failed shutdown only means the peer is gone already.
                    let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                    let State::Finishing(finish) =
                        std::mem::replace(&mut self.state, State::Closed)
                    else {
                        unreachable!()
                    };
                    return Poll::Ready(Some(match finish {
                        Finish::Close(frame) => Ok(Message::Close(frame)),
                        Finish::Error(e) => Err(e),
                    }));
                }
            }
            match self.next_frame() {
                Ok(Some((header, payload))) => match self.on_frame(&header, payload) {
                    Ok(Some(msg)) => {
                        if matches!(msg, Message::Text(_) | Message::Binary(_)) {
                            self.release();
                        }
                        return Poll::Ready(Some(Ok(msg)));
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        self.fail(e);
                        continue;
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    self.fail(e);
                    continue;
                }
            }
            // Not a whole frame buffered: read more.
            let read = if self.header.is_none() && self.read_buf.is_empty() {
                self.poll_read_idle(cx)
            } else {
                self.poll_read_more(cx)
            };
            // The timers are polled whenever the read is pending, so that their wakers are
            // set before this returns `Pending`, and after a read for the next frame head
            // that filled its whole buffer, so that a peer that always has more to send
            // cannot keep them from firing (a payload is bounded by `max_frame_size`). Not on
            // every turn of this loop, which made three polls of them per message.
            let read = match read {
                Poll::Pending => {
                    if self.poll_timers(cx) {
                        continue;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok((n, full))) => {
                    if full && self.poll_timers(cx) {
                        continue;
                    }
                    Ok(n)
                }
                Poll::Ready(Err(e)) => Err(e),
            };
            match read {
                Ok(0) => {
                    let was_closing = matches!(self.state, State::CloseSent);
                    self.state = State::Closed;
                    if was_closing {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(Error::new(
                        ErrorKind::ConnectionReset,
                        "the peer closed the connection without a close frame",
                    ))));
                }
                Ok(_) => {
                    self.heard();
                    if let Err(e) = self.check_text_so_far() {
                        self.fail(e);
                    }
                }
                Err(e) => {
                    self.state = State::Closed;
                    return Poll::Ready(Some(Err(Error::io(e))));
                }
            }
        }
    }

    /// Reads between frames: into a scratch buffer on the stack, so that an idle
    /// connection holds no read buffer; only the bytes that arrived are kept. Returns how
    /// many bytes were read, and whether they filled the scratch buffer.
    fn poll_read_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(usize, bool)>> {
        if self.expect != 0 {
            return self.poll_read_expected(cx);
        }
        let size = self.config.read_buffer_size;
        let mut scratch = [MaybeUninit::<u8>::uninit(); MAX_SCRATCH];
        let mut buf = ReadBuf::uninit(&mut scratch[..size]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        let data = buf.filled();
        // Only what follows the first frame's head is kept, in a buffer with room for the
        // whole payload, so that the rest of a big frame is read in place with no second copy.
        let (rest, capacity) = match self.start_frame(data) {
            Some(head) => {
                let rest = &data[usize::from(head.size)..];
                (rest, rest.len().max(head.len as usize))
            }
            None => (data, data.len()),
        };
        if capacity > 0 {
            let mut read_buf = BytesMut::with_capacity(capacity);
            read_buf.extend_from_slice(rest);
            self.read_buf = read_buf;
        }
        Poll::Ready(Ok((data.len(), data.len() == size)))
    }

    /// Reads between frames, when the last frame was bigger than the scratch buffer:
    /// straight into a buffer the size of that frame.
    fn poll_read_expected(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(usize, bool)>> {
        // Waiting for the next message is the usual case: ask first, so that it costs no
        // allocation.
        if self.probe_reads {
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut ReadBuf::new(&mut [])))?;
        }
        let size = self.expect as usize;
        // One byte more than the frame: a read that leaves room tells tokio's `TcpStream`
        // that the socket is drained, so that the next read waits for readiness instead of
        // trying (a `recv` that would block, and, before that, this allocation: callgrind
        // counted two of each per 16 KiB echo with a buffer of exactly the frame's size).
        let mut read_buf = BytesMut::with_capacity(size + 1);
        // Pending: the buffer is dropped here, so an idle connection holds none.
        let n = ready!(std::pin::pin!(self.io.read_buf(&mut read_buf)).poll(cx))?;
        if let Some(head) = self.start_frame(&read_buf) {
            read_buf.advance(usize::from(head.size));
        }
        if n > 0 {
            self.read_buf = read_buf;
        }
        Poll::Ready(Ok((n, n > size)))
    }

    /// Parses and checks the head at the start of `data`, read between frames, once: when it
    /// is whole and allowed, it becomes the frame in progress and is returned (its bytes are
    /// the caller's to skip). A head cut short or refused is left in the data, for
    /// `next_frame` to wait for the rest or to report the error.
    fn start_frame(&mut self, data: &[u8]) -> Option<Head> {
        let head = frame::parse(data).ok().flatten()?;
        self.check_head(&head).ok()?;
        self.reserve(&head).ok()?;
        self.header = Some(head);
        Some(head)
    }

    /// Reads the rest of a frame straight into `read_buf`, which has room for it. Returns
    /// how many bytes were read, and whether they filled the room made for a cut head and
    /// what follows it (filling the room made for a payload only completes that frame).
    fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(usize, bool)>> {
        let head_cut = match &self.header {
            // `next_frame` made room for the whole frame.
            Some(head) => {
                let want = (head.len as usize).saturating_sub(self.read_buf.len());
                self.read_buf.reserve(want);
                false
            }
            // A header cut short: at most 14 bytes, and likely the next frame behind it.
            None => {
                self.read_buf.reserve(self.config.read_buffer_size);
                true
            }
        };
        let room = self.read_buf.capacity() - self.read_buf.len();
        let read = self.io.read_buf(&mut self.read_buf);
        let n = ready!(std::pin::pin!(read).poll(cx))?;
        Poll::Ready(Ok((n, head_cut && n == room)))
    }

    /// Takes the next whole frame out of `read_buf`, unmasked.
    fn next_frame(&mut self) -> Result<Option<(Head, BytesMut)>, Error> {
        let head = match self.header {
            Some(head) => head,
            None => {
                if self.read_buf.is_empty() {
                    return Ok(None);
                }
                let Some(head) = frame::parse(&self.read_buf)
                    .map_err(|e| Error::new(ErrorKind::Protocol, e.as_str()))?
                else {
                    return Ok(None);
                };
                self.check_head(&head)?;
                self.reserve(&head)?;
                self.read_buf.advance(usize::from(head.size));
                self.header = Some(head);
                head
            }
        };
        let len = head.len as usize;
        if self.read_buf.len() < len {
            // Room for the whole frame, so that the rest is read in one go.
            self.read_buf.reserve(len - self.read_buf.len());
            return Ok(None);
        }
        self.header = None;
        let total = usize::from(head.size) + len;
        self.expect = if total > self.config.read_buffer_size {
            total.min(MAX_EXPECT) as u32
        } else {
            0
        };
        let mut payload = if self.read_buf.len() == len {
            // Idle again: hand the buffer over whole and hold none.
            std::mem::take(&mut self.read_buf)
        } else {
            self.read_buf.split_to(len)
        };
        if let Some(mask) = head.mask {
            // What `check_text_so_far` unmasked already, the mask turned to match.
            let done = std::mem::take(&mut self.progress).unmasked;
            apply_mask(&mut payload[done..], rotated(mask, done));
        }
        Ok(Some((head, payload)))
    }

    /// RFC 6455 §8.1: fails a text frame still arriving as soon as the bytes so far cannot
    /// be UTF-8, rather than once it is whole (Autobahn 6.4.3 and 6.4.4). The bytes that
    /// arrived are unmasked in place and checked; only the start of a code point they cut
    /// off is kept aside. A frame that arrived whole is left to `next_frame`, at no cost.
    fn check_text_so_far(&mut self) -> Result<(), Error> {
        let Some(head) = self.header else {
            return Ok(());
        };
        let len = head.len as usize;
        let from = self.progress.unmasked;
        let to = self.read_buf.len().min(len);
        if to == len || to <= from {
            return Ok(());
        }
        let partial = self.partial.as_deref();
        let text = match head.opcode {
            OpCode::Text => head.rsv == 0,
            OpCode::Continuation => partial.is_some_and(|p| p.text && !p.compressed),
            _ => false,
        };
        let Some(mask) = head.mask.filter(|_| text) else {
            return Ok(());
        };
        if from == 0 {
            self.progress.utf8 = match (head.opcode, partial) {
                (OpCode::Continuation, Some(p)) => Utf8Tail::new(&p.data[p.utf8_valid..]),
                _ => Utf8Tail::default(),
            };
        }
        apply_mask(&mut self.read_buf[from..to], rotated(mask, from));
        self.progress.unmasked = to;
        self.progress.utf8.feed(&self.read_buf[from..to])
    }

    /// Whether permessage-deflate was negotiated.
    fn deflate_on(&self) -> bool {
        #[cfg(feature = "deflate")]
        {
            self.deflate.is_some()
        }
        #[cfg(not(feature = "deflate"))]
        {
            false
        }
    }

    /// The RFC 6455 §5 rules that a frame head settles on its own, and the size limits:
    /// checked before the payload is read.
    fn check_head(&self, head: &Head) -> Result<(), Error> {
        let protocol = |detail| Err(Error::new(ErrorKind::Protocol, detail));
        // RFC 6455 §5.2: the RSV bits are 0 unless an extension says otherwise;
        // permessage-deflate sets RSV1 on the first frame of a compressed message only, and
        // never on a control frame (RFC 7692 §6).
        if head.rsv != 0
            && !(head.rsv == 0x40
                && matches!(head.opcode, OpCode::Text | OpCode::Binary)
                && self.deflate_on())
        {
            return protocol("reserved bits set without an extension");
        }
        // RFC 6455 §5.1: a server MUST close the connection on an unmasked frame.
        if head.mask.is_none() {
            return protocol("unmasked frame from the client");
        }
        if head.opcode.is_control() {
            // RFC 6455 §5.5: control frames are not fragmented and carry <= 125 bytes.
            if !head.fin {
                return protocol("fragmented control frame");
            }
            if head.len > MAX_CONTROL_PAYLOAD as u64 {
                return protocol("control frame over 125 bytes");
            }
        }
        let partial_len = self.partial.as_ref().map_or(0, |p| p.data.len());
        if head.len > self.config.max_frame_size as u64
            || head.len.saturating_add(partial_len as u64) > self.config.max_message_size as u64
        {
            return Err(Error::new(
                ErrorKind::MessageTooBig,
                "message or frame too big",
            ));
        }
        Ok(())
    }

    /// Applies the rest of RFC 6455 §5 (message sequencing, control frames, UTF-8) to a
    /// whole frame whose head passed [`check_head`](Self::check_head); returns a message when
    /// one is complete.
    fn on_frame(&mut self, header: &Head, payload: BytesMut) -> Result<Option<Message>, Error> {
        let protocol = |detail| Err(Error::new(ErrorKind::Protocol, detail));
        match header.opcode {
            OpCode::Ping => {
                if matches!(self.state, State::Open) {
                    self.pending = Some(Box::new(ControlFrame::new(0xA, &payload)));
                }
                Ok(Some(Message::Ping(payload.freeze())))
            }
            OpCode::Pong => Ok(Some(Message::Pong(payload.freeze()))),
            OpCode::Close => {
                let frame = parse_close(&payload.freeze())?;
                if matches!(self.state, State::Open) {
                    // RFC 6455 §5.5.1: reply with a close frame, echoing the code.
                    self.pending = Some(Box::new(ControlFrame::close(
                        frame.as_ref().map(|f| f.code),
                    )));
                }
                self.state = State::Finishing(Finish::Close(frame));
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(partial) = &mut self.partial else {
                    return protocol("continuation frame without a message to continue");
                };
                #[cfg(feature = "deflate")]
                if partial.compressed {
                    let text = partial.text;
                    return self.inflate_frame(text, header.fin, &payload);
                }
                partial.data.extend_from_slice(&payload);
                if partial.text {
                    partial.utf8_valid = check_utf8(&partial.data, partial.utf8_valid)?;
                }
                if !header.fin {
                    return Ok(None);
                }
                let partial = self.partial.take().expect("checked above");
                finish_message(partial.text, partial.data).map(Some)
            }
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return protocol("new message before the fragmented one ended");
                }
                let text = header.opcode == OpCode::Text;
                #[cfg(feature = "deflate")]
                if header.rsv != 0 {
                    // RSV1, which `check_head` allows only with deflate: compressed.
                    return self.inflate_frame(text, header.fin, &payload);
                }
                if header.fin {
                    return finish_message(text, payload).map(Some);
                }
                let utf8_valid = if text { check_utf8(&payload, 0)? } else { 0 };
                self.partial = Some(Box::new(Partial {
                    text,
                    data: payload,
                    utf8_valid,
                    compressed: false,
                }));
                Ok(None)
            }
        }
    }

    /// Inflates a frame of a compressed message (the one in `partial`, or a new one),
    /// bounded by `max_message_size` and with text checked as it is inflated; returns the
    /// message when this was its last frame. A message of one frame needs no `partial`.
    #[cfg(feature = "deflate")]
    fn inflate_frame(
        &mut self,
        text: bool,
        fin: bool,
        payload: &[u8],
    ) -> Result<Option<Message>, Error> {
        let deflate = self
            .deflate
            .as_mut()
            .expect("RSV1 is refused without deflate");
        let max = self.config.max_message_size;
        if let Some(partial) = self.partial.as_mut() {
            let valid = partial.text.then_some(&mut partial.utf8_valid);
            let before = partial.data.len();
            deflate.inflate(payload, fin, &mut partial.data, max, valid)?;
            let inflated = partial.data.len() - before;
            self.reserve_inflated(inflated, payload.len())?;
            if !fin {
                return Ok(None);
            }
            let partial = self.partial.take().expect("checked above");
            return finish_message(partial.text, partial.data).map(Some);
        }
        let mut data = BytesMut::new();
        let mut utf8_valid = 0;
        deflate.inflate(
            payload,
            fin,
            &mut data,
            max,
            text.then_some(&mut utf8_valid),
        )?;
        self.reserve_inflated(data.len(), payload.len())?;
        if fin {
            return finish_message(text, data).map(Some);
        }
        self.partial = Some(Box::new(Partial {
            text,
            data,
            utf8_valid,
            compressed: true,
        }));
        Ok(None)
    }
}

/// The mask as it applies from `offset` bytes into the payload (RFC 6455 §5.3): the
/// bytes rotated left by `offset % 4`, as one 32-bit rotation (`<[u8]>::rotate_left` is a
/// call of about 20 instructions, on every frame).
#[inline]
fn rotated(mask: [u8; 4], offset: usize) -> [u8; 4] {
    // Little-endian, the first byte is the lowest: rotating the word right by 8 bits
    // moves every byte one place towards the front.
    let bits = 8 * (offset % 4) as u32;
    u32::from_le_bytes(mask).rotate_right(bits).to_le_bytes()
}

/// A whole message. Text is checked in full here (which also catches a code point cut off
/// at the end).
fn finish_message(text: bool, data: BytesMut) -> Result<Message, Error> {
    if text {
        Utf8Bytes::try_from_bytes(data.freeze()).map(Message::Text)
    } else {
        Ok(Message::Binary(data.freeze()))
    }
}

/// RFC 6455 §5.5.1 and §7.4: an empty body, or a valid code and a UTF-8 reason.
fn parse_close(payload: &Bytes) -> Result<Option<CloseFrame>, Error> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(Error::new(
            ErrorKind::Protocol,
            "close frame with a 1-byte body",
        )),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close_code::allowed(code) {
                return Err(Error::new(ErrorKind::Protocol, "invalid close code"));
            }
            let reason = Utf8Bytes::try_from_bytes(payload.slice(2..))?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

#[cfg(test)]
mod rotated_tests {
    #[test]
    fn rotated_is_the_mask_from_that_offset() {
        let mask = [0x11, 0x22, 0x33, 0x44];
        for offset in 0..12 {
            let mut expected = mask;
            expected.rotate_left(offset % 4);
            assert_eq!(super::rotated(mask, offset), expected, "offset {offset}");
        }
    }
}
