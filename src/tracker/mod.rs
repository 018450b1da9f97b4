//! Tracking of upgraded connections: counts, limits and graceful shutdown.

mod budget;
mod counts;
mod shutdown;
mod slot;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio_util::task::TaskTracker;

use crate::error::ConfigError;
use crate::signal::{Signal, Watch};
use crate::token::UpgradeToken;

use self::budget::Budget;
pub use self::budget::{BudgetReservation, MessageBudget};
pub(crate) use self::counts::{Counters, Event, ProtocolState};
pub use self::counts::{Counts, Stats};
pub use self::shutdown::{DrainReport, ShutdownSignal};
pub(crate) use self::slot::{Refusal, Slot};

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
    /// Message bytes buffered by all connections, and their limit.
    budget: Budget,
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
            budget: Budget::default(),
        }
    }
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

    /// Sets the budget of message bytes buffered by all the upgraded connections together;
    /// `None` for no budget.
    ///
    /// A handler reserves the bytes of a message before it buffers them (through its
    /// [`MessageBudget`]), and gives them back once the message is handed on. The WebSocket
    /// handler does this by itself: a message whose buffering would pass the budget closes
    /// its connection with `1013 Try Again Later`, and is counted in
    /// [`Counts::over_budget`]. The per-message limit
    /// ([`WebSocketConfig::max_message_size`](crate::websocket::WebSocketConfig::max_message_size))
    /// bounds one connection; this bounds the server. Set it well above the largest message
    /// you accept, so that one client can still send one.
    ///
    /// Lowering it does not close connections; it applies to the bytes reserved next.
    /// Reservations made while no budget is set are not counted, and the WebSocket handler
    /// counts the messages of connections that started while a budget was set: set it
    /// before serving (a connection without one pays nothing per message).
    ///
    /// The default is no budget.
    pub fn set_message_budget(&self, max: Option<usize>) {
        self.inner
            .budget
            .limit
            .store(max.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    /// The budget of buffered message bytes, if one is set; see
    /// [`set_message_budget`](Self::set_message_budget).
    #[must_use]
    pub fn message_budget(&self) -> Option<usize> {
        Some(self.inner.budget.limit.load(Ordering::Relaxed)).filter(|&max| max != usize::MAX)
    }

    /// Message bytes reserved against the budget now, by all connections together.
    #[must_use]
    pub fn buffered_message_bytes(&self) -> usize {
        self.inner.budget.used.load(Ordering::Relaxed)
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
            // Counted before the signal fires: connections that end on it are counted.
            let live_at_start = inner.totals.live.load(Ordering::Relaxed);
            inner.shutdown.fire();
            inner.tasks.close();
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

    /// The message budget for a connection of one protocol.
    #[cfg(test)]
    pub(crate) fn budget_for(&self, token: &UpgradeToken) -> MessageBudget {
        MessageBudget::new(self.clone(), self.protocol(token))
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
