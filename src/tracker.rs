//! Tracking of upgraded connections: counts, limits and graceful shutdown.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio_util::task::TaskTracker;

use crate::error::ConfigError;
use crate::signal::{Signal, Watch};
use crate::token::UpgradeToken;

/// A handle on the upgraded connections of one or more layers: live counts and totals,
/// limits, and graceful shutdown.
///
/// Every [`UpgradeLayer`](crate::UpgradeLayer) has one; get it with
/// [`UpgradeLayer::tracker`](crate::UpgradeLayer::tracker), or share one between layers
/// with [`UpgradeLayer::with_tracker`](crate::UpgradeLayer::with_tracker). Clones are
/// cheap and share everything.
///
/// Each upgraded connection is counted from its `101` to the end of its handler, whatever
/// way it ends (return, error, panic, abort, or a client that went away before the
/// switch).
///
/// # Graceful shutdown
///
/// [`drain`](Tracker::drain) (or [`shutdown`](Tracker::shutdown) to only start it):
/// from then on new upgrades are refused with `503 Service Unavailable` and `Retry-After`;
/// live handlers see their [`ShutdownSignal`] (the WebSocket helper sends close
/// `1001 Going Away` by itself); `drain` resolves when all of them are done, or aborts the
/// rest at the deadline. After it resolves, no task of this crate is left running.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_upgrade::{Tracker, UpgradeLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_upgrade::ConfigError> {
/// let tracker = Tracker::new();
/// tracker.set_max_connections(Some(10_000));
/// tracker.set_protocol_max_connections("websocket", Some(8_000))?;
/// let layer = UpgradeLayer::new().with_tracker(tracker.clone());
///
/// // ... serve, e.g. with `axum::serve(..).with_graceful_shutdown(signal)`, then:
/// let report = tracker.drain(Duration::from_secs(10)).await;
/// assert_eq!(report.aborted, 0);
/// assert_eq!(tracker.live(), 0);
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Tracker {
    inner: Arc<Inner>,
}

struct Inner {
    /// Fires when graceful shutdown starts.
    shutdown: Arc<Signal>,
    /// Fires at the drain deadline: live handlers are dropped.
    abort: Arc<Signal>,
    tasks: TaskTracker,
    /// Most live connections, all protocols together; `usize::MAX` for no limit.
    limit: AtomicUsize,
    totals: Counters,
    protocols: RwLock<Vec<Arc<ProtocolState>>>,
    retry_after: RwLock<HeaderValue>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            shutdown: Arc::default(),
            abort: Arc::default(),
            tasks: TaskTracker::new(),
            limit: AtomicUsize::new(usize::MAX),
            totals: Counters::default(),
            protocols: RwLock::default(),
            retry_after: RwLock::new(HeaderValue::from_static("1")),
        }
    }
}

pub(crate) struct ProtocolState {
    token: UpgradeToken,
    pub(crate) counters: Counters,
    limit: AtomicUsize,
}

/// Live counters of one protocol or of all of them.
#[derive(Default)]
pub(crate) struct Counters {
    attempts: AtomicU64,
    accepted: AtomicU64,
    declined: AtomicU64,
    rejected_by_handler: AtomicU64,
    rejected_at_limit: AtomicU64,
    rejected_shutting_down: AtomicU64,
    rejected_body: AtomicU64,
    rejected_cannot_switch: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    live: AtomicUsize,
}

/// What happened to an upgrade request or an upgraded connection, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Attempt,
    Accepted,
    Declined,
    RejectedByHandler,
    RejectedAtLimit,
    RejectedShuttingDown,
    RejectedBody,
    RejectedCannotSwitch,
    Completed,
    Failed,
}

impl Counters {
    fn counter(&self, event: Event) -> &AtomicU64 {
        match event {
            Event::Attempt => &self.attempts,
            Event::Accepted => &self.accepted,
            Event::Declined => &self.declined,
            Event::RejectedByHandler => &self.rejected_by_handler,
            Event::RejectedAtLimit => &self.rejected_at_limit,
            Event::RejectedShuttingDown => &self.rejected_shutting_down,
            Event::RejectedBody => &self.rejected_body,
            Event::RejectedCannotSwitch => &self.rejected_cannot_switch,
            Event::Completed => &self.completed,
            Event::Failed => &self.failed,
        }
    }

    fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            attempts: get(&self.attempts),
            accepted: get(&self.accepted),
            declined: get(&self.declined),
            rejected_by_handler: get(&self.rejected_by_handler),
            rejected_at_limit: get(&self.rejected_at_limit),
            rejected_shutting_down: get(&self.rejected_shutting_down),
            rejected_body: get(&self.rejected_body),
            rejected_cannot_switch: get(&self.rejected_cannot_switch),
            completed: get(&self.completed),
            failed: get(&self.failed),
            live: self.live.load(Ordering::Relaxed) as u64,
        }
    }
}

/// A snapshot of the counters of one protocol, or of all of them.
///
/// `attempts` counts upgrade requests that selected a registered protocol. Each ends as
/// `accepted` (a `101` went out), `declined` (passed to the inner service) or one of the
/// `rejected_*`. Each accepted connection is `live` until it ends as `completed` or
/// `failed` (hyper could not hand it over, the handler failed, panicked or was aborted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Upgrade requests that selected a registered protocol.
    pub attempts: u64,
    /// `101` (or, over HTTP/2, `200`) responses sent.
    pub accepted: u64,
    /// Requests the handler declined, or whose body it did not accept.
    pub declined: u64,
    /// Requests the handler rejected (its own `4xx`).
    pub rejected_by_handler: u64,
    /// Requests refused with `503` at a connection limit.
    pub rejected_at_limit: u64,
    /// Requests refused with `503` during graceful shutdown.
    pub rejected_shutting_down: u64,
    /// Requests whose body could not be read or was too long (`400`, `413`).
    pub rejected_body: u64,
    /// Requests that could not switch (no hyper `OnUpgrade`, `500`).
    pub rejected_cannot_switch: u64,
    /// Upgraded connections whose handler returned `Ok`.
    pub completed: u64,
    /// Upgraded connections that ended in an [`UpgradeError`](crate::UpgradeError).
    pub failed: u64,
    /// Upgraded connections running now.
    pub live: u64,
}

/// A snapshot of a [`Tracker`]'s counters: all protocols together, and each protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// All protocols together.
    pub totals: Counts,
    /// Each protocol that has been seen, in the order first seen.
    pub protocols: Vec<(String, Counts)>,
}

impl Stats {
    /// The counts of one protocol (the name compared case-insensitively).
    #[must_use]
    pub fn protocol(&self, token: &str) -> Option<&Counts> {
        self.protocols
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(token))
            .map(|(_, c)| c)
    }
}

/// What [`Tracker::drain`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Connections that were live when the drain started.
    pub live_at_start: usize,
    /// Connections aborted at the deadline.
    pub aborted: usize,
    /// How long the drain took.
    pub elapsed: Duration,
}

/// Why a new upgraded connection is refused before switching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    ShuttingDown,
    AtLimit,
}

impl Tracker {
    /// A tracker with no limits.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the most live upgraded connections, all protocols together; `None` for no
    /// limit. At the limit, new upgrades are refused with `503` and `Retry-After` before
    /// switching. Lowering it does not close live connections.
    ///
    /// The default is no limit.
    pub fn set_max_connections(&self, max: Option<usize>) {
        self.inner
            .limit
            .store(max.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    /// Sets the most live upgraded connections of one protocol; `None` for no limit.
    ///
    /// The default is no limit.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if `token` is not a valid `name["/"version]`.
    pub fn set_protocol_max_connections(
        &self,
        token: &str,
        max: Option<usize>,
    ) -> Result<(), ConfigError> {
        let token = UpgradeToken::new(token)?;
        self.protocol(&token)
            .limit
            .store(max.unwrap_or(usize::MAX), Ordering::Relaxed);
        Ok(())
    }

    /// Sets the `Retry-After` of `503` responses.
    ///
    /// The default value is 1 second.
    pub fn set_retry_after(&self, after: Duration) {
        let value = HeaderValue::from(after.as_secs().max(1));
        *self
            .inner
            .retry_after
            .write()
            .unwrap_or_else(|e| e.into_inner()) = value;
    }

    /// Upgraded connections running now, all protocols together.
    #[must_use]
    pub fn live(&self) -> usize {
        self.inner.totals.live.load(Ordering::Relaxed)
    }

    /// A snapshot of every counter.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let protocols = self.read_protocols();
        Stats {
            totals: self.inner.totals.snapshot(),
            protocols: protocols
                .iter()
                .map(|p| (p.token.to_string(), p.counters.snapshot()))
                .collect(),
        }
    }

    /// Starts graceful shutdown: new upgrades are refused with `503`, and live handlers'
    /// [`ShutdownSignal`]s fire. Does not wait; see [`drain`](Tracker::drain).
    pub fn shutdown(&self) {
        self.inner.shutdown.fire();
    }

    /// Whether graceful shutdown has started.
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_fired()
    }

    /// Starts graceful shutdown (if not started yet) and waits until every upgraded
    /// connection has ended, at most `deadline`; then aborts the rest (their handlers are
    /// dropped) and waits for their tasks to finish.
    ///
    /// When it resolves, no task of this crate is running.
    pub fn drain(&self, deadline: Duration) -> impl Future<Output = DrainReport> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        async move {
            let start = Instant::now();
            inner.shutdown.fire();
            inner.tasks.close();
            let live_at_start = inner.totals.live.load(Ordering::Relaxed);
            let mut aborted = 0;
            if tokio::time::timeout(deadline, inner.tasks.wait())
                .await
                .is_err()
            {
                aborted = inner.tasks.len();
                tracing::warn!(
                    aborted,
                    ?deadline,
                    "drain deadline passed: aborting upgraded connections"
                );
                inner.abort.fire();
                inner.tasks.wait().await;
            }
            let report = DrainReport {
                live_at_start,
                aborted,
                elapsed: start.elapsed(),
            };
            tracing::info!(?report, "upgraded connections drained");
            report
        }
    }

    /// A signal for handlers, fired when graceful shutdown starts.
    #[must_use]
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            signal: Arc::clone(&self.inner.shutdown),
        }
    }

    /// Watches for the abort at the drain deadline.
    pub(crate) fn abort_watch(&self) -> Watch {
        Watch::new(Arc::clone(&self.inner.abort))
    }

    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    pub(crate) fn retry_after(&self) -> HeaderValue {
        self.inner
            .retry_after
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn read_protocols(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<ProtocolState>>> {
        self.inner
            .protocols
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The state of one protocol, created on first use.
    pub(crate) fn protocol(&self, token: &UpgradeToken) -> Arc<ProtocolState> {
        if let Some(p) = self
            .read_protocols()
            .iter()
            .find(|p| p.token.same_protocol(token))
        {
            return Arc::clone(p);
        }
        let mut protocols = self
            .inner
            .protocols
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(p) = protocols.iter().find(|p| p.token.same_protocol(token)) {
            return Arc::clone(p);
        }
        let p = Arc::new(ProtocolState {
            token: token.clone(),
            counters: Counters::default(),
            limit: AtomicUsize::new(usize::MAX),
        });
        protocols.push(Arc::clone(&p));
        p
    }

    /// Counts an event for a protocol and for the totals.
    pub(crate) fn record(&self, protocol: &ProtocolState, event: Event) {
        protocol
            .counters
            .counter(event)
            .fetch_add(1, Ordering::Relaxed);
        self.inner
            .totals
            .counter(event)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Reserves a live-connection slot, released when the returned guard drops.
    pub(crate) fn acquire(&self, protocol: &Arc<ProtocolState>) -> Result<Slot, Refusal> {
        if self.is_shutting_down() {
            return Err(Refusal::ShuttingDown);
        }
        let total = &self.inner.totals.live;
        if total.fetch_add(1, Ordering::AcqRel) >= self.inner.limit.load(Ordering::Relaxed) {
            total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::AtLimit);
        }
        let live = &protocol.counters.live;
        if live.fetch_add(1, Ordering::AcqRel) >= protocol.limit.load(Ordering::Relaxed) {
            live.fetch_sub(1, Ordering::AcqRel);
            total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::AtLimit);
        }
        Ok(Slot {
            tracker: self.clone(),
            protocol: Arc::clone(protocol),
        })
    }
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("live", &self.live())
            .field("shutting_down", &self.is_shutting_down())
            .finish_non_exhaustive()
    }
}

/// A live-connection slot; dropping it releases the slot, however the connection ended.
pub(crate) struct Slot {
    tracker: Tracker,
    protocol: Arc<ProtocolState>,
}

impl ProtocolState {
    pub(crate) fn token(&self) -> &UpgradeToken {
        &self.token
    }
}

impl Slot {
    pub(crate) fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    pub(crate) fn protocol(&self) -> &ProtocolState {
        &self.protocol
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.protocol.counters.live.fetch_sub(1, Ordering::AcqRel);
        self.tracker
            .inner
            .totals
            .live
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// Fires when graceful shutdown starts; handed to handlers in
/// [`UpgradeRequest::shutdown`](crate::UpgradeRequest::shutdown).
///
/// A handler that runs a long-lived protocol selects on [`fired`](ShutdownSignal::fired)
/// and ends cleanly (a WebSocket sends close `1001 Going Away`). One that ignores it is
/// aborted at the drain deadline.
///
/// # Example
///
/// ```
/// use tokio::io::AsyncReadExt;
/// use tower_upgrade::{UpgradeRequest, UpgradedIo, handler_fn};
///
/// let handler = handler_fn("ticks", |mut io: UpgradedIo, req: UpgradeRequest| async move {
///     let mut buf = [0; 1024];
///     loop {
///         tokio::select! {
///             () = req.shutdown().fired() => return Ok(()),
///             n = io.read(&mut buf) => if n? == 0 { return Ok(()) },
///         }
///     }
///     #[allow(unreachable_code)]
///     Ok::<(), std::io::Error>(())
/// });
/// # let _ = handler;
/// ```
#[derive(Clone)]
pub struct ShutdownSignal {
    signal: Arc<Signal>,
}

impl ShutdownSignal {
    /// Whether shutdown has started.
    #[must_use]
    pub fn is_fired(&self) -> bool {
        self.signal.is_fired()
    }

    /// Resolves when shutdown starts (at once if it has).
    pub async fn fired(&self) {
        let mut watch = self.clone().into_watch();
        std::future::poll_fn(|cx| watch.poll_fired(cx)).await;
    }

    /// Watches the signal from a poll loop: one atomic load per poll.
    pub(crate) fn into_watch(self) -> Watch {
        Watch::new(self.signal)
    }

    /// Like [`fired`](ShutdownSignal::fired), but owns the signal, for `'static` futures.
    pub async fn fired_owned(self) {
        self.fired().await;
    }
}

impl fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownSignal")
            .field("fired", &self.is_fired())
            .finish()
    }
}
