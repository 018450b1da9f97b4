//! The chat room across two instances of `examples/chat` sharing a real Redis (`REDIS_URL`),
//! and behind a real nginx (`examples/nginx/chat.conf`): one order across instances, Redis
//! restarted under the room, and one instance restarted under its clients.
//!
//! Needs `redis-server` and `nginx` on the PATH, so it is ignored by a plain `cargo test`;
//! `.ci/chat-redis.sh` runs it with `--ignored`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::chat_app::{all_say_and_see_one_order, online};
use super::nginx::{Proc, free_port, wait_port};
use crate::support::*;

/// How long Redis coming back may take to show: the backoff (100 ms doubling, at most 5 s)
/// plus connecting.
const RESUME_TIMEOUT: Duration = Duration::from_secs(10);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tower-upgrade-chat-redis-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    dir
}

/// `redis-server` on `127.0.0.1:port`, keeping nothing on disk.
fn redis(dir: &Path, port: u16) -> Proc {
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("run redis-server");
    wait_port(port);
    Proc(Some(child))
}

/// One chat instance on `127.0.0.1:port`, in the room on the Redis at `redis`. It listens
/// once it is subscribed (or after 2 s without Redis).
fn chat(port: u16, redis: u16) -> Proc {
    let child = Command::new(example("chat"))
        .env("ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", format!("redis://127.0.0.1:{redis}/"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("run examples/chat (built by `cargo test`)");
    wait_port(port);
    Proc(Some(child))
}

fn nginx(dir: &Path, port: u16, a: u16, b: u16) -> Proc {
    let conf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/nginx/chat.conf"
    ))
    .unwrap()
    .replace("127.0.0.1:3201", &format!("127.0.0.1:{a}"))
    .replace("127.0.0.1:3202", &format!("127.0.0.1:{b}"))
    .replace("127.0.0.1:8081", &format!("127.0.0.1:{port}"));
    std::fs::write(dir.join("chat.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("chat.conf"))
        .spawn()
        .expect("run nginx");
    wait_port(port);
    Proc(Some(child))
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// What a member receives: a text someone said, or a notice about the room (a binary
/// message, `{"room":KIND,"text":TEXT}`).
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Said(String),
    Notice { kind: String, text: String },
    Closed(Option<CloseCode>),
}

fn notice(json: &[u8]) -> Event {
    let json = std::str::from_utf8(json).expect("a notice is UTF-8");
    let rest = json
        .strip_prefix("{\"room\":\"")
        .unwrap_or_else(|| panic!("not a notice: {json}"));
    let (kind, rest) = rest.split_once("\",\"text\":\"").unwrap();
    let text = rest.strip_suffix("\"}").unwrap().replace("\\\"", "\"");
    Event::Notice {
        kind: kind.to_owned(),
        text,
    }
}

async fn next(ws: &mut WsClient, limit: Duration) -> Event {
    loop {
        match timeout(limit, ws.next())
            .await
            .expect("nothing arrived in time")
        {
            Some(Ok(TMessage::Text(text))) => return Event::Said(text.to_string()),
            Some(Ok(TMessage::Binary(json))) => return notice(&json),
            Some(Ok(TMessage::Close(frame))) => return Event::Closed(frame.map(|f| f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Event::Closed(None),
        }
    }
}

async fn said(ws: &mut WsClient) -> String {
    match next(ws, IO_TIMEOUT).await {
        Event::Said(text) => text,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn expect_notice(ws: &mut WsClient, kind: &str, limit: Duration) -> String {
    match next(ws, limit).await {
        Event::Notice { kind: k, text } if k == kind => text,
        other => panic!("expected a {kind:?} notice, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs redis-server; run by .ci/chat-redis.sh"]
async fn one_room_across_instances_survives_a_redis_restart() {
    let dir = scratch("restart-redis");
    let (rp, pa, pb) = (free_port(), free_port(), free_port());
    let redis_server = redis(&dir, rp);
    let _a = chat(pa, rp);
    let _b = chat(pb, rp);
    let (a, b) = (addr(pa), addr(pb));

    // Two members on each instance, each sending 30 messages at once: every member gets
    // all 120, unchanged, in one order (the Redis channel's), its own in the order it sent.
    let mut members = Vec::new();
    for at in [a, a, b, b] {
        members.push(ws_same_origin(at).await);
    }
    assert!(eventually_async(|| async { online(a).await == 2 && online(b).await == 2 }).await);
    let mut members = all_say_and_see_one_order(members, 30).await;

    // Redis goes away: every member is told the room is degraded, and its WebSocket stays
    // open. What a member says meanwhile is refused, to it alone, and reaches nobody.
    let stopped = Instant::now();
    drop(redis_server);
    for ws in &mut members {
        expect_notice(ws, "degraded", IO_TIMEOUT).await;
    }
    let degraded_after = stopped.elapsed();
    members[0]
        .send(TMessage::text("m0: while \"down\""))
        .await
        .unwrap();
    assert_eq!(
        expect_notice(&mut members[0], "refused", IO_TIMEOUT).await,
        "m0: while \"down\""
    );
    // A member joining while degraded is told on joining.
    let mut late = ws_same_origin(b).await;
    expect_notice(&mut late, "degraded", IO_TIMEOUT).await;
    members.push(late);

    // Redis is back: every member is told, and delivery across instances resumes by itself.
    let restarted = Instant::now();
    let redis_server = redis(&dir, rp);
    for ws in &mut members {
        expect_notice(ws, "up", RESUME_TIMEOUT).await;
    }
    let resumed_after = restarted.elapsed();
    members[2].send(TMessage::text("m2: back")).await.unwrap();
    members[0].send(TMessage::text("m0: back")).await.unwrap();
    let mut orders = Vec::new();
    for ws in &mut members {
        // The refused message reached nobody: the next texts are the ones sent after.
        orders.push(vec![said(ws).await, said(ws).await]);
    }
    assert!(orders.iter().all(|o| o == &orders[0]), "{orders:?}");
    assert_eq!(
        orders[0].iter().filter(|m| m.ends_with("back")).count(),
        2,
        "{orders:?}"
    );
    eprintln!(
        "chat across instances: 4 members x 30 messages in one order; Redis stopped: \
         `degraded` after {} ms, WebSockets open, a message sent meanwhile `refused`; \
         Redis restarted: `up` after {} ms, delivery resumed",
        degraded_after.as_millis(),
        resumed_after.as_millis()
    );
    drop(redis_server);
    let _ = std::fs::remove_dir_all(dir);
}

/// Connects through nginx, retrying while the upstream it reaches is restarting.
async fn connect_via(proxy: SocketAddr) -> WsClient {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let request = ws_same_origin_request(proxy);
        let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
        match timeout(IO_TIMEOUT, tokio_tungstenite::client_async(request, stream)).await {
            Ok(Ok((ws, _))) => return ws,
            other => {
                assert!(Instant::now() < deadline, "cannot reconnect: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A page behind nginx: reads the room until it sees `last`, reconnecting (through nginx)
/// when its instance goes away. Returns what it read and how many times it reconnected.
async fn page(proxy: SocketAddr, mut ws: WsClient, last: String) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut reconnects = 0;
    loop {
        match next(&mut ws, Duration::from_secs(15)).await {
            Event::Said(text) => {
                let done = text == last;
                seen.push(text);
                if done {
                    return (seen, reconnects);
                }
            }
            Event::Closed(code) => {
                assert_eq!(code, Some(CloseCode::Away), "closed otherwise than 1001");
                ws = connect_via(proxy).await;
                reconnects += 1;
            }
            notice @ Event::Notice { .. } => panic!("unexpected {notice:?}"),
        }
    }
}

#[tokio::test]
#[ignore = "needs redis-server and nginx; run by .ci/chat-redis.sh"]
async fn restarting_one_instance_behind_nginx_loses_nothing_for_the_other() {
    let dir = scratch("restart-instance");
    let (rp, pa, pb, pn) = (free_port(), free_port(), free_port(), free_port());
    let _redis = redis(&dir, rp);
    let instance_a = chat(pa, rp);
    let _b = chat(pb, rp);
    let nginx = nginx(&dir, pn, pa, pb);
    let (a, b, proxy) = (addr(pa), addr(pb), addr(pn));

    // The page and the 426 come through nginx too.
    let (head, page_html) = super::chat_app::get(proxy, "/").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(page_html.contains("id=\"room\""));

    // 8 pages through nginx (round robin: 4 on each instance), and, on `b` directly, one
    // member that talks throughout.
    let mut pages = Vec::new();
    for _ in 0..8 {
        pages.push(connect_via(proxy).await);
    }
    let mut talker = ws_same_origin(b).await;
    assert!(eventually_async(|| async { online(a).await + online(b).await == 9 }).await);
    let on_a = online(a).await;
    assert!(on_a > 0 && on_a < 8, "nginx sent {on_a} of 8 pages to `a`");

    const COUNT: usize = 150;
    let last = format!("t: {}", COUNT - 1);
    let readers: Vec<_> = pages
        .into_iter()
        .map(|ws| tokio::spawn(page(proxy, ws, last.clone())))
        .collect();
    // 150 messages, 20 ms apart (3 s); `a` restarts 0.5 s in.
    let talk = tokio::spawn(async move {
        for i in 0..COUNT {
            talker
                .send(TMessage::text(format!("t: {i}")))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        talker
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = Instant::now();
    sigterm(instance_a.id());
    let status = tokio::task::spawn_blocking(move || instance_a.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _a = chat(pa, rp);
    let back = stopped.elapsed();
    let mut talker = talk.await.unwrap();

    let all: Vec<_> = (0..COUNT).map(|i| format!("t: {i}")).collect();
    let (mut moved, mut kept) = (0, 0);
    for reader in readers {
        let (seen, reconnects) = timeout(Duration::from_secs(30), reader)
            .await
            .expect("a page did not see the last message")
            .unwrap();
        if reconnects == 0 {
            // A page of `b`: lost nothing, in order.
            assert_eq!(seen, all);
            kept += 1;
        } else {
            // A page of `a`: reconnected, and reads the room again (in order, possibly
            // missing what was said while it reconnected).
            assert!(
                seen.windows(2)
                    .all(|w| all.iter().position(|m| *m == w[0])
                        < all.iter().position(|m| *m == w[1]))
            );
            moved += 1;
        }
    }
    assert_eq!(
        moved, on_a,
        "every page of `a`, and only those, reconnected"
    );
    assert_eq!(kept, 8 - on_a);

    // The restarted `a` is in the room again.
    let mut on_new_a = ws_same_origin(a).await;
    talker
        .send(TMessage::text("t: welcome back"))
        .await
        .unwrap();
    assert_eq!(said(&mut on_new_a).await, "t: welcome back");
    eprintln!(
        "chat behind nginx: `a` restarted ({} ms to back up) under 150 messages; {moved} pages \
         of `a` got 1001 and reconnected through nginx; {kept} pages of `b` got all 150, in order",
        back.as_millis()
    );
    drop(nginx);
    let _ = std::fs::remove_dir_all(dir);
}
