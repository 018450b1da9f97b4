//! The room across instances: a Redis pub/sub channel as the backplane (`REDIS_URL`).
//!
//! Every instance publishes what its members say to one Redis channel, [`CHANNEL`], and
//! delivers to its members only what comes back from its subscription to that channel, its
//! own members' messages included. Redis sends a channel's messages to every subscriber in
//! the order it received the `PUBLISH`es, so every member of every instance sees one order.
//!
//! One supervisor task owns both connections: a subscription (a dedicated pub/sub
//! connection) and a multiplexed connection for `PUBLISH`, shared by every member. The room
//! is *up* when both are connected and subscribed. It is *degraded* when either fails (the
//! subscription's stream ends, a `PING` on it goes unanswered for [`PING_TIMEOUT`], or a
//! `PUBLISH` fails): the supervisor drops both, tells the members, and reconnects with
//! backoff from [`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]. WebSockets stay open
//! throughout.
//!
//! While degraded, what a member says is **refused**, not delivered locally: a message
//! delivered only on this instance would reach part of the room while looking like it reached
//! all of it, and would sit in a different place in each instance's history once the room is
//! back. The sender gets a `refused` notice with its text, so the page can show it as not sent.
//!
//! Redis pub/sub delivers at most once and keeps nothing: messages published by other
//! instances while this one was disconnected are not replayed. The `up` notice says so. (A
//! Redis stream — `XADD`, then `XREAD` from the last id seen — would replay them, at the cost
//! of storing the history; see BENCHMARKS.md, "Chat across instances".)

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::{Notify, broadcast, watch};
use tower_upgrade::websocket::{PreparedMessage, Utf8Bytes};

use crate::Event;

/// The Redis channel every instance publishes to and subscribes to.
pub(crate) const CHANNEL: &str = "tower-upgrade:chat";
/// The first reconnect delay; it doubles after each failed attempt.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long connecting, and each command, may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the subscription is checked with a `PING` when no message arrives.
const PING_EVERY: Duration = Duration::from_secs(1);
/// How long a `PING` on the subscription may go unanswered before it counts as lost.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The members' side of the backplane: publishing, and whether the room is up.
pub(crate) struct Backplane {
    /// `Some` while the room is up (subscribed, and this connection works); `None` while
    /// degraded. Set only by the supervisor task.
    publisher: watch::Receiver<Option<MultiplexedConnection>>,
    /// Woken when a `PUBLISH` fails, so the supervisor reconnects without waiting for a ping.
    publish_failed: Arc<Notify>,
}

/// Why a member's message did not go to the room; [`Refusal::notice`] tells the sender.
pub(crate) enum Refusal {
    /// The room was degraded: the message was not published.
    Degraded,
    /// `PUBLISH` failed or timed out: the message may or may not have reached Redis.
    Unconfirmed,
}

impl Refusal {
    /// The notice for the sender (see the module docs of `main.rs` for the form).
    pub(crate) fn notice(&self, text: &str) -> Bytes {
        let kind = match self {
            Self::Degraded => "refused",
            Self::Unconfirmed => "unconfirmed",
        };
        notice(kind, text)
    }
}

/// The `degraded` notice: every member of this instance gets it when the room goes down, and
/// a member that joins while it is down gets it on joining.
pub(crate) fn degraded_notice() -> Bytes {
    notice(
        "degraded",
        "the room is degraded: this server lost its connection to the other servers; \
         messages are refused until it is back",
    )
}

fn up_notice() -> Bytes {
    notice(
        "up",
        "the room is back: messages reach everyone again; messages sent on other servers \
         while this one was disconnected are not shown",
    )
}

/// `{"room":KIND,"text":TEXT}` as UTF-8 JSON.
fn notice(kind: &str, text: &str) -> Bytes {
    let mut out = String::with_capacity(text.len() + 32);
    out.push_str("{\"room\":\"");
    out.push_str(kind);
    out.push_str("\",\"text\":\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push_str("\"}");
    Bytes::from(out)
}

impl Backplane {
    /// Starts the supervisor task, which connects to `url` (reconnecting for as long as the
    /// process lives) and delivers the channel's messages to `room`.
    ///
    /// # Errors
    ///
    /// When `url` is not a valid Redis URL. An unreachable Redis is not an error: the room
    /// starts degraded.
    pub(crate) fn start(url: &str, room: broadcast::Sender<Event>) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let (publisher, watch) = watch::channel(None);
        let publish_failed = Arc::new(Notify::new());
        tokio::spawn(supervise(
            client,
            room,
            publisher,
            Arc::clone(&publish_failed),
        ));
        Ok(Self {
            publisher: watch,
            publish_failed,
        })
    }

    /// Whether the room is up.
    pub(crate) fn is_up(&self) -> bool {
        self.publisher.borrow().is_some()
    }

    /// Waits until the room is up, at most `limit`; returns whether it is.
    pub(crate) async fn wait_up(&self, limit: Duration) -> bool {
        let mut watch = self.publisher.clone();
        tokio::time::timeout(limit, watch.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Publishes `text` to the room. It reaches this instance's members, the sender
    /// included, through the subscription, like everyone else's.
    pub(crate) async fn publish(&self, text: &Utf8Bytes) -> Result<(), Refusal> {
        let conn = self.publisher.borrow().clone();
        let Some(mut conn) = conn else {
            return Err(Refusal::Degraded);
        };
        let published: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(text.as_str())
            .query_async(&mut conn)
            .await;
        match published {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "PUBLISH failed");
                self.publish_failed.notify_waiters();
                Err(Refusal::Unconfirmed)
            }
        }
    }
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

/// Connects, serves until a failure, tells the room, backs off, and again, forever.
async fn supervise(
    client: redis::Client,
    room: broadcast::Sender<Event>,
    publisher: watch::Sender<Option<MultiplexedConnection>>,
    publish_failed: Arc<Notify>,
) {
    let mut backoff = BACKOFF_MIN;
    // Whether the members were last told the room is degraded.
    let mut told_degraded = false;
    loop {
        match connect(&client).await {
            Ok((conn, pubsub)) => {
                backoff = BACKOFF_MIN;
                // Register for failures before the members can publish on this connection.
                let failed = publish_failed.notified();
                tokio::pin!(failed);
                failed.as_mut().enable();
                publisher.send_replace(Some(conn));
                tracing::info!(channel = CHANNEL, "backplane up");
                if told_degraded {
                    let _ = room.send(Event::Notice(up_notice()));
                    told_degraded = false;
                }
                let why = serve(pubsub, &room, failed).await;
                publisher.send_replace(None);
                tracing::warn!(why, "backplane down; the room is degraded");
            }
            Err(e) => tracing::warn!(error = %e, ?backoff, "backplane: cannot reach Redis"),
        }
        if !told_degraded {
            // `send` fails only when no member is connected here; joiners are told anyway.
            let _ = room.send(Event::Notice(degraded_notice()));
            told_degraded = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The publishing connection, and the subscription to [`CHANNEL`].
async fn connect(
    client: &redis::Client,
) -> redis::RedisResult<(MultiplexedConnection, redis::aio::PubSub)> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    let conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let mut pubsub = tokio::time::timeout(COMMAND_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| timed_out())??;
    tokio::time::timeout(COMMAND_TIMEOUT, pubsub.subscribe(CHANNEL))
        .await
        .map_err(|_| timed_out())??;
    Ok((conn, pubsub))
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// Delivers the channel's messages to the room until the subscription fails or a `PUBLISH`
/// does; returns why it stopped.
async fn serve(
    pubsub: redis::aio::PubSub,
    room: &broadcast::Sender<Event>,
    mut publish_failed: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
) -> &'static str {
    let (mut sink, mut messages) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else { return "the subscription ended" };
                match Utf8Bytes::try_from(Bytes::copy_from_slice(msg.get_payload_bytes())) {
                    // `send` fails only when no member is connected here.
                    Ok(text) => { let _ = room.send(Event::Say(PreparedMessage::text(text))); }
                    Err(_) => tracing::warn!("skipped a message that is not UTF-8"),
                }
                // A busy channel proves the subscription alive.
                ping.reset();
            }
            _ = ping.tick() => {
                let pong = tokio::time::timeout(PING_TIMEOUT, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return "a PING on the subscription went unanswered";
                }
            }
            () = &mut publish_failed => return "a PUBLISH failed",
        }
    }
}
