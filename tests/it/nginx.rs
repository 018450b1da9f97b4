//! Two instances of the echo app behind a real nginx (started by the test, on loopback,
//! with `examples/nginx/echo.conf`), and a rolling restart of one of them.
//!
//! Needs `nginx` on the PATH (`.ci/install-system.sh`), so it is ignored by a plain
//! `cargo test`; `.ci/run` runs it with `--ignored`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::support::*;

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(super) fn wait_port(port: u16) {
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {port}");
}

pub(super) struct Proc(pub(super) Option<Child>);

impl Proc {
    pub(super) fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Waits for the process to exit by itself.
    pub(super) fn wait(mut self) -> std::process::ExitStatus {
        self.0.take().unwrap().wait().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            // SIGTERM first: nginx's master then stops its workers (a SIGKILL would leave
            // them running).
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn echo_instance(port: u16, name: &str) -> Proc {
    let child = Command::new(echo_example())
        .env("ADDR", format!("127.0.0.1:{port}"))
        .env("INSTANCE", name)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("run examples/echo (built by `cargo test`)");
    wait_port(port);
    Proc(Some(child))
}

fn nginx(dir: &std::path::Path, port: u16, a: u16, b: u16) -> Proc {
    let conf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/nginx/echo.conf"
    ))
    .unwrap()
    .replace("127.0.0.1:3101", &format!("127.0.0.1:{a}"))
    .replace("127.0.0.1:3102", &format!("127.0.0.1:{b}"))
    .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("echo.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("echo.conf"))
        .spawn()
        .expect("run nginx");
    wait_port(port);
    Proc(Some(child))
}

type Client = WsClient;

/// Connects through nginx; returns the client and the instance that answered.
async fn connect(proxy: SocketAddr) -> (Client, String) {
    let (client, res) = ws_connect(proxy, format!("ws://{proxy}/ws")).await;
    let instance = res
        .headers()
        .get("x-instance")
        .expect("x-instance")
        .to_str()
        .unwrap()
        .to_owned();
    (client, instance)
}

/// One client: sends `count` numbered messages one at a time and awaits each echo. When its
/// connection is closed with 1001 (the instance is going away), it reconnects and sends the
/// unanswered message again. Returns the instances it used and the echoes it got.
async fn client(
    proxy: SocketAddr,
    id: usize,
    count: usize,
    pause: Duration,
) -> (Vec<String>, Vec<String>) {
    let (mut ws, instance) = connect(proxy).await;
    let mut instances = vec![instance];
    let mut echoes = Vec::new();
    let mut i = 0;
    while i < count {
        let msg = format!("client {id} message {i}");
        if ws.send(TMessage::text(msg.clone())).await.is_err() {
            // The close raced the send: reconnect below.
        } else {
            match timeout(IO_TIMEOUT, ws.next())
                .await
                .expect("echo timed out")
            {
                Some(Ok(TMessage::Text(text))) => {
                    assert_eq!(text.as_str(), msg);
                    echoes.push(text.to_string());
                    i += 1;
                    tokio::time::sleep(pause).await;
                    continue;
                }
                Some(Ok(TMessage::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
                other => panic!("client {id}: unexpected {other:?}"),
            }
        }
        let (again, instance) = connect(proxy).await;
        ws = again;
        instances.push(instance);
    }
    let _ = ws.close(None).await;
    (instances, echoes)
}

#[tokio::test]
#[ignore = "needs nginx; run by .ci/run"]
async fn rolling_restart_behind_nginx() {
    let dir = std::env::temp_dir().join(format!("tower-upgrade-nginx-{}", std::process::id()));
    let (pa, pb, pn) = (free_port(), free_port(), free_port());
    let a = echo_instance(pa, "a");
    let _b = echo_instance(pb, "b");
    let nginx = nginx(&dir, pn, pa, pb);
    let proxy: SocketAddr = format!("127.0.0.1:{pn}").parse().unwrap();

    // Plain requests and the 426 pass through nginx too.
    let mut stream = send(proxy, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");

    // 20 clients, 40 messages each, 25 ms apart: about a second of traffic.
    let clients: Vec<_> = (0..20)
        .map(|id| tokio::spawn(client(proxy, id, 40, Duration::from_millis(25))))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Rolling restart of instance `a`, mid-traffic.
    let stopped = Instant::now();
    sigterm(a.id());
    let status = tokio::task::spawn_blocking(move || a.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");
    let exit_took = stopped.elapsed();
    // ... and back up on the same port.
    let _a = echo_instance(pa, "a");

    let mut first = std::collections::BTreeMap::<String, usize>::new();
    let mut moved = 0;
    for handle in clients {
        let (instances, echoes) = timeout(Duration::from_secs(30), handle)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echoes.len(), 40, "every message echoed exactly once");
        *first.entry(instances[0].clone()).or_default() += 1;
        if instances[0] == "a" {
            assert!(
                instances.len() >= 2,
                "a client of `a` was not moved: {instances:?}"
            );
            assert_eq!(instances[1], "b", "{instances:?}");
            moved += 1;
        }
    }
    assert!(
        first.get("a").copied().unwrap_or(0) > 0 && first.get("b").copied().unwrap_or(0) > 0,
        "{first:?}"
    );
    eprintln!(
        "nginx: first connections {first:?}; {moved} clients of `a` reconnected to `b` after close 1001; \
         `a` exited {} ms after SIGTERM; 20 x 40 messages echoed, none lost",
        exit_took.as_millis()
    );

    // After the restart (and nginx's `fail_timeout` of 2 s for the server it saw refuse),
    // new connections reach both instances again.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (mut ws, instance) = connect(proxy).await;
        ws.send(TMessage::text("again")).await.unwrap();
        assert_eq!(
            timeout(IO_TIMEOUT, ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
            TMessage::text("again")
        );
        seen.insert(instance);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    drop(nginx);
    let _ = std::fs::remove_dir_all(dir);
}
