//! Helpers for tests that run an example as a separate process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An example's binary, which `cargo test` builds next to the test binaries.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// The `echo` example binary.
pub fn echo_example() -> PathBuf {
    example("echo")
}

/// Sends SIGTERM to process `pid` with `kill`, and checks that `kill` succeeded.
pub fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// An example running as a separate process, on a free port; killed when dropped.
pub struct Example {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Example {
    /// Starts example `name` (built by `cargo test`) with `ADDR=127.0.0.1:0` and `env`, and
    /// reads its address from the first line it prints (`...http://ADDR/...`).
    pub fn start(name: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(example(name));
        cmd.env("ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("run examples/{name} (built by `cargo test`): {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        // "NAME: open http://127.0.0.1:PORT/ in a browser"
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        Self {
            child,
            addr,
            stdout,
        }
    }

    /// Sends it SIGTERM.
    pub fn terminate(&self) {
        sigterm(self.child.id());
    }

    /// Waits (bounded) for the process to exit; returns its status and the rest of stdout.
    pub fn wait(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut rest = String::new();
                std::io::Read::read_to_string(&mut self.stdout, &mut rest).unwrap();
                return (status, rest);
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("the example did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket to `ws://ADDR/ws` with the Origin of the page the example serves, as its own
/// script opens it.
pub async fn ws_same_origin(addr: SocketAddr) -> crate::support::WsClient {
    // Same-origin, as the page's own script.
    let request = http::Request::get(format!("ws://{addr}/ws"))
        .header("host", addr.to_string())
        .header("origin", format!("http://{addr}"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", crate::support::WS_KEY)
        .body(())
        .unwrap();
    crate::support::ws_connect(addr, request).await.0
}

/// The raw bytes of a same-origin WebSocket upgrade of `/ws`, as a browser on the
/// example's page sends it.
pub fn ws_upgrade_request(addr: SocketAddr) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n\r\n",
        crate::support::WS_KEY
    )
    .into_bytes()
}
