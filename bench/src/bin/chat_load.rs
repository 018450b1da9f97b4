//! Load on `examples/chat`: one process, or instances sharing the room through Redis.
//!
//! ```text
//! cargo build --release --example chat -p tower-upgrade
//! cargo build --release -p tower-upgrade-bench --bin chat_load
//! target/release/chat_load --instances 1 --clients 1000            # the single-process room
//! target/release/chat_load --instances 2 --clients 1000            # two instances, one Redis
//! ```
//!
//! Starts `redis-server` (with `--instances` above 1) on a free loopback port and the chat
//! instances (`REDIS_URL` set), opens `--clients` WebSockets spread evenly over the instances,
//! and has the first `--senders` of them each send `--rate` messages a second, every message
//! stamped with the time it was sent. Every client reads the room; the time from sending to
//! receiving is the delivery latency. After `--warmup-secs`, it measures for
//! `--secs`: then the senders stop, the clients drain (at most 5 s), and it reports
//!
//! - delivery latency p50 / p99 / max, for all deliveries and for those across instances;
//! - deliveries expected (sent × clients) and missing;
//! - server CPU (`utime + stime` of every instance, from `/proc`) per delivered message;
//! - Redis CPU (`used_cpu_user + used_cpu_sys` from `INFO cpu`) per published message.
//!
//! Loopback only, bounded by count and time; it kills what it started when it ends.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// How long Redis's idle CPU is measured, before anyone talks.
const IDLE: Duration = Duration::from_secs(3);

const USAGE: &str = "usage: chat_load [--instances N (1)] [--clients N (1000)] [--senders N (10)] \
[--rate PER_SEC (10)] [--secs N (10)] [--warmup-secs N (2)] [--chat PATH (target/release/examples/chat)] \
[--redis-server PATH (redis-server)] [--redis yes|no (yes with 2+ instances)]";

struct Opts {
    instances: usize,
    clients: usize,
    senders: usize,
    rate: u64,
    secs: u64,
    warmup: u64,
    chat: PathBuf,
    redis_server: String,
    /// Through Redis even with one instance (`--redis yes`); always with more.
    redis: bool,
}

impl Opts {
    fn parse() -> Result<Self, String> {
        let mut opts = Self {
            instances: 1,
            clients: 1000,
            senders: 10,
            rate: 10,
            secs: 10,
            warmup: 2,
            chat: PathBuf::from("target/release/examples/chat"),
            redis_server: "redis-server".to_owned(),
            redis: false,
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let num = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--instances" => opts.instances = num()?.max(1) as usize,
                "--clients" => opts.clients = num()?.max(1) as usize,
                "--senders" => opts.senders = num()?.max(1) as usize,
                "--rate" => opts.rate = num()?.max(1),
                "--secs" => opts.secs = num()?.max(1),
                "--warmup-secs" => opts.warmup = num()?,
                "--chat" => opts.chat = PathBuf::from(value),
                "--redis-server" => opts.redis_server = value,
                "--redis" => opts.redis = value == "1" || value == "yes",
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        opts.senders = opts.senders.min(opts.clients);
        opts.redis |= opts.instances > 1;
        Ok(opts)
    }
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `utime + stime` of `pid` in seconds, from `/proc/PID/stat`.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after `)`.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / tower_upgrade_bench::clock_ticks()
}

/// Redis's own CPU time (`used_cpu_user + used_cpu_sys`, from `INFO cpu`), in seconds.
async fn redis_cpu(port: u16) -> f64 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(b"INFO cpu\r\n").await.unwrap();
    let mut buf = vec![0; 4096];
    let mut len = 0;
    // A bulk string: `$LEN\r\n...` with `used_cpu_user_children` last.
    while !String::from_utf8_lossy(&buf[..len]).contains("used_cpu_user_children") {
        let n = stream.read(&mut buf[len..]).await.unwrap();
        assert!(n > 0, "redis closed the connection");
        len += n;
    }
    let info = String::from_utf8_lossy(&buf[..len]).into_owned();
    ["used_cpu_user:", "used_cpu_sys:"]
        .iter()
        .filter_map(|key| {
            let line = info.lines().find(|l| l.starts_with(key))?;
            line[key.len()..].trim().parse::<f64>().ok()
        })
        .sum()
}

fn start_chat(opts: &Opts, redis: Option<u16>) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(&opts.chat);
    cmd.env("ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(port) = redis {
        cmd.env("REDIS_URL", format!("redis://127.0.0.1:{port}/"));
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", opts.chat.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "chat: open http://127.0.0.1:PORT/ in a browser"
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    (Proc(child), addr)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(addr: SocketAddr) -> Ws {
    let request = http::Request::get(format!("ws://{addr}/ws"))
        .header("host", addr.to_string())
        .header("origin", format!("http://{addr}"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(())
        .unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap()
        .0
}

/// What the clients share.
struct Shared {
    base: Instant,
    /// Messages stamped at or after this (µs since `base`) are measured.
    measure_from: AtomicU64,
    /// Messages stamped at or after this are not sent (0: no end yet).
    stop_at: AtomicU64,
    sent_measured: AtomicU64,
    delivered_measured: AtomicU64,
    instances: usize,
    /// The senders start once this is set.
    go: tokio::sync::watch::Sender<bool>,
    /// Clients whose connection ended before the run did.
    lost: AtomicU64,
    done: AtomicBool,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
}

/// One client: reads the room; returns (latency µs, across instances) of measured deliveries.
async fn client(
    id: usize,
    ws: Ws,
    sender: bool,
    rate: u64,
    shared: Arc<Shared>,
) -> Vec<(u32, bool)> {
    let (mut sink, mut stream) = ws.split();
    let here = id % shared.instances;
    if sender {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _ = shared.go.subscribe().wait_for(|go| *go).await;
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            // Spread the senders over the interval.
            tokio::time::sleep(Duration::from_micros(
                (id as u64 * 7919) % (1_000_000 / rate),
            ))
            .await;
            tick.reset();
            for seq in 0.. {
                tick.tick().await;
                let now = shared.now_us();
                let stop = shared.stop_at.load(Ordering::Relaxed);
                if stop != 0 && now >= stop {
                    break;
                }
                if now >= shared.measure_from.load(Ordering::Relaxed) {
                    shared.sent_measured.fetch_add(1, Ordering::Relaxed);
                }
                if sink
                    .send(Message::text(format!("s{id}: {seq} {now}")))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            // Keep the sink (and the connection) until the end.
            while !shared.done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    let mut seen = Vec::new();
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if shared.done.load(Ordering::Relaxed) { break; }
                continue;
            }
        };
        let Some(Ok(Message::Text(text))) = msg else {
            if shared.done.load(Ordering::Relaxed) {
                break;
            }
            match msg {
                Some(Ok(_)) => continue,
                // Dropped by the server (it fell behind the room, close 1008): counted.
                other => {
                    if shared.lost.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("chat_load: client {id} dropped: {other:?}");
                    }
                    break;
                }
            }
        };
        let now = shared.now_us();
        let mut parts = text.split(' ');
        let from: usize = parts
            .next()
            .and_then(|s| s.strip_prefix('s')?.strip_suffix(':')?.parse().ok())
            .unwrap();
        let stamp: u64 = parts.nth(1).and_then(|t| t.parse().ok()).unwrap();
        if stamp >= shared.measure_from.load(Ordering::Relaxed) {
            seen.push(((now - stamp) as u32, from % shared.instances != here));
            shared.delivered_measured.fetch_add(1, Ordering::Relaxed);
        }
    }
    seen
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn report(label: &str, mut lat: Vec<u32>) {
    lat.sort_unstable();
    println!(
        "  latency {label:<14} n={:>8}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
}

fn main() -> ExitCode {
    let opts = match Opts::parse() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = tower_upgrade_bench::raise_nofile_limit() {
        eprintln!("cannot raise RLIMIT_NOFILE: {e}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let limit = Duration::from_secs(opts.warmup + opts.secs + 120);
    match runtime.block_on(async { tokio::time::timeout(limit, run(&opts)).await }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => {
            eprintln!("chat_load: the run overran its deadline");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: &Opts) {
    let dir = std::env::temp_dir().join(format!("chat-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let redis = opts.redis.then(|| {
        let port = free_port();
        let child = Command::new(&opts.redis_server)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("run redis-server");
        (Proc(child), port)
    });
    if let Some((_, port)) = &redis {
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let servers: Vec<_> = (0..opts.instances)
        .map(|_| start_chat(opts, redis.as_ref().map(|(_, port)| *port)))
        .collect();

    let shared = Arc::new(Shared {
        base: Instant::now(),
        measure_from: AtomicU64::new(u64::MAX),
        stop_at: AtomicU64::new(0),
        sent_measured: AtomicU64::new(0),
        delivered_measured: AtomicU64::new(0),
        instances: opts.instances,
        go: tokio::sync::watch::channel(false).0,
        lost: AtomicU64::new(0),
        done: AtomicBool::new(false),
    });
    let mut sockets = Vec::with_capacity(opts.clients);
    for id in 0..opts.clients {
        sockets.push(connect(servers[id % opts.instances].1).await);
    }
    let clients: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(id, ws)| {
            tokio::spawn(client(
                id,
                ws,
                id < opts.senders,
                opts.rate,
                Arc::clone(&shared),
            ))
        })
        .collect();

    let cpu = |servers: &[(Proc, SocketAddr)]| -> f64 {
        servers.iter().map(|(p, _)| cpu_secs(p.0.id())).sum()
    };
    // Idle baseline: every client connected, nobody talking (Redis's own timers, the
    // instances' pings on their subscriptions).
    let redis_idle = match &redis {
        Some((_, port)) => {
            let before = redis_cpu(*port).await;
            tokio::time::sleep(IDLE).await;
            (redis_cpu(*port).await - before) / IDLE.as_secs_f64()
        }
        None => 0.0,
    };
    shared.go.send_replace(true);
    tokio::time::sleep(Duration::from_secs(opts.warmup)).await;
    let server_cpu0 = cpu(&servers);
    let client_cpu0 = cpu_secs(std::process::id());
    let redis_cpu0 = match &redis {
        Some((_, port)) => redis_cpu(*port).await,
        None => 0.0,
    };
    let start = shared.now_us();
    shared.measure_from.store(start, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(opts.secs)).await;
    shared.stop_at.store(shared.now_us(), Ordering::Relaxed);
    // Let the last sends go out, then drain, at most 5 s.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let expected = shared.sent_measured.load(Ordering::Relaxed) * opts.clients as u64;
    let drain = Instant::now();
    while shared.delivered_measured.load(Ordering::Relaxed) < expected
        && drain.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server_cpu = cpu(&servers) - server_cpu0;
    let client_cpu = cpu_secs(std::process::id()) - client_cpu0;
    let redis_cpu = match &redis {
        Some((_, port)) => redis_cpu(*port).await - redis_cpu0,
        None => 0.0,
    };
    shared.done.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut across = Vec::new();
    for c in clients {
        for (lat, cross) in c.await.unwrap() {
            all.push(lat);
            if cross {
                across.push(lat);
            }
        }
    }
    let sent = shared.sent_measured.load(Ordering::Relaxed);
    let delivered = all.len() as u64;
    println!(
        "chat_load: {} instance(s){}, {} clients, {} senders x {}/s, {} s measured",
        opts.instances,
        if redis.is_some() { " on one Redis" } else { "" },
        opts.clients,
        opts.senders,
        opts.rate,
        opts.secs
    );
    println!(
        "  sent {sent}, deliveries {delivered} of {expected} expected ({} missing); {} clients dropped",
        expected.saturating_sub(delivered),
        shared.lost.load(Ordering::Relaxed)
    );
    report("all", all);
    if opts.instances > 1 {
        report("across", across);
    }
    let elapsed = opts.secs as f64;
    println!(
        "  server CPU {:.2} s ({:.0}% of a core): {:.2} µs per delivered message, {:.1} µs per sent message",
        server_cpu,
        server_cpu / elapsed * 100.0,
        server_cpu * 1e6 / delivered.max(1) as f64,
        server_cpu * 1e6 / sent.max(1) as f64
    );
    println!(
        "  client CPU {:.2} s ({:.0}% of a core); load average at the end {}",
        client_cpu,
        client_cpu / elapsed * 100.0,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if redis.is_some() {
        let busy = (redis_cpu - redis_idle * elapsed).max(0.0);
        println!(
            "  Redis CPU {:.3} s ({:.1}% of a core; idle {:.2}% of a core): {:.1} µs per published \
             message, {:.1} µs above idle",
            redis_cpu,
            redis_cpu / elapsed * 100.0,
            redis_idle * 100.0,
            redis_cpu * 1e6 / sent.max(1) as f64,
            busy * 1e6 / sent.max(1) as f64
        );
    }
    drop(servers);
    drop(redis);
    let _ = std::fs::remove_dir_all(dir);
}
