//! Graceful shutdown as handlers and callers see it: the signal and the drain report.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::signal::{Signal, Watch};

/// What [`Tracker::drain`](super::Tracker::drain) did.
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
    pub(super) signal: Arc<Signal>,
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
