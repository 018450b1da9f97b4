//! Load harness for the performance comparison (issue 6): this crate against a hand-written
//! floor and the common Rust WebSocket servers, each in a process of its own.
//!
//! ```text
//! cargo build --release -p tower-upgrade-bench
//! target/release/load all            # every measurement, 4–8 minutes
//! target/release/load echo --runs 5 --duration-ms 3000
//! ```
//!
//! Subcommands:
//!
//! - `passthrough`: HTTP/1.1 keep-alive `GET /` against `plain-axum` and `layered-axum`;
//! - `handshake`: new TCP connection + upgrade + close frame, `--handshakes` of them at
//!   `--conns` concurrency;
//! - `echo`: `--conns` WebSockets each sending one message and waiting for its echo, for
//!   each of `--sizes`;
//! - `idle`: memory per idle WebSocket, from `VmRSS` before and after `--idle-conns` are
//!   opened;
//! - `h2c`: requests/s over HTTP/2, `--h2-conns` connections × `--h2-streams` streams, on
//!   two servers: `h2c` (each connection upgrades from HTTP/1.1 with `Upgrade: h2c`; the
//!   answer to the upgrade request, on stream 1, is read and discarded before the load
//!   starts) and `h2-prior-knowledge` (hyper-util's `auto::Builder`). Both use the `h2`
//!   crate's client, so only how a connection starts differs;
//! - `broadcast` (not in `all`): one 100-byte text message to each of `--bcast-conns`
//!   WebSockets, as server CPU time per recipient, for a floor that writes a pre-built
//!   frame, this crate's `send` and `send_prepared` (with and without permessage-deflate),
//!   and axum (`bench/src/broadcast_load.rs`);
//! - `all`: all of the above but `broadcast`;
//! - `counts` (not in `all`; needs `valgrind` and `strace`): user-space instructions
//!   (callgrind) and system calls (`strace -f -c`) per handshake and per 20-byte and 16 KiB
//!   echo message, for every WebSocket server. Each server runs the same load twice, `n` and
//!   `2n` operations long, and the difference over `n` is the cost of one operation
//!   (start-up and connection set-up cancel out). Both are repeatable where CPU time is
//!   not: on this 2-core machine CPU time per operation varies by 10–20% from run to run;
//! - `soak` (not in `all`): `--soak-conns` WebSockets to `tower-upgrade` held for
//!   `--soak-secs`, each echoing a 20-byte message every `--soak-interval-ms` from a
//!   jittered start; counts errors, samples the server's `VmRSS` every 5 s, closes every
//!   connection with a close frame, and checks that the server's live upgraded-connection
//!   count (`GET /stats`) returns to 0.
//!
//! For every run of every impl the harness starts `bench_server` (from the same directory
//! as this binary) pinned to `--server-cpu`, pins itself to `--client-cpu`, runs the
//! bounded load over loopback, reads the server's CPU time (`utime + stime` in
//! `/proc/PID/stat`) and memory (`VmRSS` in `/proc/PID/status`), and kills it. Runs go
//! round-robin over the impls, `--runs` times, so that a change in the machine's load hits
//! every impl alike. It prints one markdown table per measurement with medians, and the
//! ratio of each impl's server CPU per operation to this crate's and to the floor's.
//!
//! The clients are hand-rolled and cheap: raw HTTP/1.1 requests, masked frames built once
//! per connection (RFC 6455 §5.3 requires masked client frames), one buffered read per
//! response. Every loop is bounded by a count and by a deadline, and a run that overruns
//! its deadline by `--grace-secs` is aborted.
//!
//! On a shared machine, each table also shows the softirq time and the CPU time of every
//! other process during the run. Before each run the harness waits (`--quiet-secs`) for the
//! rest of the machine to go quiet, and it redoes a run that other work disturbed
//! (`--max-other`, `--retries`). `BENCHMARKS.md` explains how to read the tables.
//!
//! `--impls a,b,c` limits a subcommand to some impls; `--help` lists every flag.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf,
};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio::time::timeout;

use tower_upgrade_bench::{apply_mask, clock_ticks, pin_to_cpu, raise_nofile_limit};

/// `load broadcast`.
#[path = "../broadcast_load.rs"]
mod broadcast_load;

/// The WebSocket servers, in table order: the floor, this crate, then the peers.
const WS_IMPLS: &[&str] = &[
    "floor",
    "tower-upgrade",
    "tower-upgrade-hyper",
    "tower-upgrade-raw",
    "tower-upgrade-raw-hyper",
    "fastwebsockets",
    "tokio-websockets",
    "axum",
    "hyper-tungstenite",
];
/// Run only when `--impls` names them: the crate's echo through split halves, in one task
/// (what the lock costs) and in two tasks joined by a channel, and `futures`' own
/// `StreamExt::split` of the socket in two tasks, for comparison.
const OPT_IN_IMPLS: &[&str] = &[
    "tower-upgrade-split",
    "tower-upgrade-split-tasks",
    "tower-upgrade-bilock-tasks",
];
/// `echo --deflate` and `idle --deflate`: permessage-deflate without context takeover
/// (`bench/src/deflate_server.rs`); `idle` also measures the crate's
/// context-takeover mode.
const DEFLATE_IMPLS: &[&str] = &["floor-deflate", "tower-upgrade-deflate", "yawc-deflate"];
const DEFLATE_IDLE_IMPLS: &[&str] = &[
    "floor",
    "tower-upgrade",
    "floor-deflate",
    "tower-upgrade-deflate",
    "yawc-deflate",
    "tower-upgrade-deflate-takeover",
];
const PASS_IMPLS: &[&str] = &["plain-axum", "layered-axum"];
const H2_IMPLS: &[&str] = &["h2c", "h2-prior-knowledge"];

/// RFC 6455 §1.3's sample key; no client here checks the accept key.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// How long a bench server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Bench servers exit on their own after this long, whatever happens to the harness.
const SERVER_MAX_SECS: u64 = 900;

const HELP: &str = "\
usage: load SUBCOMMAND [FLAGS]

subcommands: passthrough, handshake, echo, idle, h2c, soak, counts, broadcast,
             all (all but soak, counts and broadcast)

flags (defaults in brackets):
  --runs N            runs per impl, medians reported [3]
  --impls A,B         only these impls [all of the subcommand's]
                      (opt-in WebSocket impls, named only: tower-upgrade-split,
                      tower-upgrade-split-tasks, tower-upgrade-bilock-tasks)
  --conns N           concurrent connections [64]
  --handshakes N      handshakes per run [20000]
  --warmup N          handshakes before each measured handshake run [500]
  --duration-ms N     measured time of each echo / passthrough / h2 run [2000]
  --warmup-ms N       unmeasured time before it [300]
  --max-ops N         at most this many operations per measured run [5000000]
  --sizes A,B         echo message sizes in bytes [20,16384]
  --text              echo text messages instead of binary
  --deflate           echo and idle with permessage-deflate: JSON-like text messages,
                      compressed by the client; the deflate servers, a floor that makes
                      the same zlib-rs calls, and yawc; idle also after one compressed
                      16 KiB message
  --idle-conns N      WebSockets held open by the idle measurement [10000]
  --h2-conns N        HTTP/2 connections [4]
  --h2-streams N      concurrent streams per HTTP/2 connection [16]
  --soak-conns N      WebSockets held open by the soak [10000]
  --soak-secs N       how long the soak holds them [60]
  --soak-interval-ms N  each soak connection echoes a 20-byte message this often [5000]
  --server-cpu N      core the servers are pinned to [0]
  --client-cpu N      core this harness is pinned to [1]
  --threads N         server runtime threads, 1 = current-thread runtime [1]
  --grace-secs N      a run longer than its deadline plus this is aborted [30]
  --quiet-secs N      before each run, wait up to N s for the machine to be quiet
                      (other processes below 10% of a core) [5]
  --max-other PCT     a run during which other work took more than PCT% of a core
                      is done again [20]
  --retries N         at most this many times [2]
  --server PATH       the bench_server binary [next to this binary]
  --count-ops N       counts: operations in the smaller of its two runs (handshakes;
                      echo messages are 16 × N) [1000]
  --bcast-conns N     broadcast: WebSockets that receive each broadcast [10000]
  --broadcasts N      broadcast: measured broadcasts per run [50]
  --bcast-warmup N    broadcast: unmeasured broadcasts before them [5]
  --callgrind         broadcast: user-space instructions per recipient instead (valgrind;
                      use fewer --bcast-conns, say 1000)
";

// ===== options =====

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Passthrough,
    Handshake,
    Echo,
    Idle,
    H2c,
    Soak,
    Counts,
    Broadcast,
    All,
}

#[derive(Clone, Debug)]
struct Opts {
    mode: Mode,
    runs: usize,
    impls: Option<Vec<String>>,
    conns: usize,
    handshakes: u64,
    warmup: u64,
    duration: Duration,
    warmup_time: Duration,
    max_ops: u64,
    sizes: Vec<usize>,
    text: bool,
    deflate: bool,
    idle_conns: usize,
    h2_conns: usize,
    h2_streams: usize,
    soak_conns: usize,
    soak_secs: Duration,
    soak_interval: Duration,
    server_cpu: usize,
    client_cpu: usize,
    threads: usize,
    grace: Duration,
    quiet: Duration,
    max_other: f64,
    retries: usize,
    server: PathBuf,
    count_ops: u64,
    bcast_conns: usize,
    broadcasts: u64,
    bcast_warmup: u64,
    bcast_callgrind: bool,
}

impl Opts {
    fn parse() -> Result<Self, String> {
        let mut args = std::env::args().skip(1);
        let mode = match args.next().as_deref() {
            Some("passthrough") => Mode::Passthrough,
            Some("handshake") => Mode::Handshake,
            Some("echo") => Mode::Echo,
            Some("idle") => Mode::Idle,
            Some("h2c") => Mode::H2c,
            Some("soak") => Mode::Soak,
            Some("counts") => Mode::Counts,
            Some("broadcast") => Mode::Broadcast,
            Some("all") => Mode::All,
            Some("--help" | "-h" | "help") | None => return Err(HELP.to_owned()),
            Some(other) => return Err(format!("unknown subcommand {other:?}\n\n{HELP}")),
        };
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut opts = Self {
            mode,
            runs: 3,
            impls: None,
            conns: 64,
            handshakes: 20_000,
            warmup: 500,
            duration: Duration::from_millis(2000),
            warmup_time: Duration::from_millis(300),
            max_ops: 5_000_000,
            sizes: vec![20, 16 * 1024],
            text: false,
            deflate: false,
            idle_conns: 10_000,
            h2_conns: 4,
            h2_streams: 16,
            soak_conns: 10_000,
            soak_secs: Duration::from_secs(60),
            soak_interval: Duration::from_millis(5000),
            server_cpu: 0,
            client_cpu: 1,
            threads: 1,
            grace: Duration::from_secs(30),
            quiet: Duration::from_secs(5),
            max_other: 20.0,
            retries: 2,
            server: exe.with_file_name("bench_server"),
            count_ops: 1000,
            bcast_conns: 10_000,
            broadcasts: 50,
            bcast_warmup: 5,
            bcast_callgrind: false,
        };
        while let Some(flag) = args.next() {
            if flag == "--text" {
                opts.text = true;
                continue;
            }
            if flag == "--deflate" {
                opts.deflate = true;
                opts.text = true;
                continue;
            }
            if flag == "--callgrind" {
                opts.bcast_callgrind = true;
                continue;
            }
            if flag == "--help" || flag == "-h" {
                return Err(HELP.to_owned());
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let num = |v: &str| -> Result<u64, String> {
                v.replace('_', "")
                    .parse()
                    .map_err(|e| format!("{flag} {v:?}: {e}"))
            };
            match flag.as_str() {
                "--runs" => opts.runs = num(&value)?.max(1) as usize,
                "--impls" => opts.impls = Some(value.split(',').map(str::to_owned).collect()),
                "--conns" => opts.conns = num(&value)?.max(1) as usize,
                "--handshakes" => opts.handshakes = num(&value)?,
                "--warmup" => opts.warmup = num(&value)?,
                "--duration-ms" => opts.duration = Duration::from_millis(num(&value)?),
                "--warmup-ms" => opts.warmup_time = Duration::from_millis(num(&value)?),
                "--max-ops" => opts.max_ops = num(&value)?.max(1),
                "--sizes" => {
                    opts.sizes = value
                        .split(',')
                        .map(|v| num(v).map(|n| n as usize))
                        .collect::<Result<_, _>>()?;
                }
                "--idle-conns" => opts.idle_conns = num(&value)?.max(1) as usize,
                "--h2-conns" => opts.h2_conns = num(&value)?.max(1) as usize,
                "--h2-streams" => opts.h2_streams = num(&value)?.max(1) as usize,
                "--soak-conns" => opts.soak_conns = num(&value)?.max(1) as usize,
                "--soak-secs" => opts.soak_secs = Duration::from_secs(num(&value)?.max(1)),
                "--soak-interval-ms" => {
                    opts.soak_interval = Duration::from_millis(num(&value)?.max(1));
                }
                "--server-cpu" => opts.server_cpu = num(&value)? as usize,
                "--client-cpu" => opts.client_cpu = num(&value)? as usize,
                "--threads" => opts.threads = num(&value)?.max(1) as usize,
                "--grace-secs" => opts.grace = Duration::from_secs(num(&value)?),
                "--quiet-secs" => opts.quiet = Duration::from_secs(num(&value)?),
                "--max-other" => opts.max_other = num(&value)? as f64,
                "--retries" => opts.retries = num(&value)? as usize,
                "--server" => opts.server = PathBuf::from(value),
                "--count-ops" => opts.count_ops = num(&value)?.max(1),
                "--bcast-conns" => opts.bcast_conns = num(&value)?.max(1) as usize,
                "--broadcasts" => opts.broadcasts = num(&value)?.max(1),
                "--bcast-warmup" => opts.bcast_warmup = num(&value)?,
                other => return Err(format!("unknown flag {other:?}\n\n{HELP}")),
            }
        }
        Ok(opts)
    }

    /// The WebSocket impls, less those `--impls` leaves out, and the opt-in ones it names.
    fn select_ws(&self) -> Vec<&'static str> {
        let mut impls = self.select(WS_IMPLS);
        if let Some(only) = &self.impls {
            impls.extend(
                OPT_IN_IMPLS
                    .iter()
                    .copied()
                    .filter(|name| only.iter().any(|o| o == name)),
            );
        }
        impls
    }

    /// The impls of `all`, less those `--impls` leaves out.
    fn select(&self, all: &[&'static str]) -> Vec<&'static str> {
        all.iter()
            .copied()
            .filter(|name| {
                self.impls
                    .as_ref()
                    .is_none_or(|only| only.iter().any(|o| o == name))
            })
            .collect()
    }
}

fn main() -> ExitCode {
    if std::env::args()
        .skip(1)
        .any(|a| matches!(a.as_str(), "--help" | "-h" | "help"))
    {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let opts = match Opts::parse() {
        Ok(opts) => opts,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    // Before the runtime: its threads inherit the affinity.
    if let Err(e) = pin_to_cpu(opts.client_cpu) {
        eprintln!("load: cannot pin to cpu {}: {e}", opts.client_cpu);
        return ExitCode::FAILURE;
    }
    let (needed, flag) = match opts.mode {
        Mode::Soak => (opts.soak_conns, "--soak-conns"),
        Mode::Idle | Mode::All => (opts.idle_conns, "--idle-conns"),
        Mode::Broadcast => (opts.bcast_conns, "--bcast-conns"),
        _ => (0, ""),
    };
    match raise_nofile_limit() {
        Ok(limit) if (limit as usize) < needed + 256 => {
            eprintln!("load: RLIMIT_NOFILE is {limit}: this measurement needs {flag} + 256");
        }
        Ok(_) => {}
        Err(e) => eprintln!("load: cannot raise RLIMIT_NOFILE: {e}"),
    }
    if !opts.server.exists() {
        eprintln!(
            "load: {} not found: build it first with `cargo build --release -p tower-upgrade-bench`",
            opts.server.display()
        );
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(&opts));
    ExitCode::SUCCESS
}

async fn run(opts: &Opts) {
    println!("{}", machine_report(opts));
    let all = opts.mode == Mode::All;
    if all || opts.mode == Mode::Passthrough {
        println!("{}", passthrough(opts).await);
    }
    if all || opts.mode == Mode::Handshake {
        println!("{}", handshake(opts).await);
    }
    if all || opts.mode == Mode::Echo {
        for &size in &opts.sizes {
            println!("{}", echo(opts, size).await);
        }
    }
    if all || opts.mode == Mode::Idle {
        println!("{}", idle(opts).await);
    }
    if all || opts.mode == Mode::H2c {
        println!("{}", h2c(opts).await);
    }
    // Not part of `all`: a stability check, not a comparison.
    if opts.mode == Mode::Soak {
        println!("{}", soak(opts).await);
    }
    // Not part of `all`: slow (every server runs under valgrind or strace).
    if opts.mode == Mode::Counts {
        println!("{}", counts(opts).await);
    }
    // Not part of `all`: 10 000 connections per impl and run.
    if opts.mode == Mode::Broadcast {
        println!("{}", broadcast_load::broadcast(opts).await);
    }
}

fn machine_report(opts: &Opts) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    // Not `available_parallelism`: this process is pinned to one core by now.
    let cores = std::fs::read_to_string("/proc/cpuinfo").map_or(0, |s| {
        s.lines().filter(|l| l.starts_with("processor")).count()
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
    let load = std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    );
    format!(
        "machine: {cpu}, {cores} core(s), Linux {kernel}, load average {load}\n\
         server pinned to cpu {}, client to cpu {}, server runtime threads {}, runs {}\n",
        opts.server_cpu, opts.client_cpu, opts.threads, opts.runs
    )
}

// ===== bench servers =====

/// A running `bench_server`.
struct Server {
    imp: &'static str,
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

/// Why an impl has no numbers.
#[derive(Debug)]
enum Failure {
    /// `bench_server` does not have it in this build.
    NotBuilt,
    /// Something went wrong; the message says what.
    Error(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Self::Error(e.to_string())
    }
}

impl Server {
    async fn start(opts: &Opts, imp: &'static str) -> Result<Self, Failure> {
        Self::start_under(opts, imp, &[]).await
    }

    /// Starts the server under `tool` (a command and its arguments, the server's command
    /// line appended), or on its own when `tool` is empty.
    async fn start_under(opts: &Opts, imp: &'static str, tool: &[String]) -> Result<Self, Failure> {
        let mut command = match tool.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&opts.server);
                command
            }
            None => Command::new(&opts.server),
        };
        let mut child = command
            .args(["--impl", imp, "--addr", "127.0.0.1:0"])
            .args(["--cpu", &opts.server_cpu.to_string()])
            .args(["--threads", &opts.threads.to_string()])
            .args(["--max-secs", &SERVER_MAX_SECS.to_string()])
            // The server exits when this pipe closes.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let read = timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
        if let Ok(Ok(n)) = read
            && n > 0
        {
            let addr = line
                .trim()
                .parse()
                .map_err(|e| Failure::Error(format!("bad address line {line:?}: {e}")))?;
            let pid = child.id().ok_or(Failure::Error("server exited".into()))?;
            return Ok(Self {
                imp,
                child,
                pid,
                addr,
            });
        }
        // No address: see why.
        let _ = child.start_kill();
        match timeout(START_TIMEOUT, child.wait()).await {
            // bench_server's status for an impl that is not in this build.
            Ok(Ok(status)) if status.code() == Some(2) => Err(Failure::NotBuilt),
            Ok(Ok(status)) => Err(Failure::Error(format!("server exited: {status}"))),
            _ => Err(Failure::Error("server did not start".into())),
        }
    }

    fn cpu(&self) -> io::Result<Duration> {
        cpu_time(&self.pid.to_string())
    }

    fn rss_kib(&self) -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::other("no VmRSS"))
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = timeout(START_TIMEOUT, self.child.wait()).await;
    }

    /// Closes the server's stdin, on which it exits by itself, so that a tool it runs
    /// under writes its report; kills it after `limit`.
    async fn stop_gracefully(mut self, limit: Duration) -> Result<(), Failure> {
        drop(self.child.stdin.take());
        match timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(Failure::Error(format!("server exited: {status}"))),
            Ok(Err(e)) => Err(e.into()),
            Err(_elapsed) => {
                self.stop().await;
                Err(Failure::Error("server did not exit when asked".into()))
            }
        }
    }
}

/// `utime + stime` of a process (`"self"` or a PID), all threads together.
fn cpu_time(pid: &str) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .ok_or_else(|| io::Error::other("bad /proc stat"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `utime` and `stime` are fields 14 and 15 of proc(5); `rest` starts at field 3.
    let ticks = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("bad /proc stat"))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / clock_ticks()))
}

// ===== measurements =====

/// One measured run.
struct Sample {
    ops: u64,
    wall: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
    /// Machine-wide time in softirq: loopback packet processing. A tick that lands in a
    /// softirq is also charged to the process it interrupted, if any.
    softirq: Duration,
    /// Machine-wide busy time (user + nice + system + irq + softirq) not charged to the
    /// server or to this harness: other processes (a colleague's build, say), and interrupts
    /// taken while a core was idle. Large values mean a disturbed run.
    other_cpu: Duration,
    /// Latency of each operation, in nanoseconds.
    lat: Vec<u32>,
}

impl Sample {
    /// Runs `load` and measures it: wall time, the server's and this process's CPU time.
    async fn measure<F>(server: &Server, load: F) -> Result<Self, Failure>
    where
        F: Future<Output = Result<Vec<u32>, Failure>>,
    {
        let (s0, c0, m0) = (server.cpu()?, cpu_time("self")?, machine_time()?);
        let t0 = Instant::now();
        let lat = load.await?;
        let wall = t0.elapsed();
        let (s1, c1, m1) = (server.cpu()?, cpu_time("self")?, machine_time()?);
        let server_cpu = s1.saturating_sub(s0);
        let client_cpu = c1.saturating_sub(c0);
        Ok(Self {
            ops: lat.len() as u64,
            wall,
            server_cpu,
            client_cpu,
            softirq: m1.softirq.saturating_sub(m0.softirq),
            other_cpu: m1
                .busy
                .saturating_sub(m0.busy)
                .saturating_sub(server_cpu + client_cpu),
            lat,
        })
    }

    fn metrics(mut self) -> Metrics {
        self.lat.sort_unstable();
        let pct = |q: f64| -> f64 {
            if self.lat.is_empty() {
                return f64::NAN;
            }
            let i = ((self.lat.len() - 1) as f64 * q).round() as usize;
            f64::from(self.lat[i]) / 1e3
        };
        let ops = self.ops.max(1) as f64;
        let wall = self.wall.as_secs_f64().max(1e-9);
        Metrics {
            rate: self.ops as f64 / wall,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            cpu_us: self.server_cpu.as_secs_f64() * 1e6 / ops,
            server_pct: self.server_cpu.as_secs_f64() * 100.0 / wall,
            client_pct: self.client_cpu.as_secs_f64() * 100.0 / wall,
            softirq_pct: self.softirq.as_secs_f64() * 100.0 / wall,
            other_pct: self.other_cpu.as_secs_f64() * 100.0 / wall,
        }
    }
}

/// Machine-wide CPU time, all cores, from the first line of `/proc/stat`.
struct MachineTime {
    /// user + nice + system.
    tasks: Duration,
    /// `tasks` + irq + softirq.
    busy: Duration,
    softirq: Duration,
}

fn machine_time() -> io::Result<MachineTime> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .ok_or_else(|| io::Error::other("bad /proc/stat"))?
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = |t: u64| Duration::from_secs_f64(t as f64 / clock_ticks());
    // proc(5): user nice system idle iowait irq softirq ...
    match fields[..] {
        [user, nice, system, _, _, irq, softirq, ..] => Ok(MachineTime {
            tasks: ticks(user + nice + system),
            busy: ticks(user + nice + system + irq + softirq),
            softirq: ticks(softirq),
        }),
        _ => Err(io::Error::other("bad /proc/stat")),
    }
}

/// What a table shows for one run; medians are taken field by field. The `_pct` fields
/// are percent of one core.
#[derive(Clone, Copy)]
struct Metrics {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    /// Server CPU time per operation, µs.
    cpu_us: f64,
    server_pct: f64,
    client_pct: f64,
    softirq_pct: f64,
    other_pct: f64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}/s, p50 {:.0} µs, p99 {:.0} µs, server {:.2} µs/op, cpu % server {:.0} \
             client {:.0} softirq {:.0} other {:.0}",
            self.rate,
            self.p50_us,
            self.p99_us,
            self.cpu_us,
            self.server_pct,
            self.client_pct,
            self.softirq_pct,
            self.other_pct
        )
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        f64::midpoint(values[n / 2 - 1], values[n / 2])
    }
}

fn median_metrics(runs: &[Metrics]) -> Metrics {
    let m = |f: fn(&Metrics) -> f64| median(runs.iter().map(f).collect());
    Metrics {
        rate: m(|r| r.rate),
        p50_us: m(|r| r.p50_us),
        p99_us: m(|r| r.p99_us),
        cpu_us: m(|r| r.cpu_us),
        server_pct: m(|r| r.server_pct),
        client_pct: m(|r| r.client_pct),
        softirq_pct: m(|r| r.softirq_pct),
        other_pct: m(|r| r.other_pct),
    }
}

/// The results of one impl over all runs.
struct Row<T> {
    imp: &'static str,
    runs: Vec<T>,
    failure: Option<Failure>,
    /// Runs kept although other work disturbed them (after every retry).
    disturbed: usize,
}

/// Runs `one` for every impl, round-robin, `--runs` times. An impl that is not built, or
/// that fails, is not run again.
async fn round_robin<T, F>(
    opts: &Opts,
    what: &str,
    impls: &[&'static str],
    mut one: F,
) -> Vec<Row<T>>
where
    F: AsyncFnMut(&Server) -> Result<T, Failure>,
    T: RunValue,
{
    let mut rows: Vec<Row<T>> = impls
        .iter()
        .map(|&imp| Row {
            imp,
            runs: Vec::new(),
            failure: None,
            disturbed: 0,
        })
        .collect();
    for run in 1..=opts.runs {
        for row in &mut rows {
            // Bounded: one try, plus `--retries` for runs that other work disturbed.
            for attempt in 0..=opts.retries {
                if row.failure.is_some() {
                    break;
                }
                wait_for_quiet(opts.quiet).await;
                let result = match Server::start(opts, row.imp).await {
                    Ok(server) => {
                        let deadline = opts.duration + opts.grace + Duration::from_secs(60);
                        let result = match timeout(deadline, one(&server)).await {
                            Ok(result) => result,
                            Err(_) => Err(Failure::Error("run timed out".into())),
                        };
                        server.stop().await;
                        result
                    }
                    Err(failure) => Err(failure),
                };
                let value = match result {
                    Ok(value) => value,
                    Err(failure) => {
                        eprintln!("{what} {} run {run}/{}: {failure:?}", row.imp, opts.runs);
                        row.failure = Some(failure);
                        break;
                    }
                };
                eprintln!("{what} {} run {run}/{}: {value:?}", row.imp, opts.runs);
                let disturbed = value.other_pct() > opts.max_other;
                if disturbed && attempt < opts.retries {
                    eprintln!(
                        "  other work took {:.0}% of a core: again",
                        value.other_pct()
                    );
                    continue;
                }
                row.disturbed += usize::from(disturbed);
                row.runs.push(value);
                break;
            }
        }
    }
    rows
}

/// A run's result, as [`round_robin`] sees it.
trait RunValue: std::fmt::Debug {
    /// CPU time, in percent of one core, that other work took during the run.
    fn other_pct(&self) -> f64 {
        0.0
    }
}

impl RunValue for Metrics {
    fn other_pct(&self) -> f64 {
        self.other_pct
    }
}

/// Memory does not depend on what else runs.
impl RunValue for Idle {}

/// The note under a table for runs kept although other work disturbed them.
fn disturbed_note<T>(rows: &[Row<T>], max_other: f64) -> String {
    let list: Vec<String> = rows
        .iter()
        .filter(|r| r.disturbed > 0)
        .map(|r| format!("{} ({} of {})", r.imp, r.disturbed, r.runs.len()))
        .collect();
    if list.is_empty() {
        String::new()
    } else {
        format!(
            "\nRuns kept although other work took more than {max_other:.0}% of a core after \
             every retry: {}.\n",
            list.join(", ")
        )
    }
}

/// Waits, up to `max`, until the rest of the machine has been quiet (tasks below 10% of a
/// core) for 250 ms. Nothing of ours runs meanwhile, so whatever is busy is someone else.
async fn wait_for_quiet(max: Duration) {
    const WINDOW: Duration = Duration::from_millis(250);
    let start = Instant::now();
    // Bounded by `max`, in steps of `WINDOW`.
    while start.elapsed() < max {
        let Ok(m0) = machine_time() else { return };
        tokio::time::sleep(WINDOW).await;
        let Ok(m1) = machine_time() else { return };
        let busy = m1.tasks.saturating_sub(m0.tasks).as_secs_f64() / WINDOW.as_secs_f64();
        if busy < 0.10 {
            return;
        }
    }
    if !max.is_zero() {
        eprintln!("load: the machine is busy with other work; measuring anyway");
    }
}

/// The impl the ratios are taken against: this crate's WebSocket handler if it was
/// measured, else the core layer's raw variant.
fn reference<'a, T>(rows: &'a [Row<T>], names: &[&str]) -> Option<&'a Row<T>> {
    names
        .iter()
        .find_map(|name| rows.iter().find(|r| r.imp == *name && !r.runs.is_empty()))
}

fn ratio(value: f64, reference: Option<f64>) -> String {
    match reference {
        Some(r) if r > 0.0 && value.is_finite() => format!("{:.2}", value / r),
        _ => "–".to_owned(),
    }
}

/// A table of [`Metrics`] rows: rate, latency, server CPU per operation and its ratios.
fn metrics_table(
    title: &str,
    unit: &str,
    rows: &[Row<Metrics>],
    reference_names: &[&str],
    floor: Option<&str>,
    max_other: f64,
) -> String {
    let medians: Vec<Option<Metrics>> = rows
        .iter()
        .map(|r| (!r.runs.is_empty()).then(|| median_metrics(&r.runs)))
        .collect();
    let cpu_of = |name: &str| -> Option<f64> {
        rows.iter()
            .zip(&medians)
            .find(|(r, _)| r.imp == name)
            .and_then(|(_, m)| m.map(|m| m.cpu_us))
    };
    let reference = reference(rows, reference_names).map(|r| r.imp);
    let ref_cpu = reference.and_then(cpu_of);
    let floor_cpu = floor.and_then(cpu_of);
    let mut out = format!("### {title}\n\n");
    let _ = write!(
        out,
        "| impl | {unit}/s | p50 µs | p99 µs | server CPU µs/{unit} | min–max | vs {} | ",
        reference
            .or(reference_names.first().copied())
            .unwrap_or("–")
    );
    if let Some(floor) = floor {
        let _ = write!(out, "vs {floor} | ");
    }
    out.push_str("server CPU % | client CPU % | softirq % | other CPU % |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|");
    if floor.is_some() {
        out.push_str("---:|");
    }
    out.push_str("---:|---:|---:|---:|\n");
    for (row, m) in rows.iter().zip(&medians) {
        let _ = write!(out, "| {} |", row.imp);
        match (m, &row.failure) {
            (Some(m), _) => {
                let cpu = row.runs.iter().map(|r| r.cpu_us);
                let (min, max) = (
                    cpu.clone().fold(f64::INFINITY, f64::min),
                    cpu.fold(0.0, f64::max),
                );
                let _ = write!(
                    out,
                    " {:.0} | {:.0} | {:.0} | {:.2} | {min:.2}–{max:.2} | {} |",
                    m.rate,
                    m.p50_us,
                    m.p99_us,
                    m.cpu_us,
                    ratio(m.cpu_us, ref_cpu)
                );
                if floor.is_some() {
                    let _ = write!(out, " {} |", ratio(m.cpu_us, floor_cpu));
                }
                let _ = write!(
                    out,
                    " {:.0} | {:.0} | {:.0} | {:.0} |",
                    m.server_pct, m.client_pct, m.softirq_pct, m.other_pct
                );
            }
            (None, failure) => {
                let text = match failure {
                    Some(Failure::NotBuilt) => "not built yet".to_owned(),
                    Some(Failure::Error(e)) => format!("error: {e}"),
                    None => "no runs".to_owned(),
                };
                let cols = if floor.is_some() { 11 } else { 10 };
                let _ = write!(out, " {text} |{}", " |".repeat(cols - 1));
            }
        }
        out.push('\n');
    }
    let _ = write!(
        out,
        "\nMedians of {} run(s). The ratios compare server CPU per {unit} (`utime + stime` of \
         the server process). CPU % columns are percent of one core over the measured time: \
         softirq is machine-wide (and overlaps the process columns), other is busy time charged to \
         neither the server nor the client (other processes, interrupts on idle cores).\n",
        rows.iter().map(|r| r.runs.len()).max().unwrap_or(0)
    );
    out.push_str(&disturbed_note(rows, max_other));
    out
}

// ===== passthrough =====

async fn passthrough(opts: &Opts) -> String {
    let impls = opts.select(PASS_IMPLS);
    let rows = round_robin(opts, "passthrough", &impls, async |server: &Server| {
        let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).into_bytes();
        let mut conns = Vec::with_capacity(opts.conns);
        for _ in 0..opts.conns {
            let tcp = TcpStream::connect(server.addr).await?;
            tcp.set_nodelay(true)?;
            conns.push((tcp, Reader::new(4096)));
        }
        let request: Arc<[u8]> = request.into();
        let (conns, _) = keep_alive_load(conns, &request, opts.warmup_time, opts.max_ops).await?;
        let mut conns = Some(conns);
        let sample = Sample::measure(server, async {
            let (_, lat) = keep_alive_load(
                conns.take().expect("once"),
                &request,
                opts.duration,
                opts.max_ops,
            )
            .await?;
            Ok(lat)
        })
        .await?;
        Ok(sample.metrics())
    })
    .await;
    let mut out = metrics_table(
        "Pass-through: HTTP/1.1 keep-alive GET / (end to end)",
        "req",
        &rows,
        &["plain-axum"],
        None,
        opts.max_other,
    );
    let cpu = |name: &str| {
        rows.iter()
            .find(|r| r.imp == name && !r.runs.is_empty())
            .map(|r| median_metrics(&r.runs))
    };
    if let (Some(plain), Some(layered)) = (cpu("plain-axum"), cpu("layered-axum")) {
        let _ = write!(
            out,
            "\nlayered / plain: server CPU per request {:.3}, requests/s {:.3} (goal: CPU ratio ≤ 1.02)\n",
            layered.cpu_us / plain.cpu_us,
            layered.rate / plain.rate
        );
    }
    out
}

/// Each connection sends a request and reads the response, until `duration` has passed
/// or `max_ops` requests are done. Returns the connections (for the next phase) and every
/// latency.
async fn keep_alive_load(
    conns: Vec<(TcpStream, Reader)>,
    request: &Arc<[u8]>,
    duration: Duration,
    max_ops: u64,
) -> Result<(Vec<(TcpStream, Reader)>, Vec<u32>), Failure> {
    let deadline = Instant::now() + duration;
    let per_conn = (max_ops / conns.len().max(1) as u64).max(1);
    let mut tasks = JoinSet::new();
    for (mut tcp, mut rd) in conns {
        let request = Arc::clone(request);
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            for _ in 0..per_conn {
                let t = Instant::now();
                tcp.write_all(&request).await?;
                let status = rd.response(&mut tcp).await?;
                if status != 200 {
                    return Err(io::Error::other(format!("status {status}")));
                }
                let now = Instant::now();
                lat.push(nanos(now - t));
                if now >= deadline {
                    break;
                }
            }
            Ok::<_, io::Error>((tcp, rd, lat))
        });
    }
    let mut conns = Vec::new();
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (tcp, rd, lat) = joined.map_err(|e| Failure::Error(e.to_string()))??;
        conns.push((tcp, rd));
        all.extend(lat);
    }
    Ok((conns, all))
}

// ===== handshake =====

async fn handshake(opts: &Opts) -> String {
    let impls = opts.select_ws();
    let rows = round_robin(opts, "handshake", &impls, async |server: &Server| {
        let load = |count: u64| handshakes(server.addr, count, opts.conns, opts.grace);
        load(opts.warmup).await?;
        let sample = Sample::measure(server, load(opts.handshakes)).await?;
        Ok(sample.metrics())
    })
    .await;
    metrics_table(
        &format!(
            "Handshake: new connection + upgrade + close frame, {} at concurrency {}",
            opts.handshakes, opts.conns
        ),
        "handshake",
        &rows,
        &["tower-upgrade", "tower-upgrade-raw"],
        Some("floor"),
        opts.max_other,
    )
}

/// `count` handshakes over `conns` concurrent tasks, each a fresh connection that
/// upgrades, sends a close frame and waits for the server's close frame. Bounded by
/// `count` and by `limit`.
async fn handshakes(
    addr: SocketAddr,
    count: u64,
    conns: usize,
    limit: Duration,
) -> Result<Vec<u32>, Failure> {
    let deadline = Instant::now() + limit;
    let next = Arc::new(AtomicU64::new(0));
    let request: Arc<[u8]> = upgrade_request(addr).into();
    let close: Arc<[u8]> =
        masked_frame(0x8, &1000u16.to_be_bytes(), [0x37, 0xfa, 0x21, 0x3d]).into();
    let mut tasks = JoinSet::new();
    for _ in 0..conns {
        let (next, request, close) = (Arc::clone(&next), Arc::clone(&request), Arc::clone(&close));
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut rd = Reader::new(1024);
            while next.fetch_add(1, Ordering::Relaxed) < count && Instant::now() < deadline {
                let t = Instant::now();
                let (mut tcp, rd2) = ws_connect(addr, &request, rd).await?;
                rd = rd2;
                tcp.write_all(&close).await?;
                let (b0, _) = rd.frame(&mut tcp).await?;
                if b0 & 0x0f != 0x8 {
                    return Err(io::Error::other(format!(
                        "expected a close frame, got {b0:#x}"
                    )));
                }
                lat.push(nanos(t.elapsed()));
            }
            Ok::<_, io::Error>(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(joined.map_err(|e| Failure::Error(e.to_string()))??);
    }
    Ok(all)
}

// ===== echo =====

async fn echo(opts: &Opts, size: usize) -> String {
    let impls = if opts.deflate {
        opts.select(DEFLATE_IMPLS)
    } else {
        opts.select_ws()
    };
    let ratios = std::sync::Mutex::new(Vec::new());
    let opcode = if opts.text { 0x1 } else { 0x2 };
    let rows = round_robin(
        opts,
        &format!("echo {size} B"),
        &impls,
        async |server: &Server| {
            let conns = echo_conns(server.addr, opts.conns, size, opcode, opts.deflate).await?;
            let conns = echo_load(conns, opts.warmup_time, opts.max_ops).await?.0;
            if opts.deflate {
                let c = &conns[0];
                ratios
                    .lock()
                    .unwrap()
                    .push((server.imp, c.reply_len as f64 / size as f64));
            }
            let mut conns = Some(conns);
            let sample = Sample::measure(server, async {
                Ok(
                    echo_load(conns.take().expect("once"), opts.duration, opts.max_ops)
                        .await?
                        .1,
                )
            })
            .await?;
            Ok(sample.metrics())
        },
    )
    .await;
    let mut out = metrics_table(
        &format!(
            "Echo: {} connections, {size}-byte {} messages{}, one in flight per connection",
            opts.conns,
            if opts.text { "text" } else { "binary" },
            if opts.deflate {
                " (JSON-like, compressed by the client)"
            } else {
                ""
            },
        ),
        "msg",
        &rows,
        &[
            "tower-upgrade",
            "tower-upgrade-raw",
            "tower-upgrade-deflate",
        ],
        Some(if opts.deflate {
            "floor-deflate"
        } else {
            "floor"
        }),
        opts.max_other,
    );
    let ratios = ratios.into_inner().unwrap();
    for imp in impls {
        let mine: Vec<f64> = ratios.iter().filter(|r| r.0 == imp).map(|r| r.1).collect();
        if let Some(r) = mine.first() {
            let _ = writeln!(
                out,
                "compressed size / message size, server to client, {imp}: {r:.3}"
            );
        }
    }
    out
}

/// Opens `count` WebSockets, each with its `size`-byte message (`opcode`) masked once.
async fn echo_conns(
    addr: SocketAddr,
    count: usize,
    size: usize,
    opcode: u8,
    deflate: bool,
) -> io::Result<Vec<EchoConn>> {
    let request = if deflate {
        deflate_upgrade_request(addr)
    } else {
        upgrade_request(addr)
    };
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        let (tcp, rd) = ws_connect(addr, &request, Reader::new(size + 64)).await?;
        let key = (i as u32).wrapping_mul(0x9e37_79b9).to_be_bytes();
        let (payload, frame) = if deflate {
            let payload = json_like(size, i);
            let frame = compressed_frame(opcode, &payload, key);
            (payload, frame)
        } else {
            // Printable payload, so that text mode sends valid UTF-8.
            let payload: Vec<u8> = (0..size).map(|j| b'a' + ((i + j) % 26) as u8).collect();
            let frame = masked_frame(opcode, &payload, key);
            (payload, frame)
        };
        conns.push(EchoConn {
            tcp,
            rd,
            frame,
            payload,
            deflate,
            reply_b0: 0,
            reply_len: 0,
        });
    }
    Ok(conns)
}

/// `size` bytes of JSON-like text, a little different for each connection.
fn json_like(size: usize, conn: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 96);
    let mut i = conn;
    while out.len() < size {
        let _ = write!(
            ByteWriter(&mut out),
            r#"{{"id":{i},"user":"user{}","kind":"update","value":{},"ok":true}},"#,
            i % 17,
            (i * 7919) % 1000
        );
        i += 1;
    }
    out.truncate(size);
    out
}

/// `write!` into a `Vec<u8>`.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// The upgrade request with a browser's permessage-deflate offer.
fn deflate_upgrade_request(addr: SocketAddr) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )
    .into_bytes()
}

/// A client frame of `payload` compressed on its own (raw deflate, sync flush, the tail
/// taken off: RFC 7692 §7.2.1), RSV1 set, masked by `key`.
fn compressed_frame(opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    c.compress_vec(payload, &mut out, FlushCompress::Sync)
        .expect("compress");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]), "the whole payload fits");
    out.truncate(out.len() - 4);
    let mut frame = masked_frame(opcode, &out, key);
    frame[0] |= 0x40;
    frame
}

/// A server's message, inflated when RSV1 is set.
fn inflate_reply(b0: u8, payload: &[u8]) -> Vec<u8> {
    use flate2::{Decompress, FlushDecompress};
    if b0 & 0x40 == 0 {
        return payload.to_vec();
    }
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(payload.len() * 16 + 1024);
    while (d.total_in() as usize) < input.len() {
        out.reserve(out.capacity().max(1024));
        let at = d.total_in() as usize;
        if d.decompress_vec(&input[at..], &mut out, FlushDecompress::Sync)
            .is_err()
        {
            return Vec::new();
        }
    }
    out
}

struct EchoConn {
    tcp: TcpStream,
    rd: Reader,
    /// The masked frame, built once.
    frame: Vec<u8>,
    /// Its payload unmasked (uncompressed), to check the first echo against.
    payload: Vec<u8>,
    /// permessage-deflate: the first echo is inflated and checked, the others must have
    /// its first byte and length (each message is compressed alike).
    deflate: bool,
    reply_b0: u8,
    reply_len: usize,
}

/// Each connection sends its frame and reads the echo, until `duration` has passed or
/// `max_ops` messages are done. The first echo of each connection is checked byte for
/// byte, the others by length.
async fn echo_load(
    conns: Vec<EchoConn>,
    duration: Duration,
    max_ops: u64,
) -> Result<(Vec<EchoConn>, Vec<u32>), Failure> {
    let deadline = Instant::now() + duration;
    let per_conn = (max_ops / conns.len().max(1) as u64).max(1);
    let mut tasks = JoinSet::new();
    for mut c in conns {
        tasks.spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            for i in 0..per_conn {
                let t = Instant::now();
                c.tcp.write_all(&c.frame).await?;
                let (b0, payload) = c.rd.frame(&mut c.tcp).await?;
                let ok = if c.deflate && i == 0 {
                    c.reply_b0 = b0;
                    c.reply_len = payload.len();
                    inflate_reply(b0, &c.rd.buf[payload]) == c.payload
                } else if c.deflate {
                    b0 == c.reply_b0 && payload.len() == c.reply_len
                } else if i == 0 {
                    c.rd.buf[payload] == c.payload[..]
                } else {
                    payload.len() == c.payload.len()
                };
                if !ok || b0 & 0x0f != c.frame[0] & 0x0f {
                    return Err(io::Error::other("echo differs from the message sent"));
                }
                let now = Instant::now();
                lat.push(nanos(now - t));
                if now >= deadline {
                    break;
                }
            }
            Ok::<_, io::Error>((c, lat))
        });
    }
    let mut conns = Vec::new();
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (c, lat) = joined.map_err(|e| Failure::Error(e.to_string()))??;
        conns.push(c);
        all.extend(lat);
    }
    Ok((conns, all))
}

// ===== counts =====

/// What `counts` counts in the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counter {
    /// User-space instructions, with valgrind's callgrind: the same for the same binary and
    /// load, whatever else the machine does.
    Instructions,
    /// System calls, with `strace -f -c`.
    Syscalls,
}

/// A load of `counts`.
#[derive(Clone, Copy, Debug)]
enum Workload {
    Handshake,
    Echo(usize),
}

impl Workload {
    /// Operations of the smaller run.
    fn ops(self, opts: &Opts) -> u64 {
        match self {
            Self::Handshake => opts.count_ops,
            // Whole rounds over every connection, so the count is exact.
            Self::Echo(_) => (opts.count_ops * 16).div_ceil(opts.conns as u64) * opts.conns as u64,
        }
    }
}

/// User-space instructions and system calls per operation, for every WebSocket server:
/// each server runs the same load twice, `n` and `2n` operations long, under valgrind
/// (callgrind) or strace, and the difference of the two totals over `n` is the cost of one
/// operation, with start-up, connection set-up and shut-down cancelled out. Unlike CPU
/// time, both are repeatable on a busy machine; instructions leave out the kernel, which
/// the system calls stand in for.
async fn counts(opts: &Opts) -> String {
    let impls = if opts.deflate {
        opts.select(DEFLATE_IMPLS)
    } else {
        opts.select_ws()
    };
    let workloads = [
        Workload::Handshake,
        Workload::Echo(20),
        Workload::Echo(16 * 1024),
    ];
    // `--deflate`: the echoes only, of JSON-like text compressed by the client.
    let workloads = if opts.deflate {
        &workloads[1..]
    } else {
        &workloads[..]
    };
    let dir = std::env::temp_dir().join(format!("tower-upgrade-counts-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return format!("counts: cannot create {}: {e}\n", dir.display());
    }
    let mut out = String::new();
    for counter in [Counter::Instructions, Counter::Syscalls] {
        let mut rows: Vec<(&str, Vec<Result<f64, String>>)> = Vec::new();
        for &imp in &impls {
            let mut cells = Vec::new();
            for &workload in workloads {
                let cell = per_op(opts, &dir, counter, imp, workload).await;
                eprintln!("counts: {imp} {workload:?} {counter:?}: {cell:?}");
                let not_built = matches!(cell, Err(Failure::NotBuilt));
                cells.push(cell.map_err(|e| match e {
                    Failure::NotBuilt => "not built".to_owned(),
                    Failure::Error(e) => format!("error: {e}"),
                }));
                if not_built {
                    break;
                }
            }
            rows.push((imp, cells));
        }
        let (title, unit) = match counter {
            Counter::Instructions => ("User-space instructions per operation (callgrind)", 0),
            Counter::Syscalls => ("System calls per operation (strace -f -c)", 2),
        };
        let _ = writeln!(
            out,
            "### {title}\n\n{} handshakes and {} / {} echo messages against twice as many; \
             the difference over the smaller count.\n",
            Workload::Handshake.ops(opts),
            Workload::Echo(20).ops(opts),
            Workload::Echo(16 * 1024).ops(opts),
        );
        let _ = if opts.deflate {
            writeln!(
                out,
                "| impl | echo 20 B | vs floor | echo 16 KiB | vs floor |\n\
                 |---|---:|---:|---:|---:|"
            )
        } else {
            writeln!(
                out,
                "| impl | handshake | vs floor | echo 20 B | vs floor | echo 16 KiB | vs floor |\n\
                 |---|---:|---:|---:|---:|---:|---:|"
            )
        };
        let floor_name = if opts.deflate {
            "floor-deflate"
        } else {
            "floor"
        };
        let floor = rows
            .iter()
            .find(|(imp, _)| *imp == floor_name)
            .map(|(_, c)| c);
        for (imp, cells) in &rows {
            let _ = write!(out, "| {imp} |");
            for (i, cell) in cells.iter().enumerate() {
                let reference = floor.and_then(|f| f.get(i)).and_then(|c| c.as_ref().ok());
                match cell {
                    Ok(v) => {
                        let _ = write!(out, " {v:.unit$} | {} |", ratio(*v, reference.copied()));
                    }
                    Err(e) => {
                        let _ = write!(out, " {e} | |");
                    }
                }
            }
            out.push('\n');
        }
        out.push('\n');
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// One cell of `counts`: the count per operation of `workload` on `imp`.
async fn per_op(
    opts: &Opts,
    dir: &std::path::Path,
    counter: Counter,
    imp: &'static str,
    workload: Workload,
) -> Result<f64, Failure> {
    let n = workload.ops(opts);
    let small = counted_run(opts, dir, counter, imp, workload, n).await?;
    let large = counted_run(opts, dir, counter, imp, workload, 2 * n).await?;
    Ok((large as f64 - small as f64) / n as f64)
}

/// Runs `ops` operations of `workload` against `imp` under the counter's tool, and returns
/// the server's total count.
async fn counted_run(
    opts: &Opts,
    dir: &std::path::Path,
    counter: Counter,
    imp: &'static str,
    workload: Workload,
    ops: u64,
) -> Result<u64, Failure> {
    let report = dir.join(format!("{imp}-{ops}.txt"));
    let _ = std::fs::remove_file(&report);
    let tool: Vec<String> = match counter {
        Counter::Instructions => callgrind(&format!("{imp}-{workload:?}-{ops}"), &report),
        Counter::Syscalls => vec![
            "strace".into(),
            "-f".into(),
            "-c".into(),
            "-o".into(),
            report.display().to_string(),
        ],
    };
    let limit = Duration::from_secs(600);
    let server = Server::start_under(opts, imp, &tool).await?;
    let load = async {
        match workload {
            Workload::Handshake => {
                handshakes(server.addr, ops, opts.conns, limit).await?;
            }
            Workload::Echo(size) => {
                let opcode = if opts.deflate { 0x1 } else { 0x2 };
                let conns = echo_conns(server.addr, opts.conns, size, opcode, opts.deflate).await?;
                let (conns, lat) = echo_load(conns, limit, ops).await?;
                if lat.len() as u64 != ops {
                    return Err(Failure::Error(format!("{} of {ops} echoes", lat.len())));
                }
                drop(conns);
            }
        }
        Ok::<_, Failure>(())
    };
    let loaded = load.await;
    let stopped = server.stop_gracefully(Duration::from_secs(120)).await;
    loaded?;
    stopped?;
    let text = std::fs::read_to_string(&report)?;
    let total = match counter {
        // `==PID== Collected : 123456`
        Counter::Instructions => text.lines().find_map(|l| {
            l.split_once("Collected :")
                .map(|(_, n)| n.trim().to_owned())
        }),
        // The `total` line: `100.00 secs usecs/call calls [errors] total`.
        Counter::Syscalls => text.lines().find_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.last() == Some(&"total")).then(|| fields.get(3).map(|c| (*c).to_owned()))?
        }),
    };
    total
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Failure::Error(format!("no total in {}", report.display())))
}

/// The command line that runs a server under callgrind, its summary written to `report`.
/// `LOAD_CALLGRIND_DIR` keeps each run's profile there as `{profile}.out`, for
/// `callgrind_annotate`; without it the profile is discarded.
fn callgrind(profile: &str, report: &std::path::Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        match std::env::var_os("LOAD_CALLGRIND_DIR") {
            Some(keep) => format!(
                "--callgrind-out-file={}/{profile}.out",
                std::path::Path::new(&keep).display()
            ),
            None => "--callgrind-out-file=/dev/null".into(),
        },
        format!("--log-file={}", report.display()),
    ]
}

// ===== idle =====

/// Memory of one idle-connection run.
#[derive(Clone, Copy, Debug)]
struct Idle {
    before_kib: u64,
    after_kib: u64,
    /// Resident memory growth per connection, bytes.
    per_conn: f64,
    /// `--deflate`: the same after one compressed 16 KiB message on each connection.
    per_conn_after_message: f64,
}

async fn idle(opts: &Opts) -> String {
    let impls = if opts.deflate {
        opts.select(DEFLATE_IDLE_IMPLS)
    } else {
        opts.select_ws()
    };
    let n = opts.idle_conns;
    let rows = round_robin(opts, "idle", &impls, async |server: &Server| {
        let deflate = opts.deflate && server.imp.contains("deflate");
        // Warm the server up (runtime, allocator), then let it settle. With deflate, with
        // connections like the measured ones (yawc drops the handshake load's close).
        if deflate {
            drop(open_idle(server.addr, opts.conns, opts.conns, opts.grace, true).await?);
        } else {
            handshakes(server.addr, opts.conns as u64, opts.conns, opts.grace).await?;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before_kib = server.rss_kib()?;
        let mut conns = open_idle(server.addr, n, opts.conns, opts.grace, deflate).await?;
        // Wait until the resident size stops moving (bounded: 3 s).
        let mut after_kib = server.rss_kib()?;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = server.rss_kib()?;
            if now == after_kib {
                break;
            }
            after_kib = now;
        }
        let mut per_conn_after_message = 0.0;
        if deflate {
            let payload = json_like(16 * 1024, 0);
            let frame = compressed_frame(0x1, &payload, [1, 2, 3, 4]);
            for (i, c) in conns.iter_mut().enumerate() {
                c.tcp.write_all(&frame).await?;
                let (b0, range) = c.rd.frame(&mut c.tcp).await?;
                if i == 0 && inflate_reply(b0, &c.rd.buf[range]) != payload {
                    return Err(Failure::Error("compressed echo differs".into()));
                }
            }
            let mut now_kib = server.rss_kib()?;
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = server.rss_kib()?;
                if now == now_kib {
                    break;
                }
                now_kib = now;
            }
            per_conn_after_message = (now_kib.saturating_sub(before_kib) * 1024) as f64 / n as f64;
        }
        // Still alive? One echo on the first and the last connection.
        let last = conns.len().saturating_sub(1);
        for i in [0, last] {
            if let Some(c) = conns.get_mut(i) {
                echo_once(c).await?;
            }
        }
        drop(conns);
        Ok(Idle {
            before_kib,
            after_kib,
            per_conn: (after_kib.saturating_sub(before_kib) * 1024) as f64 / n as f64,
            per_conn_after_message,
        })
    })
    .await;
    let per_conn = |row: &Row<Idle>| median(row.runs.iter().map(|r| r.per_conn).collect());
    let reference =
        reference(&rows, &["tower-upgrade", "tower-upgrade-raw"]).map(|r| (r.imp, per_conn(r)));
    let floor = rows
        .iter()
        .find(|r| r.imp == "floor" && !r.runs.is_empty())
        .map(per_conn);
    let mut out = format!(
        "### Idle: resident memory per open WebSocket, {n} connections\n\n\
         | impl | KiB per connection | min–max | vs {} | vs floor | RSS before MiB | RSS after MiB |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        reference.map_or("tower-upgrade", |r| r.0)
    );
    for row in &rows {
        if row.runs.is_empty() {
            let text = match &row.failure {
                Some(Failure::NotBuilt) => "not built yet".to_owned(),
                Some(Failure::Error(e)) => format!("error: {e}"),
                None => "no runs".to_owned(),
            };
            let _ = writeln!(out, "| {} | {text} | | | | | |", row.imp);
            continue;
        }
        let bytes = per_conn(row);
        let kib = row.runs.iter().map(|r| r.per_conn / 1024.0);
        let (min, max) = (
            kib.clone().fold(f64::INFINITY, f64::min),
            kib.fold(0.0, f64::max),
        );
        let before = median(row.runs.iter().map(|r| r.before_kib as f64).collect());
        let after = median(row.runs.iter().map(|r| r.after_kib as f64).collect());
        let _ = writeln!(
            out,
            "| {} | {:.2} | {min:.2}–{max:.2} | {} | {} | {:.1} | {:.1} |",
            row.imp,
            bytes / 1024.0,
            ratio(bytes, reference.map(|r| r.1)),
            ratio(bytes, floor),
            before / 1024.0,
            after / 1024.0
        );
    }
    let _ = write!(
        out,
        "\nMedians of {} run(s). Growth of VmRSS from before the connections were opened to \
         after (each connection upgraded and echoed one 20-byte message), divided by {n}.\n",
        rows.iter().map(|r| r.runs.len()).max().unwrap_or(0)
    );
    if opts.deflate {
        let _ = writeln!(
            out,
            "\nWith permessage-deflate negotiated (the `*-deflate*` impls), after one compressed \
             16 KiB JSON-like message echoed on every connection, KiB per connection:"
        );
        for row in rows
            .iter()
            .filter(|r| !r.runs.is_empty() && r.imp.contains("deflate"))
        {
            let after = median(row.runs.iter().map(|r| r.per_conn_after_message).collect());
            let _ = writeln!(out, "- {}: {:.2}", row.imp, after / 1024.0);
        }
    }
    out
}

/// Opens `n` WebSockets over `conns` concurrent tasks, each echoing one 20-byte message,
/// and keeps them open.
async fn open_idle(
    addr: SocketAddr,
    n: usize,
    conns: usize,
    limit: Duration,
    deflate: bool,
) -> Result<Vec<EchoConn>, Failure> {
    let deadline = Instant::now() + limit;
    let next = Arc::new(AtomicU64::new(0));
    let request: Arc<[u8]> = if deflate {
        deflate_upgrade_request(addr).into()
    } else {
        upgrade_request(addr).into()
    };
    let mut tasks = JoinSet::new();
    for _ in 0..conns {
        let (next, request) = (Arc::clone(&next), Arc::clone(&request));
        tasks.spawn(async move {
            let mut open = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                if Instant::now() >= deadline {
                    return Err(io::Error::other(
                        "opening the idle connections took too long",
                    ));
                }
                let (tcp, rd) = ws_connect(addr, &request, Reader::new(64)).await?;
                let payload = b"idle connection, 20B".to_vec();
                let frame = if deflate {
                    compressed_frame(0x2, &payload, [1, 2, 3, 4])
                } else {
                    masked_frame(0x2, &payload, [1, 2, 3, 4])
                };
                let mut c = EchoConn {
                    tcp,
                    rd,
                    frame,
                    payload,
                    deflate,
                    reply_b0: 0,
                    reply_len: 0,
                };
                echo_once(&mut c).await?;
                open.push(c);
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

async fn echo_once(c: &mut EchoConn) -> io::Result<()> {
    c.tcp.write_all(&c.frame).await?;
    let (b0, payload) = c.rd.frame(&mut c.tcp).await?;
    if inflate_reply(b0, &c.rd.buf[payload]) != c.payload[..] {
        return Err(io::Error::other("echo differs from the message sent"));
    }
    Ok(())
}

// ===== h2c =====

/// curl 7.88's `HTTP2-Settings`.
const H2C_SETTINGS: &str = "AAMAAABkAARAAAAAAAIAAAAA";

async fn h2c(opts: &Opts) -> String {
    let impls = opts.select(H2_IMPLS);
    let rows = round_robin(opts, "h2", &impls, async |server: &Server| {
        // The same client for both impls; only how a connection starts differs.
        let upgrade = server.imp == "h2c";
        let senders = h2_connect(server.addr, opts.h2_conns, upgrade).await?;
        let uri: hyper::Uri = format!("http://{}/", server.addr)
            .parse()
            .map_err(|e| Failure::Error(format!("uri: {e}")))?;
        h2_load(
            &senders,
            &uri,
            opts.h2_streams,
            opts.warmup_time,
            opts.max_ops,
        )
        .await?;
        let sample = Sample::measure(
            server,
            h2_load(&senders, &uri, opts.h2_streams, opts.duration, opts.max_ops),
        )
        .await?;
        Ok(sample.metrics())
    })
    .await;
    let mut out = metrics_table(
        &format!(
            "h2c: GET / over HTTP/2, {} connections × {} streams (h2c: upgraded from HTTP/1.1; \
             the `h2` crate's client for both)",
            opts.h2_conns, opts.h2_streams
        ),
        "req",
        &rows,
        &["h2c"],
        Some("h2-prior-knowledge"),
        opts.max_other,
    );
    let med = |name: &str| {
        rows.iter()
            .find(|r| r.imp == name && !r.runs.is_empty())
            .map(|r| median_metrics(&r.runs))
    };
    if let (Some(h2c), Some(pk)) = (med("h2c"), med("h2-prior-knowledge")) {
        let _ = write!(
            out,
            "\nh2c / prior-knowledge: server CPU per request {:.3}, requests/s {:.3} \
             (goal: 1.00 within noise once upgraded; the upgrade itself happens before the \
             measured time)\n",
            h2c.cpu_us / pk.cpu_us,
            h2c.rate / pk.rate
        );
    }
    out
}

type H2Sender = h2::client::SendRequest<Bytes>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens `conns` HTTP/2 connections: with prior knowledge, or (`upgrade`) by an h2c
/// upgrade whose stream-1 response is read and discarded.
async fn h2_connect(
    addr: SocketAddr,
    conns: usize,
    upgrade: bool,
) -> Result<Vec<H2Sender>, Failure> {
    let mut senders = Vec::with_capacity(conns);
    for _ in 0..conns {
        let connect = async {
            let mut tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            if !upgrade {
                let (sender, conn) = h2::client::handshake(tcp).await?;
                // Ends when the senders are dropped, or with the server.
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                return Ok::<_, BoxError>(sender);
            }
            h2c_upgrade(&mut tcp, addr).await?;
            let (sender, conn) = h2::client::handshake(Stream1Client::new(tcp)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            // `h2` opens stream 1 with its first request; `Stream1Client` keeps its
            // HEADERS from the server, and the response is the answer to the upgrade.
            let mut sender = sender.ready().await?;
            let (res, _) = sender.send_request(http::Request::get("/").body(())?, true)?;
            h2_response(res).await?;
            Ok(sender)
        };
        let sender = timeout(START_TIMEOUT, connect)
            .await
            .map_err(|_| Failure::Error("h2 connection setup timed out".into()))?
            .map_err(|e| Failure::Error(format!("h2 connection setup: {e}")))?;
        senders.push(sender);
    }
    Ok(senders)
}

/// Sends the h2c upgrade request and reads the `101` head, byte by byte so that none of
/// the HTTP/2 bytes behind it are taken from `h2`.
async fn h2c_upgrade(tcp: &mut TcpStream, addr: SocketAddr) -> io::Result<()> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: {H2C_SETTINGS}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Err(io::Error::other("response head too long"));
        }
        head.push(tcp.read_u8().await?);
    }
    if !head.starts_with(b"HTTP/1.1 101 ") {
        let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(io::Error::other(format!(
            "expected 101, got {:?}",
            String::from_utf8_lossy(line)
        )));
    }
    Ok(())
}

/// Awaits a response, checks for `200` and reads the body, giving its flow-control
/// capacity back.
async fn h2_response(res: h2::client::ResponseFuture) -> Result<(), BoxError> {
    let res = res.await?;
    if res.status() != http::StatusCode::OK {
        return Err(format!("status {}", res.status()).into());
    }
    let mut body = res.into_body();
    // Bounded by the response: each turn takes a chunk, and the stream ends.
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len())?;
    }
    Ok(())
}

/// `streams` concurrent request loops per connection, until `duration` has passed or
/// `max_ops` requests are done.
async fn h2_load(
    senders: &[H2Sender],
    uri: &hyper::Uri,
    streams: usize,
    duration: Duration,
    max_ops: u64,
) -> Result<Vec<u32>, Failure> {
    let deadline = Instant::now() + duration;
    let per_task = (max_ops / (senders.len() * streams).max(1) as u64).max(1);
    let mut tasks = JoinSet::new();
    for sender in senders {
        for _ in 0..streams {
            let (mut sender, uri) = (sender.clone(), uri.clone());
            tasks.spawn(async move {
                let mut lat = Vec::with_capacity(4096);
                for _ in 0..per_task {
                    let t = Instant::now();
                    std::future::poll_fn(|cx| sender.poll_ready(cx)).await?;
                    let req = http::Request::get(uri.clone()).body(())?;
                    let (res, _) = sender.send_request(req, true)?;
                    h2_response(res).await?;
                    let now = Instant::now();
                    lat.push(nanos(now - t));
                    if now >= deadline {
                        break;
                    }
                }
                Ok::<_, BoxError>(lat)
            });
        }
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let lat = joined
            .map_err(|e| Failure::Error(e.to_string()))?
            .map_err(|e| Failure::Error(e.to_string()))?;
        all.extend(lat);
    }
    Ok(all)
}

/// The client side of an h2c-upgraded connection for the `h2` crate (after
/// `tests/h2c.rs`).
///
/// The `h2` client opens stream 1 itself with its first request, whose response is then the
/// server's answer to the upgrade request. This wrapper keeps that first request's HEADERS
/// from the server (stream 1 was the HTTP/1.1 request). The first request must be
/// `GET /` without an authority and without a body: `h2` encodes it from the static HPACK
/// table alone, so dropping it leaves the header compression state of both ends in step.
///
/// Once that frame is gone, the wrapper passes every write straight through, so the
/// measured load costs the client what it costs on a prior-knowledge connection.
struct Stream1Client {
    inner: TcpStream,
    /// Preface bytes still to pass before frames start.
    preface_left: usize,
    /// Bytes written by `h2` that do not yet form a whole frame.
    pending: Vec<u8>,
    /// Bytes to send.
    out: Vec<u8>,
    /// Stream 1's HEADERS are dropped: writes go straight through.
    through: bool,
}

impl Stream1Client {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            preface_left: 24,
            pending: Vec::new(),
            out: Vec::new(),
            through: false,
        }
    }

    /// Moves whole frames from `pending` to `out`, less stream 1's HEADERS.
    fn parse(&mut self) -> io::Result<()> {
        let n = self.preface_left.min(self.pending.len());
        self.out.extend(self.pending.drain(..n));
        self.preface_left -= n;
        // Bounded: every turn removes a frame from `pending`.
        while !self.through && self.pending.len() >= 9 {
            let len = (usize::from(self.pending[0]) << 16)
                | (usize::from(self.pending[1]) << 8)
                | usize::from(self.pending[2]);
            if self.pending.len() < 9 + len {
                break;
            }
            let (kind, flags) = (self.pending[3], self.pending[4]);
            let stream =
                u32::from_be_bytes(self.pending[5..9].try_into().expect("4 bytes")) & 0x7fff_ffff;
            if stream == 1 {
                // HEADERS with END_HEADERS: the whole request, as `new` requires.
                if kind != 0x1 || flags & 0x4 == 0 {
                    return Err(io::Error::other(
                        "stream 1 must be one HEADERS frame with no body",
                    ));
                }
                self.pending.drain(..9 + len);
                self.through = true;
            } else {
                self.out.extend(self.pending.drain(..9 + len));
            }
        }
        if self.through {
            self.out.append(&mut self.pending);
        }
        Ok(())
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            self.out.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Stream1Client {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream1Client {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.through {
            ready!(this.poll_drain(cx))?;
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.pending.extend_from_slice(buf);
        this.parse()?;
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.through {
            ready!(this.poll_drain(cx))?;
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        let buf = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
        Pin::new(this).poll_write(cx, buf)
    }

    fn is_write_vectored(&self) -> bool {
        // Checked before each write (tokio-util's `poll_write_buf`), so this switches with
        // `through`.
        self.through && self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

// ===== soak =====

/// The impl the soak runs against: it serves `GET /stats`.
const SOAK_IMPL: &str = "tower-upgrade";
/// How often the soak samples the server's memory and live count.
const SOAK_SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The longest a soak echo, close handshake or `/stats` request may take.
const SOAK_OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the soak waits for the live count to reach 0 after the clients leave.
const SOAK_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Error and progress counts of a soak, shared by the connection tasks.
#[derive(Default)]
struct SoakCounts {
    opened: AtomicU64,
    open_errors: AtomicU64,
    echoes: AtomicU64,
    /// Failed sends or receives, wrong or missing echoes, unexpected close frames.
    echo_errors: AtomicU64,
    /// Close handshakes that failed: no close frame back, or no end of stream after it.
    close_errors: AtomicU64,
    closed: AtomicU64,
}

impl SoakCounts {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn errors(&self) -> u64 {
        Self::get(&self.open_errors) + Self::get(&self.echo_errors) + Self::get(&self.close_errors)
    }
}

/// One memory sample during the hold.
struct SoakSample {
    at: Duration,
    rss_kib: u64,
    live: Option<u64>,
    echoes: u64,
    errors: u64,
}

/// The server's `GET /stats` line: `live=… accepted=… completed=… failed=…`.
#[derive(Clone, Copy, Debug, Default)]
struct TrackerStats {
    live: u64,
    accepted: u64,
    completed: u64,
    failed: u64,
}

async fn tracker_stats(addr: SocketAddr) -> io::Result<TrackerStats> {
    let get = async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.write_all(
            format!("GET /stats HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut response = Vec::with_capacity(512);
        (&mut tcp)
            .take(MAX_HEAD as u64)
            .read_to_end(&mut response)
            .await?;
        Ok::<_, io::Error>(response)
    };
    let response = timeout(SOAK_OP_TIMEOUT, get)
        .await
        .map_err(|_| io::Error::other("GET /stats timed out"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("GET /stats: no response head"))?;
    if !head.starts_with("HTTP/1.1 200 ") {
        return Err(io::Error::other(format!(
            "GET /stats: {:?}",
            head.lines().next().unwrap_or_default()
        )));
    }
    let mut stats = TrackerStats::default();
    for field in body.split_whitespace() {
        let Some((name, value)) = field.split_once('=') else {
            continue;
        };
        let value = value
            .parse()
            .map_err(|e| io::Error::other(format!("GET /stats: {field:?}: {e}")))?;
        match name {
            "live" => stats.live = value,
            "accepted" => stats.accepted = value,
            "completed" => stats.completed = value,
            "failed" => stats.failed = value,
            _ => {}
        }
    }
    Ok(stats)
}

/// The result of a soak run.
struct Soak {
    conns: usize,
    interval: Duration,
    open_time: Duration,
    hold: Duration,
    counts: Arc<SoakCounts>,
    rss_before_kib: u64,
    samples: Vec<SoakSample>,
    rss_after_close_kib: u64,
    stats_before: TrackerStats,
    stats_after: TrackerStats,
    /// How long the live count took to reach 0, if it did.
    drained_in: Option<Duration>,
    server_cpu: Duration,
}

async fn soak(opts: &Opts) -> String {
    let title = format!(
        "### Soak: {} WebSockets held {} s, a 20-byte echo on each every {} ms ({SOAK_IMPL})\n\n",
        opts.soak_conns,
        opts.soak_secs.as_secs(),
        opts.soak_interval.as_millis()
    );
    let server = match Server::start(opts, SOAK_IMPL).await {
        Ok(server) => server,
        Err(Failure::NotBuilt) => return format!("{title}{SOAK_IMPL}: not built yet\n"),
        Err(Failure::Error(e)) => return format!("{title}error: {e}\n"),
    };
    // Opening, the hold, the close and the drain, each bounded; this is the backstop.
    let limit = opts.soak_secs + 3 * opts.grace + SOAK_OP_TIMEOUT + SOAK_DRAIN_TIMEOUT;
    let result = timeout(limit, soak_run(opts, &server)).await;
    server.stop().await;
    match result {
        Ok(Ok(soak)) => soak_report(&title, &soak),
        Ok(Err(Failure::Error(e))) => format!("{title}error: {e}\n"),
        Ok(Err(Failure::NotBuilt)) => format!("{title}{SOAK_IMPL}: not built yet\n"),
        Err(_) => format!("{title}error: the soak did not end within {limit:?}\n"),
    }
}

async fn soak_run(opts: &Opts, server: &Server) -> Result<Soak, Failure> {
    let n = opts.soak_conns;
    let addr = server.addr;
    // Warm the server up (runtime, allocator), then let it settle, as `idle` does.
    handshakes(addr, opts.conns as u64, opts.conns, opts.grace).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before_kib = server.rss_kib()?;
    let stats_before = tracker_stats(addr).await?;
    let cpu0 = server.cpu()?;

    // Open: `--conns` handshakes at a time, each checked with one echo. Failures are
    // counted, not fatal.
    let counts = Arc::new(SoakCounts::default());
    let t_open = Instant::now();
    let open_deadline = t_open + opts.grace;
    let request: Arc<[u8]> = upgrade_request(addr).into();
    let next = Arc::new(AtomicU64::new(0));
    let mut openers = JoinSet::new();
    for _ in 0..opts.conns.min(n) {
        let (next, request, counts) =
            (Arc::clone(&next), Arc::clone(&request), Arc::clone(&counts));
        openers.spawn(async move {
            let mut open = Vec::new();
            // Bounded by `n` and by the deadline.
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n as u64 {
                    break;
                }
                if Instant::now() >= open_deadline {
                    SoakCounts::add(&counts.open_errors);
                    continue;
                }
                let connect = async {
                    let (tcp, rd) = ws_connect(addr, &request, Reader::new(64)).await?;
                    let payload = format!("soak {i:>15}").into_bytes();
                    let key = (i as u32).wrapping_mul(0x9e37_79b9).to_be_bytes();
                    let frame = masked_frame(0x2, &payload, key);
                    let mut c = EchoConn {
                        tcp,
                        rd,
                        frame,
                        payload,
                        deflate: false,
                        reply_b0: 0,
                        reply_len: 0,
                    };
                    soak_echo(&mut c).await?;
                    Ok::<_, io::Error>(c)
                };
                match timeout(SOAK_OP_TIMEOUT, connect).await {
                    Ok(Ok(c)) => {
                        SoakCounts::add(&counts.opened);
                        open.push((i, c));
                    }
                    Ok(Err(_)) | Err(_) => SoakCounts::add(&counts.open_errors),
                }
            }
            open
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(joined) = openers.join_next().await {
        conns.extend(joined.map_err(|e| Failure::Error(e.to_string()))?);
    }
    let open_time = t_open.elapsed();

    // Hold: each connection echoes every interval from a jittered start, until the end of
    // the hold, then closes with a close frame.
    let t_hold = tokio::time::Instant::now();
    let hold_end = t_hold + opts.soak_secs;
    let interval = opts.soak_interval;
    let rounds = (opts.soak_secs.as_millis() / interval.as_millis().max(1)) as u64 + 2;
    let mut holders = JoinSet::new();
    for (i, mut c) in conns {
        let counts = Arc::clone(&counts);
        let jitter = Duration::from_millis(splitmix64(i) % (interval.as_millis().max(1) as u64));
        holders.spawn(async move {
            let mut next = t_hold + jitter;
            // Bounded by `rounds` and by the end of the hold.
            for _ in 0..rounds {
                // No echo starts at or after the end, so every connection closes on time.
                if next >= hold_end {
                    break;
                }
                tokio::time::sleep_until(next).await;
                // A late echo delays the next one rather than bunching them up.
                next = (next + interval).max(tokio::time::Instant::now());
                match timeout(SOAK_OP_TIMEOUT, soak_echo(&mut c)).await {
                    Ok(Ok(())) => SoakCounts::add(&counts.echoes),
                    Ok(Err(_)) | Err(_) => {
                        // The connection is in an unknown state: it is done.
                        SoakCounts::add(&counts.echo_errors);
                        return;
                    }
                }
            }
            tokio::time::sleep_until(hold_end).await;
            match timeout(SOAK_OP_TIMEOUT, soak_close(&mut c)).await {
                Ok(Ok(())) => SoakCounts::add(&counts.closed),
                Ok(Err(_)) | Err(_) => SoakCounts::add(&counts.close_errors),
            }
        });
    }

    // Sample while the connections run, up to (not at) the end of the hold, when they
    // start to close.
    let mut samples = Vec::new();
    let sample_count = opts
        .soak_secs
        .as_millis()
        .div_ceil(SOAK_SAMPLE_EVERY.as_millis());
    for k in 0..sample_count {
        tokio::time::sleep_until(t_hold + SOAK_SAMPLE_EVERY * k as u32).await;
        let at = t_hold.elapsed();
        let rss_kib = server.rss_kib()?;
        let live = tracker_stats(addr).await.ok().map(|s| s.live);
        samples.push(SoakSample {
            at,
            rss_kib,
            live,
            echoes: SoakCounts::get(&counts.echoes),
            errors: counts.errors(),
        });
    }
    // Every task ends: by the hold's end plus one echo and one close, each bounded.
    while let Some(joined) = holders.join_next().await {
        joined.map_err(|e| Failure::Error(e.to_string()))?;
    }
    let hold = t_hold.elapsed();
    let server_cpu = server.cpu()?.saturating_sub(cpu0);

    // Drain: the live count must return to 0.
    let t_drain = Instant::now();
    let mut stats_after = tracker_stats(addr).await?;
    // Bounded by `SOAK_DRAIN_TIMEOUT`, in 100 ms steps.
    while stats_after.live > 0 && t_drain.elapsed() < SOAK_DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stats_after = tracker_stats(addr).await?;
    }
    let drained_in = (stats_after.live == 0).then(|| t_drain.elapsed());
    let rss_after_close_kib = server.rss_kib()?;
    Ok(Soak {
        conns: n,
        interval,
        open_time,
        hold,
        counts,
        rss_before_kib,
        samples,
        rss_after_close_kib,
        stats_before,
        stats_after,
        drained_in,
        server_cpu,
    })
}

/// A well-spread pseudo-random number from `i` (SplitMix64's finalizer), for the jitter.
fn splitmix64(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Sends the connection's message and checks its echo byte for byte. Pings are answered
/// and pongs skipped; a close frame is an error.
async fn soak_echo(c: &mut EchoConn) -> io::Result<()> {
    c.tcp.write_all(&c.frame).await?;
    // Bounded: a few control frames may come before the echo.
    for _ in 0..8 {
        let (b0, payload) = c.rd.frame(&mut c.tcp).await?;
        match b0 & 0x0f {
            0x9 => {
                let pong = masked_frame(0xa, &c.rd.buf[payload], [9, 8, 7, 6]);
                c.tcp.write_all(&pong).await?;
            }
            0xa => {}
            0x8 => return Err(io::Error::other("unexpected close frame")),
            _ if b0 == c.frame[0] && c.rd.buf[payload] == c.payload[..] => return Ok(()),
            _ => return Err(io::Error::other("echo differs from the message sent")),
        }
    }
    Err(io::Error::other("no echo after 8 control frames"))
}

/// Sends a close frame (1000), waits for the server's close frame, then for the server to
/// end the TCP stream (RFC 6455 §7.1.1: the server closes first).
async fn soak_close(c: &mut EchoConn) -> io::Result<()> {
    c.tcp
        .write_all(&masked_frame(
            0x8,
            &1000u16.to_be_bytes(),
            [0x37, 0xfa, 0x21, 0x3d],
        ))
        .await?;
    let mut closed = false;
    // Bounded: a few frames may still be on their way before the close frame.
    for _ in 0..8 {
        let (b0, _) = c.rd.frame(&mut c.tcp).await?;
        if b0 & 0x0f == 0x8 {
            closed = true;
            break;
        }
    }
    if !closed {
        return Err(io::Error::other("no close frame"));
    }
    let mut rest = [0; 64];
    match c.tcp.read(&mut rest).await? {
        0 => Ok(()),
        _ => Err(io::Error::other("data after the close frame")),
    }
}

fn soak_report(title: &str, s: &Soak) -> String {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let c = &s.counts;
    let opened = SoakCounts::get(&c.opened);
    let first = s.samples.first().map_or(0, |x| x.rss_kib);
    let last = s.samples.last().map_or(0, |x| x.rss_kib);
    let per_conn = (first.saturating_sub(s.rss_before_kib) * 1024) as f64 / opened.max(1) as f64;
    let samples = s
        .samples
        .iter()
        .map(|x| format!("{:.1}", mib(x.rss_kib)))
        .collect::<Vec<_>>()
        .join(", ");
    // After warm-up: from the first sample at least one interval into the hold (every
    // connection has echoed there once), to the last.
    let warm = s.samples.iter().find(|x| x.at >= s.interval);
    let growth = match warm {
        Some(w) if s.samples.len() > 1 => format!(
            "{:+.1} MiB ({:+.1}%) from {} s to {} s",
            mib(last) - mib(w.rss_kib),
            (last as f64 - w.rss_kib as f64) * 100.0 / w.rss_kib.max(1) as f64,
            w.at.as_secs(),
            s.samples.last().map_or(0, |x| x.at.as_secs())
        ),
        _ => "–".to_owned(),
    };
    let live_after = match s.drained_in {
        Some(d) => format!("0 (after {} ms)", d.as_millis()),
        None => format!(
            "{} after {} s: **not 0**",
            s.stats_after.live,
            SOAK_DRAIN_TIMEOUT.as_secs()
        ),
    };
    let echoes = SoakCounts::get(&c.echoes);
    let mut out = title.to_owned();
    out.push_str("| | |\n|---|---:|\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    row("connections opened", format!("{opened} of {}", s.conns));
    row(
        "opening took",
        format!("{:.1} s", s.open_time.as_secs_f64()),
    );
    row(
        "hold, close included",
        format!("{:.1} s", s.hold.as_secs_f64()),
    );
    row(
        "echoes done",
        format!(
            "{echoes} ({:.0}/s)",
            echoes as f64 / s.hold.as_secs_f64().max(1e-9)
        ),
    );
    row(
        "errors",
        format!(
            "**{}** (open {}, echo {}, close {})",
            c.errors(),
            SoakCounts::get(&c.open_errors),
            SoakCounts::get(&c.echo_errors),
            SoakCounts::get(&c.close_errors)
        ),
    );
    row(
        "closed cleanly",
        format!("{} of {opened}", SoakCounts::get(&c.closed)),
    );
    row(
        "RSS before opening",
        format!("{:.1} MiB", mib(s.rss_before_kib)),
    );
    row("RSS samples every 5 s", format!("{samples} MiB"));
    row("RSS growth after warm-up", growth);
    row(
        "RSS per connection",
        format!(
            "{:.2} KiB (first sample − before, / opened)",
            per_conn / 1024.0
        ),
    );
    row(
        "RSS after close",
        format!("{:.1} MiB", mib(s.rss_after_close_kib)),
    );
    row(
        "server CPU",
        format!(
            "{:.2} s ({:.1}% of a core over the hold)",
            s.server_cpu.as_secs_f64(),
            s.server_cpu.as_secs_f64() * 100.0 / s.hold.as_secs_f64().max(1e-9)
        ),
    );
    row(
        "tracker: accepted / completed / failed",
        format!(
            "{} / {} / {} (during the soak)",
            s.stats_after.accepted - s.stats_before.accepted,
            s.stats_after.completed - s.stats_before.completed,
            s.stats_after.failed - s.stats_before.failed
        ),
    );
    row("live upgraded connections after", live_after);
    out.push_str("\n| t s | RSS MiB | live | echoes | errors |\n|---:|---:|---:|---:|---:|\n");
    for x in &s.samples {
        let _ = writeln!(
            out,
            "| {:.0} | {:.1} | {} | {} | {} |",
            x.at.as_secs_f64(),
            mib(x.rss_kib),
            x.live.map_or_else(|| "?".to_owned(), |l| l.to_string()),
            x.echoes,
            x.errors
        );
    }
    out
}

// ===== client wire format =====

fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

fn upgrade_request(addr: SocketAddr) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\r\n"
    )
    .into_bytes()
}

/// A client frame (FIN set) with `payload` masked by `key`.
fn masked_frame(opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    let start = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[start..], key);
    frame
}

/// Connects, sends the upgrade request and reads a `101`; the reader keeps whatever came
/// after the response head.
async fn ws_connect(
    addr: SocketAddr,
    request: &[u8],
    mut rd: Reader,
) -> io::Result<(TcpStream, Reader)> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    rd.clear();
    tcp.write_all(request).await?;
    let n = rd.head(&mut tcp).await?;
    if !rd.data().starts_with(b"HTTP/1.1 101 ") {
        let line = rd.data()[..n]
            .split(|&b| b == b'\r')
            .next()
            .unwrap_or_default();
        return Err(io::Error::other(format!(
            "expected 101, got {:?}",
            String::from_utf8_lossy(line)
        )));
    }
    rd.consume(n);
    Ok((tcp, rd))
}

/// A read buffer for one client connection: one read per response when it fits.
struct Reader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// The longest response head the clients accept.
const MAX_HEAD: usize = 16 * 1024;
/// The longest response body or frame payload the clients accept.
const MAX_PAYLOAD: usize = 64 << 20;

impl Reader {
    fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity.max(64)],
            start: 0,
            end: 0,
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
    }

    /// Makes room for `total` bytes from `start`.
    fn reserve(&mut self, total: usize) {
        if self.buf.len() - self.start < total {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < total {
                self.buf.resize(total, 0);
            }
        }
    }

    /// Reads once more from `tcp`.
    async fn fill(&mut self, tcp: &mut TcpStream) -> io::Result<()> {
        if self.start == self.end {
            self.clear();
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                self.buf.resize(self.buf.len() * 2, 0);
            }
        }
        let n = tcp.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }

    /// Reads until a response head is buffered; returns its length with the empty line.
    async fn head(&mut self, tcp: &mut TcpStream) -> io::Result<usize> {
        let mut searched = 0;
        loop {
            let data = self.data();
            if let Some(at) = data[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(searched + at + 4);
            }
            if data.len() > MAX_HEAD {
                return Err(io::Error::other("response head too long"));
            }
            searched = data.len().saturating_sub(3);
            self.fill(tcp).await?;
        }
    }

    /// Reads one HTTP/1.1 response with a `Content-Length` body; returns its status.
    async fn response(&mut self, tcp: &mut TcpStream) -> io::Result<u16> {
        let n = self.head(tcp).await?;
        let head = &self.data()[..n];
        let status = head
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other("bad status line"))?;
        let length = head
            .split(|&b| b == b'\n')
            .find_map(|line| {
                let (name, value) = line.split_at_checked(15)?;
                name.eq_ignore_ascii_case(b"content-length:")
                    .then_some(value)
            })
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<usize>().ok())
            .ok_or_else(|| io::Error::other("response without Content-Length"))?;
        if length > MAX_PAYLOAD {
            return Err(io::Error::other("response body too large"));
        }
        self.reserve(n + length);
        while self.data().len() < n + length {
            self.fill(tcp).await?;
        }
        self.consume(n + length);
        Ok(status)
    }

    /// Reads one unmasked server frame; returns its first byte and where its payload is in
    /// `buf` (valid until the next read).
    async fn frame(&mut self, tcp: &mut TcpStream) -> io::Result<(u8, Range<usize>)> {
        loop {
            let data = self.data();
            if let [b0, b1, ..] = *data {
                if b1 & 0x80 != 0 {
                    return Err(io::Error::other("server frame is masked (RFC 6455 §5.1)"));
                }
                let (head, len) = match b1 & 0x7f {
                    126 if data.len() >= 4 => {
                        (4, usize::from(u16::from_be_bytes([data[2], data[3]])))
                    }
                    127 if data.len() >= 10 => (
                        10,
                        usize::try_from(u64::from_be_bytes(
                            data[2..10].try_into().expect("8 bytes"),
                        ))
                        .map_err(|_| io::Error::other("frame too large"))?,
                    ),
                    126 | 127 => (0, 0),
                    n => (2, usize::from(n)),
                };
                if len > MAX_PAYLOAD {
                    return Err(io::Error::other("frame too large"));
                }
                if head > 0 {
                    if data.len() >= head + len {
                        let at = self.start + head;
                        self.start += head + len;
                        return Ok((b0, at..at + len));
                    }
                    self.reserve(head + len);
                }
            }
            self.fill(tcp).await?;
        }
    }
}
