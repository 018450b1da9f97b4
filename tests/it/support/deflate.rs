//! A raw WebSocket client's reading side for permessage-deflate tests (tokio-tungstenite
//! has no deflate): server frames read off the TCP stream, and messages inflated with
//! flate2 as a client would.

use flate2::{Decompress, FlushDecompress};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::within;

/// One server frame, within the test's I/O timeout: (first byte, payload). Panics if the
/// frame is masked (RFC 6455 §5.1: a server never masks).
pub async fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    within(async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => u64::from(stream.read_u16().await.unwrap()),
            127 => stream.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut payload = vec![0; len as usize];
        stream.read_exact(&mut payload).await.unwrap();
        (head[0], payload)
    })
    .await
}

/// What a client inflater makes of one message compressed on its own, with the
/// `00 00 ff ff` the sender took off put back (RFC 7692 §7.2.2).
pub fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(payload.len() * 8 + 1024);
    while (d.total_in() as usize) < input.len() {
        out.reserve(out.capacity().max(1024));
        let consumed = d.total_in() as usize;
        d.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .unwrap();
    }
    out
}
