//! A quick, bounded loopback load client for a WebSocket echo server: server CPU per echo
//! and per handshake, and server memory per idle WebSocket.
//!
//! It is a hand-rolled client (raw TCP, masked frames written by hand) so that the client
//! costs little, and it reads the server's CPU time and resident memory from `/proc`.
//! Linux only. Run the server and this client pinned to one core each:
//!
//! ```text
//! cargo build --release --example echo --example ws_loopback
//! ulimit -n 65536
//! ADDR=127.0.0.1:3000 TOKIO_WORKER_THREADS=1 taskset -c 0 target/release/examples/echo &
//! taskset -c 1 target/release/examples/ws_loopback 127.0.0.1:3000 $! all
//! ```
//!
//! Modes: `echo20`, `echo16k`, `handshake`, `idle`, or `all`. Each reports
//! (server CPU time spent) / (operations), and `idle` reports the growth of the server's
//! `VmRSS` divided by the number of idle connections.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const CONNECTIONS: usize = 64;

fn server_cpu(pid: u32) -> Duration {
    // Fields 14 and 15 of /proc/PID/stat: utime and stime, in clock ticks (100 Hz).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server pid");
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn server_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server pid");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

async fn handshake(addr: &str) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    Ok(stream)
}

fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x80 | opcode];
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
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

async fn read_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    let len = match head[1] & 0x7F {
        126 => {
            let mut l = [0u8; 2];
            stream.read_exact(&mut l).await?;
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            stream.read_exact(&mut l).await?;
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    buf.resize(len, 0);
    stream.read_exact(buf).await?;
    Ok(())
}

async fn echo(addr: &str, pid: u32, size: usize, total: usize) {
    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS {
        streams.push(handshake(addr).await.unwrap());
    }
    let frame = masked_frame(0x2, &vec![b'x'; size]);
    let per_conn = total / CONNECTIONS;
    let cpu0 = server_cpu(pid);
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for mut s in streams {
        let frame = frame.clone();
        set.spawn(async move {
            let mut buf = Vec::new();
            for _ in 0..per_conn {
                s.write_all(&frame).await.unwrap();
                read_frame(&mut s, &mut buf).await.unwrap();
                assert_eq!(buf.len(), size);
            }
            s
        });
    }
    let mut done = Vec::new();
    while let Some(s) = set.join_next().await {
        done.push(s.unwrap());
    }
    let cpu = server_cpu(pid) - cpu0;
    let n = per_conn * CONNECTIONS;
    println!(
        "echo {size:>5} B: {n} echoes over {CONNECTIONS} connections in {:.2?}: server {:.2} µs CPU per echo",
        t0.elapsed(),
        cpu.as_secs_f64() * 1e6 / n as f64
    );
}

async fn handshakes(addr: &str, pid: u32, total: usize) {
    let per_conn = total / CONNECTIONS;
    let cpu0 = server_cpu(pid);
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let addr = addr.to_owned();
        set.spawn(async move {
            for _ in 0..per_conn {
                let mut s = handshake(&addr).await.unwrap();
                // Close cleanly so the server's task ends.
                s.write_all(&masked_frame(0x8, &1000u16.to_be_bytes()))
                    .await
                    .unwrap();
                let mut buf = Vec::new();
                let _ = read_frame(&mut s, &mut buf).await;
            }
        });
    }
    while set.join_next().await.is_some() {}
    let cpu = server_cpu(pid) - cpu0;
    let n = per_conn * CONNECTIONS;
    println!(
        "handshake: {n} handshakes (+ close) in {:.2?}: server {:.1} µs CPU per handshake",
        t0.elapsed(),
        cpu.as_secs_f64() * 1e6 / n as f64
    );
}

async fn idle(addr: &str, pid: u32, count: usize) {
    // Warm up the allocator and the runtime first.
    let warm: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..CONNECTIONS {
            v.push(handshake(addr).await.unwrap());
        }
        v
    };
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = server_rss_kb(pid);
    let mut open = Vec::with_capacity(count);
    for _ in 0..count {
        let mut s = handshake(addr).await.unwrap();
        // One echo first: an idle connection that has been used.
        s.write_all(&masked_frame(0x1, b"hello")).await.unwrap();
        let mut buf = Vec::new();
        read_frame(&mut s, &mut buf).await.unwrap();
        open.push(s);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss1 = server_rss_kb(pid);
    println!(
        "idle: {count} open WebSockets: server VmRSS {rss0} kB -> {rss1} kB: {:.2} KB per idle connection",
        (rss1 - rss0) as f64 * 1024.0 / 1000.0 / count as f64
    );
    drop(open);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (addr, pid, mode) = match &args[..] {
        [_, addr, pid, mode] => (addr.as_str(), pid.parse::<u32>().unwrap(), mode.as_str()),
        _ => {
            eprintln!("usage: ws_loopback HOST:PORT SERVER_PID echo20|echo16k|handshake|idle|all");
            std::process::exit(2);
        }
    };
    if matches!(mode, "echo20" | "all") {
        echo(addr, pid, 20, 320_000).await;
    }
    if matches!(mode, "echo16k" | "all") {
        echo(addr, pid, 16 * 1024, 128_000).await;
    }
    if matches!(mode, "handshake" | "all") {
        handshakes(addr, pid, 32_000).await;
    }
    if matches!(mode, "idle" | "all") {
        idle(addr, pid, 10_000).await;
    }
}
