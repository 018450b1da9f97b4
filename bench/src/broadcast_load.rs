//! `load broadcast` (issue 13, "Broadcast once"): the server CPU time of sending one
//! message to each of `--bcast-conns` WebSockets, per recipient, for each way of sending
//! it (the `bcast-*` servers of `bench/src/broadcast_server.rs`).
//!
//! Each run opens the connections (`--conns` at a time; a plain upgrade, or one that
//! offers permessage-deflate for the `*-deflate` impls), waits until the server has
//! subscribed all of them, then asks for `--bcast-warmup` broadcasts and then
//! `--broadcasts` measured ones over a control connection (`GET /broadcast`). Every
//! connection has a task that reads frames and counts them; the next broadcast is asked
//! for only once the previous one reached every connection, so the server never has more
//! than one in flight. The server's CPU time (`utime + stime` from `/proc/PID/stat`) over
//! the measured broadcasts, divided by broadcasts × connections, is the cost per recipient.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::{
    Failure, Opts, Reader, Row, RunValue, Server, cpu_time, deflate_upgrade_request,
    disturbed_note, inflate_reply, machine_time, median, ratio, round_robin, upgrade_request,
    ws_connect,
};

/// The broadcast servers, in table order.
pub(super) const BCAST_IMPLS: &[&str] = &[
    "bcast-floor",
    "bcast-message",
    "bcast-prepared",
    "bcast-axum",
    "bcast-message-deflate",
    "bcast-prepared-deflate",
];

/// The size of the servers' broadcast message (`broadcast_server::MESSAGE_LEN`).
const MESSAGE_LEN: usize = 100;
/// How long one broadcast may take to reach every connection.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(30);

/// One measured run.
#[derive(Clone, Copy)]
struct Bcast {
    /// Server CPU time per recipient, ns.
    cpu_ns: f64,
    /// Time from asking for a broadcast to its last delivery, ms.
    p50_ms: f64,
    p99_ms: f64,
    /// The payload of the frame connection 0 received, bytes (compressed or not).
    wire_len: usize,
    server_pct: f64,
    client_pct: f64,
    softirq_pct: f64,
    other_pct: f64,
}

impl std::fmt::Debug for Bcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "server {:.0} ns/recipient, broadcast p50 {:.1} ms, frame payload {} B, cpu % server \
             {:.0} client {:.0} softirq {:.0} other {:.0}",
            self.cpu_ns,
            self.p50_ms,
            self.wire_len,
            self.server_pct,
            self.client_pct,
            self.softirq_pct,
            self.other_pct
        )
    }
}

impl RunValue for Bcast {
    fn other_pct(&self) -> f64 {
        self.other_pct
    }
}

/// Counts the frames every connection receives; wakes the harness when a broadcast has
/// reached them all.
struct Delivery {
    delivered: AtomicU64,
    conns: u64,
    all: Notify,
    /// The last message connection 0 received: its first byte and payload, inflated.
    sample: std::sync::Mutex<Option<(u8, usize, Vec<u8>)>>,
}

impl Delivery {
    /// Waits until `target` frames were delivered in all.
    async fn wait(&self, target: u64) -> Result<(), Failure> {
        let wait = async {
            loop {
                let notified = self.all.notified();
                if self.delivered.load(Ordering::Acquire) >= target {
                    return;
                }
                notified.await;
            }
        };
        timeout(BROADCAST_TIMEOUT, wait).await.map_err(|_| {
            Failure::Error(format!(
                "broadcast not delivered: {} of {target} frames",
                self.delivered.load(Ordering::Acquire)
            ))
        })
    }
}

pub(super) async fn broadcast(opts: &Opts) -> String {
    let impls = opts.select(BCAST_IMPLS);
    if opts.bcast_callgrind {
        return counts(opts, &impls).await;
    }
    let n = opts.bcast_conns;
    // `round_robin` aborts a run after `--duration-ms` + `--grace-secs` + 60 s. A broadcast
    // run has bounds of its own (opening the connections and waiting for them to subscribe:
    // `--grace-secs` each; each broadcast: `BROADCAST_TIMEOUT`), which can add up to more.
    let mut opts = opts.clone();
    opts.duration = opts.grace * 2
        + BROADCAST_TIMEOUT
            * u32::try_from(opts.broadcasts + opts.bcast_warmup).unwrap_or(u32::MAX);
    let opts = &opts;
    let rows = round_robin(opts, "broadcast", &impls, async |server: &Server| {
        one_run(opts, server, opts.broadcasts).await
    })
    .await;
    table(opts, &rows, n)
}

/// `--callgrind`: user-space instructions per recipient, from two runs of each server under
/// callgrind, `--broadcasts` and twice as many broadcasts long (the difference cancels
/// start-up, handshakes and warm-up).
async fn counts(opts: &Opts, impls: &[&'static str]) -> String {
    let n = opts.bcast_conns;
    let b = opts.broadcasts;
    let mut results = Vec::new();
    for &imp in impls {
        let mut totals = Vec::new();
        for broadcasts in [b, 2 * b] {
            let total = counted_run(opts, imp, broadcasts).await;
            eprintln!("broadcast --callgrind {imp} {broadcasts}: {total:?}");
            totals.push(total);
        }
        let per = match (&totals[0], &totals[1]) {
            (Ok(small), Ok(large)) => Ok((*large as f64 - *small as f64) / (b * n as u64) as f64),
            (Err(e), _) | (_, Err(e)) => Err(format!("{e:?}")),
        };
        results.push((imp, per));
    }
    let floor = results
        .iter()
        .find(|(imp, _)| *imp == "bcast-floor")
        .and_then(|(_, r)| r.as_ref().ok().copied());
    let message = results
        .iter()
        .find(|(imp, _)| *imp == "bcast-message")
        .and_then(|(_, r)| r.as_ref().ok().copied());
    let mut out = format!(
        "### Broadcast: user-space instructions per recipient (callgrind), {n} WebSockets\n\n\
         | impl | instructions/recipient | vs floor | vs message |\n|---|---:|---:|---:|\n"
    );
    for (imp, per) in &results {
        let imp = imp.trim_start_matches("bcast-");
        let _ = match per {
            Ok(v) => writeln!(
                out,
                "| {imp} | {v:.0} | {} | {} |",
                ratio(*v, floor),
                ratio(*v, message)
            ),
            Err(e) => writeln!(out, "| {imp} | {e} | | |"),
        };
    }
    let _ = writeln!(
        out,
        "\n{b} and {} broadcasts against the same server; the difference over {b} × {n}.",
        2 * b
    );
    out
}

/// The server's instruction count for a run of `broadcasts` broadcasts under callgrind.
async fn counted_run(opts: &Opts, imp: &'static str, broadcasts: u64) -> Result<u64, Failure> {
    let report = std::env::temp_dir().join(format!(
        "tower-upgrade-bcast-{}-{imp}-{broadcasts}.txt",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&report);
    let tool = super::callgrind(&format!("{imp}-{broadcasts}"), &report);
    let server = Server::start_under(opts, imp, &tool).await?;
    let loaded = timeout(Duration::from_secs(900), one_run(opts, &server, broadcasts)).await;
    let stopped = server.stop_gracefully(Duration::from_secs(120)).await;
    loaded.map_err(|_| Failure::Error("run timed out".into()))??;
    stopped?;
    let text = std::fs::read_to_string(&report)?;
    let _ = std::fs::remove_file(&report);
    text.lines()
        .find_map(|l| {
            l.split_once("Collected :")
                .map(|(_, n)| n.trim().to_owned())
        })
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Failure::Error(format!("no total in {}", report.display())))
}

async fn one_run(opts: &Opts, server: &Server, broadcasts: u64) -> Result<Bcast, Failure> {
    let n = opts.bcast_conns;
    let deflate = server.imp.ends_with("-deflate");
    let conns = open(server.addr, n, opts.conns, opts.grace, deflate).await?;
    let mut ctl = TcpStream::connect(server.addr).await?;
    ctl.set_nodelay(true)?;
    let mut rd = Reader::new(1024);
    // Every connection subscribed (the server subscribes as each connection starts).
    let start = Instant::now();
    loop {
        let count: usize = get(&mut ctl, &mut rd, "/count").await?;
        if count == n {
            break;
        }
        if start.elapsed() > opts.grace {
            return Err(Failure::Error(format!("{count} of {n} subscribed")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivery = Arc::new(Delivery {
        delivered: AtomicU64::new(0),
        conns: n as u64,
        all: Notify::new(),
        sample: std::sync::Mutex::new(None),
    });
    let mut readers = JoinSet::new();
    for (i, (tcp, rd)) in conns.into_iter().enumerate() {
        readers.spawn(receive(tcp, rd, Arc::clone(&delivery), i == 0));
    }
    let mut sent = 0u64;
    let mut broadcast = async |ctl: &mut TcpStream, rd: &mut Reader| -> Result<(), Failure> {
        let to: usize = get(ctl, rd, "/broadcast").await?;
        if to != n {
            return Err(Failure::Error(format!("broadcast went to {to} of {n}")));
        }
        sent += 1;
        delivery.wait(sent * n as u64).await
    };
    for _ in 0..opts.bcast_warmup {
        broadcast(&mut ctl, &mut rd).await?;
    }
    let (s0, c0, m0) = (server.cpu()?, cpu_time("self")?, machine_time()?);
    let t0 = Instant::now();
    let mut lat = Vec::with_capacity(broadcasts as usize);
    for _ in 0..broadcasts {
        let t = Instant::now();
        broadcast(&mut ctl, &mut rd).await?;
        lat.push(t.elapsed());
    }
    let wall = t0.elapsed().as_secs_f64().max(1e-9);
    let (s1, c1, m1) = (server.cpu()?, cpu_time("self")?, machine_time()?);
    readers.abort_all();
    // What connection 0 got last: the right message, compressed when it should be.
    let (b0, wire_len, text) = delivery
        .sample
        .lock()
        .map_err(|_| Failure::Error("poisoned".into()))?
        .take()
        .ok_or_else(|| Failure::Error("no message on connection 0".into()))?;
    if text.len() != MESSAGE_LEN || !text.starts_with(b"{\"seq\":") || b0 & 0x0f != 0x1 {
        return Err(Failure::Error(format!(
            "unexpected message {:?}",
            String::from_utf8_lossy(&text)
        )));
    }
    if deflate != (b0 & 0x40 != 0) {
        return Err(Failure::Error(format!(
            "RSV1 is {} with deflate {deflate}",
            b0 & 0x40 != 0
        )));
    }
    let server_cpu = s1.saturating_sub(s0);
    let client_cpu = c1.saturating_sub(c0);
    lat.sort_unstable();
    let pct = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    Ok(Bcast {
        cpu_ns: server_cpu.as_secs_f64() * 1e9 / (broadcasts * n as u64).max(1) as f64,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        wire_len,
        server_pct: server_cpu.as_secs_f64() * 100.0 / wall,
        client_pct: client_cpu.as_secs_f64() * 100.0 / wall,
        softirq_pct: m1.softirq.saturating_sub(m0.softirq).as_secs_f64() * 100.0 / wall,
        other_pct: m1
            .busy
            .saturating_sub(m0.busy)
            .saturating_sub(server_cpu + client_cpu)
            .as_secs_f64()
            * 100.0
            / wall,
    })
}

/// Reads frames until the connection fails or the task is aborted, counting them.
async fn receive(
    mut tcp: TcpStream,
    mut rd: Reader,
    delivery: Arc<Delivery>,
    sample: bool,
) -> io::Result<()> {
    // Bounded by the run: the harness aborts this task when it is done.
    loop {
        let (b0, payload) = rd.frame(&mut tcp).await?;
        if sample {
            let len = payload.len();
            let text = inflate_reply(b0, &rd.buf[payload]);
            if let Ok(mut s) = delivery.sample.lock() {
                *s = Some((b0, len, text));
            }
        }
        let d = delivery.delivered.fetch_add(1, Ordering::AcqRel) + 1;
        if d % delivery.conns == 0 {
            delivery.all.notify_one();
        }
    }
}

/// Opens `n` WebSockets, `conns` at a time; none sends anything.
async fn open(
    addr: SocketAddr,
    n: usize,
    conns: usize,
    limit: Duration,
    deflate: bool,
) -> Result<Vec<(TcpStream, Reader)>, Failure> {
    let deadline = Instant::now() + limit;
    let next = Arc::new(AtomicU64::new(0));
    let request: Arc<[u8]> = if deflate {
        deflate_upgrade_request(addr).into()
    } else {
        upgrade_request(addr).into()
    };
    let mut tasks = JoinSet::new();
    for _ in 0..conns.min(n) {
        let (next, request) = (Arc::clone(&next), Arc::clone(&request));
        tasks.spawn(async move {
            let mut open = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                if Instant::now() >= deadline {
                    return Err(io::Error::other("opening the connections took too long"));
                }
                open.push(ws_connect(addr, &request, Reader::new(256)).await?);
            }
            Ok::<_, io::Error>(open)
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.map_err(|e| Failure::Error(e.to_string()))??);
    }
    Ok(all)
}

/// `GET path` on the control connection; the body, parsed.
async fn get<T: std::str::FromStr>(
    ctl: &mut TcpStream,
    rd: &mut Reader,
    path: &str,
) -> Result<T, Failure> {
    ctl.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
        .await?;
    let n = rd.head(ctl).await?;
    let head = String::from_utf8_lossy(&rd.data()[..n]).into_owned();
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(Failure::Error(format!("{path}: {head:?}")));
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| Failure::Error(format!("{path}: no content-length")))?;
    rd.reserve(n + length);
    while rd.data().len() < n + length {
        rd.fill(ctl).await?;
    }
    let body = String::from_utf8_lossy(&rd.data()[n..n + length]).into_owned();
    rd.consume(n + length);
    body.trim()
        .parse()
        .map_err(|_| Failure::Error(format!("{path}: bad body {body:?}")))
}

fn table(opts: &Opts, rows: &[Row<Bcast>], n: usize) -> String {
    let med = |row: &Row<Bcast>, f: fn(&Bcast) -> f64| median(row.runs.iter().map(f).collect());
    let cpu_of = |name: &str| {
        rows.iter()
            .find(|r| r.imp == name && !r.runs.is_empty())
            .map(|r| med(r, |b| b.cpu_ns))
    };
    let floor = cpu_of("bcast-floor");
    let message = cpu_of("bcast-message");
    let mut out = format!(
        "### Broadcast: one {MESSAGE_LEN}-byte text message to {n} WebSockets\n\n\
         | impl | server CPU ns/recipient | min–max | vs floor | vs message | broadcast p50 ms | \
         p99 ms | frame payload B | server CPU % | client CPU % | softirq % | other CPU % |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for row in rows {
        if row.runs.is_empty() {
            let why = match &row.failure {
                Some(Failure::NotBuilt) => "not built".to_owned(),
                Some(Failure::Error(e)) => format!("error: {e}"),
                None => "no runs".to_owned(),
            };
            let _ = writeln!(out, "| {} | {why} |", row.imp);
            continue;
        }
        let cpu = med(row, |b| b.cpu_ns);
        let min = row
            .runs
            .iter()
            .map(|b| b.cpu_ns)
            .fold(f64::INFINITY, f64::min);
        let max = row.runs.iter().map(|b| b.cpu_ns).fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "| {} | {cpu:.0} | {min:.0}–{max:.0} | {} | {} | {:.1} | {:.1} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            row.imp.trim_start_matches("bcast-"),
            ratio(cpu, floor),
            ratio(cpu, message),
            med(row, |b| b.p50_ms),
            med(row, |b| b.p99_ms),
            row.runs[0].wire_len,
            med(row, |b| b.server_pct),
            med(row, |b| b.client_pct),
            med(row, |b| b.softirq_pct),
            med(row, |b| b.other_pct),
        );
    }
    let _ = write!(
        out,
        "\nMedians of {} run(s); each run: {} warm-up broadcasts, then {} measured, each \
         delivered to all {n} connections before the next. Server CPU = utime + stime of the \
         server process over the measured broadcasts / (broadcasts × connections).\n",
        rows.iter().map(|r| r.runs.len()).max().unwrap_or(0),
        opts.bcast_warmup,
        opts.broadcasts,
    );
    out.push_str(&disturbed_note(rows, opts.max_other));
    out
}
